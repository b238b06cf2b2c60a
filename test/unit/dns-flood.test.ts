// What a flood of made-up queries from one LAN client may cost (issue 15):
// questions no resolver should be asked are answered here, a client's misses
// are limited (in flight and per second), loopback is not limited, and the
// lines a flood repeats are logged at a bounded rate with a count.
import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../../config/policy.js';
import type { PathName, Upstream } from '../../config/types.js';
import type { Logger } from '../../lib/logger.js';
import { DnsCache } from '../../dns/cache.js';
import { ClientLimiter, isLoopback } from '../../dns/client-limit.js';
import type { Question } from '../../dns/forwarder.js';
import { localRcode, Resolver, type Client, type PathState } from '../../dns/resolver.js';
import { upstream } from '../helpers/dns.js';
import { ManualClock } from '../helpers/clock.js';

const LAN: Client = { address: '10.99.1.2', tcp: false };
const rcodeOf = (b: Buffer): number => b[3]! & 0xf;

function query(name: string, qtype = 1, qclass = 1, id = 7): Buffer {
  const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });
  // dns-packet knows only some types and classes: the question's last four bytes are set by hand.
  q.writeUInt16BE(qtype, q.length - 4);
  q.writeUInt16BE(qclass, q.length - 2);
  return q;
}

function recorder(): Logger & { lines: { obj: Record<string, unknown>; msg: string }[] } {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const at = (obj: object, msg?: string): void => void lines.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' });
  const l = { lines, trace: at, debug: () => {}, info: at, warn: at, error: at, child: () => l };
  return l;
}

/** A resolver whose upstream holds every question until `answerAll()` (or fails them). */
function setup(o: { limiter?: ClientLimiter | null; fail?: boolean } = {}) {
  const clock = new ManualClock();
  const log = recorder();
  const held: (() => void)[] = [];
  const asked: string[] = [];
  const paths: PathState = { pick: (via) => via[0]!, upstreams: (): Upstream[] => [upstream('10.64.0.1')], ipv6: () => true };
  const resolver = new Resolver({
    policy: () => compilePolicy({ rules: [], default: ['tunnel'] }, new Map()),
    paths,
    upstreams: {
      forward: (q: Buffer, qq: Question, _u: readonly Upstream[], _p: PathName) => {
        asked.push(qq.qname);
        if (o.fail) return Promise.reject(new Error('no answer in 800 ms'));
        return new Promise<Buffer>((resolve) => held.push(() => resolve(dnsPacket.encode({ type: 'response', id: q.readUInt16BE(0), flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name: qq.qname, type: 'A', class: 'IN' }], answers: [] }))));
      },
    },
    tagger: null,
    cache: new DnsCache({ size: 100, minTtl: 0, maxTtl: 86_400, negativeTtl: 0, serveStale: false, staleTtl: 0 }, clock),
    clock,
    logger: log,
    options: { tagTtlMs: 600_000, blockAnswer: 'null', minTtl: 0, maxTtl: 86_400, negativeTtl: 0 },
    ...(o.limiter !== undefined ? { limiter: o.limiter } : {}),
  });
  const answerAll = async (): Promise<void> => {
    for (const f of held.splice(0)) f();
    await new Promise((r) => setImmediate(r));
  };
  return { clock, log, resolver, asked, answerAll };
}

describe('questions no resolver is asked are answered here', () => {
  it('meta types (AXFR, IXFR, TSIG, TKEY, MAILA, MAILB), type 0 and 65535, OPT, unknown classes', () => {
    for (const t of [0, 249, 250, 251, 252, 253, 254, 65535]) expect(localRcode(t, 1)).toBe(4); // NOTIMP
    expect(localRcode(41, 1)).toBe(1); // OPT as a question: FORMERR
    for (const c of [0, 2, 5, 254, 256, 65535]) expect(localRcode(1, c)).toBe(4);
    for (const c of [1, 3, 4, 255]) expect(localRcode(1, c)).toBeNull(); // IN, CH, HS, ANY
    for (const t of [1, 28, 16, 33, 64, 65, 255]) expect(localRcode(t, 1)).toBeNull();
  });

  it('answered NOTIMP with the question echoed, nothing forwarded', async () => {
    const { resolver, asked } = setup();
    for (const [t, c] of [[252, 1], [1, 42], [0, 1]] as const) {
      const out = (await resolver.handle(query('zone.example', t, c), LAN))!;
      expect(rcodeOf(out)).toBe(4);
      expect(out.readUInt16BE(4)).toBe(1); // the question is there
    }
    expect(asked).toEqual([]);
    expect(resolver.stats.refusedLocally).toBe(3);
  });
});

