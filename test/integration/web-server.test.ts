// The dashboard's server (daemon/web/server.ts) on a real socket on
// 127.0.0.1, with the built bundle (dist/web-assets), a real query log and
// control handlers that record what they were asked: what a browser (or an
// attacker's page) gets back — headers, cookies, refusals.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, systemClock } from '../../lib/logger.js';
import { QueryLog } from '../../dns/query-log.js';
import { TYPE } from '../../dns/wire.js';
import type { ControlHandlers } from '../../daemon/control/server.js';
import type { LogQuery } from '../../daemon/control/protocol.js';
import { readLog } from '../../daemon/query-log-view.js';
import { hashPassword } from '../../daemon/web/password.js';
import { allowedHost, assetsDir, loadAssets, WebServer, type WebSettings } from '../../daemon/web/server.js';
import { IDLE_MS, PER_CLIENT_FAILURES } from '../../daemon/web/auth.js';
import type { Clock } from '../../lib/logger.js';

const PASSWORD = 'correct horse battery';
let hash: string;
beforeAll(async () => {
  if (!existsSync(`${assetsDir()}/index.html`)) throw new Error(`${assetsDir()} is missing: run npm run build first`);
  hash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 }); // cheap for tests; the real one is 2^15
});

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: () => Record<string, unknown>;
}
function request(port: number, method: string, path: string, o: { headers?: Record<string, string>; body?: unknown } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { host: `127.0.0.1:${port}`, ...(payload ? { 'content-type': 'application/json' } : {}), ...o.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as Record<string, unknown> });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const servers: WebServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function start(settings: Partial<WebSettings> = {}, tls: { cert: string; key: string } | null = null, clock: Clock = systemClock) {
  const log = new QueryLog(systemClock, { privacy: 'full', size: 100 });
  const asked: string[] = [];
  const handlers = {
    status: () => ({ active: 'gw1' }),
    select: (g: string | null) => (asked.push(`select ${g}`), { active: g ?? 'gw1', pinned: g }),
    reload: async (dryRun: boolean, file?: string) => (asked.push(`reload ${dryRun} ${file ?? '-'}`), { status: dryRun ? 'dry-run' : 'applied', issues: [], changes: ['rule 0 changed'] }),
    explain: (q: string) => ({ input: q, kind: 'name', via: 'breakout', candidates: ['breakout'], rule: 0, ruleLabel: 'video', match: null, rulePos: null }),
    refreshLists: async () => ({ lists: [] }),
    flushDns: () => ({ flushed: 0 }),
    queryLog: (q: LogQuery) => readLog(log, null, q),
    rules: () => ({ rules: [], default: { via: ['tunnel'], hits: 0 }, lists: [] }),
    // A partial fake: the server only passes these through (unknown: the shapes are the handlers', not tested here).
  } as unknown as ControlHandlers;
  const st: WebSettings = { passwordHash: hash, publicRead: false, ...settings };
  const server = new WebServer({ handlers, history: { list: () => [] }, settings: () => st, assets: await loadAssets(assetsDir()), clock, logger: silentLogger, tls });
  servers.push(server);
  const { port } = await server.listen('127.0.0.1', 0);
  const login = async (password = PASSWORD): Promise<{ cookie: string; csrf: string; res: Res }> => {
    const res = await request(port, 'POST', '/api/login', { body: { password } });
    const cookie = (res.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
    return { cookie, csrf: String(res.json().csrf ?? ''), res };
  };
  return { port, log, asked, login, st };
}

describe('dashboard server', () => {
  it('serves the bundle with a CSP that allows no inline script, no framing, gzip when asked', async () => {
    const { port } = await start();
    const index = await request(port, 'GET', '/');
    expect(index.status).toBe(200);
    expect(index.headers['content-security-policy']).toContain("script-src 'self'");
    expect(index.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(index.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(index.headers['x-frame-options']).toBe('DENY');
    expect(index.headers['x-content-type-options']).toBe('nosniff');
    expect(index.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // every script is a file
    expect(index.body).not.toMatch(/https?:\/\//); // nothing from elsewhere
    const js = await request(port, 'GET', '/app.js', { headers: { 'accept-encoding': 'gzip' } });
    expect([js.status, js.headers['content-encoding'], js.headers['content-type']]).toEqual([200, 'gzip', 'text/javascript; charset=utf-8']);
    expect((await request(port, 'GET', '/../package.json')).status).toBe(404);
  });

  it('without a session: reads and changes are refused; with publicRead only reads pass', async () => {
    const closed = await start();
    expect((await request(closed.port, 'GET', '/api/status')).status).toBe(401);
    expect((await request(closed.port, 'GET', '/api/log')).status).toBe(401);
    expect((await request(closed.port, 'GET', '/api/session')).json()).toEqual({ authenticated: false, publicRead: false, passwordSet: true });
    const open = await start({ publicRead: true });
    expect((await request(open.port, 'GET', '/api/status')).json()).toEqual({ active: 'gw1' });
    expect((await request(open.port, 'POST', '/api/select', { body: { gateway: 'gw2' } })).status).toBe(401);
    expect(open.asked).toEqual([]);
  });

  it('a wrong password is refused; the right one gives an HttpOnly SameSite=Strict session whose changes need the CSRF token', async () => {
    const { port, asked, login } = await start();
    const wrong = await login('wrong password');
    expect([wrong.res.status, wrong.res.headers['set-cookie']]).toEqual([401, undefined]);
    const { cookie, csrf, res } = await login();
    expect(res.status).toBe(200);
    expect(res.headers['set-cookie']![0]).toMatch(/^splitwan_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    expect((await request(port, 'GET', '/api/status', { headers: { cookie } })).status).toBe(200);
    // No token, a wrong one, another origin: refused, nothing done.
    expect((await request(port, 'POST', '/api/select', { headers: { cookie }, body: { gateway: 'gw2' } })).status).toBe(403);
    expect((await request(port, 'POST', '/api/select', { headers: { cookie, 'x-csrf-token': csrf.replace(/./, (c) => (c === 'A' ? 'B' : 'A')) }, body: { gateway: 'gw2' } })).status).toBe(403);
    const cross = await request(port, 'POST', '/api/select', { headers: { cookie, 'x-csrf-token': csrf, origin: 'http://evil.example' }, body: { gateway: 'gw2' } });
    expect(cross.status).toBe(403);
    expect(asked).toEqual([]);
    const ok = await request(port, 'POST', '/api/select', { headers: { cookie, 'x-csrf-token': csrf, origin: `http://127.0.0.1:${port}` }, body: { gateway: 'gw2' } });
    expect([ok.status, ok.json()]).toEqual([200, { active: 'gw2', pinned: 'gw2' }]);
    // A reload from the browser is of the config file only, whatever the body says.
    await request(port, 'POST', '/api/reload', { headers: { cookie, 'x-csrf-token': csrf }, body: { dryRun: true, file: '/etc/shadow' } });
    expect(asked).toEqual(['select gw2', 'reload true -']);
    // Logging out ends the session.
    expect((await request(port, 'POST', '/api/logout', { headers: { cookie, 'x-csrf-token': csrf } })).status).toBe(200);
    expect((await request(port, 'GET', '/api/status', { headers: { cookie } })).status).toBe(401);
  });

  it('limits password guesses per client: after the limit even the right password waits', async () => {
    const { login } = await start();
    for (let i = 0; i < PER_CLIENT_FAILURES; i++) expect((await login(`guess ${i}`)).res.status).toBe(401);
    const limited = await login();
    expect(limited.res.status).toBe(429);
    expect(Number(limited.res.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.res.headers['set-cookie']).toBeUndefined();
  });

  it('a changed password ends every session', async () => {
    const { port, login, st } = await start();
    const { cookie } = await login();
    expect((await request(port, 'GET', '/api/status', { headers: { cookie } })).status).toBe(200);
    st.passwordHash = await hashPassword('another password', { N: 1024, r: 8, p: 1 });
    expect((await request(port, 'GET', '/api/status', { headers: { cookie } })).status).toBe(401);
  });

  it('refuses Host names a DNS-rebinding page would send', async () => {
    const { port } = await start({ publicRead: true });
    expect((await request(port, 'GET', '/api/status', { headers: { host: 'evil.example' } })).status).toBe(421);
    expect((await request(port, 'GET', '/', { headers: { host: 'rebind.attacker.test:8080' } })).status).toBe(421);
    for (const ok of ['192.168.1.1:8080', '[fd00::1]:8080', 'router', 'router.lan', 'gw.home.arpa', 'localhost:8080']) expect(allowedHost(ok), ok).toBe(true);
    for (const bad of ['evil.example', 'a.b.com', 'x y', '']) expect(allowedHost(bad), bad).toBe(false);
  });

  it('streams the query log as server-sent events: the newest first, then what arrives, filtered', async () => {
    const { port, log, login } = await start();
    const { cookie } = await login();
    log.record(systemClock.now(), '192.168.1.20', 'old.video.test', TYPE.A, null, 0, 'gw:gw2', false, ['198.51.100.1'], 0, 4, 'answered');
    const events: { entries: { name: string }[] }[] = [];
    const req = http.get({ host: '127.0.0.1', port, path: '/api/log/stream?path=gw:gw2', headers: { host: `127.0.0.1:${port}`, cookie } });
    const done = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
        let buf = '';
        res.on('data', (d: Buffer) => {
          buf += d.toString();
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = /^data: (.*)$/m.exec(ev)?.[1];
            if (data) events.push(JSON.parse(data) as { entries: { name: string }[] });
            if (events.length === 2) resolve();
          }
        });
      });
    });
    await new Promise((r) => setTimeout(r, 100));
    log.record(systemClock.now(), '192.168.1.20', 'skip.test', TYPE.A, null, 1, 'breakout', false, [], 0, 4, 'answered');
    log.record(systemClock.now(), '192.168.1.21', 'new.video.test', TYPE.A, null, 0, 'gw:gw2', false, ['198.51.100.2'], 0, 4, 'answered');
    await done;
    req.destroy();
    expect(events.map((e) => e.entries.map((x) => x.name))).toEqual([['old.video.test'], ['new.video.test']]);
  });
});

/** The live log's stream as a browser's EventSource reads it: the status, then each event until the server ends it. */
function openStream(port: number, cookie: string) {
  const events: { event: string; data: Record<string, unknown> }[] = [];
  let status = 0;
  let body = '';
  const req = http.get({ host: '127.0.0.1', port, path: '/api/log/stream', headers: { host: `127.0.0.1:${port}`, cookie } });
  const ended = new Promise<void>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      let buf = '';
      res.on('data', (d: Buffer) => {
        if (status !== 200) return void (body += d.toString());
        buf += d.toString();
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(ev)?.[1];
          if (data) events.push({ event: /^event: (.*)$/m.exec(ev)?.[1] ?? 'message', data: JSON.parse(data) as Record<string, unknown> });
        }
      });
      res.on('end', () => resolve());
    });
  });
  return { events, ended, req, status: () => status, json: () => JSON.parse(body) as Record<string, unknown> };
}

