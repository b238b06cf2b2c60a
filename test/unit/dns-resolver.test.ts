// The resolve pipeline (dns/resolver.ts) with fakes around it: a policy
// compiled from rules built here, a PathState whose health and resolvers the
// test sets, an upstream that answers with dns-packet and records what it was
// asked (name, type, path, resolver list), a clock that moves only when told
// and FakeTagger (test/helpers/dns.ts), which models the kernel's sets.
//
// Bytes in, bytes out: every assertion reads the answer the client would get.
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDomainPattern } from '../../config/domain.js';
import { parseCidr } from '../../lib/ip.js';
import { silentLogger, type Clock } from '../../lib/logger.js';
import { compilePolicy, type Policy } from '../../config/policy.js';
import type { PathName, RuleConfig, Target, Upstream } from '../../config/types.js';
import { DnsCache, type DnsCacheOptions } from '../../dns/cache.js';
import type { Question } from '../../dns/forwarder.js';
import { FAILURE_TTL, Resolver, reverseAddress, type Client, type NameDetour, type PathState, type ResolverOptions, type RouteTagger, type Upstreams } from '../../dns/resolver.js';
import { FakeTagger, upstream } from '../helpers/dns.js';
import { QueryLog } from '../../dns/query-log.js';

// ---------------------------------------------------------------------------
// Fakes

/** A clock that moves only when told to; timers fire as it passes them. */
class FakeClock implements Clock {
  t = 1_700_000_000_000;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private seq = 0;
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.t;
  }
  boot(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }
}

/** The daemon's view of the paths: which are down, which carry IPv6, their resolvers. */
class FakePaths implements PathState {
  readonly down = new Set<PathName>();
  readonly noIpv6 = new Set<PathName>();
  readonly resolvers: Record<string, Upstream[]> = {
    breakout: [upstream('192.0.2.53'), upstream('192.0.2.54:5353')],
    tunnel: [upstream('10.64.0.1')],
    'gw:gw2': [upstream('10.65.0.1')],
  };
  pick(via: readonly Target[]): Target {
    return via.find((t) => t === 'block' || !this.down.has(t)) ?? via[0]!;
  }
  upstreams(path: PathName): readonly Upstream[] {
    // The kill switch: a path nothing may carry has no resolvers.
    return this.down.has(path) ? [] : (this.resolvers[path] ?? []);
  }
  ipv6(path: PathName): boolean {
    return !this.noIpv6.has(path);
  }
}

interface Asked {
  name: string;
  qtype: number;
  qclass: number;
  path: PathName;
  /** The resolvers it was given, as written in the config. */
  upstreams: string[];
  query: Buffer;
}

/** The forwarder, faked: records each call and answers through `respond`. */
class FakeUpstream implements Upstreams {
  readonly asked: Asked[] = [];
  respond: (query: Buffer, q: Question, path: PathName) => Buffer | Promise<Buffer> = (query, q) =>
    reply(query, { answers: [{ type: 'A', name: q.qname, ttl: 300, data: '192.0.2.1' }] });
  forward(query: Buffer, q: Question, upstreams: readonly Upstream[], path: PathName): Promise<Buffer> {
    this.asked.push({ name: q.qname, qtype: q.qtype, qclass: q.qclass, path, upstreams: upstreams.map((u) => u.text), query });
    return (async () => this.respond(query, q, path))();
  }
  get paths(): PathName[] {
    return this.asked.map((a) => a.path);
  }
}

/** A tagger whose confirmation the test gives (to see that answers wait for it). */
class GateTagger implements RouteTagger {
  readonly calls: { rule: number; addresses: readonly string[]; ttlMs: number }[] = [];
  private release: (() => void)[] = [];
  tag(rule: number, addresses: readonly string[], ttlMs: number): Promise<void> {
    this.calls.push({ rule, addresses, ttlMs });
    return new Promise((r) => this.release.push(r));
  }
  confirm(): void {
    for (const r of this.release.splice(0)) r();
  }
}

// ---------------------------------------------------------------------------
// Messages

const OPT_4096: dnsPacket.Answer = { type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };

interface QueryOpts {
  id?: number;
  edns?: { udpSize?: number; do?: boolean; version?: number } | null;
  klass?: dnsPacket.RecordClass;
  /** The header's flags (default RD only). */
  flags?: number;
}

function query(name: string, type: dnsPacket.RecordType = 'A', o: QueryOpts = {}): Buffer {
  const additionals: dnsPacket.Answer[] = o.edns
    ? [{ type: 'OPT', name: '.', udpPayloadSize: o.edns.udpSize ?? 1232, extendedRcode: 0, ednsVersion: o.edns.version ?? 0, flags: o.edns.do ? dnsPacket.DNSSEC_OK : 0, flag_do: o.edns.do ?? false, options: [] }]
    : [];
  return dnsPacket.encode({
    type: 'query',
    id: o.id ?? 0x1234,
    flags: o.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: o.klass ?? 'IN' }],
    additionals,
  });
}

interface ReplyOpts {
  rcode?: number;
  answers?: dnsPacket.Answer[];
  authorities?: dnsPacket.Answer[];
  tc?: boolean;
  /** Include an OPT record (4096) as EDNS upstreams do; default true. */
  opt?: boolean;
  /** Answer with the question lower-cased (as some upstreams do). */
  lowerQuestion?: boolean;
  /** Header bits to set besides the ones a recursive server sets (AA, AD, Z: 0x40). */
  extraFlags?: number;
  /** Leave RA out (an authoritative-only server). */
  noRa?: boolean;
}

/** An upstream's answer to `q` (the bytes the resolver forwarded). */
function reply(q: Buffer, o: ReplyOpts = {}): Buffer {
  const d = dnsPacket.decode(q);
  const qq = d.questions![0]!;
  // RD and CD are copied from the query, as real servers do (RFC 1035 §4.1.1, RFC 4035 §3.2.2).
  const copied = (d.flags ?? 0) & (dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED);
  return dnsPacket.encode({
    type: 'response',
    id: d.id ?? 0,
    flags: copied | (o.noRa ? 0 : dnsPacket.RECURSION_AVAILABLE) | (o.extraFlags ?? 0) | (o.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (o.rcode ?? 0),
    questions: [{ ...qq, name: o.lowerQuestion ? qq.name.toLowerCase() : qq.name }],
    answers: o.answers ?? [],
    authorities: o.authorities ?? [],
    additionals: o.opt === false ? [] : [OPT_4096],
  });
}

function soa(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return { type: 'SOA', name: zone, ttl, data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum } };
}

const A = (name: string, data: string, ttl = 300): dnsPacket.Answer => ({ type: 'A', name, ttl, data });

const RC = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
const rcodeOf = (b: Buffer): number => b[3]! & 0xf;
const idOf = (b: Buffer): number => b.readUInt16BE(0);
const isTc = (b: Buffer): boolean => (b[2]! & 0x02) !== 0;
const isQr = (b: Buffer): boolean => (b[2]! & 0x80) !== 0;
const RD = dnsPacket.RECURSION_DESIRED;
const CD = dnsPacket.CHECKING_DISABLED;
const AD = dnsPacket.AUTHENTIC_DATA;
/** The header bits a message carries, by dig's names (z: the reserved bit). */
function bitsOf(b: Buffer): string[] {
  const f = b.readUInt16BE(2);
  const names: [number, string][] = [[0x0400, 'aa'], [0x0200, 'tc'], [0x0100, 'rd'], [0x0080, 'ra'], [0x0040, 'z'], [0x0020, 'ad'], [0x0010, 'cd']];
  return names.filter(([bit]) => (f & bit) !== 0).map(([, n]) => n);
}
const decode = (b: Buffer): dnsPacket.DecodedPacket => dnsPacket.decode(b);
const answersOf = (b: Buffer): dnsPacket.Answer[] => decode(b).answers ?? [];
const dataOf = (b: Buffer, type = 'A'): string[] => answersOf(b).filter((a) => a.type === type).map((a) => String((a as { data: unknown }).data));
const ttlsOf = (b: Buffer): number[] => answersOf(b).map((a) => (a as { ttl?: number }).ttl ?? -1);
const optOf = (b: Buffer): dnsPacket.OptAnswer | undefined => (decode(b).additionals ?? []).find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
/** The question section's bytes (one question, uncompressed). */
function questionRaw(b: Buffer): Buffer {
  let o = 12;
  while (b[o]! !== 0) o += b[o]! + 1;
  return b.subarray(12, o + 5);
}

/** The IPv6 reverse name of an address, nibble by nibble. */
function ip6Arpa(words: number[]): string {
  const hex = words.map((w) => w.toString(16).padStart(4, '0')).join('');
  return `${[...hex].reverse().join('.')}.ip6.arpa`;
}

// ---------------------------------------------------------------------------
// Policies

const CFG = '/etc/splitwan/config.yaml';

interface RuleSpec {
  domains?: string[];
  cidrs?: string[];
  sources?: string[];
  via: Target[];
}

function policyOf(specs: RuleSpec[], def: Target[] = ['tunnel']): Policy {
  const rules: RuleConfig[] = specs.map((s, i) => {
    const cidrs = (list: string[] | undefined, key: string) =>
      (list ?? []).map((c, j) => {
        const p = parseCidr(c);
        if ('error' in p) throw new Error(p.error);
        return { cidr: p.text, origin: { keyPath: `rules[${i}].${key}[${j}]`, pos: { file: CFG, line: 10 * i + j + 1, col: 9 } } };
      });
    return {
      index: i,
      domains: (s.domains ?? []).map((d, j) => {
        const p = parseDomainPattern(d);
        if ('error' in p) throw new Error(p.error);
        return { pattern: p.pattern, origin: { keyPath: `rules[${i}].domains[${j}]`, pos: { file: CFG, line: 10 * i + j + 1, col: 9 } } };
      }),
      cidrs: cidrs(s.cidrs, 'cidrs'),
      sources: cidrs(s.sources, 'sources'),
      lists: [],
      via: s.via,
      label: `rule ${i}`,
      pos: { file: CFG, line: 10 * i, col: 5 },
    };
  });
  return compilePolicy({ rules, default: def }, new Map());
}

