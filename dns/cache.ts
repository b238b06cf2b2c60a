// The resolver's answer cache: pure logic, clock injected.
//
// Keyed per (name, type, class, DO bit, path): the caller builds `cacheKey`
// from the question and the DO bit, and the cache prefixes the path, so the
// same name resolved through two paths never shares an answer (and a failover
// flushes one path without touching the others).
//
// Bound by `size` with second-chance (CLOCK) eviction on a Map whose
// insertion order is the queue: a hit only sets the entry's `used` bit; an
// insert beyond the bound looks at the first key, and a used one is cleared
// and moved to the end instead of going. A close approximation of LRU whose
// hit path writes one boolean: moving every hit to the end of a 100k-entry
// Map (delete + set) cost ~2 µs a hit (measured by `bench dns`), as much as
// the rest of the hit. Entries past their TTL are kept until `staleUntil`
// for serve-stale (RFC 8767) and removed lazily, when a lookup finds them
// too old, or by `sweep`.
//
// Answers are stored as wire bytes plus the offsets of their TTL fields, so a
// hit is answered by patching the ID and the TTLs (minus the age) without
// decoding.
//
// Memory per entry matters (`bench dns` holds 100k names). The bytes are
// kept as a one-byte string (16 bytes plus the answer, in V8's heap); a
// Buffer of its own costs ~250 bytes more (three objects, and past 64 bytes
// a malloc'd store besides). The Buffer the hit path patches is made on the
// first hit and kept while the entry is in use: `sweep` drops them all, and
// the next hit makes its own again (~0.2 µs, once), so an entry nobody asks
// for again has none. An entry is one object of a fixed
// shape whose times past `storedAt` are small integers (unboxed), its key is
// flat, its offset list is shared with every answer of the same shape, and a
// single address is kept without an array. Measured by `bench dns` (heap
// snapshot at 100k names: ~1 KB a cached name before, ~0.4 KB after, the
// tagger's bookkeeping included).
import type { Clock } from '../lib/logger.js';

/** The answer rewritten for clients without EDNS (no OPT record). */
export interface PlainVariant {
  wire: Buffer;
  ttlOffsets: readonly number[];
}

export interface CachedAnswer {
  /** The upstream answer as received (a private copy). */
  readonly wire: Buffer;
  /** Byte offsets of every RR TTL field in `wire`, to rewrite TTLs on a hit. Shared between entries: never mutate. */
  readonly ttlOffsets: readonly number[];
  /** ms */
  readonly storedAt: number;
  /** ms: fresh while now < expiresAt. */
  readonly expiresAt: number;
  /** ms: may be served stale while now < staleUntil (== expiresAt without serveStale). */
  readonly staleUntil: number;
  readonly negative: boolean;
  readonly rcode: number;
  /** ms: when the addresses' kernel tags expire (storedAt + tagTtlMs). 0: not tagged. */
  readonly tagExpiresAt: number;
  /** ms: the lifetime the addresses were tagged with; 0: not tagged. */
  readonly tagTtlMs: number;
  /** A fresh array on every read: hot paths read `addressList`. */
  readonly addresses: readonly string[];
  /** The addresses as stored: one address as itself, otherwise an array (empty: none). */
  readonly addressList: string | readonly string[];
  /** Made by the resolver on the first hit of a client without EDNS; dropped with the entry (and by `sweep`). */
  plain: PlainVariant | undefined;
}

export interface DnsCacheOptions {
  /** Max entries; 0 = no caching. */
  size: number;
  /** seconds */
  minTtl: number;
  /** seconds */
  maxTtl: number;
  /** seconds: cap for RFC 2308 negative caching. */
  negativeTtl: number;
  serveStale: boolean;
  /** seconds an expired answer may still be served when every upstream fails. */
  staleTtl: number;
}

