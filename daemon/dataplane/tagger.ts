// Installs the addresses the resolver answered into a rule's tag sets, and
// resolves only when the kernel holds them, so the client's first packet
// already takes the right path. Tags that arrive while a transaction is in
// flight are coalesced into the next one: under load, one `nft` line carries
// many answers, and nothing is spawned per answer.
//
// The shadow of what is installed holds an entry per tagged address (100k
// with as many cached names): per set, address → expiry, a number. An object
// per address (set, expiry) with its own copy of the set's name cost ~70
// bytes more an address (`bench dns`, heap snapshot), and a map per set
// makes forgetting a set one delete. Expiries are monotonic (a wall-clock
// step back must not make the shadow think a tag lives that the kernel,
// whose timeouts are monotonic too, has dropped).
//
// A set holds at most TAG_SET_LIMIT addresses (tag-bounds.ts). At the bound
// the expired ones are swept out; if it is still full, an answer that would
// add to it is refused (its waiter rejects with TagSetFullError, so the
// resolver answers SERVFAIL), counted and logged at a bounded rate. Why not
// evict the tag that expires soonest instead: a client may hold that answer
// for its TTL, which the tag was promised to outlive; its next connection
// would leave untagged, by the default path, which for a tunnel rule under
// `default: breakout` is a leak. A refused answer gives the client no
// address to connect to at all: it fails closed.
import { silentLogger, type Clock, type Logger } from '../../lib/logger.js';
import { LogThrottle } from '../../lib/log-throttle.js';
import { TABLE_NAME } from './plan.js';
import { TAG_SET_LIMIT } from './tag-bounds.js';
import { renderElementChanges, type ElementAdd, type ElementChanges, type NftExec } from './nft-session-linux.js';

/** A rule's two sets (IPv4, IPv6), from tagSetNames(). */
export interface TagSets {
  v4: string;
  v6: string;
}

interface Installed {
  set: string;
  expiresAt: number;
}

interface Request {
  sets: TagSets;
  addresses: readonly string[];
  ttlMs: number;
  resolve(): void;
  reject(e: Error): void;
}

const NONE: readonly string[] = Object.freeze([]);
/** A line with no deletes (most: a miss adds). */
const NO_DELETES: ReadonlyMap<string, readonly string[]> = new Map();

/**
 * Which of a rule's two sets an address goes to. The addresses come from
 * answers (formatted by dns/wire.ts): a colon means IPv6. net.isIPv6 is a
 * regular expression, and this runs for every address of every cache hit.
 */
function setFor(sets: TagSets, address: string): string {
  return address.includes(':') ? sets.v6 : sets.v4;
}

/** A tag set is full: the answer is refused rather than left untagged. */
export class TagSetFullError extends Error {
  readonly code = 'SPLITWAN_TAG_SET_FULL';
  constructor(
    readonly set: string,
    readonly limit: number,
  ) {
    super(`tag set ${set} is full (${limit} addresses): the answer is refused rather than routed untagged`);
    this.name = 'TagSetFullError';
  }
}

export interface TaggerOptions {
  /** Addresses a set may hold; default TAG_SET_LIMIT. */
  maxPerSet?: number;
  logger?: Logger;
}

/** A full set is swept for expired entries at most this often (a sweep of a full set reads every entry). */
const FULL_SWEEP_EVERY_MS = 1000;

/** Seconds nft is told; whole seconds, at least one. */
function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

export class NftTagger {
  /**
   * What we installed and until when (ms), per set: nft 1.0.6 has no "delete
   * if present", so moves need it. An address is in one set at most.
   */
  private readonly shadow = new Map<string, Map<string, number>>();
  private queue: Request[] = [];
  private scheduled = false;
  private inFlight = 0;
  /** Transactions run, for status and benchmarks. */
  transactions = 0;
  /** Answers refused because a set they would add to was full (a metric). */
  refusedFull = 0;
  private readonly maxPerSet: number;
  private readonly throttled: LogThrottle;
  /** When each full set was last swept whole. */
  private readonly fullSweptAt = new Map<string, number>();

  /**
   * nft runs lines in order, so several can be in flight at once (a pipeline:
   * no round trip between answers); past this depth, answers wait and
   * coalesce into the next line instead.
   */
  private static readonly DEPTH = 4;

  constructor(
    private readonly nft: NftExec,
    private readonly clock: Clock,
    o: TaggerOptions = {},
  ) {
    this.maxPerSet = o.maxPerSet ?? TAG_SET_LIMIT;
    this.throttled = new LogThrottle(o.logger ?? silentLogger, clock, { windowMs: 60_000 });
  }

