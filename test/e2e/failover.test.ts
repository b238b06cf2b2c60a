// Failover in the namespace lab (lab/lab.ts), with real probes through
// each gateway's own tunnel:
//
//  [client] ── lan0 [router: splitwan run] wan0 ── [isp] web 10.99.9.9 (echoes the source it sees)
//                    swg-<t>a ══ WireGuard ══ [gw1] ── isp   (seen as 10.99.3.2)
//                    swg-<t>b ══ WireGuard ══ [gw2] ── isp   (seen as 10.99.4.2)
//
// Both tunnels carry the same address and both gateways' resolvers the same
// address, so only per-path sockets can probe them apart: blackholing gw1's
// WireGuard (nftables in gw1's namespace) must move traffic to gw2 and leave
// gw2 up. Then both dark: the kill switch (fast rejects, SERVFAIL for tunnel
// names, not one packet to the web server on the WAN); then recovery.
// Every test runs in both modes, each with its own lab and daemon: `mode:
// router` (the LAN client's traffic, its DNS to 10.99.1.1) and `mode: host`
// (the router namespace's own traffic, as on a laptop; DNS to 127.0.0.53).
// Needs root: CI runs it as root.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, type Lab } from '../../lab/lab.js';
import { labConfig, startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
const MODES = ['router', 'host'] as const;
type Mode = (typeof MODES)[number];

describe.skipIf(!support.ok && !process.env.CI).each(MODES)('failover in the lab (%s mode)', (mode: Mode) => {
  // Each mode has its own lab and gateway names (wireguard-go's control sockets are global).
  const tag = `f${process.pid % 10000}${mode[0]}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  // Who connects and asks: the LAN client (router mode) or the machine splitwan runs on (host mode).
  const from = mode === 'router' ? 'client' : 'router';
  let lab: Lab;
  let dir: string;
  let daemon: Daemon | null = null;

  /** splitwan's resolver, as the asking side knows it (host mode: dns.listen's default). */
  const resolver = (): string => (mode === 'router' ? lab.addr.routerLan.v4 : '127.0.0.53');
  const via = async (timeoutMs = 2000): Promise<string> => {
    const r = await lab.curlEcho(lab.ns[from], `http://${lab.addr.web.v4}/`, { timeoutMs });
    return 'error' in r ? `error: ${r.error}` : r.remote;
  };
  const gw1 = (): string => lab.gateways[0].uplink.v4;
  const gw2 = (): string => lab.gateways[1].uplink.v4;

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-failover-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(
      cfg,
      labConfig({
        dir,
        ispResolver: lab.addr.ispResolver.v4,
        names: GW,
        mode,
        lines: ['health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 3, failbackHold: 2s }', 'rules: []', 'default: tunnel'],
      }),
      { mode: 0o600 },
    );
    daemon = await startDaemon(lab.ns.router, cfg);
  }, 90_000);

  afterAll(
    () =>
      teardown({
        daemon,
        lab,
        dir,
        beforeDestroy: async () => {
          await lab?.blackholeGateway(0, false);
          await lab?.blackholeGateway(1, false);
        },
      }),
    60_000,
  );

  it('traffic takes the preferred gateway, and both gateways are up', async () => {
    await until(async () => (await via()) === gw1(), 15_000, 'traffic through gw1');
    await until(() => daemon!.output.filter((l) => /"state":"up"/.test(l)).length >= 2, 10_000, 'both gateways up').catch((e) => { console.log(daemon!.output.slice(-30).join('\n')); throw e; });
  }, 30_000);

  it('gw1 goes dark: traffic moves to gw2 within failAfter × interval (+ a round), gw2 stays up', async () => {
    const t0 = Date.now();
    await lab.blackholeGateway(0, true);
    await until(async () => (await via(700)) === gw2(), 10_000, 'traffic through gw2');
    const took = Date.now() - t0;
    expect(took).toBeLessThan(6000);
    const out = daemon!.output.join('\n');
    expect(out).toMatch(new RegExp(`active gateway: ${GW[1]} \\(${GW[0]} is down\\)`));
    expect(out).not.toMatch(new RegExp(`gateway ${GW[1]} is down`)); // probed through its own tunnel
    console.log(`failover took ${took} ms (fault to the first request served by gw2)`);
  }, 20_000);

  it('both dark: the kill switch rejects at once, tunnel names get SERVFAIL, nothing reaches the web server via the WAN', async () => {
    // Watch the WAN for anything to the web server while both are down.
    const cap = spawn('ip', ['netns', 'exec', lab.ns.router, 'tcpdump', '-l', '-n', '-i', 'wan0', `host ${lab.addr.web.v4} and tcp port 80`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let seen = '';
    cap.stdout.setEncoding('utf8').on('data', (d: string) => (seen += d));
    try {
      await lab.blackholeGateway(1, true);
      await until(() => daemon!.output.some((l) => l.includes('no gateway is up')), 10_000, 'the kill switch');
      await new Promise((r) => setTimeout(r, 500)); // tcpdump is listening
      const t = Date.now();
      const r = await via(3000);
      expect(r).toMatch(/^error/);
      expect(Date.now() - t).toBeLessThan(1500); // rejected, not left to time out
      const d = await lab.exec(lab.ns[from], ['dig', '+tries=1', '+time=3', `@${resolver()}`, 'dark.where.lab.test']);
      expect(d.stdout).toMatch(/status: SERVFAIL/);
      if (mode === 'host') {
        // This machine's DNS aimed at the ISP's resolver is splitwan's business too: its SERVFAIL, not the ISP's answer.
        const isp = await lab.exec(lab.ns.router, ['dig', '+tries=1', '+time=3', `@${lab.addr.ispResolver.v4}`, 'dark-bypass.where.lab.test']);
        expect(isp.stdout).toMatch(/status: SERVFAIL/);
        expect(readFileSync(lab.ispResolverLog, 'utf8')).not.toContain('dark-bypass.where.lab.test');
      }
      await new Promise((r2) => setTimeout(r2, 500));
      expect(seen.trim()).toBe('');
    } finally {
      cap.kill();
    }
  }, 30_000);

  it('recovery: traffic comes back by itself, to the preferred gateway after its hold', async () => {
    // WireGuard retries a handshake every 5 s: a lifted blackhole takes up to that to show.
    await lab.blackholeGateway(1, false);
    await until(async () => (await via(700)) === gw2(), 30_000, 'traffic through gw2 again');
    await lab.blackholeGateway(0, false);
    // a handshake (≤ 5 s) + recoverAfter (3 rounds) + failbackHold (2 s) + a round or two
    await until(async () => (await via(700)) === gw1(), 30_000, 'traffic back through gw1');
    // The reason is the preference, or gw2 looking degraded next to it (RTTs jump on a loaded machine).
    expect(daemon!.output.join('\n')).toMatch(new RegExp(`active gateway: ${GW[0]} \\((${GW[0]} \\(priority 1\\) is preferred|${GW[1]} is degraded)`));
  }, 70_000);

  it('a reload that removes the active gateway: traffic moves to the other at once, logged as a switch', async () => {
    const cfg = join(dir, 'config.yaml');
    const text = readFileSync(cfg, 'utf8');
    const t0 = Date.now();
    writeFileSync(cfg, text.split('\n').filter((l) => !l.includes(`name: ${GW[0]},`)).join('\n'), { mode: 0o600 });
    await until(async () => (await via(700)) === gw2(), 15_000, 'traffic through gw2 after the reload');
    console.log(`reload removing the active gateway: traffic on gw2 after ${Date.now() - t0} ms`);
    // The daemon logs the switch once the reload is carried out, which is after the default path
    // flipped: on a busy machine a request can get through in between (d8f7371 failed 4 of 10
    // runs with stress-ng --cpu 2 asserting at once).
    const logged = new RegExp(`active gateway: ${GW[1]} \\(config reload\\)`);
    await until(() => daemon!.output.some((l) => logged.test(l)), 10_000, 'the switch in the log');
  }, 30_000);
});

it.skipIf(support.ok || !!process.env.CI)('failover in the lab: SKIPPED', () => {
  console.warn(`SKIPPED e2e test (failover): ${support.ok ? '' : support.why}. CI runs it as root.`);
});
