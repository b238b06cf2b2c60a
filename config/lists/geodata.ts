// Rules' `geoip:` and `asn:` matchers, as lists. `geodata.country` and
// `geodata.asn` name `lists:` entries that are databases (a geoip.dat or a
// country .mmdb; an ASN .mmdb), downloaded, cached and refreshed like any
// list. Each country or AS a rule names becomes one list of CIDRs, named
// `geoip:RU` / `asn:13335` (a name no `lists:` entry can have), so the policy,
// the data plane and `explain` treat it as list content: the kernel matches
// the addresses as it does a CIDR rule, and explain names the country or AS.

import type { Config, RuleConfig } from '../types.js';
import type { LoadedList } from '../load.js';
import { ListFormatError, type DecodedList } from './decoded.js';
import { detectRuleFileFormat } from './detect.js';
import { decodeGeoipDat } from './geoip-dat.js';
import { MmdbDatabase } from './mmdb.js';

export const GEODATA_KINDS = ['country', 'asn'] as const;

export function geoipListName(code: string): string {
  return `geoip:${code.toUpperCase()}`;
}
export function asnListName(asn: number): string {
  return `asn:${asn}`;
}

/** A list made here (no `lists:` name has a colon). */
export function isGeodataListName(name: string): boolean {
  return name.startsWith('geoip:') || name.startsWith('asn:');
}

/** Every list a rule's destinations come from: `list:` names, then its countries and ASes. */
export function ruleListNames(rule: Pick<RuleConfig, 'lists' | 'geoip' | 'asns'>): string[] {
  return [...rule.lists, ...(rule.geoip ?? []).map((g) => geoipListName(g.code)), ...(rule.asns ?? []).map((a) => asnListName(a.asn))];
}

// A database is parsed once per downloaded copy, and a country or AS selected
// once: a recompile after another list's refresh costs nothing here.
const opened = new WeakMap<Uint8Array, MmdbDatabase>();
const selected = new WeakMap<Uint8Array, Map<string, DecodedList>>();

/** The CIDRs of one country or AS in a database; ListFormatError names `what` (e.g. rules[2].geoip[0]). */
export function selectFromDatabase(db: Uint8Array, dbName: string, sel: { country: string } | { asn: number }): DecodedList {
  const key = 'country' in sel ? `c:${sel.country.toUpperCase()}` : `a:${sel.asn}`;
  let memo = selected.get(db);
  if (!memo) selected.set(db, (memo = new Map()));
  const hit = memo.get(key);
  if (hit) return hit;
  const format = detectRuleFileFormat(db);
  let out: DecodedList;
  if (format === 'mmdb') {
    let m = opened.get(db);
    if (!m) opened.set(db, (m = new MmdbDatabase(db, dbName)));
    out = m.select('country' in sel ? { countries: [sel.country] } : { asns: [sel.asn] });
  } else if (format === 'geoip' && 'country' in sel) {
    out = decodeGeoipDat(db, { codes: [sel.country] }, dbName);
  } else {
    throw new ListFormatError(dbName, format ?? 'unknown', 'country' in sel ? 'is not a country database (a geoip.dat or .mmdb)' : 'is not an ASN database (an .mmdb with autonomous_system_number)');
  }
  memo.set(key, out);
  return out;
}

export interface GeodataProblem {
  rule: number;
  key: 'geoip' | 'asns';
  item: number;
  error: ListFormatError;
}

/**
 * `lists` plus one list per country and AS the rules name, selected from the
 * geodata databases. A database not downloaded yet gives nothing (its rules
 * match nothing until it is, as with any url list). Problems (an unknown
 * country, a database without ASN data) are returned, not thrown.
 */
export function buildGeodataLists(
  config: Pick<Config, 'rules'> & Partial<Pick<Config, 'geodata'>>,
  lists: ReadonlyMap<string, LoadedList>,
): { lists: Map<string, LoadedList>; problems: GeodataProblem[] } {
  // Lists made for an earlier database are made again from the current one.
  const out = new Map([...lists].filter(([n]) => !isGeodataListName(n)));
  const problems: GeodataProblem[] = [];
  for (const rule of config.rules) {
    for (const [key, dbName, items] of [
      ['geoip', config.geodata?.country ?? null, (rule.geoip ?? []).map((g) => ({ name: geoipListName(g.code), sel: { country: g.code } }))],
      ['asns', config.geodata?.asn ?? null, (rule.asns ?? []).map((a) => ({ name: asnListName(a.asn), sel: { asn: a.asn } }))],
    ] as const) {
      const db = dbName === null ? undefined : lists.get(dbName);
      if (!db?.database) continue;
      items.forEach((it, i) => {
        if (out.has(it.name)) return;
        try {
          const d = selectFromDatabase(db.database!, dbName!, it.sel);
          out.set(it.name, { name: it.name, file: db.file, source: { ...db.source, name: it.name }, origin: db.origin, parsed: d, domains: d.domains, cidrs: d.cidrs });
        } catch (e) {
          if (!(e instanceof ListFormatError)) throw e;
          problems.push({ rule: rule.index, key, item: i, error: e });
        }
      });
    }
  }
  return { lists: out, problems };
}

/** buildGeodataLists for a running config: the first problem is thrown (a refreshed database that lost a country is not applied). */
export function geodataLists(config: Pick<Config, 'rules'> & Partial<Pick<Config, 'geodata'>>, lists: ReadonlyMap<string, LoadedList>): Map<string, LoadedList> {
  const r = buildGeodataLists(config, lists);
  if (r.problems[0]) throw r.problems[0].error;
  return r.lists;
}
