// Roaming benchmark (issue 16): from a change of network to tunnel traffic
// again, with splitwan (host mode, breakout.interface auto) and, in the same
// run, the way a user does it today: one wg-quick-style tunnel with a static
// config (wireguard-go, `Table = auto` routing: a fwmark for the tunnel's own
// UDP, everything else into the tunnel), nothing reacting to the change.
//
//  [router: the laptop] wan0 10.99.2.2/24 ── r0 10.99.2.1 ┐
//                       wan1 10.99.5.2/24 ── r1 10.99.5.1 ┴ [isp] web 10.99.9.9 ── [gw1] [gw2]
//
// A change: the current link down and flushed, the other up with its address
// and the default route (a laptop moving between two Wi-Fis). t = the change
// returned; the end = the first request (curl every 100 ms from the laptop,
// 1 s timeout) that the web server saw from a gateway's address. ROAM_CHANGES
// changes (20) each, alternating links; a change that does not recover in
// ROAM_LIMIT_S (40) counts as that limit. Printed: p50/p95/max per side and
// the ratio ours/peer, and for splitwan the packets for the web server (a
// tunnel destination) that arrived from either WAN link (bench/wan-leak.ts;
// goal 0); the LAST line is one JSON object. Everything started
// is stopped by pid; the lab is destroyed in `finally`. About 3 minutes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/lab.js';
import { inNs, Proc, procs, sleep } from './proc.js';
import { writeHostConfig } from './host-config.js';
import { summary } from './rng.js';
import { describeLeaks, installWanLeakCounter, leakDelta, readWanLeaks } from './wan-leak.js';

const QUICK = process.env.BENCH_QUICK === '1';
const CHANGES = Number(process.env.ROAM_CHANGES ?? (QUICK ? 4 : 20));
const LIMIT_MS = Number(process.env.ROAM_LIMIT_S ?? 40) * 1000;
const T = process.pid % 100000;
const GW = [`m${T}a`, `m${T}b`] as const;
const PEER_IF = `wqm${T}`.slice(0, 15);
const PEER_MARK = '51820';
const PEER_TABLE = '51820';
const NETS = [
  { link: 'wan0', me: '10.99.2.2/24', gw: '10.99.2.1' },
  { link: 'wan1', me: '10.99.5.2/24', gw: '10.99.5.1' },
] as const;
const root = join(import.meta.dirname, '..', '..');