/** Rule indexes of MAIN. */
const R = { breakout: 0, pinned: 1, ads: 2, cidr4: 3, cidr6: 4, failover: 5, alias: 6 } as const;
const MAIN: RuleSpec[] = [
  { domains: ['breakout.test'], via: ['breakout'] },
  { domains: ['pinned.test'], via: ['gw:gw2'] },
  { domains: ['ads.test'], via: ['block'] },
  { cidrs: ['198.51.100.0/24'], via: ['breakout'] },
  { cidrs: ['2001:db8:5::/48'], via: ['gw:gw2'] },
  { domains: ['failover.test'], via: ['gw:gw2', 'breakout'] },
  { domains: ['alias.test'], via: ['breakout'] },
];

/** Rule indexes of SOURCES (router mode: rules restricted to LAN clients). */
const S = { everything60: 0, src50: 1, breakout: 2, ptr50: 3 } as const;
const SOURCES: RuleSpec[] = [
  { sources: ['192.168.1.60/32'], via: ['breakout'] },
  { domains: ['src.test'], sources: ['192.168.1.50/32'], via: ['gw:gw2'] },
  { domains: ['breakout.test'], via: ['breakout'] },
  { cidrs: ['203.0.113.0/24'], sources: ['192.168.1.50/32'], via: ['gw:gw2'] },
];

// ---------------------------------------------------------------------------
// Setup

const LOCAL: Client = { address: '127.0.0.1', tcp: false };
const TCP: Client = { address: '127.0.0.1', tcp: true };
const lan = (address: string): Client => ({ address, tcp: false });

interface SetupOpts {
  rules?: RuleSpec[];
  default?: Target[];
  options?: Partial<ResolverOptions>;
  cache?: Partial<DnsCacheOptions>;
  tagger?: RouteTagger | null;
  queryLog?: QueryLog;
  detour?: NameDetour;
}

function setup(o: SetupOpts = {}) {
  const clock = new FakeClock();
  const paths = new FakePaths();
  const up = new FakeUpstream();
  const fake = new FakeTagger(clock);
  const tagger = o.tagger === undefined ? fake : o.tagger;
  const cacheOpts: DnsCacheOptions = { size: 1000, minTtl: 0, maxTtl: 86_400, negativeTtl: 900, serveStale: false, staleTtl: 3600, ...o.cache };
  const cache = new DnsCache(cacheOpts, clock);
  const policy = policyOf(o.rules ?? MAIN, o.default ?? ['tunnel']);
  const resolver = new Resolver({
    policy: () => policy,
    paths,
    upstreams: up,
    tagger,
    cache,
    clock,
    logger: silentLogger,
    ...(o.queryLog ? { queryLog: o.queryLog } : {}),
    ...(o.detour ? { detour: o.detour } : {}),
    options: {
      tagTtlMs: 600_000,
      blockAnswer: 'null',
      minTtl: cacheOpts.minTtl,
      maxTtl: cacheOpts.maxTtl,
      negativeTtl: cacheOpts.negativeTtl,
      ...o.options,
    },
  });
  return { resolver, clock, paths, up, tagger: fake, cache, policy };
}

/** The answer the client gets; fails the test when the query was dropped. */
async function ask(r: Resolver, msg: Buffer, client: Client = LOCAL): Promise<Buffer> {
  const out = await r.handle(msg, client);
  if (out === null) throw new Error('the query was dropped');
  return out;
}

// ---------------------------------------------------------------------------

describe('reverseAddress', () => {
  it('reads IPv4 and IPv6 reverse names, and nothing else', () => {
    expect(reverseAddress('5.100.51.198.in-addr.arpa')).toBe('198.51.100.5');
    expect(reverseAddress('0.0.0.0.in-addr.arpa')).toBe('0.0.0.0');
    expect(reverseAddress(ip6Arpa([0x2001, 0xdb8, 5, 0, 0, 0, 0, 1]))).toBe('2001:db8:5::1');
    // A v4-mapped reverse name reads as the mapped address (the policy unmaps it).
    expect(reverseAddress(ip6Arpa([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201]))).toBe('::ffff:c000:201');
    for (const bad of [
      '100.51.198.in-addr.arpa', // a network, not an address
      '1.5.100.51.198.in-addr.arpa',
      '05.100.51.198.in-addr.arpa', // leading zero
      '256.100.51.198.in-addr.arpa',
      'x.100.51.198.in-addr.arpa',
      '.100.51.198.in-addr.arpa',
      ip6Arpa([0x2001, 0xdb8, 5, 0, 0, 0, 0, 1]).slice(2), // 31 nibbles
      ip6Arpa([0x2001, 0xdb8, 5, 0, 0, 0, 0, 1]).replace(/^1/, 'g'),
      'in-addr.arpa',
      'example.com',
    ]) {
      expect(reverseAddress(bad), bad).toBeNull();
    }
  });
});

describe('Resolver: policy → path', () => {
  it('a breakout rule goes to the breakout resolvers through breakout', async () => {
    const { resolver, up } = setup();
    const out = await ask(resolver, query('www.breakout.test'));
    expect(rcodeOf(out)).toBe(RC.NOERROR);
    expect(up.asked).toMatchObject([{ name: 'www.breakout.test', path: 'breakout', upstreams: ['192.0.2.53', '192.0.2.54:5353'] }]);
  });

  it('a name no rule matches takes the default (tunnel) and its resolvers', async () => {
    const { resolver, up } = setup();
    await ask(resolver, query('elsewhere.example'));
    expect(up.asked).toMatchObject([{ name: 'elsewhere.example', path: 'tunnel', upstreams: ['10.64.0.1'] }]);
  });

  it('a name pinned to a gateway goes to that gateway\'s resolvers through it', async () => {
    const { resolver, up } = setup();
    await ask(resolver, query('a.pinned.test'));
    expect(up.asked).toMatchObject([{ path: 'gw:gw2', upstreams: ['10.65.0.1'] }]);
  });

  it('a via list follows PathState.pick, and the two paths do not share cached answers', async () => {
    const { resolver, up, paths } = setup();
    await ask(resolver, query('failover.test'));
    paths.down.add('gw:gw2');
    await ask(resolver, query('failover.test'));
    expect(up.paths).toEqual(['gw:gw2', 'breakout']);
    expect(up.asked[1]!.upstreams).toEqual(['192.0.2.53', '192.0.2.54:5353']);
  });

  it('a default of breakout sends unmatched names to breakout', async () => {
    const { resolver, up } = setup({ default: ['breakout'] });
    await ask(resolver, query('elsewhere.example'));
    expect(up.paths).toEqual(['breakout']);
  });

  it('source rules: the client address picks the rule, and answers are not shared between clients', async () => {
    const { resolver, up, tagger } = setup({ rules: SOURCES });
    const a50 = await ask(resolver, query('src.test', 'A', { id: 1 }), lan('192.168.1.50'));
    expect(idOf(a50)).toBe(1);
    expect(tagger.ruleOf('192.0.2.1')).toBe(S.src50); // tagged with the rule the client matched
    await ask(resolver, query('src.test', 'A', { id: 2 }), lan('192.168.1.51'));
    await ask(resolver, query('src.test', 'A', { id: 3 }), lan('192.168.1.60'));
    await ask(resolver, query('other.example', 'A', { id: 4 }), lan('192.168.1.60'));
    await ask(resolver, query('m.src.test', 'A', { id: 5 }), lan('::ffff:192.168.1.50'));
    await ask(resolver, query('breakout.test', 'A', { id: 6 }), lan('192.168.1.51'));
    expect(up.asked.map((a) => `${a.name} ${a.path}`)).toEqual([
      'src.test gw:gw2',
      'src.test tunnel', // .51 is not in the rule: not given .50's gateway answer from the cache
      'src.test breakout', // .60's source-only rule covers every name
      'other.example breakout',
      'm.src.test gw:gw2', // a v4-mapped client address is the IPv4 client
      'breakout.test breakout', // name rules still apply
    ]);
    // Every answer here is 192.0.2.1: the most recent rule (breakout.test's) holds it now.
    expect(tagger.ruleOf('192.0.2.1')).toBe(S.breakout);
    // .50 again: a hit of its own rule's entry.
    const again = await ask(resolver, query('src.test', 'A', { id: 7 }), lan('192.168.1.50'));
    expect(idOf(again)).toBe(7);
    expect(up.asked).toHaveLength(6);
  });

  it('PTR of an address in a CIDR rule takes that rule\'s path (IPv4 and IPv6), others the default', async () => {
    const { resolver, up } = setup();
    up.respond = (q) => reply(q, { answers: [{ type: 'PTR', name: decode(q).questions![0]!.name, ttl: 300, data: 'host.example' }] });
    const v4 = await ask(resolver, query('5.100.51.198.in-addr.arpa', 'PTR'));
    expect(dataOf(v4, 'PTR')).toEqual(['host.example']);
    await ask(resolver, query(ip6Arpa([0x2001, 0xdb8, 5, 0, 0, 0, 0, 1]), 'PTR'));
    await ask(resolver, query('1.0.0.10.in-addr.arpa', 'PTR'));
    await ask(resolver, query('100.51.198.in-addr.arpa', 'PTR')); // not an address
    await ask(resolver, query(ip6Arpa([0, 0, 0, 0, 0, 0xffff, 0xc633, 0x6405]), 'PTR')); // ::ffff:198.51.100.5
    expect(up.paths).toEqual(['breakout', 'gw:gw2', 'tunnel', 'tunnel', 'breakout']);
  });

  it('PTR with source rules: the CIDR rule applies only to its clients', async () => {
    const { resolver, up } = setup({ rules: SOURCES });
    await ask(resolver, query('7.113.0.203.in-addr.arpa', 'PTR'), lan('192.168.1.50'));
    await ask(resolver, query('7.113.0.203.in-addr.arpa', 'PTR'), lan('192.168.1.51'));
    expect(up.paths).toEqual(['gw:gw2', 'tunnel']);
  });
});

