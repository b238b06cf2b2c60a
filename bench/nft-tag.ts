// Cost of one tag transaction (addresses into a tag set, with a timeout),
// through every way splitwan has of sending it, into splitwan's table and
// into a tiny peer table beside it (what dnsmasq --nftset writes to in
// `bench dns`):
//
//   [sw-nt<pid>]  node (this file, child) ──libnftables / nfnetlink──▶ table inet splitwan  (as bench dns renders it; tag4 holds PREFILL addresses)
//                                                                  └─▶ table inet sw_bench_peer (one set; PREFILL addresses)
//
// Each variant runs N transactions one after the other (each awaited) and
// reports wall time per transaction (p50, p99, max) and the CPU the process
// spent (all its threads: libuv's pool runs libnftables) per transaction:
// libnftables lines (from the pool, as before; inline; without timeouts; as
// JSON; 8 addresses a line) and netlink batches (inline, as the daemon now
// sends them; from the pool; 8 addresses a batch).
// Then the tagger itself, as the daemon runs it, at a paced rate of one
// address every 1/RATE s: per-tag latency, transactions, CPU per tag.
// libnftables acts in the namespace of its process, so the measuring runs
// in a child started inside a namespace this script creates (needs root);
// the namespace is removed in `finally`. Bounded: N (NT_N, 2000) per
// variant, each variant at most 10 s; NT_LISTS=k adds a rule of k CIDRs (a
// list) to the ruleset; NT_PREFILL (100000) addresses in each set first.
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import koffi from 'koffi';
import { loadConfig } from '../config/load.js';
import { silentLogger, systemClock } from '../lib/logger.js';
import { LibNft, NetlinkElements } from '../daemon/dataplane/libnft-linux.js';
import type { ElementChanges, NftExec } from '../daemon/dataplane/nft-session-linux.js';
import { planDataplane, renderRuleset, tagSetNames } from '../daemon/dataplane/plan.js';
import { NftTagger } from '../daemon/dataplane/tagger.js';
import { percentile } from './rng.js';

const INSIDE = 'SPLITWAN_BENCH_NFT_TAG_INSIDE';
const N = Number(process.env.NT_N ?? 2000);
const PREFILL = Number(process.env.NT_PREFILL ?? 100_000);
const LISTS = Number(process.env.NT_LISTS ?? 0);
const VARIANT_MS = 10_000;
const RATE = 2000;
const TAGGER_SECONDS = 2;
const PEER_TABLE = 'sw_bench_peer';
const PEER_SET = 'tag4';

interface Variant {
  name: string;
  table: 'splitwan' | 'peer';
  /** Addresses per transaction. */
  per: number;
  n: number;
  wallUs: { p50: number; p99: number; max: number; mean: number };
  cpuUs: number;
  cpuUsPerAddress: number;
}

interface TaggerRun {
  name: string;
  tags: number;
  transactions: number;
  latencyMs: { p50: number; p99: number; max: number };
  cpuUsPerTag: number;
}

interface Inside {
  variants: Variant[];
  tagger: TaggerRun[];
  installed: { splitwan: number; peer: number; expectedSplitwan: number; expectedPeer: number };
}

/** The k-th address of block `b` (each variant its own block, never prefilled ones). */
const addr = (b: number, k: number): string => `10.${b}.${(k >> 8) & 255}.${k & 255}`;

