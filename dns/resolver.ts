// The resolve pipeline: a query's bytes in, the answer's bytes out. No
// sockets here (server.ts is the shell); the policy, the paths' state, the
// upstream forwarder and the kernel tagger are passed in.
//
//   parse → policy(name, client) → path (health-aware pick of the rule's via)
//     → cache (wire bytes, patched: no decode) → forwarder through that path
//     → tag the answer's addresses with the rule → answer
//
// The hit path is synchronous when nothing needs tagging: `handle` returns a
// Buffer, not a Promise, so a cache hit costs a parse, a Map lookup and one
// patched copy.
//
// What a flood of made-up queries must not do: questions no resolver should
// be asked (meta types, unknown classes) are answered here, never forwarded;
// a client's misses are limited (client-limit.ts); lines a flood repeats are
// rate-limited with a count (lib/log-throttle.ts).
import type { Clock, Logger } from '../lib/logger.js';
import { LogThrottle } from '../lib/log-throttle.js';
import { ClientLimiter } from './client-limit.js';
import type { Policy } from '../config/policy.js';
import type { PathName, Target, Upstream } from '../config/types.js';
import { formatIp, parseIp } from '../lib/ip.js';
import { DnsCache, InFlight, ageSeconds, type CachedAnswer } from './cache.js';
import { NO_RULE, type QueryLog, type QueryResult } from './query-log.js';
import type { Question } from './forwarder.js';
import {
  CLASS,
  EDNS_UDP_SIZE,
  OPCODE_QUERY,
  RCODE,
  TYPE,
  buildError,
  errorAnswer,
  findOpt,
  newHitScan,
  scanHitQuery,
  writeHitAnswer,
  buildRecordAnswer,
  clampTtlsAt,
  ourAnswer,
  patchResponseAt,
  parseQuery,
  questionBytes,
  removeOpt,
  responseInfo,
  truncateForUdp,
  ttlOffsets,
  udpLimit,
  upstreamQuery,
  type ParsedQuery,
} from './wire.js';

/** Installs addresses into a rule's kernel sets; resolves when the kernel has them. */
export interface RouteTagger {
  /**
   * Tags `addresses` for config rule `rule` for `ttlMs`. Null when there is
   * nothing to wait for (the rule tags nothing, or the addresses are already
   * tagged there for long enough): the hit path stays synchronous.
   */
  tag(rule: number, addresses: readonly string[], ttlMs: number): Promise<void> | null;
}

/** What the daemon knows about the paths now (health, active gateway). */
export interface PathState {
  /** The candidate of a via list that carries traffic now. */
  pick(via: readonly Target[]): Target;
  /** The resolvers of a path now; empty when nothing may carry it (the kill switch holds). */
  upstreams(path: PathName): readonly Upstream[];
  /** Whether the path carries IPv6; when not, AAAA questions get an empty answer. */
  ipv6(path: PathName): boolean;
}

/**
 * Names answered from another path than their rule's, for a while (issue 16:
 * a captive portal's names, from the breakout while its window is open).
 */
export interface NameDetour {
  /** The path that answers `name` now, or null: its rule's. */
  pathOf(name: string): PathName | null;
  /** Lets an answer's addresses through before the answer goes out; null: nothing to wait for. */
  admit(name: string, addresses: readonly string[]): Promise<void> | null;
}

/** The forwarder, as the resolver uses it (a Forwarder fits). */
export interface Upstreams {
  forward(query: Buffer, q: Question, upstreams: readonly Upstream[], path: PathName): Promise<Buffer>;
}

export interface ResolverOptions {
  /** Minimum lifetime of a tag; every answer refreshes it. */
  tagTtlMs: number;
  blockAnswer: 'null' | 'nxdomain';
  /** Names answered NXDOMAIN before any policy (the DoH endpoints of blockEncryptedDns). */
  refuseName?: ((name: string) => boolean) | undefined;
  /** Answer `use-application-dns.net` NXDOMAIN (keeps Firefox's DoH off). Default true. */
  dohCanary?: boolean;
  /** TTL bounds the cache applies; answers are rewritten to them. */
  minTtl: number;
  maxTtl: number;
  negativeTtl: number;
}

