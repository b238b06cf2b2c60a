// Sleep-and-resume benchmark (issue 16): a stopped daemon stands in for a
// sleeping laptop (SIGSTOP for RESUME_STOP_S, 8 s: well past the failure
// window of 1 s probes, 3 failures), the network gone meanwhile (both
// gateways' WireGuard black-holed) and back RESUME_NET_BACK_MS (3000) after
// the resume, as Wi-Fi comes back (association and DHCP take seconds). Per
// resume: the time from SIGCONT to the first request the web server saw from
// a gateway's address (curl every 100 ms from the laptop, 1 s timeout), and
// the false downs (a gateway declared down: every gateway was fine, the
// machine was asleep) and failovers that followed.
//
// In the same run, the way a health checker without resume handling does it
// (a ping tracker such as mwan3's, or splitwan before issue 16): the same
// daemon with SPLITWAN_PROBE_TIMING=naive, where every failed round counts,
// however late its timer fired.
//
// A counter on the ISP side of wan0 (bench/wan-leak.ts) runs through every
// resume: everything to the web server takes the tunnel (default: tunnel), so
// any packet to it there is a leak; the count is printed per side.
//
//  [router: the laptop, splitwan run, host mode] wan0 ── [isp] web 10.99.9.9 ── [gw1] [gw2]
//
// RESUME_CYCLES (10; 3 with BENCH_QUICK=1) resumes per side. Printed: p50/p95/
// max to traffic, false downs, failovers and leaked packets per side; the LAST
// line is one JSON object. Processes are stopped by pid; the lab is destroyed
// in `finally`. About 6 minutes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/lab.js';
import { Proc, procs, sleep, until } from './proc.js';
import { writeHostConfig } from './host-config.js';
import { summary } from './rng.js';
import { describeLeaks, installWanLeakCounter, leakDelta, readWanLeaks, type LeakCounts } from './wan-leak.js';

const QUICK = process.env.BENCH_QUICK === '1';
const CYCLES = Number(process.env.RESUME_CYCLES ?? (QUICK ? 3 : 10));
const STOP_MS = Number(process.env.RESUME_STOP_S ?? 8) * 1000;
const NET_BACK_MS = Number(process.env.RESUME_NET_BACK_MS ?? 3000);
const LIMIT_MS = 30_000;
const T = process.pid % 100000;
const GW = [`r${T}a`, `r${T}b`] as const;
const root = join(import.meta.dirname, '..', '..');

interface Side {
  ms: number[];
  falseDowns: number;
  failovers: number;
  leaked: LeakCounts;
}

