// Failover benchmark (issue 6, "Performance"): how long the LAN is cut off
// when the active gateway goes dark, with splitwan's health monitor, side by
// side in the same run with the seed's approach (one HTTP probe every 10 s,
// tear the tunnel down and reconnect to the other gateway after 3 failures),
// and what splitwan's probes cost while nothing happens.
//
//  [client] c0 10.99.1.2 ── lan0 [router] wan0 10.99.2.2 ── r0 [isp] web 10.99.9.9 (echoes the source it sees)
//   failover-client-child:        │  splitwan run (part 1)           ├── gw1 10.99.3.1
//   GET every 100 ms,             │  or the seed's simulation        └── gw2 10.99.4.1
//   300 ms timeout                ╠══ WireGuard ══ [gw1] up0 10.99.3.2 (seen as 10.99.3.2)
//                                 ╚══ WireGuard ══ [gw2] up0 10.99.4.2 (seen as 10.99.4.2)
//   10.99.2.2 seen by the web server = the request left by the breakout: a leak.
//
// The lab is test/lab/lab.ts, imported as is (tsc compiles it beside
// dist/bench, as dist/test/lab/lab.js). One lab for the whole run:
//  1. splitwan in the router namespace (both gateways priority 1, so the
//     active one stays put after the other recovers and the faults alternate
//     between gw1 and gw2 by themselves; health: interval 1s, timeout 800ms,
//     failAfter 3, recoverAfter 3, failbackHold 2s; default: tunnel).
//     a. Probe overhead with no client traffic: CPU of the daemon (itself,
//        its reaped children: `ip`/`wg` of the handshake probe, and its live
//        wireguard-go children), and packets on its tunnel interfaces and on
//        the WAN, over BFO_OVERHEAD_S seconds (60; shorter runs are scaled to a minute). The
//        lab has 2 gateways: measured for 2, never for 4.
//     b. BFO_TRIALS trials (20): traffic stable on gateway A; fault A
//        (lab.blackholeGateway: WireGuard UDP dropped in A's namespace); t0 =
//        when that returned; failover = the end of the first request served
//        via the other gateway, minus t0; lost = failed requests that ended
//        in between; leak = any request anywhere in the part that the web
//        server saw from the breakout address. Then the fault is lifted and
//        the run waits until the daemon logs A up again.
//  2. The seed, simulated (splitwan stopped, its state gone): one WireGuard
//     tunnel at a time (wireguard-go, as the daemon uses here), the LAN
//     policy-routed into it, masquerade out of the tunnel and the WAN (a home
//     router), and a controller that curls the web server through the tunnel
//     every 10 s (5 s timeout); after 3 failures in a row it deletes the
//     tunnel and brings up one to the other gateway (routes with it, as
//     wg-quick down/up). The fault lands at a uniformly random point of its
//     10 s cycle (its probe loop starts at a seeded random phase after each
//     connect). BFO_PEER_TRIALS trials (3), same figures. Ratios: ours/peer.
//  1c. Leak cycles (issue 15): BFO_LEAK_CYCLES (100) fault/failover/kill-
//     switch/recovery cycles (gateway A dark → failover to B; B dark → the
//     kill switch holds 1 s; both lifted → recovery, both up again), health
//     made faster by a reload (interval 500ms, timeout 400ms, failAfter 2,
//     recoverAfter 2, failbackHold 1s), with traffic running through them:
//     the GETs above (new TCP connections), 4 long-lived TCP streams whose
//     server writes every 100 ms, a long-lived UDP flow and new UDP flows
//     (bench/flows-child.ts). Counted: every packet for a tunnel destination
//     arriving at the ISP from the router's WAN, by kind (nft in the isp
//     namespace; bench/wan-leak.ts). Goal: 0. Also the daemon's WAN guard
//     counters (did the defence in depth ever have to act?).
//  1d. The same cycles, BFO_PEER_LEAK_CYCLES (20) of them, with splitwan at
//     the commit before this work as the peer (bench/baseline.ts): its leaks.
// Everything started is stopped by pid; the lab's namespaces and our temp
// dir are removed in `finally`. About 35 minutes (BENCH_QUICK=1: ~4; the
// leak cycles stop starting after BFO_LEAK_BUDGET_S, 2400 s).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type GatewayIndex, type Lab } from '../lab/lab.js';
import { buildBaseline, type Baseline } from './baseline.js';
import { inNs, Proc, procs, sleep, until } from './proc.js';
import { RequestLoop } from './request-loop.js';
import { percentile, rng, summary } from './rng.js';
import { describeLeaks, installWanLeakCounter, leakDelta, quiesce, readWanLeaks, type LeakCounts } from './wan-leak.js';

const QUICK = process.env.BENCH_QUICK === '1';
const TRIALS = Number(process.env.BFO_TRIALS ?? (QUICK ? 2 : 20));
const PEER_TRIALS = Number(process.env.BFO_PEER_TRIALS ?? (QUICK ? 1 : 3));
const OVERHEAD_S = Number(process.env.BFO_OVERHEAD_S ?? (QUICK ? 5 : 60));
const LEAK_CYCLES = Number(process.env.BFO_LEAK_CYCLES ?? (QUICK ? 3 : 100));
const PEER_LEAK_CYCLES = Number(process.env.BFO_PEER_LEAK_CYCLES ?? (QUICK ? 2 : 20));
const LEAK_BUDGET_MS = Number(process.env.BFO_LEAK_BUDGET_S ?? 2400) * 1000;
const PEER_LEAK_BUDGET_MS = Number(process.env.BFO_PEER_LEAK_BUDGET_S ?? 600) * 1000;
/** Health for the leak cycles: faster, so 100 cycles fit in the budget. */
const LEAK_HEALTH = { interval: '500ms', timeout: '400ms', failAfter: 2, recoverAfter: 2, failbackHold: '1s' };
const REQ_INTERVAL_MS = 100;
const REQ_TIMEOUT_MS = 300;
const GOAL_P95_MS = 3500;
const HEALTH = { interval: '1s', timeout: '800ms', failAfter: 3, recoverAfter: 3, failbackHold: '2s' };
const SEED = { periodMs: 10_000, timeoutMs: 5000, failAfter: 3 };
const OURS_FAILOVER_LIMIT_MS = 15_000;
const PEER_FAILOVER_LIMIT_MS = 60_000;
const RECOVER_LIMIT_MS = 40_000;
/** Trials stop starting once a part has run this long (the run stays bounded on a slow machine). */
const OURS_BUDGET_MS = Number(process.env.BFO_OURS_BUDGET_S ?? 330) * 1000;
const PEER_BUDGET_MS = Number(process.env.BFO_PEER_BUDGET_S ?? 180) * 1000;
const T = process.pid % 100000;
const GW_NAMES = [`o${T}a`, `o${T}b`] as const; // the daemon's links: swg-o<T>a, swg-o<T>b
const PEER_TABLE = '200';
const PEER_PREF = '1000';
const WG_SOCKET_DIR = '/var/run/wireguard';