export interface ResolverDeps {
  policy: () => Policy;
  paths: PathState;
  upstreams: Upstreams;
  tagger: RouteTagger | null;
  cache: DnsCache;
  clock: Clock;
  logger: Logger;
  options: ResolverOptions;
  /** Counters that outlive this resolver (a reload makes a new one); default: its own. */
  stats?: ResolverStats;
  /** Each client's share of upstream work; default: DEFAULT_CLIENT_LIMIT; null: none (benchmarks of the resolver alone). */
  limiter?: ClientLimiter | null;
  /** Where every decision is recorded (query-log.ts); none: nothing is. */
  queryLog?: QueryLog | null;
  /** Names answered from another path for a while (captive portals); none: every name by its rule. */
  detour?: NameDetour | null;
}

export interface Client {
  address: string;
  tcp: boolean;
}

export interface ResolverStats {
  queries: number;
  hits: number;
  misses: number;
  coalesced: number;
  formerr: number;
  servfail: number;
  blocked: number;
  staleServed: number;
  tagFailures: number;
  upstreamFailures: number;
  /** Questions answered here because no resolver should be asked them (meta types, unknown classes). */
  refusedLocally: number;
  /** Misses dropped: the client had too many in flight, or asked too fast (client-limit.ts). */
  clientLimited: number;
  /** Per path: answers from the cache, forwarded, blocked. */
  byPath: Record<string, { hits: number; misses: number; blocked: number }>;
  /** Queries decided by each rule, at index rule + 1 (0: the default); an array, since it counts every query. */
  byRule: number[];
}

export function newResolverStats(): ResolverStats {
  return { queries: 0, hits: 0, misses: 0, coalesced: 0, formerr: 0, servfail: 0, blocked: 0, staleServed: 0, tagFailures: 0, upstreamFailures: 0, refusedLocally: 0, clientLimited: 0, byPath: {}, byRule: [] };
}

/**
 * What the UDP fast path (answerHit) remembers of a question the full path
 * answered from the cache: how it was decided, so a repeat is answered
 * without deciding again as long as nothing that decided it changed.
 */
interface FastHit {
  /** The policy it was decided by: another one (a reload) decides again. */
  readonly policy: Policy;
  /** The rule's candidates and the one picked: a failover picks another. */
  readonly via: readonly Target[];
  readonly path: PathName;
  readonly rule: number;
  /** The cache's own key (DnsCache.keyOf). */
  readonly cacheKey: string;
  readonly pathStats: { hits: number; misses: number; blocked: number };
  /** ms: until then a hit need not ask the tagger whether its tags need refreshing. */
  readonly tagQuietUntil: number;
}

/**
 * How long a fast hit of a tagged name goes without asking the tagger. The
 * tagger refreshes a tag once less than half its lifetime (at least
 * `dns.tagTtl`, minutes) is left, so asking once a second per name changes
 * nothing there; the same second bounds how long an address another path's
 * name took over stays there before a hit of this name takes it back.
 */
const FAST_TAG_CHECK_MS = 1000;
/** Questions remembered per DO bit; when full, forgotten all at once (the hot ones come back on their next hit). */
const FAST_MAX = 8192;

type Latin1Slice = (this: Uint8Array, start: number, end: number) => string;
/** Buffer's own latin1 decoder (what toString('latin1') ends in, without its argument handling). */
const latin1Slice: Latin1Slice =
  (Buffer.prototype as unknown as { latin1Slice?: Latin1Slice }).latin1Slice ??
  function (this: Uint8Array, start: number, end: number): string {
    return Buffer.from(this.buffer, this.byteOffset, this.byteLength).toString('latin1', start, end);
  };

/** What a miss produced, shared by every coalesced waiter. */
interface Outcome {
  wire: Buffer;
  offsets: readonly number[];
  /** Answered from stale cache data: TTLs already capped. */
  stale: boolean;
  /** For the query log: the answer's addresses, and ms the upstream took (-1: none answered). */
  addresses: readonly string[];
  upstreamMs: number;
}

/**
 * Questions no resolver is asked: the meta types (TKEY, TSIG, IXFR, AXFR,
 * MAILB, MAILA), 0, 65535 and OPT; and classes other than IN, CH, HS and
 * ANY. A fuzzer or a broken client sends them; they are answered NOTIMP (OPT:
 * FORMERR, RFC 6891 §6.1.1) here rather than forwarded.
 */
export function localRcode(qtype: number, qclass: number): number | null {
  if (qtype === TYPE.OPT) return RCODE.FORMERR;
  if (qtype === 0 || qtype === 65535 || (qtype >= 249 && qtype <= 254)) return RCODE.NOTIMP;
  if (qclass !== CLASS.IN && qclass !== 3 && qclass !== 4 && qclass !== 255) return RCODE.NOTIMP;
  return null;
}

