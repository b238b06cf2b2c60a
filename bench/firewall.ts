// Firewall-damage benchmark (issue 15): another program removes splitwan's
// state while traffic runs, in both modes, the way it happens in the field:
//
//   flush    `nft flush ruleset`           (Debian's nftables.service reload, OpenWrt's fw4 restart)
//   table    `nft delete table inet splitwan`
//   rules    every ip rule at splitwan's priorities (5000-5099), both families
//   routes   every route in splitwan's tables (1100-1113), both families
//
// Each kind BFW_N times (20) per mode. Measured: packets for tunnel
// destinations that arrive at the ISP from the router's WAN (nft counter in
// the isp namespace, by kind; goal 0), and the time from the damage to the
// kernel state being whole again (goal: p95 <= 1 s): a script in the router's
// namespace does the damage and checks the state every 5 ms plus the time a
// check takes (the pace is printed: the repair times are upper bounds).
//
//  [client] ── lan0 [router: splitwan run] wan0 ──▶ r0 [isp]  web 10.99.9.9 :80 (echo), :8000 (stream), :9000/udp
//    traffic from the client (router mode) or the router itself (host mode):
//    a GET every 100 ms on a new connection (300 ms timeout); 4 long-lived TCP
//    streams (reconnecting); a long-lived UDP flow and new ones every 500 ms.
//    Everything goes through the tunnel (default: tunnel, no rules), so any
//    packet to the web server on the WAN is a leak.
//
// Peer, side by side in the same run and lab: splitwan at the commit before
// this work (bench/baseline.ts, BENCH_BASELINE_REF), whose repair is a 3 s
// timer and whose routing falls back to main without its table. When it
// cannot be built, the peer is SKIPPED (said loudly). BENCH_QUICK=1: 3 of
// each. Bounded: BFW_BUDGET_S (1500) for the whole run; each repair waits at
// most 15 s. Everything started is stopped by pid; the lab is removed in
// `finally`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/lab.js';
import { buildBaseline, type Baseline } from './baseline.js';
import { Proc, procs, sleep } from './proc.js';
import { percentile } from './rng.js';
import { describeLeaks, installWanLeakCounter, leakDelta, quiesce, readWanLeaks, type LeakCounts } from './wan-leak.js';

const QUICK = process.env.BENCH_QUICK === '1';
const N = Number(process.env.BFW_N ?? (QUICK ? 3 : 20));
const BUDGET_MS = Number(process.env.BFW_BUDGET_S ?? 1500) * 1000;
const REPAIR_LIMIT_MS = 15_000;
const GOAL_P95_MS = 1000;
const KINDS = ['flush', 'table', 'rules', 'routes'] as const;
type Kind = (typeof KINDS)[number];
const MODES = ['router', 'host'] as const;
type Mode = (typeof MODES)[number];
const T = process.pid % 100000;

const inNs = (n: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', n, ...argv];
const now = (): number => performance.timeOrigin + performance.now();

/** splitwan's state as counts: table lines, ip rules at 5000-5099 (v4, v6), routes in 1100-1113 (v4, v6). */
const STATE = [
  '$(nft list table inet splitwan 2>/dev/null | wc -l)',
  "$(ip -4 rule | grep -c '^50')",
  "$(ip -6 rule | grep -c '^50')",
  "$(ip -4 route show table all | grep -c ' table 11[01][0-9] ')",
  "$(ip -6 route show table all | grep -c ' table 11[01][0-9] ')",
].join(' ');
/**
 * Runs the damage inside the router's namespace and polls the state until it
 * equals $1 again: prints `whole <damage ns> <whole ns> <checks>` (epoch ns),
 * or `timeout <state>` after the limit. The time from the damage to the first
 * check that sees the state whole is an upper bound of the repair time (by at
 * most one check: the checks' pace is printed). A fixed script: its only
 * inputs are the expected counts and the damage lines below.
 */
function watchScript(kind: Kind): string {
  const pref = Array.from({ length: 100 }, (_, i) => `rule del pref ${5000 + i}`).join('\\n');
  const tables = Array.from({ length: 14 }, (_, i) => `route flush table ${1100 + i}`).join('\\n');
  const both = (lines: string) => ['-4', '-6'].map((f) => `printf '${lines}\\n' | ip ${f} -force -batch - >/dev/null 2>&1`).join('; ');
  const damage = { flush: 'nft flush ruleset', table: 'nft delete table inet splitwan', rules: both(pref), routes: both(tables) }[kind];
  return `want="$1"; n=0
t0=$(date +%s%N)
${damage}
while :; do
  got="${STATE}"
  n=$((n+1))
  if [ "$got" = "$want" ]; then echo "whole $t0 $(date +%s%N) $n"; exit 0; fi
  if [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt ${REPAIR_LIMIT_MS} ]; then echo "timeout $got"; exit 1; fi
  sleep 0.005
done`;
}

interface Sample { kind: Kind; repairMs: number | null; leaks: LeakCounts; requestsFailed: number; requests: number }
interface RunResult { impl: string; mode: Mode; samples: Sample[]; startError?: string; /** Each repair's time and how many state checks it took (the measurement's pace). */ checks: { ms: number; n: number }[] }

function summary(xs: readonly number[]): { p50: number; p95: number; max: number; n: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: Math.round(percentile(s, 50)), p95: Math.round(percentile(s, 95)), max: Math.round(s[s.length - 1] ?? NaN), n: s.length };
}

