// The client of `npm run bench -- failover`: one HTTP GET to the lab's echo
// server every INTERVAL ms, each on a fresh connection, each abandoned after
// TIMEOUT ms (so at most TIMEOUT / INTERVAL are in flight). Run inside the
// lab's client namespace (`ip netns exec NS node ...`).
//
// argv: URL INTERVAL_MS TIMEOUT_MS
// stdout, one line per request, in the order they finish:
//   <start> <end> ok <remote the server saw>
//   <start> <end> err <code>
// start and end are epoch ms with a fraction (performance.timeOrigin +
// performance.now(): the same clock as the bench's). First line: `ready`.
// Stops on SIGTERM (requests in flight are dropped, not reported).
import http from 'node:http';

const url = new URL(process.argv[2] ?? 'http://10.99.9.9/');
const intervalMs = Number(process.argv[3] ?? 100);
const timeoutMs = Number(process.argv[4] ?? 300);
const now = (): number => performance.timeOrigin + performance.now();

let stopping = false;
const out = (line: string): void => {
  if (!stopping) process.stdout.write(line + '\n');
};

function once(): void {
  const start = now();
  let done = false;
  const finish = (what: string): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    out(`${start.toFixed(1)} ${now().toFixed(1)} ${what}`);
  };
  const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => (body += d));
    res.on('end', () => {
      try {
        const remote = (JSON.parse(body) as { remote?: unknown }).remote;
        finish(typeof remote === 'string' && remote !== '' ? `ok ${remote}` : 'err BADREPLY');
      } catch {
        finish('err BADREPLY');
      }
    });
    res.on('error', (e: NodeJS.ErrnoException) => finish(`err ${e.code ?? 'RESPONSE'}`));
  });
  const timer = setTimeout(() => {
    finish('err TIMEOUT');
    req.destroy();
  }, timeoutMs);
  req.on('error', (e: NodeJS.ErrnoException) => finish(`err ${e.code ?? 'ERROR'}`));
}

const tick = setInterval(once, intervalMs);
process.on('SIGTERM', () => {
  stopping = true;
  clearInterval(tick);
  process.exit(0);
});
out('ready');
once();