const CANARY = 'use-application-dns.net';
/**
 * Seconds a failure of every upstream of a path (each answered SERVFAIL or
 * REFUSED) is remembered for the question, answered SERVFAIL meanwhile
 * without asking again: unbound's NORR_TTL (5 s), within RFC 9520 (at
 * least 1 s, at most 5 minutes) and RFC 2308 §7.1 (at most 5 minutes, per
 * question and server: here per question and path). dnsmasq remembers
 * none and asks again every time. Bounded like every entry (the cache's
 * size) and by `dns.cache.negativeTtl` (0: none). Not when a stale answer
 * could be served instead (RFC 8767), and never over it.
 */
export const FAILURE_TTL = 5;
/** RFC 8767 §4: the TTL of a stale answer. */
const STALE_TTL = 30;
const BLOCK_TTL = 60;
const A_ZERO = Buffer.alloc(4);
const AAAA_ZERO = Buffer.alloc(16);

/**
 * A copy in a buffer of its own exact size, for bytes kept as long as a cache
 * entry: small Buffers from Buffer.from are slices of Node's shared 8 KB
 * pool, and one kept slice keeps the whole slab alive.
 */
function ownCopy(b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  b.copy(out);
  return out;
}

/** The address a reverse name asks about (1.0.0.10.in-addr.arpa → 10.0.0.1), or null. */
export function reverseAddress(qname: string): string | null {
  if (qname.endsWith('.in-addr.arpa')) {
    const parts = qname.slice(0, -13).split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) < 256)) return null;
    return parts.reverse().join('.');
  }
  if (qname.endsWith('.ip6.arpa')) {
    const nibbles = qname.slice(0, -9).split('.');
    if (nibbles.length !== 32 || !nibbles.every((n) => /^[0-9a-f]$/.test(n))) return null;
    const hex = nibbles.reverse().join('');
    const groups = hex.match(/.{4}/g)!;
    const ip = parseIp(groups.join(':'));
    return ip ? formatIp(ip) : null;
  }
  return null;
}

export class Resolver {
  private readonly inflight = new InFlight<Outcome | null>();
  readonly stats: ResolverStats;
  /** answerHit's memory, by the question's wire bytes, one map per DO bit. */
  private readonly fast: [Map<string, FastHit>, Map<string, FastHit>] = [new Map(), new Map()];
  private readonly scan = newHitScan();
  private readonly limiter: ClientLimiter | null;
  private readonly throttled: LogThrottle;
  private readonly qlog: QueryLog | null;

  constructor(private readonly d: ResolverDeps) {
    this.stats = d.stats ?? newResolverStats();
    this.qlog = d.queryLog ?? null;
    this.limiter = d.limiter === undefined ? new ClientLimiter(d.clock) : d.limiter;
    this.throttled = new LogThrottle(d.logger, d.clock);
  }

  /** One decision into the query log (when it is on). `rule` NO_RULE: none decided; `path` '': none. */
  private note(client: Client, q: ParsedQuery, policy: Policy | null, rule: number, path: string, hit: boolean, answers: string | readonly string[] | null, rcode: number, upstreamMs: number, result: QueryResult): void {
    const l = this.qlog;
    if (l !== null && l.on) l.record(this.d.clock.now(), client.address, q.qname, q.qtype, policy, rule, path, hit, answers, rcode, upstreamMs, result);
  }

  private pathStats(path: string): { hits: number; misses: number; blocked: number } {
    return (this.stats.byPath[path] ??= { hits: 0, misses: 0, blocked: 0 });
  }

  /**
   * The answer to `msg` from `client`, or null to drop it (shorter than a
   * header). Never throws: anything unexpected becomes SERVFAIL.
   */
  handle(msg: Buffer, client: Client): Buffer | null | Promise<Buffer | null> {
    this.stats.queries++;
    const q = parseQuery(msg);
    if ('error' in q) {
      if (q.error === 'short') return null;
      // Not a QUERY (STATUS, NOTIFY, UPDATE...): NOTIMP with the opcode echoed
      // (RFC 1035 §4.1.1); clients ignore an answer whose opcode differs
      // ("opcode mismatch") and wait for their timeout. An EDNS version we do
      // not speak is BADVERS whatever the opcode (RFC 6891 §6.1.3).
      const opcode = (msg[2]! >>> 3) & 0xf;
      if ((msg[2]! & 0x80) === 0 && opcode !== OPCODE_QUERY) return errorAnswer(msg, (findOpt(msg)?.version ?? 0) > 0 ? RCODE.BADVERS : RCODE.NOTIMP);
      this.stats.formerr++;
      return errorAnswer(msg, RCODE.FORMERR);
    }
    try {
      return this.resolve(msg, q, client);
    } catch (e) {
      this.d.logger.error({ err: e, name: q.qname }, 'resolving failed');
      this.note(client, q, null, NO_RULE, '', false, null, RCODE.SERVFAIL, -1, 'servfail');
      return this.servfail(msg, q);
    }
  }

