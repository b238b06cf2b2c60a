import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../lib/logger.js';
import { type CacheEntryInput, DnsCache, type DnsCacheOptions, InFlight } from '../../dns/cache.js';
import { ManualClock } from '../helpers/clock.js';

/** A clock that moves only when told to. Timers are not used by the cache. */
class FakeClock implements Clock {
  t = 1_000_000;
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
  }
  setTimeout(): unknown {
    throw new Error('DnsCache must not schedule timers');
  }
  clearTimeout(): void {}
}

const defaults: DnsCacheOptions = {
  size: 100,
  minTtl: 0,
  maxTtl: 86_400,
  negativeTtl: 3600,
  serveStale: false,
  staleTtl: 0,
};

function make(opts: Partial<DnsCacheOptions> = {}): { cache: DnsCache; clock: FakeClock } {
  const clock = new FakeClock();
  return { cache: new DnsCache({ ...defaults, ...opts }, clock), clock };
}

function entry(ttlSeconds: number, over: Partial<CacheEntryInput> = {}): CacheEntryInput {
  return {
    wire: Buffer.from([0, 1, 2, 3]),
    ttlOffsets: [],
    ttlSeconds,
    negative: false,
    rcode: 0,
    addresses: ['192.0.2.1'],
    tagTtlMs: 0,
    ...over,
  };
}

const K = 'example.com|1|1|0';

describe('DnsCache: TTLs', () => {
  it('honours the TTL: fresh until expiresAt, a miss from then on', () => {
    const { cache, clock } = make();
    cache.set('breakout', K, entry(60));
    clock.advance(59_999);
    expect(cache.get('breakout', K)).not.toBeNull();
    clock.advance(1);
    expect(cache.get('breakout', K)).toBeNull();
  });

  it('keeps the answer fields and a private exact-size copy of the wire bytes', () => {
    const { cache, clock } = make();
    const wire = Buffer.from('abc');
    cache.set('tunnel', K, entry(30, { wire, ttlOffsets: [6, 22], rcode: 0, addresses: ['10.0.0.1'] }));
    wire[0] = 0x7a; // the caller's buffer is the caller's
    const hit = cache.get('tunnel', K);
    expect(hit?.answer.wire).toEqual(Buffer.from('abc'));
    expect(hit?.answer.wire.buffer.byteLength).toBe(3); // not a slice of a shared pool slab
    expect(hit?.answer).toMatchObject({
      ttlOffsets: [6, 22],
      storedAt: clock.t,
      expiresAt: clock.t + 30_000,
      staleUntil: clock.t + 30_000,
      negative: false,
      rcode: 0,
      addresses: ['10.0.0.1'],
    });
    expect(hit?.stale).toBe(false);
  });

  it('clamps positive TTLs to [minTtl, maxTtl]', () => {
    const { cache, clock } = make({ minTtl: 30, maxTtl: 300 });
    cache.set('breakout', 'low', entry(5));
    cache.set('breakout', 'high', entry(86_400));
    expect(cache.get('breakout', 'low')?.answer.expiresAt).toBe(clock.t + 30_000);
    expect(cache.get('breakout', 'high')?.answer.expiresAt).toBe(clock.t + 300_000);
    clock.advance(29_999);
    expect(cache.get('breakout', 'low')).not.toBeNull();
    clock.advance(1);
    expect(cache.get('breakout', 'low')).toBeNull();
    clock.advance(300_000 - 30_000 - 1);
    expect(cache.get('breakout', 'high')).not.toBeNull();
    clock.advance(1);
    expect(cache.get('breakout', 'high')).toBeNull();
  });

  it('does not cache TTL 0 answers (even with a minTtl), and a TTL 0 answer drops the old one', () => {
    const { cache } = make({ minTtl: 30 });
    cache.set('breakout', K, entry(0));
    expect(cache.size).toBe(0);
    expect(cache.get('breakout', K)).toBeNull();
    cache.set('breakout', K, entry(60));
    expect(cache.size).toBe(1);
    cache.set('breakout', K, entry(0));
    expect(cache.size).toBe(0);
  });

  it('caches negative answers for min(SOA TTL, negativeTtl), ignoring minTtl and maxTtl', () => {
    const { cache, clock } = make({ minTtl: 60, maxTtl: 120, negativeTtl: 300 });
    cache.set('breakout', 'nx-short', entry(10, { negative: true, rcode: 3, addresses: [] }));
    cache.set('breakout', 'nx-long', entry(3600, { negative: true, rcode: 3, addresses: [] }));
    cache.set('breakout', 'nodata', entry(200, { negative: true, rcode: 0, addresses: [] }));
    const short = cache.get('breakout', 'nx-short');
    expect(short?.answer).toMatchObject({ negative: true, rcode: 3, expiresAt: clock.t + 10_000 });
    expect(cache.get('breakout', 'nx-long')?.answer.expiresAt).toBe(clock.t + 300_000);
    expect(cache.get('breakout', 'nodata')?.answer.expiresAt).toBe(clock.t + 200_000);
    clock.advance(10_000);
    expect(cache.get('breakout', 'nx-short')).toBeNull();
    clock.advance(290_000 - 1);
    expect(cache.get('breakout', 'nx-long')).not.toBeNull();
    clock.advance(1);
    expect(cache.get('breakout', 'nx-long')).toBeNull();
  });

  it('negativeTtl 0 turns negative caching off', () => {
    const { cache } = make({ negativeTtl: 0 });
    cache.set('breakout', K, entry(900, { negative: true, rcode: 3 }));
    expect(cache.size).toBe(0);
  });

  it('computes ageSeconds with floor', () => {
    const { cache, clock } = make();
    cache.set('breakout', K, entry(60));
    expect(cache.get('breakout', K)?.ageSeconds).toBe(0);
    clock.advance(999);
    expect(cache.get('breakout', K)?.ageSeconds).toBe(0);
    clock.advance(1);
    expect(cache.get('breakout', K)?.ageSeconds).toBe(1);
    clock.advance(1_999);
    expect(cache.get('breakout', K)?.ageSeconds).toBe(2);
    clock.advance(57_000);
    expect(cache.get('breakout', K)?.ageSeconds).toBe(59);
  });

  it('sets tagExpiresAt from tagTtlMs (0: untagged)', () => {
    const { cache, clock } = make();
    cache.set('tunnel', 'a', entry(60, { tagTtlMs: 600_000 }));
    cache.set('tunnel', 'b', entry(60));
    expect(cache.get('tunnel', 'a')?.answer).toMatchObject({ tagExpiresAt: clock.t + 600_000, tagTtlMs: 600_000 });
    expect(cache.get('tunnel', 'b')?.answer).toMatchObject({ tagExpiresAt: 0, tagTtlMs: 0 });
    expect(cache.size).toBe(2);
  });
});

