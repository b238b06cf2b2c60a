// A hotel's captive portal for the lab (test/e2e/laptop-portal.test.ts, bench/portal.ts), run in the
// isp namespace: node lab/portal-server.mjs PORTAL_ADDR PROBE_ADDR LOG_FILE LOGGED_IN_FILE
// Every request is answered 302 to http://portal.lab.test/login (on PORTAL_ADDR: the login page,
// 200); /login?accept=1 logs the guest in (LOGGED_IN_FILE is created: remove it to check out);
// once logged in, /generate_204 answers 204. Each request is logged to LOG_FILE as a JSON line
// (the source address it saw, the address it was reached on, Host, URL, User-Agent).
import http from 'node:http';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
const [portalAddr, probeAddr, logFile, loggedInFile] = process.argv.slice(2);
// Logged in while this file exists (the test checks the guest out by removing it).
const loggedIn = () => existsSync(loggedInFile);
const handler = (req, res) => {
  const local = req.socket.localAddress.replace(/^::ffff:/, '');
  appendFileSync(logFile, JSON.stringify({ remote: req.socket.remoteAddress.replace(/^::ffff:/, ''), local, host: req.headers.host, url: req.url, ua: req.headers['user-agent'] ?? '' }) + '\n');
  if (local === portalAddr && req.url.startsWith('/login')) {
    if (req.url.includes('accept=1')) { writeFileSync(loggedInFile, ''); res.end('welcome'); return; }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html><body>hotel login<form action="/login?accept=1"></form></body></html>');
    return;
  }
  if (loggedIn() && req.url === '/generate_204') { res.writeHead(204); res.end(); return; }
  res.writeHead(302, { location: 'http://portal.lab.test/login?from=' + encodeURIComponent(req.headers.host ?? '') });
  res.end();
};
let up = 0;
for (const a of [portalAddr, probeAddr]) http.createServer(handler).listen(80, a, () => { if (++up === 2) console.log('listening'); });