describe('Resolver: kill switch', () => {
  it('a path with no resolvers now answers SERVFAIL and asks nobody', async () => {
    const { resolver, up, paths } = setup();
    paths.down.add('tunnel');
    const out = await ask(resolver, query('secret.example', 'A', { id: 99 }));
    expect(rcodeOf(out)).toBe(RC.SERVFAIL);
    expect(idOf(out)).toBe(99);
    expect(up.asked).toEqual([]);
    expect(resolver.stats.servfail).toBe(1);
    // Breakout names still resolve, through breakout only.
    await ask(resolver, query('breakout.test'));
    expect(up.paths).toEqual(['breakout']);
    // And nothing was cached for the tunnel name: when the tunnel is back, it is asked.
    paths.down.delete('tunnel');
    await ask(resolver, query('secret.example'));
    expect(up.asked.map((a) => `${a.name} ${a.path}`)).toEqual(['breakout.test breakout', 'secret.example tunnel']);
  });
});

describe('Resolver: synthesized answers', () => {
  it('via block: 0.0.0.0 for A, :: for AAAA, NODATA for other types; nothing forwarded', async () => {
    const { resolver, up } = setup();
    const a = await ask(resolver, query('x.ads.test', 'A', { id: 11 }));
    expect(idOf(a)).toBe(11);
    expect(rcodeOf(a)).toBe(RC.NOERROR);
    expect(dataOf(a, 'A')).toEqual(['0.0.0.0']);
    const aaaa = await ask(resolver, query('ads.test', 'AAAA', { edns: {} }));
    expect(dataOf(aaaa, 'AAAA')).toEqual(['::']);
    expect(optOf(aaaa)?.udpPayloadSize).toBe(1232);
    const txt = await ask(resolver, query('ads.test', 'TXT'));
    expect(rcodeOf(txt)).toBe(RC.NOERROR);
    expect(answersOf(txt)).toEqual([]);
    expect(decode(txt).questions).toMatchObject([{ name: 'ads.test', type: 'TXT' }]);
    expect(up.asked).toEqual([]);
    expect(resolver.stats.blocked).toBe(3);
  });

  it('via block with blockAnswer nxdomain: NXDOMAIN', async () => {
    const { resolver, up } = setup({ options: { blockAnswer: 'nxdomain' } });
    for (const t of ['A', 'AAAA', 'TXT'] as const) {
      const out = await ask(resolver, query('ads.test', t));
      expect(rcodeOf(out), t).toBe(RC.NXDOMAIN);
      expect(answersOf(out)).toEqual([]);
    }
    expect(up.asked).toEqual([]);
  });

  it('use-application-dns.net is NXDOMAIN (any case) unless dohCanary is off', async () => {
    const { resolver, up } = setup();
    for (const name of ['use-application-dns.net', 'Use-Application-DNS.NET']) {
      const out = await ask(resolver, query(name));
      expect(rcodeOf(out), name).toBe(RC.NXDOMAIN);
      expect(decode(out).questions![0]!.name).toBe(name);
    }
    expect(up.asked).toEqual([]);
    const off = setup({ options: { dohCanary: false } });
    await ask(off.resolver, query('use-application-dns.net'));
    expect(off.up.asked).toHaveLength(1);
  });

  it('refuseName: NXDOMAIN before any policy, nothing forwarded', async () => {
    const { resolver, up } = setup({ options: { refuseName: (n) => n === 'dns.google' || n.endsWith('.doh.test') } });
    for (const name of ['dns.google', 'a.doh.test', 'DNS.Google']) {
      expect(rcodeOf(await ask(resolver, query(name))), name).toBe(RC.NXDOMAIN);
    }
    expect(up.asked).toEqual([]);
    expect(resolver.stats.blocked).toBe(3);
    await ask(resolver, query('dns.google.example'));
    expect(up.asked).toHaveLength(1);
  });

  it('AAAA on a path without IPv6 is an empty NOERROR; A is forwarded; AAAA on other paths too', async () => {
    const { resolver, up, paths } = setup();
    paths.noIpv6.add('tunnel');
    const out = await ask(resolver, query('v6.example', 'AAAA', { id: 5 }));
    expect(rcodeOf(out)).toBe(RC.NOERROR);
    expect(idOf(out)).toBe(5);
    expect(answersOf(out)).toEqual([]);
    expect(up.asked).toEqual([]);
    await ask(resolver, query('v6.example', 'A'));
    await ask(resolver, query('v6.breakout.test', 'AAAA'));
    expect(up.asked.map((a) => `${a.name} ${a.qtype} ${a.path}`)).toEqual(['v6.example 1 tunnel', 'v6.breakout.test 28 breakout']);
  });

  it('other classes pass through to the path\'s resolvers', async () => {
    const { resolver, up } = setup();
    up.respond = (q) => reply(q, { answers: [{ type: 'TXT', name: 'version.bind', class: 'CH', ttl: 0, data: 'x' }] });
    const out = await ask(resolver, query('version.bind', 'TXT', { klass: 'CH' }));
    expect(rcodeOf(out)).toBe(RC.NOERROR);
    expect(up.asked).toMatchObject([{ name: 'version.bind', qclass: 3 }]);
  });
});