async function must(lab: Lab, ns: string, argv: readonly string[], input?: string): Promise<void> {
  const r = await lab.exec(ns, argv, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
}

/** The laptop leaves its network for the other one. */
async function roam(lab: Lab, to: 0 | 1): Promise<void> {
  const from = NETS[1 - to]!;
  const n = NETS[to];
  await must(lab, lab.ns.router, ['ip', '-batch', '-'], [`link set ${from.link} down`, `addr flush dev ${from.link}`, `addr add ${n.me} dev ${n.link}`, `link set ${n.link} up`, `route replace default via ${n.gw} dev ${n.link}`].join('\n') + '\n');
}

/** Changes of network, each timed to the first request served through a gateway. */
async function changes(lab: Lab, say: (s: string) => void, label: string): Promise<number[]> {
  const uplinks = [lab.gateways[0].uplink.v4, lab.gateways[1].uplink.v4];
  const viaTunnel = async (): Promise<boolean> => {
    const r = await lab.curlEcho(lab.ns.router, `http://${lab.addr.web.v4}/`, { timeoutMs: 1000, extraArgs: ['-4'] });
    return !('error' in r) && uplinks.includes(r.remote);
  };
  const start = Date.now();
  while (!(await viaTunnel())) {
    if (Date.now() - start > 30_000) throw new Error(`${label}: no tunnel traffic before the first change`);
    await sleep(100);
  }
  const out: number[] = [];
  let at: 0 | 1 = 0;
  for (let i = 0; i < CHANGES; i++) {
    at = (1 - at) as 0 | 1;
    await roam(lab, at);
    const t0 = performance.now();
    let ms = LIMIT_MS;
    while (performance.now() - t0 < LIMIT_MS) {
      if (await viaTunnel()) {
        ms = performance.now() - t0;
        break;
      }
      await sleep(100);
    }
    out.push(ms);
    say(`${label}: change ${i + 1} → ${NETS[at].link}: ${ms >= LIMIT_MS ? `not back in ${LIMIT_MS / 1000} s` : `${Math.round(ms)} ms`}`);
  }
  // Back on wan0 for whoever comes next.
  if (at !== 0) await roam(lab, 0);
  return out;
}

export async function run(): Promise<void> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  let lab: Lab | null = null;
  const dir = mkdtempSync(join(tmpdir(), `splitwan-bench-roam-${process.pid}-`));
  try {
    lab = await createLab({ routerTunnels: false, withIpv6: false });
    await must(lab, lab.ns.router, ['ip', 'link', 'add', 'wan1', 'type', 'veth', 'peer', 'name', 'r1', 'netns', lab.ns.isp]);
    await must(lab, lab.ns.isp, ['ip', '-batch', '-'], 'addr add 10.99.5.1/24 dev r1\nlink set r1 up\n');

    // 1. splitwan.
    const cfg = writeHostConfig(lab, dir, { gateways: GW, breakoutInterface: 'auto', health: '{ interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 2 }' });
    const daemon = new Proc('splitwan', inNs(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'run', '--config', cfg]));
    await daemon.until('splitwan running', () => daemon.tail.includes('splitwan running'), 30_000);
    // Every packet for the web server (a tunnel destination) that arrives from either WAN link is a leak.
    await installWanLeakCounter(lab, [lab.addr.web.v4], [lab.ifaces.isp.router, 'r1']);
    const leaks0 = await readWanLeaks(lab);
    const ours = await changes(lab, say, 'splitwan');
    const leaked = leakDelta(leaks0, await readWanLeaks(lab));
    await daemon.stop(20_000);

    // 2. The peer: a static wg-quick-style tunnel to gw1 (wg-quick's Table = auto, by hand: no wg-quick for wireguard-go's naming here).
    const conf = lab.gateways[0].configText.split('\n').filter((l) => !/^(Address|DNS|MTU)\s*=/.test(l)).join('\n');
    const peerConf = join(dir, 'peer.conf');
    writeFileSync(peerConf, conf, { mode: 0o600 });
    const wg = new Proc('wireguard-go (peer)', inNs(lab.ns.router, ['wireguard-go', '-f', PEER_IF]));
    try {
      await sleep(300);
      await must(lab, lab.ns.router, ['wg', 'setconf', PEER_IF, peerConf]);
      await must(lab, lab.ns.router, ['wg', 'set', PEER_IF, 'fwmark', PEER_MARK]);
      await must(lab, lab.ns.router, ['ip', '-batch', '-'], [`addr add 10.64.0.2/32 dev ${PEER_IF}`, `link set ${PEER_IF} mtu 1420 up`, `route add default dev ${PEER_IF} table ${PEER_TABLE}`, `rule add not fwmark ${PEER_MARK} table ${PEER_TABLE} pref 1001`, 'rule add table main suppress_prefixlength 0 pref 1000'].join('\n') + '\n');
      const peer = await changes(lab, say, 'wg-quick (static)');
      const o = summary(ours);
      const p = summary(peer);
      const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
      say(`network change → tunnel traffic, ${CHANGES} changes: splitwan p50 ${o.p50} ms, p95 ${o.p95} ms, max ${o.max} ms, packets for a tunnel destination that left by a WAN ${describeLeaks(leaked)}; wg-quick (static) p50 ${p.p50} ms, p95 ${p.p95} ms, max ${p.max} ms; ratio p50 ${ratio(o.p50, p.p50)}, p95 ${ratio(o.p95, p.p95)}`);
      say(JSON.stringify({ bench: 'roam', changes: CHANGES, limit_ms: LIMIT_MS, ours: { ...o, leaked_packets: leaked.all, ms: ours.map(Math.round) }, peer: { name: 'wg-quick static (wireguard-go)', ...p, ms: peer.map(Math.round) }, ratio_p50: ratio(o.p50, p.p50), ratio_p95: ratio(o.p95, p.p95) }));
    } finally {
      await wg.stop(3000);
      await lab.exec(lab.ns.router, ['ip', '-batch', '-'], { input: `rule del pref 1001\nrule del pref 1000\n` });
    }
  } finally {
    for (const p of procs) await p.stop(3000);
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
