// Pure parsers for the domain and CIDR list formats people already publish:
// hosts blocklists, dnsmasq snippets, Clash rule providers, v2fly
// domain-list-community files, plain domain lists and CIDR lists.
//
// Every parser walks the text line by line and keeps going after a bad line:
// a list of 100k entries with one typo must still load the other 99,999. Lines
// are split once and scanned with indexOf and char tests, so there is no regex
// that could backtrack on a hostile line.

import { isIP } from 'node:net';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import { normalizeDomain, parseDomainPattern } from '../domain.js';
import { parseCidr } from '../../lib/ip.js';
import type { DomainPattern, TextListFormat } from '../types.js';

export type ConcreteListFormat = Exclude<TextListFormat, 'auto'>;

export interface ListProblem {
  line: number; // 1-based
  col: number; // 1-based column of the entry start
  message: string;
}

export interface ParsedList {
  format: ConcreteListFormat;
  domains: { pattern: DomainPattern; line: number }[];
  /** Normalised text from parseCidr(...).text. */
  cidrs: { cidr: string; line: number }[];
  problems: ListProblem[];
  /**
   * Entries understood but not applicable (Clash PROCESS-NAME, dnsmasq
   * `address=/#/`, hosts `localhost`...). Counted per entry, which is per line
   * in every format except hosts, where one line may name several hosts.
   */
  ignored: number;
}

type Acc = Omit<ParsedList, 'format'>;

/** A piece of a line with its 1-based start column. */
interface Span {
  text: string;
  col: number;
}

interface CommentRules {
  /** Markers that make the whole line a comment when they start it. */
  lineStart: readonly string[];
  /** Up to two characters that start a comment anywhere on the line. */
  inline: string;
  /** Inline markers only count after whitespace (so `a#b` stays one entry). */
  inlineNeedsSpace: boolean;
}

const PLAIN_COMMENTS: CommentRules = { lineStart: ['#', '!', ';', '//'], inline: '#', inlineNeedsSpace: true };
// hosts(5): "text from a # to the end of the line is a comment".
const HOSTS_COMMENTS: CommentRules = { lineStart: ['#'], inline: '#', inlineNeedsSpace: false };
// dnsmasq only knows whole-line comments; `#` is data in `server=/#/` and `nftset=/x/4#inet#t#s`.
const DNSMASQ_COMMENTS: CommentRules = { lineStart: ['#'], inline: '', inlineNeedsSpace: false };
// Clash text providers: whole-line comments only, a DOMAIN-REGEX may hold `#`.
const CLASH_COMMENTS: CommentRules = { lineStart: ['#', '//'], inline: '', inlineNeedsSpace: false };
// domain-list-community cuts every line at its first `#`, so we do the same.
const V2FLY_COMMENTS: CommentRules = { lineStart: ['#'], inline: '#', inlineNeedsSpace: false };
// Spamhaus DROP style lists annotate with `; SBL123`.
const CIDR_COMMENTS: CommentRules = { lineStart: ['#', ';', '//'], inline: '#;', inlineNeedsSpace: false };

// ---------------------------------------------------------------------------
// Line handling

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Splits on LF and drops a trailing CR, so CRLF files keep their columns. */
function splitLines(text: string): string[] {
  const lines = stripBom(text).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.endsWith('\r')) lines[i] = l.slice(0, -1);
  }
  return lines;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 11 || c === 12 || c === 13;
}

/** The content of a line without comments and surrounding blanks, or null. */
function content(line: string, rules: CommentRules): Span | null {
  let a = 0;
  while (a < line.length && isSpace(line.charCodeAt(a))) a++;
  if (a === line.length) return null;
  for (const m of rules.lineStart) if (line.startsWith(m, a)) return null;
  let end = line.length;
  if (rules.inline !== '') {
    // Char codes, not one-char strings: this loop sees every byte of the list.
    const m0 = rules.inline.charCodeAt(0);
    const m1 = rules.inline.length > 1 ? rules.inline.charCodeAt(1) : m0;
    for (let i = a + 1; i < line.length; i++) {
      const c = line.charCodeAt(i);
      if ((c === m0 || c === m1) && (!rules.inlineNeedsSpace || isSpace(line.charCodeAt(i - 1)))) {
        end = i;
        break;
      }
    }
  }
  while (end > a && isSpace(line.charCodeAt(end - 1))) end--;
  if (end === a) return null;
  return { text: line.slice(a, end), col: a + 1 };
}