async function side(lab: Lab, dir: string, cfg: string, naive: boolean, say: (s: string) => void): Promise<Side> {
  const label = naive ? 'naive tracker' : 'splitwan';
  const env = { ...process.env };
  if (naive) env.SPLITWAN_PROBE_TIMING = 'naive';
  else delete env.SPLITWAN_PROBE_TIMING;
  const daemon = new Proc(label, ['ip', 'netns', 'exec', lab.ns.router, process.execPath, join(root, 'bin', 'splitwan'), 'run', '--config', cfg], { env });
  // Every "gateway X is down" line, counted as it comes (the Proc keeps only a tail).
  let downs = 0;
  let pending = '';
  const count = (d: string) => {
    const lines = (pending + d).split('\n');
    pending = lines.pop() ?? '';
    downs += lines.filter((l) => /gateway \S+ is down/.test(l)).length;
  };
  daemon.child.stdout!.on('data', count);
  daemon.child.stderr!.on('data', count);
  const uplinks = [lab.gateways[0].uplink.v4, lab.gateways[1].uplink.v4];
  const viaTunnel = async (): Promise<boolean> => {
    const r = await lab.curlEcho(lab.ns.router, `http://${lab.addr.web.v4}/`, { timeoutMs: 1000, extraArgs: ['-4'] });
    return !('error' in r) && uplinks.includes(r.remote);
  };
  const failovers = async (): Promise<number> => {
    const r = await lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), 'status', '--json', '--socket', join(dir, 'control.sock')]);
    if (r.code !== 0) throw new Error(`${label}: status: ${r.stderr.trim()}`);
    return (JSON.parse(r.stdout) as { failovers: unknown[] }).failovers.length;
  };
  try {
    await daemon.until('splitwan running', () => daemon.tail.includes('splitwan running'), 30_000);
    await until(`${label}: tunnel traffic`, viaTunnel, 30_000, 100);
    const leaksBefore = await readWanLeaks(lab);
    const failoversBefore = await failovers();
    const downsBefore = downs;
    const ms: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      await sleep(3000); // good rounds between sleeps
      daemon.child.kill('SIGSTOP');
      await Promise.all([lab.blackholeGateway(0, true), lab.blackholeGateway(1, true)]);
      await sleep(STOP_MS);
      daemon.child.kill('SIGCONT');
      const t0 = performance.now();
      await sleep(NET_BACK_MS);
      await Promise.all([lab.blackholeGateway(0, false), lab.blackholeGateway(1, false)]);
      let took = LIMIT_MS;
      while (performance.now() - t0 < LIMIT_MS) {
        if (await viaTunnel()) {
          took = performance.now() - t0;
          break;
        }
        await sleep(100);
      }
      ms.push(took);
      say(`${label}: resume ${i + 1}: ${took >= LIMIT_MS ? `no tunnel traffic in ${LIMIT_MS / 1000} s` : `tunnel traffic after ${Math.round(took)} ms`}; false downs so far ${downs - downsBefore}`);
    }
    // Verdicts about the last sleep come within a few rounds.
    await sleep(5000);
    return { ms, falseDowns: downs - downsBefore, failovers: (await failovers()) - failoversBefore, leaked: leakDelta(leaksBefore, await readWanLeaks(lab)) };
  } finally {
    if (daemon.running) daemon.child.kill('SIGCONT');
    await daemon.stop(20_000);
  }
}

export async function run(): Promise<void> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  let lab: Lab | null = null;
  const dir = mkdtempSync(join(tmpdir(), `splitwan-bench-resume-${process.pid}-`));
  try {
    lab = await createLab({ routerTunnels: false, withIpv6: false });
    const cfg = writeHostConfig(lab, dir, { gateways: GW, breakoutInterface: 'wan0', health: '{ interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 2 }' });
    await installWanLeakCounter(lab, [lab.addr.web.v4]);
    const ours = await side(lab, dir, cfg, false, say);
    const peer = await side(lab, dir, cfg, true, say);
    const o = summary(ours.ms);
    const p = summary(peer.ms);
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    say(`resume (stopped ${STOP_MS / 1000} s, network back after ${NET_BACK_MS} ms) → tunnel traffic, ${CYCLES} resumes: splitwan p50 ${o.p50} ms, p95 ${o.p95} ms, max ${o.max} ms, false downs ${ours.falseDowns}, failovers ${ours.failovers}, leaked ${describeLeaks(ours.leaked)}; naive tracker p50 ${p.p50} ms, p95 ${p.p95} ms, max ${p.max} ms, false downs ${peer.falseDowns}, failovers ${peer.failovers}, leaked ${describeLeaks(peer.leaked)}; ratio p50 ${ratio(o.p50, p.p50)}, p95 ${ratio(o.p95, p.p95)}`);
    say(
      JSON.stringify({
        bench: 'resume',
        cycles: CYCLES,
        stop_ms: STOP_MS,
        net_back_ms: NET_BACK_MS,
        ours: { ...o, false_downs: ours.falseDowns, failovers: ours.failovers, leaked_packets: ours.leaked.all, ms: ours.ms.map(Math.round) },
        peer: { name: 'naive tracker (SPLITWAN_PROBE_TIMING=naive: every failed round counts)', ...p, false_downs: peer.falseDowns, failovers: peer.failovers, leaked_packets: peer.leaked.all, ms: peer.ms.map(Math.round) },
        ratio_p50: ratio(o.p50, p.p50),
        ratio_p95: ratio(o.p95, p.p95),
      }),
    );
  } finally {
    for (const p of procs) await p.stop(3000);
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
