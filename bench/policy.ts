// Policy benchmark: 100k domains + 10k CIDRs through the real loader, then
// name lookups per second against a straightforward baseline (a Map probed
// with every suffix slice), compile time and the compiled policy's heap.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { compilePolicy, type Policy } from '../config/policy.js';
import { rng } from './rng.js';

const DOMAINS = 100_000;
const CIDRS = 10_000;
const QUERIES = 200_000;

// TLDs weighted roughly like the names in public block and routing lists.
const TLDS: [string, number][] = [
  ['com', 45], ['net', 8], ['org', 6], ['de', 5], ['ru', 5], ['cn', 5], ['io', 4], ['co.uk', 4],
  ['jp', 3], ['com.br', 3], ['fr', 3], ['xyz', 2], ['app', 2], ['dev', 2], ['me', 2], ['tv', 1],
];
const SYL = ['ka', 'lo', 'mi', 'net', 'stream', 'cdn', 'ra', 'zu', 'ex', 'pro', 'vid', 'eo', 'tel', 'go', 'ba', 'shop', 'ne', 'ti', 'ko', 'max'];
const SUBS = ['www', 'api', 'cdn', 'static', 'img', 'm', 'edge-3', 'media', 'login', 'v2'];

function pickTld(r: () => number): string {
  const total = TLDS.reduce((n, [, w]) => n + w, 0);
  let x = r() * total;
  for (const [t, w] of TLDS) if ((x -= w) < 0) return t;
  return 'com';
}

function word(r: () => number): string {
  let s = '';
  const n = 2 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) s += SYL[Math.floor(r() * SYL.length)]!;
  return s + (r() < 0.3 ? String(Math.floor(r() * 100)) : '');
}

function name(r: () => number): string {
  const base = `${word(r)}.${pickTld(r)}`;
  return r() < 0.2 ? `${SUBS[Math.floor(r() * SUBS.length)]}.${base}` : base;
}

interface Workload {
  dir: string;
  domains: string[];
  queries: string[];
  ips: string[];
}

export function makeWorkload(): Workload {
  const r = rng(42);
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-policy-'));
  const set = new Set<string>();
  while (set.size < DOMAINS) set.add(name(r));
  const domains = [...set];
  // Three lists of different sizes in different rules, as a real config has.
  const a = domains.slice(0, 60_000);
  const b = domains.slice(60_000, 99_000);
  const c = domains.slice(99_000);
  writeFileSync(join(dir, 'streaming.txt'), a.join('\n'));
  writeFileSync(join(dir, 'work.txt'), b.map((d, i) => (i % 10 === 0 ? `full:${d}` : d)).join('\n'));
  const cidrs: string[] = [];
  for (let i = 0; i < CIDRS; i++) {
    if (i % 10 === 0) cidrs.push(`2001:db8:${(i & 0xffff).toString(16)}::/48`);
    else cidrs.push(`${10 + Math.floor(r() * 200)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.0/${20 + Math.floor(r() * 5)}`);
  }
  writeFileSync(join(dir, 'cidrs.txt'), cidrs.join('\n'));
  const k = Buffer.alloc(32, 7).toString('base64');
  writeFileSync(
    join(dir, 'gw.conf'),
    `[Interface]\nPrivateKey = ${k}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${k}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`,
    { mode: 0o600 },
  );
  writeFileSync(
    join(dir, 'config.yaml'),
    [
      'mode: host',
      'tunnel: { gateways: [{ name: gw1, config: gw.conf }] }',
      'lists:',
      '  streaming: { file: streaming.txt }',
      '  work: { file: work.txt }',
      '  nets: { file: cidrs.txt }',
      'rules:',
      `  - domains: [${c.map((d) => JSON.stringify(d)).join(', ')}]`,
      '    via: block',
      '  - domains: ["keyword:tracker", "keyword:adserv", "regexp:^ad[0-9]+\\\\.", "*.internal.example"]',
      '    via: block',
      '  - list: streaming',
      '    via: breakout',
      '  - list: work',
      '    via: gw1',
      '  - list: nets',
      '    via: breakout',
    ].join('\n'),
  );
  const queries: string[] = [];
  for (let i = 0; i < QUERIES; i++) {
    if (r() < 0.5) {
      const d = domains[Math.floor(r() * domains.length)]!;
      const q = r() < 0.5 ? d : `${SUBS[Math.floor(r() * SUBS.length)]}.${d}`;
      queries.push(r() < 0.1 ? q.toUpperCase() : q);
    } else queries.push(`${word(r)}${r() < 0.5 ? '-x' : ''}.${pickTld(r)}`);
  }
  // The resolver decodes a name from the packet into one flat string; names
  // built here by concatenation are V8 cons-strings, slower to read, which
  // would measure this script rather than the lookup. Flatten them the way
  // the resolver makes them.
  for (let i = 0; i < queries.length; i++) queries[i] = Buffer.from(queries[i]!, 'latin1').toString('latin1');
  const ips: string[] = [];
  for (let i = 0; i < 10_000; i++) ips.push(`${10 + Math.floor(r() * 200)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`);
  return { dir, domains, queries, ips };
}