describe('Resolver: cache', () => {
  it('a hit of an untagged (default path) name is answered synchronously: a Buffer, not a Promise', async () => {
    const { resolver, up } = setup();
    const first = resolver.handle(query('plain.example', 'A', { id: 1 }), LOCAL);
    expect(first).toBeInstanceOf(Promise);
    await first;
    const hit = resolver.handle(query('plain.example', 'A', { id: 2 }), LOCAL);
    expect(hit).toBeInstanceOf(Buffer);
    expect(hit).not.toBeInstanceOf(Promise);
    expect(idOf(hit as Buffer)).toBe(2);
    expect(dataOf(hit as Buffer)).toEqual(['192.0.2.1']);
    expect(up.asked).toHaveLength(1);
    expect(resolver.stats).toMatchObject({ queries: 2, hits: 1, misses: 1 });
  });

  it('a hit of a tagged name whose tags are fresh is synchronous too', async () => {
    const { resolver, tagger } = setup();
    await ask(resolver, query('breakout.test'));
    expect(tagger.calls).toBe(1);
    expect(resolver.handle(query('breakout.test'), LOCAL)).toBeInstanceOf(Buffer);
    expect(tagger.calls).toBe(1);
  });

  it('ages TTLs on hits with the clock, and asks again at expiry', async () => {
    const { resolver, up, clock } = setup();
    up.respond = (q) => reply(q, { answers: [A('aging.example', '192.0.2.7', 300)] });
    expect(ttlsOf(await ask(resolver, query('aging.example')))).toEqual([300]);
    clock.advance(100_500);
    expect(ttlsOf(await ask(resolver, query('aging.example')))).toEqual([200]);
    clock.advance(199_000);
    expect(ttlsOf(await ask(resolver, query('aging.example')))).toEqual([1]);
    expect(up.asked).toHaveLength(1);
    clock.advance(500);
    expect(ttlsOf(await ask(resolver, query('aging.example')))).toEqual([300]);
    expect(up.asked).toHaveLength(2);
  });

  it('TTL clamps rewrite the wire TTLs: minTtl, maxTtl, negativeTtl, in every section', async () => {
    const { resolver, up, clock } = setup({ cache: { minTtl: 60, maxTtl: 3600, negativeTtl: 300 } });
    const zone: Record<string, ReplyOpts> = {
      'low.example': { answers: [A('low.example', '192.0.2.1', 5)] },
      'high.example': { answers: [A('high.example', '192.0.2.2', 100_000)], authorities: [{ type: 'NS', name: 'high.example', ttl: 1, data: 'ns.high.example' }] },
      'nx.example': { rcode: RC.NXDOMAIN, authorities: [soa('example', 7200, 7200)] },
    };
    up.respond = (q, qq) => reply(q, zone[qq.qname]!);
    expect(ttlsOf(await ask(resolver, query('low.example')))).toEqual([60]);
    const high = await ask(resolver, query('high.example'));
    expect(ttlsOf(high)).toEqual([3600]);
    expect(decode(high).authorities!.map((a) => (a as { ttl?: number }).ttl)).toEqual([60]);
    const nx = await ask(resolver, query('nx.example'));
    expect(rcodeOf(nx)).toBe(RC.NXDOMAIN);
    expect(decode(nx).authorities!.map((a) => (a as { ttl?: number }).ttl)).toEqual([300]);
    // The cache keeps them exactly as long.
    clock.advance(59_000);
    expect(ttlsOf(await ask(resolver, query('low.example')))).toEqual([1]);
    clock.advance(1000);
    await ask(resolver, query('low.example'));
    expect(up.asked.filter((a) => a.name === 'low.example')).toHaveLength(2);
    clock.advance(239_000); // 299 s since nx.example was cached
    await ask(resolver, query('nx.example'));
    expect(up.asked.filter((a) => a.name === 'nx.example')).toHaveLength(1);
    clock.advance(1000);
    await ask(resolver, query('nx.example'));
    expect(up.asked.filter((a) => a.name === 'nx.example')).toHaveLength(2);
    clock.advance(3_300_000); // 3600 s since high.example
    expect(ttlsOf(await ask(resolver, query('high.example')))).toEqual([3600]);
    expect(up.asked.filter((a) => a.name === 'high.example')).toHaveLength(2);
  });

  it('negative answers are cached for the SOA\'s min(TTL, MINIMUM): NXDOMAIN and NODATA', async () => {
    const { resolver, up, clock } = setup();
    up.respond = (q, qq) =>
      qq.qname === 'nx.example'
        ? reply(q, { rcode: RC.NXDOMAIN, authorities: [soa('example', 600, 120)] })
        : reply(q, { authorities: [soa('example', 60, 3600)] }); // NODATA
    const nx = await ask(resolver, query('nx.example', 'A', { id: 1 }));
    expect(rcodeOf(nx)).toBe(RC.NXDOMAIN);
    const nodata = await ask(resolver, query('nodata.example', 'AAAA'));
    expect(rcodeOf(nodata)).toBe(RC.NOERROR);
    clock.advance(59_000);
    const nx2 = await ask(resolver, query('nx.example', 'A', { id: 2 }));
    expect(rcodeOf(nx2)).toBe(RC.NXDOMAIN);
    expect(idOf(nx2)).toBe(2);
    expect(rcodeOf(await ask(resolver, query('nodata.example', 'AAAA')))).toBe(RC.NOERROR);
    expect(up.asked).toHaveLength(2);
    clock.advance(1000); // 60 s: NODATA expired, NXDOMAIN not
    await ask(resolver, query('nodata.example', 'AAAA'));
    await ask(resolver, query('nx.example'));
    expect(up.asked.map((a) => a.name)).toEqual(['nx.example', 'nodata.example', 'nodata.example']);
    clock.advance(60_000); // 120 s
    await ask(resolver, query('nx.example'));
    expect(up.asked.map((a) => a.name)).toEqual(['nx.example', 'nodata.example', 'nodata.example', 'nx.example']);
  });

  it('negative answers without an SOA are not cached', async () => {
    const { resolver, up, cache } = setup();
    up.respond = (q, qq) => (qq.qname === 'nx.example' ? reply(q, { rcode: RC.NXDOMAIN }) : reply(q, {}));
    for (let i = 0; i < 2; i++) {
      expect(rcodeOf(await ask(resolver, query('nx.example')))).toBe(RC.NXDOMAIN);
      expect(rcodeOf(await ask(resolver, query('nodata.example', 'TXT')))).toBe(RC.NOERROR);
    }
    expect(up.asked).toHaveLength(4);
    expect(cache.size).toBe(0);
  });

  it('SERVFAIL and truncated answers are passed on, an upstream REFUSED becomes SERVFAIL; failures are remembered for FAILURE_TTL, truncated answers not at all', async () => {
    const { resolver, up, cache, clock } = setup();
    up.respond = (q, qq) =>
      qq.qname === 'sf.example'
        ? reply(q, { rcode: RC.SERVFAIL })
        : qq.qname === 'refused.example'
          ? reply(q, { rcode: RC.REFUSED })
          : reply(q, { tc: true });
    const round = async (): Promise<void> => {
      expect(rcodeOf(await ask(resolver, query('sf.example')))).toBe(RC.SERVFAIL);
      // The path's resolvers refusing is a failure to resolve, not splitwan refusing the client.
      expect(rcodeOf(await ask(resolver, query('refused.example')))).toBe(RC.SERVFAIL);
      expect(isTc(await ask(resolver, query('tc.example')))).toBe(true);
    };
    await round();
    expect(up.asked).toHaveLength(3);
    expect(cache.size).toBe(2);
    // Within FAILURE_TTL: the failures come from the cache (the upstream is not asked again), the truncated answer does not.
    clock.advance(FAILURE_TTL * 1000 - 1);
    await round();
    expect(up.asked.map((a) => a.name)).toEqual(['sf.example', 'refused.example', 'tc.example', 'tc.example']);
    // Past it: asked again.
    clock.advance(1);
    await round();
    expect(up.asked.map((a) => a.name).slice(4)).toEqual(['sf.example', 'refused.example', 'tc.example']);
  });

  it('a remembered failure answers every client with its own ID and question, EDNS or not, and goes with negativeTtl 0', async () => {
    const { resolver, up } = setup();
    up.respond = (q) => reply(q, { rcode: RC.REFUSED });
    await ask(resolver, query('down.example', 'A', { id: 1 }));
    const plain = dnsPacket.decode(await ask(resolver, query('Down.Example', 'A', { id: 77 })));
    expect(plain).toMatchObject({ id: 77, rcode: 'SERVFAIL', questions: [{ name: 'Down.Example', type: 'A' }] });
    expect(plain.additionals ?? []).toEqual([]);
    const edns = dnsPacket.decode(await ask(resolver, query('down.example', 'A', { id: 78, edns: {} })));
    expect(edns).toMatchObject({ id: 78, rcode: 'SERVFAIL', additionals: [{ type: 'OPT' }] });
    expect(up.asked).toHaveLength(1);
    const off = setup({ cache: { negativeTtl: 0 } });
    off.up.respond = (q) => reply(q, { rcode: RC.SERVFAIL });
    await ask(off.resolver, query('down.example'));
    await ask(off.resolver, query('down.example'));
    expect(off.up.asked).toHaveLength(2);
  });

  it('a remembered failure never replaces a stale answer, and is not served as one', async () => {
    const { resolver, up, clock } = setup({ cache: { serveStale: true, staleTtl: 3600 } });
    up.respond = (q) => reply(q, { answers: [A('flaky.example', '192.0.2.8', 60)] });
    await ask(resolver, query('flaky.example'));
    clock.advance(120_000);
    up.respond = (q) => reply(q, { rcode: RC.SERVFAIL });
    expect(dataOf(await ask(resolver, query('flaky.example')))).toEqual(['192.0.2.8']);
    expect(dataOf(await ask(resolver, query('flaky.example')))).toEqual(['192.0.2.8']);
    // A name with nothing stale: its failure is remembered, and past FAILURE_TTL it is not "stale data".
    await ask(resolver, query('never.example'));
    clock.advance(FAILURE_TTL * 1000 + 1);
    const asked = up.asked.length;
    expect(rcodeOf(await ask(resolver, query('never.example')))).toBe(RC.SERVFAIL);
    expect(up.asked.length).toBe(asked + 1);
  });

  it('flushPath drops one path\'s answers only', async () => {
    const { resolver, up } = setup();
    await ask(resolver, query('a.example'));
    await ask(resolver, query('b.breakout.test'));
    await ask(resolver, query('c.breakout.test'));
    expect(resolver.flushPath('breakout')).toBe(2);
    await ask(resolver, query('a.example'));
    await ask(resolver, query('b.breakout.test'));
    expect(up.asked.map((a) => a.name)).toEqual(['a.example', 'b.breakout.test', 'c.breakout.test', 'b.breakout.test']);
    expect(resolver.flushPath('gw:gw2')).toBe(0);
  });

  it('coalesces identical questions in flight: one forward for N, each client its own ID and case', async () => {
    const { resolver, up } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    up.respond = async (q) => {
      await gate;
      return reply(q, { answers: [A('co.example', '192.0.2.9')], lowerQuestion: true });
    };
    const names = ['co.example', 'CO.example', 'Co.Example', 'co.EXAMPLE'];
    const pending = Array.from({ length: 20 }, (_, i) => resolver.handle(query(names[i % 4]!, 'A', { id: 1000 + i, edns: i % 2 ? {} : null }), LOCAL));
    for (const p of pending) expect(p).toBeInstanceOf(Promise);
    expect(up.asked).toHaveLength(1);
    expect(resolver.stats.coalesced).toBe(19);
    release();
    const outs = (await Promise.all(pending)) as Buffer[];
    outs.forEach((out, i) => {
      expect(idOf(out)).toBe(1000 + i);
      expect(decode(out).questions![0]!.name).toBe(names[i % 4]);
      expect(dataOf(out)).toEqual(['192.0.2.9']);
      expect(optOf(out) !== undefined).toBe(i % 2 === 1);
    });
    expect(up.asked).toHaveLength(1);
    // A different type is a different question.
    await ask(resolver, query('co.example', 'AAAA'));
    expect(up.asked).toHaveLength(2);
  });

  it('a failed flight is not remembered: the next query asks again', async () => {
    const { resolver, up } = setup();
    up.respond = () => {
      throw new Error('all upstreams timed out');
    };
    const outs = await Promise.all([ask(resolver, query('f.example', 'A', { id: 1 })), ask(resolver, query('f.example', 'A', { id: 2 }))]);
    expect(outs.map(rcodeOf)).toEqual([RC.SERVFAIL, RC.SERVFAIL]);
    expect(outs.map(idOf)).toEqual([1, 2]);
    expect(up.asked).toHaveLength(1);
    up.respond = (q) => reply(q, { answers: [A('f.example', '192.0.2.3')] });
    expect(dataOf(await ask(resolver, query('f.example')))).toEqual(['192.0.2.3']);
    expect(up.asked).toHaveLength(2);
    expect(resolver.stats.upstreamFailures).toBe(1);
  });
});