/** Whitespace-separated tokens of a span, each with its own column. */
function tokens(s: Span): Span[] {
  const out: Span[] = [];
  const t = s.text;
  let i = 0;
  while (i < t.length) {
    while (i < t.length && isSpace(t.charCodeAt(i))) i++;
    if (i === t.length) break;
    const start = i;
    while (i < t.length && !isSpace(t.charCodeAt(i))) i++;
    out.push({ text: t.slice(start, i), col: s.col + start });
  }
  return out;
}

function newAcc(): Acc {
  return { domains: [], cidrs: [], problems: [], ignored: 0 };
}

function finish(format: ConcreteListFormat, acc: Acc): ParsedList {
  return { format, ...acc };
}

function problem(acc: Acc, line: number, col: number, message: string): void {
  acc.problems.push({ line, col, message });
}

function addDomain(acc: Acc, r: { pattern: DomainPattern } | { error: string }, line: number, col: number): void {
  if ('error' in r) problem(acc, line, col, r.error);
  else acc.domains.push({ pattern: r.pattern, line });
}

function addName(acc: Acc, kind: 'domain' | 'subdomain' | 'full', raw: string, line: number, col: number): void {
  const n = normalizeDomain(raw);
  if ('error' in n) problem(acc, line, col, n.error);
  else acc.domains.push({ pattern: { kind, value: n.name }, line });
}

function addCidr(acc: Acc, raw: string, line: number, col: number): void {
  const c = parseCidr(raw);
  if ('error' in c) problem(acc, line, col, c.error);
  else acc.cidrs.push({ cidr: c.text, line });
}

/** Is this an address or CIDR (as opposed to a name)? */
function isAddressLike(s: string): boolean {
  // Names almost always have a character no address has (g-z, '-', '_'): skip
  // the IPv6 regex behind isIP for them.
  let end = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) | 0x20; // ASCII lower case; also maps '.' and ':' onto themselves
    if (c === 0x2f || c === 0x25) {
      end = i; // '/' prefix or '%' zone: the address ends here
      break;
    }
    const ok = (c >= 0x30 && c <= 0x3a) || c === 0x2e || (c >= 0x61 && c <= 0x66);
    if (!ok) return false;
  }
  return isIP(end === s.length ? s : s.slice(0, end)) !== 0;
}

// ---------------------------------------------------------------------------
// plain

/**
 * One domain per line, with the rules prefixes (`full:`, `*.`, `+.`...).
 * Addresses and CIDRs go to `cidrs`: mixed lists (DoH endpoints: names and
 * IPs) are common, and `1.2.3.4` would otherwise pass as a four-label name.
 */
function parsePlain(lines: string[]): ParsedList {
  const acc = newAcc();
  for (let i = 0; i < lines.length; i++) {
    const s = content(lines[i]!, PLAIN_COMMENTS);
    if (!s) continue;
    if (isAddressLike(s.text)) addCidr(acc, s.text, i + 1, s.col);
    else addDomain(acc, parseDomainPattern(s.text), i + 1, s.col);
  }
  return finish('plain', acc);
}

// ---------------------------------------------------------------------------
// hosts

const HOSTS_SKIP = new Set(['localhost', 'localhost.localdomain', 'local', 'broadcasthost']);

function isHostsBoilerplate(name: string): boolean {
  const n = name.toLowerCase();
  return HOSTS_SKIP.has(n) || n.startsWith('ip6-') || isAddressLike(n);
}