function count(table: string, set: string): number {
  const out = execFileSync('nft', ['-j', 'list', 'set', 'inet', table, set], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const j = JSON.parse(out) as { nftables: { set?: { elem?: unknown[] } }[] };
  return j.nftables.find((o) => o.set)?.set?.elem?.length ?? 0;
}

/** In the namespace: every measurement; the result as the last line. */
async function inside(): Promise<void> {
  const sets = JSON.parse(process.env.NT_SETS ?? '{}') as { v4: string };
  const where = { splitwan: { table: 'splitwan', set: sets.v4 }, peer: { table: PEER_TABLE, set: PEER_SET } } as const;
  const lib = koffi.load('libnftables.so.1');
  const ctxNew = lib.func('void *nft_ctx_new(uint32_t flags)');
  const bufferOutput = lib.func('int nft_ctx_buffer_output(void *ctx)');
  const bufferError = lib.func('int nft_ctx_buffer_error(void *ctx)');
  const outputFlags = lib.func('unsigned int nft_ctx_output_set_flags(void *ctx, unsigned int flags)');
  const runCmd = lib.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)');
  const getError = lib.func('const char *nft_ctx_get_error_buffer(void *ctx)');
  const newCtx = (json: boolean): unknown => {
    const c = ctxNew(0);
    bufferOutput(c);
    bufferError(c);
    if (json) outputFlags(c, 1 << 4); // NFT_CTX_OUTPUT_JSON: the input is tried as JSON first
    return c;
  };
  const textCtx = newCtx(false);
  const jsonCtx = newCtx(true);
  const syncRun = (ctx: unknown, cmd: string): void => {
    if (runCmd(ctx, cmd) !== 0) throw new Error(String(getError(ctx)));
  };

  const lines = new LibNft(silentLogger, { netlink: false });
  const fast = new LibNft(silentLogger);
  const fastPool = NetlinkElements.open(silentLogger, { sync: false });
  if (fastPool === null) throw new Error('no netlink socket');
  await lines.exec('list tables');

  const variants: Variant[] = [];
  let block = 100;
  const expected = { splitwan: 0, peer: 0 };
  type Send = (table: 'splitwan' | 'peer', as: string[]) => Promise<void> | void;
  const line = (table: 'splitwan' | 'peer', as: string[], timeout = true): string =>
    `add element inet ${where[table].table} ${where[table].set} { ${as.map((a) => (timeout ? `${a} timeout 600s` : a)).join(', ')} }`;
  const changes = (table: 'splitwan' | 'peer', as: string[]): ElementChanges => ({
    table: where[table].table,
    deletes: new Map(),
    adds: new Map([[where[table].set, as.map((address) => ({ address, timeoutS: 600 }))]]),
  });
  const json = (table: 'splitwan' | 'peer', as: string[]): string =>
    JSON.stringify({ nftables: [{ add: { element: { family: 'inet', table: where[table].table, name: where[table].set, elem: as.map((val) => ({ elem: { val, timeout: 600 } })) } } }] });

  const measure = async (name: string, table: 'splitwan' | 'peer', per: number, send: Send): Promise<void> => {
    const b = block++;
    // Warm-up (JIT, allocator) on addresses of their own.
    for (let i = 0; i < 50; i++) await send(table, Array.from({ length: per }, (_, j) => addr(b, 60_000 + i * per + j)));
    expected[table] += 50 * per;
    const wall: number[] = [];
    const c0 = process.cpuUsage();
    const end = performance.now() + VARIANT_MS;
    let k = 0;
    for (let i = 0; i < N && performance.now() < end; i++) {
      const as = Array.from({ length: per }, () => addr(b, k++));
      const t = performance.now();
      await send(table, as);
      wall.push((performance.now() - t) * 1000);
    }
    const cpu = process.cpuUsage(c0);
    expected[table] += k;
    wall.sort((x, y) => x - y);
    const cpuUs = (cpu.user + cpu.system) / wall.length;
    const v: Variant = {
      name,
      table,
      per,
      n: wall.length,
      wallUs: { p50: percentile(wall, 50), p99: percentile(wall, 99), max: wall[wall.length - 1]!, mean: wall.reduce((x, y) => x + y, 0) / wall.length },
      cpuUs,
      cpuUsPerAddress: cpuUs / per,
    };
    variants.push(v);
    process.stderr.write(`${name.padEnd(44)} ${table.padEnd(8)} x${per}: p50 ${v.wallUs.p50.toFixed(0)} us, CPU ${cpuUs.toFixed(0)} us/transaction\n`);
  };

  for (const table of ['splitwan', 'peer'] as const) {
    await measure('libnftables line (before: the daemon\'s path)', table, 1, (t, as) => lines.exec(line(t, as)));
    await measure('libnftables line, sync (no pool hop)', table, 1, (t, as) => syncRun(textCtx, line(t, as)));
    await measure('netlink batch (after: the daemon\'s path)', table, 1, (t, as) => fast.elements(changes(t, as)));
    await measure('netlink batch, sent from the pool', table, 1, (t, as) => fastPool.apply(changes(t, as)));
  }
  await measure('libnftables line, no timeout', 'splitwan', 1, (t, as) => syncRun(textCtx, line(t, as, false)));
  await measure('libnftables JSON, sync', 'splitwan', 1, (t, as) => syncRun(jsonCtx, json(t, as)));
  await measure('libnftables line, 8 addresses', 'splitwan', 8, (t, as) => lines.exec(line(t, as)));
  await measure('netlink batch, 8 addresses', 'splitwan', 8, (t, as) => fast.elements(changes(t, as)));

  // The tagger as the daemon runs it, at a paced rate: one new address every 1/RATE s.
  const tagger: TaggerRun[] = [];
  const paced = async (name: string, nft: NftExec): Promise<void> => {
    const t = new NftTagger(nft, systemClock);
    const b = block++;
    const tags = RATE * TAGGER_SECONDS;
    const lat: number[] = [];
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      let sent = 0;
      let done = 0;
      const tick = (): void => {
        // As many as are due (timers are coarse): arrivals at RATE, each waited for alone.
        const due = Math.min(tags, Math.floor(((performance.now() - t0) * RATE) / 1000) + 1);
        for (; sent < due; sent++) {
          const s = performance.now();
          t.tag({ v4: where.splitwan.set, v6: 'unused' }, [addr(b, sent)], 600_000).then(() => {
            lat.push(performance.now() - s);
            if (++done === tags) resolve();
          }, reject);
        }
        if (sent < tags) setTimeout(tick, 0);
      };
      tick();
    });
    const cpu = process.cpuUsage(c0);
    expected.splitwan += tags;
    lat.sort((x, y) => x - y);
    tagger.push({
      name,
      tags,
      transactions: t.transactions,
      latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1]! },
      cpuUsPerTag: (cpu.user + cpu.system) / tags,
    });
  };
  await paced('tagger over libnftables lines (before)', lines);
  await paced('tagger over netlink batches (after)', fast);
  await paced('tagger over netlink batches, from the pool', { exec: (l) => lines.exec(l), elements: (c) => fastPool.apply(c) });

  lines.close();
  fast.close();
  fastPool.close();
  const installed = { splitwan: count('splitwan', where.splitwan.set), peer: count(PEER_TABLE, PEER_SET), expectedSplitwan: PREFILL + expected.splitwan, expectedPeer: PREFILL + expected.peer };
  process.stdout.write(JSON.stringify({ variants, tagger, installed } satisfies Inside) + '\n');
}

