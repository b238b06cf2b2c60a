// v2fly / Xray geosite.dat: a protobuf GeoSiteList (v2ray-core
// app/router/routercommon/common.proto; the same in Xray and mihomo):
//
//   GeoSiteList { repeated GeoSite entry = 1; }
//   GeoSite     { string country_code = 1; repeated Domain domain = 2; }
//   Domain      { Type type = 1; string value = 2; repeated Attribute attribute = 3; }
//   Type        Plain = 0 (substring: our keyword), Regex = 1, RootDomain = 2
//               (the name and its subdomains), Full = 3
//   Attribute   { string key = 1; oneof { bool bool_value = 2; int64 int_value = 3; } }
//
// A selection names categories as the proxies' `geosite:` does: in any case
// ("NETFLIX" is "netflix"), with attribute filters. "google@cn" keeps the
// entries that carry attribute cn; every filter must hold, as in v2ray, Xray
// and mihomo. "netflix@!cn" keeps the entries that do not carry cn: the
// proxies take only positive filters, the "!" form is domain-list-community's
// own (its `include:` lines) and we accept it here too.

import { didYouMean } from '../errors.js';
import { Acc, fail, guarded, type DecodedList } from './decoded.js';
import { ProtoCursor, WireType } from './protobuf.js';

export interface GeositeCategory {
  /** As the file spells it (usually upper case). */
  name: string;
  body: Uint8Array;
}

export interface ParsedSelector {
  category: string; // lower case
  require: string[]; // attributes that must be there (lower case)
  exclude: string[]; // attributes that must not be
  text: string;
}

/** Parses "google@cn", "netflix@!cn", "Category-Ads-All". */
export function parseGeositeSelector(text: string): ParsedSelector | { error: string } {
  const parts = text.trim().toLowerCase().split('@');
  const category = parts[0]!.trim();
  if (category === '') return { error: `"${text}" names no category` };
  const require: string[] = [];
  const exclude: string[] = [];
  for (const p of parts.slice(1)) {
    const a = p.trim();
    const neg = a.startsWith('!');
    const name = neg ? a.slice(1).trim() : a;
    if (name === '' || name.includes('!')) return { error: `"${text}" has an empty or malformed attribute filter ("@attr" or "@!attr")` };
    (neg ? exclude : require).push(name);
  }
  return { category, require, exclude, text: text.trim() };
}

/** The categories of a geosite.dat, without decoding their domains. */
export function geositeCategories(bytes: Uint8Array, list: string): GeositeCategory[] {
  return guarded(list, 'geosite', 'geosite.dat', () => {
    const out: GeositeCategory[] = [];
    const c = new ProtoCursor(bytes);
    const end = bytes.length;
    while (c.pos < end) {
      const no = c.tag(end);
      const wt = c.wt;
      if (no !== 1 || wt !== WireType.LengthDelimited) throw new Error(`unexpected field ${no} (wire type ${wt}) in GeoSiteList`);
      const n = c.len(end);
      const body = bytes.subarray(c.pos, c.pos + n);
      c.pos += n;
      const name = categoryName(body);
      if (name === null) throw new Error(`entry ${out.length + 1} has no country_code`);
      out.push({ name, body });
    }
    if (out.length === 0) throw new Error('no categories (an empty file, or not a geosite.dat)');
    return out;
  });
}

/** A GeoSite's country_code (its first field 1), read before anything else of the entry. */
function categoryName(body: Uint8Array): string | null {
  const c = new ProtoCursor(body);
  const end = body.length;
  while (c.pos < end) {
    if (c.tag(end) === 1 && c.wt === WireType.LengthDelimited) {
      const n = c.len(end);
      return text(body, c.pos, n);
    }
    c.skip(end);
  }
  return null;
}

const utf8 = new TextDecoder('utf-8');

/**
 * A string field's text. Entries are ASCII: those are read straight from the
 * bytes (latin1 is ASCII there); anything else through the same lenient UTF-8
 * decoding protobuf's string() does.
 */