/** `0.0.0.0 a.example b.example`: each name blocks itself and its subdomains. */
function parseHosts(lines: string[]): ParsedList {
  const acc = newAcc();
  for (let i = 0; i < lines.length; i++) {
    const s = content(lines[i]!, HOSTS_COMMENTS);
    if (!s) continue;
    const line = i + 1;
    const [addr, ...names] = tokens(s);
    if (!addr) continue;
    if (!isAddressLike(addr.text) || addr.text.includes('/')) {
      problem(acc, line, addr.col, `"${addr.text}" is not an IP address (a hosts line starts with one)`);
      continue;
    }
    if (names.length === 0) {
      problem(acc, line, addr.col, `address "${addr.text}" has no host names after it`);
      continue;
    }
    for (const n of names) {
      if (isHostsBoilerplate(n.text)) acc.ignored++;
      else addName(acc, 'domain', n.text, line, n.col);
    }
  }
  return finish('hosts', acc);
}

// ---------------------------------------------------------------------------
// dnsmasq

/** Directives whose `/domain/.../` part names domains we can route. */
const DNSMASQ_DOMAIN_KEYS = new Set(['server', 'local', 'address', 'ipset', 'nftset']);

function isDirectiveKey(k: string): boolean {
  if (k === '') return false;
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    const ok = (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || (c === 45 && i > 0);
    if (!ok) return false;
  }
  return true;
}

function parseDnsmasq(lines: string[]): ParsedList {
  const acc = newAcc();
  for (let i = 0; i < lines.length; i++) {
    const s = content(lines[i]!, DNSMASQ_COMMENTS);
    if (!s) continue;
    parseDnsmasqLine(acc, s, i + 1);
  }
  return finish('dnsmasq', acc);
}

function parseDnsmasqLine(acc: Acc, s: Span, line: number): void {
  const eq = s.text.indexOf('=');
  const key = (eq < 0 ? s.text : s.text.slice(0, eq)).trim();
  if (!isDirectiveKey(key)) {
    problem(acc, line, s.col, `"${s.text}" is not a dnsmasq directive (expected key=value)`);
    return;
  }
  const value = eq < 0 ? '' : s.text.slice(eq + 1);
  // Options without a domain part (`no-resolv`, `server=8.8.8.8`) are valid but say nothing about names.
  if (!DNSMASQ_DOMAIN_KEYS.has(key.toLowerCase()) || !value.startsWith('/')) {
    acc.ignored++;
    return;
  }
  const last = value.lastIndexOf('/');
  if (last === 0) {
    problem(acc, line, s.col, `${key}= has no closing "/" after its domains`);
    return;
  }
  const valueCol = s.col + eq + 1;
  let start = 1;
  while (start <= last) {
    const slash = value.indexOf('/', start);
    const d = value.slice(start, slash);
    const col = valueCol + start;
    // `#` means every name and an empty part means unqualified names: neither is a list entry.
    if (d === '' || d === '#') acc.ignored++;
    else addName(acc, 'domain', d.startsWith('.') ? d.slice(1) : d, line, col);
    start = slash + 1;
  }
}

// ---------------------------------------------------------------------------
// clash

/**
 * One payload entry. Rule-provider payloads carry no policy, so after the
 * value only options such as `no-resolve` may follow.
 */
