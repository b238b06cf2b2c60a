// Captive portals (issue 16): the pure parts (probe verdicts, what a window
// opens, the nft lines) and the controller (daemon/portal/portal.ts) under a
// manual clock, with a model of the kernel's portal sets (elements expire by
// their own timeouts) and a probe whose answer the test sets.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PortalConfig } from '../../config/types.js';
import { PORTAL_SETS, portalMatchLines, renderPortalAdd, renderPortalFlush } from '../../daemon/dataplane/portal-rules.js';
import { renderRuleset, rulesetObjects } from '../../daemon/dataplane/plan.js';
import { classifyResponse, metaRefresh, type ProbeResult } from '../../daemon/portal/probe.js';
import { CaptivePortal, OPEN_PROBE_MS, SETTLE_MS } from '../../daemon/portal/portal.js';
import { planPortalWindow, resolverElements } from '../../daemon/portal/window.js';
import { formatPortal, portalLine } from '../../daemon/commands/control.js';
import { controlRequest } from '../../daemon/control/client.js';
import { ROUTES, type PortalReport, type StatusReport } from '../../daemon/control/protocol.js';
import { ControlServer, type ControlHandlers } from '../../daemon/control/server.js';
import { ManualClock } from '../helpers/clock.js';
import { upstream } from '../helpers/dns.js';
import { recordingLogger } from '../helpers/fake-deps.js';
import { samplePlan } from '../helpers/plans.js';

describe('probe verdicts (classifyResponse)', () => {
  const url = 'http://probe.test/generate_204';
  it('204, or a 200 without a body, is a free network', () => {
    expect(classifyResponse({ status: 204, location: null, body: '' }, url)).toEqual({ kind: 'online' });
    expect(classifyResponse({ status: 200, location: null, body: '' }, url)).toEqual({ kind: 'online' });
  });
  it('a redirect is a portal, its Location made absolute', () => {
    expect(classifyResponse({ status: 302, location: '/login?x=1', body: '' }, url)).toEqual({ kind: 'redirect', to: 'http://probe.test/login?x=1' });
    expect(classifyResponse({ status: 307, location: 'https://hotel.example/auth', body: '' }, url)).toEqual({ kind: 'redirect', to: 'https://hotel.example/auth' });
    // Nowhere to go, or somewhere that is not the web: says nothing.
    expect(classifyResponse({ status: 302, location: null, body: '' }, url).kind).toBe('failed');
    expect(classifyResponse({ status: 302, location: 'javascript:alert(1)', body: '' }, url).kind).toBe('failed');
  });
  it('a page where the 204 should be is a portal (its meta refresh followed), a 5xx says nothing', () => {
    expect(classifyResponse({ status: 200, location: null, body: '<html>Welcome to the hotel</html>' }, url)).toEqual({ kind: 'content', to: null });
    expect(classifyResponse({ status: 200, location: null, body: '<meta http-equiv="refresh" content="0; url=http://login.hotel/">' }, url)).toEqual({ kind: 'content', to: 'http://login.hotel/' });
    expect(classifyResponse({ status: 503, location: null, body: 'busy' }, url)).toEqual({ kind: 'failed', error: 'HTTP 503' });
    expect(classifyResponse({ status: 404, location: null, body: '' }, url).kind).toBe('failed');
  });
  it('meta refresh: quoted either way, relative, case-insensitive; none without a URL', () => {
    expect(metaRefresh(`<META HTTP-EQUIV='Refresh' CONTENT='3;URL=/portal'>`, 'http://a.test/x')).toBe('http://a.test/portal');
    expect(metaRefresh('<meta http-equiv="refresh" content="5">', 'http://a.test/')).toBeNull();
    expect(metaRefresh('<p>no meta</p>', 'http://a.test/')).toBeNull();
  });
});

