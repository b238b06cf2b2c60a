// The splitwan side of `npm run bench -- dns`, run as its own process (so its
// RSS is measured alone and the driver shares no event loop with it): the
// resolve pipeline (Resolver + DnsServer + DnsCache + Forwarder) built from a
// config file, answering on 127.0.0.1, forwarding through plain loopback
// sockets. With `tagged`, answers are tagged into the kernel by the real
// NftTagger (libnftables in-process, as the daemon), in the network namespace this process was started
// in (the driver creates the namespace and the `splitwan` table).
//
// argv[2]: JSON { config: string, port: number, tagged: boolean, profileDir?: string }
// IPC in:  { cmd: 'stats' | 'gc' | 'qlog' (on: the query log on or off) | 'pauses-reset' | 'pauses' | 'profile-start' | 'profile-stop' (label) | 'alloc-start' | 'alloc-stop' (label: a sampling heap profile, collected objects included) | 'heap-snapshot' (label) | 'stop' }
// IPC out: { type: 'ready', port } and { type: 'stats', ... } / { type: 'pauses', ... } / { type: 'profile', file } replies
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import type net from 'node:net';
import { join } from 'node:path';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import { loadConfig } from '../config/load.js';
import { silentLogger, systemClock, type Logger } from '../lib/logger.js';
import type { PathName, Target } from '../config/types.js';
import { ClientAcl } from '../dns/acl.js';
import { DnsCache } from '../dns/cache.js';
import { Forwarder, type PathDialer } from '../dns/forwarder.js';
import { Resolver, type PathState, type RouteTagger } from '../dns/resolver.js';
import { DnsServer } from '../dns/server.js';
import { QueryLog } from '../dns/query-log.js';
import { openNft } from '../daemon/dataplane/libnft-linux.js';
import { planDataplane } from '../daemon/dataplane/plan.js';
import { NftTagger } from '../daemon/dataplane/tagger.js';
import { fastPathOr } from '../sys/native-fallback.js';
import { nativeSendDatagram } from '../sys/udp-sendto-linux.js';
import { RuleTagger } from '../daemon/resolver-paths.js';

interface ChildArgs {
  config: string;
  port: number;
  tagged: boolean;
  profileDir?: string;
}

/** Plain loopback sockets (the daemon's dialer would mark them with the path). */
class LoopbackDialer implements PathDialer {
  udp(_path: PathName, family: 4 | 6): Promise<dgram.Socket> {
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    return new Promise((r) => s.bind(0, () => r(s)));
  }
  async tcp(): Promise<net.Socket> {
    throw new Error('the dns bench forwards over UDP only');
  }
}

const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
const send = (m: object): void => void process.send?.(m);

const loaded = await loadConfig(args.config);
const c = loaded.config;
const gateway = c.tunnel.gateways[0]?.name ?? null;
const paths: PathState = {
  pick: (via: readonly Target[]) => via[0]!,
  upstreams: (path: PathName) => {
    if (path === 'breakout') return c.breakout.dns === 'auto' ? [] : c.breakout.dns;
    const name = path === 'tunnel' ? gateway : path.slice(3);
    return c.tunnel.gateways.find((g) => g.name === name)?.dns ?? [];
  },
  ipv6: () => true,
};

let session: ReturnType<typeof openNft> | null = null;
let nftTagger: NftTagger | null = null;
let tagger: RouteTagger | null = null;
if (args.tagged) {
  const plan = planDataplane({ config: c, listCidrs: new Map(), wan: 'wan0', active: gateway, healthy: () => true, dnsPort: null });
  session = openNft(silentLogger); // what the daemon uses: libnftables in-process, else nft -i
  nftTagger = new NftTagger(session, systemClock);
  tagger = new RuleTagger(nftTagger, () => plan); // the daemon's adapter
  await session.exec('list tables'); // ready (nft -i started) before the first answer
}