describe('Resolver: serve-stale', () => {
  const fails = (): never => {
    throw new Error('no upstream answered');
  };

  it('serves an expired answer with TTL 30 when serveStale is on and every upstream fails', async () => {
    const { resolver, up, clock } = setup({ cache: { serveStale: true, staleTtl: 3600 } });
    up.respond = (q) => reply(q, { answers: [A('stale.example', '192.0.2.8', 60), A('stale.example', '192.0.2.18', 20)] });
    await ask(resolver, query('stale.example'));
    clock.advance(120_000);
    up.respond = fails;
    const out = await ask(resolver, query('stale.example', 'A', { id: 77 }));
    expect(rcodeOf(out)).toBe(RC.NOERROR);
    expect(idOf(out)).toBe(77);
    expect(dataOf(out)).toEqual(['192.0.2.8', '192.0.2.18']);
    expect(ttlsOf(out)).toEqual([30, 20]);
    for (const t of ttlsOf(out)) expect(t).toBeLessThanOrEqual(30);
    expect(resolver.stats.staleServed).toBe(1);
    expect(up.asked).toHaveLength(2);
  });

  it('while the upstream answers, an expired answer is refreshed, not served stale', async () => {
    const { resolver, up, clock } = setup({ cache: { serveStale: true, staleTtl: 3600 } });
    up.respond = (q) => reply(q, { answers: [A('stale.example', '192.0.2.8', 60)] });
    await ask(resolver, query('stale.example'));
    clock.advance(120_000);
    up.respond = (q) => reply(q, { answers: [A('stale.example', '192.0.2.9', 60)] });
    const out = await ask(resolver, query('stale.example'));
    expect(dataOf(out)).toEqual(['192.0.2.9']);
    expect(ttlsOf(out)).toEqual([60]);
    expect(resolver.stats.staleServed).toBe(0);
  });

  it('without serveStale, or past staleTtl, a failing upstream means SERVFAIL', async () => {
    for (const [cache, wait] of [
      [{ serveStale: false }, 400_000], // the answer's TTL is 300 s
      [{ serveStale: true, staleTtl: 600 }, 900_000],
    ] as const) {
      const { resolver, up, clock } = setup({ cache });
      await ask(resolver, query('stale.example'));
      clock.advance(wait);
      up.respond = fails;
      expect(rcodeOf(await ask(resolver, query('stale.example')))).toBe(RC.SERVFAIL);
      expect(resolver.stats.staleServed).toBe(0);
    }
  });

  it('serves stale when every upstream answers SERVFAIL (RFC 8767 §4: a failure to refresh)', async () => {
    // The Forwarder returns the last SERVFAIL/REFUSED answer instead of throwing when every upstream gives one.
    const { resolver, up, clock } = setup({ cache: { serveStale: true, staleTtl: 3600 } });
    up.respond = (q) => reply(q, { answers: [A('stale.example', '192.0.2.8', 60)] });
    await ask(resolver, query('stale.example'));
    clock.advance(120_000);
    up.respond = (q) => reply(q, { rcode: RC.SERVFAIL });
    const out = await ask(resolver, query('stale.example'));
    expect(rcodeOf(out)).toBe(RC.NOERROR);
    expect(dataOf(out)).toEqual(['192.0.2.8']);
    expect(ttlsOf(out)).toEqual([30]);
  });
});

