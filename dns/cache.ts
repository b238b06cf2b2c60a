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
// Stored bytes are copied into a buffer of their own exact size: a slice of
// Node's shared 8 KB pool would keep the whole slab alive per entry.
//
// Answers are stored as wire bytes plus the offsets of their TTL fields, so a
// hit is answered by patching the ID and the TTLs (minus the age) without
// decoding; the Buffer is kept as given (the caller passes its own copy).
import type { Clock } from '../config/logger.js';

export interface CachedAnswer {
  /** The upstream answer as received (the caller's copy). */
  wire: Buffer;
  /** Byte offsets of every RR TTL field in `wire`, to rewrite TTLs on a hit. */
  ttlOffsets: readonly number[];
  /** ms */
  storedAt: number;
  /** ms: fresh while now < expiresAt. */
  expiresAt: number;
  /** ms: may be served stale while now < staleUntil (== expiresAt without serveStale). */
  staleUntil: number;
  negative: boolean;
  rcode: number;
  /** ms: when the addresses' kernel tags expire; the resolver re-tags only near it. 0: not tagged. */
  tagExpiresAt: number;
  addresses: readonly string[];
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

/** What the map holds: the answer plus its path, so flushPath needs no key parsing. */
interface Stored extends CachedAnswer {
  readonly path: string;
  /** Read since it last came to the front of the queue (second chance). */
  used: boolean;
}

export class DnsCache {
  private readonly map = new Map<string, Stored>();
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
      return { answer: e, ageSeconds: ageOf(e, now), stale: false };
    }
    if (now >= e.staleUntil) {
      this.map.delete(key);
      this.expired++;
    }
    this.misses++;
    return null;
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
    return { answer: e, ageSeconds: ageOf(e, now) };
  }

  /**
   * Stores an answer. Positive TTLs are clamped to [minTtl, maxTtl], negative
   * ones to min(ttl, negativeTtl); a TTL of 0 (or a clamp to 0) is not cached
   * and drops what the key held, which the new answer supersedes.
   */
  set(path: string, cacheKey: string, entry: CacheEntryInput): void {
    if (this.capacity === 0) return;
    const key = `${path}|${cacheKey}`;
    const ttlMs = this.ttlMs(entry);
    const had = this.map.delete(key);
    if (ttlMs <= 0) return;
    const now = this.clock.now();
    const expiresAt = now + ttlMs;
    const wire = Buffer.allocUnsafeSlow(entry.wire.length);
    entry.wire.copy(wire);
    const stored: Stored = {
      path,
      used: false,
      wire,
      // Exact-size copies: arrays grown by push keep spare room for 17.
      ttlOffsets: entry.ttlOffsets.slice(),
      storedAt: now,
      expiresAt,
      staleUntil: expiresAt + this.staleMs,
      negative: entry.negative,
      rcode: entry.rcode,
      tagExpiresAt: entry.tagTtlMs > 0 ? now + entry.tagTtlMs : 0,
      addresses: entry.addresses.slice(),
    };
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

  /** Drops entries past `staleUntil` (run periodically); returns how many. */
  sweep(now: number = this.clock.now()): number {
    let n = 0;
    for (const [key, e] of this.map) {
      if (now >= e.staleUntil) {
        this.map.delete(key);
        n++;
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

function ageOf(e: CachedAnswer, now: number): number {
  return Math.max(0, Math.floor((now - e.storedAt) / 1000));
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
