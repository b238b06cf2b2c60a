// The client of `npm run bench -- proxy`'s idle test: opens N TCP
// connections to one address, sends one HTTP request head on each (so a proxy
// that decides on the Host header decides and dials), reads and drops
// whatever comes back, and keeps them open until told to close them.
//
// IPC in:  { cmd: 'open', host, port, n, payload, concurrency } | { cmd: 'close' } | { cmd: 'stop' }
// IPC out: { type: 'ready' }, { type: 'opened', ok, failed, errors } (errors: up to 5 messages),
//          { type: 'closed', lingering } (lingering: sockets destroyed after 10 s without a close)
import net from 'node:net';

const send = (m: object): void => void process.send?.(m);
const sockets = new Set<net.Socket>();

function connectOne(host: string, port: number, payload: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.write(payload);
      sockets.add(s);
      resolve(null);
    });
    s.on('data', () => {});
    s.on('error', (e) => resolve(e.message)); // once connected, resolve() again is a no-op
    s.on('close', () => sockets.delete(s));
  });
}

async function openAll(host: string, port: number, n: number, payload: string, concurrency: number): Promise<void> {
  let next = 0;
  let ok = 0;
  const errors: string[] = [];
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      const err = await connectOne(host, port, payload);
      if (err === null) ok++;
      else errors.push(err);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  send({ type: 'opened', ok, failed: errors.length, errors: errors.slice(0, 5) });
}

async function closeAll(): Promise<void> {
  // A FIN each (the proxy passes it on and the server answers with its own); what has not closed in 10 s is destroyed.
  const all = [...sockets];
  const closed = Promise.all(all.map((s) => new Promise<void>((r) => (s.once('close', () => r()), s.end()))));
  await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
  const lingering = sockets.size;
  for (const s of sockets) s.destroy();
  send({ type: 'closed', lingering });
}

process.on('message', (m: { cmd?: string; host?: string; port?: number; n?: number; payload?: string; concurrency?: number }) => {
  if (m.cmd === 'open') void openAll(m.host!, m.port!, m.n!, m.payload!, m.concurrency ?? 200);
  else if (m.cmd === 'close') void closeAll();
  else if (m.cmd === 'stop') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
