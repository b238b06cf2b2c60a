// Tagging benchmark: 1000 DNS answers of 1-8 addresses arrive concurrently
// (spread over 1 s, as a busy LAN would send them); each answer's latency is
// the time from its arrival to the kernel holding its addresses. splitwan's
// tagger (coalesced, pipelined transactions) is measured as the daemon runs
// it, through libnftables in-process, and through its fallback, one
// persistent `nft -i`; side by side with the straightforward peer: spawning
// `nft add element` per answer. libnftables acts in the namespace of its
// process, so the measurements run in a child process started inside a
// network namespace this script creates and removes (needs root).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openNft } from '../daemon/dataplane/libnft-linux.js';
import { performance } from 'node:perf_hooks';
import { silentLogger, systemClock } from '../lib/logger.js';
import { NftSession } from '../daemon/dataplane/nft-session-linux.js';
import { renderRuleset, tagSetNames, type DataplanePlan } from '../daemon/dataplane/plan.js';
import { NftTagger } from '../daemon/dataplane/tagger.js';
import { percentile, rng } from './rng.js';

const ANSWERS = 1000;
const SPREAD_MS = 1000;

const plan: DataplanePlan = {
  mode: 'host',
  lan: [],
  wan: 'wan0',
  gateways: [],
  active: null,
  killSwitch: true,
  rules: [{ index: 0, id: 'bench000', mark: 0x1000, dst4: [], dst6: [], src4: [], src6: [], tagged: true }],
  defaultMark: 0x1f00,
  dnsPort: null,
  localDns: null,
  proxy: null,
  encryptedDns: null,
};
const SETS = tagSetNames(plan.rules[0]!);

interface Answer {
  at: number;
  addresses: string[];
}

function workload(seed: number, octet: number): Answer[] {
  const r = rng(seed);
  const out: Answer[] = [];
  let n = 0;
  for (let i = 0; i < ANSWERS; i++) {
    const k = 1 + Math.floor(r() * 8);
    const addresses: string[] = [];
    for (let j = 0; j < k; j++, n++) addresses.push(`10.${octet}.${(n >> 8) & 255}.${n & 255}`);
    out.push({ at: r() * SPREAD_MS, addresses });
  }
  return out.sort((a, b) => a.at - b.at);
}

async function drive(answers: Answer[], install: (a: Answer) => Promise<void>): Promise<number[]> {
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    answers.map(
      (a) =>
        new Promise<void>((resolve, reject) => {
          setTimeout(() => {
            const s = performance.now();
            install(a).then(() => {
              lat.push(performance.now() - s);
              resolve();
            }, reject);
          }, Math.max(0, a.at - (performance.now() - t0)));
        }),
    ),
  );
  return lat.sort((x, y) => x - y);
}