function text(buf: Uint8Array, at: number, len: number): string {
  let ascii = true;
  for (let i = at; i < at + len; i++) {
    if (buf[i]! > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (!ascii) return utf8.decode(buf.subarray(at, at + len));
  if (len <= 16) {
    let s = '';
    for (let i = at; i < at + len; i++) s += String.fromCharCode(buf[i]!);
    return s;
  }
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1', at, at + len);
}

/**
 * One pass over a GeoSite's Domain messages by offsets (ProtoCursor): per
 * entry only its type, where its value is and its attribute keys (rare) are
 * read; `fn` decodes the value only for the entries it keeps. `attrs` is
 * reused from entry to entry (its first `nAttrs` hold this entry's keys).
 */
function forEachDomain(body: Uint8Array, fn: (type: number, valueAt: number, valueLen: number, attrs: string[], nAttrs: number) => void): void {
  const c = new ProtoCursor(body);
  const end = body.length;
  const attrs: string[] = [];
  while (c.pos < end) {
    const no = c.tag(end);
    const wt = c.wt;
    if (no !== 2 || wt !== WireType.LengthDelimited) {
      c.skip(end);
      continue;
    }
    const dLen = c.len(end);
    const dEnd = c.pos + dLen;
    let type = 0;
    let valueAt = -1;
    let valueLen = 0;
    let nAttrs = 0;
    while (c.pos < dEnd) {
      const no = c.tag(dEnd);
      const wt = c.wt;
      if (no === 1 && wt === WireType.Varint) type = c.uint32(dEnd) | 0;
      else if (no === 2 && wt === WireType.LengthDelimited) {
        valueLen = c.len(dEnd);
        valueAt = c.pos;
        c.pos += valueLen;
      } else if (no === 3 && wt === WireType.LengthDelimited) {
        const aLen = c.len(dEnd);
        const aEnd = c.pos + aLen;
        while (c.pos < aEnd) {
          if (c.tag(aEnd) === 1 && c.wt === WireType.LengthDelimited) {
            const n = c.len(aEnd);
            attrs[nAttrs++] = text(body, c.pos, n).toLowerCase();
            c.pos += n;
          } else c.skip(aEnd);
        }
      } else c.skip(dEnd);
    }
    fn(type, valueAt, valueLen, attrs, nAttrs);
  }
}

function has(attrs: string[], n: number, a: string): boolean {
  for (let i = 0; i < n; i++) if (attrs[i] === a) return true;
  return false;
}

export interface GeositeSelection {
  /** "netflix", "google@cn", "category-ads-all@!cn"; their union is returned. */
  categories: string[];
}

/** The entries of the selected categories (deduplicated), or a ListFormatError. */
export function decodeGeosite(bytes: Uint8Array, selection: GeositeSelection, list: string): DecodedList {
  const selectors = selection.categories.map((t) => {
    const s = parseGeositeSelector(t);
    if ('error' in s) fail(list, 'geosite', s.error);
    return s;
  });
  if (selectors.length === 0) fail(list, 'geosite', 'no category selected (e.g. "netflix", "google@cn")');
  const cats = geositeCategories(bytes, list);
  const byName = new Map<string, GeositeCategory>();
  // The first of two categories with one name wins, as in v2ray's loader.
  for (const c of cats) if (!byName.has(c.name.toLowerCase())) byName.set(c.name.toLowerCase(), c);
  return guarded(list, 'geosite', 'geosite.dat', () => {
    const acc = new Acc(list, 'geosite');
    // One set of values per domain type: no "type:value" key string per entry.
    const seen = new Map<number, Set<string>>();
    for (const s of selectors) {
      const cat = byName.get(s.category);
      if (!cat) {
        const hint = didYouMean(s.category, byName.keys());
        fail(list, 'geosite', `unknown category '${s.category}'${hint ? ` (did you mean '${hint}'?)` : ''}; the file has ${byName.size} categories`);
      }
      acc.section(`category ${cat.name.toLowerCase()}${s.text.includes('@') ? s.text.slice(s.text.indexOf('@')) : ''}`);
      let kept = 0;
      const attrsSeen = new Set<string>();
      const body = cat.body;
      forEachDomain(body, (type, at, len, attrs, nAttrs) => {
        for (let i = 0; i < nAttrs; i++) attrsSeen.add(attrs[i]!);
        for (const a of s.require) if (!has(attrs, nAttrs, a)) return;
        for (const a of s.exclude) if (has(attrs, nAttrs, a)) return;
        kept++;
        const value = at < 0 ? '' : text(body, at, len);
        let set = seen.get(type);
        if (set === undefined) seen.set(type, (set = new Set()));
        if (set.has(value)) return;
        set.add(value);
        addDomain(acc, type, value);
      });
      if (kept === 0 && (s.require.length > 0 || s.exclude.length > 0)) {
        const known = attrsSeen.size > 0 ? `attributes in ${s.category}: ${[...attrsSeen].sort().join(', ')}` : `${s.category} has no attributes`;
        acc.problem(0, `"${s.text}" selects no entry (${known})`);
      }
    }
    return acc.finish();
  });
}

function addDomain(acc: Acc, type: number, value: string): void {
  switch (type) {
    case 0:
      return acc.pattern('keyword', value);
    case 1:
      return acc.pattern('regexp', value);
    case 2:
      return acc.name('domain', value);
    case 3:
      return acc.name('full', value);
    default:
      acc.problem(acc.next(), `"${value}" has unknown domain type ${type}; entry skipped`);
  }
}
