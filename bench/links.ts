// `npm run bench -- links`: several WAN links (issue 19), in the namespace lab
// with a second ISP link:
//
//   [client] ── lan0 [router] wan0 10.99.2.2 ── r0 [isp] web 10.99.9.9 / fd99:9::9
//     GET every 100 ms          wan1 10.99.5.2 ── r1 [isp]   (echoes the source it sees)
//     (v4: breakout,            swg-<n>a ══ WireGuard ══ [gw1] ── isp   (fd99:3::2)
//      v6: the tunnel)          swg-<n>b ══ WireGuard ══ [gw2] ── isp   (fd99:4::2)
//
//  1. splitwan (breakout.links fiber/lte, health interval 1s, timeout 800ms,
//     failAfter 3, recoverAfter 3, failbackHold 2s): TRIALS faults of the
//     preferred link (everything dropped on the isp's side of r0, the
//     interface stays up). WAN failover: fault → the first IPv4 request served
//     by lte. Tunnel recovery: fault → the first IPv6 request through the
//     tunnel that succeeded with none failing after it. Then the fault is
//     lifted and the failback waited for.
//  2. Balance, splitwan: balance: true, weights 2:1, FLOWS TCP flows (3 round
//     trips each, 100 at a time) that each report the source the server saw:
//     the split, and flows whose answers named two sources (changed link).
//  3. The peer, mwan3's way, simulated in the same lab (splitwan stopped, its
//     state gone): plain NAT on both links, mwan3's per-interface tables and
//     source rules, and its tracker: one ping(8) of the ISP's resolver address
//     from the preferred link's address (`ping -I`, 1 s timeout) every 5 s,
//     down after 3 failures (up after 3 good), moving main's default route and
//     flushing conntrack. Faults at a random phase of its cycle; PEER_TRIALS
//     of them.
//  4. Balance, the peer: mwan3's balanced policy, its iptables rules
//     (`-m statistic --mode random --probability P`, one per member, the mark
//     saved in and restored from conntrack) written as nft `numgen random mod
//     1000` rules (mwan3BalanceRules), fwmark ip rules into the link tables;
//     the same FLOWS flows.
// stdout: readable lines, then the LAST line one JSON object.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/lab.js';
import { inNs, Proc, procs, sleep, until } from './proc.js';
import { RequestLoop } from './request-loop.js';
import { rng, summary } from './rng.js';

const TRIALS = Number(process.env.BLINKS_TRIALS ?? 20);
const PEER_TRIALS = Number(process.env.BLINKS_PEER_TRIALS ?? 5);
const FLOWS = Number(process.env.BLINKS_FLOWS ?? 10_000);
const REQ_INTERVAL_MS = 100;
const REQ_TIMEOUT_MS = 300;
/** mwan3's tracker defaults: a ping every 5 s (1 s timeout), down after 3, up after 3. */
const MWAN3 = { periodMs: 5000, timeoutS: 1, down: 3, up: 3 };
/** The peer's link marks and tables (mwan3's are 0x100·n under mask 0x3f00, tables by interface). */
const PEER_LINKS = [
  { mark: 0x100, table: '110' },
  { mark: 0x200, table: '120' },
] as const;

/** What the flow client reports (bench/balance-child.ts). */
interface Flows { flows: number; bySource: Record<string, number>; changed: number; failed: number; ms: number }

/**
 * mwan3's balanced policy as nft rules (mwan3_set_policy): members are taken
 * in config order, each inserted AT THE TOP with probability weight / the
 * weight of the members so far (in thousandths, its `--probability 0.NNN`),
 * so the last is tried first; a flow with no mark yet takes the first that
 * draws it; the mark is restored from and saved in conntrack (CONNMARK).
 */
