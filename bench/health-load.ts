// Health on a busy machine (issue 15): no gateway is declared down because
// the daemon's own process or machine was busy, a real fault is still
// found within the usual bound, and a DNS flood moves no traffic.
//
//  [client] ── lan0 [router: splitwan run] ══ WireGuard ══ [gw1] (dnsmasq)
//   dns-flood-child            (2 labs side by side)   ══ [gw2] (dnsmasq)
//
// Two labs (lab/lab.ts) side by side, each with its daemon (health:
// interval 1s, timeout 800ms, failAfter 3, recoverAfter 3, failbackHold 2s;
// gw1 priority 1, gw2 priority 2; default: tunnel; log level debug, whose
// "probe round" lines give every round's measured RTT and how late its timer
// fired):
//   ours:  splitwan as built;
//   peer:  the same build with SPLITWAN_PROBE_TIMING=naive, the timing
//          probes had before (a timer's own callback fails a probe, a round
//          trip ends when the answer is read, a late round counts).
// Parts:
//  1. load: both cores saturated by a CPU burner in its own process
//     (stress-ng --cpu 2, bounded by --timeout) plus a DNS load at each
//     resolver from its lab's client (BHL_DNS_QPS a second), gateways
//     healthy, for BHL_SECONDS (600): gateways declared down (goal 0),
//     rounds set aside as no evidence, probe RTT percentiles as measured,
//     the event loop's lag (how late each round's own timer fired).
//  2. fault under the same load: BHL_FAULT_TRIALS (5) times gw1 goes dark
//     in both labs at once (WireGuard dropped in gw1's namespace): time to
//     "gateway gw1 is down" (goal: within failAfter × interval + timeout =
//     3.8 s), then the fault is lifted and traffic comes back to gw1.
//  3. stalls (the CPU burner stopped): the gateways' resolvers 150 ms away
//     (bench/dns-delay-child.ts in each gateway's namespace, tunnel.dns
//     pointed at it by a reload), then for BHL_STALL_SECONDS (60) each
//     daemon gets 100 ms of every second (SIGSTOP for 900 ms, SIGCONT, by
//     pid: a process throttled to a tenth of a CPU, as by a cgroup quota or
//     a starved VM; its tunnels, other processes, go on), gateways healthy:
//     gateways declared down (goal 0), rounds set aside. Every probe's
//     answer then arrives while its daemon is stopped.
//  4. flood (the CPU burner stopped): BHL_FLOOD_COUNT (800,000) malformed
//     and mutated queries at BHL_FLOOD_QPS (40,000/s) in rounds (5 s on, 2 s
//     off) from the lab's client at ours: gateway state changes and
//     switches (goal 0), log lines (rate-limited), RSS before, peak, 30 s
//     and 90 s after, and the queries gw1's dnsmasq saw meanwhile (what of the flood
//     went upstream). With BHL_PEER_BIN=path/to/bin/splitwan (an older
//     build), the same flood at that build in the other lab, after ours.
// BHL_PARTS=load,fault,stall,flood picks parts. The daemons run with the service
// files' memory settings (daemon/runtime-settings.ts); BHL_SERVICE_SETTINGS=0
// starts them bare, as `splitwan demo` does. Everything started is stopped by
// pid; the labs and the temp dir are removed in `finally`. About 25 minutes
// with the defaults.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/lab.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../daemon/runtime-settings.js';
import { Proc, procs, rssMb, sleep, until } from './proc.js';
import { percentile } from './rng.js';