/** The resolver's warnings and errors (silent otherwise): by message, with the last detail, in `stats` (what a SERVFAIL was). */
const problems: Record<string, { count: number; last: string }> = {};
const note = (obj: object, msg?: string): void => {
  const k = (problems[msg ?? '?'] ??= { count: 0, last: '' });
  k.count++;
  k.last = JSON.stringify(obj, (_k, v: unknown) => (v instanceof Error ? v.message : v)).slice(0, 300);
};
const benchLogger: Logger = { ...silentLogger, warn: note, error: note, child: () => benchLogger };
// Upstream datagrams as the daemon sends them (daemon/deps-linux.ts): sendto(2) on the socket's fd where koffi loads.
const upstreamSend = fastPathOr({ what: 'bench upstream datagrams: sendto', instead: "dgram's send", report: {}, turnedOff: null }, nativeSendDatagram, null);
const forwarder = new Forwarder({ dialer: new LoopbackDialer(), logger: benchLogger, timeoutMs: c.dns.timeoutMs, ...(upstreamSend ? { pool: { send: upstreamSend } } : {}) });
const cache = new DnsCache(c.dns.cache, systemClock);
// The query log as the daemon has it by default (queryLog: of the config); 'qlog' turns it off and on between rounds.
const queryLog = new QueryLog(systemClock, { privacy: c.queryLog.privacy, size: c.queryLog.size });
const resolver = new Resolver({
  queryLog,
  policy: () => loaded.policy,
  paths,
  upstreams: forwarder,
  tagger,
  cache,
  clock: systemClock,
  logger: benchLogger,
  options: { tagTtlMs: c.dns.tagTtlMs, blockAnswer: c.dns.blockAnswer, minTtl: c.dns.cache.minTtl, maxTtl: c.dns.cache.maxTtl, negativeTtl: c.dns.cache.negativeTtl },
});
const acl = new ClientAcl([]);
const server = new DnsServer({ handler: resolver, allows: (a) => acl.allows(a), logger: silentLogger });
const [bound] = await server.listen([{ host: '127.0.0.1', port: args.port }]);

let profiler: Session | null = null;

// Pauses, to tell what makes a miss's p99: garbage collection (each GC's
// pause, by kind) and how late the event loop ran (1 ms resolution).
const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const gcPauses: { kind: string; ms: number }[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push({ kind: GC_KINDS[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other', ms: e.duration });
}).observe({ entryTypes: ['gc'] });
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

function pauses(): object {
  const byKind: Record<string, { count: number; totalMs: number; maxMs: number }> = {};
  for (const p of gcPauses) {
    const k = (byKind[p.kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
    k.count++;
    k.totalMs += p.ms;
    k.maxMs = Math.max(k.maxMs, p.ms);
  }
  return { type: 'pauses', gc: byKind, loopMaxMs: loopDelay.max / 1e6, loopP99Ms: loopDelay.percentile(99) / 1e6 };
}

function stats(): object {
  const m = process.memoryUsage();
  return {
    type: 'stats',
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    cacheEntries: cache.size,
    resolver: resolver.stats,
    server: server.stats,
    tagTransactions: nftTagger?.transactions ?? 0,
    tagSetFull: nftTagger?.refusedFull ?? 0,
    pool: { ...forwarder.pool.stats, open: forwarder.pool.size },
    problems,
  };
}

async function stop(): Promise<void> {
  await server.close();
  forwarder.close();
  session?.close();
  process.exit(0);
}

process.on('message', (m: { cmd?: string; label?: string }) => {
  void (async () => {
    switch (m.cmd) {
      case 'stats':
        return send(stats());
      case 'gc':
        (globalThis as { gc?: () => void }).gc?.();
        return send(stats());
      case 'pauses-reset':
        gcPauses.length = 0;
        loopDelay.reset();
        return send({ type: 'pauses-reset' });
      case 'pauses':
        return send(pauses());
      case 'profile-start':
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
        await profiler.post('Profiler.start');
        return send({ type: 'profile-started' });
      case 'profile-stop': {
        if (profiler === null) return send({ type: 'profile', file: null });
        const { profile } = await profiler.post('Profiler.stop');
        profiler.disconnect();
        profiler = null;
        const file = join(args.profileDir ?? '.', `dns-${m.label ?? 'run'}-${process.pid}.cpuprofile`);
        writeFileSync(file, JSON.stringify(profile));
        return send({ type: 'profile', file });
      }
      case 'alloc-start':
        // Where the bytes a run allocates come from (the ones minor GCs collect too): GC's share of a miss.
        profiler = new Session();
        profiler.connect();
        await profiler.post('HeapProfiler.enable');
        await profiler.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
        return send({ type: 'alloc-started' });
      case 'alloc-stop': {
        if (profiler === null) return send({ type: 'alloc', file: null });
        const { profile } = await profiler.post('HeapProfiler.stopSampling');
        profiler.disconnect();
        profiler = null;
        const file = join(args.profileDir ?? '.', `dns-${m.label ?? 'alloc'}-${process.pid}.heapprofile`);
        writeFileSync(file, JSON.stringify(profile));
        return send({ type: 'alloc', file });
      }
      case 'heap-snapshot':
        return send({ type: 'heap-snapshot', file: writeHeapSnapshot(join(args.profileDir ?? '.', `dns-${m.label ?? 'heap'}-${process.pid}.heapsnapshot`)) });
      case 'qlog': {
        const on = (m as { on?: boolean }).on === true;
        queryLog.configure({ privacy: on ? 'full' : 'off', size: c.queryLog.size });
        return send({ type: 'qlog', on: queryLog.on, written: queryLog.nextSeq });
      }
      case 'stop':
        return stop();
    }
  })();
});
process.on('disconnect', () => void stop()); // the driver is gone: do not linger
process.on('SIGTERM', () => void stop());
send({ type: 'ready', port: bound!.port });
