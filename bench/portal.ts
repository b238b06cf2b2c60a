// Captive portal benchmark (issue 16): a hotel network (lab/portal-server.mjs
// in the isp namespace: every request 302s to its login page; the tunnel's
// UDP dropped until login), the laptop in host mode with no gateway up. Per
// side: the time from the user's action to the login page loading (curl from
// the laptop every 100 ms, 1 s timeout), then PORTAL_ATTEMPTS requests to a
// tunnel destination (the echo server, by address and by name) while the
// portal is reachable, counted on the ISP side of wan0 (bench/wan-leak.ts):
// any packet to it there left bare.
//
// splitwan: kill switch on, `splitwan portal`. In the same run, the way a
// user does it today: the VPN disconnected to log in (splitwan stopped, as one
// disconnects a VPN app), names then from the network's resolver (dig @isp,
// as the system resolver would ask it).
//
//  [router: the laptop, splitwan run, host mode] wan0 ── [isp] portal 10.99.9.80, probe 10.99.9.204, web 10.99.9.9 ── [gw1] [gw2]
//
// PORTAL_ATTEMPTS (40; 10 with BENCH_QUICK=1). The LAST line is one JSON
// object. Processes are stopped by pid; the lab is destroyed in `finally`.
// About a minute.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, must, type Lab } from '../lab/lab.js';
import { writeHostConfig } from './host-config.js';
import { Proc, procs, sleep, until } from './proc.js';
import { describeLeaks, installWanLeakCounter, leakDelta, readWanLeaks, type LeakCounts } from './wan-leak.js';

const QUICK = process.env.BENCH_QUICK === '1';
const ATTEMPTS = Number(process.env.PORTAL_ATTEMPTS ?? (QUICK ? 10 : 40));
const PORTAL = '10.99.9.80';
const PROBE = '10.99.9.204';
const T = process.pid % 100000;
const GW = [`p${T}a`, `p${T}b`] as const;
const root = join(import.meta.dirname, '..', '..');

interface Side {
  /** From the user's action to the login page loaded. */
  toPageMs: number;
  leaked: LeakCounts;
  /** Requests to the tunnel destination that got an answer (bare: a leak the user sees). */
  answered: number;
}

async function side(lab: Lab, dir: string, portal: boolean, say: (s: string) => void): Promise<Side> {
  const label = portal ? 'splitwan portal' : 'VPN disconnected';
  const cfg = writeHostConfig(lab, dir, {
    gateways: GW,
    breakoutInterface: 'wan0',
    health: '{ interval: 1s, timeout: 800ms, failAfter: 2, recoverAfter: 2 }',
    extra: ['portal: { probeUrl: "http://probe.lab.test/generate_204", openFor: 2m, interval: 2s }'],
  });
  const daemon = new Proc(label, ['ip', 'netns', 'exec', lab.ns.router, process.execPath, join(root, 'bin', 'splitwan'), 'run', '--config', cfg]);
  const cli = (...args: string[]) => lab.exec(lab.ns.router, [process.execPath, join(root, 'bin', 'splitwan'), ...args, '--socket', join(dir, 'control.sock')], { timeoutMs: 70_000 });
  /** The browser: with splitwan, names from its resolver; disconnected, from the network's (dig @isp, then --resolve). */
  const curl = async (url: string): Promise<string | null> => {
    const host = new URL(url).hostname;
    let extra: string[] = [];
    if (!portal && !/^[\d.]+$/.test(host)) {
      const ip = (await lab.exec(lab.ns.router, ['dig', '+short', '+time=1', '+tries=1', `@${lab.addr.ispResolver.v4}`, host])).stdout.trim().split('\n')[0] ?? '';
      if (!/^[\d.]+$/.test(ip)) return null;
      extra = ['--resolve', `${host}:80:${ip}`];
    }
    const r = await lab.exec(lab.ns.router, ['curl', '-4', '-sS', '--max-time', '1', ...extra, url], { timeoutMs: 5000 });
    return r.code === 0 ? r.stdout : null;
  };
  try {
    await daemon.until('splitwan running', () => daemon.tail.includes('splitwan running'), 30_000);
    await until(
      `${label}: no gateway up`,
      async () => {
        const s = JSON.parse((await cli('status', '--json')).stdout || '{}') as { active?: string | null; portal?: { state: string } };
        return s.active === null && s.portal?.state === 'suspected';
      },
      30_000,
      200,
    );
    const t0 = performance.now();
    if (portal) {
      const r = await cli('portal');
      if (r.code !== 0) throw new Error(`splitwan portal: ${r.stderr}`);
    } else await daemon.stop(20_000); // disconnected: nothing of splitwan's is left
    await until(`${label}: the login page`, async () => (await curl('http://portal.lab.test/login'))?.includes('hotel login') ?? false, 30_000, 100);
    const toPageMs = performance.now() - t0;
    const before = await readWanLeaks(lab);
    let answered = 0;
    for (let i = 0; i < ATTEMPTS; i++) {
      if ((await curl(i % 2 === 0 ? `http://${lab.addr.web.v4}/` : 'http://web.lab.test/')) !== null) answered++;
    }
    await sleep(500);
    const leaked = leakDelta(before, await readWanLeaks(lab));
    say(`${label}: login page after ${Math.round(toPageMs)} ms; ${ATTEMPTS} requests to a tunnel destination meanwhile: ${answered} answered bare, leaked ${describeLeaks(leaked)}`);
    return { toPageMs, leaked, answered };
  } finally {
    if (daemon.running) await daemon.stop(20_000);
  }
}

