// Echo web server for the namespace lab (lab/lab.ts). Plain JS so it runs
// as its own process inside a namespace without a TypeScript loader:
//
//   ip netns exec NS node lab/echo-server.mjs 10.99.9.9 fd99:9::9
//
// It listens on port 80 (ECHO_PORT overrides) on each address given, each bound
// to that exact address so IPv4 peers are never shown as ::ffff:-mapped, and
// answers every request with one line of JSON:
//
//   {"remote":"<source address it sees>","host":"<Host header>","local":"<address it was reached on>","sni":"<TLS server name>"}
//
// With ECHO_TLS_DIR (a directory holding cert.pem and key.pem) it also serves
// HTTPS on port 443 (ECHO_TLS_PORT overrides), with the SNI it saw in `sni`.
//
// The source address tells which path a request took. It prints `ready` on
// stdout once every address is bound, and exits 0 on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';

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
      sni: req.socket.servername || '',
    }) + '\n';
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
}

const tlsDir = process.env.ECHO_TLS_DIR;
const tlsPort = Number(process.env.ECHO_TLS_PORT ?? 443);
const tlsOpts = tlsDir ? { cert: readFileSync(join(tlsDir, 'cert.pem')), key: readFileSync(join(tlsDir, 'key.pem')) } : null;
const listeners = addrs.flatMap((addr) => [
  { addr, port, make: () => http.createServer(handler) },
  ...(tlsOpts ? [{ addr, port: tlsPort, make: () => https.createServer(tlsOpts, handler) }] : []),
]);
const servers = [];
let pending = listeners.length;
for (const l of listeners) {
  const server = l.make();
  server.on('error', (err) => {
    process.stderr.write(`echo-server: ${l.addr}:${l.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ host: l.addr, port: l.port, ipv6Only: l.addr.includes(':') }, () => {
    pending -= 1;
    if (pending === 0) process.stdout.write(`ready ${addrs.join(' ')} port ${port}${tlsOpts ? ` tls ${tlsPort}` : ''}\n`);
  });
  servers.push(server);
}

const stop = () => {
  for (const s of servers) s.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