function clashEntry(acc: Acc, raw: string, line: number, col: number): void {
  const entry = raw.trim();
  if (entry === '') {
    problem(acc, line, col, 'empty payload entry');
    return;
  }
  const comma = entry.indexOf(',');
  if (comma < 0) {
    clashBare(acc, entry, line, col);
    return;
  }
  const type = entry.slice(0, comma).trim().toUpperCase();
  const rest = entry.slice(comma + 1);
  const next = rest.indexOf(',');
  const field = (next < 0 ? rest : rest.slice(0, next)).trim();
  switch (type) {
    case 'DOMAIN-SUFFIX':
      addName(acc, 'domain', field.startsWith('.') ? field.slice(1) : field, line, col);
      return;
    case 'DOMAIN':
      addName(acc, 'full', field, line, col);
      return;
    case 'DOMAIN-KEYWORD':
      addDomain(acc, parseDomainPattern(`keyword:${field}`), line, col);
      return;
    case 'DOMAIN-REGEX':
      // A regex may contain commas: it runs to the end of the entry.
      addDomain(acc, parseDomainPattern(`regexp:${rest.trim()}`), line, col);
      return;
    case 'IP-CIDR':
    case 'IP-CIDR6':
      addCidr(acc, field, line, col);
      return;
  }
  if (isDirectiveKey(type)) acc.ignored++; // PROCESS-NAME, GEOIP, DST-PORT, AND, MATCH...
  else problem(acc, line, col, `"${entry}" is not a Clash rule (expected TYPE,value)`);
}

function clashBare(acc: Acc, entry: string, line: number, col: number): void {
  // MATCH takes no value; it is a rule, not a host named "match".
  if (CLASH_TYPES.has(entry.toUpperCase())) acc.ignored++;
  else if (entry.startsWith('+.')) addName(acc, 'domain', entry.slice(2), line, col);
  // Clash's `*` is one label and `.x` is every subdomain; 'subdomain' is the closest we have.
  else if (entry.startsWith('*.')) addName(acc, 'subdomain', entry.slice(2), line, col);
  else if (entry.startsWith('.')) addName(acc, 'subdomain', entry.slice(1), line, col);
  else if (isAddressLike(entry)) addCidr(acc, entry, line, col);
  else addName(acc, 'full', entry, line, col);
}

function isYamlPayload(lines: string[]): boolean {
  for (const l of lines) {
    const t = l.trim();
    if (t === '' || t.startsWith('#') || t === '---') continue;
    return t.startsWith('payload:');
  }
  return false;
}

function parseClash(lines: string[], text: string): ParsedList {
  if (isYamlPayload(lines)) {
    const items = fastClashYamlItems(lines);
    if (items === null) return parseClashYamlDocument(text);
    const acc = newAcc();
    for (const it of items) clashEntry(acc, it.value, it.line, it.col);
    return finish('clash', acc);
  }
  const acc = newAcc();
  for (let i = 0; i < lines.length; i++) {
    const s = content(lines[i]!, CLASH_COMMENTS);
    if (s) clashEntry(acc, s.text, i + 1, s.col);
  }
  return finish('clash', acc);
}

/**
 * A Clash YAML payload through the `yaml` package: any YAML, with line numbers
 * from node ranges. It is the reference for the fast path below and is used
 * whenever a file strays from the simple shape (about 1 s per 100k entries).
 */
export function parseClashYamlDocument(text: string): ParsedList {
  const acc = newAcc();
  const lc = new LineCounter();
  const src = stripBom(text);
  const doc = parseDocument(src, { lineCounter: lc });
  for (const e of doc.errors) {
    const at = e.linePos?.[0] ?? { line: 1, col: 1 };
    problem(acc, at.line, at.col, `YAML: ${e.message.split('\n')[0]}`);
  }
  const payload = isMap(doc.contents) ? doc.contents.get('payload', true) : undefined;
  if (!isSeq(payload)) {
    if (doc.errors.length === 0) problem(acc, 1, 1, 'no "payload:" list in this Clash rule provider');
    return finish('clash', acc);
  }
  for (const item of payload.items) {
    const range = (item as { range?: [number, number, number] | null }).range ?? [0, 0, 0];
    const pos = lc.linePos(range[0]);
    if (!isScalar(item) || typeof item.value !== 'string') {
      const shown = src.slice(range[0], Math.min(range[1], range[0] + 60)).trim() || 'null';
      problem(acc, pos.line, pos.col, `payload entry ${shown} is not a string (quote it)`);
      continue;
    }
    // Point past the opening quote, where the entry text starts.
    const quoted = item.type === 'QUOTE_SINGLE' || item.type === 'QUOTE_DOUBLE';
    clashEntry(acc, item.value, pos.line, pos.col + (quoted ? 1 : 0));
  }
  return finish('clash', acc);
}

