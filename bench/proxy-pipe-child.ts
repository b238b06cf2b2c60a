// The floor of `npm run bench -- proxy`: the least a Node TCP proxy can do.
// Accepts, waits for the client's first bytes (as any peeking proxy must),
// dials a fixed upstream with plain net.connect (no SO_MARK, no
// SO_ORIGINAL_DST, no policy, no idle timeout, no stats), writes those bytes
// and pipe()s both ways. Whatever splitwan's proxy costs beyond this is its
// own; what this costs is Node's and the kernel's.
//
// argv[2]: JSON { host, port, upstream: { host, port }[] } (upstream: by the
// listening port's index: one listener per upstream, port + i)
// IPC in:  { cmd: 'gc' | 'stop' } (gc needs --expose-gc)
// IPC out: { type: 'ready' }, { type: 'stats', rss, heapUsed, ... } after a gc
import net from 'node:net';

interface ChildArgs {
  host: string;
  port: number;
  upstream: { host: string; port: number }[];
}
const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;

function serve(to: { host: string; port: number }): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (c) => {
    c.on('error', () => c.destroy());
    c.once('data', (first: Buffer) => {
      c.pause();
      const u = net.connect({ host: to.host, port: to.port, noDelay: true, allowHalfOpen: true });
      u.on('error', () => (u.destroy(), c.destroy()));
      c.on('error', () => u.destroy());
      u.write(first);
      c.pipe(u);
      u.pipe(c);
      // Both ways ended: close (allowHalfOpen leaves that to us).
      const done = (s: net.Socket) => () => s.readableEnded && s.writableFinished && s.destroy();
      for (const s of [c, u]) s.on('end', done(s)).on('finish', done(s));
      // One side gone before its FIN (a reset): the other has nothing to talk to.
      u.on('close', () => u.readableEnded || c.destroy());
      c.on('close', () => c.readableEnded || u.destroy());
    });
    c.resume();
  });
}

await Promise.all(
  args.upstream.map((to, i) => new Promise<void>((resolve, reject) => serve(to).once('error', reject).listen({ host: args.host, port: args.port + i, backlog: 511 }, resolve))),
);
process.on('message', (m: { cmd?: string }) => {
  if (m.cmd === 'gc') {
    (globalThis as { gc?: () => void }).gc?.();
    const u = process.memoryUsage();
    process.send?.({ type: 'stats', rss: u.rss, heapUsed: u.heapUsed, heapTotal: u.heapTotal, external: u.external, arrayBuffers: u.arrayBuffers });
  } else if (m.cmd === 'stop') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.send?.({ type: 'ready' });
