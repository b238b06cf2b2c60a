// Flows that say which link they left by, for `bench balance` and the e2e
// links test. Run inside a lab namespace (`ip netns exec NS node
// balance-child.js ...`).
//
//   server ADDR PORT
//     TCP: answers every line a connection sends with the source address it
//     sees (after the router's NAT: which link the flow took).
//   client ADDR PORT FLOWS ROUNDS CONCURRENCY
//     FLOWS connections, CONCURRENCY at a time, each sending ROUNDS lines
//     20 ms apart on the one connection and reading the answers. A flow whose
//     answers name two sources changed link mid-life; one that broke failed.
// stdout: `ready` (server), or one JSON line (client):
//   {"flows":N,"bySource":{"10.99.2.2":n,...},"changed":n,"failed":n,"ms":n}
import net from 'node:net';

const [mode, addr, portS, flowsS, roundsS, concS] = process.argv.slice(2);
const port = Number(portS);
if ((mode !== 'server' && mode !== 'client') || !addr || !port) {
  process.stderr.write('usage: balance-child.js server ADDR PORT | client ADDR PORT FLOWS ROUNDS CONCURRENCY\n');
  process.exit(2);
}

const unmap = (a: string | undefined): string => (a && a.startsWith('::ffff:') ? a.slice(7) : (a ?? ''));

if (mode === 'server') {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    let buf = '';
    s.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        buf = buf.slice(i + 1);
        s.write(`${unmap(s.remoteAddress)}\n`);
      }
    });
  });
  server.listen({ host: addr, port }, () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => {
    server.close();
    process.exit(0);
  });
} else {
  const flows = Number(flowsS);
  const rounds = Number(roundsS);
  const conc = Number(concS);
  const bySource: Record<string, number> = {};
  let changed = 0;
  let failed = 0;
  let started = 0;
  const t0 = Date.now();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const seen: string[] = [];
      const s = net.connect({ host: addr, port });
      let buf = '';
      let sent = 0;
      const timer = setTimeout(() => s.destroy(new Error('timeout')), 10_000);
      const send = (): void => {
        sent++;
        s.write('x\n');
      };
      s.on('connect', send);
      s.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          seen.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
        if (seen.length === rounds) s.end();
        else if (seen.length === sent) setTimeout(send, 20);
      });
      const done = (): void => {
        clearTimeout(timer);
        if (seen.length < rounds) failed++;
        else {
          if (new Set(seen).size > 1) changed++;
          bySource[seen[0]!] = (bySource[seen[0]!] ?? 0) + 1;
        }
        resolve();
      };
      s.on('error', () => undefined);
      s.on('close', done);
    });
  const worker = async (): Promise<void> => {
    while (started < flows) {
      started++;
      await one();
    }
  };
  void Promise.all(Array.from({ length: conc }, worker)).then(() => {
    process.stdout.write(JSON.stringify({ flows, bySource, changed, failed, ms: Date.now() - t0 }) + '\n');
  });
}