describe('Resolver: tagging', () => {
  it('tags a rule\'s addresses (CNAME chain included) with max(largest TTL, tagTtl), never the default path\'s', async () => {
    const { resolver, up, tagger, clock } = setup();
    up.respond = (q, qq) => {
      switch (qq.qname) {
        case 'long.breakout.test':
          return reply(q, { answers: [A(qq.qname, '192.0.2.10', 3600), A(qq.qname, '192.0.2.11', 100)] });
        case 'short.breakout.test':
          return reply(q, { answers: [A(qq.qname, '192.0.2.20', 60)] });
        case 'alias.test':
          return reply(q, {
            answers: [
              { type: 'CNAME', name: 'alias.test', ttl: 300, data: 'edge.cdn.example' },
              A('edge.cdn.example', '203.0.113.7', 20),
            ],
          });
        default:
          return reply(q, { answers: [A(qq.qname, '192.0.2.30', 300)] });
      }
    };
    const expiry = (rule: number, a: string): number => tagger.sets.get(rule)!.get(a)! - clock.now();
    await ask(resolver, query('long.breakout.test'));
    expect(expiry(R.breakout, '192.0.2.10')).toBe(3_600_000);
    expect(expiry(R.breakout, '192.0.2.11')).toBe(3_600_000);
    await ask(resolver, query('short.breakout.test'));
    expect(expiry(R.breakout, '192.0.2.20')).toBe(600_000);
    await ask(resolver, query('alias.test'));
    expect(tagger.ruleOf('203.0.113.7')).toBe(R.alias);
    const calls = tagger.calls;
    await ask(resolver, query('default.example'));
    expect(tagger.calls).toBe(calls);
    expect(tagger.ruleOf('192.0.2.30')).toBeNull();
  });

  it('the answer goes out only once the tagger has confirmed', async () => {
    const gate = new GateTagger();
    const { resolver } = setup({ tagger: gate });
    let settled = false;
    const p = Promise.resolve(resolver.handle(query('breakout.test'), LOCAL)).then((b) => {
      settled = true;
      return b;
    });
    for (let i = 0; i < 20 && gate.calls.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(gate.calls).toEqual([{ rule: R.breakout, addresses: ['192.0.2.1'], ttlMs: 600_000 }]);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    gate.confirm();
    expect(dataOf((await p)!)).toEqual(['192.0.2.1']);
  });

  it('a cache hit re-tags only when the tag is near expiry', async () => {
    const { resolver, up, tagger, clock } = setup();
    up.respond = (q, qq) => reply(q, { answers: [A(qq.qname, '192.0.2.40', 3600)] });
    await ask(resolver, query('breakout.test'));
    expect(tagger.calls).toBe(1);
    clock.advance(1000_000);
    expect(resolver.handle(query('breakout.test'), LOCAL)).toBeInstanceOf(Buffer);
    expect(tagger.calls).toBe(1);
    clock.advance(801_000); // 1801 s: less than half of the tag's 3600 s left
    const hit = resolver.handle(query('breakout.test', 'A', { id: 3 }), LOCAL);
    expect(hit).toBeInstanceOf(Promise);
    expect(idOf((await hit)!)).toBe(3);
    expect(tagger.calls).toBe(2);
    expect(tagger.sets.get(R.breakout)!.get('192.0.2.40')! - clock.now()).toBe(3_600_000);
    clock.advance(1000);
    expect(resolver.handle(query('breakout.test'), LOCAL)).toBeInstanceOf(Buffer);
    expect(tagger.calls).toBe(2);
    expect(up.asked).toHaveLength(1);
  });

  it('a failed tag is SERVFAIL and is not cached', async () => {
    const { resolver, up, tagger, cache } = setup();
    tagger.fail = true;
    const out = await ask(resolver, query('breakout.test', 'A', { id: 8 }));
    expect(rcodeOf(out)).toBe(RC.SERVFAIL);
    expect(idOf(out)).toBe(8);
    expect(resolver.stats.tagFailures).toBe(1);
    expect(cache.size).toBe(0);
    tagger.fail = false;
    expect(dataOf(await ask(resolver, query('breakout.test')))).toEqual(['192.0.2.1']);
    expect(up.asked).toHaveLength(2);
  });

  it('a failed re-tag on a cache hit is SERVFAIL too', async () => {
    const { resolver, up, tagger, clock } = setup();
    up.respond = (q, qq) => reply(q, { answers: [A(qq.qname, '192.0.2.40', 3600)] });
    await ask(resolver, query('breakout.test'));
    clock.advance(1_801_000); // tag: 3600 s, 1799 s left: due for a refresh
    tagger.fail = true;
    expect(rcodeOf(await ask(resolver, query('breakout.test')))).toBe(RC.SERVFAIL);
    expect(resolver.stats.tagFailures).toBe(1);
  });
});

describe('Resolver: malformed queries', () => {
  const header = (id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer => {
    const b = Buffer.alloc(12);
    b.writeUInt16BE(id, 0);
    b.writeUInt16BE(flags, 2);
    b.writeUInt16BE(qd, 4);
    b.writeUInt16BE(an, 6);
    b.writeUInt16BE(ns, 8);
    b.writeUInt16BE(ar, 10);
    return b;
  };

  it('shorter than a header: dropped (null)', () => {
    const { resolver } = setup();
    for (const n of [0, 1, 2, 11]) expect(resolver.handle(Buffer.alloc(n, 0xff), LOCAL)).toBeNull();
    expect(resolver.stats.formerr).toBe(0);
  });

  it('anything else that is not one well-formed question: FORMERR with the ID and RD', async () => {
    const { resolver, up } = setup();
    const twoQuestions = dnsPacket.encode({ type: 'query', id: 3, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'a.example', type: 'A' }, { name: 'b.example', type: 'A' }] });
    const compressedName = Buffer.concat([header(4, 0x0100, 1), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    const missingRecord = Buffer.concat([header(5, 0x0100, 1, 0, 0, 1), query('a.example').subarray(12)]);
    const cases: [string, Buffer, number][] = [
      ['no question', header(2, 0x0100, 0), 2],
      ['two questions', twoQuestions, 3],
      ['a compressed question name', compressedName, 4],
      ['a record count with no record', missingRecord, 5],
      ['a question cut short', query('cut.example', 'A', { id: 6 }).subarray(0, 20), 6],
    ];
    for (const [what, msg, id] of cases) {
      const out = await ask(resolver, msg);
      expect(rcodeOf(out), what).toBe(RC.FORMERR);
      expect(idOf(out), what).toBe(id);
      expect(isQr(out), what).toBe(true);
      expect(out[2]! & 0x01, what).toBe(1); // RD copied
    }
    expect(resolver.stats.formerr).toBe(cases.length);
    expect(up.asked).toEqual([]);
  });

  it('EDNS version 1: BADVERS (extended rcode 16) with an OPT of version 0', async () => {
    const { resolver, up } = setup();
    const out = await ask(resolver, query('v.example', 'A', { id: 9, edns: { version: 1 } }));
    expect(idOf(out)).toBe(9);
    expect(rcodeOf(out)).toBe(0); // low bits of 16
    const opt = optOf(out)!;
    expect(opt.extendedRcode).toBe(1); // 16 >> 4
    expect(opt.ednsVersion).toBe(0);
    expect(opt.udpPayloadSize).toBe(1232);
    expect(up.asked).toEqual([]);
  });
});

describe('Resolver: EDNS, size and case', () => {
  const many = (name: string, n: number): dnsPacket.Answer[] => Array.from({ length: n }, (_, i) => A(name, `10.0.${i >> 8}.${i & 255}`));

  it('a client without EDNS gets no OPT and at most 512 bytes over UDP (TC when bigger), all of it over TCP', async () => {
    const { resolver, up } = setup();
    up.respond = (q, qq) => reply(q, { answers: many(qq.qname, qq.qname.startsWith('big') ? 40 : 2) });
    const small = await ask(resolver, query('small.example'));
    expect(optOf(small)).toBeUndefined();
    expect(small.readUInt16BE(10)).toBe(0);
    expect(dataOf(small)).toHaveLength(2);
    for (let round = 0; round < 2; round++) {
      // round 0: the miss; round 1: the hit (made from the cached EDNS answer)
      const big = await ask(resolver, query('big.example', 'A', { id: 40 + round }));
      expect(big.length).toBeLessThanOrEqual(512);
      expect(isTc(big)).toBe(true);
      expect(idOf(big)).toBe(40 + round);
      expect(answersOf(big)).toEqual([]);
      expect(optOf(big)).toBeUndefined();
      expect(decode(big).questions).toMatchObject([{ name: 'big.example', type: 'A' }]);
      const overTcp = await ask(resolver, query('big.example', 'A', { id: 50 + round }), TCP);
      expect(isTc(overTcp)).toBe(false);
      expect(dataOf(overTcp)).toHaveLength(40);
      expect(optOf(overTcp)).toBeUndefined();
    }
    expect(up.asked.map((a) => a.name)).toEqual(['small.example', 'big.example']);
    // Upstream, the resolver asks with EDNS (1232) anyway.
    const forwarded = optOf(up.asked[0]!.query);
    expect(forwarded?.udpPayloadSize).toBe(1232);
  });

  it('an EDNS client gets an OPT advertising 1232, and TC beyond min(its size, 1232)', async () => {
    const { resolver, up } = setup();
    up.respond = (q, qq) => reply(q, { answers: many(qq.qname, qq.qname.startsWith('big') ? 100 : 40) });
    for (let round = 0; round < 2; round++) {
      const mid = await ask(resolver, query('mid.example', 'A', { edns: { udpSize: 4096 } }));
      expect(isTc(mid)).toBe(false);
      expect(dataOf(mid)).toHaveLength(40);
      expect(optOf(mid)?.udpPayloadSize).toBe(1232);
      const midSmall = await ask(resolver, query('mid.example', 'A', { edns: { udpSize: 512 } }));
      expect(isTc(midSmall)).toBe(true);
      expect(midSmall.length).toBeLessThanOrEqual(512);
      expect(optOf(midSmall)?.udpPayloadSize).toBe(1232);
      const big = await ask(resolver, query('big.example', 'A', { edns: { udpSize: 4096 } }));
      expect(isTc(big)).toBe(true);
      expect(big.length).toBeLessThanOrEqual(1232);
      expect(optOf(big)?.udpPayloadSize).toBe(1232);
      expect(dataOf(await ask(resolver, query('big.example', 'A', { edns: {} }), TCP))).toHaveLength(100);
    }
    expect(up.asked).toHaveLength(2);
  });

  it('a client without EDNS gets no OPT even when the upstream put it before other additional records (RFC 6891 §6.1.1, §7)', async () => {
    const { resolver, up } = setup();
    up.respond = (q, qq) => {
      const d = decode(q);
      return dnsPacket.encode({
        type: 'response',
        id: d.id ?? 0,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: d.questions,
        answers: [{ type: 'MX', name: qq.qname, ttl: 300, data: { preference: 10, exchange: `mx.${qq.qname}` } }],
        additionals: [OPT_4096, A(`mx.${qq.qname}`, '192.0.2.25')], // OPT first: allowed anywhere in the section
      });
    };
    for (let round = 0; round < 2; round++) {
      const plain = await ask(resolver, query('optfirst.example', 'MX'));
      expect(optOf(plain), `round ${round}`).toBeUndefined();
      expect(dataOf(plain, 'MX')).toHaveLength(1);
      const edns = await ask(resolver, query('optfirst.example', 'MX', { edns: {} }));
      expect(optOf(edns)?.udpPayloadSize).toBe(1232);
    }
  });

  it('an EDNS client gets an OPT even when the upstream answer has none (RFC 6891 §7)', async () => {
    const { resolver, up } = setup();
    up.respond = (q, qq) => reply(q, { answers: [A(qq.qname, '192.0.2.5')], opt: false });
    const miss = await ask(resolver, query('noopt.example', 'A', { edns: {} }));
    expect(optOf(miss)?.udpPayloadSize).toBe(1232);
    const hit = await ask(resolver, query('noopt.example', 'A', { edns: {} }));
    expect(optOf(hit)?.udpPayloadSize).toBe(1232);
  });

  it('keeps the client\'s ID and the question as the client wrote it, on a miss and on hits', async () => {
    const { resolver, up } = setup();
    up.respond = (q) => reply(q, { answers: [A('www.mixed.example', '192.0.2.77')], lowerQuestion: true });
    for (const [name, id] of [
      ['WwW.MiXeD.ExAmPlE', 0xbeef],
      ['www.mixed.example', 0],
      ['WWW.MIXED.EXAMPLE', 0xffff],
    ] as const) {
      const q = query(name, 'A', { id });
      const out = await ask(resolver, q);
      expect(idOf(out), name).toBe(id);
      expect(questionRaw(out).equals(questionRaw(q)), name).toBe(true);
      expect(dataOf(out)).toEqual(['192.0.2.77']);
    }
    expect(up.asked).toHaveLength(1);
  });
});

describe('Resolver: header bits of answers (RFC 1035 §4.1.1, RFC 4035 §3.2.2, RFC 6840 §5.8)', () => {
  it('a cached answer carries the asking client\'s RD and CD bits, not the first asker\'s: handle() and answerHit', async () => {
    const { resolver, up } = setup();
    await ask(resolver, query('flags.example', 'A', { flags: RD })); // the first asker: RD, no CD
    for (const flags of [0, CD, RD | CD, RD, 0]) {
      const want = [...(flags & RD ? ['rd'] : []), 'ra', ...(flags & CD ? ['cd'] : [])];
      const full = await ask(resolver, query('flags.example', 'A', { flags, id: flags + 1 }));
      expect([flags, bitsOf(full)]).toEqual([flags, want]);
      const fast = inPlace(resolver, query('flags.example', 'A', { flags, id: flags + 1 }));
      expect(fast).not.toBeNull();
      expect([flags, bitsOf(fast!)]).toEqual([flags, want]);
      expect(fast!.equals(full)).toBe(true);
    }
    expect(up.asked).toHaveLength(1);
  });

  it('coalesced waiters each get their own RD', async () => {
    const { resolver, up } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    up.respond = async (q, qq) => {
      await gate;
      return reply(q, { answers: [A(qq.qname, '192.0.2.9')] });
    };
    const flags = [RD, 0, RD, 0];
    const pending = flags.map((f, i) => resolver.handle(query('co.example', 'A', { id: i, flags: f }), LOCAL));
    release();
    const outs = (await Promise.all(pending)) as Buffer[];
    expect(outs.map(bitsOf)).toEqual(flags.map((f) => [...(f & RD ? ['rd'] : []), 'ra']));
    expect(up.asked).toHaveLength(1);
  });

  it('AD only to a client that asked with AD or DO, whoever asked first', async () => {
    const { resolver, up } = setup();
    // A validating upstream: AD on what it validated.
    up.respond = (q, qq) => reply(q, { answers: [A(qq.qname, '192.0.2.5')], extraFlags: AD });
    await ask(resolver, query('ad.example', 'A', { flags: RD | AD }));
    expect(bitsOf(await ask(resolver, query('ad.example', 'A', { flags: RD })))).toEqual(['rd', 'ra']);
    expect(bitsOf(inPlace(resolver, query('ad.example', 'A', { flags: RD }))!)).toEqual(['rd', 'ra']);
    expect(bitsOf(await ask(resolver, query('ad.example', 'A', { flags: RD | AD })))).toEqual(['rd', 'ra', 'ad']);
    expect(bitsOf(inPlace(resolver, query('ad.example', 'A', { flags: RD | AD }))!)).toEqual(['rd', 'ra', 'ad']);
    await ask(resolver, query('ad.example', 'A', { flags: RD, edns: { do: true } }));
    expect(bitsOf(await ask(resolver, query('ad.example', 'A', { flags: RD, edns: { do: true } })))).toEqual(['rd', 'ra', 'ad']);
    expect(up.asked).toHaveLength(2); // DO is part of the cache key
  });

  it('the forwarded query asks for recursion (RD) and AD whatever the client sent; CD and DO are the client\'s', async () => {
    const { resolver, up } = setup();
    await ask(resolver, query('norec.example', 'A', { flags: 0x40 })); // no RD; the reserved Z bit
    await ask(resolver, query('cd.example', 'A', { flags: CD, edns: { do: true } }));
    const sent = up.asked.map((a) => a.query);
    expect(sent.map(bitsOf)).toEqual([
      ['rd', 'ad'],
      ['rd', 'ad', 'cd'],
    ]);
    expect(sent.map((b) => optOf(b)?.flag_do)).toEqual([false, true]);
    // The client that asked without RD got its answer without RD; the next one, with RD, from the cache.
    expect(bitsOf(await ask(resolver, query('norec.example', 'A', { flags: RD })))).toEqual(['rd', 'ra']);
    expect(up.asked).toHaveLength(2);
  });

  it('an answer fetched with CD (unchecked data) is not cached for clients without CD; a CD client may take a checked one', async () => {
    const { resolver, up } = setup();
    const pending = [resolver.handle(query('bogus.example', 'A', { flags: RD | CD, id: 1 }), LOCAL), resolver.handle(query('bogus.example', 'A', { flags: RD, id: 2 }), LOCAL)];
    await Promise.all(pending);
    await ask(resolver, query('bogus.example', 'A', { flags: RD }));
    // Not coalesced with each other either.
    expect(up.asked.map((a) => bitsOf(a.query).includes('cd'))).toEqual([true, false]);
    // A checked answer is cached now: a CD client is answered from it, with its CD bit.
    expect(bitsOf(await ask(resolver, query('bogus.example', 'A', { flags: RD | CD })))).toEqual(['rd', 'ra', 'cd']);
    expect(up.asked).toHaveLength(2);
  });

  it('answers from an authoritative or odd upstream: AA and Z cleared, RA set (splitwan recurses; it is no authority)', async () => {
    const { resolver, up } = setup();
    up.respond = (q, qq) => reply(q, { answers: [A(qq.qname, '192.0.2.6')], extraFlags: dnsPacket.AUTHORITATIVE_ANSWER | 0x40, noRa: true });
    expect(bitsOf(await ask(resolver, query('auth.example')))).toEqual(['rd', 'ra']);
    expect(bitsOf(await ask(resolver, query('auth.example')))).toEqual(['rd', 'ra']);
    expect(bitsOf(inPlace(resolver, query('auth.example'))!)).toEqual(['rd', 'ra']);
  });

  it('errors made here copy RD and CD for QUERY; an answer to another opcode carries neither, nor RA', async () => {
    const { resolver } = setup();
    const v1 = await ask(resolver, query('v1.example', 'A', { flags: RD | CD, edns: { version: 1 } }));
    expect(bitsOf(v1)).toEqual(['rd', 'ra', 'cd']);
    const notify = query('zone.example', 'SOA', { flags: RD | CD | AD | 0x40 | dnsPacket.AUTHORITATIVE_ANSWER });
    notify[2] = (notify[2]! & 0x87) | (4 << 3); // NOTIFY
    notify[3]! |= 0x80; // RA, which a query never has
    const n = await ask(resolver, notify);
    expect([rcodeOf(n), (n[2]! >> 3) & 0xf, bitsOf(n)]).toEqual([4, 4, []]);
  });
});

// ---------------------------------------------------------------------------
// answerHit: the UDP transport offers each datagram where it lies; cache hits
// are written straight into the send slot. Whatever it answers must be the
// bytes handle() would have answered; everything else it leaves to handle().

/**
 * answerHit on `msg` placed at an odd offset of a bigger buffer, with the
 * answer asked at an offset of another: the answer, or null (-1: handle()'s
 * job). Fails the test if anything was written outside the answer's bytes.
 */
function inPlace(r: Resolver, msg: Buffer, room = 2048): Buffer | null {
  const buf = Buffer.alloc(7 + msg.length + 5, 0xee);
  msg.copy(buf, 7);
  const out = Buffer.alloc(3 + room + 3, 0xaa);
  const n = r.answerHit(buf, 7, msg.length, out, 3, room);
  if (n < 0) {
    expect(n).toBe(-1);
    expect(out.every((b) => b === 0xaa)).toBe(true);
    return null;
  }
  expect(n).toBeLessThanOrEqual(room);
  expect(out.subarray(0, 3).every((b) => b === 0xaa) && out.subarray(3 + n).every((b) => b === 0xaa)).toBe(true);
  return Buffer.from(out.subarray(3, 3 + n));
}

describe('Resolver: answerHit (the UDP fast path)', () => {
  it('answers the repeat of a hit handle() answered, byte for byte as handle() would, and counts it', async () => {
    const { resolver, up, cache } = setup();
    const q = (id: number) => query('plain.example', 'A', { id, edns: {} });
    expect(inPlace(resolver, q(1))).toBeNull(); // never seen
    await ask(resolver, q(1)); // a miss: nothing remembered yet
    expect(inPlace(resolver, q(2))).toBeNull();
    const hit = resolver.handle(q(3), LOCAL) as Buffer; // a hit: remembered
    expect(hit).toBeInstanceOf(Buffer);
    const before = { ...resolver.stats, byRule: [...resolver.stats.byRule] };
    const cacheHits = cache.stats().hits;
    const fast = inPlace(resolver, q(0xbeef))!;
    expect(fast).not.toBeNull();
    expect(idOf(fast)).toBe(0xbeef);
    expect(fast.equals(resolver.handle(q(0xbeef), LOCAL) as Buffer)).toBe(true);
    expect(dataOf(fast)).toEqual(['192.0.2.1']);
    // Counted like a hit of handle(): queries, hits, the path's hits, the rule's (the default: index 0), the cache's.
    expect(resolver.stats.queries - before.queries).toBe(2);
    expect(resolver.stats.hits - before.hits).toBe(2);
    expect(resolver.stats.byPath.tunnel!.hits).toBe(3);
    expect(resolver.stats.byRule[0]! - before.byRule[0]!).toBe(2);
    expect(cache.stats().hits - cacheHits).toBe(2);
    expect(up.asked).toHaveLength(1);
  });

  it('ages TTLs as handle() does; once the answer expires it is handle()\'s again (and the upstream is asked)', async () => {
    const { resolver, up, clock } = setup();
    up.respond = (q) => reply(q, { answers: [A('aging.example', '192.0.2.7', 300)] });
    await ask(resolver, query('aging.example'));
    await ask(resolver, query('aging.example'));
    clock.advance(100_500);
    expect(ttlsOf(inPlace(resolver, query('aging.example'))!)).toEqual([200]);
    clock.advance(199_600);
    expect(inPlace(resolver, query('aging.example'))).toBeNull();
    await ask(resolver, query('aging.example'));
    expect(up.asked).toHaveLength(2);
  });

  it('with and without EDNS, and per DO bit: each shape answered as handle() answers it (OPT or none)', async () => {
    const { resolver } = setup();
    const shapes = [query('shape.example'), query('shape.example', 'A', { edns: {} }), query('shape.example', 'A', { edns: { do: true } })];
    for (const q of shapes) await ask(resolver, q);
    for (const q of shapes) {
      const viaHandle = await ask(resolver, q); // a hit: makes the variant, remembers
      const fast = inPlace(resolver, q);
      expect(fast).not.toBeNull();
      expect(fast!.equals(viaHandle)).toBe(true);
    }
    expect(optOf(inPlace(resolver, shapes[0]!)!)).toBeUndefined();
    expect(optOf(inPlace(resolver, shapes[1]!)!)?.udpPayloadSize).toBe(1232);
  });

  it('leaves to handle(): upper case, two questions, a response, EDNS version 1, other records, trailing bytes, no room, truncation', async () => {
    const { resolver, up } = setup();
    const big = Array.from({ length: 40 }, (_, i) => A('big.example', `192.0.2.${i + 1}`));
    up.respond = (q, qq) => reply(q, { answers: qq.qname === 'big.example' ? big : [A(qq.qname, '192.0.2.1')] });
    for (let i = 0; i < 2; i++) {
      await ask(resolver, query('ok.example'));
      await ask(resolver, query('ok.example', 'A', { edns: {} }));
      await ask(resolver, query('big.example', 'A', { edns: { udpSize: 4096 } }));
      await ask(resolver, query('big.example'));
    }
    expect(inPlace(resolver, query('ok.example'))).not.toBeNull();
    expect(inPlace(resolver, query('OK.example'))).toBeNull();
    const two = dnsPacket.encode({ type: 'query', id: 1, flags: 0, questions: [{ name: 'ok.example', type: 'A' }, { name: 'ok.example', type: 'A' }] });
    expect(inPlace(resolver, two)).toBeNull();
    const response = Buffer.from(query('ok.example'));
    response[2]! |= 0x80;
    expect(inPlace(resolver, response)).toBeNull();
    expect(inPlace(resolver, query('ok.example', 'A', { edns: { version: 1 } }))).toBeNull();
    const withAnswer = dnsPacket.encode({ type: 'query', id: 1, flags: 0, questions: [{ name: 'ok.example', type: 'A' }], answers: [A('ok.example', '192.0.2.9')] });
    expect(inPlace(resolver, withAnswer)).toBeNull();
    expect(inPlace(resolver, Buffer.concat([query('ok.example'), Buffer.from([0])]))).toBeNull();
    expect(inPlace(resolver, query('ok.example'), 20)).toBeNull(); // the answer does not fit the room given
    // 40 records: over 512 bytes, so a client without EDNS gets TC from handle(); within 1232, an EDNS client gets it all.
    expect(inPlace(resolver, query('big.example'))).toBeNull();
    expect(isTc(await ask(resolver, query('big.example')))).toBe(true);
    expect(dataOf(inPlace(resolver, query('big.example', 'A', { edns: { udpSize: 4096 } }))!)).toHaveLength(40);
    expect(inPlace(resolver, query('big.example', 'A', { edns: { udpSize: 512 } }))).toBeNull();
  });

  it('decides again when what decided changes: a failover of the rule\'s pick, a flushed path, forgetFastHits', async () => {
    const { resolver, up, paths } = setup();
    up.respond = (q, qq, path) => reply(q, { answers: [A(qq.qname, path === 'breakout' ? '192.0.2.2' : '10.65.0.2')] });
    await ask(resolver, query('failover.test'));
    await ask(resolver, query('failover.test'));
    expect(dataOf(inPlace(resolver, query('failover.test'))!)).toEqual(['10.65.0.2']);
    paths.down.add('gw:gw2'); // the rule's first candidate fails: breakout now
    expect(inPlace(resolver, query('failover.test'))).toBeNull();
    expect(dataOf(await ask(resolver, query('failover.test')))).toEqual(['192.0.2.2']);
    expect(up.paths).toEqual(['gw:gw2', 'breakout']);
    await ask(resolver, query('failover.test'));
    expect(dataOf(inPlace(resolver, query('failover.test'))!)).toEqual(['192.0.2.2']);
    resolver.flushPath('breakout');
    expect(inPlace(resolver, query('failover.test'))).toBeNull();
    await ask(resolver, query('failover.test'));
    await ask(resolver, query('failover.test'));
    expect(inPlace(resolver, query('failover.test'))).not.toBeNull();
    resolver.forgetFastHits();
    expect(inPlace(resolver, query('failover.test'))).toBeNull();
  });

  it('a new policy (a reload) decides again', async () => {
    const clock = new FakeClock();
    const up = new FakeUpstream();
    const cache = new DnsCache({ size: 100, minTtl: 0, maxTtl: 86_400, negativeTtl: 900, serveStale: false, staleTtl: 0 }, clock);
    let policy = policyOf(MAIN);
    const resolver = new Resolver({
      policy: () => policy,
      paths: new FakePaths(),
      upstreams: up,
      tagger: null,
      cache,
      clock,
      logger: silentLogger,
      options: { tagTtlMs: 600_000, blockAnswer: 'null', minTtl: 0, maxTtl: 86_400, negativeTtl: 900 },
    });
    await ask(resolver, query('moved.example'));
    await ask(resolver, query('moved.example'));
    expect(inPlace(resolver, query('moved.example'))).not.toBeNull();
    policy = policyOf([{ domains: ['moved.example'], via: ['block'] }]);
    expect(inPlace(resolver, query('moved.example'))).toBeNull();
    expect(dataOf(await ask(resolver, query('moved.example')))).toEqual(['0.0.0.0']);
  });

  it('rules that look at the client\'s address: never answered here (each client is decided by handle())', async () => {
    const { resolver } = setup({ rules: SOURCES });
    for (let i = 0; i < 3; i++) await ask(resolver, query('plain.example'), lan('192.168.1.10'));
    expect(inPlace(resolver, query('plain.example'))).toBeNull();
  });

  it('a tagged name: answered here for a second at most, then handle() asks the tagger (and re-tags near expiry)', async () => {
    const { resolver, up, tagger, clock } = setup();
    up.respond = (q, qq) => reply(q, { answers: [A(qq.qname, '192.0.2.40', 3600)] });
    await ask(resolver, query('breakout.test'));
    await ask(resolver, query('breakout.test'));
    expect(inPlace(resolver, query('breakout.test'))).not.toBeNull();
    clock.advance(999);
    expect(inPlace(resolver, query('breakout.test'))).not.toBeNull();
    clock.advance(1);
    expect(inPlace(resolver, query('breakout.test'))).toBeNull();
    clock.advance(1_800_000); // less than half of the tag's 3600 s left
    expect(resolver.handle(query('breakout.test'), LOCAL)).toBeInstanceOf(Promise); // re-tagging: handle() waits for it
    expect(tagger.calls).toBe(2);
  });

  it('whatever it answers is what handle() answers (random names, types, IDs, header bits, EDNS shapes and clock steps)', async () => {
    const { resolver, up, clock } = setup();
    // Some names validated (AD), as a validating upstream would mark them.
    up.respond = (q, qq) =>
      reply(q, {
        answers: qq.qtype === 1 ? [A(qq.qname, '192.0.2.3', 60 + qq.qname.length)] : [],
        authorities: qq.qtype === 1 ? [] : [soa('example', 300, 120)],
        extraFlags: qq.qname.startsWith('a') ? AD : 0,
      });
    const names = ['a.example', 'b.example', 'breakout.test', 'pinned.test', 'x.alias.test', 'Mixed.example'];
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...names),
        fc.constantFrom<dnsPacket.RecordType>('A', 'AAAA', 'TXT'),
        fc.integer({ min: 0, max: 0xffff }),
        fc.constantFrom(RD, 0, CD, RD | CD, RD | AD, AD | CD),
        fc.option(fc.record({ udpSize: fc.integer({ min: 0, max: 4096 }), do: fc.boolean() }), { nil: null }),
        fc.integer({ min: 0, max: 3_000 }),
        async (name, type, id, flags, edns, step) => {
          clock.advance(step);
          const q = query(name, type, { id, flags, edns });
          const fast = inPlace(resolver, q);
          const full = await ask(resolver, q);
          if (fast === null) return;
          answered++;
          expect(fast.equals(full)).toBe(true);
        },
      ),
      { numRuns: 400 },
    );
    expect(answered).toBeGreaterThan(50); // the property was exercised
  });
});

