// A hash index of domain suffixes, built for the per-query hot path.
//
// A lookup walks the name once from its right end, keeping a running hash of
// the suffix seen so far; at every label boundary it probes an open-addressing
// table with that hash. No substring, no lower-casing copy and no allocation
// happens for a miss, which is what keeps lookups in the millions per second
// (a Set probed with every suffix slice pays an allocation and a re-hash per
// label). "First match wins" needs the lowest rule index among all matching
// entries, so every probe keeps the minimum rather than stopping early.

export const KIND_DOMAIN = 0; // the name and its subdomains
export const KIND_SUBDOMAIN = 1; // subdomains only (*.x)
export const KIND_FULL = 2; // exactly the name
const KINDS = 3;
const NONE = 0x7fffffff;
/** kindOf's value for an entry named with more than one kind (its rules are in `multi`). */
const MULTI = 3;

/** Hash step, shared by build and lookup (FNV-1a over char codes, right to left). */
function step(h: number, c: number): number {
  return Math.imul(h ^ c, 16777619);
}
const SEED = 0x811c9dc5 | 0;

function hashKey(key: string): number {
  let h = SEED;
  for (let i = key.length - 1; i >= 0; i--) h = step(h, key.charCodeAt(i));
  return h;
}

export interface IndexHit {
  rule: number;
  /** Entry index, for `entryKey()` and `origin()`. */
  entry: number;
  kind: number;
}

// Table slot layout (Int32, 2 per slot = 8 bytes): the hash and entry + 1
// (0 = empty). Where the key's bytes are (one of `sources`, an offset, a
// length), its kind, rule and origin are per entry, in typed arrays. A key
// from a compact list is read where the list keeps it (add's `bytes`): the
// names are in memory once; other keys are copied into a buffer of the
// index's own at build. A probe reads the slot; only a slot whose hash
// matches (a hit, nearly always) reads the entry's bytes and rule: a few
// cache lines, and never an array of objects or a string. 8 bytes a slot,
// not 32, filled up to 0.8 (issue 17: a 100k-name list took 8.4 MB of
// table; now 1 MB). Nearly every name a list
// holds is named with one kind only: one rule and one origin an entry (9
// bytes), and the rare name with two or three kinds keeps all of them in
// `multi` (it was 24 bytes an entry for the three kinds, 2.4 MB for 100k).
const S_HASH = 0;
const S_ENTRY = 1;
const STRIDE = 2;

export class DomainIndex {
  /** The keys as added (for deduplication while adding; `sources` hold them after build, and this is emptied). */
  private keys: string[] = [];
  private count = 0;
  /** Per entry and kind: the lowest rule index, or NONE (while adding; `ruleOf` after build). */
  private rules: number[] = [];
  /** Per entry and kind: an opaque origin reference supplied by the builder (while adding; `originOf` after build). */
  private origins: number[] = [];
  /**
   * The table is filled while entries are added (doubling as it fills):
   * adding deduplicates by probing it, so no Map of keys exists beside it.
   */
  private table = new Int32Array(8 * STRIDE);
  /** Per entry while adding: the buffer its key is in (an index into `sources`; -1: none, copied at build) and where. */
  private srcs: number[] = [];
  private starts: number[] = [];
  /** The buffers keys are in: the lists' (add's `bytes`) and, last, the index's own copy of the rest. */
  private sources: Uint8Array[] = [];
  /** Entry e's key is sources[srcOf[e]][startOf[e], startOf[e] + lenOf[e]) (ASCII after punycode). */
  private srcOf = new Uint16Array(0);
  private startOf = new Int32Array(0);
  private lenOf = new Uint16Array(0);
  /** Per entry: its one kind, or MULTI. */
  private kindOf = new Uint8Array(0);
  /** Per entry of one kind: its rule index. */
  private ruleOf = new Int32Array(0);
  /** Per entry of one kind: the builder's origin reference. */
  private originOf = new Int32Array(0);
  /** Entries of more than one kind: the lowest rule index per kind (NONE: not that kind), then the origin per kind. */
  private multi = new Map<number, Int32Array>();
  private mask = 7;
  /** The table index is the hash's top bits: FNV's low bits mix poorly and cluster. */
  private shift = 29;
  /** Bit n set: some key has n + 1 labels. Suffixes of other lengths are not probed. */
  private labelCounts = 0;
  /**
   * One bit per key hash, sized to stay in L2 (about 20 bits a key): most
   * suffixes of a name are no key, and this answers that without touching
   * the table, whose random reads are the cost of a lookup.
   */
  private filter = new Int32Array(0);
  private filterShift = 32;
  private built = false;

  get size(): number {
    return this.count;
  }

