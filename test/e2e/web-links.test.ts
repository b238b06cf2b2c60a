// The dashboard's overview with several WAN links, in Debian's headless
// Chromium inside the lab's client namespace, against `splitwan run` in the
// router (lab/lab.ts with secondWan and a hand-made WireGuard interface):
//
//  [client] chromium ── lan0 [router: splitwan run; web 10.99.1.1:8080] wan0 ── r0 [isp]   link fiber (preferred)
//                                                                    wan1 ── r1 [isp]   link lte (metered)
//                              swg-<t>a ══ [gw1] (splitwan's)   awg<id> ══ [gw2] (made by hand: unmanaged)
//
// What a user sees: both links with their state, the one breakout takes
// marked, lte's metered flag and fiber's weight; both gateways, the hand-made
// one as unmanaged; the charts' series per link; and when fiber goes dark
// (a drop on the isp's side, the interface stays up) the page shows, live,
// breakout on lte and the link failover with its reason, beside the
// gateways' failovers. Screenshots go to test/artifacts/web/.
// Needs root and chromium (CI installs it: .ci/run); otherwise SKIPPED, loudly.
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'puppeteer-core';
import { createLab, labSupported, which, type Lab } from '../../lab/lab.js';
import { hashPassword } from '../../daemon/web/password.js';
import { startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';
import { launchChromium } from '../helpers/chromium.js';
import type { StatusReport } from '../../daemon/control/protocol.js';

// The callbacks given to page.evaluate & co run in the page; this project's TypeScript has no DOM library, so what they touch is typed here.
declare const document: { querySelector(selector: string): { textContent: string | null } | null };
type PageElement = { innerText: string };

const support = labSupported();
const chromium = which('chromium');
const ready = support.ok && chromium !== null;
if (!ready) console.log(`SKIPPED test/e2e/web-links.test.ts: ${!support.ok ? support.why : 'no chromium (apt-get install --no-install-recommends chromium)'}`);

const root = join(import.meta.dirname, '..', '..');
const ARTIFACTS = join(root, 'test', 'artifacts', 'web');
const tag = `wl${process.pid % 10000}`;
const GW = `${tag}a`;
const AWG = `${tag}b`;
const PORT = 8080;

describe.skipIf(!ready && !process.env.CI)('the dashboard with two WAN links, in Chromium, against the lab', () => {
  let lab: Lab;
  let dir: string;
  let daemon: Daemon | null = null;
  let page: Page;
  let url: string;
  let pageErrors: string[] = [];
  let closeBrowser = async (): Promise<void> => {};

  const status = async (): Promise<StatusReport> => {
    const r = await lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'status', '--json', '--socket', join(dir, 'control.sock')]);
    return JSON.parse(r.stdout) as StatusReport;
  };
  const textOf = (sel: string): Promise<string> => page.$eval(sel, (e) => (e as unknown as PageElement).innerText);
  const shot = (name: string): Promise<unknown> => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    if (chromium === null) throw new Error('chromium is not installed (apt-get install --no-install-recommends chromium)');
    if (!existsSync(join(root, 'dist', 'web-assets', 'index.html'))) throw new Error('the dashboard bundle is missing: npm run build');
    mkdirSync(ARTIFACTS, { recursive: true });
    lab = await createLab({ routerTunnels: false, secondWan: true, handTunnel: 1 });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-web-links-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(
      cfg,
      [
        'mode: router',
        'lan: [lan0]',
        'breakout:',
        '  links:',
        `    - { name: fiber, interface: wan0, gateway: ${lab.addr.ispToRouter.v4}, dns: [${lab.addr.ispResolver.v4}], priority: 1, weight: 2 }`,
        `    - { name: lte, interface: wan1, gateway: ${lab.addr.ispToRouter2.v4}, dns: [${lab.addr.ispResolver.v4}], priority: 2, metered: true }`,
        'tunnel:',
        '  gateways:',
        `    - { name: ${GW}, config: gw1.conf, priority: 1 }`,
        `    - { name: ${AWG}, interface: ${lab.handTunnelIf}, dns: [${lab.addr.tunnelGateway.v4}], priority: 2 }`,
        'health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 3, failbackHold: 2s }',
        `stateDir: ${join(dir, 'state')}`,
        `control: { socket: ${join(dir, 'control.sock')} }`,
        'rules:',
        `  - cidrs: [${lab.addr.web.v4}/32]`,
        '    via: breakout',
        'default: tunnel',
        'web:',
        `  listen: ${lab.addr.routerLan.v4}:${PORT}`,
        `  passwordHash: ${await hashPassword('lab dashboard password')}`,
        // Read-only without login: this file is about what the overview shows (web.test.ts covers the login).
        '  publicRead: true',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    daemon = await startDaemon(lab.ns.router, cfg);
    await until(async () => (await status()).links?.every((l) => l.state === 'up') ?? false, 20_000, 'both links up');
    url = `http://${lab.addr.routerLan.v4}:${PORT}/`;
    const b = await launchChromium({ chromium: chromium!, ns: lab.ns.client, dir, dashboard: lab.addr.routerLan.v4 });
    page = b.page;
    pageErrors = b.errors;
    closeBrowser = b.close;
  }, 120_000);

  afterAll(async () => {
    if (pageErrors.length) console.log(`page errors:\n${pageErrors.join('\n')}`);
    try {
      await closeBrowser();
    } finally {
      await teardown({ daemon, lab, dir, beforeDestroy: () => lab.blackholeWan(0, false) });
    }
  }, 60_000);

  it('the overview lists both links, breakout on the preferred one, and both gateways (the hand-made one unmanaged)', async () => {
    await page.goto(`${url}#/overview`, { waitUntil: 'networkidle0' });
    // The first report the page gets may be up to a second old (the dashboard shares one read a second): from before the links' first probes.
    await page.waitForFunction(() => document.querySelector('[data-testid=path-link-lte] td.state-up') !== null && document.querySelector('[data-testid=active-link]')?.textContent === 'Breakout link: fiber', { timeout: 10_000 });
    const rows = await page.$$eval('[data-testid=paths] tbody tr', (trs) => trs.map((t) => (t as unknown as PageElement).innerText));
    expect(rows).toHaveLength(5);
    expect(rows[0]).toMatch(/^breakout \(by link:fiber\)\s+up\b/);
    expect(rows[1]).toMatch(/^★ link:fiber \(wan0, prio 1, weight 2\)\s+up\b/);
    expect(rows[2]).toMatch(/^link:lte \(wan1, prio 2, metered\)\s+up\b/);
    expect(rows[3]).toMatch(new RegExp(`gw:${GW} \\(swg-[^,]+, prio 1\\)`));
    expect(rows[4]).toMatch(new RegExp(`gw:${AWG} \\(${lab.handTunnelIf}, prio 2, unmanaged\\)`));
    expect(await textOf('[data-testid=active-link]')).toBe('Breakout link: fiber');
    expect(await textOf('[data-testid=link-failovers]')).toBe('none since start');
    // The charts have a series per link (their legends name them), fed by the sampler's link:NAME entries.
    for (const chart of ['chart-rtt', 'chart-loss']) {
      const legend = await textOf(`[data-testid=${chart}]`);
      expect(legend).toContain('link:fiber');
      expect(legend).toContain('link:lte');
    }
    const samples = await page.evaluate(async () => ((await (await fetch('/api/history')).json()) as { samples: { paths: Record<string, { state: string }> }[] }).samples);
    // (The first sample may be from before the first probe round: state unknown.)
    expect(samples.at(-1)?.paths).toMatchObject({ 'link:fiber': { state: expect.stringMatching(/^(unknown|up)$/) }, 'link:lte': { state: expect.stringMatching(/^(unknown|up)$/) } });
    await shot('links-overview');
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it('a dead preferred link shows live: breakout on lte, and the link failover with its reason', async () => {
    await lab.blackholeWan(0, true);
    try {
      await page.waitForFunction(() => document.querySelector('[data-testid=active-link]')?.textContent === 'Breakout link: lte', { timeout: 30_000 });
      await page.waitForFunction(() => document.querySelector('[data-testid=link-failovers]')?.textContent?.includes('fiber → lte (fiber is down)'), { timeout: 10_000 });
      expect(await textOf('[data-testid=path-link-fiber]')).toMatch(/\bdown\b/);
      expect(await textOf('[data-testid=path-link-lte]')).toMatch(/^★ link:lte/);
      expect(await textOf('[data-testid=path-breakout]')).toMatch(/^breakout \(by link:lte\)\s+up\b/);
      // The gateways' failovers are their own list: a link's switch is not among them.
      expect(await textOf('[data-testid=failovers]')).not.toContain('fiber');
      // What the page shows is what the daemon says.
      expect((await status()).linkFailovers?.[0]).toMatchObject({ from: 'fiber', to: 'lte', reason: 'fiber is down' });
      await shot('links-failover');
    } finally {
      await lab.blackholeWan(0, false);
    }
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