  /**
   * The addresses the cache holds for a name now (A and AAAA, stale ones
   * too), as its path and rule would key them: `explain NAME` on a running
   * daemon. No upstream is asked and nothing is tagged.
   */
  cachedAddresses(name: string): string[] {
    const policy = this.d.policy();
    const rule = policy.ruleForName(name);
    const target = this.d.paths.pick(policy.viaOf(rule));
    if (target === 'block') return [];
    const out = new Set<string>();
    for (const type of [TYPE.A, TYPE.AAAA]) {
      for (const dobit of [0, 1]) {
        const base = `${name}|${type}|${CLASS.IN}|${dobit}`;
        const hit = this.d.cache.peek(target, rule >= 0 ? `${rule}|${base}` : base);
        for (const a of hit?.addresses ?? []) out.add(a);
      }
    }
    return [...out];
  }

  /**
   * The UDP cache-hit fast path: answers the query at buf[off, off+len) into
   * out[at, at+room) and returns the answer's length, or -1 when the query
   * needs handle() (the caller then gives it the query as a Buffer of its
   * own). Nothing is allocated but the lookup key: the transport reads and
   * writes its native buffers directly.
   *
   * Only a repeat of a question handle() answered from the cache, in the
   * same shape (lower-case name, EDNS or not: scanHitQuery), is answered
   * here, and only while what decided it holds: the same policy, the same
   * pick of the rule's candidates, the entry still fresh in the cache, no
   * tag to look at (FAST_TAG_CHECK_MS), no truncation needed. Names whose
   * rules look at the client's address never come here (see remember).
   */
  answerHit(buf: Uint8Array, off: number, len: number, out: Uint8Array, at: number, room: number, client = ''): number {
    const s = this.scan;
    if (!scanHitQuery(buf, off, len, s)) return -1;
    const question = latin1Slice.call(buf, off + 12, s.questionEnd);
    const f = this.fast[s.do ? 1 : 0].get(question);
    if (f === undefined || this.d.policy() !== f.policy || this.d.paths.pick(f.via) !== f.path) return -1;
    const now = this.d.clock.now();
    if (now >= f.tagQuietUntil) return -1;
    const e = this.d.cache.freshByKey(f.cacheKey, now);
    if (e === null) return -1;
    const variant = s.edns ? e : e.plain;
    if (variant === undefined) return -1;
    const wire = variant.wire;
    if (wire.length > s.limit || wire.length > room) return -1;
    const n = writeHitAnswer(out, at, wire, variant.ttlOffsets, buf, off, s.questionEnd, ageSeconds(now - e.storedAt), s.do);
    this.d.cache.noteHit(e);
    const st = this.stats;
    st.queries++;
    st.hits++;
    f.pathStats.hits++;
    st.byRule[f.rule + 1] = (st.byRule[f.rule + 1] ?? 0) + 1;
    // The query log's cost here: references and numbers into a preallocated slot; the question is decoded when read.
    const l = this.qlog;
    if (l !== null && l.on) l.hit(now, client, question, f.policy, f.rule, f.path, e.addressList, e.rcode);
    return n;
  }

  /**
   * Forgets what answerHit remembers: for a change handle() sees and the
   * fast path would not (the names refuseName refuses: the DoH endpoint
   * list was refreshed).
   */
  forgetFastHits(): void {
    this.fast[0].clear();
    this.fast[1].clear();
  }

  /** A hit handle() answered without waiting: answerHit may answer its repeats. */
  private remember(msg: Buffer, q: ParsedQuery, policy: Policy, via: readonly Target[], path: PathName, rule: number, key: string, tagged: boolean): void {
    // Rules that look at the client's address decide per client; upper case
    // in the name is left to the full path (the fast path's key is the
    // question's bytes as sent).
    if (policy.hasSourceRules || q.qnameRaw !== q.qname) return;
    const map = this.fast[q.edns !== null && q.edns.do ? 1 : 0];
    if (map.size >= FAST_MAX) map.clear();
    map.set(latin1Slice.call(msg, 12, q.questionEnd), {
      policy,
      via,
      path,
      rule,
      cacheKey: this.d.cache.keyOf(path, key),
      pathStats: this.pathStats(path),
      tagQuietUntil: tagged ? this.d.clock.now() + FAST_TAG_CHECK_MS : Infinity,
    });
  }