function spawnAdd(a: Answer): Promise<void> {
  const line = `add element inet splitwan ${SETS.v4} { ${a.addresses.map((x) => `${x} timeout 600s`).join(', ')} }`;
  return new Promise((resolve, reject) => {
    const c = spawn('nft', [line], { stdio: 'ignore' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nft exit ${code}`))));
    c.on('error', reject);
  });
}

function count(): number {
  const j = JSON.parse(execFileSync('nft', ['-j', 'list', 'set', 'inet', 'splitwan', SETS.v4], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { nftables: { set?: { elem?: unknown[] } }[] };
  return j.nftables.find((o) => o.set)?.set?.elem?.length ?? 0;
}

const INSIDE = 'SPLITWAN_BENCH_TAG_INSIDE';

/** The tagger over `nft` (libnftables or nft -i): latencies of `work` after a warm-up on other addresses. */
async function measureTagger(nft: ReturnType<typeof openNft>, work: Answer[], warmOctet: number): Promise<{ lat: number[]; transactions: number; warmAddrs: number }> {
  const tagger = new NftTagger(nft, systemClock);
  await nft.exec('list tables'); // ready before the measurement
  // A daemon is long-running: warm the code path up (JIT) before measuring, on other addresses.
  const warm = workload(3 + warmOctet, warmOctet).slice(0, 200);
  await drive(warm, (a) => tagger.tag(SETS, a.addresses, 600_000));
  tagger.transactions = 0;
  const lat = await drive(work, (a) => tagger.tag(SETS, a.addresses, 600_000));
  return { lat, transactions: tagger.transactions, warmAddrs: warm.reduce((n, a) => n + a.addresses.length, 0) };
}

/** In the namespace: every measurement; the result on the last line. */
async function inside(): Promise<void> {
  const lib = openNft(silentLogger);
  const libName = lib instanceof NftSession ? 'nft -i (libnftables missing)' : 'libnftables';
  const libWork = workload(1, 1);
  const ours = await measureTagger(lib, libWork, 3);
  lib.close();
  const afterLib = count();
  const session = new NftSession(silentLogger, ['nft', '-i']);
  const fbWork = workload(4, 4);
  const fallback = await measureTagger(session, fbWork, 5);
  session.close();
  const afterFallback = count();
  const peerWork = workload(2, 2);
  const peer = await drive(peerWork, (a) => spawnAdd(a));
  const afterPeer = count();
  const n = (w: Answer[]): number => w.reduce((k, a) => k + a.addresses.length, 0);
  const installedOk = afterLib === n(libWork) + ours.warmAddrs && afterFallback === afterLib + n(fbWork) + fallback.warmAddrs && afterPeer === afterFallback + n(peerWork);
  process.stdout.write(JSON.stringify({ libName, ours, fallback, peer, addresses: n(libWork), installedOk }) + '\n');
}

export async function run(): Promise<Record<string, number>> {
  if (process.env[INSIDE]) {
    await inside();
    return {};
  }
  if (process.getuid?.() !== 0) throw new Error('the tag benchmark needs root (it creates a network namespace)');
  const ns = `sw-bt-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['link', 'add', 'wan0', 'netns', ns, 'type', 'veth', 'peer', 'name', 'wan0-p', 'netns', ns]);
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: renderRuleset(plan) });
    const child = spawnSync('ip', ['netns', 'exec', ns, process.execPath, join(import.meta.dirname, 'run.js'), 'tag'], {
      encoding: 'utf8',
      env: { ...process.env, [INSIDE]: '1' },
      maxBuffer: 64 << 20,
      timeout: 300_000,
    });
    if (child.status !== 0) throw new Error(`the measuring process failed (${child.status ?? child.signal}): ${child.stderr.trim().slice(-800)}`);
    const r = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as {
      libName: string;
      ours: { lat: number[]; transactions: number };
      fallback: { lat: number[]; transactions: number };
      peer: number[];
      addresses: number;
      installedOk: boolean;
    };
    const ours = r.ours.lat;
    const fb = r.fallback.lat;
    const peer = r.peer;
    const oursAddrs = r.addresses;
    const out = {
      answers: ANSWERS,
      addresses: oursAddrs,
      p50_ms: +percentile(ours, 50).toFixed(2),
      p99_ms: +percentile(ours, 99).toFixed(2),
      max_ms: +ours[ours.length - 1]!.toFixed(2),
      transactions: r.ours.transactions,
      fallback_p50_ms: +percentile(fb, 50).toFixed(2),
      fallback_p99_ms: +percentile(fb, 99).toFixed(2),
      fallback_transactions: r.fallback.transactions,
      spawn_p50_ms: +percentile(peer, 50).toFixed(2),
      spawn_p99_ms: +percentile(peer, 99).toFixed(2),
      ratio_p50_vs_spawn: +(percentile(peer, 50) / percentile(ours, 50)).toFixed(2),
      ratio_p99_vs_spawn: +(percentile(peer, 99) / percentile(ours, 99)).toFixed(2),
      installed_ok: r.installedOk ? 1 : 0,
      goal_p99_ms: 2,
      goal_ratio: 3,
    };
    process.stdout.write(
      [
        `${ANSWERS} answers (${oursAddrs} addresses) over ${SPREAD_MS} ms, answer → kernel-installed:`,
        `splitwan tagger (${r.libName}, as the daemon runs it): p50 ${out.p50_ms} ms, p99 ${out.p99_ms} ms, max ${out.max_ms} ms in ${out.transactions} transactions (goal p99 <= 2 ms)`,
        `its fallback (nft -i):             p50 ${out.fallback_p50_ms} ms, p99 ${out.fallback_p99_ms} ms in ${out.fallback_transactions} transactions`,
        `spawn nft per answer (peer):         p50 ${out.spawn_p50_ms} ms, p99 ${out.spawn_p99_ms} ms`,
        `ratio: ${out.ratio_p50_vs_spawn}x at p50, ${out.ratio_p99_vs_spawn}x at p99 (goal >= 3x); all installed: ${out.installed_ok ? 'yes' : 'NO'}`,
        JSON.stringify(out),
      ].join('\n') + '\n',
    );
    return out;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}