export async function run(): Promise<Record<string, unknown>> {
  if (process.env[INSIDE]) {
    await inside();
    return {};
  }
  if (process.getuid?.() !== 0) throw new Error('the nft-tag benchmark needs root (it creates a network namespace)');
  const ns = `sw-nt${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-nft-tag-'));
  let created = false;
  try {
    // splitwan's table as `bench dns` renders it: host mode, one gateway, one rule tagged via breakout.
    const key = Buffer.from(generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' }).d!, 'base64url').toString('base64');
    writeFileSync(join(dir, 'gw.conf'), `[Interface]\nPrivateKey = ${key}\nAddress = 10.64.0.2/32\nDNS = 127.0.0.1\n\n[Peer]\nPublicKey = ${key}\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, ['mode: host', 'breakout: { interface: wan0, dns: ["127.0.0.1:5300"] }', 'tunnel:', '  gateways:', '    - { name: gw1, config: gw.conf }', 'default: tunnel',
      'rules:', '  - domains: [bench.test]', '    via: breakout', ''].join('\n'), { mode: 0o600 });
    const loaded = await loadConfig(cfg);
    const plan = planDataplane({ config: loaded.config, listCidrs: new Map(), wan: 'wan0', active: 'gw1', healthy: () => true, dnsPort: null });
    if (LISTS > 0) {
      // A list rule: its CIDRs become an anonymous interval set in the classify chain.
      const dst4 = Array.from({ length: LISTS }, (_, k) => `172.${16 + ((k >> 16) & 15)}.${(k >> 8) & 255}.${k & 255}/32`);
      plan.rules.push({ index: 1, id: 'list0000', mark: plan.rules[0]!.mark, dst4, dst6: [], src4: [], src6: [], tagged: true });
    }
    const sets = tagSetNames(plan.rules[0]!);
    execFileSync('ip', ['netns', 'add', ns]);
    created = true;
    const inNs = (argv: string[], input?: string): void => void execFileSync('ip', ['netns', 'exec', ns, ...argv], { input, maxBuffer: 64 << 20 });
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['link', 'add', 'wan0', 'netns', ns, 'type', 'veth', 'peer', 'name', 'wan0-p', 'netns', ns]);
    inNs(['nft', '-f', '-'], renderRuleset(plan));
    inNs(['nft', '-f', '-'], `table inet ${PEER_TABLE} {\n\tset ${PEER_SET} { type ipv4_addr; flags timeout; }\n}\n`);
    if (PREFILL > 0) {
      // As after `bench dns` filled its cache: the sets hold many addresses (10.1.x.x up; variants use 10.100.x.x up).
      const els = Array.from({ length: PREFILL }, (_, k) => `${addr(1 + (k >> 16), k & 0xffff)} timeout 3600s`).join(', ');
      inNs(['nft', '-f', '-'], `add element inet splitwan ${sets.v4} { ${els} }\nadd element inet ${PEER_TABLE} ${PEER_SET} { ${els} }\n`);
    }
    const child = spawnSync('ip', ['netns', 'exec', ns, process.execPath, join(import.meta.dirname, 'run.js'), 'nft-tag'], {
      encoding: 'utf8',
      env: { ...process.env, [INSIDE]: '1', NT_SETS: JSON.stringify(sets) },
      maxBuffer: 64 << 20,
      timeout: 300_000,
    });
    if (child.status !== 0) throw new Error(`the measuring process failed (${child.status ?? child.signal}): ${child.stderr.trim().slice(-800)}`);
    const r = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as Inside;
    const f0 = (x: number): string => x.toFixed(0).padStart(5);
    const say = (l: string): void => void process.stdout.write(l + '\n');
    say(`one transaction, awaited before the next (${N} per variant); sets hold ${PREFILL} addresses${LISTS ? `; plus a list rule of ${LISTS} CIDRs` : ''}; CPU = the whole process (libuv's pool too):`);
    for (const v of r.variants) {
      say(`  ${v.name.padEnd(46)} ${v.table.padEnd(8)} x${v.per}  wall p50 ${f0(v.wallUs.p50)} p99 ${f0(v.wallUs.p99)} max ${f0(v.wallUs.max)} us  CPU ${f0(v.cpuUs)} us/transaction, ${f0(v.cpuUsPerAddress)} us/address`);
    }
    say(`the tagger at ${RATE} new addresses/s for ${TAGGER_SECONDS} s (answer -> kernel holds it):`);
    for (const t of r.tagger) {
      say(`  ${t.name.padEnd(46)} p50 ${t.latencyMs.p50.toFixed(3)} p99 ${t.latencyMs.p99.toFixed(3)} max ${t.latencyMs.max.toFixed(3)} ms; ${t.transactions} transactions for ${t.tags} tags; CPU ${t.cpuUsPerTag.toFixed(0)} us/tag`);
    }
    const ok = r.installed.splitwan === r.installed.expectedSplitwan && r.installed.peer === r.installed.expectedPeer;
    say(`installed: splitwan ${r.installed.splitwan} of ${r.installed.expectedSplitwan}, peer ${r.installed.peer} of ${r.installed.expectedPeer}: ${ok ? 'ok' : 'MISMATCH'}`);
    const by = (name: string, table: string): Variant | undefined => r.variants.find((v) => v.name.startsWith(name) && v.table === table);
    const cpu = (name: string, table: string): number => +(by(name, table)?.cpuUs ?? NaN).toFixed(1);
    const out = {
      n: N,
      prefill: PREFILL,
      lists: LISTS,
      libnft_cpu_us: cpu('libnftables line (before', 'splitwan'),
      libnft_peer_cpu_us: cpu('libnftables line (before', 'peer'),
      libnft_sync_cpu_us: cpu('libnftables line, sync', 'splitwan'),
      netlink_cpu_us: cpu('netlink batch (after', 'splitwan'),
      netlink_peer_cpu_us: cpu('netlink batch (after', 'peer'),
      netlink_pool_cpu_us: cpu('netlink batch, sent from the pool', 'splitwan'),
      ratio_cpu: +(cpu('libnftables line (before', 'splitwan') / cpu('netlink batch (after', 'splitwan')).toFixed(2),
      tagger_before_p99_ms: +r.tagger[0]!.latencyMs.p99.toFixed(3),
      tagger_after_p99_ms: +r.tagger[1]!.latencyMs.p99.toFixed(3),
      tagger_before_cpu_us: +r.tagger[0]!.cpuUsPerTag.toFixed(1),
      tagger_after_cpu_us: +r.tagger[1]!.cpuUsPerTag.toFixed(1),
      tagger_pool_p99_ms: +r.tagger[2]!.latencyMs.p99.toFixed(3),
      tagger_pool_cpu_us: +r.tagger[2]!.cpuUsPerTag.toFixed(1),
      installed_ok: ok ? 1 : 0,
    };
    say(JSON.stringify(out));
    return out;
  } finally {
    if (created) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
}
