import { CidrIndex, type CidrHit } from './cidr-index.js';
import { DomainIndex, KIND_DOMAIN, KIND_FULL, KIND_SUBDOMAIN, type IndexHit } from './domain-index.js';
import { compileNameRegexp } from './safe-regexp.js';
import { ruleListNames } from './lists/geodata.js';
import { eachDomain, type ListCidrs, type ListDomains } from './lists/compact.js';
import { requiredLiteral } from './regexp-literal.js';
import { literalScanner, type LiteralScanner } from './literal-scan.js';
import { cidrContains, parseCidr, parseIp, unmapIp, type ParsedCidr, type ParsedIp } from '../lib/ip.js';
import type { Config, DomainPattern, RuleConfig, SourcePos, Target } from './types.js';

/** The entries of one list, as the policy needs them (a ParsedList fits). */
export interface ListContent {
  name: string;
  /** The file the line numbers point into: the list file, or the cached download. */
  file: string;
  /** An array of entries, or a loaded list's compact form (lists/compact.ts). */
  domains: ListDomains;
  cidrs: ListCidrs;
  /** Rule files: where each selected part (a geosite category) starts, in entry numbers. */
  sections?: readonly { from: number; label: string }[];
}

export type EntryKind = DomainPattern['kind'] | 'cidr' | 'source';

/** The config entry that decided a match, for `explain`. */
export interface MatchEntry {
  kind: EntryKind;
  value: string;
  /** Rule entries: rules[0].domains[2]. */
  keyPath?: string;
  /** List entries: the list's name. */
  list?: string;
  /** Rule-file entries: the part of the file it came from (a geosite category with its filters, a country code). */
  section?: string;
  pos: SourcePos;
}

export interface PolicyMatch {
  /** Index in `rules`, or null when the default applied. */
  rule: number | null;
  via: readonly Target[];
  entry: MatchEntry | null;
}

interface RuleEntryOrigin {
  kind: EntryKind;
  value: string;
  keyPath: string;
  pos: SourcePos;
}

interface PatternEntry {
  rule: number;
  value: string;
  re?: RegExp;
  /** Runs on the linear engine: too slow for the shared prefilter, tried on its own. */
  linear?: boolean;
  /** Tried only when the prefilter matched (it stands there as itself or by its required literal). */
  gated?: boolean;
  origin: number;
}

/** Per-rule matchers for rules restricted to `sources` (evaluated only when a source is known). */
interface ConditionalRule {
  rule: number;
  sources: ParsedCidr[];
  hasDestination: boolean;
  names: NameMatcher;
  cidrs: CidrIndex;
}

// A list entry's origin packs the list and the line into one number, so 100k
// entries cost no objects: origin = list * LINE_SPAN + line. Rule entries use
// negative numbers: -(index into ruleOrigins) - 1.
const LINE_SPAN = 2 ** 24;
const KIND_NAMES: readonly EntryKind[] = ['domain', 'subdomain', 'full'];

class NameMatcher {
  readonly index = new DomainIndex();
  keywords: PatternEntry[] = [];
  regexps: PatternEntry[] = [];
  private hit: IndexHit = { rule: -1, entry: -1, kind: -1 };

  add(p: DomainPattern, rule: number, origin: number): void {
    this.addEntry(p.kind, p.value, rule, origin);
  }

  /** `bytes[start...]`: where `value` is kept as bytes (a compact list's), for the index to read in place. */
  addEntry(kind: DomainPattern['kind'], value: string, rule: number, origin: number, bytes: Uint8Array | null = null, start = 0): void {
    switch (kind) {
      case 'domain':
        return this.index.add(value, KIND_DOMAIN, rule, origin, bytes, start);
      case 'subdomain':
        return this.index.add(value, KIND_SUBDOMAIN, rule, origin, bytes, start);
      case 'full':
        return this.index.add(value, KIND_FULL, rule, origin, bytes, start);
      case 'keyword':
        this.keywords.push({ rule, value, origin });
        return;
      case 'regexp':
        {
          const c = compileNameRegexp(value);
          // Patterns were checked when loaded; one that fails here matches nothing rather than everything.
          if ('re' in c) this.regexps.push({ rule, value, re: c.re, linear: c.linear, origin });
        }
        return;
    }
  }

  /**
   * One compiled alternation over every keyword and simple regexp: most names
   * match none, and one pass of V8's fast engine says so sooner than a scan
   * per entry. Only on a hit are those entries tried one by one, in rule
   * order. Regexps that need the linear engine are tried on their own.
   */
  private anyPattern: RegExp | null = null;

