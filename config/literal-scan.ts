// Which of many literals a name contains, in one pass over the name: an
// Aho-Corasick automaton turned into a full transition table over ASCII
// (names reach the policy lower-cased and in punycode; a character above
// 0x7f is in no literal and sends the scan back to the start). For the
// policy's keyword and regexp entries: keywords are literals, and a regexp
// is tried only when the name holds the literal each of its matches must
// hold (regexp-literal.ts). Built once per compile; a scan allocates nothing.

const ALPHABET = 128;
/** 512 bytes of table per state: past this (~8 MB; thousands of keywords) the caller keeps its plain alternation. */
const MAX_STATES = 16_384;

/** A scanner for `literals`, or null when they are too many for a table. */
export function literalScanner(literals: readonly string[]): LiteralScanner | null {
  try {
    return new LiteralScanner(literals);
  } catch (e) {
    if (e instanceof RangeError) return null;
    throw e;
  }
}

export class LiteralScanner {
  private readonly next: Int32Array;
  /** Per state: the literals that end there (its own and its failure chain's), as [start, end) into outIds. */
  private readonly outStart: Int32Array;
  private readonly outEnd: Int32Array;
  private readonly outIds: Int32Array;
  /** Dedupes hits within one scan: seen[literal] === generation. */
  private readonly seen: Int32Array;
  private gen = 0;
  /** The literals the last scan found, each once: hits[0, count). */
  readonly hits: Int32Array;
  count = 0;

  constructor(literals: readonly string[]) {
    // The trie.
    const children: Map<number, number>[] = [new Map()];
    const ends: number[][] = [[]];
    literals.forEach((lit, id) => {
      let s = 0;
      for (let i = 0; i < lit.length; i++) {
        const c = lit.charCodeAt(i);
        if (c >= ALPHABET) {
          s = -1; // a literal no ASCII name can hold
          break;
        }
        let t = children[s]!.get(c);
        if (t === undefined) {
          t = children.length;
          children.push(new Map());
          ends.push([]);
          children[s]!.set(c, t);
        }
        s = t;
      }
      if (s > 0) ends[s]!.push(id);
    });
    const n = children.length;
    if (n > MAX_STATES) throw new RangeError(`${n} states`);
    this.next = new Int32Array(n * ALPHABET);
    const fail = new Int32Array(n);
    const outs: number[][] = ends.map((e) => [...e]);
    // Breadth first: a state's failure state is complete before its children need it.
    const queue: number[] = [];
    for (let c = 0; c < ALPHABET; c++) {
      const t = children[0]!.get(c);
      if (t !== undefined) {
        this.next[c] = t;
        queue.push(t);
      }
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const s = queue[qi]!;
      const f = fail[s]! * ALPHABET;
      outs[s]!.push(...outs[fail[s]!]!);
      // The failure state's row (complete: it is shallower), then this state's own edges over it.
      this.next.copyWithin(s * ALPHABET, f, f + ALPHABET);
      for (const [c, t] of children[s]!) {
        fail[t] = this.next[f + c]!;
        this.next[s * ALPHABET + c] = t;
        queue.push(t);
      }
    }
    this.outStart = new Int32Array(n);
    this.outEnd = new Int32Array(n);
    const flat: number[] = [];
    for (let s = 0; s < n; s++) {
      this.outStart[s] = flat.length;
      flat.push(...new Set(outs[s]!));
      this.outEnd[s] = flat.length;
    }
    this.outIds = Int32Array.from(flat);
    this.seen = new Int32Array(literals.length);
    this.hits = new Int32Array(literals.length);
  }

  /** Finds the literals `s` contains: `hits[0, count)`, each once. Returns count. */
  scan(s: string): number {
    if (++this.gen === 0x7fffffff) {
      this.seen.fill(0);
      this.gen = 1;
    }
    const gen = this.gen;
    const { next, outStart, outEnd, outIds, seen, hits } = this;
    let count = 0;
    let state = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      state = c < ALPHABET ? next[(state << 7) | c]! : 0;
      const end = outEnd[state]!;
      for (let j = outStart[state]!; j < end; j++) {
        const id = outIds[j]!;
        if (seen[id] !== gen) {
          seen[id] = gen;
          hits[count++] = id;
        }
      }
    }
    this.count = count;
    return count;
  }
}
