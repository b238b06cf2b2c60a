// The dashboard's HTTP(S) server (web.listen): the static bundle built by
// esbuild from web/ (dist/web-assets), and a JSON API over the same handlers
// the control socket has. It changes routing, so:
//
// - every API call needs a session (an HttpOnly SameSite=Strict cookie from
//   POST /api/login), except the read-only ones when web.publicRead says so;
// - every change (POST) carries the session's CSRF token in X-CSRF-Token and,
//   when the browser sends one, an Origin of this very server;
// - password guesses are rate-limited (auth.ts);
// - the Host header must be an IP literal, localhost or a LAN-style name
//   (.lan, .local, .home.arpa, .internal, one label): a DNS-rebinding page
//   (attacker.example resolved to the router) gets 421, never data;
// - CSP without inline script (`script-src 'self'`), frame-ancestors 'none',
//   nosniff, no referrer; API answers are never cached.
//
// The live query log is server-sent events: new records every half second,
// filtered here (client, name, path) so a browser gets only what it shows.
// A stream lives no longer than its session: when that ends (logout,
// password change, expiry) it gets a `session-ended` event and is closed.
//
// A 401 says why in `session` (logout, password, expired, unknown) and its
// error text, so the page can tell the user why it asks for the password again.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Clock, Logger } from '../../lib/logger.js';
import { isIP } from 'node:net';
import { logQueryOf, type ControlHandlers } from '../control/server.js';
import type { LogQuery } from '../control/protocol.js';
import { LoginLimiter, sameToken, SESSION_END_TEXT, Sessions, type SessionEnd } from './auth.js';
import type { HealthHistory } from './history.js';
import { verifyPassword } from './password.js';
import { formatExplain } from '../explain.js';

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

const MAX_BODY = 16 * 1024;
const MAX_STREAMS = 16;
const STREAM_POLL_MS = 500;
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon' };

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/** Where the bundle is: dist/web-assets beside the built daemon (dist/daemon/web/), or under dist/ when run from the sources (tests). */
export function assetsDir(): string {
  const built = fileURLToPath(new URL('../../web-assets/', import.meta.url));
  return built.includes('/dist/') ? built : fileURLToPath(new URL('../../dist/web-assets/', import.meta.url));
}

export async function loadAssets(dir: string): Promise<Map<string, Asset>> {
  const out = new Map<string, Asset>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    throw Object.assign(new Error(`the dashboard's files are missing (${dir}): build them with npm run build`), { code: 'SPLITWAN_WEB_ASSETS' });
  }
  for (const n of names) {
    const type = TYPES[extname(n)];
    if (type === undefined) continue;
    const body = await readFile(join(dir, n));
    out.set(`/${n}`, { type, body, gzip: gzipSync(body, { level: 9 }), etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
  }
  if (!out.has('/index.html')) throw Object.assign(new Error(`the dashboard's files are incomplete (${dir}/index.html missing): npm run build`), { code: 'SPLITWAN_WEB_ASSETS' });
  return out;
}

/** A Host header a browser on the LAN would send (see the top of this file). */
export function allowedHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const h = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  if (isIP(h) !== 0) return true;
  const name = h.toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(name)) return false;
  return name === 'localhost' || !name.includes('.') || /\.(lan|local|home\.arpa|internal|localhost)$/.test(name);
}

export interface WebSettings {
  passwordHash: string | null;
  publicRead: boolean;
}

