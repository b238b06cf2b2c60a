// The dashboard in a real browser: Debian's headless Chromium, driven by
// puppeteer-core over a pipe, running INSIDE the lab's client namespace (a
// LAN client browsing its router), against `splitwan run` in the router:
//
//  [client] chromium, dig ── lan0 [router: splitwan run; web 10.99.1.1:8080] wan0 ── [isp] web 10.99.9.9
//                                  swg-<t>a ══ [gw1]          swg-<t>b ══ [gw2]
//
// What a user sees: the login form refuses a wrong password and takes the
// right one; the overview lists both gateways, and a failover in the lab
// (gw1 blackholed) shows there live; a query the lab client makes shows in
// the live query log with its rule and path, and its link explains it;
// select and reload's dry run work from the actions page; a change without
// the CSRF token is refused; web.listen on the router's WAN address is
// refused when applied; when the session ends under the live query log (a
// new password set with `splitwan web passwd`, a daemon restart) the login
// form takes its place saying why, and logging in brings the log back.
// Screenshots go to test/artifacts/web/.
// Needs root and chromium (CI installs it: .ci/run); otherwise SKIPPED, loudly.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'puppeteer-core';
import { launchChromium } from '../helpers/chromium.js';
import { createLab, labSupported, which, type Lab } from '../../lab/lab.js';
import { hashPassword } from '../../daemon/web/password.js';
import { labConfig, startDaemon, stopDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';
import type { StatusReport } from '../../daemon/control/protocol.js';

// The callbacks given to page.evaluate & co run in the page; this project's TypeScript has no DOM library, so what they touch is typed here.
declare const document: { querySelector(selector: string): { textContent: string | null } | null };
declare const location: { hash: string };
type PageElement = { innerText: string };

const support = labSupported();
const chromium = which('chromium');
const ready = support.ok && chromium !== null;
if (!ready) console.log(`SKIPPED test/e2e/web.test.ts: ${!support.ok ? support.why : 'no chromium (apt-get install --no-install-recommends chromium)'}`);

const root = join(import.meta.dirname, '..', '..');
const ARTIFACTS = join(root, 'test', 'artifacts', 'web');
const tag = `w${process.pid % 10000}`;
const GW = [`${tag}a`, `${tag}b`] as const;
const PASSWORD = 'lab dashboard password';
const PORT = 8080;

const RULES = [
  'rules:',
  '  - domains: [video.lab.test]',
  `    via: ${GW[1]}`,
  '    name: video',
  '  - domains: [out.lab.test]',
  '    via: breakout',
];
const TAIL = ['default: tunnel', 'health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 3, failbackHold: 2s }'];

describe.skipIf(!ready && !process.env.CI)('the dashboard in Chromium, against the lab', () => {
  let lab: Lab;
  let dir: string;
  let cfg: string;
  let daemon: Daemon | null = null;
  let browser: Browser | null = null;
  let page: Page;
  let pageErrors: string[] = [];
  let closeBrowser = async (): Promise<void> => {};
  let url: string;
  let hash: string;

  const config = (extra: string[] = []): string =>
    labConfig({ dir, ispResolver: lab.addr.ispResolver.v4, names: GW, lines: [...RULES, ...extra, ...TAIL, 'web:', `  listen: ${lab.addr.routerLan.v4}:${PORT}`, `  passwordHash: ${hash}`] });
  const status = async (): Promise<StatusReport> => {
    const r = await lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'status', '--json', '--socket', join(dir, 'control.sock')]);
    return JSON.parse(r.stdout) as StatusReport;
  };
  const shot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  };
  const textOf = (sel: string): Promise<string> => page.$eval(sel, (e) => (e as unknown as PageElement).innerText);

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    if (chromium === null) throw new Error('chromium is not installed (apt-get install --no-install-recommends chromium)');
    if (!existsSync(join(root, 'dist', 'web-assets', 'index.html'))) throw new Error('the dashboard bundle is missing: npm run build');
    mkdirSync(ARTIFACTS, { recursive: true });
    hash = await hashPassword(PASSWORD);
    lab = await createLab({ routerTunnels: false, names: { 'video.lab.test': '10.99.9.20', 'out.lab.test': '10.99.9.10' }, resolverTtl: 300 });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-web-${process.pid}-`));
    cfg = join(dir, 'config.yaml');
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    writeFileSync(cfg, config(), { mode: 0o600 });
    daemon = await startDaemon(lab.ns.router, cfg);
    await until(async () => (await status()).gateways.every((g) => g.state === 'up'), 20_000, 'both gateways up');
    url = `http://${lab.addr.routerLan.v4}:${PORT}/`;
    const b = await launchChromium({ chromium: chromium!, ns: lab.ns.client, dir, dashboard: lab.addr.routerLan.v4 });
    browser = b.browser;
    page = b.page;
    pageErrors = b.errors;
    closeBrowser = b.close;
  }, 120_000);

  afterAll(() => {
    if (pageErrors.length) console.log(`page errors:\n${pageErrors.join('\n')}`);
  });

  afterAll(async () => {
    try {
      await closeBrowser();
    } finally {
      await teardown({ daemon, lab, dir });
    }
  }, 60_000);

  it('refuses a wrong password at the login form; the right one opens the overview with both gateways', async () => {
    await page.goto(url, { waitUntil: 'networkidle0' });
    await page.waitForSelector('[data-testid=login] input[type=password]');
    expect(await page.$$eval('form[data-testid=login] input', (l) => l.length)).toBe(1); // one password field
    await page.type('input[type=password]', 'not the password');
    await page.click('form[data-testid=login] button[type=submit]');
    await page.waitForSelector('[data-testid=login-error]');
    expect(await textOf('[data-testid=login-error]')).toBe('wrong password');
    await shot('login-refused');

    await page.type('input[type=password]', PASSWORD);
    await page.click('form[data-testid=login] button[type=submit]');
    await page.waitForSelector(`[data-testid=path-gw-${GW[1]}]`);
    const rows = await page.$$eval('[data-testid=paths] tbody tr', (trs) => trs.map((t) => (t as unknown as PageElement).innerText));
    expect(rows).toHaveLength(3);
    expect(rows[1]).toMatch(new RegExp(`★ gw:${GW[0]} .*\\bup\\b`));
    expect(rows[2]).toMatch(new RegExp(`gw:${GW[1]} .*\\bup\\b`));
    expect(await textOf('[data-testid=active]')).toContain(`Tunnel path: ${GW[0]}`);
    const cookies = await browser!.cookies();
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual([['splitwan_session', true, 'Strict']]);
    await shot('overview');
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it('the live query log shows a query the lab client makes, with its rule and path; its link explains it', async () => {
    await page.goto(`${url}#/log`, { waitUntil: 'networkidle2' }).catch(() => undefined); // the event stream never idles
    await page.waitForFunction(() => document.querySelector('[data-testid=log-note]')?.textContent?.startsWith('live'), { timeout: 10_000 });
    const d = await lab.exec(lab.ns.client, ['dig', '+short', '+tries=2', '+time=3', `@${lab.addr.routerLan.v4}`, 'video.lab.test']);
    expect(d.stdout.trim()).toBe('10.99.9.20');
    const row = await page.waitForSelector('[data-testid=log-row][data-name="video.lab.test"]', { timeout: 10_000 });
    const text = await row!.evaluate((e) => (e as unknown as PageElement).innerText);
    expect(text).toContain(lab.addr.client.v4);
    expect(text).toContain('#0 video');
    expect(text).toContain(`gw:${GW[1]}`);
    expect(text).toContain('10.99.9.20');
    await shot('query-log');

    // `splitwan log` on the router says the same, through the control socket.
    const cli = await lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'log', '--json', '--name', 'video.lab.test', '--client', lab.addr.client.v4, '--socket', join(dir, 'control.sock')]);
    const records = cli.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; client: string; rule: number; ruleLabel: string; path: string; answers: string[] });
    expect(records.at(-1)).toMatchObject({ name: 'video.lab.test', client: lab.addr.client.v4, rule: 0, ruleLabel: 'video', path: `gw:${GW[1]}`, answers: ['10.99.9.20'] });
    const lines = await lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'log', '--path', `gw:${GW[1]}`, '--socket', join(dir, 'control.sock')]);
    expect(lines.stdout).toMatch(new RegExp(`${lab.addr.client.v4.replace(/\./g, '\\.')}  A video\\.lab\\.test  → gw:${GW[1]} \\(rule 0 "video"\\)  10\\.99\\.9\\.20`));

    await page.click('[data-testid=log-row][data-name="video.lab.test"] a');
    await page.waitForSelector('[data-testid=explain-result]', { timeout: 10_000 });
    expect(await textOf('[data-testid=explain-via]')).toBe(GW[1]); // as `splitwan explain` names it
    expect(await textOf('[data-testid=explain-rule]')).toBe('#0 video');
    expect(await textOf('[data-testid=explain-result] pre')).toContain('10.99.9.20');
    await shot('explain');

    // The rules page counts the query under its rule.
    await page.goto(`${url}#/rules`);
    await page.waitForSelector('[data-testid=rules] tbody tr');
    const first = await textOf('[data-testid=rules] tbody tr');
    expect(first).toMatch(new RegExp(`^0\\s+video\\s+gw:${GW[1]}\\s+[1-9]`));
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it('a change without the CSRF token is refused, and so is one from another origin', async () => {
    const before = (await status()).pinned;
    const r = await page.evaluate(async (gw) => {
      const res = await fetch('/api/select', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ gateway: gw }) });
      return { status: res.status, body: await res.text() };
    }, GW[1]);
    expect(r.status).toBe(403);
    expect(r.body).toContain('CSRF');
    // A page of another origin posting a form to the dashboard: the Strict cookie is not sent, and the Origin is refused.
    const other = await browser!.newPage();
    try {
      await other.goto(`data:text/html,<form method=post action="${url}api/select"><input name=gateway value="${GW[1]}"></form>`);
      const [resp] = await Promise.all([other.waitForNavigation(), other.$eval('form', (f) => (f as unknown as { submit(): void }).submit())]);
      expect([401, 403]).toContain(resp!.status());
    } finally {
      await other.close();
    }
    expect((await status()).pinned).toBe(before);
  }, 30_000);

  it("select pins a gateway and back to automatic; reload shows the dry run's diff first and applies only when asked", async () => {
    await page.goto(`${url}#/actions`);
    await page.waitForSelector(`[data-testid=select-${GW[1]}]`);
    await page.click(`[data-testid=select-${GW[1]}]`);
    await page.waitForFunction((gw) => document.querySelector('[data-testid=actions-msg]')?.textContent?.includes(`pinned to ${gw}`), {}, GW[1]);
    expect((await status())).toMatchObject({ pinned: GW[1], active: GW[1] });
    // Enabled once the page has read the pin back (a click on a disabled button does nothing).
    await page.waitForSelector('[data-testid=select-auto]:not([disabled])');
    await page.click('[data-testid=select-auto]');
    await page.waitForFunction(() => document.querySelector('[data-testid=actions-msg]')?.textContent?.startsWith('automatic'));
    expect((await status()).pinned).toBeNull();

    const version = (await status()).config.version;
    writeFileSync(cfg, config(['  - domains: [new.lab.test]', '    via: breakout']), { mode: 0o600 });
    // The daemon watches the file: a reload by the watcher would make the dry run moot, so it is checked against what runs now.
    await page.click('[data-testid=reload-dry]');
    await page.waitForSelector('[data-testid=reload-diff]');
    const diff = await textOf('[data-testid=reload-diff]');
    await shot('reload-dry-run');
    if (/rule #2 added: .*new\.lab\.test/.test(diff)) {
      // The dry run saw the change before the file watcher applied it: Apply is offered, and applies it (or finds it applied).
      await page.click('[data-testid=reload-apply]');
      await page.waitForFunction(() => /reload: (applied|unchanged)/.test(document.querySelector('[data-testid=actions-msg]')?.textContent ?? ''));
    } else {
      // The file watcher reloaded it first: the dry run then (rightly) finds nothing to change.
      expect(diff).toContain('changes nothing');
    }
    await until(async () => (await status()).config.version > version, 10_000, 'the new config running');
    expect(readFileSync(cfg, 'utf8')).toContain('new.lab.test');
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it('web.listen on the router\'s WAN address is refused when the daemon applies it (a private address check time lets through); the dashboard stays where it was', async () => {
    const good = readFileSync(cfg, 'utf8');
    const reload = () => lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'reload', '--json', '--socket', join(dir, 'control.sock')]);
    try {
      writeFileSync(cfg, good.replace(`listen: ${lab.addr.routerLan.v4}:${PORT}`, `listen: ${lab.addr.routerWan.v4}:${PORT}`), { mode: 0o600 });
      const r = await reload();
      const report = JSON.parse(r.stdout) as { status: string; error?: string };
      expect(report.status, r.stdout + r.stderr).toBe('failed');
      expect(report.error).toContain(`is an address of the breakout interface ${lab.ifaces.router.wan}`);
      // Nothing listens on the WAN address; the LAN one still serves.
      const wan = await lab.exec(lab.ns.isp, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', `http://${lab.addr.routerWan.v4}:${PORT}/`]);
      expect(wan.stdout).toBe('000');
      const lan = await lab.exec(lab.ns.client, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', url]);
      expect(lan.stdout).toBe('200');
    } finally {
      writeFileSync(cfg, good, { mode: 0o600 });
      await reload();
    }
  }, 60_000);

  it('a failover in the lab appears on the overview live, without reloading the page', async () => {
    // From gw1 carrying the tunnel (automatic, after the failback hold), shown as such.
    await until(async () => (await status()).active === GW[0], 20_000, `${GW[0]} active again`);
    await page.goto(`${url}#/overview`);
    await page.waitForFunction((gw) => document.querySelector('[data-testid=active]')?.textContent?.includes(`Tunnel path: ${gw} (automatic)`), { timeout: 10_000 }, GW[0]);
    await lab.blackholeGateway(0, true);
    try {
      await page.waitForFunction((gw) => document.querySelector('[data-testid=active]')?.textContent?.includes(`Tunnel path: ${gw}`), { timeout: 30_000 }, GW[1]);
      // The failover this blackhole caused, with its reason, among the recent ones.
      await page.waitForFunction((from, to) => document.querySelector('[data-testid=failovers]')?.textContent?.includes(`${from} → ${to} (${from} is down)`), { timeout: 10_000 }, GW[0], GW[1]);
      const row = await textOf(`[data-testid=path-gw-${GW[0]}]`);
      expect(row).toMatch(/\b(down|degraded)\b/);
      await shot('failover');
    } finally {
      await lab.blackholeGateway(0, false);
    }
    expect(pageErrors).toEqual([]);
  }, 60_000);
  it('when the session ends under the live query log (a new password, a daemon restart), the login form says why; logging in brings the log back', async () => {
    const NEW_PASSWORD = 'a new lab dashboard password';
    const logPage = `#/log?name=video.lab.test`;
    const live = (): Promise<unknown> => page.waitForFunction(() => document.querySelector('[data-testid=log-note]')?.textContent?.startsWith('live'), { timeout: 15_000 });
    const logIn = async (password: string): Promise<void> => {
      await page.type('form[data-testid=login] input[type=password]', password);
      await page.click('form[data-testid=login] button[type=submit]');
      await live();
      // The same page as before, its filter too.
      expect(await page.evaluate(() => location.hash)).toBe(logPage);
      expect(await page.$eval('input[name=name]', (e) => (e as unknown as { value: string }).value)).toBe('video.lab.test');
    };
    await page.goto(`${url}${logPage}`, { waitUntil: 'networkidle2' }).catch(() => undefined); // the event stream never idles
    await live();

    // A new password, set as the README says, on the router: the daemon reloads the file, the open stream's session ends.
    const passwd = await lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'web', 'passwd', '--config', cfg], { input: `${NEW_PASSWORD}\n` });
    expect(passwd.stdout + passwd.stderr).toContain('web.passwordHash set');
    await page.waitForSelector('[data-testid=login-why]', { timeout: 15_000 });
    expect(await textOf('[data-testid=login-why]')).toContain("the dashboard's password was changed");
    expect(await page.evaluate(() => location.hash)).toBe(logPage);
    await shot('session-ended');
    await logIn(NEW_PASSWORD);
    await page.waitForSelector('[data-testid=log-row][data-name="video.lab.test"]', { timeout: 10_000 }); // the earlier query, still in the ring

    // A restart forgets every session: the stream reconnects, is refused, and the page says so instead of retrying for ever.
    await stopDaemon(daemon!);
    daemon = null;
    daemon = await startDaemon(lab.ns.router, cfg);
    await page.waitForSelector('[data-testid=login-why]', { timeout: 30_000 });
    expect(await textOf('[data-testid=login-why]')).toContain('no longer valid');
    await logIn(NEW_PASSWORD);
    // Live again: a query the lab client makes now shows (the restart emptied the ring).
    const d = await lab.exec(lab.ns.client, ['dig', '+short', '+tries=2', '+time=3', `@${lab.addr.routerLan.v4}`, 'video.lab.test']);
    expect(d.stdout.trim()).toBe('10.99.9.20');
    await page.waitForSelector('[data-testid=log-row][data-name="video.lab.test"]', { timeout: 10_000 });
    // Refused connections while the daemon was down are what a restart looks like; nothing else went wrong on the page.
    expect(pageErrors.filter((e) => !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET/.test(e))).toEqual([]);
  }, 120_000);
});