  /** Failover: the answers of a path came from resolvers no longer in use. */
  flushPath(path: PathName): number {
    return this.d.cache.flushPath(path);
  }

  private resolve(msg: Buffer, q: ParsedQuery, client: Client): Buffer | null | Promise<Buffer | null> {
    const opt = q.edns ? { udpSize: EDNS_UDP_SIZE, do: q.edns.do } : null;
    if (q.edns && q.edns.version > 0) return buildError(this.header(msg, q), RCODE.BADVERS, opt);
    const local = localRcode(q.qtype, q.qclass);
    if (local !== null) {
      this.stats.refusedLocally++;
      this.note(client, q, null, NO_RULE, '', false, null, local, -1, 'local');
      return this.synth(msg, q, local, client);
    }
    const name = q.qname;
    if ((this.d.options.dohCanary ?? true) && name === CANARY) {
      this.note(client, q, null, NO_RULE, '', false, null, RCODE.NXDOMAIN, -1, 'local');
      return this.synth(msg, q, RCODE.NXDOMAIN, client);
    }
    if (this.d.options.refuseName?.(name)) {
      this.stats.blocked++;
      this.note(client, q, null, NO_RULE, 'block', false, null, RCODE.NXDOMAIN, -1, 'blocked');
      return this.synth(msg, q, RCODE.NXDOMAIN, client);
    }

    const detour = this.d.detour?.pathOf(name) ?? null;
    if (detour !== null) return this.detoured(msg, q, client, detour);

    const policy = this.d.policy();
    let rule: number;
    if (q.qtype === TYPE.PTR && (name.endsWith('.arpa'))) {
      // A reverse lookup belongs to the path of the address it asks about.
      const addr = reverseAddress(name);
      rule = addr === null ? -1 : (policy.matchIp(addr, client.address).rule ?? -1);
    } else if (policy.hasSourceRules) {
      rule = policy.matchName(name, client.address).rule ?? -1;
    } else {
      rule = policy.ruleForName(name);
    }
    const via = policy.viaOf(rule);
    const target = this.d.paths.pick(via);
    this.stats.byRule[rule + 1] = (this.stats.byRule[rule + 1] ?? 0) + 1;
    if (target === 'block') {
      this.pathStats('block').blocked++;
      this.note(client, q, policy, rule, 'block', false, null, this.d.options.blockAnswer === 'nxdomain' ? RCODE.NXDOMAIN : RCODE.NOERROR, -1, 'blocked');
      return this.block(msg, q, client);
    }
    const path: PathName = target;
    if (q.qtype === TYPE.AAAA && q.qclass === CLASS.IN && !this.d.paths.ipv6(path)) {
      // The path has no IPv6: an empty answer makes clients use IPv4 rather than fail or leak.
      this.note(client, q, policy, rule, path, false, null, RCODE.NOERROR, -1, 'local');
      return this.synth(msg, q, RCODE.NOERROR, client);
    }

    const key = rule >= 0 ? `${rule}|${q.cacheKey}` : q.cacheKey;
    const hit = this.d.cache.get(path, key);
    if (hit !== null) {
      this.stats.hits++;
      this.pathStats(path).hits++;
      const answer = hit.answer;
      const out = this.finish(msg, q, answer, hit.ageSeconds, client);
      const list = answer.addressList;
      if (rule < 0 || (typeof list !== 'string' && list.length === 0) || this.d.tagger === null) {
        this.note(client, q, policy, rule, path, true, list, answer.rcode, -1, answer.rcode === RCODE.SERVFAIL ? 'servfail' : 'answered');
        this.remember(msg, q, policy, via, path, rule, key, false);
        return out;
      }
      // Every answer refreshes the tags; the tagger returns null when nothing needs doing: no Promise.
      const pending = this.tagLater(rule, typeof list === 'string' ? [list] : list, answer.tagTtlMs);
      if (pending === null) {
        this.note(client, q, policy, rule, path, true, list, answer.rcode, -1, 'answered');
        this.remember(msg, q, policy, via, path, rule, key, true);
        return out;
      }
      return pending.then((ok) => {
        this.note(client, q, policy, rule, path, true, list, ok ? answer.rcode : RCODE.SERVFAIL, -1, ok ? 'answered' : 'servfail');
        return ok ? out : this.servfail(msg, q);
      });
    }
    const refused = this.limiter?.admit(client.address) ?? null;
    if (refused !== null) {
      this.stats.clientLimited++;
      this.note(client, q, policy, rule, path, false, null, client.tcp ? RCODE.REFUSED : -1, -1, 'limited');
      this.throttled.warn(
        'client limit',
        { client: client.address, why: refused, name },
        refused === 'inflight' ? 'a client has too many queries waiting for upstream answers: more are dropped' : 'a client asks for uncached names too fast: more are dropped',
      );
      // UDP: dropped (the client retries); TCP: refused (a dropped TCP query would hang its connection).
      return client.tcp ? this.synth(msg, q, RCODE.REFUSED, client) : null;
    }
    this.stats.misses++;
    this.pathStats(path).misses++;
    const p = this.miss(msg, q, client, path, rule, key, policy);
    if (this.limiter === null) return p;
    const limiter = this.limiter;
    return p.finally(() => limiter.release(client.address));
  }