  /** Where an address is tagged now, if anywhere (for explain). */
  lookup(address: string): Installed | undefined {
    const i = this.installed(address);
    return i && i.expiresAt > this.clock.now() ? i : undefined;
  }

  /** Where the shadow has an address, expired or not. */
  private installed(address: string): Installed | undefined {
    // forEach, not for-of: an entries iterator makes a [set, map] pair per set, and this runs per tagged address.
    let found: Installed | undefined;
    this.shadow.forEach((m, set) => {
      if (found !== undefined) return;
      const expiresAt = m.get(address);
      if (expiresAt !== undefined) found = { set, expiresAt };
    });
    return found;
  }

  /** Records `address` in `set` until `expiresAt`, and out of any other set. */
  private record(address: string, set: string, expiresAt: number): void {
    this.recordFrom(address, set, expiresAt, this.installed(address));
  }

  /** record(), where the caller knows where the address is now (`was`). */
  private recordFrom(address: string, set: string, expiresAt: number, was: Installed | undefined): void {
    if (was !== undefined && was.set !== set) this.shadow.get(was.set)?.delete(address);
    (this.shadow.get(set) ?? this.shadow.set(set, new Map()).get(set)!).set(address, expiresAt);
  }

  /** Drops expired entries, so the shadow stays the size of what the kernel holds. */
  private sweep(now: number): void {
    for (const [set, m] of this.shadow) {
      for (const [a, expiresAt] of m) if (expiresAt <= now) m.delete(a);
      if (m.size === 0) this.shadow.delete(set);
    }
  }

  /** Where sweepSome() goes on: the set, its map, and an iterator over its entries. */
  private sweepAt: { set: string; map: Map<string, number>; it: Iterator<[string, number]> } | null = null;
  private lastSwept: string | null = null;

  /**
   * Looks at up to `budget` entries of the shadow for expired ones, going on
   * where the last call stopped (a Map's iterator survives deletes and sees
   * additions). Every transaction sweeps a few: the whole shadow at once
   * (100k entries) held the event loop ~2 ms, and every answer behind it.
   */
  private sweepSome(now: number, budget: number): void {
    let switches = this.shadow.size + 1;
    while (budget > 0) {
      if (this.sweepAt === null) {
        // Next set: the one after the last, in the shadow's order (or the first).
        if (this.shadow.size === 0 || switches-- === 0) return;
        const sets = [...this.shadow.keys()];
        const last = this.lastSwept === null ? -1 : sets.indexOf(this.lastSwept);
        const set = sets[(last + 1) % sets.length]!;
        const map = this.shadow.get(set)!;
        this.sweepAt = { set, map, it: map.entries() };
        this.lastSwept = set;
      }
      // The set may have been dropped (and made anew) since: then its old iterator is done with.
      const m = this.shadow.get(this.sweepAt.set) === this.sweepAt.map ? this.sweepAt.map : undefined;
      const n = m === undefined ? undefined : this.sweepAt.it.next();
      if (m === undefined || n === undefined || n.done) {
        if (m !== undefined && m.size === 0) this.shadow.delete(this.sweepAt.set);
        this.sweepAt = null;
        continue;
      }
      budget--;
      if (n.value[1] <= now) m.delete(n.value[0]);
    }
  }

  /** Entries in the shadow, expired ones not yet swept included (for tests and status). */
  get shadowEntries(): number {
    let n = 0;
    for (const m of this.shadow.values()) n += m.size;
    return n;
  }

  /** Addresses tagged now, per set (status and metrics). */
  countsBySet(): Map<string, number> {
    this.sweep(this.clock.now());
    const out = new Map<string, number>();
    for (const [set, m] of this.shadow) out.set(set, m.size);
    return out;
  }

  /** Forgets a set (its rule was removed; the ruleset deleted the set). */
  forgetSet(set: string): void {
    this.shadow.delete(set);
    this.fullSweptAt.delete(set);
    if (this.sweepAt?.set === set) this.sweepAt = null;
  }

  /** Forgets everything (the table was re-created empty, e.g. after a repair). */
  reset(): void {
    this.shadow.clear();
    this.fullSweptAt.clear();
    this.sweepAt = null;
  }