export interface CacheEntryInput {
  wire: Buffer;
  ttlOffsets: readonly number[];
  /** Positive: the minimum RR TTL; negative: the TTL from the SOA (RFC 2308). */
  ttlSeconds: number;
  negative: boolean;
  rcode: number;
  addresses: readonly string[];
  /** The lifetime the addresses were (or are being) tagged with; 0 = not tagged. */
  tagTtlMs: number;
}

export interface DnsCacheStats {
  hits: number;
  misses: number;
  staleHits: number;
  /** Entries dropped to respect `size`. */
  evictions: number;
  /** Entries dropped because they outlived `staleUntil` (lazily or by `sweep`). */
  expired: number;
  entries: number;
}

const NO_ADDRESSES: readonly string[] = Object.freeze([]);

/**
 * What the map holds. Every field is set in the constructor (one hidden
 * class for all entries, so the hit path stays monomorphic); the times that
 * follow from `storedAt` are getters.
 */
class Entry implements CachedAnswer {
  /** Read since it last came to the front of the queue (second chance). */
  used = false;
  plain: PlainVariant | undefined = undefined;
  /** `bytes` as a Buffer: made on the first read, dropped by `cool`. */
  private buffer: Buffer | undefined = undefined;

  constructor(
    /** The path, so flushPath needs no key parsing. */
    readonly path: string,
    /** The wire bytes, one character each (latin1). */
    private readonly bytes: string,
    readonly ttlOffsets: readonly number[],
    readonly addressList: string | readonly string[],
    readonly storedAt: number,
    /** ms: expiresAt - storedAt. */
    readonly ttlMs: number,
    /** ms: staleUntil - expiresAt. */
    readonly staleMs: number,
    readonly tagTtlMs: number,
    readonly negative: boolean,
    readonly rcode: number,
  ) {}

  get wire(): Buffer {
    return (this.buffer ??= bufferOf(this.bytes));
  }

  /** Back to the compact form: the next read makes the Buffer again. */
  cool(): void {
    this.buffer = undefined;
    this.plain = undefined;
  }

  get expiresAt(): number {
    return this.storedAt + this.ttlMs;
  }

  get staleUntil(): number {
    return this.storedAt + this.ttlMs + this.staleMs;
  }

  get tagExpiresAt(): number {
    return this.tagTtlMs > 0 ? this.storedAt + this.tagTtlMs : 0;
  }

  get addresses(): readonly string[] {
    const a = this.addressList;
    return typeof a === 'string' ? [a] : a.slice();
  }
}

/**
 * A Buffer of its own exact size: a slice of Node's shared 8 KB pool (what
 * Buffer.from gives for small strings) would keep the whole slab alive.
 */
function bufferOf(bytes: string): Buffer {
  const b = Buffer.allocUnsafeSlow(bytes.length);
  b.write(bytes, 0, 'latin1');
  return b;
}

/** One address as itself, none as a shared empty array, several as an exact-size copy. */
function compactAddresses(addresses: readonly string[]): string | readonly string[] {
  if (addresses.length === 1) return addresses[0]!;
  return addresses.length === 0 ? NO_ADDRESSES : addresses.slice();
}

/**
 * A flat copy of a key built by concatenation. V8 keeps `a + b` as a tree of
 * 32-byte nodes, and the resolver's key (path, rule, name, type, class, DO)
 * is ~8 of them plus their leaves, ~300 bytes kept for the entry's lifetime;
 * flat, it is one string of 16 bytes plus its length. UTF-16 code units in
 * and out: lossless for any string, and one byte a character when it can be.
 */
function flatKey(key: string): string {
  return Buffer.from(key, 'utf16le').toString('utf16le');
}

/**
 * TTL offset lists shared between entries: answers of the same shape (the
 * same name length and record layout) have the same list, and most answers
 * have one of a few hundred shapes. Bounded: when full it starts over, and
 * entries keep the lists they have.
 */
class OffsetsPool {
  private static readonly MAX = 4096;
  private readonly lists = new Map<string, readonly number[]>();