export async function run(): Promise<void> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  let lab: Lab | null = null;
  const dir = mkdtempSync(join(tmpdir(), `splitwan-bench-portal-${process.pid}-`));
  let server: ReturnType<typeof spawn> | null = null;
  try {
    lab = await createLab({ routerTunnels: false, withIpv6: false, names: { 'portal.lab.test': PORTAL, 'probe.lab.test': PROBE } });
    await must(['ip', '-n', lab.ns.isp, '-batch', '-'], { input: `addr add ${PORTAL}/32 dev lo\naddr add ${PROBE}/32 dev lo\n` });
    // The hotel drops the tunnel's UDP until login (nobody logs in here).
    await must(['ip', 'netns', 'exec', lab.ns.isp, 'nft', '-f', '-'], { input: 'table inet hotel {\n chain gate {\n  type filter hook forward priority 0; policy accept;\n  iifname "r0" udp dport 51820 drop\n }\n}\n' });
    writeFileSync(join(dir, 'portal.log'), '');
    server = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, join(root, 'lab', 'portal-server.mjs'), PORTAL, PROBE, join(dir, 'portal.log'), join(dir, 'logged-in')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    server.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await until('the portal server', () => out.includes('listening'), 10_000, 50);
    await installWanLeakCounter(lab, [lab.addr.web.v4]);
    const ours = await side(lab, dir, true, say);
    const peer = await side(lab, dir, false, say);
    say(
      `captive portal, ${ATTEMPTS} requests to a tunnel destination while the login page is reachable: splitwan portal ${Math.round(ours.toPageMs)} ms to the page, leaked ${ours.leaked.all} packets (${ours.answered} answered); VPN disconnected ${Math.round(peer.toPageMs)} ms to the page, leaked ${peer.leaked.all} packets (${peer.answered} answered)`,
    );
    say(
      JSON.stringify({
        bench: 'portal',
        attempts: ATTEMPTS,
        ours: { to_page_ms: Math.round(ours.toPageMs), leaked_packets: ours.leaked.all, answered_bare: ours.answered },
        peer: { name: 'VPN disconnected to log in (splitwan stopped)', to_page_ms: Math.round(peer.toPageMs), leaked_packets: peer.leaked.all, answered_bare: peer.answered },
        ratio_to_page: Math.round((ours.toPageMs / peer.toPageMs) * 1000) / 1000,
      }),
    );
  } finally {
    for (const p of procs) await p.stop(3000);
    if (server && server.exitCode === null) server.kill('SIGTERM');
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