export async function run(): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) throw new Error('the firewall benchmark needs root (it creates network namespaces)');
  const t00 = performance.now();
  const say = (s: string) => process.stdout.write(s + '\n');
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-firewall-'));
  let lab: Lab | null = null;
  let baseline: Baseline | { skipped: string } | null = null;
  let building: Promise<unknown> | null = null;
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await building?.catch(() => undefined); // a build still running would leave its dir behind
      await Promise.all([...procs].map((p) => p.stop(10_000)));
      if (lab) await lab.destroy().catch((e: unknown) => process.stderr.write(`lab destroy: ${(e as Error).message}\n`));
      if (baseline && !('skipped' in baseline)) baseline.remove();
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (sig: NodeJS.Signals) => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    // Kept as soon as built, so `finally` removes it however the run ends.
    const built = buildBaseline().then((x) => (baseline = x));
    building = built;
    const L = (lab = await createLab({ routerTunnels: false }));
    const b = await built;
    say(`lab ${L.id} up in ${L.timings.total} ms; ${N} of each damage (${KINDS.join(', ')}) per mode${QUICK ? ' (BENCH_QUICK)' : ''}`);
    if ('skipped' in b) say(`peer SKIPPED: the previous code path could not be built (${b.skipped}); only this build is measured`);
    else say(`peer: splitwan at ${b.ref} (repair on a 3 s timer, routing falls back to main without its table), built in ${b.bin}`);
    writeFileSync(join(dir, 'gw1.conf'), L.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), L.gateways[1].configText, { mode: 0o600 });
    const web = L.addr.web.v4;
    const server = new Proc('flows server', inNs(L.ns.isp, [process.execPath, join(import.meta.dirname, 'flows-child.js'), 'server', web, '8000', '9000']));
    await server.until('the flows server', () => server.tail.includes('ready'), 10_000);
    await installWanLeakCounter(L, [web, L.addr.web.v6]);

    const impls: { name: string; bin: string }[] = [{ name: 'this build', bin: join(import.meta.dirname, '..', '..', 'bin', 'splitwan') }];
    if (!('skipped' in b)) impls.push({ name: `baseline ${b.ref}`, bin: b.bin });
    const results: RunResult[] = [];
    for (const impl of impls) {
      for (const mode of MODES) {
        if (performance.now() - t00 > BUDGET_MS) {
          say(`budget of ${BUDGET_MS / 1000} s spent: ${impl.name} ${mode} mode not run`);
          continue;
        }
        results.push(await runOne(L, dir, impl, mode, say, t00));
      }
    }
    await server.stop();

    // ---------------------------------------------------------------- figures
    const ours = results.filter((r) => r.impl === 'this build');
    const peer = results.filter((r) => r.impl !== 'this build');
    const figures = (rs: RunResult[]) => {
      const out: Record<string, unknown> = {};
      for (const r of rs) {
        const byKind: Record<string, unknown> = {};
        for (const k of KINDS) {
          const s = r.samples.filter((x) => x.kind === k);
          const rep = s.filter((x) => x.repairMs !== null).map((x) => x.repairMs!);
          byKind[k] = {
            n: s.length,
            wan_leak_packets: s.reduce((a, x) => a + x.leaks.all, 0),
            leak_kinds: s.reduce((a, x) => ({ syn: a.syn + x.leaks.tcp_syn, rst: a.rst + x.leaks.tcp_rst, tcp_other: a.tcp_other + x.leaks.tcp_other, udp: a.udp + x.leaks.udp, icmp: a.icmp + x.leaks.icmp }), { syn: 0, rst: 0, tcp_other: 0, udp: 0, icmp: 0 }),
            repair_ms: summary(rep),
            not_repaired: s.length - rep.length,
            requests_failed: s.reduce((a, x) => a + x.requestsFailed, 0),
            requests: s.reduce((a, x) => a + x.requests, 0),
          };
        }
        out[r.mode] = { ...(r.startError ? { start_error: r.startError } : {}), kinds: byKind };
      }
      return out;
    };
    const all = (rs: RunResult[]) => rs.flatMap((r) => r.samples);
    const oursSamples = all(ours);
    const peerSamples = all(peer);
    const oursRepair = summary(oursSamples.filter((s) => s.repairMs !== null).map((s) => s.repairMs!));
    const peerRepair = summary(peerSamples.filter((s) => s.repairMs !== null).map((s) => s.repairMs!));
    const oursLeaks = oursSamples.reduce((a, s) => a + s.leaks.all, 0);
    const peerLeaks = peerSamples.reduce((a, s) => a + s.leaks.all, 0);
    const oursUnrepaired = oursSamples.filter((s) => s.repairMs === null).length;
    const goalMet = oursLeaks === 0 && oursRepair.p95 <= GOAL_P95_MS && oursUnrepaired === 0 && oursSamples.length === N * KINDS.length * MODES.length;
    say('');
    say(`${'run'.padEnd(28)} ${'damage'.padEnd(7)} ${'n'.padStart(3)} ${'WAN leak pkts'.padEnd(34)} repair p50 / p95 / max ms`);
    for (const r of results) {
      if (r.startError) say(`${`${r.impl}, ${r.mode}`.padEnd(28)} did not start: ${r.startError}`);
      for (const k of KINDS) {
        const s = r.samples.filter((x) => x.kind === k);
        if (!s.length) continue;
        const rep = summary(s.filter((x) => x.repairMs !== null).map((x) => x.repairMs!));
        const leaks = s.reduce((a, x) => addLeaks(a, x.leaks), zeroLeaks());
        const missing = s.filter((x) => x.repairMs === null).length;
        say(`${`${r.impl}, ${r.mode}`.padEnd(28)} ${k.padEnd(7)} ${String(s.length).padStart(3)} ${describeLeaks(leaks).padEnd(34)} ${rep.n ? `${rep.p50} / ${rep.p95} / ${rep.max}` : '-'}${missing ? ` (${missing} NOT repaired in ${REPAIR_LIMIT_MS / 1000} s)` : ''}`);
      }
    }
    const ratio = (a: number, c: number) => (c > 0 ? +(a / c).toFixed(3) : null);
    // How often the state was checked while it was being repaired: the repair times' resolution.
    const allChecks = results.flatMap((r) => r.checks);
    const checkPaceMs = Math.round(allChecks.reduce((a, c) => a + c.ms, 0) / Math.max(1, allChecks.reduce((a, c) => a + c.n, 0)));
    const out = {
      damages_per_kind_per_mode: N,
      kinds: KINDS,
      wan_leak_packets: oursLeaks,
      repair_ms: oursRepair,
      not_repaired: oursUnrepaired,
      state_check_pace_ms: checkPaceMs,
      ours: figures(ours),
      peer: 'skipped' in b ? { skipped: b.skipped } : { ref: b.ref, approach: 'repair on a 3 s timer; no fail-closed routing', wan_leak_packets: peerLeaks, repair_ms: peerRepair, not_repaired: peerSamples.filter((s) => s.repairMs === null).length, ...figures(peer) },
      ratio_repair_p50: ratio(oursRepair.p50, peerRepair.p50),
      ratio_repair_p95: ratio(oursRepair.p95, peerRepair.p95),
      goal: { wan_leak_packets: 0, repair_p95_ms: GOAL_P95_MS },
      goal_met: goalMet,
      total_s: Math.round((performance.now() - t00) / 1000),
    };
    say(`this build: ${describeLeaks(oursSamples.reduce((a, s) => addLeaks(a, s.leaks), zeroLeaks()))} packet(s) for tunnel destinations on the WAN in ${oursSamples.length} damages (goal 0); repair p50 ${oursRepair.p50} ms, p95 ${oursRepair.p95} ms, max ${oursRepair.max} ms (goal p95 <= ${GOAL_P95_MS} ms)${oursUnrepaired ? `; ${oursUnrepaired} NOT repaired` : ''}`);
    if (!('skipped' in b)) say(`peer ${b.ref}: ${describeLeaks(peerSamples.reduce((a, s) => addLeaks(a, s.leaks), zeroLeaks()))} packet(s) in ${peerSamples.length} damages; repair p50 ${peerRepair.p50} ms, p95 ${peerRepair.p95} ms; ratio ours/peer p50 ${out.ratio_repair_p50}, p95 ${out.ratio_repair_p95}`);
    say(`repair times are upper bounds: the state was checked every ${checkPaceMs} ms on average while it was repaired (one check: nft and ip, 5 commands)`);
    say(`goal: ${goalMet ? 'MET' : 'NOT MET'}; ${out.total_s} s in all`);
    say(JSON.stringify(out));
    return out;
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}