describe('what a window opens (planPortalWindow)', () => {
  it("TCP 80 and 443 to each host's addresses, and each resolver on its own protocol and port", () => {
    const p = planPortalWindow([{ name: 'portal.hotel', addresses: ['192.0.2.80', '2001:db8::80'] }], [upstream('192.0.2.53'), upstream('192.0.2.54:5353')]);
    expect(p.elements).toEqual([
      { address: '192.0.2.80', proto: 'tcp', port: 80 },
      { address: '192.0.2.80', proto: 'tcp', port: 443 },
      { address: '2001:db8::80', proto: 'tcp', port: 80 },
      { address: '2001:db8::80', proto: 'tcp', port: 443 },
      { address: '192.0.2.53', proto: 'udp', port: 53 },
      { address: '192.0.2.53', proto: 'tcp', port: 53 },
      { address: '192.0.2.54', proto: 'udp', port: 5353 },
      { address: '192.0.2.54', proto: 'tcp', port: 5353 },
    ]);
    expect(p.dns).toEqual(['192.0.2.53', '192.0.2.54:5353']);
  });
  it('DoT by its port, DoH by an address only (a DoH name is not opened)', () => {
    expect(resolverElements(upstream('tls://9.9.9.9#dns.quad9.net'))).toEqual([{ address: '9.9.9.9', proto: 'tcp', port: 853 }]);
    expect(resolverElements(upstream('https://9.9.9.9/dns-query'))).toEqual([{ address: '9.9.9.9', proto: 'tcp', port: 443 }]);
  });
});

describe('the nft side (portal-rules.ts)', () => {
  it('adds per family with whole-second timeouts, each element once, addresses only', () => {
    const line = renderPortalAdd(
      [
        { address: '192.0.2.80', proto: 'tcp', port: 80 },
        { address: '192.0.2.80', proto: 'tcp', port: 80 },
        { address: '2001:DB8::80', proto: 'tcp', port: 443 },
        { address: 'not-an-address; flush ruleset', proto: 'tcp', port: 80 },
        { address: '192.0.2.81', proto: 'tcp', port: 0 },
      ],
      299_001,
    );
    expect(line).toBe('add element inet splitwan portal4 { 192.0.2.80 . tcp . 80 timeout 300s }; add element inet splitwan portal6 { 2001:db8::80 . tcp . 443 timeout 300s }');
    expect(renderPortalAdd([], 1000)).toBeNull();
    expect(renderPortalFlush()).toBe('flush set inet splitwan portal4; flush set inet splitwan portal6');
  });
  it('the ruleset declares both sets and matches them after the fast path, before the rules, in both modes', () => {
    for (const mode of ['router', 'host'] as const) {
      const plan = samplePlan({ mode, ...(mode === 'host' ? { lan: [] } : {}) });
      const text = renderRuleset(plan);
      expect(text).toContain('set portal4 { type ipv4_addr . inet_proto . inet_service; flags timeout; size 256; }');
      expect(text).toContain('set portal6 { type ipv6_addr . inet_proto . inet_service; flags timeout; size 256; }');
      const chain = text.slice(text.indexOf(mode === 'host' ? '\tchain out {' : '\tchain pre {'));
      const at = chain.indexOf(portalMatchLines()[0]!.trim());
      expect(at, mode).toBeGreaterThan(chain.indexOf('ct mark != 0 meta mark set ct mark goto resolve'));
      expect(at, mode).toBeLessThan(chain.indexOf('meta mark 0 jump classify'));
      expect(rulesetObjects(plan).sets).toEqual(expect.arrayContaining([PORTAL_SETS.v4, PORTAL_SETS.v6]));
    }
  });
});