const now = (): number => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------
// The client loop's requests

/** The client loop in the lab's client namespace, to the web server's IPv4 address. */
class Client extends RequestLoop {
  constructor(lab: Lab) {
    super(lab.ns.client, `http://${lab.addr.web.v4}/`, REQ_INTERVAL_MS, REQ_TIMEOUT_MS, 'client loop');
  }
}

// ---------------------------------------------------------------------------
// The daemon's log (pino JSON lines)

interface StateEvent { time: number; gateway: string; state: string }
interface SwitchEvent { time: number; from: string | null; to: string | null; reason: string }

class DaemonLog {
  readonly lines: string[] = [];
  readonly states: StateEvent[] = [];
  readonly switches: SwitchEvent[] = [];
  readonly errors: string[] = [];
  private buf = '';
  feed(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      if (!line.trim()) continue;
      this.lines.push(line);
      let j: { level?: number; time?: number; msg?: string; gateway?: string; state?: string; from?: string | null; to?: string | null; reason?: string };
      try { j = JSON.parse(line) as typeof j; } catch { continue; }
      const time = j.time ?? Date.now();
      if ((j.level ?? 0) >= 50) this.errors.push(line.slice(0, 400));
      if (typeof j.gateway === 'string' && typeof j.state === 'string' && /^gateway \S+ is \w+$/.test(j.msg ?? '')) this.states.push({ time, gateway: j.gateway, state: j.state });
      if (typeof j.reason === 'string' && 'to' in j) this.switches.push({ time, from: j.from ?? null, to: j.to ?? null, reason: j.reason });
    }
  }
  state(gw: string): StateEvent | null {
    for (let k = this.states.length - 1; k >= 0; k--) if (this.states[k]!.gateway === gw) return this.states[k]!;
    return null;
  }
}

// ---------------------------------------------------------------------------
// /proc: CPU of a process tree

interface Cpu { self: number; reaped: number; live: Map<number, { name: string; ms: number }> }
function statFields(pid: number): string[] {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' '); // from field 3 (state): 14 utime, 15 stime, 16 cutime, 17 cstime at 11..14
}
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try { out.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)); } catch { /* thread gone */ }
  }
  return out;
}
/** utime+stime of `pid` itself, of its reaped children (cutime+cstime), and of each live descendant; ms (USER_HZ 100). */
function cpuOf(pid: number): Cpu {
  const f = statFields(pid);
  const live = new Map<number, { name: string; ms: number }>();
  const walk = (p: number) => {
    for (const c of childPids(p)) {
      try {
        const g = statFields(c);
        const name = readFileSync(`/proc/${c}/comm`, 'utf8').trim();
        live.set(c, { name, ms: (Number(g[11]) + Number(g[12]) + Number(g[13]) + Number(g[14])) * 10 });
        walk(c);
      } catch { /* gone */ }
    }
  };
  walk(pid);
  return { self: (Number(f[11]) + Number(f[12])) * 10, reaped: (Number(f[13]) + Number(f[14])) * 10, live };
}

// ---------------------------------------------------------------------------

interface Trial {
  faulted: string;
  failoverMs: number | null;
  lost: number;
  leaks: number;
  /** Requests in the second after the first one via the new gateway that failed or took another way. */
  bounced: number;
  /** Lift of the fault → the daemon logs the gateway up (ours), or null. */
  recoverMs: number | null;
  /** Fault → the daemon logs the gateway down (ours), or the seed's 3rd failed probe. */
  detectMs: number | null;
  /** The switch (logged by the daemon / the seed's new tunnel up) → the first request served through it. */
  switchToServedMs: number | null;
}

/** Up, or degraded (an RTT jump on a loaded machine): carrying traffic either way. */
const usable = (state: string | undefined): boolean => state === 'up' || state === 'degraded';

// ---------------------------------------------------------------------------
// Leak cycles (1c, 1d)

interface LeakCycles {
  cycles: number;
  /** Cycles where every step (failover, kill switch, both up again) was seen in time. */
  complete: number;
  leaks: LeakCounts;
  byPhase: { failover: LeakCounts; kill_switch: LeakCounts; recovery: LeakCounts };
  /** Cycles that leaked: which, in which phase, what. */
  leaky: string[];
  cycle_s: { p50: number; max: number };
  flows: { tcp_stream_bytes: number; tcp_stream_connects: number; udp_sent: number; udp_received: number };
  requests: number;
  requests_ok: number;
}

function zeroLeaks(): LeakCounts {
  return { all: 0, tcp_syn: 0, tcp_rst: 0, tcp_other: 0, udp: 0, icmp: 0, other: 0 };
}
function addLeaks(a: LeakCounts, b: LeakCounts): LeakCounts {
  return Object.fromEntries(Object.keys(a).map((k) => [k, a[k as keyof LeakCounts] + b[k as keyof LeakCounts]])) as LeakCounts;
}

/**
 * `n` fault → failover → kill switch → recovery cycles against the running
 * daemon (its log in `log`), with `client`'s GETs and the flows client
 * running; the WAN leak counter read around each phase.
 */
