// What every binary (and JSON) rule-file decoder returns, the one error they
// throw, and the limits they share. The result has the shape of ParsedList
// (config/lists/formats.ts), so the policy takes it as list content as is.
//
// Decoders read files somebody else publishes: every length read from a file
// is checked against the bytes that remain before anything is allocated for
// it, entry counts are capped, and decompression stops at a fixed size. Any
// failure, including an exception from a library, leaves a decoder as a
// ListFormatError; nothing else is thrown.

import { normalizeDomain, parseDomainPattern } from '../domain.js';
import { parseCidr } from '../../lib/ip.js';
import type { DomainPattern } from '../types.js';
import type { ListProblem } from './formats.js';

/** The rule-file formats of this directory's decoders (the text formats are in formats.ts). */
export type BinaryListFormat = 'geosite' | 'geoip' | 'srs' | 'srs-json' | 'mrs' | 'mmdb';

export const LIST_FORMAT_CODE = 'SPLITWAN_LIST_FORMAT';

/**
 * A rule file that cannot be used: corrupt, truncated, of another format, or
 * the selection names nothing in it. The message names the file and what is
 * wrong, for `splitwan check` and the log.
 */
export class ListFormatError extends Error {
  readonly code = LIST_FORMAT_CODE;
  constructor(
    /** The list's name or file, as the message shows it. */
    readonly list: string,
    readonly format: BinaryListFormat | 'unknown',
    /** What is wrong, without the list name. */
    readonly detail: string,
  ) {
    super(`${list}: ${detail}`);
    this.name = 'ListFormatError';
  }
}

export interface DecodedList {
  format: BinaryListFormat;
  /**
   * `line` is the entry's 1-based number in the order the file holds them
   * (binary files have no lines); it keeps `explain` pointing at an entry.
   * Keyword and regexp entries are here too: the policy matches them.
   */
  domains: { pattern: DomainPattern; line: number }[];
  /** Normalised text from parseCidr(...).text. */
  cidrs: { cidr: string; line: number }[];
  /** Entries skipped one by one (a bad name, a regexp we cannot run safely). */
  problems: ListProblem[];
  /** Entries understood but not applicable to routing by name or address. */
  ignored: number;
  /**
   * Where each selected part starts ("category netflix@!cn", "country jp"),
   * in entry numbers, ascending: `explain` names the part an entry came from.
   */
  sections?: { from: number; label: string }[];
}

/**
 * Limits. A real geosite.dat (v2fly dlc, ~2.3 MB) holds ~110k domains over
 * ~1,400 categories; the largest published files (Loyalsoldier, runetfreedom)
 * a few hundred thousand to ~1.5M. The caps are well above real files and
 * well below what would exhaust a router's memory.
 */
export const LIMITS = {
  /** Entries (domains + CIDRs) one decode may return. */
  maxEntries: 4_000_000,
  /** Bytes a compressed file (srs zlib, mrs zstd) may inflate to. */
  maxInflatedBytes: 64 * 1024 * 1024,
  /** Problems kept per decode; past that they are only counted. */
  maxProblems: 1000,
  /** Networks an mmdb tree walk may visit (a full GeoLite2-Country has ~500k). */
  maxMmdbNetworks: 8_000_000,
} as const;

/** Collects entries with the same checks formats.ts applies to text lists. */
export class Acc {
  readonly domains: DecodedList['domains'] = [];
  readonly cidrs: DecodedList['cidrs'] = [];
  readonly problems: ListProblem[] = [];
  ignored = 0;
  private n = 0;
  private dropped = 0;
  private readonly sections: { from: number; label: string }[] = [];

  constructor(
    private readonly list: string,
    private readonly format: BinaryListFormat,
  ) {}

  /** The next entry number; fails the decode past LIMITS.maxEntries. */
  next(): number {
    this.n++;
    if (this.n > LIMITS.maxEntries) fail(this.list, this.format, `more than ${LIMITS.maxEntries} entries`);
    return this.n;
  }

  /** Entries from the next one on belong to `label` (e.g. a geosite category). */
  section(label: string): void {
    this.sections.push({ from: this.n + 1, label });
  }

  problem(line: number, message: string): void {
    if (this.problems.length < LIMITS.maxProblems) this.problems.push({ line, col: 1, message });
    else this.dropped++;
  }

  /** A name with its kind (domain, subdomain, full), normalised as rules' names are. */
  name(kind: 'domain' | 'subdomain' | 'full', raw: string): void {
    const line = this.next();
    const n = normalizeDomain(raw);
    if ('error' in n) this.problem(line, n.error);
    else this.domains.push({ pattern: { kind, value: n.name }, line });
  }

  /** `keyword:` and `regexp:` go through the same checks as in rules (safe regexps only). */
  pattern(kind: 'keyword' | 'regexp', raw: string): void {
    const line = this.next();
    const r = parseDomainPattern(`${kind}:${raw}`);
    if ('error' in r) this.problem(line, r.error);
    else this.domains.push({ pattern: r.pattern, line });
  }

  cidr(text: string): void {
    const line = this.next();
    const c = parseCidr(text);
    if ('error' in c) this.problem(line, c.error);
    else this.cidrs.push({ cidr: c.text, line });
  }

  finish(): DecodedList {
    if (this.dropped > 0) {
      this.problems.push({ line: 0, col: 1, message: `${this.dropped} more entries skipped (not shown)` });
    }
    const out: DecodedList = { format: this.format, domains: this.domains, cidrs: this.cidrs, problems: this.problems, ignored: this.ignored };
    if (this.sections.length > 0) out.sections = this.sections;
    return out;
  }
}

export function fail(list: string, format: BinaryListFormat | 'unknown', detail: string): never {
  throw new ListFormatError(list, format, detail);
}

/**
 * Runs a decoder so that whatever goes wrong inside (a library's RangeError
 * on a truncated buffer, a stack overflow, a TypeError on garbage) comes out
 * as a ListFormatError that says which file and what kind it was meant to be.
 */
export function guarded<T>(list: string, format: BinaryListFormat, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ListFormatError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new ListFormatError(list, format, `not a valid ${what}: ${msg}`);
  }
}