describe('DnsCache: compact entries', () => {
  it('keeps every byte value of the answer (stored one character a byte)', () => {
    const { cache } = make();
    const wire = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    cache.set('breakout', K, entry(60, { wire }));
    expect(cache.get('breakout', K)?.answer.wire).toEqual(wire);
  });

  it('makes the Buffer on the first read, keeps it, and makes a new one after a sweep (which drops the no-EDNS variant too)', () => {
    const { cache } = make();
    cache.set('breakout', K, entry(60, { wire: Buffer.from('abcd') }));
    const answer = cache.get('breakout', K)!.answer;
    const first = answer.wire;
    expect(answer.wire).toBe(first);
    answer.plain = { wire: Buffer.from('ab'), ttlOffsets: [] };
    expect(cache.sweep()).toBe(0);
    const again = cache.get('breakout', K)!.answer;
    expect(again.plain).toBeUndefined();
    expect(again.wire).not.toBe(first);
    expect(again.wire).toEqual(Buffer.from('abcd'));
    expect(again.wire.buffer.byteLength).toBe(4);
  });

  it('shares equal TTL offset lists between entries, never the caller\'s array', () => {
    const { cache } = make();
    const offsets = [6, 22];
    cache.set('breakout', 'a', entry(60, { ttlOffsets: offsets }));
    cache.set('tunnel', 'b', entry(60, { ttlOffsets: [6, 22] }));
    cache.set('tunnel', 'c', entry(60, { ttlOffsets: [6, 23] }));
    offsets[0] = 99;
    const a = cache.get('breakout', 'a')!.answer.ttlOffsets;
    expect(a).toEqual([6, 22]);
    expect(cache.get('tunnel', 'b')!.answer.ttlOffsets).toBe(a);
    expect(cache.get('tunnel', 'c')!.answer.ttlOffsets).toEqual([6, 23]);
  });

  it('keeps one address as itself, several in a copy of their own, none as an empty list', () => {
    const { cache } = make();
    const several = ['192.0.2.1', '2001:db8::1'];
    cache.set('breakout', 'one', entry(60, { addresses: ['192.0.2.9'] }));
    cache.set('breakout', 'several', entry(60, { addresses: several }));
    cache.set('breakout', 'none', entry(60, { addresses: [] }));
    several.push('192.0.2.2');
    const one = cache.get('breakout', 'one')!.answer;
    expect(one.addressList).toBe('192.0.2.9');
    expect(one.addresses).toEqual(['192.0.2.9']);
    expect(cache.get('breakout', 'several')!.answer.addresses).toEqual(['192.0.2.1', '2001:db8::1']);
    expect(cache.get('breakout', 'several')!.answer.addressList).toEqual(['192.0.2.1', '2001:db8::1']);
    expect(cache.get('breakout', 'none')!.answer.addresses).toEqual([]);
  });

  it('tells a key from another that differs anywhere in any character (keys are stored flat, losslessly)', () => {
    const { cache } = make();
    const keys = ['0|a.example|1|1|0', '0|a.example|1|1|1', 'ä\u0000|x', 'ä\u0100|x', '\ud800|x', '\udc00|x'];
    keys.forEach((k, i) => cache.set('breakout', k, entry(60, { rcode: i })));
    keys.forEach((k, i) => expect(cache.get('breakout', k)?.answer.rcode).toBe(i));
    expect(cache.get('breakout', '0|a.example|1|1|2')).toBeNull();
  });
});