  intern(offsets: readonly number[]): readonly number[] {
    const key = offsets.join(',');
    const known = this.lists.get(key);
    if (known !== undefined) return known;
    if (this.lists.size >= OffsetsPool.MAX) this.lists.clear();
    // An exact-size copy: arrays grown by push keep spare room. Not frozen:
    // frozen arrays have elements of their own kind, and the hit path would
    // read two kinds (its callers pass fresh arrays too).
    const own = offsets.slice();
    this.lists.set(key, own);
    return own;
  }
}

export class DnsCache {
  private readonly map = new Map<string, Entry>();
  private readonly offsets = new OffsetsPool();
  private readonly capacity: number;
  private readonly minTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly staleMs: number;
  private hits = 0;
  private misses = 0;
  private staleHits = 0;
  private evictions = 0;
  private expired = 0;

  constructor(
    private readonly opts: DnsCacheOptions,
    private readonly clock: Clock,
  ) {
    this.capacity = Math.max(0, Math.floor(opts.size));
    this.minTtlMs = Math.max(0, opts.minTtl) * 1000;
    this.maxTtlMs = Math.max(0, opts.maxTtl) * 1000;
    this.negativeTtlMs = Math.max(0, opts.negativeTtl) * 1000;
    this.staleMs = opts.serveStale ? Math.max(0, opts.staleTtl) * 1000 : 0;
  }

  /** A fresh answer, or null (a miss). Expired answers are left for getStale. */
  get(
    path: string,
    cacheKey: string,
  ): { answer: CachedAnswer; ageSeconds: number; stale: boolean } | null {
    const key = `${path}|${cacheKey}`;
    const e = this.map.get(key);
    if (e === undefined) {
      this.misses++;
      return null;
    }
    const now = this.clock.now();
    if (now < e.expiresAt) {
      e.used = true;
      this.hits++;
      return { answer: e, ageSeconds: ageSeconds(now - e.storedAt), stale: false };
    }
    if (now >= e.staleUntil) {
      this.map.delete(key);
      this.expired++;
    }
    this.misses++;
    return null;
  }

  /**
   * The map's key for (path, cacheKey), flat: a lookup with the same string
   * object reuses its hash. For the UDP fast path, which keeps it.
   */
  keyOf(path: string, cacheKey: string): string {
    return flatKey(`${path}|${cacheKey}`);
  }

  /**
   * A fresh answer by a key from keyOf, or null; no stats, no recency: the
   * UDP fast path calls noteHit once it has answered with it.
   */
  freshByKey(key: string, now: number): CachedAnswer | null {
    const e = this.map.get(key);
    return e !== undefined && now < e.expiresAt ? e : null;
  }

  /** Counts a hit on an answer from freshByKey and marks it used (second chance). */
  noteHit(answer: CachedAnswer): void {
    (answer as Entry).used = true;
    this.hits++;
  }

  /** What the cache holds for a key, fresh or within its stale window; no stats, no recency (explain). */
  peek(path: string, cacheKey: string): CachedAnswer | null {
    const e = this.map.get(`${path}|${cacheKey}`);
    return e !== undefined && this.clock.now() < e.staleUntil ? e : null;
  }

  /**
   * RFC 8767: an answer past its TTL but within `staleTtl`, for when every
   * upstream failed. Null unless serveStale. Does not refresh recency.
   */
  getStale(path: string, cacheKey: string): { answer: CachedAnswer; ageSeconds: number } | null {
    if (!this.opts.serveStale) return null;
    const key = `${path}|${cacheKey}`;
    const e = this.map.get(key);
    if (e === undefined) return null;
    const now = this.clock.now();
    if (now >= e.staleUntil) {
      this.map.delete(key);
      this.expired++;
      return null;
    }
    this.staleHits++;
    return { answer: e, ageSeconds: ageSeconds(now - e.storedAt) };
  }

