// DNS benchmark: splitwan's resolver side by side with dnsmasq as a caching
// forwarder, both in front of the same upstream, in the same run, on loopback.
//
//   dnsperf ──▶ splitwan (own process: Resolver + DnsServer, cache 150k) ──┐  tags: libnftables → inet splitwan tag4_<rule>
//           ──▶ dnsmasq  (--server=upstream, --cache-size=150000)       ──┤
//           ──▶ dnsmasq  (the same plus --nftset: misses only)          ──┼──▶ upstream dnsmasq (--addn-hosts: every
//           ──▶ (misses only: the baseline) ─────────────────────────────┘     bench name its own address, TTL 3600)
//           ──▶ node-echo (hits only: one dgram socket, a fixed answer, no DNS logic: what Node's dgram alone costs, the transport splitwan left for recvmmsg)
//
// As root, everything runs in a network namespace this script creates
// (sw-bd<pid>) and removes, with splitwan's nftables table as the daemon
// renders it, and splitwan tags every answer of the bench zone into the kernel
// with the real NftTagger (libnftables in-process, else `nft -i`) before
// answering, as the daemon does.
// Without root nothing is tagged, and the output says so loudly (BD_TAG=0
// forces that as root, to see the tagger's share).
//
// The bench zone is split into TAG_LISTS sub-zones (l0.bench.test, ...), one
// rule each, so splitwan's ~115k names land in TAG_LISTS sets of ~29k: the
// daemon bounds a tag set at TAG_SET_LIMIT (daemon/dataplane/tag-bounds.ts)
// and answers SERVFAIL past it, which would turn this bench's figures into
// ones about refusals. dnsmasq --nftset gets the same split (one set per
// sub-zone, the same names in each). The bench FAILS (throws: non-zero exit)
// if any set filled up (splitwan's tagger refused an answer), any answer of
// any side was SERVFAIL, or a check failed; the figures and the JSON line are
// printed first, with `ok: false`.
//
// Figures, in this order:
//  3. memory: VmRSS of splitwan and dnsmasq with 100k names cached (filled
//     first at FILL_QPS, so the other figures run against a full cache);
//  1. cache hits: 1000 names warmed, then dnsperf for HIT_SECONDS against each
//     side in turn, ROUNDS rounds in rotating order; the median queries/s, and
//     the CPU each server spent per answer (from /proc: noise-free);
//  2. misses: never-asked names at a bounded rate (dnsperf -v gives each
//     query's latency) against the upstream itself (the baseline), splitwan,
//     dnsmasq and dnsmasq --nftset; added p50/p99 = that side's minus the
//     upstream's in the same round, median over MISS_ROUNDS; at MISS_QPS
//     (loaded: the headline) and at MISS_LOW_QPS (unloaded: per-query cost).
//
// The servers (with their helpers: splitwan's nft -i when it falls back) are pinned to the last
// CPU and dnsperf to the others when there are two or more (BD_PIN=0: not),
// so the client never steals the server's core. BD_PROF=DIR writes CPU
// profiles of splitwan's hit and miss rounds and a heap snapshot at 100k names
// into DIR (the profiler costs throughput: that run's figures do not count).
// Other knobs: BD_TAG_LISTS (4: rules, tag sets, the names are spread over), BD_ROUNDS (3), BD_HIT_SECONDS (5), BD_CLIENTS (8), BD_OUTSTANDING (100),
// BD_NODE_FLAGS (more Node flags for splitwan's process, e.g. GC settings to try).
// About 2 minutes; everything it starts is stopped by pid, the namespace and
// the temporary directory are removed in `finally`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpuMs as ownCpuMs, procs, Proc, rssByKind, rssMb, sleep } from './proc.js';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config/load.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../daemon/runtime-settings.js';
import { planDataplane, renderRuleset, tagSetNames } from '../daemon/dataplane/plan.js';
import { TAG_SET_LIMIT } from '../daemon/dataplane/tag-bounds.js';
import { percentile } from './rng.js';