describe('DnsCache: LRU', () => {
  it('size + 1 inserts evict the least recently inserted when nothing was read', () => {
    const { cache } = make({ size: 3 });
    for (const k of ['a', 'b', 'c', 'd']) cache.set('breakout', k, entry(60));
    expect(cache.size).toBe(3);
    expect(cache.get('breakout', 'a')).toBeNull();
    for (const k of ['b', 'c', 'd']) expect(cache.get('breakout', k)).not.toBeNull();
    expect(cache.stats().evictions).toBe(1);
  });

  it('a read entry gets a second chance: the first unread one in insertion order goes', () => {
    const { cache } = make({ size: 3 });
    for (const k of ['a', 'b', 'c']) cache.set('breakout', k, entry(60));
    expect(cache.get('breakout', 'a')).not.toBeNull(); // a read: spared once
    cache.set('breakout', 'd', entry(60)); // a moves back (bit cleared), b goes; queue c, d, a
    expect(cache.get('breakout', 'b')).toBeNull();
    expect(cache.get('breakout', 'c')).not.toBeNull(); // c read
    expect(cache.get('breakout', 'a')).not.toBeNull(); // a read again
    cache.set('breakout', 'e', entry(60)); // c and a spared, d (never read) goes
    expect(cache.get('breakout', 'd')).toBeNull();
    for (const k of ['a', 'c', 'e']) expect(cache.get('breakout', k)).not.toBeNull();
    expect(cache.size).toBe(3);
  });

  it('when every entry was read, the oldest still goes (bounded work per insert)', () => {
    const { cache } = make({ size: 3 });
    for (const k of ['a', 'b', 'c']) cache.set('breakout', k, entry(60));
    for (const k of ['a', 'b', 'c']) cache.get('breakout', k);
    cache.set('breakout', 'd', entry(60));
    expect(cache.size).toBe(3);
    expect(cache.get('breakout', 'a')).toBeNull();
    expect(cache.stats().evictions).toBe(1);
  });

  it('re-setting a key replaces it in place (no eviction) and makes it most recent', () => {
    const { cache } = make({ size: 2 });
    cache.set('breakout', 'a', entry(60));
    cache.set('breakout', 'b', entry(60));
    cache.set('breakout', 'a', entry(120, { addresses: ['192.0.2.9'] }));
    expect(cache.size).toBe(2);
    expect(cache.stats().evictions).toBe(0);
    cache.set('breakout', 'c', entry(60)); // evicts b
    expect(cache.get('breakout', 'b')).toBeNull();
    expect(cache.get('breakout', 'a')?.answer.addresses).toEqual(['192.0.2.9']);
  });

  it('never holds more than size entries', () => {
    const { cache } = make({ size: 5 });
    for (let i = 0; i < 1000; i++) {
      cache.set(i % 2 ? 'breakout' : 'tunnel', `n${i}`, entry(60));
      expect(cache.size).toBeLessThanOrEqual(5);
    }
    expect(cache.stats().evictions).toBe(995);
  });

  it('size 0 caches nothing', () => {
    const { cache } = make({ size: 0 });
    cache.set('breakout', K, entry(60));
    expect(cache.size).toBe(0);
    expect(cache.get('breakout', K)).toBeNull();
  });

  it('the same key on two paths is two entries', () => {
    const { cache } = make();
    cache.set('breakout', K, entry(60, { addresses: ['198.51.100.1'] }));
    cache.set('gw:home', K, entry(60, { addresses: ['10.1.1.1'] }));
    expect(cache.get('breakout', K)?.answer.addresses).toEqual(['198.51.100.1']);
    expect(cache.get('gw:home', K)?.answer.addresses).toEqual(['10.1.1.1']);
    expect(cache.get('tunnel', K)).toBeNull();
  });
});

