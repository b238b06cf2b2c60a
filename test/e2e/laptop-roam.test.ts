// Roaming (issue 16): the laptop leaves one network for another (Wi-Fi A off,
// Wi-Fi B on: another link, another address, another default route), and
// the tunnel carries traffic again within seconds, with nothing for a tunnel
// destination leaving bare meanwhile. In the namespace lab (lab/lab.ts) plus
// a second WAN link made here:
//
//  [router: the laptop, splitwan run, host mode, breakout.interface auto]
//     wan0 10.99.2.2/24 ── r0 10.99.2.1 ┐
//     wan1 10.99.5.2/24 ── r1 10.99.5.1 ┴ [isp] web 10.99.9.9 (echoes the source) ── [gw1] [gw2]
//     swg-* ══ WireGuard ══ gw1 (preferred), gw2
//
// A change: the current link goes down, the other comes up with its address
// and the default route. Measured: from the change to the first request the
// web server sees from a gateway's address (wireguard-go alone: ~15 s, its
// handshake timeout; splitwan sets each peer's endpoint again on the change). Captures on r0 and r1 count packets to
// the web server: any one is a leak (all of its traffic takes the tunnel).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, must, type Lab } from '../../lab/lab.js';
import { labConfig, startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
if (!support.ok) console.warn(`[test/e2e/laptop-roam] SKIPPED: the lab cannot run here: ${support.why}`);
const CHANGES = 4;

describe.skipIf(!support.ok && !process.env.CI)('roaming between networks (host mode)', () => {
  const tag = `r${process.pid % 10000}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  let lab: Lab;
  let dir = '';
  let daemon: Daemon | null = null;
  const captures: { child: ChildProcess; text: string }[] = [];

  const NETS = [
    { link: 'wan0', peer: 'r0', me: '10.99.2.2/24', gw: '10.99.2.1' },
    { link: 'wan1', peer: 'r1', me: '10.99.5.2/24', gw: '10.99.5.1' },
  ] as const;
  /** Leaves network `from` for network `to`, as a laptop moving between Wi-Fis. */
  const roam = async (to: 0 | 1): Promise<void> => {
    const from = NETS[1 - to]!;
    const n = NETS[to];
    await must(['ip', '-n', lab.ns.router, '-batch', '-'], { input: [`link set ${from.link} down`, `addr flush dev ${from.link}`, `addr add ${n.me} dev ${n.link}`, `link set ${n.link} up`, `route replace default via ${n.gw} dev ${n.link}`].join('\n') + '\n' });
  };
  /** A request the web server saw come from a gateway (gw1, or gw2 after a failover meanwhile). */
  const viaTunnel = async (): Promise<boolean> => {
    const r = await lab.curlEcho(lab.ns.router, `http://${lab.addr.web.v4}/`, { timeoutMs: 1000, extraArgs: ['-4'] });
    return !('error' in r) && (r.remote === lab.gateways[0].uplink.v4 || r.remote === lab.gateways[1].uplink.v4);
  };

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false, withIpv6: false });
    // The second network: its link is down until the laptop moves to it.
    await must(['ip', '-n', lab.ns.router, 'link', 'add', 'wan1', 'type', 'veth', 'peer', 'name', 'r1', 'netns', lab.ns.isp]);
    await must(['ip', '-n', lab.ns.isp, '-batch', '-'], { input: 'addr add 10.99.5.1/24 dev r1\nlink set r1 up\n' });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-roam-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, labConfig({ dir, ispResolver: lab.addr.ispResolver.v4, names: GW, mode: 'host', lines: ['health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 2 }', 'rules: []', 'default: tunnel'] }).replace('breakout: { interface: wan0,', 'breakout: { interface: auto,'), { mode: 0o600 });
    daemon = await startDaemon(lab.ns.router, cfg);
    for (const [link, peer] of [['wan0', 'r0'], ['wan1', 'r1']] as const) {
      const c = { child: spawn('ip', ['netns', 'exec', lab.ns.isp, 'tcpdump', '-l', '-n', '-i', peer, `host ${lab.addr.web.v4}`], { stdio: ['ignore', 'pipe', 'pipe'] }), text: '' };
      let err = '';
      c.child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      c.child.stdout!.setEncoding('utf8').on('data', (d: string) => (c.text += d));
      captures.push(c);
      await until(() => err.includes('listening on'), 5000, `tcpdump on ${peer} (${link})`);
    }
  }, 90_000);

  afterAll(async () => {
    for (const c of captures) if (c.child.exitCode === null) c.child.kill('SIGTERM');
    await teardown({ daemon, lab, dir });
  }, 60_000);

  it(`${CHANGES} changes of network: tunnel traffic again within seconds each time, nothing for the tunnel leaves bare`, async () => {
    await until(viaTunnel, 15_000, 'tunnel traffic');
    const times: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const to = ((i + 1) % 2) as 0 | 1;
      const t0 = Date.now();
      await roam(to);
      await until(viaTunnel, 20_000, `tunnel traffic after change ${i + 1} (to ${NETS[to].link})`).catch(async (e: Error) => {
        const r = lab.ns.router;
        const out = await Promise.all([['wg', 'show'], ['ip', 'route'], ['ip', 'addr'], ['conntrack', '-L', '-p', 'udp'], ['nft', 'list', 'chain', 'inet', 'splitwan', 'post'], ['nft', 'list', 'chain', 'inet', 'splitwan', 'wan_guard']].map(async (a) => `$ ${a.join(' ')}\n${(await lab.exec(r, a)).stdout}`));
        const g = await lab.exec(lab.gateways[0].ns, ['wg', 'show']);
        throw new Error(`${e.message}\n${out.join('\n')}\ngw1: ${g.stdout}\ndaemon:\n${daemon!.output.slice(-25).join('\n')}`);
      });
      times.push(Date.now() - t0);
    }
    console.log(`[laptop-roam] change → tunnel traffic (ms): ${times.join(', ')}`);
    for (const t of times) expect(t).toBeLessThan(5_000);
    expect(captures.map((c) => c.text)).toEqual(['', '']);
  }, 180_000);
});