// ---------------------------------------------------------------------------
// The query log: each decision as the record `splitwan log` shows.

describe('Resolver: the query log', () => {
  const logged = (log: QueryLog) => log.latest(100).reverse().map((e) => ({ client: e.client, name: e.name, type: e.type, rule: e.rule, ruleLabel: e.ruleLabel, path: e.path, answers: e.answers, cached: e.cached, rcode: e.rcode, result: e.result }));

  it('records a miss with its upstream latency, the hit after it, and the fast-path hit with the client that asked', async () => {
    const clock0 = { now: () => 0, wall: () => 0 };
    const log = new QueryLog(clock0, { privacy: 'full', size: 100 });
    const { resolver, up, clock } = setup({ queryLog: log });
    up.respond = async (query, q) => {
      clock.advance(42); // the upstream takes 42 ms
      return reply(query, { answers: [A(q.qname, '192.0.2.7')] });
    };
    await ask(resolver, query('breakout.test', 'A', { id: 1, edns: {} }), lan('192.168.1.20'));
    await ask(resolver, query('breakout.test', 'A', { id: 2, edns: {} }), lan('192.168.1.21'));
    const msg = query('breakout.test', 'A', { id: 3, edns: {} });
    const buf = Buffer.from(msg);
    const out = Buffer.alloc(2048);
    expect(resolver.answerHit(buf, 0, buf.length, out, 0, 2048, '192.168.1.22')).toBeGreaterThan(0);
    const rec = { name: 'breakout.test', type: 'A', rule: R.breakout, ruleLabel: 'rule 0', path: 'breakout', answers: ['192.0.2.7'], rcode: 'NOERROR', result: 'answered' };
    expect(logged(log)).toEqual([
      { ...rec, client: '192.168.1.20', cached: false },
      { ...rec, client: '192.168.1.21', cached: true },
      { ...rec, client: '192.168.1.22', cached: true },
    ]);
    const [miss, hit] = log.latest(3).reverse();
    expect(miss!.upstreamMs).toBe(42);
    expect(hit!.upstreamMs).toBeNull();
  });

  it('records blocked, default-path, servfail and locally answered questions with what decided them', async () => {
    const log = new QueryLog({ now: () => 0, wall: () => 0 }, { privacy: 'full', size: 100 });
    const { resolver, up, paths } = setup({ queryLog: log });
    await ask(resolver, query('ads.test'));
    await ask(resolver, query('other.test'));
    paths.down.add('tunnel');
    up.respond = () => Promise.reject(new Error('timeout'));
    await ask(resolver, query('dead.test'));
    await ask(resolver, query('x.test', 'AXFR'));
    expect(logged(log).map((e) => [e.name, e.rule, e.ruleLabel, e.path, e.rcode, e.result])).toEqual([
      ['ads.test', R.ads, 'rule 2', 'block', 'NOERROR', 'blocked'],
      ['other.test', null, 'default', 'tunnel', 'NOERROR', 'answered'],
      ['dead.test', null, 'default', 'tunnel', 'SERVFAIL', 'servfail'],
      ['x.test', null, null, null, 'NOTIMP', 'local'],
    ]);
  });

  it('records nothing when privacy is off', async () => {
    const log = new QueryLog({ now: () => 0, wall: () => 0 }, { privacy: 'off', size: 100 });
    const { resolver } = setup({ queryLog: log });
    await ask(resolver, query('breakout.test'));
    expect(log.count).toBe(0);
    expect(log.latest(10)).toEqual([]);
  });
});