  private async miss(msg: Buffer, q: ParsedQuery, client: Client, path: PathName, rule: number, key: string, policy: Policy): Promise<Buffer | null> {
    // A CD query's answer is unchecked data (a validating upstream did not
    // validate it): it is not shared with queries without CD (see fetch).
    const flightKey = q.cd ? `${path}|${key}|cd` : `${path}|${key}`;
    const before = this.inflight.size;
    let outcome: Outcome | null;
    try {
      const p = this.inflight.run(flightKey, () => this.fetch(msg, q, path, rule, key));
      if (this.inflight.size === before) this.stats.coalesced++;
      outcome = await p;
    } catch (e) {
      this.throttled.error('resolving failed', { err: e, name: q.qname, path }, 'resolving failed');
      outcome = null;
    }
    if (outcome === null) {
      this.note(client, q, policy, rule, path, false, null, RCODE.SERVFAIL, -1, 'servfail');
      return this.servfail(msg, q);
    }
    this.note(client, q, policy, rule, path, false, outcome.addresses, outcome.wire[3]! & 0xf, outcome.upstreamMs, outcome.stale ? 'stale' : 'answered');
    const out = patchResponseAt(outcome.wire, outcome.offsets, q.id, questionBytes(msg, q), 0, q.flags, q.edns !== null && q.edns.do);
    return this.shape(out, q, client);
  }

  /**
   * A detoured name (NameDetour): forwarded on `path` whatever its rule says,
   * its addresses let through (admit) before the answer goes out. Never from
   * the cache, never remembered by the fast path: a window is short and its
   * names few.
   */
  private async detoured(msg: Buffer, q: ParsedQuery, client: Client, path: PathName): Promise<Buffer | null> {
    this.stats.misses++;
    this.pathStats(path).misses++;
    const outcome = await this.fetch(msg, q, path, -1, `detour|${q.cacheKey}`).catch(() => null);
    let ok = outcome !== null;
    if (outcome !== null) {
      const admitting = this.d.detour!.admit(q.qname, outcome.addresses);
      if (admitting !== null) {
        ok = await admitting.then(
          () => true,
          (e: unknown) => {
            this.throttled.error('detour admit failed', { err: e, name: q.qname }, 'letting a detoured name through failed: answering SERVFAIL');
            return false;
          },
        );
      }
    }
    if (outcome === null || !ok) {
      this.note(client, q, null, NO_RULE, path, false, null, RCODE.SERVFAIL, -1, 'servfail');
      return this.servfail(msg, q);
    }
    this.note(client, q, null, NO_RULE, path, false, outcome.addresses, outcome.wire[3]! & 0xf, outcome.upstreamMs, 'answered');
    return this.shape(patchResponseAt(outcome.wire, outcome.offsets, q.id, questionBytes(msg, q), 0, q.flags, q.edns !== null && q.edns.do), q, client);
  }