describe('DnsCache: serve-stale (RFC 8767)', () => {
  it('serves an expired answer from getStale within staleTtl, never from get', () => {
    const { cache, clock } = make({ serveStale: true, staleTtl: 100 });
    cache.set('tunnel', K, entry(60));
    expect(cache.get('tunnel', K)?.answer.staleUntil).toBe(clock.t + 160_000);
    clock.advance(60_000);
    expect(cache.get('tunnel', K)).toBeNull(); // expired: not a fresh hit
    expect(cache.size).toBe(1); // but kept for serve-stale
    const stale = cache.getStale('tunnel', K);
    expect(stale?.ageSeconds).toBe(60);
    clock.advance(100_000 - 1);
    expect(cache.getStale('tunnel', K)?.ageSeconds).toBe(159);
    clock.advance(1);
    expect(cache.getStale('tunnel', K)).toBeNull();
    expect(cache.size).toBe(0); // removed lazily
  });

  it('getStale returns nothing when serveStale is off, and expired entries go at once', () => {
    const { cache, clock } = make({ serveStale: false, staleTtl: 100 });
    cache.set('tunnel', K, entry(60));
    expect(cache.getStale('tunnel', K)).toBeNull();
    clock.advance(60_000);
    expect(cache.getStale('tunnel', K)).toBeNull();
    expect(cache.get('tunnel', K)).toBeNull();
    expect(cache.size).toBe(0);
  });

  it('sweep drops entries past staleUntil only', () => {
    const { cache, clock } = make({ serveStale: true, staleTtl: 10 });
    cache.set('breakout', 'short', entry(5));
    cache.set('breakout', 'long', entry(60));
    clock.advance(10_000); // short: expired, still stale-servable
    expect(cache.sweep()).toBe(0);
    clock.advance(5_000); // short: past staleUntil
    expect(cache.sweep()).toBe(1);
    expect(cache.size).toBe(1);
    expect(cache.get('breakout', 'long')).not.toBeNull();
    expect(cache.sweep(clock.t + 70_000)).toBe(1);
    expect(cache.size).toBe(0);
    expect(cache.stats().expired).toBe(2);
  });
});

describe('DnsCache: flushing and stats', () => {
  it('flushPath drops only that path', () => {
    const { cache } = make();
    for (const k of ['a', 'b', 'c']) cache.set('tunnel', k, entry(60));
    for (const k of ['a', 'b']) cache.set('breakout', k, entry(60));
    cache.set('gw:home', 'a', entry(60));
    cache.set('gw:home|x', 'a', entry(60)); // a path that shares a prefix
    expect(cache.flushPath('tunnel')).toBe(3);
    expect(cache.flushPath('tunnel')).toBe(0);
    expect(cache.flushPath('gw:home')).toBe(1);
    expect(cache.size).toBe(3);
    expect(cache.get('breakout', 'a')).not.toBeNull();
    expect(cache.get('breakout', 'b')).not.toBeNull();
    expect(cache.get('gw:home|x', 'a')).not.toBeNull();
    expect(cache.get('tunnel', 'a')).toBeNull();
    expect(cache.flush()).toBe(3);
    expect(cache.size).toBe(0);
  });

  it('counts hits, misses, stale hits, evictions and entries', () => {
    const { cache, clock } = make({ size: 2, serveStale: true, staleTtl: 30 });
    cache.set('breakout', 'a', entry(10));
    cache.get('breakout', 'a'); // hit
    cache.get('breakout', 'a'); // hit
    cache.get('breakout', 'zz'); // miss
    clock.advance(10_000);
    cache.get('breakout', 'a'); // miss (expired)
    cache.getStale('breakout', 'a'); // stale hit
    cache.getStale('breakout', 'zz'); // nothing, not counted
    cache.set('breakout', 'b', entry(10));
    cache.set('breakout', 'c', entry(10)); // evicts a
    expect(cache.stats()).toEqual({
      hits: 2,
      misses: 2,
      staleHits: 1,
      evictions: 1,
      expired: 0,
      entries: 2,
    });
  });
});

