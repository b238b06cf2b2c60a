// A loaded list's entries in a few flat arrays instead of an object or two
// and a string per entry (issue 17, docs/design/footprint.md). A running
// daemon keeps every list's entries for as long as the list is in force: a
// URL list's refresh recompiles the policy from all of them. As parsed
// (`{ pattern: { kind, value }, line }` each), 100k names held ~13 MB of
// heap; here they are one string of the names back to back and three typed
// arrays, ~3.5 MB.
//
// The parsers and decoders (formats.ts, the rule-file decoders) still return
// arrays: they are short-lived, and what their tests hold them to. A list
// becomes compact where the loader and the refresher make it a LoadedList
// (load.ts toLoadedList); iterating it gives back the same entries, in order.

import type { DomainPattern } from '../types.js';

/** What the policy needs of a list's names: an array of entries fits. */
export interface ListDomains extends Iterable<{ readonly pattern: DomainPattern; readonly line: number }> {
  readonly length: number;
}

/** What the policy needs of a list's CIDRs: an array of entries fits. */
export interface ListCidrs extends Iterable<{ readonly cidr: string; readonly line: number }> {
  readonly length: number;
}

const KINDS: readonly DomainPattern['kind'][] = ['domain', 'subdomain', 'full', 'keyword', 'regexp'];
const KIND_CODE: Readonly<Record<DomainPattern['kind'], number>> = { domain: 0, subdomain: 1, full: 2, keyword: 3, regexp: 4 };

/**
 * Strings back to back, with their end offsets, instead of a string object
 * each. ASCII text (every name once in punycode, every CIDR) is kept as
 * bytes, which the policy's name index reads in place (DomainIndex.add's
 * `bytes`): a list's names are then in memory once, not once here and again
 * in the index (2.3 MB for 100k names). Other text (a keyword or regexp
 * with non-ASCII characters) stays one flat string (`join` makes it flat).
 */
class Packed {
  /** The text as bytes when it is ASCII, else null and `text` holds it. */
  readonly bytes: Buffer | null;
  private readonly text: string;
  private readonly ends: Int32Array;

  constructor(values: readonly string[]) {
    const text = values.join('');
    // eslint-disable-next-line no-control-regex -- ASCII is U+0000..U+007F
    this.bytes = /^[\x00-\x7f]*$/.test(text) ? Buffer.from(text, 'latin1') : null;
    this.text = this.bytes === null ? text : '';
    this.ends = new Int32Array(values.length);
    let end = 0;
    for (let i = 0; i < values.length; i++) this.ends[i] = end += values[i]!.length;
  }

  start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  get(i: number): string {
    return this.bytes !== null ? this.bytes.toString('latin1', this.start(i), this.ends[i]) : this.text.slice(this.start(i), this.ends[i]);
  }
}

/** A list's names (domain, subdomain, full, keyword, regexp), each with its line. */
export class CompactDomains implements ListDomains {
  readonly length: number;
  private readonly kinds: Uint8Array;
  private readonly lines: Int32Array;
  private readonly values: Packed;

  constructor(entries: readonly { pattern: DomainPattern; line: number }[]) {
    this.length = entries.length;
    this.kinds = new Uint8Array(entries.length);
    this.lines = new Int32Array(entries.length);
    entries.forEach((e, i) => {
      this.kinds[i] = KIND_CODE[e.pattern.kind];
      this.lines[i] = e.line;
    });
    this.values = new Packed(entries.map((e) => e.pattern.value));
  }

  /** Entry i, as the parser gave it. */
  at(i: number): { pattern: DomainPattern; line: number } {
    return { pattern: { kind: KINDS[this.kinds[i]!]!, value: this.values.get(i) }, line: this.lines[i]! };
  }

  *[Symbol.iterator](): Iterator<{ pattern: DomainPattern; line: number }> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  /**
   * Every entry without making an object of it (the policy's compile: 100k
   * entries, no garbage but the names), with where its value's bytes are
   * (`bytes` null: not kept as bytes).
   */
  each(fn: EachDomain): void {
    const bytes = this.values.bytes;
    for (let i = 0; i < this.length; i++) fn(KINDS[this.kinds[i]!]!, this.values.get(i), this.lines[i]!, bytes, bytes === null ? 0 : this.values.start(i));
  }
}

/** One entry of a list's names; `bytes[start, start + value.length)` is `value` when `bytes` is not null. */
export type EachDomain = (kind: DomainPattern['kind'], value: string, line: number, bytes: Uint8Array | null, start: number) => void;

/** Every entry of a list's names, compact or an array. */
export function eachDomain(list: ListDomains, fn: EachDomain): void {
  if (list instanceof CompactDomains) return list.each(fn);
  for (const d of list) fn(d.pattern.kind, d.pattern.value, d.line, null, 0);
}

/** A list's CIDRs (normalised text), each with its line. */
export class CompactCidrs implements ListCidrs {
  readonly length: number;
  private readonly lines: Int32Array;
  private readonly values: Packed;

  constructor(entries: readonly { cidr: string; line: number }[]) {
    this.length = entries.length;
    this.lines = Int32Array.from(entries, (e) => e.line);
    this.values = new Packed(entries.map((e) => e.cidr));
  }

  at(i: number): { cidr: string; line: number } {
    return { cidr: this.values.get(i), line: this.lines[i]! };
  }

  *[Symbol.iterator](): Iterator<{ cidr: string; line: number }> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }
}