  /** One upstream exchange for every waiter: forward, tag, cache. Null: SERVFAIL. */
  private async fetch(msg: Buffer, q: ParsedQuery, path: PathName, rule: number, key: string): Promise<Outcome | null> {
    const upstreams = this.d.paths.upstreams(path);
    let resp: Buffer;
    const asked = this.d.clock.now();
    try {
      if (upstreams.length === 0) throw new Error(`no resolver for ${path} now`);
      // The client's EDNS options (COOKIE, NSID, padding...) are not
      // forwarded: a forwarded COOKIE would come back in the cached answer
      // and reach every other client ("Client COOKIE mismatch": BIND-based
      // clients drop it). See upstreamQuery for the header bits.
      resp = await this.d.upstreams.forward(upstreamQuery(msg, EDNS_UDP_SIZE, q.edns?.do ?? false), q, upstreams, path);
    } catch (e) {
      this.stats.upstreamFailures++;
      this.throttled.warn(`no upstream ${path}`, { name: q.qname, path, err: (e as Error).message }, 'no upstream answered');
      return this.serveStale(path, key, rule);
    }
    // The forwarder returns a SERVFAIL/REFUSED answer (rather than throwing)
    // only when no upstream gave a better one: every resolver of the path
    // failed. RFC 8767 §4: a stale entry is served then; without one the
    // client gets SERVFAIL (a REFUSED from upstream is not splitwan refusing).
    const rc = resp.length >= 4 ? resp[3]! & 0xf : -1;
    if (rc === RCODE.SERVFAIL || rc === RCODE.REFUSED) {
      this.stats.upstreamFailures++;
      const stale = await this.serveStale(path, key, rule);
      if (stale === null && !q.cd) this.rememberFailure(msg, q, path, key);
      return stale;
    }
    const upstreamMs = this.d.clock.now() - asked;
    const info = responseInfo(resp);
    const offsets = info === null ? null : ttlOffsets(resp);
    if (info === null || offsets === null) {
      this.throttled.warn(`malformed ${path}`, { name: q.qname, path }, 'upstream answer malformed');
      return null;
    }
    // Our copy (ourAnswer: our OPT, AA and Z cleared, RA set), TTLs bounded:
    // clients cache no longer than the tags last. Clients without EDNS get
    // the OPT removed.
    const wire = ourAnswer(resp);
    const o = this.d.options;
    const hasData = info.answers.some((a) => a.type === q.qtype) || q.qtype === TYPE.ANY;
    const negative = info.rcode === RCODE.NXDOMAIN || (info.rcode === RCODE.NOERROR && !hasData);
    // A negative answer lives min(SOA TTL, MINIMUM) (RFC 2308 §5): its SOA says so to clients too.
    const largest = negative ? clampTtlsAt(wire, offsets, 0, Math.min(o.negativeTtl, info.soaMinimum ?? o.negativeTtl)) : clampTtlsAt(wire, offsets, o.minTtl, o.maxTtl);
    const tagTtlMs = Math.max(largest * 1000, o.tagTtlMs);

    // Default-path answers tag nothing, and take nothing out of a rule's set:
    // otherwise any web page could answer its own name with the address of a
    // tunnel rule's name and pull that address out to the default path.
    if (rule >= 0 && info.addresses.length > 0 && this.d.tagger !== null) {
      // The answer goes out only once the kernel routes its addresses (CNAME
      // targets included: they are the asked name's addresses).
      const ok = await (this.tagLater(rule, info.addresses, tagTtlMs) ?? true);
      if (!ok) return null;
    }

    // Not an answer to CD: with CD a validating upstream skips validation,
    // and bogus data cached here would reach clients that rely on it.
    const cacheable = !info.tc && !q.cd && (info.rcode === RCODE.NOERROR || info.rcode === RCODE.NXDOMAIN);
    if (cacheable) {
      const ttlSeconds = negative ? (info.soaMinimum ?? 0) : (info.minTtl ?? 0);
      this.d.cache.set(path, key, {
        wire,
        ttlOffsets: offsets,
        ttlSeconds,
        negative,
        rcode: info.rcode,
        addresses: info.addresses,
        tagTtlMs: rule >= 0 ? tagTtlMs : 0,
      });
    }
    return { wire, offsets, stale: false, addresses: info.addresses, upstreamMs };
  }

  /** Every upstream failed the question: SERVFAIL from the cache for FAILURE_TTL (see there). */
  private rememberFailure(msg: Buffer, q: ParsedQuery, path: PathName, key: string): void {
    const wire = buildError({ id: 0, rd: true, question: questionBytes(msg, q) }, RCODE.SERVFAIL, { udpSize: EDNS_UDP_SIZE, do: q.edns?.do ?? false });
    this.d.cache.set(path, key, { wire, ttlOffsets: [], ttlSeconds: FAILURE_TTL, negative: true, rcode: RCODE.SERVFAIL, addresses: [], tagTtlMs: 0 });
  }