async function leakCycles(L: Lab, log: DaemonLog, client: Client, flows: Proc, n: number, budgetMs: number, say: (s: string) => void, label: string): Promise<LeakCycles> {
  const uplinks = [L.gateways[0].uplink.v4, L.gateways[1].uplink.v4];
  const out: LeakCycles = { cycles: 0, complete: 0, leaks: zeroLeaks(), byPhase: { failover: zeroLeaks(), kill_switch: zeroLeaks(), recovery: zeroLeaks() }, leaky: [], cycle_s: { p50: NaN, max: NaN }, flows: { tcp_stream_bytes: 0, tcp_stream_connects: 0, udp_sent: 0, udp_received: 0 }, requests: 0, requests_ok: 0 };
  const durations: number[] = [];
  const start = performance.now();
  const tStart = now();
  const soft = <V>(p: Promise<V>): Promise<V | null> => p.catch(() => null);
  for (let c = 1; c <= n && performance.now() - start < budgetMs; c++) {
    const tc = performance.now();
    let complete = true;
    // Both up, traffic on one of them.
    complete = (await soft(until('both gateways up', () => GW_NAMES.every((g) => usable(log.state(g)?.state)), 45_000))) !== null && complete;
    const stable = await soft(until('traffic stable on a gateway', () => client.stableOn(3, uplinks), 20_000));
    const a = (stable ? uplinks.indexOf(stable) : 0) as GatewayIndex;
    const b = (1 - a) as GatewayIndex;
    const phase = async (name: keyof LeakCycles['byPhase'], from: LeakCounts): Promise<LeakCounts> => {
      const to = await readWanLeaks(L);
      const d = leakDelta(from, to);
      out.byPhase[name] = addLeaks(out.byPhase[name], d);
      out.leaks = addLeaks(out.leaks, d);
      if (d.all) out.leaky.push(`cycle ${c} ${name}: ${describeLeaks(d)}`);
      return to;
    };
    let mark = await readWanLeaks(L);
    // 1. A dark: failover to B (its flows are dropped: the moment stray packets of them come back).
    const t0 = now();
    await L.blackholeGateway(a, true);
    complete = (await soft(until('the failover', () => log.switches.some((e) => e.time >= t0 - 1 && e.to === GW_NAMES[b]), 20_000))) !== null && complete;
    await sleep(300);
    mark = await phase('failover', mark);
    // 2. B dark too: the kill switch, held for a second with traffic hitting it.
    const t1 = now();
    await L.blackholeGateway(b, true);
    complete = (await soft(until('the kill switch', () => log.switches.some((e) => e.time >= t1 - 1 && e.to === null), 20_000))) !== null && complete;
    await sleep(1000);
    mark = await phase('kill_switch', mark);
    // 3. Both back: recovery (stray packets of the flows dropped at each switch arrive now).
    const t2 = now();
    await Promise.all([L.blackholeGateway(a, false), L.blackholeGateway(b, false)]);
    complete = (await soft(until('both gateways up again', () => GW_NAMES.every((g) => { const st = log.state(g); return usable(st?.state) && st!.time >= t2 - 1; }), 45_000))) !== null && complete;
    complete = (await soft(until('a request through a gateway', () => client.reqs.some((q) => q.start > t2 && q.ok && uplinks.includes(q.remote!)), 20_000))) !== null && complete;
    await sleep(300);
    await phase('recovery', mark);
    out.cycles = c;
    if (complete) out.complete++;
    durations.push((performance.now() - tc) / 1000);
    if (c % 10 === 0 || c === n || out.leaky.length) {
      if (c % 10 === 0 || c === n) say(`  ${label}: ${c}/${n} cycles (${out.complete} complete), WAN leak so far ${describeLeaks(out.leaks)}`);
    }
  }
  const d = [...durations].sort((x, y) => x - y);
  out.cycle_s = { p50: +percentile(d, 50).toFixed(1), max: +(d[d.length - 1] ?? NaN).toFixed(1) };
  const st = /stats (\d+) (\d+) (\d+) (\d+) (\d+)\s*$/.exec(flows.tail.trimEnd().split('\n').filter((l) => l.startsWith('stats')).at(-1) ?? '');
  if (st) out.flows = { tcp_stream_bytes: Number(st[1]), tcp_stream_connects: Number(st[2]), udp_sent: Number(st[4]), udp_received: Number(st[5]) };
  const reqs = client.between(tStart, now());
  out.requests = reqs.length;
  out.requests_ok = reqs.filter((q) => q.ok).length;
  return out;
}

