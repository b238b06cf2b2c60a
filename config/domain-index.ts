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

// Table slot layout (Int32, 8 per slot = 32 bytes, half a cache line): the hash,
// entry + 1 (0 = empty), the key's offset and length in `bytes`, and the three
// per-kind rule indexes. A probe that hits reads this slot and the key's bytes:
// two cache lines, instead of chasing an array, a string object and its chars.
const S_HASH = 0;
const S_ENTRY = 1;
const S_OFF = 2;
const S_LEN = 3;
const S_RULES = 4; // + KIND_*
const STRIDE = 8;

export class DomainIndex {
  private keys: string[] = [];
  /** Per entry and kind: an opaque origin reference supplied by the builder. */
  private origins: number[] = [];
  /**
   * The table is filled while entries are added (doubling as it fills), with
   * each kind's lowest rule in its slot: adding deduplicates by probing it, so
   * no Map of keys, and no per-entry arrays of hashes and rules, exist beside it.
   */
  private table = new Int32Array(8 * STRIDE);
  /** Every key's characters (ASCII after punycode), back to back. */
  private bytes = new Uint8Array(0);
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
    return this.keys.length;
  }

  /** Adds `key` (already normalised: lower case, ASCII, no trailing dot) for `rule`. */
  add(key: string, kind: number, rule: number, origin: number): void {
    if (this.built) throw new Error('DomainIndex: add after build');
    const h = hashKey(key);
    const table = this.table;
    let b = (h >>> this.shift) * STRIDE;
    for (;;) {
      const e = table[b + S_ENTRY]!;
      if (e === 0) break;
      if (table[b + S_HASH] === h && this.keys[e - 1] === key) return this.keep(b, e - 1, kind, rule, origin);
      b = (b + STRIDE) & (this.mask * STRIDE + STRIDE - 1);
    }
    const e = this.keys.length;
    this.keys.push(key);
    this.origins.push(-1, -1, -1);
    table[b + S_HASH] = h;
    table[b + S_ENTRY] = e + 1;
    for (let k = 0; k < KINDS; k++) table[b + S_RULES + k] = NONE;
    this.keep(b, e, kind, rule, origin);
    // At most half full, as lookups' probe lengths assume.
    if ((e + 1) * 2 > this.mask + 1) this.grow();
  }

  /** Keeps the first rule that names the key with this kind: later duplicates can never win. */
  private keep(b: number, e: number, kind: number, rule: number, origin: number): void {
    if (rule < this.table[b + S_RULES + kind]!) {
      this.table[b + S_RULES + kind] = rule;
      this.origins[e * KINDS + kind] = origin;
    }
  }

  /**
   * Makes room for `n` entries in all (an upper bound, e.g. a list's length)
   * before adding them: the table grows once to its size instead of doubling
   * its way there, leaving each smaller table as garbage.
   */
  reserve(n: number): void {
    let cap = this.mask + 1;
    while (cap < n * 2) cap <<= 1;
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
      this.table.set(old.subarray(o, o + STRIDE), i * STRIDE);
    }
  }

  /** Freezes the index (key bytes, the filter); lookups work only after this. */
  build(): this {
    const n = this.keys.length;
    let total = 0;
    for (const k of this.keys) total += k.length;
    this.bytes = new Uint8Array(total);
    let fbits = 10;
    while (1 << fbits < n * 20 && fbits < 24) fbits++;
    this.filter = new Int32Array(1 << (fbits - 5));
    this.filterShift = 32 - fbits;
    const table = this.table;
    // Keys' bytes in the order they were added (a list's order, which keeps
    // related names together), each slot pointing at its key's.
    const offs = new Int32Array(n);
    let off = 0;
    for (let e = 0; e < n; e++) {
      const key = this.keys[e]!;
      offs[e] = off;
      let labels = 1;
      for (let j = 0; j < key.length; j++) {
        const c = key.charCodeAt(j);
        this.bytes[off + j] = c;
        if (c === 46) labels++;
      }
      off += key.length;
      this.labelCounts |= labels > 31 ? 1 << 31 : 1 << (labels - 1);
    }
    for (let b = 0; b < table.length; b += STRIDE) {
      const e = table[b + S_ENTRY]!;
      if (e === 0) continue;
      const h = table[b + S_HASH]!;
      const f = Math.imul(h, 0x9e3779b1) >>> this.filterShift;
      this.filter[f >>> 5]! |= 1 << (f & 31);
      table[b + S_OFF] = offs[e - 1]!;
      table[b + S_LEN] = this.keys[e - 1]!.length;
    }
    this.built = true;
    return this;
  }

  entryKey(entry: number): string {
    return this.keys[entry]!;
  }

  origin(entry: number, kind: number): number {
    return this.origins[entry * KINDS + kind]!;
  }

  /**
   * The lowest rule index whose entry matches `name`, or -1. `name` may have
   * any case and a trailing dot. `out`, when given, receives the winning entry.
   */
  lookup(name: string, out?: IndexHit): number {
    if (this.keys.length === 0) return -1;
    let end = name.length;
    if (end > 0 && name.charCodeAt(end - 1) === 46) end--;
    let best = NONE;
    let bestSlot = -1;
    let bestKind = -1;
    let h = SEED;
    let labels = 0;
    const table = this.table;
    const bytes = this.bytes;
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
            if (table[b + S_ENTRY] === 0) break;
            if (table[b + S_HASH] !== h || table[b + S_LEN] !== len) continue;
            if (!sameLower(name, from, bytes, table[b + S_OFF]!, len)) continue;
            const rd = table[b + S_RULES + KIND_DOMAIN]!;
            if (rd < best) {
              best = rd;
              bestSlot = b;
              bestKind = KIND_DOMAIN;
            }
            const kind = from === 0 ? KIND_FULL : KIND_SUBDOMAIN;
            const r2 = table[b + S_RULES + kind]!;
            if (r2 < best) {
              best = r2;
              bestSlot = b;
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
      out.entry = table[bestSlot + S_ENTRY]! - 1;
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