  build(): void {
    this.index.build();
    // Sorted by rule so a scan stops at the first entry that cannot beat the index.
    this.keywords.sort((a, b) => a.rule - b.rule);
    this.regexps.sort((a, b) => a.rule - b.rule);
    const literal = (v: string): string => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // A regexp stands in the prefilter by a literal each of its matches holds, when it has one (regexp-literal.ts).
    // A linear-engine regexp with such a literal is gated by it too; one without is tried on every name.
    const parts = new Set(this.keywords.map((k) => literal(k.value)));
    for (const r of this.regexps) {
      const lit = requiredLiteral(r.value);
      if (lit !== null) parts.add(literal(lit));
      else if (!r.linear) parts.add(`(?:${r.value})`);
      r.gated = lit !== null || !r.linear;
    }
    // Each alternative is a literal or a simple pattern, so the alternation is safe too.
    if (parts.size > 1) this.anyPattern = new RegExp([...parts].join('|'));
    this.buildScanner();
  }

  /**
   * With every keyword and regexp gated by a literal (geosite files: ~200
   * regexps, some needing the slow linear engine), one Aho-Corasick pass
   * names the entries worth trying, so a name pays for the patterns that
   * could match it, not for all of them (literal-scan.ts).
   */
  private scanner: LiteralScanner | null = null;
  /** Per literal of the scanner: the entries it gates (keywords match by it alone). */
  private byLiteral: PatternEntry[][] = [];
  /** Regexps without a literal: tried on every name that gets this far. */
  private ungated: PatternEntry[] = [];

  private buildScanner(): void {
    if (this.keywords.length + this.regexps.length < 2) return;
    const ids = new Map<string, number>();
    const byLiteral: PatternEntry[][] = [];
    const gate = (lit: string, e: PatternEntry): void => {
      let id = ids.get(lit);
      if (id === undefined) ids.set(lit, (id = byLiteral.push([]) - 1));
      byLiteral[id]!.push(e);
    };
    for (const k of this.keywords) gate(k.value, k);
    const ungated: PatternEntry[] = [];
    for (const r of this.regexps) {
      const lit = requiredLiteral(r.value);
      if (lit === null) ungated.push(r);
      else gate(lit, r);
    }
    const scanner = literalScanner([...ids.keys()]);
    if (scanner === null) return; // too many keywords for a table: the alternation stays
    this.scanner = scanner;
    this.byLiteral = byLiteral;
    this.ungated = ungated;
  }

  /** The lowest rule among the gated entries the scan found, and the ungated that match; -1: none below `best`. */
  private matchScanned(lower: string, best: number, detail?: { kind: EntryKind; value: string; origin: number }): number {
    const sc = this.scanner!;
    const n = sc.scan(lower);
    if (n === 0 && this.ungated.length === 0) return best;
    // The rule to beat: the index's answer, then the best pattern found so far.
    let limit = best < 0 ? Infinity : best;
    let won: PatternEntry | null = null;
    for (let i = 0; i < n; i++) {
      const gated = this.byLiteral[sc.hits[i]!]!;
      for (let j = 0; j < gated.length; j++) {
        const e = gated[j]!;
        if (e.rule < limit && (e.re === undefined || e.re.test(lower))) {
          won = e;
          limit = e.rule;
        }
      }
    }
    for (let j = 0; j < this.ungated.length; j++) {
      const e = this.ungated[j]!;
      if (e.rule < limit && e.re!.test(lower)) {
        won = e;
        limit = e.rule;
      }
    }
    if (won === null) return best;
    if (detail) {
      detail.kind = won.re === undefined ? 'keyword' : 'regexp';
      detail.value = won.value;
      detail.origin = won.origin;
    }
    return won.rule;
  }

  get empty(): boolean {
    return this.index.size === 0 && this.keywords.length === 0 && this.regexps.length === 0;
  }

  /** Lowest matching rule or -1; `detail` receives [kind, value, origin] of the winner. */
  match(name: string, detail?: { kind: EntryKind; value: string; origin: number }): number {
    let best = this.index.lookup(name, detail ? this.hit : undefined);
    if (best >= 0 && detail) {
      detail.kind = KIND_NAMES[this.hit.kind]!;
      detail.value = this.index.entryKey(this.hit.entry);
      detail.origin = this.index.origin(this.hit.entry, this.hit.kind);
    }
    if (this.keywords.length === 0 && this.regexps.length === 0) return best;
    const limit = best < 0 ? Infinity : best;
    if (!(this.keywords[0] && this.keywords[0].rule < limit) && !(this.regexps[0] && this.regexps[0].rule < limit)) {
      return best;
    }
    // Names from the wire are nearly always lower case already: copy only when not.
    const lower = isCanonical(name) ? name : canonical(name);
    if (this.scanner !== null) return this.matchScanned(lower, best, detail);
    const maybe = this.anyPattern === null || this.anyPattern.test(lower);
    for (const k of maybe ? this.keywords : []) {
      if (k.rule >= (best < 0 ? Infinity : best)) break;
      if (lower.includes(k.value)) {
        best = k.rule;
        if (detail) Object.assign(detail, { kind: 'keyword', value: k.value, origin: k.origin });
        break;
      }
    }
    for (const r of this.regexps) {
      if (r.rule >= (best < 0 ? Infinity : best)) break;
      if (!maybe && r.gated) continue;
      if (r.re!.test(lower)) {
        best = r.rule;
        if (detail) Object.assign(detail, { kind: 'regexp', value: r.value, origin: r.origin });
        break;
      }
    }
    return best;
  }
}

