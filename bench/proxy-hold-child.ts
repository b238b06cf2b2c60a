// The holding server of `npm run bench -- proxy`'s idle test: accepts TCP
// connections on every address given, reads and drops what they send, never
// answers, and keeps them until the peer closes. Its count of open
// connections is the proof that the proxy in front really dialled each one.
//
// argv[2]: JSON [{ host, port }, ...]
// IPC in:  { cmd: 'count' | 'stop' }
// IPC out: { type: 'ready' } and { type: 'count', accepted, open }
import net from 'node:net';

const addresses = JSON.parse(process.argv[2] ?? '[]') as { host: string; port: number }[];
const send = (m: object): void => void process.send?.(m);
let accepted = 0;
const open = new Set<net.Socket>();

const servers = addresses.map(
  (a) =>
    new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer((c) => {
        accepted++;
        open.add(c);
        c.on('data', () => {});
        c.on('error', () => {});
        c.on('close', () => open.delete(c));
      });
      s.once('error', reject);
      s.listen({ host: a.host, port: a.port, backlog: 4096 }, () => resolve(s));
    }),
);
await Promise.all(servers);

process.on('message', (m: { cmd?: string }) => {
  if (m.cmd === 'count') send({ type: 'count', accepted, open: open.size });
  else if (m.cmd === 'stop') {
    for (const c of open) c.destroy();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