  /**
   * Adds `key` (already normalised: lower case, ASCII, no trailing dot) for
   * `rule`. `bytes[start, start + key.length)`, when given, holds the key
   * and is kept unchanged for the index's life: it is read there.
   */
  add(key: string, kind: number, rule: number, origin: number, bytes: Uint8Array | null = null, start = 0): void {
    if (this.built) throw new Error('DomainIndex: add after build');
    const h = hashKey(key);
    const table = this.table;
    let i = h >>> this.shift;
    for (;;) {
      const e1 = table[i * STRIDE + S_ENTRY]!;
      if (e1 === 0) break;
      if (table[i * STRIDE + S_HASH] === h && this.keys[e1 - 1] === key) return this.keep(e1 - 1, kind, rule, origin);
      i = (i + 1) & this.mask;
    }
    const e = this.keys.length;
    this.keys.push(key);
    this.count++;
    if (bytes === null) this.srcs.push(-1);
    else {
      // Consecutive keys mostly share one source: look at the last one first.
      let src = this.sources.length - 1;
      if (src < 0 || this.sources[src] !== bytes) {
        src = this.sources.indexOf(bytes);
        if (src < 0) src = this.sources.push(bytes) - 1;
      }
      this.srcs.push(src);
    }
    this.starts.push(start);
    for (let k = 0; k < KINDS; k++) {
      this.rules.push(NONE);
      this.origins.push(-1);
    }
    table[i * STRIDE + S_HASH] = h;
    table[i * STRIDE + S_ENTRY] = e + 1;
    this.keep(e, kind, rule, origin);
    if ((e + 1) * 5 > (this.mask + 1) * 4) this.grow();
  }

  /** Keeps the first rule that names the key with this kind: later duplicates can never win. */
  private keep(e: number, kind: number, rule: number, origin: number): void {
    const slot = e * KINDS + kind;
    if (rule < this.rules[slot]!) {
      this.rules[slot] = rule;
      this.origins[slot] = origin;
    }
  }

  /**
   * Makes room for `n` entries in all (an upper bound, e.g. a list's length)
   * before adding them: the table grows once to its size instead of doubling
   * its way there, leaving each smaller table as garbage.
   */
  reserve(n: number): void {
    let cap = this.mask + 1;
    while (cap * 4 < n * 5) cap <<= 1;
    if (cap > this.mask + 1) this.grow(cap);
  }

  private grow(cap = (this.mask + 1) * 2): void {
    const old = this.table;
    this.table = new Int32Array(cap * STRIDE);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    for (let o = 0; o < old.length; o += STRIDE) {
      if (old[o + S_ENTRY] === 0) continue;
      let i = old[o + S_HASH]! >>> this.shift;
      while (this.table[i * STRIDE + S_ENTRY] !== 0) i = (i + 1) & this.mask;
      this.table[i * STRIDE + S_HASH] = old[o + S_HASH]!;
      this.table[i * STRIDE + S_ENTRY] = old[o + S_ENTRY]!;
    }
  }

  /** Freezes the index into typed arrays (key bytes, rules, origins, the filter); lookups work only after this. */
  build(): this {
    const n = this.keys.length;
    let total = 0;
    for (let e = 0; e < n; e++) if (this.srcs[e] === -1) total += this.keys[e]!.length;
    const own = new Uint8Array(total);
    const ownSrc = this.sources.length;
    if (ownSrc >= 0xffff) throw new Error('DomainIndex: too many key buffers');
    this.sources.push(own);
    this.srcOf = new Uint16Array(n);
    this.startOf = new Int32Array(n);
    this.lenOf = new Uint16Array(n);
    this.kindOf = new Uint8Array(n);
    this.ruleOf = new Int32Array(n);
    this.originOf = new Int32Array(n);
    for (let e = 0; e < n; e++) {
      let kind = -1;
      for (let k = 0; k < KINDS; k++) if (this.rules[e * KINDS + k] !== NONE) kind = kind === -1 ? k : MULTI;
      this.kindOf[e] = kind;
      if (kind !== MULTI) {
        this.ruleOf[e] = this.rules[e * KINDS + kind]!;
        this.originOf[e] = this.origins[e * KINDS + kind]!;
        continue;
      }
      const m = new Int32Array(KINDS * 2);
      for (let k = 0; k < KINDS; k++) {
        m[k] = this.rules[e * KINDS + k]!;
        m[KINDS + k] = this.origins[e * KINDS + k]!;
      }
      this.multi.set(e, m);
    }
    let fbits = 10;
    while (1 << fbits < n * 20 && fbits < 24) fbits++;
    this.filter = new Int32Array(1 << (fbits - 5));
    this.filterShift = 32 - fbits;
    // The index's own keys' bytes in the order they were added (a list's
    // order, which keeps related names together: measured ~8 % faster
    // lookups than slot order), as a list keeps its own.
    let off = 0;
    for (let e = 0; e < n; e++) {
      const key = this.keys[e]!;
      if (key.length > 0xffff) throw new Error('DomainIndex: key too long');
      this.lenOf[e] = key.length;
      const src = this.srcs[e]!;
      if (src !== -1) {
        this.srcOf[e] = src;
        this.startOf[e] = this.starts[e]!;
      } else {
        this.srcOf[e] = ownSrc;
        this.startOf[e] = off;
        for (let j = 0; j < key.length; j++) own[off + j] = key.charCodeAt(j);
        off += key.length;
      }
      let labels = 1;
      for (let j = 0; j < key.length; j++) if (key.charCodeAt(j) === 46) labels++;
      this.labelCounts |= labels > 31 ? 1 << 31 : 1 << (labels - 1);
    }
    const table = this.table;
    for (let b = 0; b < table.length; b += STRIDE) {
      if (table[b + S_ENTRY] === 0) continue;
      const f = Math.imul(table[b + S_HASH]!, 0x9e3779b1) >>> this.filterShift;
      this.filter[f >>> 5]! |= 1 << (f & 31);
    }
    this.rules = [];
    this.origins = [];
    this.srcs = [];
    this.starts = [];
    // The strings are the lists' entries: kept here, they would cost an object each for the policy's life.
    this.keys = [];
    this.built = true;
    return this;
  }

