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
 * Strings back to back in one string, with their end offsets: one flat
 * string (`join` makes it flat) instead of a string object each. Reading one
 * back slices it (V8 shares the characters of a slice of 13 or more).
 */
class Packed {
  private readonly text: string;
  private readonly ends: Int32Array;

  constructor(values: readonly string[]) {
    this.text = values.join('');
    this.ends = new Int32Array(values.length);
    let end = 0;
    for (let i = 0; i < values.length; i++) this.ends[i] = end += values[i]!.length;
  }

  get(i: number): string {
    return this.text.slice(i === 0 ? 0 : this.ends[i - 1], this.ends[i]);
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

  /** Every entry without making an object of it (the policy's compile: 100k entries, no garbage but the names). */
  each(fn: (kind: DomainPattern['kind'], value: string, line: number) => void): void {
    for (let i = 0; i < this.length; i++) fn(KINDS[this.kinds[i]!]!, this.values.get(i), this.lines[i]!);
  }
}

/** Every entry of a list's names, compact or an array. */
export function eachDomain(list: ListDomains, fn: (kind: DomainPattern['kind'], value: string, line: number) => void): void {
  if (list instanceof CompactDomains) return list.each(fn);
  for (const d of list) fn(d.pattern.kind, d.pattern.value, d.line);
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
