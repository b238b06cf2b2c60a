// Echo web server for the namespace lab (test/lab/lab.ts). Plain JS so it runs
// as its own process inside a namespace without a TypeScript loader:
//
//   ip netns exec NS node test/lab/echo-server.mjs 10.99.9.9 fd99:9::9
//
// It listens on port 80 (ECHO_PORT overrides) on each address given, each bound
// to that exact address so IPv4 peers are never shown as ::ffff:-mapped, and
// answers every request with one line of JSON:
//
//   {"remote":"<source address it sees>","host":"<Host header>","local":"<address it was reached on>"}
//
// The source address tells which path a request took. It prints `ready` on
// stdout once every address is bound, and exits 0 on SIGTERM/SIGINT.
import http from 'node:http';

const addrs = process.argv.slice(2);
const port = Number(process.env.ECHO_PORT ?? 80);
if (addrs.length === 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: echo-server.mjs ADDR... (ECHO_PORT=80)\n');
  process.exit(2);
}

const unmap = (a) => (a && a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : (a ?? ''));

function handler(req, res) {
  const body =
    JSON.stringify({
      remote: unmap(req.socket.remoteAddress),
      host: req.headers.host ?? '',
      local: unmap(req.socket.localAddress),
    }) + '\n';
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
}

const servers = [];
let pending = addrs.length;
for (const addr of addrs) {
  const server = http.createServer(handler);
  server.on('error', (err) => {
    process.stderr.write(`echo-server: ${addr}:${port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ host: addr, port, ipv6Only: addr.includes(':') }, () => {
    pending -= 1;
    if (pending === 0) process.stdout.write(`ready ${addrs.join(' ')} port ${port}\n`);
  });
  servers.push(server);
}

const stop = () => {
  for (const s of servers) s.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
