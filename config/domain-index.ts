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

export class DomainIndex {
  private keys: string[] = [];
  private hashes: number[] = [];
  /** Per entry and kind: the lowest rule index, or NONE. */
  private rules: number[] = [];
  /** Per entry and kind: an opaque origin reference supplied by the builder. */
  private origins: number[] = [];
  private byKey = new Map<string, number>();
  /** Open addressing, two ints a slot: [hash, entry + 1]; one cache line per probe. */
  private table = new Int32Array(0);
  private mask = 0;
  /** The table index is the hash's top bits: FNV's low bits mix poorly and cluster. */
  private shift = 32;
  private ruleArr = new Int32Array(0);
  /** Bit n set: some key has n + 1 labels. Suffixes of other lengths are not probed. */
  private labelCounts = 0;
  private built = false;

  get size(): number {
    return this.keys.length;
  }

  /** Adds `key` (already normalised: lower case, no trailing dot) for `rule`. */
  add(key: string, kind: number, rule: number, origin: number): void {
    if (this.built) throw new Error('DomainIndex: add after build');
    let e = this.byKey.get(key);
    if (e === undefined) {
      e = this.keys.length;
      this.byKey.set(key, e);
      this.keys.push(key);
      this.hashes.push(hashKey(key));
      for (let k = 0; k < KINDS; k++) {
        this.rules.push(NONE);
        this.origins.push(-1);
      }
    }
    const slot = e * KINDS + kind;
    // Keep the first rule that names it: later duplicates can never win.
    if (rule < this.rules[slot]!) {
      this.rules[slot] = rule;
      this.origins[slot] = origin;
    }
  }

  /** Freezes the index into typed arrays; lookups work only after this. */
  build(): this {
    const n = this.keys.length;
    let cap = 8;
    while (cap < n * 2) cap <<= 1;
    this.table = new Int32Array(cap * 2);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.ruleArr = Int32Array.from(this.rules);
    for (let e = 0; e < n; e++) {
      const h = this.hashes[e]!;
      let i = h >>> this.shift;
      while (this.table[2 * i + 1] !== 0) i = (i + 1) & this.mask;
      this.table[2 * i] = h;
      this.table[2 * i + 1] = e + 1;
      const labels = this.keys[e]!.split('.').length;
      this.labelCounts |= labels > 31 ? 1 << 31 : 1 << (labels - 1);
    }
    this.hashes = [];
    this.rules = [];
    this.byKey = new Map();
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
    let bestEntry = -1;
    let bestKind = -1;
    let h = SEED;
    let labels = 0;
    const table = this.table;
    const mask = this.mask;
    const counts = this.labelCounts;
    const shift = this.shift;
    for (let i = end - 1; i >= 0; i--) {
      let c = name.charCodeAt(i);
      if (c >= 65 && c <= 90) c |= 32;
      h = step(h, c);
      if (i > 0 && name.charCodeAt(i - 1) !== 46) continue;
      // name[i, end) is a whole-label suffix: probe, if any key has that many labels.
      labels++;
      if ((counts & (labels > 31 ? 1 << 31 : 1 << (labels - 1))) === 0) continue;
      const len = end - i;
      for (let p = h >>> shift; ; p = (p + 1) & mask) {
        const slot = table[2 * p + 1]!;
        if (slot === 0) break;
        if (table[2 * p] !== h) continue;
        const e = slot - 1;
        const key = this.keys[e]!;
        if (key.length !== len || !sameLower(name, i, key)) continue;
        const base = e * KINDS;
        const rd = this.ruleArr[base + KIND_DOMAIN]!;
        if (rd < best) {
          best = rd;
          bestEntry = e;
          bestKind = KIND_DOMAIN;
        }
        const r2 = i === 0 ? this.ruleArr[base + KIND_FULL]! : this.ruleArr[base + KIND_SUBDOMAIN]!;
        if (r2 < best) {
          best = r2;
          bestEntry = e;
          bestKind = i === 0 ? KIND_FULL : KIND_SUBDOMAIN;
        }
        break;
      }
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

function sameLower(name: string, at: number, key: string): boolean {
  for (let j = 0; j < key.length; j++) {
    let c = name.charCodeAt(at + j);
    if (c >= 65 && c <= 90) c |= 32;
    if (c !== key.charCodeAt(j)) return false;
  }
  return true;
}