/** GC pauses by kind and the event loop's lateness in splitwan's process (bench/dns-server-child.ts). */
interface ChildPauses {
  gc: Record<string, { count: number; totalMs: number; maxMs: number }>;
  loopMaxMs: number;
  loopP99Ms: number;
}
const emptyPauses = (): ChildPauses => ({ gc: {}, loopMaxMs: 0, loopP99Ms: 0 });
/** Adds one run's pauses to a total: counts and times add up, maxima (and the p99, conservatively) take the larger. */
function addPauses(into: ChildPauses, p: ChildPauses): void {
  for (const [kind, g] of Object.entries(p.gc)) {
    const k = (into.gc[kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
    k.count += g.count;
    k.totalMs += g.totalMs;
    k.maxMs = Math.max(k.maxMs, g.maxMs);
  }
  into.loopMaxMs = Math.max(into.loopMaxMs, p.loopMaxMs);
  into.loopP99Ms = Math.max(into.loopP99Ms, p.loopP99Ms);
}
function describePauses(p: ChildPauses): string {
  const gc = Object.entries(p.gc).map(([kind, g]) => `${kind} ${g.count}× (${g.totalMs.toFixed(1)} ms, longest ${g.maxMs.toFixed(1)} ms)`);
  return `GC ${gc.length ? gc.join(', ') : 'none'}; event loop late by up to ${p.loopMaxMs.toFixed(1)} ms (p99 ${p.loopP99Ms.toFixed(1)} ms)`;
}

const ROUNDS = Number(process.env.BD_ROUNDS ?? 3);
const HIT_SECONDS = Number(process.env.BD_HIT_SECONDS ?? 5);
const HIT_NAMES = 1000;
// More outstanding queries make dnsmasq drop some (its socket buffer), and a
// lost query holds its slot for dnsperf's timeout: dnsmasq would look slower.
const HIT_CLIENTS = Number(process.env.BD_CLIENTS ?? 8);
const HIT_OUTSTANDING = Number(process.env.BD_OUTSTANDING ?? 100);
const MISS_ROUNDS = 2;
/** BD_NODE_FLAGS: more Node flags for splitwan's process, after the daemon's (to try GC settings). */
const EXTRA_NODE_FLAGS = (process.env.BD_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
const MISS_QPS = 2000;
const MISS_SECONDS = 3;
const MISS_LOW_QPS = 500;
const MISS_LOW_SECONDS = 2;
const FILL = 100_000;
const FILL_QPS = 10_000;
const CACHE_SIZE = 150_000;
const GOAL_RATIO = 1.5;
const GOAL_RSS_MB = 150;
const ZONE = 'bench.test';
/** Rules (sub-zones, each its own tag set) the names are spread over: ~29k names a set, well under TAG_SET_LIMIT. */
const TAG_LISTS = Number(process.env.BD_TAG_LISTS ?? 4);
/** The most names one set may be given: a set near the bound would make the figures about refusals. */
const MAX_NAMES_PER_SET = Math.floor(TAG_SET_LIMIT * 0.75);
const PEER_TABLE = 'sw_bench_peer';

interface Result { code: number; stdout: string; stderr: string }

const shortLived = new Set<ChildProcess>(); // dnsperf, dig, nft in flight: killed by pid on cleanup
function sh(argv: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    shortLived.add(c);
    const out: Buffer[] = [];
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), o.timeoutMs ?? 10_000);
    c.on('error', (e) => (stderr += e.message));
    c.on('close', (code) => (clearTimeout(timer), shortLived.delete(c), resolve({ code: code ?? 128, stdout: Buffer.concat(out).toString('utf8'), stderr })));
    c.stdin.on('error', () => undefined);
    c.stdin.end(o.input ?? '');
  });
}
async function must(argv: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  const r = await sh(argv, o);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`);
  return r;
}


function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.once('error', reject);
  });
}

/** A process's live children (splitwan's `nft -i`, if it fell back to it). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try { out.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)); } catch { /* thread gone */ }
  }
  return out;
}

/** CPU time of a process's live children, ms. */
function childrenCpuMs(pid: number): number {
  let n = 0;
  for (const k of childPids(pid)) try { n += ownCpuMs(k); } catch { /* gone */ }
  return n;
}

/** Name k's address in the upstream's hosts file: every name its own. */
const addressOf = (k: number) => `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;

interface Perf {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  noerror: number;
  /** Answers with rcode SERVFAIL: any is a failure of the bench (a full tag set, a lost upstream). */
  servfail: number;
  /** Per query, ms (verbose runs only), sorted. */
  latencies: number[];
  /** CPU the server (and its children) used meanwhile, ms. */
  cpu: number;
  /** Of which its children (splitwan's nft -i, if any), ms. */
  childCpu: number;
  /** CPU dnsperf itself used, ms: near its run time, the client was the limit. */
  clientCpu: number;
  /** How long dnsperf ran, ms. */
  wallMs: number;
}

/** CPU of this process's waited-for children (cutime + cstime), ms: dnsperf's, once it has exited. */
function reapedChildrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on: 16, 17 are cutime, cstime
  return (Number(f[13]) + Number(f[14])) * 10;
}

function parsePerf(out: string): Perf {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m) throw new Error(`dnsperf output lacks ${re.source}: ${out.slice(-600)}`);
    return Number(m[1]);
  };
  const latencies: number[] = [];
  for (const m of out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)) latencies.push(Number(m[1]) * 1000);
  return {
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    qps: num(/Queries per second:\s+([\d.]+)/),
    noerror: Number(/Response codes:.*?NOERROR (\d+)/.exec(out)?.[1] ?? 0),
    servfail: Number(/Response codes:.*?SERVFAIL (\d+)/.exec(out)?.[1] ?? 0),
    latencies: latencies.sort((a, b) => a - b),
    cpu: 0,
    childCpu: 0,
    clientCpu: 0,
    wallMs: 0,
  };
}

const median = (a: readonly number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
const r0 = (x: number) => Math.round(x);
const r1 = (x: number) => +x.toFixed(1);
const r3 = (x: number) => +x.toFixed(3);

type Target = 'upstream' | 'splitwan' | 'dnsmasq' | 'dnsmasq-nftset';
/** splitwan-nolog: the same splitwan process with its query log turned off for that run (IPC 'qlog'). */
type Side = 'splitwan' | 'splitwan-nolog' | 'dnsmasq' | 'echo';
interface ChildStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  arrayBuffers: number;
  cacheEntries: number;
  tagTransactions: number;
  /** Answers the tagger refused because their set was full (the daemon's splitwan_tag_set_full_total). */
  tagSetFull: number;
  resolver: { hits: number; misses: number; servfail: number };
}
interface MissFigure { p50: number; p99: number; added50: number; added99: number; cpuUs: number; childCpuUs: number; lost: number; notNoerror: number }