describe('InFlight', () => {
  it('coalesces 100 concurrent identical questions into one call', async () => {
    const inflight = new InFlight<string>();
    let calls = 0;
    let release!: (v: string) => void;
    const fn = () => {
      calls++;
      return new Promise<string>((r) => (release = r));
    };
    const all = Array.from({ length: 100 }, () => inflight.run('q', fn));
    expect(calls).toBe(1);
    expect(inflight.size).toBe(1);
    release('answer');
    expect(await Promise.all(all)).toEqual(Array(100).fill('answer'));
    expect(inflight.size).toBe(0);
    // Settled: the next call asks again.
    expect(await inflight.run('q', async () => 'again')).toBe('again');
    expect(calls).toBe(1);
  });

  it('keeps different keys apart', async () => {
    const inflight = new InFlight<string>();
    const [a, b] = await Promise.all([
      inflight.run('a', async () => 'A'),
      inflight.run('b', async () => 'B'),
    ]);
    expect([a, b]).toEqual(['A', 'B']);
  });

  it('a rejection reaches every waiter, leaks no entry, and the next call runs fn again', async () => {
    const inflight = new InFlight<string>();
    let calls = 0;
    let fail!: (e: Error) => void;
    const fn = () => {
      calls++;
      return new Promise<string>((_, rej) => (fail = rej));
    };
    const all = Array.from({ length: 100 }, () => inflight.run('q', fn));
    fail(new Error('upstream down'));
    const results = await Promise.allSettled(all);
    expect(results.every((r) => r.status === 'rejected' && (r.reason as Error).message === 'upstream down')).toBe(
      true,
    );
    expect(calls).toBe(1);
    expect(inflight.size).toBe(0);
    expect(await inflight.run('q', async () => { calls++; return 'ok'; })).toBe('ok');
    expect(calls).toBe(2);
  });

  it('a synchronous throw becomes a rejection and leaks nothing', async () => {
    const inflight = new InFlight<number>();
    await expect(
      inflight.run('q', () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(inflight.size).toBe(0);
  });
});

/**
 * A reference model: an array in recency order (least recent first), scanned
 * linearly. It states the contract directly; DnsCache must agree on every hit
 * or miss (and on the age of what it returns).
 */
class ModelCache {
  entries: { key: string; path: string; storedAt: number; exp: number; staleUntil: number; used: boolean }[] = [];
  constructor(
    readonly opts: DnsCacheOptions,
    readonly clock: FakeClock,
  ) {}
  private find(key: string): number {
    return this.entries.findIndex((e) => e.key === key);
  }
  set(path: string, k: string, ttl: number, negative: boolean): void {
    if (this.opts.size === 0) return;
    const key = `${path}|${k}`;
    const i = this.find(key);
    if (i >= 0) this.entries.splice(i, 1);
    let eff = ttl;
    if (ttl <= 0) eff = 0;
    else if (negative) eff = Math.min(ttl, this.opts.negativeTtl);
    else eff = Math.min(Math.max(ttl, this.opts.minTtl), this.opts.maxTtl);
    if (eff <= 0) return;
    const now = this.clock.t;
    const exp = now + eff * 1000;
    const staleUntil = exp + (this.opts.serveStale ? this.opts.staleTtl * 1000 : 0);
    if (i < 0 && this.entries.length >= this.opts.size) {
      // Second chance: a used entry at the front is cleared and moved to the back.
      while (this.entries[0]!.used) {
        const f = this.entries.shift()!;
        f.used = false;
        this.entries.push(f);
      }
      this.entries.shift();
    }
    this.entries.push({ key, path, storedAt: now, exp, staleUntil, used: false });
  }
  get(path: string, k: string): number | null {
    const i = this.find(`${path}|${k}`);
    if (i < 0) return null;
    const e = this.entries[i]!;
    const now = this.clock.t;
    if (now < e.exp) {
      e.used = true;
      return Math.floor((now - e.storedAt) / 1000);
    }
    if (now >= e.staleUntil) this.entries.splice(i, 1);
    return null;
  }
  getStale(path: string, k: string): number | null {
    if (!this.opts.serveStale) return null;
    const i = this.find(`${path}|${k}`);
    if (i < 0) return null;
    const e = this.entries[i]!;
    const now = this.clock.t;
    if (now >= e.staleUntil) {
      this.entries.splice(i, 1);
      return null;
    }
    return Math.floor((now - e.storedAt) / 1000);
  }
  flushPath(path: string): number {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => e.path !== path);
    return before - this.entries.length;
  }
  sweep(): number {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => this.clock.t < e.staleUntil);
    return before - this.entries.length;
  }
}