/** The kernel's portal sets: elements with their own expiry (monotonic, as the kernel's). */
class PortalSetsModel {
  readonly lines: string[] = [];
  readonly sets = new Map<string, Map<string, number>>();
  constructor(private readonly clock: ManualClock) {}
  exec(line: string): Promise<void> {
    this.lines.push(line);
    for (const part of line.split('; ')) {
      const flush = /^flush set inet splitwan (portal[46])$/.exec(part);
      if (flush) {
        this.sets.set(flush[1]!, new Map());
        continue;
      }
      const m = /^add element inet splitwan (portal[46]) \{ (.*) \}$/.exec(part);
      if (!m) throw new Error(`unexpected nft line: ${part}`);
      const set = this.sets.get(m[1]!) ?? this.sets.set(m[1]!, new Map()).get(m[1]!)!;
      for (const e of m[2]!.split(', ')) {
        const [, el, s] = /^(.*) timeout (\d+)s$/.exec(e)!;
        if (!set.has(el!)) set.set(el!, this.clock.now() + Number(s) * 1000);
      }
    }
    return Promise.resolve();
  }
  /** Elements alive now. */
  live(): string[] {
    return [...this.sets.values()].flatMap((s) => [...s].filter(([, exp]) => exp > this.clock.now()).map(([el]) => el)).sort();
  }
}

/** What the probe answers next (its time is the clock's). */
type Answer = { kind: 'portal'; url: string; hosts: string[]; status: number } | { kind: 'online' } | { kind: 'failed'; error: string };

function harness(over: Partial<PortalConfig> = {}) {
  const clock = new ManualClock();
  const logger = recordingLogger();
  const nft = new PortalSetsModel(clock);
  const cfg: PortalConfig = { enabled: true, probeUrl: 'http://probe.test/generate_204', openForMs: 60_000, intervalMs: 30_000, ...over };
  const names: Record<string, string[]> = { 'probe.test': ['192.0.2.204'], 'portal.hotel': ['192.0.2.80'], 'sso.hotel': ['192.0.2.90'] };
  const t = {
    clock,
    logger,
    nft,
    tunnelUp: false,
    answer: { kind: 'portal', url: 'http://portal.hotel/login', hosts: ['probe.test', 'portal.hotel'], status: 302 } as Answer,
    probes: 0,
    changes: 0,
  };
  const portal = new CaptivePortal({
    clock,
    logger,
    config: () => cfg,
    probe: () => {
      t.probes++;
      return Promise.resolve({ ...t.answer, at: clock.now() } as ProbeResult);
    },
    lookupAll: (name) => Promise.resolve(names[name] ?? []),
    breakoutDns: () => [upstream('192.0.2.53')],
    nft,
    tunnelUp: () => t.tunnelUp,
    onChange: () => void t.changes++,
  });
  return { ...t, t, portal };
}