/** The daemon's WAN guard counters (packets it dropped on their way out of the WAN), or null when it has none (the peer). */
async function guardDrops(L: Lab): Promise<number | null> {
  const r = await L.exec(L.ns.router, ['nft', 'list', 'chain', 'inet', 'splitwan', 'wan_guard']);
  if (r.code !== 0) return null;
  return [...r.stdout.matchAll(/counter packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

function leakConfig(L: Lab, dir: string, health: typeof LEAK_HEALTH | typeof HEALTH): string {
  return [
    'mode: router',
    'lan: [lan0]',
    `breakout: { interface: wan0, dns: [${L.addr.ispResolver.v4}] }`,
    'tunnel:',
    '  gateways:',
    `    - { name: ${GW_NAMES[0]}, config: gw1.conf, priority: 1 }`,
    `    - { name: ${GW_NAMES[1]}, config: gw2.conf, priority: 1 }`,
    `health: { interval: ${health.interval}, timeout: ${health.timeout}, failAfter: ${health.failAfter}, recoverAfter: ${health.recoverAfter}, failbackHold: ${health.failbackHold} }`,
    `stateDir: ${join(dir, 'state')}`,
    `control: { socket: ${join(dir, 'control.sock')} }`,
    'rules: []',
    'default: tunnel',
    '',
  ].join('\n');
}

export async function run(): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) throw new Error('the failover benchmark needs root (it creates network namespaces)');
  const t00 = performance.now();
  const say = (s: string) => process.stdout.write(s + '\n');
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-failover-')); // 0700
  const peerIfs: string[] = [];
  let lab: Lab | null = null;
  let controller: SeedController | null = null;
  let baselineDir: Baseline | null = null;
  let baselineBuild: Promise<unknown> | null = null;
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await baselineBuild?.catch(() => undefined); // a build still running would leave its dir behind
      await controller?.stop().catch(() => undefined);
      await Promise.all([...procs].map((p) => p.stop(10_000)));
      // The daemon's wireguard-go, if the daemon had to be killed: our names only (they carry our pid).
      const daemonIfs = new Set(GW_NAMES.map((n) => `swg-${n}`));
      for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
        let argv: string[] = [];
        try { argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter(Boolean); } catch { continue; }
        const last = argv[argv.length - 1] ?? '';
        if (argv[0]?.split('/').pop() === 'wireguard-go' && (daemonIfs.has(last) || peerIfs.includes(last))) try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ }
      }
      if (lab) await lab.destroy().catch((e: unknown) => process.stderr.write(`lab destroy: ${(e as Error).message}\n`));
      for (const i of [...daemonIfs, ...peerIfs]) if (existsSync(`${WG_SOCKET_DIR}/${i}.sock`)) try { unlinkSync(`${WG_SOCKET_DIR}/${i}.sock`); } catch { /* gone */ }
      rmSync(dir, { recursive: true, force: true });
      baselineDir?.remove();
    })());
  const onSignal = (sig: NodeJS.Signals) => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);

  try {
    const building = PEER_LEAK_CYCLES > 0 ? buildBaseline() : Promise.resolve({ skipped: 'BFO_PEER_LEAK_CYCLES=0' });
    // Removed in `finally` however the run ends.
    baselineBuild = building.then((b) => void (!('skipped' in b) && (baselineDir = b)));
    lab = await createLab({ routerTunnels: false });
    const L = lab;
    const uplinks = [L.gateways[0].uplink.v4, L.gateways[1].uplink.v4];
    const breakoutSeen = L.addr.routerWan.v4;
    const gwLabel = (remote: string) => L.gateways[uplinks.indexOf(remote)]?.name ?? remote;
    say(`lab ${L.id} up in ${L.timings.total} ms; 2 gateways (gw1 seen as ${uplinks[0]}, gw2 as ${uplinks[1]}, the breakout as ${breakoutSeen})`);

    // ----------------------------------------------------------- 1. splitwan
    writeFileSync(join(dir, 'gw1.conf'), L.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), L.gateways[1].configText, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, leakConfig(L, dir, HEALTH), { mode: 0o600 });
    const log = new DaemonLog();
    const daemon = new Proc('splitwan', inNs(L.ns.router, [process.execPath, join(import.meta.dirname, '..', '..', 'bin', 'splitwan'), 'run', '--config', cfg]));
    daemon.child.stdout!.on('data', (d: string) => log.feed(d));
    await daemon.until('"splitwan running"', () => daemon.tail.includes('splitwan running'), 30_000);
    const comm = readFileSync(`/proc/${daemon.pid}/comm`, 'utf8').trim(); // `ip netns exec` execs: the pid is node's
    await until('both gateways up', () => GW_NAMES.every((n) => log.state(n)?.state === 'up'), 20_000);
    say(`splitwan running (pid ${daemon.pid}, ${comm}); both gateways up; health: interval ${HEALTH.interval}, timeout ${HEALTH.timeout}, failAfter ${HEALTH.failAfter}, recoverAfter ${HEALTH.recoverAfter}, failbackHold ${HEALTH.failbackHold}; both priority 1`);

    // a. probe overhead, no client traffic
    await sleep(2000); // past the start-up rounds
    const counters = async () => {
      const r = await L.exec(L.ns.router, ['ip', '-j', '-s', 'link', 'show']);
      const links = JSON.parse(r.stdout) as { ifname: string; stats64: { rx: { packets: number }; tx: { packets: number } } }[];
      const get = (n: string) => links.find((l) => l.ifname === n)?.stats64 ?? { rx: { packets: NaN }, tx: { packets: NaN } };
      return { tun: GW_NAMES.map((n) => get(`swg-${n}`)), wan: get('wan0') };
    };
    // What the packets are: nft counters on the router's output (a table of ours beside the daemon's).
    const COUNT_RULES = [
      ['dns4', 'oifname "swg-*" meta nfproto ipv4 udp dport 53'],
      ['dns6', 'oifname "swg-*" meta nfproto ipv6 udp dport 53'],
      ['tunnel', 'oifname "swg-*"'],
      ['wan_wireguard', 'oifname "wan0" udp dport 51820'],
      ['wan', 'oifname "wan0"'],
    ] as const;
    const nc = await L.exec(L.ns.router, ['nft', '-f', '-'], { input: `table inet bench_count {\n\tchain out {\n\t\ttype filter hook output priority 100; policy accept;\n${COUNT_RULES.map(([, m]) => `\t\t${m} counter\n`).join('')}\t}\n}\n` });
    if (nc.code !== 0) throw new Error(`nft counters: ${nc.stderr}`);
    const c0 = await counters();
    const cpu0 = cpuOf(daemon.pid);
    const w0 = performance.now();
    await sleep(OVERHEAD_S * 1000);
    const cpu1 = cpuOf(daemon.pid);
    const c1 = await counters();
    const wMs = performance.now() - w0;
    const listed = JSON.parse((await L.exec(L.ns.router, ['nft', '-j', 'list', 'table', 'inet', 'bench_count'])).stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
    const counted = listed.nftables.filter((e) => e.rule).map((e) => e.rule!.expr.find((x) => x.counter)?.counter?.packets ?? NaN);
    await L.exec(L.ns.router, ['nft', 'delete', 'table', 'inet', 'bench_count']);
    const sent = Object.fromEntries(COUNT_RULES.map(([k], i) => [k, counted[i] ?? NaN])) as Record<(typeof COUNT_RULES)[number][0], number>;
    const perMin = (x: number) => +((x * 60_000) / wMs).toFixed(1);
    const liveDelta = (name: RegExp) => [...cpu1.live].filter(([, v]) => name.test(v.name)).reduce((s, [pid, v]) => s + v.ms - (cpu0.live.get(pid)?.ms ?? 0), 0);
    const wgGoMs = liveDelta(/^wireguard-go$/);
    const otherLiveMs = liveDelta(/^(?!wireguard-go$)/);
    const overhead = {
      gateways_measured: 2,
      window_s: +(wMs / 1000).toFixed(1),
      scaled_to_per_minute: OVERHEAD_S !== 60,
      daemon_cpu_ms_per_min: perMin(cpu1.self - cpu0.self),
      daemon_reaped_children_cpu_ms_per_min: perMin(cpu1.reaped - cpu0.reaped),
      daemon_other_live_children_cpu_ms_per_min: perMin(otherLiveMs),
      daemon_total_cpu_pct_of_a_core: +((100 * (cpu1.self - cpu0.self + cpu1.reaped - cpu0.reaped + otherLiveMs)) / wMs).toFixed(2),
      wireguard_go_cpu_ms_per_min: perMin(wgGoMs),
      tunnel_tx_pkts_per_min: GW_NAMES.map((_, i) => perMin(c1.tun[i]!.tx.packets - c0.tun[i]!.tx.packets)),
      tunnel_rx_pkts_per_min: GW_NAMES.map((_, i) => perMin(c1.tun[i]!.rx.packets - c0.tun[i]!.rx.packets)),
      wan_tx_pkts_per_min: perMin(c1.wan.tx.packets - c0.wan.tx.packets),
      wan_rx_pkts_per_min: perMin(c1.wan.rx.packets - c0.wan.rx.packets),
      sent_by_router_per_min: {
        dns_probe_v4: perMin(sent.dns4),
        dns_probe_v6: perMin(sent.dns6),
        into_tunnels_all: perMin(sent.tunnel),
        wan_wireguard: perMin(sent.wan_wireguard),
        wan_all: perMin(sent.wan),
      },
    };
    say(`probe overhead, 2 gateways (the lab has 2; 4 were NOT measured), no client traffic, ${overhead.window_s} s${overhead.scaled_to_per_minute ? ' scaled to a minute' : ''}:`);
    say(`  daemon CPU ${overhead.daemon_cpu_ms_per_min} ms/min itself + ${overhead.daemon_reaped_children_cpu_ms_per_min} ms/min in the commands it ran (ip/wg of the handshake probe) = ${overhead.daemon_total_cpu_pct_of_a_core}% of a core; its wireguard-go children ${overhead.wireguard_go_cpu_ms_per_min} ms/min`);
    say(`  sent by the router per minute, both gateways together (nft): DNS probes ${overhead.sent_by_router_per_min.dns_probe_v4} to the resolvers' IPv4 + ${overhead.sent_by_router_per_min.dns_probe_v6} to their IPv6 address (every round asks both) of ${overhead.sent_by_router_per_min.into_tunnels_all} packets into the tunnels; on the WAN ${overhead.sent_by_router_per_min.wan_wireguard} WireGuard of ${overhead.sent_by_router_per_min.wan_all}`);
    say(`  interface counters per minute: tunnel gw1 ${overhead.tunnel_tx_pkts_per_min[0]} out / ${overhead.tunnel_rx_pkts_per_min[0]} in, gw2 ${overhead.tunnel_tx_pkts_per_min[1]} out / ${overhead.tunnel_rx_pkts_per_min[1]} in; WAN ${overhead.wan_tx_pkts_per_min} out / ${overhead.wan_rx_pkts_per_min} in`);

    // b. trials
    const client = new Client(L);
    await client.ready();
    const partStart = now();
    const ours: Trial[] = [];
    const ourStart = performance.now();
    for (let t = 0; t < TRIALS && performance.now() - ourStart < OURS_BUDGET_MS; t++) {
      const activeRemote = await until('traffic stable on one gateway', () => client.stableOn(5, uplinks), 20_000);
      const a = uplinks.indexOf(activeRemote) as GatewayIndex;
      const b = (1 - a) as GatewayIndex;
      await until(`both gateways up before trial ${t + 1}`, () => GW_NAMES.every((n) => usable(log.state(n)?.state)), 20_000);
      await lab.blackholeGateway(a, true);
      const t0 = now();
      const first = await until('the first request via the other gateway', () => client.reqs.find((q) => q.end > t0 && q.ok && q.remote === uplinks[b]) ?? null, OURS_FAILOVER_LIMIT_MS).catch(() => null);
      const tB = first?.end ?? now();
      await sleep(1000 + REQ_TIMEOUT_MS + 100);
      const window = client.hit(t0, tB);
      const after = client.started(tB, tB + 1000);
      const tLift = now();
      await lab.blackholeGateway(a, false);
      const down = log.states.find((e) => e.gateway === GW_NAMES[a] && e.state === 'down' && e.time >= t0 - 1) ?? null;
      const sw = log.switches.find((e) => e.to === GW_NAMES[b] && e.time >= t0 - 1) ?? null;
      const up = await until(`${L.gateways[a].name} up again`, () => {
        const s = log.state(GW_NAMES[a]);
        return s && s.state === 'up' && s.time > t0 ? s : null;
      }, RECOVER_LIMIT_MS).catch(() => null);
      const trial: Trial = {
        faulted: L.gateways[a].name,
        failoverMs: first ? first.end - t0 : null,
        lost: window.filter((q) => !q.ok).length,
        leaks: window.filter((q) => q.remote === breakoutSeen).length,
        bounced: after.filter((q) => !q.ok || q.remote !== uplinks[b]).length,
        recoverMs: up ? Math.max(0, up.time - tLift) : null,
        detectMs: down ? Math.round(down.time - t0) : null,
        switchToServedMs: first && sw ? first.end - sw.time : null,
      };
      ours.push(trial);
      say(`  trial ${String(t + 1).padStart(2)}: ${trial.faulted} dark → ${first ? `${gwLabel(first.remote!)} after ${Math.round(trial.failoverMs!)} ms` : `NO failover within ${OURS_FAILOVER_LIMIT_MS} ms`} (down logged at ${trial.detectMs ?? '?'} ms, switch → first request served ${trial.switchToServedMs === null ? '?' : Math.round(trial.switchToServedMs)} ms), ${trial.lost} request(s) lost, ${trial.leaks} via the breakout${trial.bounced ? `, ${trial.bounced} failed or went elsewhere in the next second` : ''}; fault lifted, up again after ${trial.recoverMs === null ? `> ${RECOVER_LIMIT_MS}` : Math.round(trial.recoverMs)} ms`);
      if (!up) break; // the next trial would start with a gateway down
    }
    await sleep(500);
    const partEnd = now();
    const oursAll = client.between(partStart, partEnd);
    const oursLeaks = oursAll.filter((q) => q.remote === breakoutSeen).length;

    // c. leak cycles, with long-lived and new TCP and UDP flows running through them
    const flowsServer = new Proc('flows server', inNs(L.ns.isp, [process.execPath, join(import.meta.dirname, 'flows-child.js'), 'server', L.addr.web.v4, '8000', '9000']));
    await flowsServer.until('the flows server', () => flowsServer.tail.includes('ready'), 10_000);
    await installWanLeakCounter(L, [L.addr.web.v4, L.addr.web.v6]);
    const reloadsBefore = log.lines.filter((l) => l.includes('"config reloaded"')).length;
    writeFileSync(cfg, leakConfig(L, dir, LEAK_HEALTH), { mode: 0o600 });
    await until('the faster health (a reload)', () => log.lines.filter((l) => l.includes('"config reloaded"')).length > reloadsBefore, 15_000);
    const startFlows = () => new Proc('flows client', inNs(L.ns.client, [process.execPath, join(import.meta.dirname, 'flows-child.js'), 'client', L.addr.web.v4, '8000', '9000', '4']));
    let flows = startFlows();
    await flows.until('the flows client', () => flows.tail.includes('ready'), 10_000);
    say(`leak cycles: ${LEAK_CYCLES} × (a gateway dark → failover; the other dark → kill switch 1 s; both back → recovery), health interval ${LEAK_HEALTH.interval}, timeout ${LEAK_HEALTH.timeout}, failAfter ${LEAK_HEALTH.failAfter}, recoverAfter ${LEAK_HEALTH.recoverAfter}; GETs every ${REQ_INTERVAL_MS} ms, 4 TCP streams, UDP flows`);
    const leakOurs = await leakCycles(L, log, client, flows, LEAK_CYCLES, LEAK_BUDGET_MS, say, 'splitwan');
    const guard = await guardDrops(L);
    await flows.stop();
    await client.proc.stop();
    await quiesce(L, L.ns.client);
    say(`splitwan, ${leakOurs.cycles} cycles (${leakOurs.complete} complete, ${leakOurs.cycle_s.p50} s each): WAN leak ${describeLeaks(leakOurs.leaks)} (failover ${leakOurs.byPhase.failover.all}, kill switch ${leakOurs.byPhase.kill_switch.all}, recovery ${leakOurs.byPhase.recovery.all}); the WAN guard dropped ${guard ?? '?'}${leakOurs.leaky.length ? `\n    ${leakOurs.leaky.slice(0, 20).join('\n    ')}` : ''}`);
    const code = await daemon.stop(15_000);
    const leftLinks = (await L.exec(L.ns.router, ['ip', '-o', 'link', 'show'])).stdout.includes('swg-');
    const leftTable = (await L.exec(L.ns.router, ['nft', 'list', 'table', 'inet', 'splitwan'])).code === 0;
    say(`splitwan stopped: exit ${code}${leftLinks || leftTable ? ' — LEFT STATE BEHIND' : ', nothing left behind'}`);

    // d. the same cycles with the previous code path
    const base: Baseline | { skipped: string } = await building;
    let leakPeer: LeakCycles | null = null;
    if ('skipped' in base) say(`peer leak cycles SKIPPED: ${base.skipped}`);
    else {
      const plog = new DaemonLog();
      const pd = new Proc('splitwan (baseline)', inNs(L.ns.router, [process.execPath, base.bin, 'run', '--config', cfg]));
      pd.child.stdout!.on('data', (d: string) => plog.feed(d));
      await pd.until('"splitwan running"', () => pd.tail.includes('splitwan running'), 30_000);
      await until('both gateways up (baseline)', () => GW_NAMES.every((n) => usable(plog.state(n)?.state)), 30_000);
      const bclient = new Client(L);
      await bclient.ready();
      flows = startFlows();
      await flows.until('the flows client', () => flows.tail.includes('ready'), 10_000);
      say(`peer: splitwan at ${base.ref}, ${PEER_LEAK_CYCLES} of the same cycles`);
      leakPeer = await leakCycles(L, plog, bclient, flows, PEER_LEAK_CYCLES, PEER_LEAK_BUDGET_MS, say, `baseline ${base.ref}`);
      await flows.stop();
      await bclient.proc.stop();
      await quiesce(L, L.ns.client);
      await pd.stop(15_000);
      say(`baseline ${base.ref}, ${leakPeer.cycles} cycles (${leakPeer.complete} complete): WAN leak ${describeLeaks(leakPeer.leaks)} (failover ${leakPeer.byPhase.failover.all}, kill switch ${leakPeer.byPhase.kill_switch.all}, recovery ${leakPeer.byPhase.recovery.all})`);
    }
    await flowsServer.stop();

    // ------------------------------------------------------- 2. the seed, simulated
    await L.exec(L.ns.router, ['nft', '-f', '-'], {
      input: `table ip bench_seed {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname "wan0" masquerade\n\t\toifname "hwo*" masquerade\n\t}\n}\n`,
    }).then((r) => { if (r.code !== 0) throw new Error(`peer nft: ${r.stderr}`); });
    const rr = await L.exec(L.ns.router, ['ip', 'rule', 'add', 'from', '10.99.1.0/24', 'lookup', PEER_TABLE, 'pref', PEER_PREF]);
    if (rr.code !== 0) throw new Error(`peer ip rule: ${rr.stderr}`);
    controller = new SeedController(L, dir, peerIfs, rng(0x5eed));
    await controller.connect(0);
    const pclient = new Client(L);
    await pclient.ready();
    await until('traffic via gw1 (the seed)', () => pclient.stableOn(5, [uplinks[0]!]), 15_000);
    if (!(await controller.probeOnce())) throw new Error('the seed simulation: its probe through the tunnel fails with no fault');
    controller.start();
    const peerPartStart = now();
    const peer: Trial[] = [];
    const peerFaults: number[] = [];
    const peerStart = performance.now();
    for (let t = 0; t < PEER_TRIALS && performance.now() - peerStart < PEER_BUDGET_MS; t++) {
      const a = controller.current!.gw;
      const b = (1 - a) as GatewayIndex;
      await until('the seed: traffic stable', () => pclient.stableOn(5, [uplinks[a]!]), 15_000);
      await lab.blackholeGateway(a, true);
      const t0 = now();
      peerFaults.push(t0);
      const first = await until('the seed: the first request via the other gateway', () => pclient.reqs.find((q) => q.end > t0 && q.ok && q.remote === uplinks[b]) ?? null, PEER_FAILOVER_LIMIT_MS, 50).catch(() => null);
      const tB = first?.end ?? now();
      await sleep(1000 + REQ_TIMEOUT_MS + 100);
      const window = pclient.hit(t0, tB);
      const after = pclient.started(tB, tB + 1000);
      await lab.blackholeGateway(a, false);
      const sw = controller.switches.find((s) => s.detectedAt > t0);
      const trial: Trial = {
        faulted: L.gateways[a].name,
        failoverMs: first ? first.end - t0 : null,
        lost: window.filter((q) => !q.ok).length,
        leaks: window.filter((q) => q.remote === breakoutSeen).length,
        bounced: after.filter((q) => !q.ok || q.remote !== uplinks[b]).length,
        recoverMs: null,
        detectMs: sw ? Math.round(sw.detectedAt - t0) : null,
        switchToServedMs: first && sw ? first.end - sw.upAt : null,
      };
      peer.push(trial);
      say(`  seed trial ${t + 1}: ${trial.faulted} dark → ${first ? `${gwLabel(first.remote!)} after ${Math.round(trial.failoverMs!)} ms` : `NO failover within ${PEER_FAILOVER_LIMIT_MS} ms`} (first failed probe ${sw ? Math.round(sw.firstFailAt - t0) : '?'} ms after the fault, 3rd failure at ${sw ? Math.round(sw.detectedAt - t0) : '?'} ms, tunnel down→up ${sw ? Math.round(sw.upAt - sw.detectedAt) : '?'} ms), ${trial.lost} request(s) lost, ${trial.leaks} via the breakout`);
      if (!first) break;
    }
    const peerAll = pclient.between(peerPartStart, now());
    const peerLeaks = peerAll.filter((q) => q.remote === breakoutSeen).length;
    await pclient.proc.stop(); // before the last teardown, which would send it out of the WAN
    await controller.stop();
    const spurious = controller.switches.length - peer.filter((p) => p.failoverMs !== null).length;

    // ---------------------------------------------------------------- figures
    const ok = ours.filter((t) => t.failoverMs !== null);
    const pok = peer.filter((t) => t.failoverMs !== null);
    const fo = summary(ok.map((t) => t.failoverMs!));
    const lost = summary(ours.map((t) => t.lost));
    const pfo = summary(pok.map((t) => t.failoverMs!));
    const plost = summary(peer.map((t) => t.lost));
    const rec = summary(ours.filter((t) => t.recoverMs !== null).map((t) => t.recoverMs!));
    const det = summary(ours.filter((t) => t.detectMs !== null).map((t) => t.detectMs!));
    const s2s = summary(ours.filter((t) => t.switchToServedMs !== null).map((t) => t.switchToServedMs!));
    const ratio = (x: number, y: number) => +(x / y).toFixed(3);
    const kill = log.switches.filter((s) => s.to === null).length;
    const degraded = log.states.filter((s) => s.state === 'degraded').length;
    const goalMet = ok.length === ours.length && ours.length > 0 && fo.p95 <= GOAL_P95_MS && oursLeaks === 0 && leakOurs.leaks.all === 0 && leakOurs.cycles >= LEAK_CYCLES;
    const out = {
      lab_gateways: 2,
      health: HEALTH,
      request_interval_ms: REQ_INTERVAL_MS,
      request_timeout_ms: REQ_TIMEOUT_MS,
      trials: TRIALS,
      trials_done: ours.length,
      trials_no_failover: ours.length - ok.length,
      faulted: { gw1: ours.filter((t) => t.faulted === 'gw1').length, gw2: ours.filter((t) => t.faulted === 'gw2').length },
      failover_ms: { ...fo, samples: ours.map((t) => (t.failoverMs === null ? null : Math.round(t.failoverMs))) },
      lost: { ...lost, total: ours.reduce((s, t) => s + t.lost, 0), samples: ours.map((t) => t.lost) },
      leaks: oursLeaks,
      requests: oursAll.length,
      bounced_after_failover: ours.reduce((s, t) => s + t.bounced, 0),
      detect_ms: { ...det, samples: ours.map((t) => t.detectMs) },
      switch_to_served_ms: s2s,
      recover_ms: rec,
      daemon: { switches: log.switches.length, kill_switch: kill, degraded_events: degraded, errors: log.errors.length, sigterm_exit: code, left_state: leftLinks || leftTable },
      overhead,
      peer: {
        approach: `seed: HTTP probe every ${SEED.periodMs / 1000} s through the tunnel (${SEED.timeoutMs / 1000} s timeout), ${SEED.failAfter} failures → tear down, reconnect to the other gateway`,
        trials: PEER_TRIALS,
        trials_done: peer.length,
        trials_no_failover: peer.length - pok.length,
        failover_ms: { ...pfo, samples: peer.map((t) => (t.failoverMs === null ? null : Math.round(t.failoverMs))) },
        lost: { ...plost, total: peer.reduce((s, t) => s + t.lost, 0), samples: peer.map((t) => t.lost) },
        leaks: peerLeaks,
        requests: peerAll.length,
        detect_ms: peer.map((t) => t.detectMs),
        first_failed_probe_ms: peer.map((_, k) => { const sw = controller!.switches[k]; return sw ? Math.round(sw.firstFailAt - peerFaults[k]!) : null; }),
        teardown_to_up_ms: controller.switches.map((s) => Math.round(s.upAt - s.detectedAt)),
        spurious_switches: spurious,
      },
      ratio_p50: ratio(fo.p50, pfo.p50),
      ratio_p95: ratio(fo.p95, pfo.p95),
      ratio_lost_p50: plost.p50 ? ratio(lost.p50, plost.p50) : null,
      goal_p95_ms: GOAL_P95_MS,
      goal_leaks: 0,
      leak_cycles: { ...leakOurs, health: LEAK_HEALTH, asked: LEAK_CYCLES, wan_guard_drops: guard },
      peer_leak_cycles: leakPeer && !('skipped' in base) ? { ref: base.ref, asked: PEER_LEAK_CYCLES, ...leakPeer } : { skipped: 'skipped' in base ? base.skipped : 'not run' },
      goal_met: goalMet,
      total_s: Math.round((performance.now() - t00) / 1000),
      cycles: leakOurs.cycles,
      wan_leak_packets: leakOurs.leaks.all,
    };
    say(`splitwan, ${ours.length} trials (${out.faulted.gw1} × gw1 dark, ${out.faulted.gw2} × gw2 dark)${out.trials_no_failover ? `, ${out.trials_no_failover} WITHOUT failover in ${OURS_FAILOVER_LIMIT_MS} ms` : ''}:`);
    say(`  fault → first request via the other gateway: p50 ${fo.p50} ms, p95 ${fo.p95} ms, max ${fo.max} ms (goal: p95 <= ${GOAL_P95_MS} ms) ${fo.p95 <= GOAL_P95_MS ? 'MET' : 'MISSED'}`);
    say(`  requests lost per failover (one every ${REQ_INTERVAL_MS} ms, ${REQ_TIMEOUT_MS} ms timeout): p50 ${lost.p50}, p95 ${lost.p95}, max ${lost.max}`);
    say(`  requests via the breakout: ${oursLeaks} of ${oursAll.length} (goal: 0) ${oursLeaks === 0 ? 'MET' : 'MISSED'}; requests failed or elsewhere in the second after a failover: ${out.bounced_after_failover}`);
    say(`  of which: fault → "gateway down" logged p50 ${det.p50} ms, p95 ${det.p95} ms, max ${det.max} ms; switch logged → first request served p50 ${s2s.p50} ms, max ${s2s.max} ms`);
    say(`  fault lifted → gateway up again: p50 ${rec.p50} ms, max ${rec.max} ms (a WireGuard handshake retry, up to 5 s, + recoverAfter ${HEALTH.recoverAfter} rounds)`);
    say(`  daemon: ${out.daemon.switches} switches logged, ${kill} kill-switch events, ${degraded} degraded events, ${out.daemon.errors} error lines`);
    say(`seed (simulated), ${peer.length} trials${out.peer.trials_no_failover ? `, ${out.peer.trials_no_failover} WITHOUT failover in ${PEER_FAILOVER_LIMIT_MS} ms` : ''}: p50 ${pfo.p50} ms, p95 ${pfo.p95} ms, max ${pfo.max} ms (with ${peer.length} samples p95 is the max); lost p50 ${plost.p50}, max ${plost.max}; via the breakout ${peerLeaks} of ${peerAll.length}; tunnel down→up ${out.peer.teardown_to_up_ms.join(', ')} ms`);
    say(`ratio ours/seed: p50 ${out.ratio_p50}, p95 ${out.ratio_p95}; requests lost p50 ${out.ratio_lost_p50 ?? 'n/a'}`);
    say(`leak cycles: splitwan ${describeLeaks(leakOurs.leaks)} packet(s) for tunnel destinations on the WAN in ${leakOurs.cycles} cycles (goal 0)${leakPeer ? `; the previous code ${describeLeaks(leakPeer.leaks)} in ${leakPeer.cycles} cycles` : ''}`);
    say(`goal (p95 <= ${GOAL_P95_MS} ms, never a request via the breakout, no packet for a tunnel destination on the WAN in ${LEAK_CYCLES} cycles): ${goalMet ? 'MET' : 'NOT MET'}; ${out.total_s} s in all`);
    say(JSON.stringify(out));
    return out;
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}