export function mwan3BalanceRules(members: readonly { mark: number; weight: number }[], iif: string): string[] {
  const draws: string[] = [];
  let total = 0;
  for (const m of members) {
    total += m.weight;
    const permille = Math.floor((m.weight * 1000) / total);
    const draw = permille >= 1000 ? '' : `numgen random mod 1000 < ${permille} `;
    draws.unshift(`iifname "${iif}" meta mark and 0xff00 == 0 ${draw}meta mark set 0x${m.mark.toString(16)}`);
  }
  return [`iifname "${iif}" ct mark and 0xff00 != 0 meta mark set ct mark`, ...draws, `iifname "${iif}" ct mark set meta mark`];
}

const now = (): number => performance.timeOrigin + performance.now();

export async function run(): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) throw new Error('the links benchmark needs root (it creates network namespaces)');
  // The peer's tracker pings, as mwan3track does by default.
  if (spawnSync('ping', ['-V']).status !== 0) throw new Error('the links benchmark needs ping(8) for the peer\'s tracker: apt-get install iputils-ping');
  const say = (s: string) => process.stdout.write(s + '\n');
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-links-')); // 0700
  const names = [`bl${process.pid % 10000}a`, `bl${process.pid % 10000}b`];
  let lab: Lab | null = null;
  let tracker: { stop: boolean; done: Promise<void> } | null = null;
  const cleanup = async (): Promise<void> => {
    if (tracker) {
      tracker.stop = true;
      await tracker.done.catch(() => undefined);
    }
    await Promise.all([...procs].map((p) => p.stop(10_000)));
    if (lab) await lab.destroy().catch((e: unknown) => process.stderr.write(`lab destroy: ${(e as Error).message}\n`));
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const random = rng(19);
  try {
    lab = await createLab({ routerTunnels: false, secondWan: true });
    const L = lab;
    const FIBER = L.addr.routerWan.v4;
    const LTE = L.addr.routerWan2.v4;
    const GW1 = L.gateways[0].uplink.v6;
    const GW2 = L.gateways[1].uplink.v6;
    say(`lab ${L.id} up in ${L.timings.total} ms; breakout seen as ${FIBER} (fiber) or ${LTE} (lte); tunnel IPv6 through gw1 seen as ${GW1}`);
    writeFileSync(join(dir, 'gw1.conf'), L.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), L.gateways[1].configText, { mode: 0o600 });
    const config = (balance: boolean): string =>
      [
        'mode: router',
        'lan: [lan0]',
        'breakout:',
        `  balance: ${balance}`,
        '  links:',
        `    - { name: fiber, interface: wan0, gateway: [${L.addr.ispToRouter.v4}, "${L.addr.ispToRouter.v6}"], dns: [${L.addr.ispResolver.v4}], priority: 1, weight: 2 }`,
        `    - { name: lte, interface: wan1, gateway: [${L.addr.ispToRouter2.v4}, "${L.addr.ispToRouter2.v6}"], dns: [${L.addr.ispResolver.v4}], priority: 2, weight: 1 }`,
        'tunnel:',
        '  gateways:',
        `    - { name: ${names[0]}, config: gw1.conf, priority: 1 }`,
        `    - { name: ${names[1]}, config: gw2.conf, priority: 2 }`,
        'health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 3, failbackHold: 2s }',
        `stateDir: ${join(dir, 'state')}`,
        `control: { socket: ${join(dir, 'control.sock')} }`,
        'rules:',
        `  - cidrs: [${L.addr.web.v4}/32]`,
        '    via: breakout',
        'default: tunnel',
        '',
      ].join('\n');
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, config(false), { mode: 0o600 });
    const daemon = new Proc('splitwan', inNs(L.ns.router, [process.execPath, join(import.meta.dirname, '..', '..', 'bin', 'splitwan'), 'run', '--config', cfg]));
    await daemon.until('"splitwan running"', () => daemon.tail.includes('splitwan running'), 30_000);
    const c4 = new RequestLoop(L.ns.client, `http://${L.addr.web.v4}/`, REQ_INTERVAL_MS, REQ_TIMEOUT_MS);
    const c6 = new RequestLoop(L.ns.client, `http://[${L.addr.web.v6}]/`, REQ_INTERVAL_MS, REQ_TIMEOUT_MS);
    await until('breakout by fiber, the tunnel by gw1', () => c4.stableOn(5, [FIBER]) && c6.stableOn(5, [GW1]), 30_000);
    say(`splitwan running (pid ${daemon.pid}); health interval 1s, timeout 800ms, failAfter 3, recoverAfter 3, failbackHold 2s`);

    // ------------------------------------------------------------ 1. splitwan's WAN failover
    const failover: number[] = [];
    const recovery: number[] = [];
    const failback: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      await sleep(500 + random() * 1000); // a random phase of the probe rounds
      const t0 = now();
      await L.blackholeWan(0, true);
      const first = await until('a request by lte', () => c4.firstBy(LTE, t0), 30_000);
      failover.push(first.end - t0);
      // Through either gateway: both reach their endpoints by the same (now other) link.
      await until('the tunnel stable again', () => c6.goodOn(10, [GW1, GW2]), 60_000).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}; last tunnel requests: ${c6.recent()}`);
      });
      const rec = c6.recoveredAt(t0)!;
      recovery.push(rec - t0);
      const t1 = now();
      await L.blackholeWan(0, false);
      const back = await until('breakout back on fiber', () => c4.firstBy(FIBER, t1), 30_000);
      failback.push(back.end - t1);
      await until('stable again', () => c4.stableOn(5, [FIBER]) && c6.stableOn(5, [GW1]), 60_000).catch((e: unknown) => {
        throw new Error(`${(e as Error).message}; last breakout requests: ${c4.recent()}; tunnel: ${c6.recent()}`);
      });
      say(`  trial ${t + 1}: breakout on lte after ${Math.round(first.end - t0)} ms, tunnel traffic again after ${Math.round(rec - t0)} ms; failback ${Math.round(back.end - t1)} ms after the fault was lifted`);
      // BLINKS_DEBUG=1: the daemon's log lines of the trial, ms from the fault.
      if (process.env.BLINKS_DEBUG) {
        for (const line of daemon.tail.split('\n')) {
          const j = ((): { time?: number; msg?: string } | null => {
            try {
              return JSON.parse(line) as { time?: number; msg?: string };
            } catch {
              return null;
            }
          })();
          if (j?.time !== undefined && j.time >= t0 - 100 && j.time <= t1) say(`    +${Math.round(j.time - t0)} ms ${j.msg}`);
        }
      }
    }

    // ------------------------------------------------------------ 2. balance, splitwan
    writeFileSync(cfg, config(true), { mode: 0o600 });
    await until('the balance reload', () => (daemon.tail.match(/config reloaded/g) ?? []).length >= 1, 15_000);
    await sleep(1000);
    const child = join(import.meta.dirname, 'balance-child.js');
    const server = new Proc('flow server', inNs(L.ns.isp, [process.execPath, child, 'server', L.addr.web.v4, '8100']));
    await server.until('the flow server', () => server.tail.includes('ready'), 10_000);
    /** FLOWS flows from the client, each told which link it left by. */
    const flows = async (label: string): Promise<Flows & { fiberShare: number }> => {
      const client = new Proc(`flow client (${label})`, inNs(L.ns.client, [process.execPath, child, 'client', L.addr.web.v4, '8100', String(FLOWS), '3', '100']));
      await client.until('the flows', () => client.tail.includes('"flows"'), 600_000);
      await client.stop();
      const f = JSON.parse(client.tail.trim().split('\n').pop()!) as Flows;
      const fiberShare = (f.bySource[FIBER] ?? 0) / Math.max(1, f.flows - f.failed);
      say(`balance (${label}), ${f.flows} flows (weights 2:1) in ${f.ms} ms: fiber ${f.bySource[FIBER] ?? 0}, lte ${f.bySource[LTE] ?? 0} (fiber share ${(fiberShare * 100).toFixed(2)} %, weight ${(200 / 3).toFixed(2)} %), changed link mid-life ${f.changed}, failed ${f.failed}`);
      return { ...f, fiberShare };
    };
    const bal = await flows('splitwan');

    // ------------------------------------------------------------ 3. the peer: mwan3's way, simulated
    await daemon.stop(20_000);
    const leftover = await L.exec(L.ns.router, ['nft', 'list', 'tables']);
    if (leftover.stdout.includes('splitwan')) throw new Error('splitwan left its table behind');
    const x = async (argv: string[], input?: string): Promise<void> => {
      const r = await L.exec(L.ns.router, argv, input === undefined ? {} : { input });
      if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
    };
    await x(['nft', '-f', '-'], 'table ip bench_mwan3 {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname { "wan0", "wan1" } masquerade\n\t}\n}\n');
    // mwan3's per-interface tables: its tracker's probes leave by their own link (by their source, as `ping -I` does).
    const wans = [
      { src: L.addr.routerWan.v4, via: L.addr.ispToRouter.v4, dev: 'wan0', ...PEER_LINKS[0] },
      { src: L.addr.routerWan2.v4, via: L.addr.ispToRouter2.v4, dev: 'wan1', ...PEER_LINKS[1] },
    ];
    for (const w of wans) {
      await x(['ip', 'route', 'replace', 'default', 'via', w.via, 'dev', w.dev, 'table', w.table]);
      await x(['ip', 'rule', 'add', 'pref', '1000', 'from', w.src, 'lookup', w.table]);
    }
    await x(['ip', 'route', 'replace', 'default', 'via', wans[0]!.via, 'dev', 'wan0']);
    // Replies to the tracker's pings on a link that is not main's default: loose reverse-path filtering, as on OpenWrt.
    await x(['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=2', 'net.ipv4.conf.wan0.rp_filter=2', 'net.ipv4.conf.wan1.rp_filter=2']);
    await until('the peer: traffic by fiber', () => c4.stableOn(5, [FIBER]), 15_000);
    const state = { fiberUp: true, fails: 0, goods: 0 };
    const switches: { at: number; to: string }[] = [];
    tracker = { stop: false, done: Promise.resolve() };
    const tr = tracker;
    tr.done = (async () => {
      while (!tr.stop) {
        const started = Date.now();
        // mwan3track's default: `ping -I <the link> -c 1 -W <timeout>` of its track_ip.
        const p = await L.exec(L.ns.router, ['ping', '-n', '-q', '-c', '1', '-W', String(MWAN3.timeoutS), '-I', L.addr.routerWan.v4, L.addr.ispResolver.v4]).catch((e: unknown) => ({ code: 1, stdout: '', stderr: String(e) }));
        if (p.code !== 0 && process.env.BLINKS_DEBUG) say(`  tracker: ping failed (${p.stderr.trim() || p.stdout.trim().split('\n').pop()})`);
        if (p.code === 0) {
          state.fails = 0;
          state.goods++;
          if (!state.fiberUp && state.goods >= MWAN3.up) {
            state.fiberUp = true;
            await x(['ip', 'route', 'replace', 'default', 'via', wans[0]!.via, 'dev', 'wan0']);
            switches.push({ at: now(), to: 'fiber' });
          }
        } else {
          state.goods = 0;
          state.fails++;
          if (state.fiberUp && state.fails >= MWAN3.down) {
            state.fiberUp = false;
            await x(['ip', 'route', 'replace', 'default', 'via', wans[1]!.via, 'dev', 'wan1']);
            // mwan3 flushes the conntrack entries of a link that went down.
            await L.exec(L.ns.router, ['conntrack', '-F']).catch(() => undefined);
            switches.push({ at: now(), to: 'lte' });
          }
        }
        await sleep(Math.max(0, MWAN3.periodMs - (Date.now() - started)));
      }
    })();
    const peer: number[] = [];
    for (let t = 0; t < PEER_TRIALS; t++) {
      await sleep(random() * MWAN3.periodMs);
      const t0 = now();
      await L.blackholeWan(0, true);
      const first = await until('the peer: a request by lte', () => c4.firstBy(LTE, t0), 60_000);
      peer.push(first.end - t0);
      await L.blackholeWan(0, false);
      await until('the peer: back on fiber', () => switches.length > 0 && switches[switches.length - 1]!.to === 'fiber' && c4.stableOn(5, [FIBER]), 60_000);
      say(`  peer trial ${t + 1}: breakout on lte after ${Math.round(first.end - t0)} ms`);
    }
    tr.stop = true;
    await tr.done;

    // ------------------------------------------------------------ 4. balance, the peer (mwan3's statistic rules)
    const rules = mwan3BalanceRules(wans.map((w, i) => ({ mark: w.mark, weight: i === 0 ? 2 : 1 })), 'lan0');
    await x(['nft', '-f', '-'], `table ip bench_mwan3_balance {\n\tchain pre {\n\t\ttype filter hook prerouting priority mangle; policy accept;\n${rules.map((r) => `\t\t${r}\n`).join('')}\t}\n}\n`);
    for (const w of wans) await x(['ip', 'rule', 'add', 'pref', '900', 'fwmark', `0x${w.mark.toString(16)}/0xff00`, 'lookup', w.table]);
    const peerBal = await flows('the peer, mwan3\'s statistic rules');
    await server.stop();

    const fo = summary(failover);
    const rc = summary(recovery);
    const fb = summary(failback);
    const pf = summary(peer);
    say(`WAN failover (splitwan), ${failover.length} faults: p50 ${fo.p50} ms, p95 ${fo.p95} ms, max ${fo.max} ms (goal p95 <= 3500)`);
    say(`tunnel recovery after a WAN failover: p50 ${rc.p50} ms, p95 ${rc.p95} ms, max ${rc.max} ms (goal p95 <= 8000)`);
    say(`failback after the fault is lifted: p50 ${fb.p50} ms, p95 ${fb.p95} ms (recoverAfter 3 + hold 2 s)`);
    say(`peer (mwan3's way simulated: a ping every ${MWAN3.periodMs / 1000} s, down after ${MWAN3.down}), ${peer.length} faults: p50 ${pf.p50} ms, p95 ${pf.p95} ms, max ${pf.max} ms (with ${peer.length} samples p95 is near the max)`);
    say(`ratio splitwan/peer: p50 ${(fo.p50 / pf.p50).toFixed(3)}, p95 ${(fo.p95 / pf.p95).toFixed(3)}`);
    say(`balance 2:1 over ${FLOWS} flows: splitwan fiber ${(bal.fiberShare * 100).toFixed(2)} % (off by ${(Math.abs(bal.fiberShare - 2 / 3) * 100).toFixed(2)} points), ${bal.changed} changed link; peer ${(peerBal.fiberShare * 100).toFixed(2)} % (off by ${(Math.abs(peerBal.fiberShare - 2 / 3) * 100).toFixed(2)} points), ${peerBal.changed} changed link`);
    const balanceOut = (f: Flows & { fiberShare: number }) => ({ flows: f.flows, weights: '2:1', by_link: { fiber: f.bySource[FIBER] ?? 0, lte: f.bySource[LTE] ?? 0 }, fiber_share: Number(f.fiberShare.toFixed(4)), off_by: Number(Math.abs(f.fiberShare - 2 / 3).toFixed(4)), changed_link: f.changed, failed: f.failed, ms: f.ms });
    const out = {
      bench: 'links',
      trials: failover.length,
      wan_failover_ms: fo,
      tunnel_recovery_ms: rc,
      failback_ms: fb,
      balance: balanceOut(bal),
      peer: {
        approach: 'mwan3 simulated: ping tracker every 5 s (1 s timeout), down after 3, up after 3; balance by its statistic rules (numgen) and connmark',
        trials: peer.length,
        wan_failover_ms: pf,
        balance: balanceOut(peerBal),
      },
      ratio_p50: Number((fo.p50 / pf.p50).toFixed(3)),
      ratio_p95: Number((fo.p95 / pf.p95).toFixed(3)),
      goals: { failover_p95_le_3500: fo.p95 <= 3500, recovery_p95_le_8000: rc.p95 <= 8000, balance_within_2pct: Math.abs(bal.fiberShare - 2 / 3) <= 0.02, no_flow_changed_link: bal.changed === 0 },
    };
    say(JSON.stringify(out));
    return out;
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}
