// One entry point for the loader: bytes of a `lists:` file or download, the
// format (given, or detected), and the selection the list entry names.

import { fail, type BinaryListFormat, type DecodedList } from './decoded.js';
import { describeRuleFile, detectRuleFileFormat } from './detect.js';
import { decodeGeoipDat } from './geoip-dat.js';
import { decodeGeosite } from './geosite.js';
import { decodeMmdb } from './mmdb.js';
import { decodeMrs } from './mrs.js';
import { decodeSrs } from './srs.js';
import { decodeSrsJson } from './srs-json.js';

export interface RuleFileSelection {
  /** geosite.dat: categories with attribute filters ("netflix", "google@cn", "x@!cn"). */
  categories?: string[];
  /** geoip.dat ("cn", "!cn", "private") and mmdb country databases ("CN"). */
  codes?: string[];
  /** mmdb ASN databases. */
  asns?: number[];
}

const NAMES: Record<BinaryListFormat, string> = {
  geosite: 'a geosite.dat',
  geoip: 'a geoip.dat',
  srs: 'a sing-box .srs rule-set',
  'srs-json': 'a sing-box source rule-set (JSON)',
  mrs: 'a mihomo .mrs rule provider',
  mmdb: 'a MaxMind database (.mmdb)',
};

/**
 * Decodes a rule file. With format 'auto' the content decides; with a given
 * format, content of another kind is refused with what it looks like instead.
 */
export function decodeRuleFile(bytes: Uint8Array, format: BinaryListFormat | 'auto', selection: RuleFileSelection, list: string): DecodedList {
  const detected = detectRuleFileFormat(bytes);
  const f = format === 'auto' ? detected : format;
  if (f === null) fail(list, 'unknown', `not a rule file splitwan can read as binary: it looks like ${describeRuleFile(bytes)}`);
  if (format !== 'auto' && detected !== null && detected !== format) {
    fail(list, format, `not ${NAMES[format]}: it looks like ${describeRuleFile(bytes)}`);
  }
  const needs = (what: string, v: unknown[] | undefined): void => {
    if (!v || v.length === 0) fail(list, f, `${NAMES[f]} needs a selection: ${what}`);
  };
  switch (f) {
    case 'geosite':
      needs('categories, e.g. "netflix", "google@cn"', selection.categories);
      return decodeGeosite(bytes, { categories: selection.categories! }, list);
    case 'geoip':
      needs('country codes, e.g. "cn", "private", "!cn"', selection.codes);
      return decodeGeoipDat(bytes, { codes: selection.codes! }, list);
    case 'mmdb':
      if ((selection.codes?.length ?? 0) === 0) needs('country codes ("CN") or ASNs', selection.asns);
      return decodeMmdb(bytes, { countries: selection.codes ?? [], asns: selection.asns ?? [] }, list);
    case 'srs':
      return decodeSrs(bytes, list);
    case 'srs-json':
      return decodeSrsJson(bytes, list);
    case 'mrs':
      return decodeMrs(bytes, list);
  }
}