  /** RFC 8767: the expired entry of `key` with TTLs capped at 30 s (tagged again), or null. */
  private async serveStale(path: PathName, key: string, rule: number): Promise<Outcome | null> {
    const stale = this.d.cache.getStale(path, key);
    // A remembered failure is no answer to fall back on.
    if (stale === null || stale.answer.rcode === RCODE.SERVFAIL) return null;
    this.stats.staleServed++;
    const wire = Buffer.from(stale.answer.wire);
    clampTtlsAt(wire, stale.answer.ttlOffsets, 0, STALE_TTL);
    if (rule >= 0 && stale.answer.addresses.length > 0 && this.d.tagger !== null) {
      if (!(await (this.tagLater(rule, stale.answer.addresses, STALE_TTL * 1000) ?? true))) return null;
    }
    return { wire, offsets: stale.answer.ttlOffsets, stale: true, addresses: stale.answer.addresses, upstreamMs: -1 };
  }

  /** Tags, turning failure into `false` (logged); null when nothing is pending. */
  private tagLater(rule: number, addresses: readonly string[], ttlMs: number): Promise<boolean> | null {
    const p = this.d.tagger!.tag(rule, addresses, Math.max(ttlMs, this.d.options.tagTtlMs));
    if (p === null) return null;
    return p.then(
      () => true,
      (e: unknown) => {
        this.stats.tagFailures++;
        this.throttled.error('tagging failed', { err: e, rule, addresses }, 'tagging failed: answering SERVFAIL rather than routing the name the wrong way');
        return false;
      },
    );
  }

  /** A cache hit, patched for this client. */
  private finish(msg: Buffer, q: ParsedQuery, a: CachedAnswer, age: number, client: Client): Buffer {
    if (q.edns === null) {
      // RFC 6891 §7: no OPT to a client that sent none; derived once per entry.
      if (a.plain === undefined) {
        const wire = ownCopy(removeOpt(a.wire));
        a.plain = { wire, ttlOffsets: ttlOffsets(wire) ?? [] };
      }
      const out = patchResponseAt(a.plain.wire, a.plain.ttlOffsets, q.id, questionBytes(msg, q), age, q.flags, false);
      return client.tcp ? out : truncateForUdp(out, udpLimit(null));
    }
    const out = patchResponseAt(a.wire, a.ttlOffsets, q.id, questionBytes(msg, q), age, q.flags, q.edns.do);
    return client.tcp ? out : truncateForUdp(out, udpLimit(q.edns));
  }

  /** EDNS and size for this client, from a fresh answer. */
  private shape(out: Buffer, q: ParsedQuery, client: Client): Buffer {
    const body = q.edns === null ? removeOpt(out) : out;
    return client.tcp ? body : truncateForUdp(body, udpLimit(q.edns));
  }

  private header(msg: Buffer, q: ParsedQuery): { id: number; rd: boolean; cd: boolean; question: Buffer } {
    return { id: q.id, rd: q.rd, cd: q.cd, question: questionBytes(msg, q) };
  }

  private servfail(msg: Buffer, q: ParsedQuery): Buffer {
    this.stats.servfail++;
    return buildError(this.header(msg, q), RCODE.SERVFAIL, q.edns ? { udpSize: EDNS_UDP_SIZE, do: q.edns.do } : null);
  }

  private synth(msg: Buffer, q: ParsedQuery, rcode: number, client: Client): Buffer {
    const out = buildError(this.header(msg, q), rcode, q.edns ? { udpSize: EDNS_UDP_SIZE, do: q.edns.do } : null);
    return client.tcp ? out : truncateForUdp(out, udpLimit(q.edns));
  }

  /** `via: block`: 0.0.0.0 / :: (NODATA for other types), or NXDOMAIN when configured. */
  private block(msg: Buffer, q: ParsedQuery, client: Client): Buffer {
    this.stats.blocked++;
    if (this.d.options.blockAnswer === 'nxdomain') return this.synth(msg, q, RCODE.NXDOMAIN, client);
    const rdata = q.qclass !== CLASS.IN ? null : q.qtype === TYPE.A ? A_ZERO : q.qtype === TYPE.AAAA ? AAAA_ZERO : null;
    const opt = q.edns ? { udpSize: EDNS_UDP_SIZE, do: q.edns.do } : null;
    return buildRecordAnswer(this.header(msg, q), q.qtype, rdata, BLOCK_TTL, opt);
  }
}