export interface WebServerDeps {
  handlers: ControlHandlers;
  history: Pick<HealthHistory, 'list'>;
  settings: () => WebSettings;
  assets: Map<string, Asset>;
  clock: Clock;
  logger: Logger;
  /** PEM texts: serve HTTPS. */
  tls?: { cert: string; key: string } | null;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    /** More fields of the JSON answer besides `error`. */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Why a request without a live session is refused: `session` null when no cookie was sent. */
function sessionGone(why: SessionEnd | null): { error: string; session: SessionEnd | null } {
  return { error: why === null ? 'log in first' : SESSION_END_TEXT[why], session: why };
}

function unauthorized(why: SessionEnd | null): HttpError {
  const { error, session } = sessionGone(why);
  return new HttpError(401, error, {}, { session });
}

function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request body too large'));
        req.destroy();
        return;
      }
      chunks.push(d);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text === '') return resolve({});
      const type = req.headers['content-type'] ?? '';
      try {
        if (type.startsWith('application/x-www-form-urlencoded')) return resolve(Object.fromEntries(new URLSearchParams(text)));
        const v = JSON.parse(text) as unknown;
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new HttpError(400, 'the body must be a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

function cookieOf(req: http.IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return null;
}

export class WebServer {
  private server: http.Server | https.Server | null = null;
  readonly sessions: Sessions;
  private readonly logins: LoginLimiter;
  private readonly streams = new Set<http.ServerResponse>();
  private readonly cookie: string;
  private lastHash: string | null = null;

  constructor(private readonly d: WebServerDeps) {
    this.sessions = new Sessions(d.clock);
    this.logins = new LoginLimiter(d.clock);
    // __Host-: the browser refuses it from anything but this origin over HTTPS, with Path=/ and no Domain.
    this.cookie = d.tls ? '__Host-splitwan' : 'splitwan_session';
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.route(req, res);
    const server = this.d.tls ? https.createServer({ cert: this.d.tls.cert, key: this.d.tls.key, minVersion: 'TLSv1.2' }, handler) : http.createServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(Object.assign(new Error(`the dashboard cannot listen on ${host}:${port}: ${e.code ?? e.message}`), { code: 'SPLITWAN_WEB_LISTEN' })));
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
    server.on('error', (e) => this.d.logger.warn({ err: e }, 'dashboard server error'));
    this.server = server;
    return { host, port: (server.address() as net.AddressInfo).port };
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.end();
    this.streams.clear();
    const s = this.server;
    this.server = null;
    if (s === null) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Sessions made with another password end when it changes. */
  private settings(): WebSettings {
    const st = this.d.settings();
    if (st.passwordHash !== this.lastHash) {
      if (this.lastHash !== null) this.sessions.clear();
      this.lastHash = st.passwordHash;
    }
    return st;
  }

  private send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }

  private sendAsset(req: http.IncomingMessage, res: http.ServerResponse, a: Asset): void {
    const headers: Record<string, string> = { ...SECURITY_HEADERS, 'content-type': a.type, 'cache-control': 'no-cache', etag: a.etag, vary: 'accept-encoding' };
    // Browsers honour these only from a trustworthy origin (HTTPS), and complain otherwise.
    if (this.d.tls) Object.assign(headers, { 'strict-transport-security': 'max-age=31536000', 'cross-origin-opener-policy': 'same-origin' });
    if (req.headers['if-none-match'] === a.etag) {
      res.writeHead(304, headers);
      return void res.end();
    }
    const gz = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gz ? a.gzip : a.body;
    res.writeHead(200, { ...headers, ...(gz ? { 'content-encoding': 'gzip' } : {}), 'content-length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      if (!allowedHost(req.headers.host)) throw new HttpError(421, 'this dashboard answers only to its address or a LAN name (DNS rebinding protection)');
      const url = new URL(req.url ?? '/', 'http://dashboard');
      const method = req.method ?? 'GET';
      if (!url.pathname.startsWith('/api/')) {
        if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method not allowed');
        const a = this.d.assets.get(url.pathname === '/' ? '/index.html' : url.pathname);
        if (a === undefined) throw new HttpError(404, 'not found');
        return this.sendAsset(req, res, a);
      }
      await this.api(req, res, url, method);
    } catch (e) {
      if (e instanceof HttpError) return this.send(res, e.status, { error: e.message, ...e.extra }, e.headers);
      const err = e as Error & { code?: unknown };
      const code = typeof err.code === 'string' && err.code.startsWith('SPLITWAN_') ? err.code : null;
      if (code === null) this.d.logger.warn({ err: e }, 'dashboard request failed');
      this.send(res, code === null ? 500 : 400, { error: err.message, ...(code ? { code } : {}) });
    }
  }

  private async api(req: http.IncomingMessage, res: http.ServerResponse, url: URL, method: string): Promise<void> {
    const st = this.settings();
    const token = cookieOf(req, this.cookie);
    const session = this.sessions.get(token);
    const route = `${method} ${url.pathname}`;
    if (method === 'POST') this.checkOrigin(req);

    if (route === 'GET /api/session') return this.send(res, 200, { authenticated: session !== null, ...(session ? { csrf: session.csrf } : {}), publicRead: st.publicRead, passwordSet: st.passwordHash !== null });
    if (route === 'POST /api/login') return this.login(req, res, st);

    if (method === 'POST') {
      if (session === null) throw unauthorized(this.sessions.why(token));
      const sent = req.headers['x-csrf-token'];
      if (typeof sent !== 'string' || !sameToken(sent, session.csrf)) throw new HttpError(403, 'missing or wrong CSRF token');
      const body = await readBody(req);
      const h = this.d.handlers;
      switch (url.pathname) {
        case '/api/logout':
          this.sessions.end(token);
          return this.send(res, 200, { ok: true }, { 'set-cookie': this.setCookie('', 0) });
        case '/api/select': {
          const g = body.gateway;
          if (g !== null && typeof g !== 'string') throw new HttpError(400, 'gateway must be a name or null (auto)');
          return this.send(res, 200, await h.select(g));
        }
        case '/api/reload':
          // The config file only: a browser never makes the daemon read another file.
          if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw new HttpError(400, 'dryRun must be true or false');
          return this.send(res, 200, await h.reload(body.dryRun === true));
        case '/api/lists/refresh':
          return this.send(res, 200, await h.refreshLists());
        case '/api/dns/flush':
          return this.send(res, 200, h.flushDns());
        default:
          throw new HttpError(404, `no such request: ${route}`);
      }
    }
    if (method !== 'GET') throw new HttpError(405, 'method not allowed');
    if (session === null && !st.publicRead) throw unauthorized(this.sessions.why(token));
    const h = this.d.handlers;
    switch (url.pathname) {
      case '/api/status':
        return this.send(res, 200, await h.status());
      case '/api/history':
        return this.send(res, 200, { samples: this.d.history.list() });
      case '/api/rules':
        return this.send(res, 200, h.rules());
      case '/api/log':
        return this.send(res, 200, h.queryLog(this.logQuery(url)));
      case '/api/log/stream':
        return this.stream(req, res, this.logQuery(url), token);
      case '/api/explain': {
        const q = url.searchParams.get('q');
        if (!q || q.length > 255) throw new HttpError(400, 'explain needs ?q=NAME|IP');
        const source = url.searchParams.get('source');
        const r = await h.explain(q, source ? source : undefined);
        // `text`: what `splitwan explain` prints, so the page says exactly the same.
        return this.send(res, 200, { ...r, text: formatExplain(r) });
      }
      default:
        throw new HttpError(404, `no such request: ${route}`);
    }
  }

  private logQuery(url: URL): LogQuery {
    try {
      return logQueryOf(url.searchParams);
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
  }

  /** A POST from a page of another origin is refused even before its session is looked at. */
  private checkOrigin(req: http.IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin === undefined) return; // not a browser's cross-site request (curl, tests); the CSRF token still applies
    let host: string;
    try {
      host = new URL(origin).host;
    } catch {
      throw new HttpError(403, 'bad Origin');
    }
    if (host !== req.headers.host) throw new HttpError(403, `a request from another origin (${origin}) is refused`);
  }

  private setCookie(value: string, maxAgeS: number | null): string {
    return [`${this.cookie}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', ...(this.d.tls ? ['Secure'] : []), ...(maxAgeS !== null ? [`Max-Age=${maxAgeS}`] : [])].join('; ');
  }

  private async login(req: http.IncomingMessage, res: http.ServerResponse, st: WebSettings): Promise<void> {
    const body = await readBody(req);
    const client = (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
    if (st.passwordHash === null) throw new HttpError(403, 'no password is set: run splitwan web passwd on the router');
    const password = body.password;
    if (typeof password !== 'string' || password.length === 0 || password.length > 1024) throw new HttpError(400, 'password missing');
    const wait = this.logins.admit(client);
    if (wait !== null) {
      this.d.logger.warn({ client }, 'dashboard login refused: too many attempts');
      throw new HttpError(429, 'too many login attempts: wait and try again', { 'retry-after': String(Math.ceil(wait / 1000)) });
    }
    let ok = false;
    try {
      ok = await verifyPassword(password, st.passwordHash);
    } finally {
      this.logins.done(client, ok);
    }
    if (!ok) {
      this.d.logger.warn({ client }, 'dashboard login failed: wrong password');
      throw new HttpError(401, 'wrong password');
    }
    const s = this.sessions.create();
    this.d.logger.info({ client }, 'dashboard login');
    this.send(res, 200, { authenticated: true, csrf: s.csrf }, { 'set-cookie': this.setCookie(s.token, null) });
  }

  /** Server-sent events: the newest matching records at once, then what arrives, every STREAM_POLL_MS. */
  private stream(req: http.IncomingMessage, res: http.ServerResponse, q: LogQuery, token: string | null): void {
    if (this.streams.size >= MAX_STREAMS) throw new HttpError(503, 'too many live views open');
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' });
    this.streams.add(res);
    const h = this.d.handlers;
    const first = h.queryLog({ ...q, limit: Math.min(q.limit, 200) });
    let next = first.next;
    res.write(`event: entries\ndata: ${JSON.stringify(first)}\n\n`);
    let quiet = 0;
    let timer: unknown = null;
    const tick = (): void => {
      if (!this.streams.has(res)) return;
      // The session may have ended since the last tick (a logout elsewhere, a new password, expiry): then
      // no more records, and the page is told why. EventSource cannot read a 401, so it is said in the stream.
      if (!this.settings().publicRead && !this.sessions.alive(token)) {
        res.end(`event: session-ended\ndata: ${JSON.stringify(sessionGone(this.sessions.why(token)))}\n\n`);
        this.streams.delete(res);
        return;
      }
      const r = h.queryLog({ ...q, since: next, limit: 500 });
      next = r.next;
      if (r.entries.length > 0 || r.missed > 0) {
        res.write(`event: entries\ndata: ${JSON.stringify(r)}\n\n`);
        quiet = 0;
      } else if (++quiet * STREAM_POLL_MS >= 15_000) {
        res.write(': keep-alive\n\n');
        quiet = 0;
      }
      timer = this.d.clock.setTimeout(tick, STREAM_POLL_MS);
    };
    timer = this.d.clock.setTimeout(tick, STREAM_POLL_MS);
    req.on('close', () => {
      this.streams.delete(res);
      if (timer !== null) this.d.clock.clearTimeout(timer);
    });
  }
}