  /** Entry `entry`'s key (for `explain`: made again from its bytes after build). */
  entryKey(entry: number): string {
    if (!this.built) return this.keys[entry]!;
    const at = this.startOf[entry]!;
    return String.fromCharCode(...this.sources[this.srcOf[entry]!]!.subarray(at, at + this.lenOf[entry]!));
  }

  origin(entry: number, kind: number): number {
    if (!this.built) return this.origins[entry * KINDS + kind]!;
    const k = this.kindOf[entry]!;
    if (k === MULTI) return this.multi.get(entry)![KINDS + kind]!;
    return k === kind ? this.originOf[entry]! : -1;
  }

  /**
   * The lowest rule index whose entry matches `name`, or -1. `name` may have
   * any case and a trailing dot. `out`, when given, receives the winning entry.
   */
  lookup(name: string, out?: IndexHit): number {
    if (this.count === 0) return -1;
    let end = name.length;
    if (end > 0 && name.charCodeAt(end - 1) === 46) end--;
    let best = NONE;
    let bestEntry = -1;
    let bestKind = -1;
    let h = SEED;
    let labels = 0;
    const table = this.table;
    const sources = this.sources;
    const srcOf = this.srcOf;
    const startOf = this.startOf;
    const lenOf = this.lenOf;
    const kindOf = this.kindOf;
    const ruleOf = this.ruleOf;
    const mask = this.mask;
    const counts = this.labelCounts;
    const shift = this.shift;
    const filter = this.filter;
    const fshift = this.filterShift;
    // Right to left, one read per character; a dot (or the start, a virtual
    // dot at -1) closes a whole-label suffix name[i + 1, end) to probe.
    for (let i = end - 1; ; i--) {
      const c = i >= 0 ? name.charCodeAt(i) : 46;
      if (c !== 46) {
        h = step(h, c - 65 < 26 && c >= 65 ? c | 32 : c);
        continue;
      }
      const from = i + 1;
      if (from === end) break; // empty label (".." or a leading dot): no suffix to probe
      // A whole-label suffix: probe, if any key has that many labels.
      labels++;
      if ((counts & (labels > 31 ? 1 << 31 : 1 << (labels - 1))) !== 0) {
        const f = Math.imul(h, 0x9e3779b1) >>> fshift;
        if ((filter[f >>> 5]! & (1 << (f & 31))) !== 0) {
          const len = end - from;
          for (let p = h >>> shift; ; p = (p + 1) & mask) {
            const b = p * STRIDE;
            const e1 = table[b + S_ENTRY]!;
            if (e1 === 0) break;
            if (table[b + S_HASH] !== h) continue;
            const e = e1 - 1;
            if (lenOf[e] !== len || !sameLower(name, from, sources[srcOf[e]!]!, startOf[e]!, len)) continue;
            // KIND_DOMAIN matches the name and its subdomains; the other kind that can match here is
            // FULL for the whole name, SUBDOMAIN for a shorter suffix.
            const kind = from === 0 ? KIND_FULL : KIND_SUBDOMAIN;
            const ek = kindOf[e]!;
            if (ek !== MULTI) {
              if ((ek === KIND_DOMAIN || ek === kind) && ruleOf[e]! < best) {
                best = ruleOf[e]!;
                bestEntry = e;
                bestKind = ek;
              }
              break;
            }
            const m = this.multi.get(e)!;
            if (m[KIND_DOMAIN]! < best) {
              best = m[KIND_DOMAIN]!;
              bestEntry = e;
              bestKind = KIND_DOMAIN;
            }
            if (m[kind]! < best) {
              best = m[kind]!;
              bestEntry = e;
              bestKind = kind;
            }
            break;
          }
        }
      }
      if (i < 0) break;
      h = step(h, 46);
    }
    if (best === NONE) return -1;
    if (out) {
      out.rule = best;
      out.entry = bestEntry;
      out.kind = bestKind;
    }
    return best;
  }
}

function sameLower(name: string, at: number, bytes: Uint8Array, off: number, len: number): boolean {
  for (let j = 0; j < len; j++) {
    let c = name.charCodeAt(at + j);
    if (c >= 65 && c <= 90) c |= 32;
    if (c !== bytes[off + j]) return false;
  }
  return true;
}