function zeroLeaks(): LeakCounts {
  return { all: 0, tcp_syn: 0, tcp_rst: 0, tcp_other: 0, udp: 0, icmp: 0, other: 0 };
}
function addLeaks(a: LeakCounts, b: LeakCounts): LeakCounts {
  return Object.fromEntries(Object.keys(a).map((k) => [k, a[k as keyof LeakCounts] + b[k as keyof LeakCounts]])) as LeakCounts;
}

/** One implementation in one mode: start it, run the damages with traffic, stop it. */
async function runOne(L: Lab, dir: string, impl: { name: string; bin: string }, mode: Mode, say: (s: string) => void, t00: number): Promise<RunResult> {
  const names = [`f${T}a`, `f${T}b`];
  const cfg = join(dir, `config-${mode}.yaml`);
  writeFileSync(
    cfg,
    [
      `mode: ${mode}`,
      ...(mode === 'router' ? ['lan: [lan0]'] : []),
      `breakout: { interface: wan0, dns: [${L.addr.ispResolver.v4}] }`,
      'tunnel:',
      '  gateways:',
      `    - { name: ${names[0]}, config: gw1.conf, priority: 1 }`,
      `    - { name: ${names[1]}, config: gw2.conf, priority: 2 }`,
      `stateDir: ${join(dir, 'state')}`,
      `control: { socket: ${join(dir, 'control.sock')} }`,
      'rules: []',
      'default: tunnel',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const result: RunResult = { impl: impl.name, mode, samples: [], checks: [] };
  const checks = result.checks;
  const from = mode === 'router' ? L.ns.client : L.ns.router;
  const daemon = new Proc(`splitwan (${impl.name}, ${mode})`, inNs(L.ns.router, [process.execPath, impl.bin, 'run', '--config', cfg]));
  const traffic: Proc[] = [];
  try {
    await daemon.until('"splitwan running"', () => daemon.tail.includes('splitwan running'), 30_000);
    await daemon.until('both gateways up', () => names.every((n) => daemon.tail.includes(`gateway ${n} is up`)), 30_000);
    const end = Date.now() + 20_000;
    for (;;) {
      const r = await L.curlEcho(from, `http://${L.addr.web.v4}/`, { timeoutMs: 1000 });
      if (!('error' in r) && r.remote === L.gateways[0].uplink.v4) break;
      if (Date.now() > end) throw new Error(`no traffic through gw1: ${'error' in r ? r.error : r.remote}`);
      await sleep(200);
    }
    await sleep(1500); // past the start-up repairs and tunnel events
    const want = (await L.exec(L.ns.router, ['sh', '-c', `echo "${STATE}"`])).stdout.trim();
    // Traffic: a GET every 100 ms on a new connection; long-lived streams and UDP flows.
    const reqs: { start: number; end: number; ok: boolean }[] = [];
    const getter = new Proc('client loop', inNs(from, [process.execPath, join(import.meta.dirname, 'failover-client-child.js'), `http://${L.addr.web.v4}/`, '100', '300']));
    let buf = '';
    getter.child.stdout!.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const m = /^([\d.]+) ([\d.]+) (ok|err)/.exec(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (m) reqs.push({ start: Number(m[1]), end: Number(m[2]), ok: m[3] === 'ok' });
      }
    });
    const flows = new Proc('flows client', inNs(from, [process.execPath, join(import.meta.dirname, 'flows-child.js'), 'client', L.addr.web.v4, '8000', '9000', '4']));
    traffic.push(getter, flows);
    await getter.until('the client loop', () => getter.tail.includes('ready'), 10_000);
    await flows.until('the flows', () => flows.tail.includes('ready'), 10_000);
    await sleep(1000);
    say(`${impl.name}, ${mode} mode: state ${want} (table lines, rules v4/v6, routes v4/v6); traffic running`);
    for (let i = 0; i < N; i++) {
      for (const kind of KINDS) {
        if (performance.now() - t00 > BUDGET_MS) return result;
        const leaks0 = await readWanLeaks(L);
        const t0 = now();
        const watch = new Proc('damage and watch', inNs(L.ns.router, ['sh', '-c', watchScript(kind), 'watch', want]));
        let repairMs: number | null = null;
        await watch.until('the repair', () => /whole \d+ \d+ \d+|timeout/.test(watch.tail), REPAIR_LIMIT_MS + 5000).catch(() => undefined);
        const m = /whole (\d+) (\d+) (\d+)/.exec(watch.tail);
        if (m) {
          repairMs = Number((BigInt(m[2]!) - BigInt(m[1]!)) / 1_000_000n);
          checks.push({ ms: repairMs, n: Number(m[3]) });
        }
        await watch.stop(1000);
        await sleep(500); // traffic through the repaired state
        const leaks = leakDelta(leaks0, await readWanLeaks(L));
        const window = reqs.filter((q) => q.end > t0 && q.start < now());
        result.samples.push({ kind, repairMs, leaks, requestsFailed: window.filter((q) => !q.ok).length, requests: window.length });
        if (leaks.all || repairMs === null || repairMs > GOAL_P95_MS) say(`  ${kind} #${i + 1}: repaired ${repairMs === null ? 'NOT' : `after ${repairMs} ms`}, WAN leak ${describeLeaks(leaks)}`);
        if (repairMs === null) {
          // The state may stay broken: say what it was and go on to the next run.
          say(`  ${kind} #${i + 1}: the state did not come back (${watch.tail.trim().split('\n').at(-1)}); ${impl.name} ${mode} stops here`);
          return result;
        }
      }
      if ((i + 1) % 5 === 0 || i + 1 === N) say(`  ${impl.name}, ${mode}: ${i + 1}/${N} rounds of ${KINDS.length} damages`);
    }
    return result;
  } catch (e) {
    result.startError = (e as Error).message.slice(0, 300);
    say(`${impl.name}, ${mode} mode: ${result.startError}`);
    return result;
  } finally {
    for (const p of traffic) await p.stop();
    // Sockets the traffic left (closing, retransmitting a FIN) would go out bare once the daemon is gone
    // and count as the next run's leaks: closed while it still routes them.
    await quiesce(L, from);
    const code = await daemon.stop(15_000);
    const left = (await L.exec(L.ns.router, ['nft', 'list', 'table', 'inet', 'splitwan'])).code === 0 || /^50\d\d:/m.test((await L.exec(L.ns.router, ['ip', 'rule'])).stdout);
    if (code !== 0 || left) say(`  ${impl.name}, ${mode}: stopped with exit ${code}${left ? ', LEFT STATE BEHIND' : ''}`);
  }
}