describe("the live log's stream when the session is gone", () => {
  it('answers 401 saying why, for a logged-out, an expired, an unknown session and none', async () => {
    let skew = 0;
    const clock: Clock = { ...systemClock, now: () => systemClock.now() + skew };
    const { port, login } = await start({}, null, clock);
    const out = await login();
    expect((await request(port, 'POST', '/api/logout', { headers: { cookie: out.cookie, 'x-csrf-token': out.csrf } })).status).toBe(200);
    const idle = await login();
    skew = IDLE_MS + 1000;
    const cases: [string, string, string | null, RegExp][] = [
      ['logged out', out.cookie, 'logout', /logged out/],
      ['expired', idle.cookie, 'expired', /expired/],
      ['unknown (the daemon restarted)', 'splitwan_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'unknown', /no longer valid/],
      ['no cookie', '', null, /log in first/],
    ];
    for (const [what, cookie, session, text] of cases) {
      const s = openStream(port, cookie);
      await s.ended;
      expect(s.status(), what).toBe(401);
      expect(s.json(), what).toMatchObject({ session, error: expect.stringMatching(text) });
      expect(s.events, what).toEqual([]);
      // Every other call says the same.
      expect((await request(port, 'GET', '/api/status', { headers: cookie ? { cookie } : {} })).json(), what).toMatchObject({ session });
    }
  });

  it('an open stream whose session ends (a logout elsewhere, a new password) gets session-ended with the reason, then no records, and is closed', async () => {
    const { port, log, login, st } = await start();
    for (const [why, end] of [
      ['logout', async (a: { cookie: string; csrf: string }) => void (await request(port, 'POST', '/api/logout', { headers: { cookie: a.cookie, 'x-csrf-token': a.csrf } }))],
      ['password', async () => void (st.passwordHash = await hashPassword(`another password ${Math.random()}`, { N: 1024, r: 8, p: 1 }))],
    ] as const) {
      const a = await login(); // (the password changes last)
      const s = openStream(port, a.cookie);
      await until(() => s.events.length === 1, why); // the first batch, at once
      await end(a);
      log.record(systemClock.now(), '192.168.1.20', `after.${why}.test`, TYPE.A, null, 0, 'gw:gw2', false, ['198.51.100.3'], 0, 4, 'answered');
      // The server closes it (before the fix it streamed on for good).
      await Promise.race([s.ended, new Promise((_, reject) => setTimeout(() => reject(new Error(`the stream stayed open after the session ended (${why})`)), 5000))]);
      expect(s.status()).toBe(200);
      expect(s.events.map((e) => e.event)).toEqual(['entries', 'session-ended']);
      expect(s.events[1]!.data).toMatchObject({ session: why });
      expect(JSON.stringify(s.events)).not.toContain(`after.${why}.test`);
    }
  });
});

async function until(cond: () => boolean, what: string): Promise<void> {
  for (const end = Date.now() + 5000; !cond(); await new Promise((r) => setTimeout(r, 20))) if (Date.now() > end) throw new Error(`timed out: ${what}`);
}

describe('dashboard server over TLS (web.tls)', () => {
  it('serves HTTPS with HSTS, and its session cookie is __Host- and Secure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'splitwan-web-tls-'));
    try {
      // A self-signed certificate for 127.0.0.1, made by openssl as a user would.
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
      const { port } = await start({}, { cert, key: readFileSync(join(dir, 'key.pem'), 'utf8') });
      const ask = (method: string, path: string, body?: unknown): Promise<{ status: number; headers: http.IncomingHttpHeaders }> =>
        new Promise((resolve, reject) => {
          const payload = body === undefined ? undefined : JSON.stringify(body);
          const req = https.request({ host: '127.0.0.1', port, method, path, ca: cert, headers: { host: `127.0.0.1:${port}`, ...(payload ? { 'content-type': 'application/json' } : {}) } }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
          });
          req.on('error', reject);
          req.end(payload);
        });
      const index = await ask('GET', '/');
      expect([index.status, index.headers['strict-transport-security']]).toEqual([200, 'max-age=31536000']);
      const login = await ask('POST', '/api/login', { password: PASSWORD });
      expect(login.status).toBe(200);
      expect(login.headers['set-cookie']![0]).toMatch(/^__Host-splitwan=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
      // Plain HTTP to the TLS port gets nothing readable.
      await expect(request(port, 'GET', '/')).rejects.toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
