// Captive portals (issue 16): a hotel network whose portal answers every HTTP
// request with a 302 to its login page and drops the tunnel's UDP until the
// guest logs in. With the kill switch on, the laptop (host mode) cannot reach
// the login page; `splitwan portal` lets through only what the portal needs,
// for a bounded time. In the namespace lab (lab/lab.ts), host mode:
//
//  [client] c0 10.99.1.2 ── lan0 (the last test: router mode, the client's browser)
//  [router: the laptop, splitwan run, host mode, kill switch on]
//     wan0 10.99.2.2 ── r0 10.99.2.1 [isp]  web 10.99.9.9 (echo: a tunnel destination)
//                                          portal 10.99.9.80 (portal.lab.test: /login, logs who asked)
//                                          probe 10.99.9.204 (probe.lab.test: 302 to the portal; 204 after login)
//                                          resolver 10.99.9.53 (dnsmasq)
//                                          nft: UDP 51820 from r0 dropped until login ── [gw1] [gw2]
//     swg-* ══ WireGuard ══ gw1, gw2 (no handshake through the portal)
//
// What a user sees: the portal suspected in `splitwan status`; the login page
// unreachable before `splitwan portal`, reached after it (the portal server
// logs the laptop's address); a capture on r0 sees nothing for the tunnel
// destination while the window is open; after the login the window closes by
// itself (the probe gets 204) and tunnel traffic flows; a window nobody logs
// in through closes after portal.openFor. Router mode: the same for a LAN
// client, and `splitwan portal --close`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, must, type Lab } from '../../lab/lab.js';
import type { StatusReport } from '../../daemon/control/protocol.js';
import { daemonNode, labConfig, startDaemon, stopDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
if (!support.ok) console.warn(`[test/e2e/laptop-portal] SKIPPED: the lab cannot run here: ${support.why}`);
const root = join(import.meta.dirname, '..', '..');
const PORTAL = '10.99.9.80';
const PROBE = '10.99.9.204';


describe.skipIf(!support.ok && !process.env.CI)('captive portals (host mode, kill switch on)', () => {
  const tag = `p${process.pid % 10000}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  let lab: Lab;
  let dir = '';
  let cfg = '';
  let daemon: Daemon | null = null;
  let server: ChildProcess | null = null;
  let capture: { child: ChildProcess; text: string } | null = null;
  /** Where the user's curl runs: the laptop itself (host mode), a LAN client (router mode). */
  let from = '';
  const serverLog = (): { remote: string; local: string; host: string; url: string; ua: string }[] => {
    const text = readFileSync(join(dir, 'portal.log'), 'utf8');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { remote: string; local: string; host: string; url: string; ua: string });
  };
  const splitwan = (...args: string[]) => lab.exec(lab.ns.router, [...daemonNode(), join(root, 'bin', 'splitwan'), ...args, '--socket', join(dir, 'control.sock')], { timeoutMs: 70_000 });
  const status = async (): Promise<StatusReport> => JSON.parse((await splitwan('status', '--json')).stdout || '{}') as StatusReport;
  /** curl from the laptop itself: the body, or '' when it failed. */
  const curl = async (url: string, ...extra: string[]): Promise<{ ok: boolean; body: string; err: string }> => {
    const r = await lab.exec(from, ['curl', '-4', '-sS', '--max-time', '3', ...extra, url], { timeoutMs: 8000 });
    return { ok: r.code === 0, body: r.stdout, err: r.stderr };
  };
  /** The portal drops the tunnel's UDP until login (on: blocked). */
  const blockTunnels = async (on: boolean): Promise<void> => {
    await lab.exec(lab.ns.isp, ['nft', 'delete', 'table', 'inet', 'hotel']);
    if (on) await must(['ip', 'netns', 'exec', lab.ns.isp, 'nft', '-f', '-'], { input: 'table inet hotel {\n chain gate {\n  type filter hook forward priority 0; policy accept;\n  iifname "r0" udp dport 51820 drop\n }\n}\n' });
  };
  /** An until() that says where things stood when it timed out. */
  const waitFor = (cond: () => Promise<boolean>, ms: number, what: string): Promise<void> =>
    until(cond, ms, what).catch(async (e: Error) => {
      const s = await splitwan('status', '--json');
      const debug = process.env.PORTAL_DEBUG ? (await Promise.all([['conntrack', '-L'], ['nft', 'list', 'ruleset']].map(async (a) => (await lab.exec(lab.ns.router, a)).stdout))).join('\n') : '';
      throw new Error(`${e.message}\n${debug}\nstatus: ${s.stdout}${s.stderr}\nportal log: ${readFileSync(join(dir, 'portal.log'), 'utf8').slice(-1500)}\ndaemon:\n${daemon!.output.slice(-30).join('\n')}`);
    });
  const viaTunnel = async (): Promise<boolean> => {
    const r = await lab.curlEcho(lab.ns.router, `http://${lab.addr.web.v4}/`, { timeoutMs: 1500, extraArgs: ['-4'] });
    return !('error' in r) && (r.remote === lab.gateways[0].uplink.v4 || r.remote === lab.gateways[1].uplink.v4);
  };
  const config = (openFor: string, mode: 'host' | 'router' = 'host'): string =>
    labConfig({
      dir,
      ispResolver: lab.addr.ispResolver.v4,
      names: GW,
      mode,
      lines: ['health: { interval: 1s, timeout: 800ms, failAfter: 2, recoverAfter: 2 }', `portal: { probeUrl: "http://probe.lab.test/generate_204", openFor: ${openFor}, interval: 2s }`, 'rules: []', 'default: tunnel'],
    });

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false, withIpv6: false, names: { 'portal.lab.test': PORTAL, 'probe.lab.test': PROBE } });
    await must(['ip', '-n', lab.ns.isp, '-batch', '-'], { input: `addr add ${PORTAL}/32 dev lo\naddr add ${PROBE}/32 dev lo\n` });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-portal-${process.pid}-`));
    writeFileSync(join(dir, 'portal.log'), '');
    server = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, join(root, 'lab', 'portal-server.mjs'), PORTAL, PROBE, join(dir, 'portal.log'), join(dir, 'logged-in')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    server.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    server.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await until(() => out.includes('listening') || server!.exitCode !== null, 10_000, 'the portal server');
    if (server.exitCode !== null) throw new Error(`portal server: ${out}`);
    await blockTunnels(true);
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, config('60s'), { mode: 0o600 });
    daemon = await startDaemon(lab.ns.router, cfg);
    from = lab.ns.router;
    // On the hotel's side of the laptop, everything to the tunnel destination (the echo server) and
    // anything to the portal's address but its web ports: must stay empty.
    const c = { child: spawn('ip', ['netns', 'exec', lab.ns.isp, 'tcpdump', '-l', '-n', '-i', 'r0', `host ${lab.addr.web.v4} or (host ${PORTAL} and not port 80 and not port 443)`], { stdio: ['ignore', 'pipe', 'pipe'] }), text: '' };
    let err = '';
    c.child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    c.child.stdout!.setEncoding('utf8').on('data', (d: string) => (c.text += d));
    capture = c;
    await until(() => err.includes('listening on'), 5000, 'tcpdump on r0');
  }, 120_000);

  afterAll(async () => {
    if (capture && capture.child.exitCode === null) capture.child.kill('SIGTERM');
    if (server && server.exitCode === null) server.kill('SIGTERM');
    await teardown({ daemon, lab, dir });
  }, 60_000);

  it('suspected in status; the login page reached only after `splitwan portal`; nothing else bare; login closes the window and the tunnel flows', async () => {
    // No gateway gets a handshake through the portal: the kill switch holds, and the probe names the portal.
    await waitFor(async () => {
      const s = await status();
      return s.active === null && s.portal?.state === 'suspected';
    }, 30_000, 'no gateway up and the portal suspected');
    const before = await status();
    expect(before.killSwitch.engaged).toBe(true);
    expect(before.portal!.url).toBe('http://portal.lab.test/login?from=probe.lab.test');
    expect((await splitwan('status')).stdout).toMatch(/captive portal: suspected: http:\/\/probe\.lab\.test\/generate_204 led to http:\/\/portal\.lab\.test\/login/);
    expect(daemon!.output.some((l) => l.includes('captive portal suspected'))).toBe(true);
    // The probe went by the breakout: the portal saw the laptop's WAN address.
    expect(serverLog().some((e) => e.ua === 'splitwan-portal-probe' && e.remote === lab.addr.routerWan.v4 && e.local === PROBE)).toBe(true);

    // Before: the login page cannot be reached (its name is a tunnel name: no resolver; its address: the kill switch).
    expect((await curl('http://portal.lab.test/login?user=before')).ok).toBe(false);
    expect((await curl('http://portal.lab.test/login?user=before2', '--resolve', `portal.lab.test:80:${PORTAL}`)).ok).toBe(false);
    expect(serverLog().filter((e) => e.url.includes('user=before'))).toEqual([]);

    const opened = await splitwan('portal');
    expect(opened.code, opened.stderr).toBe(0);
    expect(opened.stdout).toMatch(/captive portal window open until \d\d:\d\d:\d\d UTC/);
    for (const s of ['probe.lab.test', PROBE, 'portal.lab.test', PORTAL, 'TCP 80, 443', lab.addr.ispResolver.v4, 'log in at: http://portal.lab.test/login']) expect(opened.stdout).toContain(s);
    // The kernel holds it with its own timeouts.
    const set = await lab.exec(lab.ns.router, ['nft', 'list', 'set', 'inet', 'splitwan', 'portal4']);
    expect(set.stdout).toMatch(new RegExp(`${PORTAL.replaceAll('.', '\\.')} \\. tcp \\. 80 timeout 1m`));
    expect(set.stdout).toMatch(/10\.99\.9\.53 \. udp \. 53 timeout 1m/);
    expect((await status()).portal?.state).toBe('open');

    // The browser: the name from the breakout's resolver, the page through the breakout.
    const page = await curl('http://portal.lab.test/login?user=open');
    expect(page.ok, page.err).toBe(true);
    expect(page.body).toContain('hotel login');
    expect(serverLog().filter((e) => e.url.includes('user=open')).map((e) => e.remote)).toEqual([lab.addr.routerWan.v4]);
    // Everything else keeps its path: a tunnel name gets no answer, a tunnel address is refused, a portal host's other port too.
    expect((await curl('http://web.lab.test/')).ok).toBe(false);
    expect((await curl(`http://${lab.addr.web.v4}/`)).ok).toBe(false);
    expect((await curl(`http://${PORTAL}:8080/`)).ok).toBe(false); // the capture below shows it never left
    // The guest logs in; the portal lets the tunnel through.
    const login = await curl('http://portal.lab.test/login?accept=1');
    expect(login.body).toBe('welcome');
    await blockTunnels(false);
    await waitFor(async () => (await status()).portal?.state === 'none', 20_000, 'the window to close after the login');
    expect(daemon!.output.some((l) => l.includes('captive portal window closed') && l.includes('answers 204 again (logged in)'))).toBe(true);
    expect((await lab.exec(lab.ns.router, ['nft', 'list', 'set', 'inet', 'splitwan', 'portal4'])).stdout).not.toContain(' . tcp . ');
    await waitFor(viaTunnel, 30_000, 'tunnel traffic after the login');
    // Nothing for the tunnel destination ever left by the WAN (all the curls above, and the tunnel's own since).
    expect(capture!.text).toBe('');
  }, 180_000);

  it('a window nobody logs in through closes by itself after portal.openFor', async () => {
    writeFileSync(cfg, config('6s'), { mode: 0o600 });
    const reload = await splitwan('reload');
    expect(reload.code, reload.stderr + reload.stdout).toBe(0);
    // Checked out of the hotel: the portal is back and the tunnel blocked again.
    rmSync(join(dir, 'logged-in'));
    await blockTunnels(true);
    await waitFor(async () => {
      const s = await status();
      return s.active === null && s.portal?.state === 'suspected';
    }, 60_000, 'the tunnel down and the portal suspected again');
    const opened = await splitwan('portal');
    expect(opened.stdout).toContain('captive portal window open');
    expect((await curl('http://portal.lab.test/login?user=short')).body).toContain('hotel login');
    expect((await lab.exec(lab.ns.router, ['nft', 'list', 'set', 'inet', 'splitwan', 'portal4'])).stdout).toMatch(/tcp \. 80 timeout 6s/);
    await waitFor(async () => (await status()).portal?.state === 'suspected', 20_000, 'the window to close by itself');
    expect(daemon!.output.some((l) => l.includes('captive portal window closed') && l.includes('6 s are up'))).toBe(true);
    expect((await curl('http://portal.lab.test/login?user=after', '--resolve', `portal.lab.test:80:${PORTAL}`)).ok).toBe(false);
    expect(serverLog().filter((e) => e.url.includes('user=after'))).toEqual([]);
    expect(capture!.text).toBe('');
  }, 180_000);
  it('router mode: a LAN client reaches the login page only while the window is open; --close ends it early', async () => {
    await stopDaemon(daemon!);
    daemon = null;
    writeFileSync(cfg, config('60s', 'router'), { mode: 0o600 });
    daemon = await startDaemon(lab.ns.router, cfg);
    from = lab.ns.client;
    // The client's browser: the name from the router's resolver (dig), then the page.
    const curlName = async (name: string, path: string): Promise<{ ok: boolean; body: string; err: string }> => {
      const ip = (await lab.exec(lab.ns.client, ['dig', '+short', '+time=2', '+tries=1', `@${lab.addr.routerLan.v4}`, name])).stdout.trim().split('\n')[0] ?? '';
      return /^\d+\.\d+\.\d+\.\d+$/.test(ip) ? curl(`http://${name}${path}`, '--resolve', `${name}:80:${ip}`) : { ok: false, body: '', err: `no address for ${name} (${ip || 'no answer'})` };
    };
    await waitFor(async () => {
      const s = await status();
      return s.active === null && s.portal?.state === 'suspected';
    }, 60_000, 'no gateway up and the portal suspected (router mode)');
    expect((await curlName('portal.lab.test', '/login?user=lan-before')).ok).toBe(false);
    expect((await curl(`http://${PORTAL}/login?user=lan-before2`)).ok).toBe(false);
    const opened = await splitwan('portal');
    expect(opened.stdout).toContain('captive portal window open');
    const page = await curlName('portal.lab.test', '/login?user=lan-open');
    expect(page.ok, page.err).toBe(true);
    expect(page.body).toContain('hotel login');
    // The router masquerades the client: the portal sees the router's WAN address.
    expect(serverLog().filter((e) => e.url.includes('user=lan-')).map((e) => `${e.url} ${e.remote}`)).toEqual([`/login?user=lan-open ${lab.addr.routerWan.v4}`]);
    expect((await curl(`http://${lab.addr.web.v4}/`)).ok).toBe(false);
    expect((await curlName('web.lab.test', '/')).ok).toBe(false);
    const closed = await splitwan('portal', '--close');
    expect(closed.stdout).toContain('splitwan portal: closed');
    expect((await status()).portal?.state).toBe('suspected');
    expect((await curl(`http://${PORTAL}/login?user=lan-after`)).ok).toBe(false);
    expect(serverLog().filter((e) => e.url.includes('user=lan-after'))).toEqual([]);
    expect(daemon!.output.some((l) => l.includes('captive portal window closed: closed by splitwan portal --close'))).toBe(true);
    expect(capture!.text).toBe('');
  }, 180_000);
});