const LOAD_S = Number(process.env.BHL_SECONDS ?? 600);
const DNS_QPS = Number(process.env.BHL_DNS_QPS ?? 2000);
const FAULT_TRIALS = Number(process.env.BHL_FAULT_TRIALS ?? 5);
const FLOOD_COUNT = Number(process.env.BHL_FLOOD_COUNT ?? 800_000);
const FLOOD_QPS = Number(process.env.BHL_FLOOD_QPS ?? 40_000);
const FLOOD_ON_MS = 5000;
const FLOOD_OFF_MS = 2000;
const PEER_BIN = process.env.BHL_PEER_BIN ?? '';
/** BHL_SERVICE_SETTINGS=0: daemons started bare, as `splitwan demo` starts one (no heap flags, glibc's arenas). */
const SERVICE_SETTINGS = process.env.BHL_SERVICE_SETTINGS !== '0';
const STALL_S = Number(process.env.BHL_STALL_SECONDS ?? 60);
const STALL_STOP_MS = 900;
const STALL_RUN_MS = 100;
const STALL_RTT_MS = 150;
const PARTS = new Set((process.env.BHL_PARTS ?? 'load,fault,stall,flood').split(','));
const HEALTH = { intervalMs: 1000, timeoutMs: 800, failAfter: 3 };
const DETECT_BOUND_MS = HEALTH.failAfter * HEALTH.intervalMs + HEALTH.timeoutMs;
const T = process.pid % 100000;
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'splitwan');