describe('CaptivePortal', () => {
  it('probes at start; a redirect is a suspected portal, said once in the log, with nothing opened', async () => {
    const h = harness();
    h.portal.start();
    await h.clock.advance(0);
    expect(h.t.probes).toBe(1);
    expect(h.portal.status()).toMatchObject({ state: 'suspected', url: 'http://portal.hotel/login', window: null });
    expect(h.nft.lines).toEqual([]);
    // No gateway up: probed again every interval, and the same portal is not logged again.
    await h.clock.advance(30_000);
    expect(h.t.probes).toBe(2);
    expect(h.logger.lines.filter((l) => l.msg.startsWith('captive portal suspected'))).toHaveLength(1);
    h.portal.stop();
  });

  it('with a gateway up nothing is probed after the first; the tunnel going down probes at once', async () => {
    const h = harness();
    h.t.tunnelUp = true;
    h.portal.start();
    await h.clock.advance(120_000);
    expect(h.t.probes).toBe(1);
    h.t.tunnelUp = false;
    h.portal.tunnelChanged();
    await h.clock.advance(0);
    expect(h.t.probes).toBe(2);
    h.portal.stop();
  });

  it("open: the portal's and the probe's hosts (TCP 80/443) and the resolvers, for openFor, in the kernel; their names detoured", async () => {
    const h = harness();
    h.portal.start();
    await h.clock.advance(0);
    const r = await h.portal.open();
    expect(r.state).toBe('open');
    expect(r.window!.hosts).toEqual([
      { name: 'probe.test', addresses: ['192.0.2.204'] },
      { name: 'portal.hotel', addresses: ['192.0.2.80'] },
    ]);
    expect(r.window!.until - h.clock.wall()).toBe(60_000);
    expect(h.nft.live()).toEqual(['192.0.2.204 . tcp . 443', '192.0.2.204 . tcp . 80', '192.0.2.53 . tcp . 53', '192.0.2.53 . udp . 53', '192.0.2.80 . tcp . 443', '192.0.2.80 . tcp . 80']);
    expect(h.portal.pathOf('portal.hotel')).toBe('breakout');
    expect(h.portal.pathOf('probe.test')).toBe('breakout');
    expect(h.portal.pathOf('tunnel-name.example')).toBeNull();
    expect(h.t.changes).toBe(1);
    // A browser's answer for the portal with another address: that address joins for what is left of the window.
    await h.clock.advance(20_000);
    await h.portal.admit('portal.hotel', ['192.0.2.81']);
    expect(h.nft.live()).toContain('192.0.2.81 . tcp . 443');
    await h.clock.advance(39_999);
    expect(h.portal.status().state).toBe('open');
    // The kernel drops every element on time (the new one too): nothing outlives the window.
    await h.clock.advance(1);
    expect(h.nft.live()).toEqual([]);
    expect(h.portal.status().state).toBe('suspected');
    expect(h.portal.pathOf('portal.hotel')).toBeNull();
    expect(h.logger.lines.some((l) => l.msg === 'captive portal window closed: its 60 s are up')).toBe(true);
    h.portal.stop();
  });

  it('the login (the probe gets 204) closes the window at the next probe, and says so', async () => {
    const h = harness();
    h.portal.start();
    await h.clock.advance(0);
    await h.portal.open();
    h.t.answer = { kind: 'online' };
    await h.clock.advance(OPEN_PROBE_MS);
    expect(h.portal.status()).toMatchObject({ state: 'none', window: null });
    expect(h.nft.live()).toEqual([]);
    expect(h.nft.lines.at(-1)).toBe(renderPortalFlush());
    expect(h.logger.lines.some((l) => l.msg.includes('captive portal window closed') && l.msg.includes('answers 204 again (logged in)'))).toBe(true);
    h.portal.stop();
  });

  it('a new login step seen while open joins the window; a second open restarts the time', async () => {
    const h = harness();
    h.portal.start();
    await h.clock.advance(0);
    await h.portal.open();
    h.t.answer = { kind: 'portal', url: 'http://sso.hotel/step2', hosts: ['probe.test', 'portal.hotel', 'sso.hotel'], status: 302 };
    await h.clock.advance(OPEN_PROBE_MS);
    expect(h.nft.live()).toContain('192.0.2.90 . tcp . 80');
    expect(h.portal.pathOf('sso.hotel')).toBe('breakout');
    await h.clock.advance(50_000);
    await h.portal.open();
    await h.clock.advance(30_000);
    expect(h.portal.status().state).toBe('open');
    expect(h.nft.live()).toContain('192.0.2.80 . tcp . 80');
    h.portal.stop();
  });

  it('no portal: nothing opened, and said so; --close without a window says none was open', async () => {
    const h = harness();
    h.t.answer = { kind: 'online' };
    const r = await h.portal.open();
    expect(r.state).toBe('none');
    expect(r.message).toMatch(/no captive portal on this network/);
    expect(h.nft.lines).toEqual([]);
    expect(await h.portal.close('closed by hand')).toBe(false);
  });

  it('a change of network closes an open window and probes the new network once it settles', async () => {
    const h = harness();
    h.t.tunnelUp = true;
    h.portal.start();
    await h.clock.advance(0);
    await h.portal.open();
    const before = h.t.probes;
    h.portal.networkChanged();
    await h.clock.advance(0);
    expect(h.portal.status().window).toBeNull();
    expect(h.nft.live()).toEqual([]);
    await h.clock.advance(SETTLE_MS);
    expect(h.t.probes).toBe(before + 1);
    h.portal.stop();
  });

  it('portal.enabled false: never probes by itself, `open` still works', async () => {
    const h = harness({ enabled: false });
    h.portal.start();
    h.portal.tunnelChanged();
    await h.clock.advance(120_000);
    expect(h.t.probes).toBe(0);
    expect(h.portal.status().state).toBe('off');
    expect((await h.portal.open()).state).toBe('open');
    h.portal.stop();
  });
});

