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
import { WireType, forEachField } from './protobuf.js';

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
    forEachField(bytes, (no, wt, r) => {
      if (no !== 1 || wt !== WireType.LengthDelimited) throw new Error(`unexpected field ${no} (wire type ${wt}) in GeoSiteList`);
      const body = r.bytes();
      let name: string | null = null;
      forEachField(body, (n, w, rr) => {
        if (n === 1 && w === WireType.LengthDelimited) {
          name = rr.string();
          return 'stop';
        }
        return false;
      });
      if (name === null) throw new Error(`entry ${out.length + 1} has no country_code`);
      out.push({ name, body });
      return true;
    });
    if (out.length === 0) throw new Error('no categories (an empty file, or not a geosite.dat)');
    return out;
  });
}

interface RawDomain {
  type: number;
  value: string;
  attrs: string[]; // lower case keys
}

function readDomain(buf: Uint8Array): RawDomain {
  const d: RawDomain = { type: 0, value: '', attrs: [] };
  forEachField(buf, (no, wt, r) => {
    if (no === 1 && wt === WireType.Varint) d.type = r.int32();
    else if (no === 2 && wt === WireType.LengthDelimited) d.value = r.string();
    else if (no === 3 && wt === WireType.LengthDelimited) {
      forEachField(r.bytes(), (n, w, rr) => {
        if (n === 1 && w === WireType.LengthDelimited) {
          d.attrs.push(rr.string().toLowerCase());
          return true;
        }
        return false;
      });
    } else return false;
    return true;
  });
  return d;
}

function forEachDomain(body: Uint8Array, fn: (d: RawDomain) => void): void {
  forEachField(body, (no, wt, r) => {
    if (no !== 2 || wt !== WireType.LengthDelimited) return false;
    fn(readDomain(r.bytes()));
    return true;
  });
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
    const seen = new Set<string>();
    for (const s of selectors) {
      const cat = byName.get(s.category);
      if (!cat) {
        const hint = didYouMean(s.category, byName.keys());
        fail(list, 'geosite', `unknown category '${s.category}'${hint ? ` (did you mean '${hint}'?)` : ''}; the file has ${byName.size} categories`);
      }
      acc.section(`category ${cat.name.toLowerCase()}${s.text.includes('@') ? s.text.slice(s.text.indexOf('@')) : ''}`);
      let kept = 0;
      const attrsSeen = new Set<string>();
      forEachDomain(cat.body, (d) => {
        for (const a of d.attrs) attrsSeen.add(a);
        if (!s.require.every((a) => d.attrs.includes(a)) || s.exclude.some((a) => d.attrs.includes(a))) return;
        kept++;
        const key = `${d.type}:${d.value}`;
        if (seen.has(key)) return;
        seen.add(key);
        addDomain(acc, d);
      });
      if (kept === 0 && (s.require.length > 0 || s.exclude.length > 0)) {
        const known = attrsSeen.size > 0 ? `attributes in ${s.category}: ${[...attrsSeen].sort().join(', ')}` : `${s.category} has no attributes`;
        acc.problem(0, `"${s.text}" selects no entry (${known})`);
      }
    }
    return acc.finish();
  });
}

function addDomain(acc: Acc, d: RawDomain): void {
  switch (d.type) {
    case 0:
      return acc.pattern('keyword', d.value);
    case 1:
      return acc.pattern('regexp', d.value);
    case 2:
      return acc.name('domain', d.value);
    case 3:
      return acc.name('full', d.value);
    default:
      acc.problem(acc.next(), `"${d.value}" has unknown domain type ${d.type}; entry skipped`);
  }
}