function toIp(v: ParsedIp | string | undefined): ParsedIp | undefined {
  if (v === undefined) return undefined;
  const ip = typeof v === 'string' ? parseIp(v) : v;
  return ip ? unmapIp(ip) : undefined;
}

function isCanonical(name: string): boolean {
  const n = name.length;
  if (n > 0 && name.charCodeAt(n - 1) === 46) return false;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return false;
  }
  return true;
}

function canonical(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

export interface PolicyStats {
  rules: number;
  domains: number;
  keywords: number;
  regexps: number;
  cidrs: number;
  sourceRules: number;
}

/**
 * A compiled, immutable policy: destination name or address → rule → via.
 * Build with compilePolicy(); share freely between the resolver, the proxy and
 * `explain`.
 */
export class Policy {
  private readonly names = new NameMatcher();
  private readonly cidrs = new CidrIndex();
  private readonly conditional: ConditionalRule[] = [];
  private readonly ruleOrigins: RuleEntryOrigin[] = [];
  private readonly listNames: string[] = [];
  private readonly listFiles: string[] = [];
  private readonly listSections: (readonly { from: number; label: string }[] | undefined)[] = [];

  private constructor(
    readonly rules: readonly RuleConfig[],
    readonly defaultVia: readonly Target[],
  ) {}

  static compile(config: Pick<Config, 'rules' | 'default'> & Partial<Pick<Config, 'mode'>>, lists: ReadonlyMap<string, ListContent>): Policy {
    const p = new Policy(config.rules, config.default);
    const listIdx = new Map<string, number>();
    for (const [name, l] of lists) {
      listIdx.set(name, p.listNames.length);
      p.listNames.push(name);
      p.listFiles.push(l.file);
      p.listSections.push(l.sections);
    }
    for (const rule of config.rules) {
      const r = rule.index;
      // Sources name LAN clients; in host mode every client is this machine
      // (its resolver's and proxy's clients are local), whose own addresses a
      // source CIDR may well cover: such a rule matches nothing there, as the
      // data plane renders nothing for it (config/load.ts warns).
      if (config.mode === 'host' && (rule.sources.length > 0 || (rule.devices?.length ?? 0) > 0)) continue;
      let names = p.names;
      let cidrs = p.cidrs;
      if (rule.sources.length > 0) {
        const cond: ConditionalRule = {
          rule: r,
          sources: rule.sources.map((s) => parseCidr(s.cidr) as ParsedCidr),
          hasDestination: rule.domains.length + rule.cidrs.length + ruleListNames(rule).length > 0,
          names: new NameMatcher(),
          cidrs: new CidrIndex(),
        };
        p.conditional.push(cond);
        names = cond.names;
        cidrs = cond.cidrs;
      }
      for (const d of rule.domains) {
        names.add(d.pattern, r, p.ruleOrigin(d.pattern.kind, d.pattern.value, d.origin.keyPath ?? '', d.origin.pos));
      }
      for (const c of rule.cidrs) {
        const parsed = parseCidr(c.cidr) as ParsedCidr;
        cidrs.add(parsed, r, p.ruleOrigin('cidr', parsed.text, c.origin.keyPath ?? '', c.origin.pos));
      }
      for (const name of ruleListNames(rule)) {
        const l = lists.get(name);
        const li = listIdx.get(name);
        if (!l || li === undefined) continue; // not loaded yet (a URL list before its first download)
        names.index.reserve(names.index.size + l.domains.length);
        const base = li * LINE_SPAN;
        eachDomain(l.domains, (kind, value, line, bytes, start) => names.addEntry(kind, value, r, base + line, bytes, start));
        for (const c of l.cidrs) {
          const parsed = parseCidr(c.cidr);
          if (!('error' in parsed)) cidrs.add(parsed, r, li * LINE_SPAN + c.line);
        }
      }
    }
    p.names.build();
    p.cidrs.build();
    for (const c of p.conditional) {
      c.names.build();
      c.cidrs.build();
    }
    return p;
  }

  get stats(): PolicyStats {
    return {
      rules: this.rules.length,
      domains: this.names.index.size + this.conditional.reduce((n, c) => n + c.names.index.size, 0),
      keywords: this.names.keywords.length,
      regexps: this.names.regexps.length,
      cidrs: this.cidrs.size + this.conditional.reduce((n, c) => n + c.cidrs.size, 0),
      sourceRules: this.conditional.length,
    };
  }

  /** Whether any rule depends on the client's address (router mode `sources`). */
  get hasSourceRules(): boolean {
    return this.conditional.length > 0;
  }

  /** Hot path: the rule for a name, ignoring source-restricted rules; -1 = default. */
  ruleForName(name: string): number {
    return this.names.match(name);
  }

  /** The via of a rule index, or of the default for -1/null. */
  viaOf(rule: number | null): readonly Target[] {
    return rule === null || rule < 0 ? this.defaultVia : this.rules[rule]!.via;
  }

  /** Where traffic to `name` goes, for a client at `source` when known. */
  matchName(name: string, source?: ParsedIp | string): PolicyMatch {
    const detail = { kind: 'domain' as EntryKind, value: '', origin: 0 };
    const best = this.names.match(name, detail);
    const entry = best >= 0 ? this.describe(detail.kind, detail.value, detail.origin) : null;
    return this.withSourceRules(best, entry, source, (c) => {
      const d = { kind: 'domain' as EntryKind, value: '', origin: 0 };
      return c.names.match(name, d) >= 0 ? this.describe(d.kind, d.value, d.origin) : null;
    });
  }

  /** Where traffic to the address `ip` goes (CIDR rules and lists), for a client at `source`. */
  matchIp(ip: ParsedIp | string, source?: ParsedIp | string): PolicyMatch {
    const dst = toIp(ip);
    if (!dst) throw new TypeError(`not an IP address: ${String(ip)}`);
    const hit: CidrHit | null = this.cidrs.lookup(dst);
    return this.withSourceRules(hit ? hit.rule : -1, hit ? this.describe('cidr', hit.cidr, hit.origin) : null, source, (c) => {
      const h = c.cidrs.lookup(dst);
      return h ? this.describe('cidr', h.cidr, h.origin) : null;
    });
  }

  /**
   * Lets a source-restricted rule that comes before `best` win: one that names
   * only sources matches any destination; one with destinations matches when
   * `destination(c)` finds the entry.
   */
  private withSourceRules(best: number, entry: MatchEntry | null, source: ParsedIp | string | undefined, destination: (c: ConditionalRule) => MatchEntry | null): PolicyMatch {
    const src = toIp(source);
    if (src) {
      for (const c of this.conditional) {
        if (best >= 0 && c.rule >= best) break;
        const s = c.sources.find((cidr) => cidrContains(cidr, src));
        if (!s) continue;
        const e = c.hasDestination ? destination(c) : this.sourceEntry(c.rule, s);
        if (e) {
          best = c.rule;
          entry = e;
          break;
        }
      }
    }
    return best >= 0 ? { rule: best, via: this.rules[best]!.via, entry } : { rule: null, via: this.defaultVia, entry: null };
  }

  private ruleOrigin(kind: EntryKind, value: string, keyPath: string, pos: SourcePos): number {
    this.ruleOrigins.push({ kind, value, keyPath, pos });
    return -this.ruleOrigins.length;
  }

  private sourceEntry(rule: number, cidr: ParsedCidr): MatchEntry {
    const r = this.rules[rule]!;
    const i = r.sources.findIndex((s) => s.cidr === cidr.text);
    const o = r.sources[i]!.origin;
    return { kind: 'source', value: cidr.text, keyPath: o.keyPath ?? `rules[${rule}].sources[${i}]`, pos: o.pos };
  }

  private describe(kind: EntryKind, value: string, origin: number): MatchEntry {
    if (origin < 0) {
      const o = this.ruleOrigins[-origin - 1]!;
      return { kind: o.kind, value: o.value, keyPath: o.keyPath, pos: o.pos };
    }
    const li = Math.floor(origin / LINE_SPAN);
    const line = origin % LINE_SPAN;
    const entry: MatchEntry = { kind, value, list: this.listNames[li]!, pos: { file: this.listFiles[li]!, line, col: 1 } };
    const sections = this.listSections[li];
    if (sections) {
      let label: string | undefined;
      for (const s of sections) if (s.from <= line) label = s.label;
      if (label !== undefined) entry.section = label;
    }
    return entry;
  }
}

export function compilePolicy(config: Pick<Config, 'rules' | 'default'> & Partial<Pick<Config, 'mode'>>, lists: ReadonlyMap<string, ListContent>): Policy {
  return Policy.compile(config, lists);
}

/** How a target reads to a user: gw:gw1 → gw1, link:lte → lte. */
export function targetLabel(t: Target): string {
  return t.startsWith('gw:') ? t.slice(3) : t.startsWith('link:') ? t.slice(5) : t;
}