describe('a client\'s share of upstream work', () => {
  it('128 misses in flight from one LAN client: more are dropped (UDP) or refused (TCP) until answers come back', async () => {
    const { resolver, asked, answerAll } = setup();
    const pending = Array.from({ length: 128 }, (_, i) => resolver.handle(query(`n${i}.flood.test`), LAN));
    expect(pending.every((p) => p instanceof Promise)).toBe(true);
    expect(await resolver.handle(query('one-more.flood.test'), LAN)).toBeNull();
    const tcp = (await resolver.handle(query('one-more.flood.test'), { ...LAN, tcp: true }))!;
    expect(rcodeOf(tcp)).toBe(5); // REFUSED: a dropped TCP query would hang the connection
    // Another client is not affected.
    expect(resolver.handle(query('other.test'), { address: '10.99.1.3', tcp: false })).toBeInstanceOf(Promise);
    expect(asked).toHaveLength(129);
    expect(resolver.stats.clientLimited).toBe(2);
    await answerAll();
    await Promise.all(pending);
    // Answered: room again.
    const again = resolver.handle(query('after.flood.test'), LAN);
    expect(again).toBeInstanceOf(Promise);
    await answerAll();
    expect(rcodeOf((await again)!)).toBe(0);
  });

  it('1000 misses a second on average (2000 at once): a flood of made-up names is not forwarded as fast as it comes', async () => {
    const { resolver, asked, answerAll, clock } = setup();
    let n = 0;
    const burst = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) void resolver.handle(query(`r${n++}.flood.test`), LAN);
      await answerAll();
    };
    // 2000 at once (in flight never above 128: answered as they go).
    for (let k = 0; k < 40; k++) await burst(100);
    expect(asked).toHaveLength(2000);
    await burst(100);
    expect(asked).toHaveLength(2000); // the bucket is empty
    await clock.advance(1000);
    for (let k = 0; k < 20; k++) await burst(100);
    expect(asked).toHaveLength(3000); // a second's worth more
  });

  it('this machine\'s own programs (loopback) are not limited', async () => {
    const { resolver, asked } = setup();
    for (let i = 0; i < 300; i++) void resolver.handle(query(`l${i}.test`), { address: '127.0.0.1', tcp: false });
    expect(asked).toHaveLength(300);
    expect(isLoopback('::1') && isLoopback('::ffff:127.0.0.1') && !isLoopback('10.99.1.2')).toBe(true);
  });

  it('the map of clients is bounded: when full, clients with nothing in flight are forgotten', () => {
    const clock = new ManualClock();
    const l = new ClientLimiter(clock, { maxInflight: 2, ratePerSecond: 10, burst: 10, maxClients: 100 });
    for (let i = 0; i < 1000; i++) {
      expect(l.admit(`10.0.${i >> 8}.${i & 255}`)).toBeNull();
      l.release(`10.0.${i >> 8}.${i & 255}`);
    }
    expect(l.size).toBeLessThanOrEqual(100);
  });
});

describe('lines a flood repeats', () => {
  it('"no upstream answered" for 3,180 names: one line at once and one with the count, not 3,180', async () => {
    const { resolver, log, clock } = setup({ limiter: null, fail: true });
    for (let i = 0; i < 3180; i++) await resolver.handle(query(`f${i}.flood.test`), LAN);
    expect(log.lines.filter((l) => l.msg.startsWith('no upstream answered'))).toHaveLength(1);
    await clock.advance(10_000);
    const lines = log.lines.filter((l) => l.msg.startsWith('no upstream answered'));
    expect(lines).toHaveLength(2);
    expect(lines[1]!.obj.suppressed).toBe(3179);
    expect(resolver.stats.upstreamFailures).toBe(3180); // every one still counted
  });
});