const say = (s: string): void => void process.stdout.write(s + '\n');
const inNs = (n: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', n, ...argv];
const round1 = (x: number): number => Math.round(x * 10) / 10;

// ---------------------------------------------------------------------------
// A daemon and what its log says

interface Round { time: number; gateway: string; ok: boolean; rttMs: number | null; startLateMs: number; lateMs: number; verdict: string; error: string | null }
interface StateEvent { time: number; gateway: string; state: string; error: string | null }
interface SwitchEvent { time: number; to: string | null; reason: string }
interface Line { time: number; level: number; msg: string; suppressed: number }

class Daemon {
  readonly proc: Proc;
  readonly rounds: Round[] = [];
  readonly states: StateEvent[] = [];
  readonly switches: SwitchEvent[] = [];
  /** Every line at info or above (the log a person reads). */
  readonly lines: Line[] = [];
  private buf = '';

  constructor(
    readonly label: string,
    readonly lab: Lab,
    readonly names: readonly [string, string],
    cfg: string,
    o: { bin?: string; env?: Record<string, string> } = {},
  ) {
    const flags = SERVICE_SETTINGS ? DAEMON_NODE_FLAGS : [];
    this.proc = new Proc(`splitwan (${label})`, inNs(lab.ns.router, [process.execPath, ...flags, o.bin ?? BIN, 'run', '--config', cfg]), { env: { ...process.env, ...(SERVICE_SETTINGS ? DAEMON_ENV : {}), ...o.env } });
    this.proc.child.stdout!.on('data', (d: string) => this.feed(d));
  }

  private feed(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      let j: Record<string, unknown>;
      try {
        j = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const time = typeof j.time === 'number' ? j.time : Date.now();
      const msg = typeof j.msg === 'string' ? j.msg : '';
      if (msg === 'probe round') {
        this.rounds.push({ time, gateway: String(j.gateway), ok: j.ok === true, rttMs: typeof j.rttMs === 'number' ? j.rttMs : null, startLateMs: Number(j.startLateMs ?? 0), lateMs: Number(j.lateMs ?? 0), verdict: String(j.verdict), error: typeof j.error === 'string' ? j.error : null });
        continue;
      }
      const level = typeof j.level === 'number' ? j.level : 30;
      if (level >= 30) this.lines.push({ time, level, msg, suppressed: typeof j.suppressed === 'number' ? j.suppressed : 0 });
      if (typeof j.gateway === 'string' && typeof j.state === 'string' && /^gateway \S+ is \w+$/.test(msg)) this.states.push({ time, gateway: j.gateway, state: j.state, error: typeof j.error === 'string' ? j.error : null });
      if (typeof j.reason === 'string' && 'to' in j) this.switches.push({ time, to: (j.to as string | null) ?? null, reason: j.reason });
      if (/^active gateway: \S+ \(config reload\)$/.test(msg)) this.switches.push({ time, to: null, reason: 'reload' });
    }
  }

  state(gw: string): StateEvent | null {
    for (let k = this.states.length - 1; k >= 0; k--) if (this.states[k]!.gateway === gw) return this.states[k]!;
    return null;
  }

  active(): string | null | undefined {
    return this.switches.at(-1)?.to;
  }

  async start(): Promise<void> {
    await this.proc.until('"splitwan running"', () => this.proc.tail.includes('splitwan running'), 60_000);
    await until(`both gateways up (${this.label})`, () => this.names.every((n) => this.state(n)?.state === 'up'), 30_000);
  }
}

function config(dir: string, lab: Lab, names: readonly [string, string], level: string, tunnelDns: string | null = null): string {
  writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
  writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
  const cfg = join(dir, 'config.yaml');
  writeFileSync(
    cfg,
    [
      'mode: router',
      'lan: [lan0]',
      `breakout: { interface: wan0, dns: [${lab.addr.ispResolver.v4}] }`,
      'tunnel:',
      ...(tunnelDns ? [`  dns: [${tunnelDns}]`] : []),
      '  gateways:',
      `    - { name: ${names[0]}, config: gw1.conf, priority: 1 }`,
      `    - { name: ${names[1]}, config: gw2.conf, priority: 2 }`,
      `health: { interval: ${HEALTH.intervalMs}ms, timeout: ${HEALTH.timeoutMs}ms, failAfter: ${HEALTH.failAfter}, recoverAfter: 3, failbackHold: 2s }`,
      `stateDir: ${join(dir, 'state')}`,
      `control: { socket: ${join(dir, 'control.sock')} }`,
      `log: { level: ${level} }`,
      'rules: []',
      'default: tunnel',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return cfg;
}

// ---------------------------------------------------------------------------
// Figures

const pct = (xs: number[]): { p50: number; p95: number; p99: number; max: number; n: number } => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: round1(percentile(s, 50)), p95: round1(percentile(s, 95)), p99: round1(percentile(s, 99)), max: round1(s.at(-1) ?? NaN), n: s.length };
};

function loadFigures(d: Daemon, from: number, to: number) {
  const inWindow = <X extends { time: number }>(xs: X[]): X[] => xs.filter((x) => x.time >= from && x.time < to);
  const rounds = inWindow(d.rounds).filter((r) => r.gateway !== 'breakout');
  const states = inWindow(d.states);
  return {
    gateways_declared_down: states.filter((s) => s.state === 'down').length,
    state_changes: states.length,
    switches: inWindow(d.switches).length,
    rounds: rounds.length,
    rounds_failed: rounds.filter((r) => r.verdict === 'failed').length,
    rounds_no_evidence: rounds.filter((r) => r.verdict === 'no evidence').length,
    probe_rtt_ms: pct(rounds.filter((r) => r.ok && r.rttMs !== null).map((r) => r.rttMs!)),
    loop_lag_ms: pct(inWindow(d.rounds).map((r) => r.startLateMs)),
    failed_round_timer_late_ms: pct(rounds.filter((r) => !r.ok).map((r) => r.lateMs)),
    /** Why rounds failed (each distinct error once, with how late its timer was), so a count can be read. */
    failures: [...new Set(rounds.filter((r) => r.verdict !== 'ok').map((r) => `${r.gateway} ${r.verdict} (timer ${Math.round(r.lateMs)} ms late): ${r.error ?? ''}`.slice(0, 300)))].slice(0, 10),
  };
}

function describeLoad(label: string, f: ReturnType<typeof loadFigures>): string {
  const why = f.failures.length ? `\n      ${f.failures.slice(0, 3).join('\n      ')}` : '';
  return `  ${label}: ${f.gateways_declared_down} gateways declared down, ${f.state_changes} state changes, ${f.switches} switches; ${f.rounds} rounds (${f.rounds_failed} failed, ${f.rounds_no_evidence} no evidence); probe RTT p50 ${f.probe_rtt_ms.p50} / p99 ${f.probe_rtt_ms.p99} / max ${f.probe_rtt_ms.max} ms; loop lag p50 ${f.loop_lag_ms.p50} / p99 ${f.loop_lag_ms.p99} / max ${f.loop_lag_ms.max} ms${why}`;
}

// ---------------------------------------------------------------------------

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    say('SKIPPED bench health-load: needs root (network namespaces, wireguard-go, nft)');
    say(JSON.stringify({ bench: 'health-load', skipped: 'needs root' }));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), `splitwan-bench-health-${process.pid}-`));
  const labs: Lab[] = [];
  let stress: Proc | null = null;
  const cleanup = async (): Promise<void> => {
    for (const p of [...procs]) await p.stop(3000).catch(() => undefined);
    for (const l of labs) await l.destroy().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals): void => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const out: Record<string, unknown> = { bench: 'health-load', health: HEALTH, detect_bound_ms: DETECT_BOUND_MS };
  try {
    const [labA, labB] = await Promise.all([createLab({ routerTunnels: false }), createLab({ routerTunnels: false })]);
    labs.push(labA, labB);
    const namesA = [`h${T}a`, `h${T}b`] as const;
    const namesB = [`h${T}c`, `h${T}d`] as const;
    const dirA = join(dir, 'a');
    const dirB = join(dir, 'b');
    for (const d of [dirA, dirB]) mkdirSync(d, { mode: 0o700 });
    const ours = new Daemon('ours', labA, namesA, config(dirA, labA, namesA, 'debug'));
    let peer = new Daemon('peer: naive timing', labB, namesB, config(dirB, labB, namesB, 'debug'), { env: { SPLITWAN_PROBE_TIMING: 'naive' } });
    await Promise.all([ours.start(), peer.start()]);
    say(`labs ${labA.id} (ours) and ${labB.id} (peer: naive probe timing) up; both daemons running, both gateways up in each`);
    say(`health: interval ${HEALTH.intervalMs} ms, timeout ${HEALTH.timeoutMs} ms, failAfter ${HEALTH.failAfter}: a fault is due to be seen within ${DETECT_BOUND_MS} ms`);
    const both = [ours, peer] as const;
    const loads: Proc[] = [];
    const startLoad = (d: Daemon, seconds: number): Proc =>
      new Proc(`dns load (${d.label})`, inNs(d.lab.ns.client, [process.execPath, join(import.meta.dirname, 'dns-flood-child.js'), d.lab.addr.routerLan.v4, '53', 'valid', String(DNS_QPS), String(Math.ceil(DNS_QPS * seconds)), String(seconds)]));

    if (PARTS.has('load') || PARTS.has('fault')) {
      const faultBudgetS = PARTS.has('fault') ? FAULT_TRIALS * 40 + 30 : 0;
      const totalS = (PARTS.has('load') ? LOAD_S : 0) + faultBudgetS + 10;
      stress = new Proc('stress-ng', ['stress-ng', '--cpu', '2', '--timeout', `${totalS}s`]);
      for (const d of both) loads.push(startLoad(d, totalS));
      await sleep(2000);
      say(`load on: stress-ng --cpu 2 (pid ${stress.pid}, bounded to ${totalS} s) and ${DNS_QPS} DNS queries/s at each resolver from its lab's client`);
    }

    if (PARTS.has('load')) {
      const from = Date.now();
      for (let t = 0; t < LOAD_S; t += 60) {
        await sleep(Math.min(60, LOAD_S - t) * 1000);
        say(`  ${Math.min(LOAD_S, t + 60)} s: ours ${loadFigures(ours, from, Date.now()).gateways_declared_down} down, peer ${loadFigures(peer, from, Date.now()).gateways_declared_down} down`);
      }
      const to = Date.now();
      const fo = loadFigures(ours, from, to);
      const fp = loadFigures(peer, from, to);
      say(`1. ${LOAD_S} s with both cores saturated and a DNS load, gateways healthy:`);
      say(describeLoad('ours', fo));
      say(describeLoad('peer (naive timing)', fp));
      out.load = { seconds: LOAD_S, dns_qps: DNS_QPS, ours: fo, peer_naive: fp };
    }

    if (PARTS.has('fault')) {
      const trials: { ours: number | null; peer: number | null }[] = [];
      const gw2Down = { ours: 0, peer: 0 };
      const setAside = { ours: 0, peer: 0 };
      const from = Date.now();
      for (let i = 0; i < FAULT_TRIALS; i++) {
        const t0s = await Promise.all(both.map(async (d) => {
          await d.lab.blackholeGateway(0, true);
          return Date.now();
        }));
        const detect = await Promise.all(both.map(async (d, k) => {
          try {
            const ev = await until(`gw1 down (${d.label})`, () => d.states.find((s) => s.time >= t0s[k]! && s.gateway === d.names[0] && s.state === 'down'), 30_000);
            return ev.time - t0s[k]!;
          } catch {
            return null;
          }
        }));
        trials.push({ ours: detect[0]!, peer: detect[1]! });
        say(`  fault ${i + 1}: gw1 declared down after ${detect[0] ?? 'never (30 s)'} ms (ours), ${detect[1] ?? 'never (30 s)'} ms (peer)`);
        const lifted = Date.now();
        await Promise.all(both.map((d) => d.lab.blackholeGateway(0, false)));
        await Promise.all(both.map((d) => until(`traffic back on gw1 (${d.label})`, () => d.switches.some((s) => s.time >= lifted && s.to === d.names[0]), 60_000).catch(() => undefined)));
        await sleep(3000);
      }
      for (const [k, d] of both.entries()) {
        gw2Down[k === 0 ? 'ours' : 'peer'] = d.states.filter((s) => s.time >= from && s.gateway === d.names[1] && s.state === 'down').length;
        setAside[k === 0 ? 'ours' : 'peer'] = d.rounds.filter((r) => r.time >= from && r.verdict === 'no evidence').length;
      }
      const fig = (xs: (number | null)[]) => {
        const got = xs.filter((x): x is number => x !== null);
        return { ...pct(got), missed: xs.length - got.length, within_bound: got.filter((x) => x <= DETECT_BOUND_MS).length };
      };
      const fo = fig(trials.map((t) => t.ours));
      const fp = fig(trials.map((t) => t.peer));
      say(`2. a real fault under the same load (${FAULT_TRIALS} trials, bound ${DETECT_BOUND_MS} ms):`);
      say(`  ours: detected p50 ${fo.p50} / max ${fo.max} ms, ${fo.within_bound}/${FAULT_TRIALS} within the bound, ${fo.missed} missed; gw2 (healthy) declared down ${gw2Down.ours} times; ${setAside.ours} failed rounds set aside as no evidence`);
      say(`  peer: detected p50 ${fp.p50} / max ${fp.max} ms, ${fp.within_bound}/${FAULT_TRIALS} within the bound, ${fp.missed} missed; gw2 (healthy) declared down ${gw2Down.peer} times`);
      out.fault = { trials: FAULT_TRIALS, ours: { detect_ms: fo, healthy_gw2_declared_down: gw2Down.ours, rounds_no_evidence: setAside.ours }, peer_naive: { detect_ms: fp, healthy_gw2_declared_down: gw2Down.peer } };
    }

    for (const l of loads) await l.stop();
    if (stress) {
      await stress.stop();
      stress = null;
    }

    if (PARTS.has('stall')) {
      // Resolvers 150 ms away: a delay relay in each gateway's namespace, tunnel.dns pointed at it.
      const relays: Proc[] = [];
      for (const d of both) {
        for (const g of d.lab.gateways) {
          const r = new Proc(`dns delay (${g.ns})`, inNs(g.ns, [process.execPath, join(import.meta.dirname, 'dns-delay-child.js'), d.lab.addr.tunnelGateway.v4, '5353', d.lab.addr.tunnelGateway.v4, '53', String(STALL_RTT_MS)]));
          relays.push(r);
          await r.until('ready', () => r.tail.includes('ready'), 10_000);
        }
      }
      const reloadedBefore = both.map((d) => d.lines.filter((l) => l.msg === 'config reloaded').length);
      config(dirA, labA, namesA, 'debug', `${labA.addr.tunnelGateway.v4}:5353`);
      config(dirB, labB, namesB, 'debug', `${labB.addr.tunnelGateway.v4}:5353`);
      await Promise.all(both.map((d, k) => until(`the reload (${d.label})`, () => d.lines.filter((l) => l.msg === 'config reloaded').length > reloadedBefore[k]!, 30_000)));
      await sleep(5000);
      const from = Date.now();
      const pids = both.map((d) => d.proc.pid);
      const signal = (sig: NodeJS.Signals): void => {
        for (const pid of pids) {
          try {
            process.kill(pid, sig);
          } catch {
            // exited: said below
          }
        }
      };
      try {
        while (Date.now() - from < STALL_S * 1000) {
          signal('SIGSTOP');
          await sleep(STALL_STOP_MS);
          signal('SIGCONT');
          await sleep(STALL_RUN_MS);
        }
      } finally {
        signal('SIGCONT');
      }
      await sleep(3000); // the rounds in flight at the last stop
      const to = Date.now();
      for (const r of relays) await r.stop();
      const fo = loadFigures(ours, from, to);
      const fp = loadFigures(peer, from, to);
      // The lab's own resolvers again, for what follows.
      const reloadedAfter = both.map((d) => d.lines.filter((l) => l.msg === 'config reloaded').length);
      config(dirA, labA, namesA, 'debug');
      config(dirB, labB, namesB, 'debug');
      await Promise.all(both.map((d, k) => until(`the reload back (${d.label})`, () => d.lines.filter((l) => l.msg === 'config reloaded').length > reloadedAfter[k]!, 30_000)));
      await Promise.all(both.map((d) => until(`both gateways up again (${d.label})`, () => d.names.every((n) => d.state(n)?.state === 'up'), 60_000)));
      say(`3. ${STALL_S} s with the gateways' resolvers ${STALL_RTT_MS} ms away and each daemon running ${STALL_RUN_MS} ms of every ${STALL_STOP_MS + STALL_RUN_MS} ms (SIGSTOP ${STALL_STOP_MS} ms), gateways healthy:`);
      say(describeLoad('ours', fo));
      say(describeLoad('peer (naive timing)', fp));
      out.stall = { seconds: STALL_S, stop_ms: STALL_STOP_MS, run_ms: STALL_RUN_MS, resolver_rtt_ms: STALL_RTT_MS, ours: fo, peer_naive: fp };
    }

    if (PARTS.has('flood')) {
      await sleep(5000); // the machine quiet again
      const flood = async (d: Daemon) => {
        const pid = d.proc.pid;
        const rssBefore = rssMb(pid);
        const gwLog = d.lab.gwResolverLogs[0];
        const gwLinesBefore = readFileSync(gwLog, 'utf8').split('\n').filter((l) => l.includes(' query[')).length;
        const from = Date.now();
        const seconds = Math.ceil((FLOOD_COUNT / FLOOD_QPS) * ((FLOOD_ON_MS + FLOOD_OFF_MS) / FLOOD_ON_MS)) + 30;
        const child = new Proc(`flood (${d.label})`, inNs(d.lab.ns.client, [process.execPath, join(import.meta.dirname, 'dns-flood-child.js'), d.lab.addr.routerLan.v4, '53', 'flood', String(FLOOD_QPS), String(FLOOD_COUNT), String(seconds), String(FLOOD_ON_MS), String(FLOOD_OFF_MS), '7']));
        let peak = rssBefore;
        const sampler = setInterval(() => {
          try {
            peak = Math.max(peak, rssMb(pid));
          } catch {
            // exited: said below
          }
        }, 250);
        await child.exited;
        const floodEnd = Date.now();
        const result = JSON.parse(child.tail.trim().split('\n').at(-1) ?? '{}') as { sent?: number; answered?: number; rcodes?: Record<string, number>; seconds?: number };
        await sleep(30_000);
        const rssAfter = rssMb(pid);
        const to = Date.now();
        await sleep(60_000);
        const rssLater = rssMb(pid);
        clearInterval(sampler);
        procs.delete(child);
        const lines = d.lines.filter((l) => l.time >= from && l.time < to);
        const gwLines = readFileSync(gwLog, 'utf8').split('\n').filter((l) => l.includes(' query[')).length - gwLinesBefore;
        const states = d.states.filter((s) => s.time >= from && s.time < to);
        return {
          sent: result.sent ?? 0,
          answered: result.answered ?? 0,
          rcodes: result.rcodes ?? {},
          flood_seconds: round1((floodEnd - from) / 1000),
          gateway_state_changes: states.length,
          states: states.map((s) => `${s.gateway} ${s.state}${s.error ? ` [${s.error.slice(0, 160)}]` : ''}`),
          switches: d.switches.filter((s) => s.time >= from && s.time < to).length,
          log_lines: lines.length,
          log_lines_no_upstream: lines.filter((l) => l.msg.startsWith('no upstream answered')).length,
          lines_left_out_counted: lines.reduce((a, l) => a + l.suppressed, 0),
          rss_mb: { before: round1(rssBefore), peak: round1(peak), after_30s: round1(rssAfter), after_90s: round1(rssLater) },
          probe_rtt_ms: pct(d.rounds.filter((r) => r.time >= from && r.time < to && r.gateway !== 'breakout' && r.ok && r.rttMs !== null).map((r) => r.rttMs!)),
          gw1_resolver_queries: gwLines,
          daemon_alive: d.proc.running,
        };
      };
      const describe = (label: string, f: Awaited<ReturnType<typeof flood>>): string =>
        `  ${label}: ${f.sent} sent in ${f.flood_seconds} s, ${f.answered} answered; ${f.gateway_state_changes} gateway state changes${f.states.length ? ` (${f.states.join(', ')})` : ''}, ${f.switches} switches; ${f.log_lines} log lines (${f.log_lines_no_upstream} "no upstream answered", ${f.lines_left_out_counted} more counted in summaries); RSS ${f.rss_mb.before} → peak ${f.rss_mb.peak} → ${f.rss_mb.after_30s} MB 30 s after, ${f.rss_mb.after_90s} MB 90 s after; gw1's resolver saw ${f.gw1_resolver_queries} queries; probe RTT p50 ${f.probe_rtt_ms.p50} / p99 ${f.probe_rtt_ms.p99} / max ${f.probe_rtt_ms.max} ms${f.daemon_alive ? '' : '; THE DAEMON EXITED'}`;
      const fo = await flood(ours);
      say(`4. a flood of ${FLOOD_COUNT} malformed and mutated queries at ${FLOOD_QPS}/s in rounds (${FLOOD_ON_MS / 1000} s on, ${FLOOD_OFF_MS / 1000} s off) from one LAN client:`);
      say(describe('ours', fo));
      const floodOut: Record<string, unknown> = { count: FLOOD_COUNT, qps: FLOOD_QPS, ours: fo };
      if (PEER_BIN) {
        await peer.proc.stop();
        peer = new Daemon(`peer: ${PEER_BIN}`, labB, namesB, config(dirB, labB, namesB, 'debug'), { bin: PEER_BIN });
        await peer.start();
        await sleep(5000);
        const fp = await flood(peer);
        say(describe(`peer (${PEER_BIN})`, fp));
        floodOut.peer = { bin: PEER_BIN, ...fp };
      } else say('  (no peer build: BHL_PEER_BIN=path/to/an/older/bin/splitwan floods one too)');
      out.flood = floodOut;
    }
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
  say(JSON.stringify(out));
}