// ---------------------------------------------------------------------------
// The seed's approach, simulated: one tunnel at a time, a probe every 10 s.

interface SeedSwitch { firstFailAt: number; detectedAt: number; upAt: number; from: GatewayIndex; to: GatewayIndex }

class SeedController {
  current: { gw: GatewayIndex; ifname: string; wg: Proc } | null = null;
  readonly switches: SeedSwitch[] = [];
  private seq = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private nextAt = 0;
  private fails: number[] = [];
  private readonly keys: [string, string];

  constructor(
    private readonly lab: Lab,
    private readonly dir: string,
    private readonly ifs: string[],
    private readonly random: () => number,
  ) {
    const key = (i: 0 | 1) => {
      const m = /^PrivateKey = (\S+)$/m.exec(lab.gateways[i].configText);
      if (!m) throw new Error('lab gateway config without a PrivateKey');
      return m[1]!;
    };
    this.keys = [key(0), key(1)];
  }

  /** wg-quick up, more or less: a tunnel to gateway i, the LAN's table pointing into it; the probe loop restarts at a random phase. */
  async connect(i: GatewayIndex): Promise<void> {
    const L = this.lab;
    const ifname = `hwo${process.pid % 100000}${this.seq++}`;
    this.ifs.push(ifname);
    const wg = new Proc(`wireguard-go ${ifname}`, inNs(L.ns.router, ['wireguard-go', '-f', ifname]), { env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
    await wg.until('its control socket', () => existsSync(`${WG_SOCKET_DIR}/${ifname}.sock`), 5000);
    const g = L.gateways[i];
    const f = join(this.dir, `seed-${ifname}.conf`);
    writeFileSync(f, `[Interface]\nPrivateKey = ${this.keys[i]}\n\n[Peer]\nPublicKey = ${g.publicKey}\nEndpoint = ${g.endpoint}\nAllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 25\n`, { mode: 0o600, flag: 'wx' });
    try {
      const r = await L.exec(L.ns.router, ['wg', 'setconf', ifname, f]);
      if (r.code !== 0) throw new Error(`wg setconf ${ifname}: ${r.stderr}`);
    } finally {
      rmSync(f, { force: true });
    }
    const r = await L.exec(L.ns.router, ['ip', '-batch', '-'], { input: [`link set ${ifname} mtu 1420 up`, `addr add ${L.addr.tunnelRouter.v4}/32 dev ${ifname}`, `route add default dev ${ifname} table ${PEER_TABLE}`, ''].join('\n') });
    if (r.code !== 0) throw new Error(`seed tunnel ${ifname}: ${r.stderr}`);
    this.current = { gw: i, ifname, wg };
    this.fails = [];
    this.nextAt = now() + this.random() * SEED.periodMs;
  }

  /** wg-quick down: the link goes, and its route with it (the LAN falls back to the main table: the WAN). */
  async teardown(): Promise<void> {
    const c = this.current;
    if (!c) return;
    this.current = null;
    await this.lab.exec(this.lab.ns.router, ['ip', 'link', 'del', c.ifname]);
    await c.wg.stop(3000);
  }

  async probeOnce(): Promise<boolean> {
    const c = this.current;
    if (!c) return false;
    const r = await this.lab.curlEcho(this.lab.ns.router, `http://${this.lab.addr.web.v4}/`, { interface: c.ifname, timeoutMs: SEED.timeoutMs });
    return !('error' in r) && r.remote === this.lab.gateways[c.gw].uplink.v4;
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const wait = this.nextAt - now();
        if (wait > 0) {
          await sleep(Math.min(wait, 200));
          continue;
        }
        this.nextAt += SEED.periodMs;
        const at = now();
        const good = await this.probeOnce();
        if (this.stopped) return;
        if (good) this.fails = [];
        else this.fails.push(at);
        if (this.fails.length >= SEED.failAfter) {
          const from = this.current!.gw;
          const to = (1 - from) as GatewayIndex;
          const firstFailAt = this.fails[0]!;
          const detectedAt = now();
          await this.teardown();
          await this.connect(to);
          this.switches.push({ firstFailAt, detectedAt, upAt: now(), from, to });
        }
      }
    })().catch((e: unknown) => {
      if (!this.stopped) process.stderr.write(`seed controller: ${(e as Error).message}\n`);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.teardown();
  }
}
