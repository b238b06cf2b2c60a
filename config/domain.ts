import { domainToASCII } from 'node:url';
import { compileNameRegexp } from './safe-regexp.js';
import type { DomainPattern } from './types.js';

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/**
 * Normalises a domain name as splitwan compares them: lower case, no trailing
 * dot, IDNs as punycode. Returns an error message instead when it is no name.
 * Underscores are allowed because real names (_dmarc, SRV owners) have them.
 */
export function normalizeDomain(input: string): { name: string } | { error: string } {
  if (isNormalName(input)) return { name: input };
  let s = input.trim();
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s === '') return { error: 'empty domain name' };
  // domainToASCII rejects '_' so only send it names that need IDN handling.
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(s)) {
    const ascii = domainToASCII(s);
    if (ascii === '') return { error: `"${input}" is not a valid internationalised domain name` };
    s = ascii;
  }
  s = s.toLowerCase();
  if (s.length > 253) return { error: `"${input}" is longer than 253 characters` };
  const labels = s.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) {
      return { error: `"${input}" is not a domain name (bad label "${label}")` };
    }
  }
  // No top-level domain is all digits: this is a mistyped address, not a name.
  if (/^\d+$/.test(labels[labels.length - 1]!)) {
    return { error: `"${input}" is not a domain name (an IP address belongs in cidrs, or it is mistyped)` };
  }
  return { name: s };
}

/**
 * Whether `s` is already what normalizeDomain makes of a valid name (lower
 * case ASCII labels of [a-z0-9_-], 1-63 long, no hyphen at either end, at most
 * 253 characters, a last label not all digits, no trailing dot): the common
 * case of list files, answered in one pass over the characters without the
 * split and regular expressions below (100k-name rule-sets compile faster).
 */
function isNormalName(s: string): boolean {
  const n = s.length;
  if (n === 0 || n > 253) return false;
  let labelStart = 0;
  let digitsOnly = true;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46;
    if (c === 46) {
      const len = i - labelStart;
      if (len === 0 || len > 63) return false;
      if (s.charCodeAt(labelStart) === 45 || s.charCodeAt(i - 1) === 45) return false;
      if (i === n && digitsOnly) return false;
      labelStart = i + 1;
      digitsOnly = true;
      continue;
    }
    if (c >= 48 && c <= 57) continue;
    digitsOnly = false;
    if ((c >= 97 && c <= 122) || c === 45 || c === 95) continue;
    return false;
  }
  return true;
}

/** Normalises a name seen at run time (a DNS question): cheap, no validation. */
export function canonicalName(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

/**
 * Parses one entry of `rules[].domains` (and of v2fly lists, which share the
 * prefixes): `example.com`, `*.example.com`, `full:x`, `keyword:x`, `regexp:x`,
 * and the v2fly spelling `domain:x`.
 */
export function parseDomainPattern(raw: string): { pattern: DomainPattern } | { error: string } {
  const s = raw.trim();
  const colon = s.indexOf(':');
  const prefix = colon > 0 ? s.slice(0, colon).toLowerCase() : '';
  const rest = colon > 0 ? s.slice(colon + 1) : s;
  switch (prefix) {
    case 'full': {
      const n = normalizeDomain(rest);
      return 'error' in n ? n : { pattern: { kind: 'full', value: n.name } };
    }
    case 'domain': {
      const n = normalizeDomain(rest);
      return 'error' in n ? n : { pattern: { kind: 'domain', value: n.name } };
    }
    case 'keyword': {
      const v = rest.trim().toLowerCase();
      if (v === '') return { error: 'empty keyword' };
      // Names are compared as lower-case ASCII (IDNs as punycode): anything else never matches.
      if (!/^[a-z0-9._-]+$/.test(v)) return { error: `keyword "${rest.trim()}" can never match: names are letters, digits, ".", "-" and "_" (IDNs as punycode)` };
      return { pattern: { kind: 'keyword', value: v } };
    }
    case 'regexp': {
      if (rest === '') return { error: 'empty regular expression' };
      const c = compileNameRegexp(rest);
      if ('error' in c) return c;
      return { pattern: { kind: 'regexp', value: rest } };
    }
    case '':
      break;
    default:
      return { error: `unknown domain prefix "${prefix}:" (use full:, keyword:, regexp: or domain:)` };
  }
  if (s.startsWith('*.')) {
    const n = normalizeDomain(s.slice(2));
    return 'error' in n ? n : { pattern: { kind: 'subdomain', value: n.name } };
  }
  // Clash's `+.example.com` and dnsmasq's `.example.com` both mean the name and its subdomains.
  const body = s.startsWith('+.') ? s.slice(2) : s.startsWith('.') ? s.slice(1) : s;
  const n = normalizeDomain(body);
  return 'error' in n ? n : { pattern: { kind: 'domain', value: n.name } };
}

/** How a pattern reads in `explain`. */
export function describePattern(p: DomainPattern): string {
  switch (p.kind) {
    case 'domain':
      return `"${p.value}" matches the name and its subdomains`;
    case 'subdomain':
      return `"*.${p.value}" matches subdomains only`;
    case 'full':
      return `"full:${p.value}" matches exactly that name`;
    case 'keyword':
      return `"keyword:${p.value}" matches names containing it`;
    case 'regexp':
      return `"regexp:${p.value}" matches the expression`;
  }
}