export async function run(): Promise<Record<string, unknown>> {
  const root = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0 && spawnSync('nft', ['--version']).status === 0;
  const ns = root ? `sw-bd${process.pid}` : null;
  const tagged = ns !== null && process.env.BD_TAG !== '0';
  const inNs = (argv: readonly string[]) => (ns ? ['ip', 'netns', 'exec', ns, ...argv] : [...argv]);
  const nCpu = cpus().length;
  const pin = process.env.BD_PIN !== '0' && nCpu >= 2 && spawnSync('taskset', ['-V']).status === 0;
  const serverCpu = String(nCpu - 1);
  const clientCpus = nCpu > 2 ? `0-${nCpu - 2}` : '0';
  const onServerCpu = (argv: readonly string[]) => (pin ? ['taskset', '-c', serverCpu, ...argv] : [...argv]);
  const onClientCpu = (argv: readonly string[]) => (pin ? ['taskset', '-c', clientCpus, ...argv] : [...argv]);
  const profileDir = process.env.BD_PROF;
  const asRoot = process.getuid?.() === 0 ? ['--user=root'] : [];

  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-dns-'));
  let nsCreated = false;
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of shortLived) c.kill('SIGKILL');
      await Promise.all([...procs].map((p) => p.stop(3000)));
      if (nsCreated) spawnSync('ip', ['netns', 'del', ns!]);
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (sig: NodeJS.Signals) => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const say = (l: string) => void process.stdout.write(l + '\n');
  const t0 = Date.now();

  try {
    if (!tagged) say(`!!! UNTAGGED: ${ns ? 'BD_TAG=0' : 'not root (or no ip netns / nft)'}: splitwan runs without its kernel tagger; its miss figures leave tagging out !!!`);

    // Names: the k-th name has the k-th address. Hit names, fill names, then miss names per rate, round and target.
    // The i-th name of each kind goes to sub-zone (rule, tag set) i % TAG_LISTS: every kind spread evenly,
    // each side's miss names split alike.
    const all: string[] = [];
    const add = (names: string[]) => (all.push(...names), names);
    const subZone = (l: number) => `l${l}.${ZONE}`;
    const range = (n: number, label: (i: number) => string) => add(Array.from({ length: n }, (_, i) => `${label(i)}.${subZone(i % TAG_LISTS)}`));
    const listOf = (name: string): number => Number(/\.l(\d+)\.[^.]+\.[^.]+$/.exec(name)![1]);
    const hitNames = range(HIT_NAMES, (i) => `h${i}`);
    const fillNames = range(FILL, (i) => `f${i}`);
    const targets: Target[] = ['upstream', 'splitwan', 'dnsmasq', ...(ns ? (['dnsmasq-nftset'] as const) : [])];
    const rates = [
      { label: 'loaded', qps: MISS_QPS, seconds: MISS_SECONDS },
      { label: 'unloaded', qps: MISS_LOW_QPS, seconds: MISS_LOW_SECONDS },
    ].map((r) => ({
      ...r,
      names: Array.from({ length: MISS_ROUNDS }, (_, k) =>
        Object.fromEntries(targets.map((t) => [t, range(r.qps * r.seconds, (i) => `m${r.qps}-${k}-${t.replace('-', '')}-${i}`)])) as Record<Target, string[]>),
    }));
    const readyName = range(1, () => 'ready')[0]!;
    // Before anything starts: no set may be given near TAG_SET_LIMIT names (every name has its own address).
    const perList = new Array<number>(TAG_LISTS).fill(0);
    for (const n of [...hitNames, ...fillNames, ...rates.flatMap((r) => r.names.flatMap((byTarget) => byTarget.splitwan)), readyName]) perList[listOf(n)]!++;
    if (Math.max(...perList) > MAX_NAMES_PER_SET) {
      throw new Error(`bench dns: ${Math.max(...perList)} names would go to one tag set (per set: ${perList.join(', ')}), over ${MAX_NAMES_PER_SET} (3/4 of TAG_SET_LIMIT ${TAG_SET_LIMIT}): raise TAG_LISTS (BD_TAG_LISTS)`);
    }
    const addressOfName = new Map(all.map((n, k) => [n, addressOf(k + 1)]));
    writeFileSync(join(dir, 'hosts'), all.map((n, k) => `${addressOf(k + 1)} ${n}\n`).join(''));
    const fileOf = (name: string, names: readonly string[]) => {
      const f = join(dir, `${name}.txt`);
      writeFileSync(f, names.map((n) => `${n} A\n`).join(''));
      return f;
    };
    const hitFile = fileOf('hit', hitNames);
    const fillFile = fileOf('fill', fillNames);

    // splitwan's config: the bench zone goes via breakout, which is not the default path, so its answers are tagged.
    const key = Buffer.from(generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' }).d!, 'base64url').toString('base64');
    writeFileSync(join(dir, 'gw.conf'), `[Interface]\nPrivateKey = ${key}\nAddress = 10.64.0.2/32\nDNS = 127.0.0.1\n\n[Peer]\nPublicKey = ${key}\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
    const ports = ns
      ? { up: 5300, peer: 5301, splitwan: 5302, nftset: 5303, echo: 5304 }
      : { up: await freePort(), peer: await freePort(), splitwan: await freePort(), nftset: 0, echo: await freePort() };
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, ['mode: host', `breakout: { interface: wan0, dns: ["127.0.0.1:${ports.up}"] }`, 'tunnel:', '  gateways:', '    - { name: gw1, config: gw.conf }', 'default: tunnel',
      `dns: { cache: { size: ${CACHE_SIZE} } }`, 'rules:', ...Array.from({ length: TAG_LISTS }, (_, l) => [`  - domains: [${subZone(l)}]`, '    via: breakout']).flat(), ''].join('\n'), { mode: 0o600 });
    const loaded = await loadConfig(cfg);
    const plan = planDataplane({ config: loaded.config, listCidrs: new Map(), wan: 'wan0', active: 'gw1', healthy: () => true, dnsPort: null });
    if (plan.rules.length !== TAG_LISTS || !plan.rules.every((r) => r.tagged)) throw new Error(`bench dns: expected ${TAG_LISTS} tagged rules, the plan has ${plan.rules.length}`);
    /** Sub-zone l's set: its rule's (rules in config order), and the peer's own. */
    const sets = plan.rules.map((r) => tagSetNames(r).v4);
    const peerSets = Array.from({ length: TAG_LISTS }, (_, l) => `tag4_${l}`);

    if (ns) {
      await must(['ip', 'netns', 'add', ns]);
      nsCreated = true;
      await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await must(['ip', 'link', 'add', 'wan0', 'netns', ns, 'type', 'veth', 'peer', 'name', 'wan0-p', 'netns', ns]);
      // splitwan's table in both cases (the daemon has it whether or not it tags), the peer's set beside it.
      await must(inNs(['nft', '-f', '-']), { input: renderRuleset(plan) });
      await must(inNs(['nft', '-f', '-']), { input: `table inet ${PEER_TABLE} {\n${peerSets.map((n) => `\tset ${n} { type ipv4_addr; flags timeout; }\n`).join('')}}\n` });
    }

    const dig = (port: number, name: string) => sh(inNs(['dig', '+short', '+time=1', '+tries=1', '-p', String(port), '@127.0.0.1', name]), { timeoutMs: 3000 });
    const ready = async (p: Proc, port: number) => {
      const want = addressOfName.get(readyName)!;
      const end = Date.now() + 15_000;
      while ((await dig(port, readyName)).stdout.trim() !== want) {
        if (!p.running) throw new Error(`${p.name} exited (${p.exitCode}): ${p.tail.trim().slice(-600)}`);
        if (Date.now() > end) throw new Error(`${p.name} did not answer on port ${port} within 15 s: ${p.tail.trim().slice(-600)}`);
        await sleep(50);
      }
    };
    const ipcReady = (p: Proc) =>
      new Promise<void>((resolve, reject) => {
        p.child.on('message', (m: { type?: string }) => m.type === 'ready' && resolve());
        void p.exited.then(() => reject(new Error(`${p.name} exited (${p.exitCode}): ${p.tail.trim().slice(-800)}`)));
      });
    const dnsmasq = (name: string, port: number, extra: readonly string[], pinned: boolean) => {
      const argv = ['dnsmasq', '-k', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`, ...asRoot, '--pid-file=', '--log-facility=-', ...extra];
      return new Proc(name, inNs(pinned ? onServerCpu(argv) : argv));
    };

    // The upstream answers from its hosts file only; it is not pinned (it serves every side alike).
    const up = dnsmasq('upstream dnsmasq', ports.up, [`--addn-hosts=${join(dir, 'hosts')}`, '--local-ttl=3600', '--cache-size=0'], false);
    await ready(up, ports.up);
    const forwarding = [`--server=127.0.0.1#${ports.up}`, `--cache-size=${CACHE_SIZE}`, '--dns-forward-max=1000'];
    const peer = dnsmasq('dnsmasq', ports.peer, forwarding, true);
    const nftPeer = ns ? dnsmasq('dnsmasq --nftset', ports.nftset, [...forwarding, ...peerSets.map((n, l) => `--nftset=/${subZone(l)}/4#inet#${PEER_TABLE}#${n}`)], true) : null;
    // Started as the service files start the daemon (daemon/runtime-settings.ts: its memory settings).
    const sw = new Proc('splitwan', inNs(onServerCpu([process.execPath, ...DAEMON_NODE_FLAGS, ...EXTRA_NODE_FLAGS, '--expose-gc', join(import.meta.dirname, 'dns-server-child.js'),
      JSON.stringify({ config: cfg, port: ports.splitwan, tagged, profileDir })])), { ipc: true, env: { ...process.env, ...DAEMON_ENV } });
    const echo = new Proc('node-echo', inNs(onServerCpu([process.execPath, join(import.meta.dirname, 'dns-echo-child.js'), String(ports.echo)])), { ipc: true });
    await Promise.all([ipcReady(sw), ipcReady(echo)]);
    await Promise.all([ready(peer, ports.peer), ready(sw, ports.splitwan), ...(nftPeer ? [ready(nftPeer, ports.nftset)] : [])]);
    const portOf: Record<Target | Side, number> = { upstream: ports.up, splitwan: ports.splitwan, 'splitwan-nolog': ports.splitwan, dnsmasq: ports.peer, 'dnsmasq-nftset': ports.nftset, echo: ports.echo };
    const pidOf: Record<Target | Side, number> = { upstream: up.pid, splitwan: sw.pid, 'splitwan-nolog': sw.pid, dnsmasq: peer.pid, 'dnsmasq-nftset': nftPeer?.pid ?? 0, echo: echo.pid };
    /** The query log on for every side but splitwan-nolog (the daemon's default is on). */
    const qlog = (on: boolean) => sw.ask<{ on: boolean; written: number }>('qlog', 'qlog', 15_000, { on });
    say(`servers on 127.0.0.1${ns ? ` in netns ${ns}` : ''}: upstream :${ports.up}, splitwan :${ports.splitwan}, dnsmasq :${ports.peer}` +
      `${nftPeer ? `, dnsmasq --nftset :${ports.nftset}` : ''}, node-echo :${ports.echo}; ` + (pin ? `servers pinned to CPU ${serverCpu}, dnsperf to CPU ${clientCpus}` : 'nothing pinned'));

    /** SERVFAIL answers dnsperf saw, by the side's port. */
    const servfailByPort = new Map<number, number>();
    const dnsperf = async (port: number, file: string, o: { pid?: number; seconds?: number; runs?: number; qps?: number; clients?: number; outstanding?: number; verbose?: boolean }) => {
      const argv = ['dnsperf', '-s', '127.0.0.1', '-p', String(port), '-d', file, '-T', '1', '-c', String(o.clients ?? 1), '-q', String(o.outstanding ?? 100), '-t', '2',
        ...(o.seconds ? ['-l', String(o.seconds)] : []), ...(o.runs ? ['-n', String(o.runs)] : []), ...(o.qps ? ['-Q', String(o.qps)] : []), ...(o.verbose ? ['-v'] : [])];
      const own0 = o.pid ? ownCpuMs(o.pid) : 0;
      const kids0 = o.pid ? childrenCpuMs(o.pid) : 0;
      const client0 = reapedChildrenCpuMs();
      const t0 = Date.now();
      const r = await must(inNs(onClientCpu(argv)), { timeoutMs: ((o.seconds ?? 0) + 60) * 1000 });
      const p = parsePerf(r.stdout);
      p.wallMs = Date.now() - t0;
      p.clientCpu = reapedChildrenCpuMs() - client0;
      p.childCpu = o.pid ? childrenCpuMs(o.pid) - kids0 : 0;
      p.cpu = o.pid ? ownCpuMs(o.pid) - own0 + p.childCpu : 0;
      if (p.servfail > 0) servfailByPort.set(port, (servfailByPort.get(port) ?? 0) + p.servfail);
      return p;
    };
    /** CPU µs per answered query over some dnsperf runs. */
    const cpuUs = (ps: readonly Perf[], of: 'cpu' | 'childCpu' = 'cpu') => (ps.reduce((n, p) => n + p[of], 0) * 1000) / Math.max(1, ps.reduce((n, p) => n + p.completed, 0));
    const stats = (cmd = 'stats') => sw.ask<ChildStats>(cmd, 'stats');

    // 3, first: memory with 100k names cached.
    await sleep(500);
    const rssEmpty = { splitwan: rssMb(sw.pid), dnsmasq: rssMb(peer.pid) };
    const fill = {
      splitwan: await dnsperf(ports.splitwan, fillFile, { pid: sw.pid, runs: 1, qps: FILL_QPS, outstanding: 500 }),
      dnsmasq: await dnsperf(ports.peer, fillFile, { pid: peer.pid, runs: 1, qps: FILL_QPS, outstanding: 500 }),
    };
    // dnsmasq's own account of its cache (SIGUSR1 logs it): proof that it holds the names too.
    peer.child.kill('SIGUSR1');
    await sleep(1000);
    const insertions = [...peer.tail.matchAll(/cache size \d+, \d+\/(\d+) cache insertions/g)].pop()?.[1];
    // A full set (or any SERVFAIL) already while filling: every figure after would be about refusals. Stop now.
    const afterFill0 = await stats();
    if (afterFill0.tagSetFull > 0 || afterFill0.resolver.servfail > 0 || fill.splitwan.servfail > 0 || fill.dnsmasq.servfail > 0) {
      throw new Error(`bench dns FAILED while filling: splitwan's tagger refused ${afterFill0.tagSetFull} answers for a full tag set (splitwan_tag_set_full_total), ` +
        `splitwan answered SERVFAIL ${afterFill0.resolver.servfail} times, dnsperf saw SERVFAIL ${fill.splitwan.servfail} (splitwan) / ${fill.dnsmasq.servfail} (dnsmasq): ` +
        `the bench's names must stay well under TAG_SET_LIMIT ${TAG_SET_LIMIT} per set (raise TAG_LISTS, BD_TAG_LISTS)`);
    }
    const rss100k = { splitwan: rssMb(sw.pid), dnsmasq: rssMb(peer.pid) };
    const nftRss = childPids(sw.pid).reduce((n, k) => n + rssMb(k), 0);
    const echoRss = rssMb(echo.pid);
    const afterFill = await stats();
    const afterGc = await stats('gc');
    const rssGc = rssMb(sw.pid);
    const kinds = rssByKind(sw.pid);
    const heapSnapshot = profileDir ? (await sw.ask<{ file: string }>('heap-snapshot', 'heap-snapshot', 120_000, { label: 'heap-100k' })).file : null;
    const mb = (b: number) => r1(b / 2 ** 20);
    say(`memory with ${FILL} names cached (filled at ${FILL_QPS} q/s), VmRSS: splitwan ${r1(rss100k.splitwan)} MB, dnsmasq ${r1(rss100k.dnsmasq)} MB, ` +
      `ratio ${(rss100k.splitwan / rss100k.dnsmasq).toFixed(2)}x (goal: splitwan < ${GOAL_RSS_MB} MB)`);
    say(`  splitwan: ${afterFill.cacheEntries} cache entries, ${fill.splitwan.lost} lost; empty ${r1(rssEmpty.splitwan)} MB; after a full GC ${r1(rssGc)} MB ` +
      `(heap used ${mb(afterGc.heapUsed)} of ${mb(afterGc.heapTotal)} MB, array buffers ${mb(afterGc.arrayBuffers)} MB)` +
      `${tagged && nftRss > 0 ? `; its nft -i ${r1(nftRss)} MB more` : ''}; for scale, node-echo (bare Node + one socket) ${r1(echoRss)} MB`);
    say(`  splitwan runs as the service files start it: node ${DAEMON_NODE_FLAGS.join(' ')}, ${Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} (daemon/runtime-settings.ts)` + (EXTRA_NODE_FLAGS.length ? `; with BD_NODE_FLAGS: ${EXTRA_NODE_FLAGS.join(' ')} (NOT as the service files start it)` : ''));
    say(`  splitwan's resident memory by kind: malloc's main arena (brk) ${r1(kinds.brk)} MB, anonymous mappings (V8 heap, other malloc arenas, stacks) ${r1(kinds.anon)} MB, ` +
      `files (node, libraries) ${r1(kinds.file)} MB, other ${r1(kinds.other)} MB`);
    say(`  dnsmasq: ${insertions ?? '?'} cache insertions, ${fill.dnsmasq.lost} lost; empty ${r1(rssEmpty.dnsmasq)} MB (its cache is allocated at start)`);
    say(`  CPU per miss while filling: splitwan ${r1(cpuUs([fill.splitwan]))} µs${tagged ? ` (of which its nft -i ${r1(cpuUs([fill.splitwan], 'childCpu'))} µs)` : ''}, dnsmasq ${r1(cpuUs([fill.dnsmasq]))} µs`);

    // 1: cache hits.
    const hitSides: Side[] = ['splitwan', 'splitwan-nolog', 'dnsmasq', 'echo'];
    for (const side of hitSides) await dnsperf(portOf[side], hitFile, { runs: 1, qps: 5000 }); // warm the caches
    for (const side of hitSides) await dnsperf(portOf[side], hitFile, { seconds: 2, clients: HIT_CLIENTS, outstanding: HIT_OUTSTANDING }); // warm the JIT
    const beforeHits = await stats();
    if (profileDir) await sw.ask('profile-start', 'profile-started');
    const hits: Record<Side, Perf[]> = { splitwan: [], 'splitwan-nolog': [], dnsmasq: [], echo: [] };
    /** Records the query log took during the log-on runs (the proof that it was on). */
    let logged = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const order = [...hitSides.slice(i % hitSides.length), ...hitSides.slice(0, i % hitSides.length)]; // a different side goes first in each round
      for (const side of order) {
        const before = side === 'splitwan' ? await qlog(true) : side === 'splitwan-nolog' ? await qlog(false) : null;
        hits[side].push(await dnsperf(portOf[side], hitFile, { pid: pidOf[side], seconds: HIT_SECONDS, clients: HIT_CLIENTS, outstanding: HIT_OUTSTANDING }));
        if (side === 'splitwan') logged += (await qlog(true)).written - before!.written;
      }
    }
    await qlog(true);
    const hitProfile = profileDir ? (await sw.ask<{ file: string }>('profile-stop', 'profile', 60_000, { label: 'hit' })).file : null;
    const afterHits = await stats();
    const hitQps = Object.fromEntries(hitSides.map((s) => [s, median(hits[s].map((p) => p.qps))])) as Record<Side, number>;
    const hitCpu = Object.fromEntries(hitSides.map((s) => [s, cpuUs(hits[s])])) as Record<Side, number>;
    const lost = (s: Side) => hits[s].reduce((n, p) => n + p.lost, 0);
    const samples = (s: Side) => hits[s].map((p) => r0(p.qps)).join(', ');
    // dnsperf is one thread on its own CPU: near 100 % of it, the client was the limit, not the server.
    const clientBusy = Object.fromEntries(hitSides.map((s) => [s, hits[s].reduce((n, p) => n + p.clientCpu, 0) / Math.max(1, hits[s].reduce((n, p) => n + p.wallMs, 0))])) as Record<Side, number>;
    const pct = (x: number) => `${Math.round(100 * x)} %`;
    say(`cache hits: ${HIT_NAMES} names, dnsperf -T 1 -c ${HIT_CLIENTS} -q ${HIT_OUTSTANDING} -l ${HIT_SECONDS}, median of ${ROUNDS} rounds in rotating order` + (hitProfile ? ' (PROFILED: throughput distorted)' : '') + ':');
    say(`  splitwan  ${String(r0(hitQps.splitwan)).padStart(7)} q/s [${samples('splitwan')}], CPU ${r1(hitCpu.splitwan)} µs/answer, lost ${lost('splitwan')}, misses during the rounds ${afterHits.resolver.misses - beforeHits.resolver.misses}`);
    say(`  splitwan, query log off ${String(r0(hitQps['splitwan-nolog'])).padStart(7)} q/s [${samples('splitwan-nolog')}], CPU ${r1(hitCpu['splitwan-nolog'])} µs/answer: ` +
      `the query log (on, ${logged} records in the log-on runs) costs ${r1(hitCpu.splitwan - hitCpu['splitwan-nolog'])} µs/answer, q/s on/off ${(hitQps.splitwan / hitQps['splitwan-nolog']).toFixed(3)}x`);
    say(`  dnsmasq   ${String(r0(hitQps.dnsmasq)).padStart(7)} q/s [${samples('dnsmasq')}], CPU ${r1(hitCpu.dnsmasq)} µs/answer, lost ${lost('dnsmasq')}`);
    say(`  node-echo ${String(r0(hitQps.echo)).padStart(7)} q/s [${samples('echo')}], CPU ${r1(hitCpu.echo)} µs/answer, lost ${lost('echo')} (a Node dgram responder with no DNS logic: dgram's own cost per datagram; splitwan batches with recvmmsg instead)`);
    say(`  ratio splitwan/dnsmasq ${(hitQps.splitwan / hitQps.dnsmasq).toFixed(2)}x (goal >= ${GOAL_RATIO}); splitwan/node-echo ${(hitQps.splitwan / hitQps.echo).toFixed(2)}x; node-echo/dnsmasq ${(hitQps.echo / hitQps.dnsmasq).toFixed(2)}x`);
    say(`  dnsperf's own CPU while asking: splitwan ${pct(clientBusy.splitwan)}, dnsmasq ${pct(clientBusy.dnsmasq)}, node-echo ${pct(clientBusy.echo)} of its core` +
      (clientBusy.splitwan > 0.9 ? ': against splitwan the client was the limit, so its q/s is dnsperf\'s; ' : '; ') +
      `CPU per answer (a server's capacity on one core): dnsmasq/splitwan ${(hitCpu.dnsmasq / hitCpu.splitwan).toFixed(2)}x`);

    // 2: misses, added latency over the upstream's own, at two rates.
    const missFigures: Record<string, Record<Target, MissFigure>> = {};
    let missProfile: string | null = null;
    const pausesOf: Record<string, ChildPauses> = {};
    const transactions: Record<string, { nft: number; misses: number }> = {};
    for (const rate of rates) {
      const per: Record<Target, { p50: number[]; p99: number[]; runs: Perf[] }> = Object.fromEntries(targets.map((t) => [t, { p50: [], p99: [], runs: [] }])) as never;
      const before = await stats();
      if (profileDir && rate.label === 'loaded') await sw.ask('profile-start', 'profile-started');
      for (let r = 0; r < MISS_ROUNDS; r++) {
        for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
          if (t === 'splitwan') await sw.ask('pauses-reset', 'pauses-reset');
          const p = await dnsperf(portOf[t], fileOf(`miss-${rate.qps}-${r}-${t}`, rate.names[r]![t]), { pid: pidOf[t], runs: 1, qps: rate.qps, outstanding: 100, verbose: true });
          if (t === 'splitwan') addPauses(pausesOf[rate.label] ??= emptyPauses(), await sw.ask<ChildPauses>('pauses', 'pauses'));
          per[t].p50.push(percentile(p.latencies, 50));
          per[t].p99.push(percentile(p.latencies, 99));
          per[t].runs.push(p);
        }
      }
      if (profileDir && rate.label === 'loaded') missProfile = (await sw.ask<{ file: string }>('profile-stop', 'profile', 60_000, { label: 'miss' })).file;
      const after = await stats();
      transactions[rate.label] = { nft: after.tagTransactions - before.tagTransactions, misses: after.resolver.misses - before.resolver.misses };
      /** Per round, that side's percentile minus the upstream's; the median over rounds. */
      const addedOver = (t: Target, q: 'p50' | 'p99') => median(per[t][q].map((v, i) => v - per.upstream[q][i]!));
      const fig = Object.fromEntries(targets.map((t) => [t, {
        p50: median(per[t].p50), p99: median(per[t].p99), added50: addedOver(t, 'p50'), added99: addedOver(t, 'p99'), cpuUs: cpuUs(per[t].runs), childCpuUs: cpuUs(per[t].runs, 'childCpu'),
        lost: per[t].runs.reduce((n, p) => n + p.lost, 0), notNoerror: per[t].runs.reduce((n, p) => n + p.completed - p.noerror, 0),
      }])) as Record<Target, MissFigure>;
      missFigures[rate.label] = fig;
      say(`misses, ${rate.label}: ${rate.qps * rate.seconds} never-asked names per side at ${rate.qps} q/s, median of ${MISS_ROUNDS} rounds; ms, added = over the upstream's own in the same round:`);
      for (const t of targets) {
        const f = fig[t];
        say(`  ${t.padEnd(15)} p50 ${r3(f.p50).toFixed(3)}  p99 ${r3(f.p99).toFixed(3)}` + (t === 'upstream' ? ' '.repeat(34) : `  added p50 ${r3(f.added50).toFixed(3).padStart(6)}  p99 ${r3(f.added99).toFixed(3).padStart(7)}`) +
          `  CPU ${r1(f.cpuUs)} µs/answer; lost ${f.lost}, not NOERROR ${f.notNoerror}` +
          (t === 'splitwan' ? (tagged ? '; tagged (answered once the kernel has it)' : '; UNTAGGED') : t === 'dnsmasq-nftset' ? '; tagged (libnftables in-process)' : ''));
      }
      const tx = transactions[rate.label]!;
      if (tagged) say(`  splitwan: ${tx.nft} nft transactions for ${tx.misses} misses; CPU per miss (libnftables runs in the process): node ${r1(fig.splitwan.cpuUs - fig.splitwan.childCpuUs)} µs, child nft ${r1(fig.splitwan.childCpuUs)} µs`);
      const pz = pausesOf[rate.label];
      if (pz) say(`  splitwan's pauses while asked (${MISS_ROUNDS} runs): ${describePauses(pz)}`);
    }
    const loadedFig = missFigures.loaded!;
    const unloadedFig = missFigures.unloaded!;

    // Checks: the answers are the upstream's, and splitwan's answers reached the kernel.
    const checks: string[] = [];
    for (const name of [fillNames[0]!, fillNames[FILL - 1]!, hitNames[5]!]) {
      const want = addressOfName.get(name)!;
      for (const side of ['splitwan', 'dnsmasq'] as const) {
        const got = (await dig(portOf[side], name)).stdout.trim();
        if (got !== want) checks.push(`${side} answered ${name} with "${got}", the upstream has ${want}`);
      }
    }
    const final0 = await stats();
    const countElements = async (table: string, set: string) =>
      // dnsmasq adds its elements without a timeout: count addresses, not `timeout`s.
      (await must(inNs(['nft', 'list', 'set', 'inet', table, set]), { timeoutMs: 30_000 })).stdout.match(/\b10\.\d+\.\d+\.\d+\b/g)?.length ?? 0;
    let tagElements: number[] | null = null;
    let peerElements: number[] | null = null;
    if (tagged) {
      tagElements = [];
      for (const set of sets) tagElements.push(await countElements('splitwan', set));
      const held = tagElements.reduce((a, b) => a + b, 0);
      const answered = final0.resolver.misses; // every name splitwan resolved has one address
      if (held < answered) checks.push(`the kernel's ${sets.join(', ')} hold ${held} addresses (${tagElements.join(', ')}), splitwan resolved ${answered} names`);
      for (const name of [fillNames[7]!, fillNames[FILL - 2]!, rates[0]!.names[0]!.splitwan[3]!, rates[1]!.names[1]!.splitwan[9]!]) {
        const a = addressOfName.get(name)!;
        const set = sets[listOf(name)]!;
        if ((await sh(inNs(['nft', 'get', 'element', 'inet', 'splitwan', set, `{ ${a} }`]))).code !== 0) checks.push(`${name} → ${a} is not in ${set}`);
      }
    }
    if (ns) {
      // The peer got the same split: each of its sets holds (at least) its miss names of that sub-zone.
      peerElements = [];
      for (const set of peerSets) peerElements.push(await countElements(PEER_TABLE, set));
      const want = new Array<number>(TAG_LISTS).fill(0);
      for (const n of rates.flatMap((r) => r.names.flatMap((byTarget) => byTarget['dnsmasq-nftset']))) want[listOf(n)]!++;
      peerElements.forEach((got, l) => got < want[l]! && checks.push(`dnsmasq --nftset's ${peerSets[l]} holds ${got} addresses, it resolved ${want[l]} names of ${subZone(l)}`));
    }
    const final = await stats();
    say(`checks: ${checks.length === 0 ? 'answers match the upstream' + (tagElements ? `; addresses in the kernel's ${sets.join(', ')}: ${tagElements.join(', ')}` : '') +
      (peerElements ? `; in dnsmasq --nftset's ${peerSets.join(', ')}: ${peerElements.join(', ')}` : '') : 'FAILED: ' + checks.join('; ')}; ` +
      `splitwan: ${final.resolver.hits} hits, ${final.resolver.misses} misses, ${final.resolver.servfail} SERVFAIL, ${final.tagSetFull} refused for a full tag set, ${final.tagTransactions} nft transactions; ${r0((Date.now() - t0) / 1000)} s`);

    // The bench's own validity: a full set or a SERVFAIL anywhere makes the hit/miss figures about refusals, not resolving.
    // By server: splitwan-nolog is splitwan's own process and port (its SERVFAILs are counted under splitwan).
    const servfailBySide = Object.fromEntries((Object.keys(portOf) as (Target | Side)[]).filter((k) => k !== 'splitwan-nolog' && (k !== 'dnsmasq-nftset' || ns))
      .map((k) => [k, servfailByPort.get(portOf[k]) ?? 0]));
    const failures = [...checks];
    if (final.tagSetFull > 0) failures.push(`splitwan's tagger refused ${final.tagSetFull} answers for a full tag set (splitwan_tag_set_full_total; TAG_SET_LIMIT ${TAG_SET_LIMIT} a set)`);
    if (final.resolver.servfail > 0) failures.push(`splitwan answered SERVFAIL ${final.resolver.servfail} times`);
    const sfSides = Object.entries(servfailBySide).filter(([, n]) => n > 0);
    if (sfSides.length) failures.push(`dnsperf saw SERVFAIL answers: ${sfSides.map(([k, n]) => `${k} ${n}`).join(', ')}`);
    if (failures.length) say(`!!! FAILED: ${failures.join('; ')}: the figures above are NOT valid !!!`);

    const out = {
      bench: 'dns',
      tagged,
      pinned: pin,
      hit_qps: r0(hitQps.splitwan),
      dnsmasq_hit_qps: r0(hitQps.dnsmasq),
      ratio_hit_vs_dnsmasq: +(hitQps.splitwan / hitQps.dnsmasq).toFixed(3),
      node_echo_hit_qps: r0(hitQps.echo),
      ratio_hit_vs_node_echo: +(hitQps.splitwan / hitQps.echo).toFixed(3),
      hit_qps_samples: hits.splitwan.map((p) => r0(p.qps)),
      hit_qps_query_log_off: r0(hitQps['splitwan-nolog']),
      hit_cpu_us_query_log_off: r1(hitCpu['splitwan-nolog']),
      ratio_hit_query_log_on_vs_off: +(hitQps.splitwan / hitQps['splitwan-nolog']).toFixed(3),
      query_log_records_in_hit_runs: logged,
      dnsmasq_hit_qps_samples: hits.dnsmasq.map((p) => r0(p.qps)),
      hit_cpu_us: r1(hitCpu.splitwan),
      ratio_hit_cpu_dnsmasq_vs_splitwan: +(hitCpu.dnsmasq / hitCpu.splitwan).toFixed(3),
      hit_client_busy: { splitwan: +clientBusy.splitwan.toFixed(2), dnsmasq: +clientBusy.dnsmasq.toFixed(2), node_echo: +clientBusy.echo.toFixed(2) },
      dnsmasq_hit_cpu_us: r1(hitCpu.dnsmasq),
      node_echo_hit_cpu_us: r1(hitCpu.echo),
      miss_qps: MISS_QPS,
      upstream_p50_ms: r3(loadedFig.upstream.p50),
      upstream_p99_ms: r3(loadedFig.upstream.p99),
      miss_p50_ms: r3(loadedFig.splitwan.p50),
      miss_p99_ms: r3(loadedFig.splitwan.p99),
      miss_added_p50_ms: r3(loadedFig.splitwan.added50),
      miss_added_p99_ms: r3(loadedFig.splitwan.added99),
      dnsmasq_miss_added_p50_ms: r3(loadedFig.dnsmasq.added50),
      dnsmasq_miss_added_p99_ms: r3(loadedFig.dnsmasq.added99),
      ratio_miss_added_p50_vs_dnsmasq: +(loadedFig.splitwan.added50 / loadedFig.dnsmasq.added50).toFixed(2),
      ratio_miss_added_p99_vs_dnsmasq: +(loadedFig.splitwan.added99 / loadedFig.dnsmasq.added99).toFixed(2),
      ...(ns ? { dnsmasq_nftset_miss_added_p50_ms: r3(loadedFig['dnsmasq-nftset'].added50), dnsmasq_nftset_miss_added_p99_ms: r3(loadedFig['dnsmasq-nftset'].added99) } : {}),
      miss_cpu_us: r1(loadedFig.splitwan.cpuUs),
      dnsmasq_miss_cpu_us: r1(loadedFig.dnsmasq.cpuUs),
      ...(ns ? { dnsmasq_nftset_miss_cpu_us: r1(loadedFig['dnsmasq-nftset'].cpuUs) } : {}),
      miss_node_cpu_us: r1(loadedFig.splitwan.cpuUs - loadedFig.splitwan.childCpuUs),
      miss_nft_cpu_us: tagged ? r1(loadedFig.splitwan.childCpuUs) : null,
      miss_nft_transactions_per_miss: tagged ? +(transactions.loaded!.nft / Math.max(1, transactions.loaded!.misses)).toFixed(3) : null,
      unloaded_miss_qps: MISS_LOW_QPS,
      unloaded_miss_added_p50_ms: r3(unloadedFig.splitwan.added50),
      unloaded_miss_added_p99_ms: r3(unloadedFig.splitwan.added99),
      unloaded_miss_node_cpu_us: r1(unloadedFig.splitwan.cpuUs - unloadedFig.splitwan.childCpuUs),
      unloaded_miss_nft_cpu_us: tagged ? r1(unloadedFig.splitwan.childCpuUs) : null,
      unloaded_miss_nft_transactions_per_miss: tagged ? +(transactions.unloaded!.nft / Math.max(1, transactions.unloaded!.misses)).toFixed(3) : null,
      unloaded_dnsmasq_miss_added_p50_ms: r3(unloadedFig.dnsmasq.added50),
      unloaded_dnsmasq_miss_added_p99_ms: r3(unloadedFig.dnsmasq.added99),
      ...(ns ? { unloaded_dnsmasq_nftset_miss_added_p50_ms: r3(unloadedFig['dnsmasq-nftset'].added50), unloaded_dnsmasq_nftset_miss_added_p99_ms: r3(unloadedFig['dnsmasq-nftset'].added99) } : {}),
      miss_lost: Object.fromEntries(targets.map((t) => [t, loadedFig[t].lost + unloadedFig[t].lost])),
      miss_loaded_gc_longest_ms: pausesOf.loaded ? +Math.max(0, ...Object.values(pausesOf.loaded.gc).map((g) => g.maxMs)).toFixed(1) : null,
      miss_loaded_loop_late_max_ms: pausesOf.loaded ? +pausesOf.loaded.loopMaxMs.toFixed(1) : null,
      rss_100k_mb: r1(rss100k.splitwan),
      dnsmasq_rss_100k_mb: r1(rss100k.dnsmasq),
      ratio_rss_vs_dnsmasq: +(rss100k.splitwan / rss100k.dnsmasq).toFixed(2),
      rss_100k_after_gc_mb: r1(rssGc),
      rss_100k_kinds_mb: { brk: r1(kinds.brk), anon: r1(kinds.anon), file: r1(kinds.file), other: r1(kinds.other) },
      rss_empty_mb: r1(rssEmpty.splitwan),
      nft_rss_100k_mb: tagged ? r1(nftRss) : null,
      node_echo_rss_mb: r1(echoRss),
      dnsmasq_rss_empty_mb: r1(rssEmpty.dnsmasq),
      heap_used_100k_mb: mb(afterGc.heapUsed),
      array_buffers_100k_mb: mb(afterGc.arrayBuffers),
      cache_entries_100k: afterFill.cacheEntries,
      dnsmasq_cache_insertions_100k: insertions === undefined ? null : Number(insertions),
      fill_lost: { splitwan: fill.splitwan.lost, dnsmasq: fill.dnsmasq.lost },
      tag_lists: TAG_LISTS,
      tag_elements: tagElements,
      dnsmasq_nftset_elements: peerElements,
      tag_set_full: final.tagSetFull,
      servfail: { splitwan_resolver: final.resolver.servfail, ...servfailBySide },
      checks_ok: checks.length === 0,
      ok: failures.length === 0,
      goal_ratio_hit: GOAL_RATIO,
      goal_rss_mb: GOAL_RSS_MB,
      seconds: r0((Date.now() - t0) / 1000),
      ...(profileDir ? { hit_profile: hitProfile, miss_profile: missProfile, heap_snapshot: heapSnapshot } : {}),
    };
    say(JSON.stringify(out));
    if (failures.length) throw new Error(`bench dns FAILED: ${failures.join('; ')}`);
    return out;
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}