describe('detour (issue 16: a captive portal window)', () => {
  /** The portal's names, from the breakout; admit() waits for the test as the kernel would. */
  class PortalDetour implements NameDetour {
    names = new Set(['portal.hotel']);
    admitted: { name: string; addresses: readonly string[] }[] = [];
    private gate: (() => void)[] = [];
    pathOf(name: string): PathName | null {
      return this.names.has(name) ? 'breakout' : null;
    }
    admit(name: string, addresses: readonly string[]): Promise<void> {
      this.admitted.push({ name, addresses });
      return new Promise((r) => this.gate.push(r));
    }
    open(): void {
      for (const r of this.gate.splice(0)) r();
    }
  }

  it("answers a portal name from the breakout's resolvers though its rule says tunnel (down: no resolver), once its addresses are let through", async () => {
    const detour = new PortalDetour();
    const { resolver, up, paths, tagger } = setup({ detour });
    paths.down.add('tunnel');
    up.respond = (q, qq) => reply(q, { answers: [{ type: 'A', name: qq.qname, ttl: 60, data: '192.0.2.80' }] });
    let answered = false;
    const pending = ask(resolver, query('portal.hotel')).then((b) => ((answered = true), b));
    await new Promise((r) => setTimeout(r, 10));
    expect(answered).toBe(false); // not before the window holds its addresses
    expect(detour.admitted).toEqual([{ name: 'portal.hotel', addresses: ['192.0.2.80'] }]);
    detour.open();
    const out = await pending;
    expect(dataOf(out)).toEqual(['192.0.2.80']);
    expect(up.asked.map((a) => [a.name, a.path, a.upstreams])).toEqual([['portal.hotel', 'breakout', ['192.0.2.53', '192.0.2.54:5353']]]);
    // Nothing tagged into a rule's set: the window is the portal's only way out.
    expect(tagger.calls).toBe(0);
    // Any other name keeps its path: a tunnel name with the tunnel down gets no answer.
    expect(rcodeOf(await ask(resolver, query('web.example')))).toBe(RC.SERVFAIL);
    expect(up.asked).toHaveLength(1);
    // Once closed, the portal's name is a tunnel name again (no cached breakout answer served).
    detour.names.clear();
    expect(rcodeOf(await ask(resolver, query('portal.hotel')))).toBe(RC.SERVFAIL);
  });
});