interface YamlItem {
  value: string;
  line: number;
  col: number;
}

const YAML_NON_STRINGS = new Set(['true', 'false', 'null', '~', '.inf', '+.inf', '-.inf', '.nan']);
// Characters that give a plain YAML scalar another meaning when they start it.
const YAML_INDICATORS = '-?:,[]{}#&*!|>\'"%@`';

/**
 * The shape nearly every published rule provider has: comments, `payload:`,
 * then `  - entry` lines (plain or simply quoted). Reading that shape by hand
 * is ~50x faster than a YAML parser; anything else returns null and goes to
 * the `yaml` package, so the two never disagree on what they both accept.
 */
function fastClashYamlItems(lines: string[]): YamlItem[] | null {
  const items: YamlItem[] = [];
  let seenPayload = false;
  let indent = -1;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    let a = 0;
    while (a < l.length && l.charCodeAt(a) === 32) a++;
    if (a === l.length || l[a] === '#') continue;
    if (l.charCodeAt(a) === 9) return null; // tabs: let the real parser judge
    if (!seenPayload) {
      if (a !== 0 || !l.startsWith('payload:')) return null;
      const after = l.slice('payload:'.length);
      if (after.trim() !== '' && !/^[ \t]+#/.test(after)) return null;
      seenPayload = true;
      continue;
    }
    if (!l.startsWith('- ', a)) return null;
    if (indent < 0) indent = a;
    else if (a !== indent) return null;
    let v = a + 2;
    while (v < l.length && l.charCodeAt(v) === 32) v++;
    const sc = fastScalar(l, v);
    if (sc === null) return null;
    items.push({ value: sc.text, line: i + 1, col: sc.col });
  }
  // `payload:` with no items is null to YAML; the library path explains that.
  return items.length > 0 ? items : null;
}