type Op =
  | { op: 'set'; path: string; key: string; ttl: number; negative: boolean }
  | { op: 'get'; path: string; key: string }
  | { op: 'getStale'; path: string; key: string }
  | { op: 'advance'; ms: number }
  | { op: 'flushPath'; path: string }
  | { op: 'sweep' };

describe('DnsCache: model test', () => {
  // Few keys and paths against a small size, so evictions, re-sets and hits
  // on recently used entries happen often.
  const path = fc.constantFrom('breakout', 'breakout', 'tunnel', 'gw:a');
  const key = fc.constantFrom('a', 'b', 'c', 'd');
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('set' as const),
        path,
        key,
        ttl: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 100, max: 5000 })),
        negative: fc.boolean(),
      }),
    },
    { weight: 5, arbitrary: fc.record({ op: fc.constant('get' as const), path, key }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('getStale' as const), path, key }) },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('advance' as const),
        ms: fc.oneof(
          { weight: 4, arbitrary: fc.integer({ min: 0, max: 2_000 }) },
          { weight: 1, arbitrary: fc.integer({ min: 0, max: 30_000 }) },
        ),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('flushPath' as const), path }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('sweep' as const) }) },
  );
  const opts: fc.Arbitrary<DnsCacheOptions> = fc.record({
    size: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) }),
    minTtl: fc.integer({ min: 0, max: 5 }),
    maxTtl: fc.integer({ min: 5, max: 120 }),
    negativeTtl: fc.integer({ min: 0, max: 15 }),
    serveStale: fc.boolean(),
    staleTtl: fc.integer({ min: 0, max: 20 }),
  });

  it('agrees with the reference model on every hit, miss, age and size', () => {
    fc.assert(
      fc.property(opts, fc.array(op, { minLength: 1, maxLength: 200, size: 'max' }), (o, ops) => {
        const clock = new FakeClock();
        const cache = new DnsCache(o, clock);
        const model = new ModelCache(o, clock);
        let hits = 0;
        let misses = 0;
        let staleHits = 0;
        for (const x of ops) {
          switch (x.op) {
            case 'set':
              cache.set(x.path, x.key, entry(x.ttl, { negative: x.negative }));
              model.set(x.path, x.key, x.ttl, x.negative);
              break;
            case 'get': {
              const want = model.get(x.path, x.key);
              const got = cache.get(x.path, x.key);
              expect(got === null ? null : got.ageSeconds).toBe(want);
              if (want === null) misses++;
              else hits++;
              break;
            }
            case 'getStale': {
              const want = model.getStale(x.path, x.key);
              const got = cache.getStale(x.path, x.key);
              expect(got === null ? null : got.ageSeconds).toBe(want);
              if (want !== null) staleHits++;
              break;
            }
            case 'advance':
              clock.advance(x.ms);
              break;
            case 'flushPath':
              expect(cache.flushPath(x.path)).toBe(model.flushPath(x.path));
              break;
            case 'sweep':
              expect(cache.sweep()).toBe(model.sweep());
              break;
          }
          expect(cache.size).toBe(model.entries.length);
          expect(cache.size).toBeLessThanOrEqual(o.size);
        }
        const s = cache.stats();
        expect([s.hits, s.misses, s.staleHits, s.entries]).toEqual([hits, misses, staleHits, model.entries.length]);
      }),
      { numRuns: 500 },
    );
  });
});

describe('DnsCache: TTLs on the monotonic clock', () => {
  it('a wall-clock step back an hour neither revives an expired answer nor stretches a live one', async () => {
    const clock = new ManualClock();
    const cache = new DnsCache({ ...defaults }, clock);
    cache.set('tunnel', 'a', entry(60));
    cache.set('tunnel', 'b', entry(120));
    await clock.advance(61_000);
    clock.stepWall(-3_600_000);
    expect(cache.get('tunnel', 'a')).toBeNull();
    expect(cache.get('tunnel', 'b')?.ageSeconds).toBe(61);
    clock.stepWall(7_200_000); // and forward: nothing expires early
    expect(cache.get('tunnel', 'b')).not.toBeNull();
    await clock.advance(60_000);
    expect(cache.get('tunnel', 'b')).toBeNull();
  });
});