  /**
   * Stores an answer. Positive TTLs are clamped to [minTtl, maxTtl], negative
   * ones to min(ttl, negativeTtl); a TTL of 0 (or a clamp to 0) is not cached
   * and drops what the key held, which the new answer supersedes.
   */
  set(path: string, cacheKey: string, entry: CacheEntryInput): void {
    if (this.capacity === 0) return;
    const key = flatKey(`${path}|${cacheKey}`);
    const ttlMs = this.ttlMs(entry);
    const had = this.map.delete(key);
    if (ttlMs <= 0) return;
    const stored = new Entry(
      path,
      entry.wire.toString('latin1'),
      this.offsets.intern(entry.ttlOffsets),
      compactAddresses(entry.addresses),
      this.clock.now(),
      ttlMs,
      this.staleMs,
      Math.max(0, entry.tagTtlMs),
      entry.negative,
      entry.rcode,
    );
    // Room is made before the new entry joins the queue, so it is never the one to go.
    if (!had && this.map.size >= this.capacity) this.evictOne();
    this.map.set(key, stored);
  }

  /** Second chance: used entries at the front move to the back (unused); the first unused one goes. */
  private evictOne(): void {
    // Every move clears a bit: after at most size moves an unused entry is at the front.
    for (;;) {
      const first = this.map.entries().next();
      if (first.done) return;
      const [k, e] = first.value;
      this.map.delete(k);
      if (e.used) {
        e.used = false;
        this.map.set(k, e);
        continue;
      }
      this.evictions++;
      return;
    }
  }

  /** Failover: drops one path's entries; returns how many. */
  flushPath(path: string): number {
    let n = 0;
    for (const [key, e] of this.map) {
      // Deleting the current key while iterating a Map is safe.
      if (e.path === path) {
        this.map.delete(key);
        n++;
      }
    }
    return n;
  }

  /** Drops everything; returns how many. */
  flush(): number {
    const n = this.map.size;
    this.map.clear();
    return n;
  }

  /**
   * Drops entries past `staleUntil` (run periodically); returns how many.
   * The others go back to their compact form: only what is asked between
   * two sweeps keeps a Buffer.
   */
  sweep(now: number = this.clock.now()): number {
    let n = 0;
    for (const [key, e] of this.map) {
      if (now >= e.staleUntil) {
        this.map.delete(key);
        n++;
      } else {
        e.cool();
      }
    }
    this.expired += n;
    return n;
  }

  get size(): number {
    return this.map.size;
  }

  stats(): DnsCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      staleHits: this.staleHits,
      evictions: this.evictions,
      expired: this.expired,
      entries: this.map.size,
    };
  }

  private ttlMs(entry: CacheEntryInput): number {
    const ttl = entry.ttlSeconds * 1000;
    if (!(ttl > 0)) return 0; // 0, negative or NaN: not cached
    if (entry.negative) return Math.min(ttl, this.negativeTtlMs);
    return Math.min(Math.max(ttl, this.minTtlMs), this.maxTtlMs);
  }
}

/** Whole seconds since storing (ms in), never negative. */
export function ageSeconds(ms: number): number {
  return Math.max(0, Math.floor(ms / 1000));
}

/**
 * Identical questions in flight share one upstream query. The entry is
 * removed when the query settles, before any waiter sees the outcome, so a
 * rejection reaches every waiter and the next call runs `fn` again.
 */
export class InFlight<T> {
  private readonly pending = new Map<string, Promise<T>>();

  run(key: string, fn: () => Promise<T>): Promise<T> {
    const existing = this.pending.get(key);
    if (existing !== undefined) return existing;
    let started: Promise<T>;
    try {
      started = Promise.resolve(fn());
    } catch (err) {
      started = Promise.reject(err);
    }
    const shared = started.finally(() => {
      if (this.pending.get(key) === shared) this.pending.delete(key);
    });
    this.pending.set(key, shared);
    return shared;
  }

  get size(): number {
    return this.pending.size;
  }
}