/** A one-line YAML scalar starting at `v`, or null when it is not simple. */
function fastScalar(l: string, v: number): Span | null {
  const q = l[v];
  if (q === "'" || q === '"') {
    const end = l.indexOf(q, v + 1);
    if (end < 0) return null;
    const inner = l.slice(v + 1, end);
    if (q === "'" && l[end + 1] === "'") return null; // '' escape
    if (q === '"' && inner.includes('\\')) return null;
    const after = l.slice(end + 1);
    if (after !== '' && !/^[ \t]+(#.*)?$/.test(after)) return null;
    return { text: inner, col: v + 2 };
  }
  if (v >= l.length || YAML_INDICATORS.includes(l[v]!)) return null;
  let end = l.length;
  for (let i = v + 1; i < l.length; i++) {
    if (l[i] === '#' && isSpace(l.charCodeAt(i - 1))) {
      end = i;
      break;
    }
  }
  const text = l.slice(v, end).trimEnd();
  if (text.includes(': ') || text.endsWith(':') || text.includes('\t')) return null;
  // Numbers, booleans and nulls are not strings to YAML; leave them to the library.
  const c0 = text.charCodeAt(0);
  const numeric = (c0 >= 0x30 && c0 <= 0x39) || c0 === 0x2b || c0 === 0x2e;
  if ((numeric && !Number.isNaN(Number(text))) || (text.length <= 5 && YAML_NON_STRINGS.has(text.toLowerCase()))) {
    return null;
  }
  return { text, col: v + 1 };
}

// ---------------------------------------------------------------------------
// v2fly

function parseV2fly(lines: string[]): ParsedList {
  const acc = newAcc();
  for (let i = 0; i < lines.length; i++) {
    const s = content(lines[i]!, V2FLY_COMMENTS);
    if (!s) continue;
    const line = i + 1;
    const [entry, ...rest] = tokens(s);
    if (!entry) continue;
    // `@ads`, `@!cn` are attributes and `&x` affiliations: both about the upstream build, not routing.
    const stray = rest.find((t) => !t.text.startsWith('@') && !t.text.startsWith('&'));
    if (stray) {
      problem(acc, line, stray.col, `unexpected "${stray.text}" after "${entry.text}" (attributes start with "@")`);
      continue;
    }
    // Includes name other files of the repository, which we cannot follow offline.
    if (entry.text.length > 8 && entry.text.slice(0, 8).toLowerCase() === 'include:') acc.ignored++;
    else addDomain(acc, parseDomainPattern(entry.text), line, entry.col);
  }
  return finish('v2fly', acc);
}

// ---------------------------------------------------------------------------
// cidr

function parseCidrList(lines: string[]): ParsedList {
  const acc = newAcc();
  for (let i = 0; i < lines.length; i++) {
    const s = content(lines[i]!, CIDR_COMMENTS);
    if (!s) continue;
    // A second word is no annotation we know (those follow `#` or `;`): more
    // likely this is another format, e.g. a hosts file, whose addresses are not the point.
    const [first, stray] = tokens(s);
    if (stray) problem(acc, i + 1, stray.col, `unexpected "${stray.text}" after "${first!.text}"`);
    else addCidr(acc, first!.text, i + 1, first!.col);
  }
  return finish('cidr', acc);
}

// ---------------------------------------------------------------------------
// detection

const SAMPLE_LINES = 200;
const ANY_COMMENTS: CommentRules = { lineStart: ['#', '!', ';', '//'], inline: '', inlineNeedsSpace: false };
const CLASH_TYPES = new Set([
  'DOMAIN', 'DOMAIN-SUFFIX', 'DOMAIN-KEYWORD', 'DOMAIN-REGEX', 'DOMAIN-WILDCARD', 'GEOSITE', 'GEOIP',
  'IP-CIDR', 'IP-CIDR6', 'IP-SUFFIX', 'IP-ASN', 'SRC-GEOIP', 'SRC-IP-ASN', 'SRC-IP-CIDR', 'SRC-IP-SUFFIX',
  'DST-PORT', 'SRC-PORT', 'IN-PORT', 'IN-TYPE', 'IN-USER', 'IN-NAME', 'PROCESS-NAME', 'PROCESS-PATH',
  'PROCESS-NAME-REGEX', 'PROCESS-PATH-REGEX', 'UID', 'NETWORK', 'DSCP', 'RULE-SET', 'AND', 'OR', 'NOT',
  'SUB-RULE', 'MATCH',
]);
// `domain:` and `include:` exist only in v2fly; `full:` and friends are shared with plain lists.
const V2FLY_ONLY_PREFIXES = ['domain:', 'include:'];
const SHARED_PREFIXES = ['full:', 'keyword:', 'regexp:'];

/** What one sampled line suggests. `v2fly-weak` and `plus` only tip the balance. */
type Kind = 'hosts' | 'dnsmasq' | 'clash' | 'v2fly' | 'v2fly-weak' | 'plus' | 'cidr' | 'other';

function classify(t: string): Kind {
  const eq = t.indexOf('=');
  if (eq > 0 && t[eq + 1] === '/' && isDirectiveKey(t.slice(0, eq))) return 'dnsmasq';
  const comma = t.indexOf(',');
  if (comma > 0 && CLASH_TYPES.has(t.slice(0, comma).toUpperCase())) return 'clash';
  if (t.startsWith('+.')) return 'plus';
  const lower = t.slice(0, 9).toLowerCase();
  if (V2FLY_ONLY_PREFIXES.some((p) => lower.startsWith(p))) return 'v2fly';
  const toks = tokens({ text: t, col: 1 });
  if (toks.slice(1).some((x) => x.text.startsWith('@'))) return 'v2fly';
  if (SHARED_PREFIXES.some((p) => lower.startsWith(p))) return 'v2fly-weak';
  const first = toks[0]!.text;
  if (isAddressLike(first)) {
    const second = toks[1]?.text;
    const hasName = second !== undefined && !second.startsWith('#') && !second.startsWith(';');
    return hasName && !first.includes('/') ? 'hosts' : 'cidr';
  }
  return 'other';
}

function nameParts(fileNameOrUrl: string | undefined): { base: string; ext: string } {
  if (!fileNameOrUrl) return { base: '', ext: '' };
  let path = fileNameOrUrl;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
    try {
      path = new URL(path).pathname;
    } catch {
      // Not a URL after all: treat it as a path.
    }
  }
  const cut = path.search(/[?#]/);
  if (cut >= 0) path = path.slice(0, cut);
  const base = path.slice(path.lastIndexOf('/') + 1).toLowerCase();
  const dot = base.lastIndexOf('.');
  return { base, ext: dot >= 0 ? base.slice(dot + 1) : '' };
}

/**
 * Guesses a list's format from its name and its first ~200 entries. Content
 * wins over names except where the name settles a close call.
 */
export function detectListFormat(text: string, fileNameOrUrl?: string): ConcreteListFormat {
  const lines = splitLines(text);
  if (isYamlPayload(lines)) return 'clash';
  const counts: Record<Kind, number> = {
    hosts: 0, dnsmasq: 0, clash: 0, v2fly: 0, 'v2fly-weak': 0, plus: 0, cidr: 0, other: 0,
  };
  // Adblock-style `!`, `;` and `//` comments appear in plain lists, never in v2fly or Clash ones.
  let plainComments = 0;
  let n = 0;
  let names = 0;
  for (let i = 0; i < lines.length && n < SAMPLE_LINES; i++) {
    const s = content(lines[i]!, ANY_COMMENTS);
    if (!s) {
      const t = lines[i]!.trimStart();
      if (t.startsWith('!') || t.startsWith(';') || t.startsWith('//')) plainComments++;
      continue;
    }
    const kind = classify(s.text);
    counts[kind]++;
    if (kind === 'other' && /^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.[a-z_-][a-z0-9_-]*\.?$/i.test(s.text.split(/\s/)[0]!)) names++;
    n++;
  }
  const { base, ext } = nameParts(fileNameOrUrl);
  if (ext === 'conf' && counts.dnsmasq > 0) return 'dnsmasq';
  if (base.includes('hosts') && counts.hosts > 0) return 'hosts';
  let best: 'hosts' | 'dnsmasq' | 'clash' | 'cidr' | null = null;
  for (const k of ['hosts', 'dnsmasq', 'clash', 'cidr'] as const) {
    // A list of addresses with a few names in it (DoH endpoints) is a plain list: the
    // plain parser takes both, the CIDR parser would drop the names.
    if (k === 'cidr' && names > 0) continue;
    if (counts[k] > 0 && counts[k] * 2 >= n && (best === null || counts[k] > counts[best])) best = k;
  }
  if (best) return best;
  // v2fly and Clash domain lists are mostly bare names; a few prefixed lines give them away,
  // unless something only a plain list has (its comment styles, addresses) says otherwise.
  const plainOnly = plainComments + counts.cidr + counts.hosts;
  if (counts.v2fly > 0) return 'v2fly';
  if (counts['v2fly-weak'] > 0 && plainOnly === 0) return 'v2fly';
  if (counts.clash > 0 || (counts.plus > 0 && plainOnly === 0 && counts['v2fly-weak'] === 0)) return 'clash';
  return 'plain';
}

// ---------------------------------------------------------------------------

/** Parses a list; 'auto' detects the format first (see detectListFormat). */
export function parseList(text: string, format: TextListFormat, fileNameOrUrl?: string): ParsedList {
  const f = format === 'auto' ? detectListFormat(text, fileNameOrUrl) : format;
  const lines = splitLines(text);
  switch (f) {
    case 'plain':
      return parsePlain(lines);
    case 'hosts':
      return parseHosts(lines);
    case 'dnsmasq':
      return parseDnsmasq(lines);
    case 'clash':
      return parseClash(lines, text);
    case 'v2fly':
      return parseV2fly(lines);
    case 'cidr':
      return parseCidrList(lines);
  }
}