  /**
   * The addresses `tag` would send: not in `sets`, or there for less than
   * half of `ttlMs`. Every cache hit of a tagged name asks, and most of the
   * time the answer is none: then nothing is allocated.
   */
  pending(sets: TagSets, addresses: readonly string[], ttlMs: number): readonly string[] {
    const now = this.clock.now();
    let out: string[] | null = null;
    for (let k = 0; k < addresses.length; k++) {
      const a = addresses[k]!;
      const expiresAt = this.shadow.get(setFor(sets, a))?.get(a);
      if (expiresAt !== undefined && expiresAt - now >= ttlMs / 2) continue;
      (out ??= []).push(a);
    }
    return out ?? NONE;
  }

  /**
   * Tags `addresses` into `sets` for `ttlMs`; resolves when nft has them.
   * An address already tagged there for at least half that long again is
   * not sent (a cache hit re-tags only near expiry).
   */
  tag(sets: TagSets, addresses: readonly string[], ttlMs: number): Promise<void> {
    const todo = this.pending(sets, addresses, ttlMs);
    if (todo.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ sets, addresses: todo, ttlMs, resolve, reject });
      this.schedule();
    });
  }

  /** Sends what is queued at the end of this tick: answers of the same tick share a line. */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= NftTagger.DEPTH) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (this.queue.length === 0 || this.inFlight >= NftTagger.DEPTH) return;
      const batch = this.queue;
      this.queue = [];
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        if (this.queue.length) this.schedule();
      });
    });
  }

  /**
   * The requests whose new addresses fit their sets (room reserved in
   * order); the others are rejected with TagSetFullError. Addresses already
   * in the set (refreshes) always fit.
   */
  private admit(batch: Request[]): Request[] {
    const now = this.clock.now();
    // Every miss is a batch of one request of one address, most of the time:
    // nothing here is allocated for that case but the result.
    let growth: Map<string, Set<string>> | null = null;
    const room = (set: string): number => this.maxPerSet - (this.shadow.get(set)?.size ?? 0) - (growth?.get(set)?.size ?? 0);
    const isNew = (set: string, a: string): boolean => !(this.shadow.get(set)?.has(a) || growth?.get(set)?.has(a));
    const out: Request[] = [];
    for (const r of batch) {
      let add: Map<string, string[]> | null = null;
      let one: { set: string; a: string } | null = null;
      if (r.addresses.length === 1) {
        const a = r.addresses[0]!;
        const set = setFor(r.sets, a);
        if (isNew(set, a)) one = { set, a };
      } else {
        for (const a of r.addresses) {
          const set = setFor(r.sets, a);
          if (!isNew(set, a)) continue;
          add ??= new Map();
          (add.get(set) ?? add.set(set, []).get(set)!).push(a);
        }
      }
      let full: string | null = null;
      const fits = (set: string, n: number): boolean => {
        if (room(set) < n) this.sweepFull(set, now);
        return room(set) >= n;
      };
      if (one !== null && !fits(one.set, 1)) full = one.set;
      if (add !== null) {
        for (const [set, as] of add) {
          if (!fits(set, as.length)) {
            full = set;
            break;
          }
        }
      }
      if (full !== null) {
        this.refusedFull++;
        this.throttled.warn(`full ${full}`, { set: full, limit: this.maxPerSet }, `tag set ${full} is full (${this.maxPerSet} addresses): answers that would add to it get SERVFAIL rather than an untagged address`);
        r.reject(new TagSetFullError(full, this.maxPerSet));
        continue;
      }
      // Room taken by this request, for the next ones of the batch (none: nobody asks).
      if (batch.length > 1) {
        growth ??= new Map();
        const g = growth;
        const take = (set: string, a: string): void => void (g.get(set) ?? g.set(set, new Set()).get(set)!).add(a);
        if (one !== null) take(one.set, one.a);
        if (add !== null) for (const [set, as] of add) for (const a of as) take(set, a);
      }
      out.push(r);
    }
    return out;
  }

  /** Drops every expired entry of one set (at most once a FULL_SWEEP_EVERY_MS). */
  private sweepFull(set: string, now: number): void {
    const m = this.shadow.get(set);
    if (m === undefined || now - (this.fullSweptAt.get(set) ?? -Infinity) < FULL_SWEEP_EVERY_MS) return;
    this.fullSweptAt.set(set, now);
    for (const [a, expiresAt] of m) if (expiresAt <= now) m.delete(a);
  }

  private async run(all: Request[]): Promise<void> {
    const batch = this.admit(all);
    if (batch.length === 0) return;
    try {
      await this.apply(batch);
      for (const r of batch) r.resolve();
    } catch (e) {
      if (batch.length === 1) return this.failed(batch[0]!, e as Error);
      // One bad element fails the whole line; retry each request alone so
      // only the culprit's answer is affected.
      for (const r of batch) {
        try {
          await this.apply([r]);
          r.resolve();
        } catch (e2) {
          this.failed(r, e2 as Error);
        }
      }
    }
  }

  /** apply() already put the shadow back as it was; only the answer's waiter is told. */
  private failed(r: Request, e: Error): void {
    r.reject(e);
  }

  /** Renders one transaction for `batch`, runs it, and records what is installed. */
  private async apply(batch: Request[]): Promise<void> {
    const now = this.clock.now();
    // Per address (in order of first appearance): its set and lifetime; the last request wins for an address asked into two sets.
    const addrs: string[] = [];
    const setOf: string[] = [];
    const ttlOf: number[] = [];
    let seen: Map<string, number> | null = null;
    const unique = batch.length === 1 && batch[0]!.addresses.length === 1;
    for (const r of batch) {
      for (const a of r.addresses) {
        if (!unique) {
          const at = (seen ??= new Map()).get(a);
          if (at !== undefined) {
            setOf[at] = setFor(r.sets, a);
            ttlOf[at] = r.ttlMs;
            continue;
          }
          seen.set(a, addrs.length);
        }
        addrs.push(a);
        setOf.push(setFor(r.sets, a));
        ttlOf.push(r.ttlMs);
      }
    }
    /** Where each address was before this line: what a failed line puts back. */
    const previous = addrs.map((a) => this.installed(a));
    let deletes: Map<string, string[]> | null = null;
    const adds = new Map<string, ElementAdd[]>();
    /** Addresses refreshed in the set they are in: deleted and added again (see below). */
    let refreshed: Set<string> | null = null;
    for (let i = 0; i < addrs.length; i++) {
      const a = addrs[i]!;
      const set = setOf[i]!;
      const cur = previous[i];
      // Moving between rules: remove it from the old set first, unless it has
      // expired there (deleting a missing element fails the whole line). A
      // two-second margin covers the kernel expiring it a little early.
      // Refreshing it where it is: before Linux 6.12 adding an element that
      // is there keeps its old expiry (6.12 on takes the `expires` the add
      // carries), so the kernel would drop it while the shadow says it is
      // tagged; deleted and added in the same transaction, it is never
      // missing meanwhile, on any kernel.
      if (cur && cur.expiresAt - now > 2000) {
        deletes ??= new Map();
        (deletes.get(cur.set) ?? deletes.set(cur.set, []).get(cur.set)!).push(a);
        if (cur.set === set) (refreshed ??= new Set()).add(a);
      }
      (adds.get(set) ?? adds.set(set, []).get(set)!).push({ address: a, timeoutS: seconds(ttlOf[i]!) });
    }
    const changes: ElementChanges = { table: TABLE_NAME, deletes: deletes ?? NO_DELETES, adds };
    this.transactions++;
    // More than a transaction adds: the shadow shrinks faster than it can grow.
    // (Each step costs an iterator result: a miss's line of one address sweeps 12.)
    this.sweepSome(now, 4 * addrs.length + 8);
    // Recorded before the line completes: a line sent after this one (the
    // pipeline) must already see these addresses where this one puts them.
    for (let i = 0; i < addrs.length; i++) this.recordFrom(addrs[i]!, setOf[i]!, now + seconds(ttlOf[i]!) * 1000, previous[i]);
    // Straight to the kernel where the session can (libnftables' own parse
    // and cache cost ~6x more per transaction); as an nft line otherwise.
    const send = (c: ElementChanges): Promise<void> => (this.nft.elements ? this.nft.elements(c) : this.nft.exec(renderElementChanges(c)));
    try {
      try {
        await send(changes);
      } catch (e) {
        if (refreshed === null) throw e;
        // A refreshed element the kernel no longer had (the set was flushed
        // behind our back): its delete failed the transaction. Once more
        // without those deletes: the adds then create them afresh.
        const kept = new Map([...(deletes ?? NO_DELETES)].map(([set, as]) => [set, as.filter((a) => !refreshed.has(a))] as const).filter(([, as]) => as.length > 0));
        await send({ table: TABLE_NAME, deletes: kept, adds });
      }
    } catch (e) {
      // Nothing of the line was applied: put back what was there (unless a later line changed it).
      for (let i = 0; i < addrs.length; i++) {
        const a = addrs[i]!;
        const prev = previous[i];
        const cur = this.installed(a);
        if (cur && cur.set === setOf[i]) {
          if (prev) this.record(a, prev.set, prev.expiresAt);
          else this.shadow.get(cur.set)!.delete(a);
        }
      }
      throw e;
    }
  }
}