/** The baseline: a Map from domain to rule, probed with every suffix slice. */
export class SuffixMapBaseline {
  private readonly domain = new Map<string, number>();
  private readonly full = new Map<string, number>();
  constructor(loaded: LoadedConfig) {
    const add = (m: Map<string, number>, k: string, rule: number): void => {
      const cur = m.get(k);
      if (cur === undefined || rule < cur) m.set(k, rule);
    };
    for (const rule of loaded.config.rules) {
      for (const d of rule.domains) add(d.pattern.kind === 'full' ? this.full : this.domain, d.pattern.value, rule.index);
      for (const l of rule.lists) {
        for (const d of loaded.lists.get(l)!.domains) add(d.pattern.kind === 'full' ? this.full : this.domain, d.pattern.value, rule.index);
      }
    }
  }
  lookup(q: string): number {
    let n = q.toLowerCase();
    if (n.endsWith('.')) n = n.slice(0, -1);
    let best = this.full.get(n) ?? Infinity;
    let at = 0;
    for (;;) {
      const r = this.domain.get(at === 0 ? n : n.slice(at));
      if (r !== undefined && r < best) best = r;
      const dot = n.indexOf('.', at);
      if (dot < 0) break;
      at = dot + 1;
    }
    return best === Infinity ? -1 : best;
  }
}

function rate(fn: (q: string) => number, queries: string[], ms = 1000): { perSec: number; checksum: number } {
  let n = 0;
  let sum = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < queries.length; i++) sum += fn(queries[i]!);
    n += queries.length;
    t = performance.now();
  }
  return { perSec: n / ((t - t0) / 1000), checksum: sum };
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with node --expose-gc (npm run bench does)');
  g();
  g();
}

export async function run(): Promise<Record<string, number>> {
  const w = makeWorkload();
  try {
    const t0 = performance.now();
    const loaded = await loadConfig(join(w.dir, 'config.yaml'));
    const loadMs = performance.now() - t0;

    // Compile time: median of 5 compiles of the same parsed config and lists.
    const compileTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = performance.now();
      compilePolicy(loaded.config, loaded.lists);
      compileTimes.push(performance.now() - s);
    }
    compileTimes.sort((a, b) => a - b);
    const compileMs = compileTimes[2]!;

    // Typed arrays live outside the JS heap (arrayBuffers): count both.
    const used = (): number => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    gc();
    const before = used();
    const kept: Policy[] = [compilePolicy(loaded.config, loaded.lists)];
    gc();
    const heapMb = (used() - before) / 2 ** 20;

    const policy = kept[0]!;
    const base = new SuffixMapBaseline(loaded);
    // Both must agree on domain/full rules before their speed means anything.
    let disagree = 0;
    for (const q of w.queries.slice(0, 20_000)) {
      const a = policy.ruleForName(q);
      const b = base.lookup(q);
      if (a !== b && !(a === 1 || b === 1)) disagree++; // rule 1 is keywords/regexps, which the baseline lacks
    }
    if (disagree > 0) throw new Error(`policy and baseline disagree on ${disagree} names`);
    const hits = w.queries.filter((q) => policy.ruleForName(q) >= 0).length / w.queries.length;

    // Warm up both, then alternate rounds so machine noise hits both alike.
    rate((q) => policy.ruleForName(q), w.queries, 300);
    rate((q) => base.lookup(q), w.queries, 300);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < 5; i++) {
      ours.push(rate((q) => policy.ruleForName(q), w.queries).perSec);
      theirs.push(rate((q) => base.lookup(q), w.queries).perSec);
    }
    const med = (a: number[]): number => [...a].sort((x, y) => x - y)[2]!;
    const lookups = med(ours);
    const baseline = med(theirs);
    // The same names through a policy without the keyword/regexp rule: what
    // the suffix index alone costs, when a config has no such patterns early.
    const plainRules = loaded.config.rules.filter((r) => r.index !== 1).map((r, i) => ({ ...r, index: i }));
    const plain = compilePolicy({ rules: plainRules, default: loaded.config.default }, loaded.lists);
    rate((q) => plain.ruleForName(q), w.queries, 300);
    const plainRuns: number[] = [];
    for (let i = 0; i < 5; i++) plainRuns.push(rate((q) => plain.ruleForName(q), w.queries).perSec);
    const plainRate = med(plainRuns);
    const ipRate = rate((q) => policy.matchIp(q).rule ?? -1, w.ips, 500).perSec;

    const stats = policy.stats;
    const out = {
      domains: stats.domains,
      cidrs: stats.cidrs,
      load_ms: +loadMs.toFixed(1),
      compile_ms: +compileMs.toFixed(1),
      heap_mb: +heapMb.toFixed(1),
      lookups_per_s: Math.round(lookups),
      baseline_lookups_per_s: Math.round(baseline),
      lookups_no_patterns_per_s: Math.round(plainRate),
      // Same work on both sides: the baseline has no keyword/regexp matching.
      ratio_vs_baseline: +(plainRate / baseline).toFixed(2),
      hit_ratio: +hits.toFixed(3),
      ip_lookups_per_s: Math.round(ipRate),
      goal_compile_ms: 300,
      goal_lookups_per_s: 3_000_000,
      goal_heap_mb: 40,
    };
    process.stdout.write(
      [
        `policy: ${stats.domains} names, ${stats.keywords} keywords, ${stats.regexps} regexps, ${stats.cidrs} cidrs in ${stats.rules} rules`,
        `load (parse YAML, read and parse lists): ${out.load_ms} ms`,
        `compile: ${out.compile_ms} ms (goal < 300)`,
        `compiled policy heap: ${out.heap_mb} MB (goal < 40)`,
        `name lookups, all rules (2 keywords + 1 regexp in rule 1): ${(lookups / 1e6).toFixed(2)} M/s (goal >= 3 M/s; hits ${(hits * 100).toFixed(0)}%)`,
        `name lookups, suffix rules only: ${(plainRate / 1e6).toFixed(2)} M/s vs baseline suffix-Map ${(baseline / 1e6).toFixed(2)} M/s: ratio ${out.ratio_vs_baseline}x`,
        `ip lookups: ${(ipRate / 1e6).toFixed(2)} M/s`,
        JSON.stringify(out),
      ].join('\n') + '\n',
    );
    return out;
  } finally {
    rmSync(w.dir, { recursive: true, force: true });
  }
}