describe('what the user reads (splitwan portal, status) and the control route', () => {
  const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
  const open: PortalReport = {
    state: 'open',
    url: 'http://portal.hotel/login',
    probeUrl: 'http://probe.test/generate_204',
    lastProbe: { at: NOW, result: 'portal' },
    window: { openedAt: NOW, until: NOW + 300_000, hosts: [{ name: 'portal.hotel', addresses: ['192.0.2.80'] }], ports: [80, 443], dns: ['192.0.2.53'] },
    message: 'opened for 300 s',
  };
  it('an open window: until when, each host with its addresses and ports, the resolvers, where to log in, how it closes', () => {
    const text = formatPortal(open, NOW);
    expect(text).toContain('captive portal window open until 12:05:00 UTC (in 5m00s)');
    expect(text).toMatch(/portal\.hotel\s+192\.0\.2\.80\s+TCP 80, 443/);
    expect(text).toMatch(/DNS\s+192\.0\.2\.53/);
    expect(text).toContain('log in at: http://portal.hotel/login');
    expect(text).toContain('sudo splitwan portal --close');
    expect(portalLine(open, NOW)).toBe("OPEN until 12:05:00 UTC (in 5m00s): portal.hotel and the breakout's resolvers go bare; login at http://portal.hotel/login");
  });
  it('no window: why, and the state', () => {
    const none: PortalReport = { ...open, state: 'none', url: null, window: null, message: 'no captive portal on this network: … nothing opened' };
    expect(formatPortal(none, NOW)).toBe('splitwan portal: no captive portal on this network: … nothing opened\ncaptive portal: none (the probe gets its 204)\n');
    expect(portalLine({ ...none, state: 'suspected', url: 'http://portal.hotel/login' }, NOW)).toBe('suspected: http://probe.test/generate_204 led to http://portal.hotel/login; "sudo splitwan portal" opens it for a while');
    expect(portalLine({ ...none, state: 'unknown', lastProbe: { at: NOW, result: 'failed', error: 'connect ETIMEDOUT' } }, NOW)).toBe('unknown (the probe got no answer: connect ETIMEDOUT)');
  });
  it('POST /v1/portal: open ({}), close ({close: true}), a bad body refused, absent on a daemon without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'splitwan-portal-ctl-'));
    const calls: boolean[] = [];
    const base = { status: () => ({}) as StatusReport } as unknown as ControlHandlers;
    const server = new ControlServer({ ...base, portal: (close) => (calls.push(close), Promise.resolve(open)) });
    const bare = new ControlServer(base);
    try {
      await server.listen(join(dir, 'a.sock'));
      await bare.listen(join(dir, 'b.sock'));
      expect(await controlRequest<PortalReport>(join(dir, 'a.sock'), ROUTES.portal, {})).toEqual(open);
      await controlRequest(join(dir, 'a.sock'), ROUTES.portal, { close: true });
      expect(calls).toEqual([false, true]);
      await expect(controlRequest(join(dir, 'a.sock'), ROUTES.portal, { close: 'yes' })).rejects.toMatchObject({ status: 400, code: 'SPLITWAN_CONTROL_REQUEST' });
      await expect(controlRequest(join(dir, 'b.sock'), ROUTES.portal, {})).rejects.toMatchObject({ status: 404 });
    } finally {
      await server.close();
      await bare.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
