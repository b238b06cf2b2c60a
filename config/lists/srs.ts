// sing-box binary rule-sets (.srs), as sing-box writes them
// (common/srs/binary.go, ip_set.go, ip_cidr.go; the domain set from
// sagernet/sing common/domain/matcher.go and set.go):
//
//   "SRS" version:u8 then a zlib stream of
//     rules: uvarint n, n rules
//     rule:  u8 0 (default) items... 0xFF invert:u8
//            u8 1 (logical) mode:u8 (0 and, 1 or) uvarint n, n rules, invert:u8
//     item:  u8 type, then per type:
//        2 domain   succinct set: u8 (reserved), uvarint n + n uint64 BE
//                   leaves, uvarint n + n uint64 BE label bitmap, uvarint n +
//                   n label bytes (see succinct.ts)
//        3 domain_keyword, 4 domain_regex, and every string item:
//                   uvarint n, n × (uvarint len, bytes)
//        6 ip_cidr (5 source_ip_cidr): u8 1, uint64 BE n, n × (uvarint len,
//                   from bytes, uvarint len, to bytes): netipx ranges
//        0, 7, 9 (uint16 lists): uvarint n, n × uint16 BE
//        18 network_type: uvarint n, n bytes; 19, 20: no payload
//        21 network_interface_address: uvarint n, n × (u8 key, uvarint m,
//                   m prefixes); 22 default_interface_address: uvarint m,
//                   m prefixes; prefix: uvarint len, addr bytes, u8 bits
//        16 AdGuard domain: a succinct set with AdGuard markers
//
// Versions (constant/rule.go): 1 the first; 2 (sing-box 1.10) writes a
// domain suffix as one root-label key instead of a name plus a ".name"
// prefix key, and adds AdGuard items; 3 (1.11) adds network_type,
// network_is_expensive, network_is_constrained; 4 (1.13) adds
// network_interface_address and default_interface_address. The item numbers
// are shared by all versions, so one reader reads them all.
//
// Domain keys, reversed back: "name" exact; "\n"+"name" the name and its
// subdomains (v2+); "\r"+".name" subdomains only, or with "name" also stored
// exact, the name and its subdomains (v1's way to write a suffix); "\r"+"x"
// any name ending in the string x.

import { inflateSync } from 'node:zlib';
import { ByteCursor } from './byte-cursor.js';
import { Acc, LIMITS, fail, guarded, type DecodedList } from './decoded.js';
import { addrFromBytes, cidrText, rangeToCidrs, type IpRange } from './ip-range.js';
import { MAX_LOGICAL_DEPTH, applyHeadlessRules, type HeadlessRule } from './sing-rules.js';
import { succinctKeys } from './succinct.js';

const MAGIC = [0x53, 0x52, 0x53]; // "SRS"
export const SRS_MAX_VERSION = 4;

const PREFIX_LABEL = '\r';
const ROOT_LABEL = '\n';

/** JSON names of the items, for messages. */
const ITEM_NAMES: Record<number, string> = {
  0: 'query_type', 1: 'network', 2: 'domain', 3: 'domain_keyword', 4: 'domain_regex', 5: 'source_ip_cidr',
  6: 'ip_cidr', 7: 'source_port', 8: 'source_port_range', 9: 'port', 10: 'port_range', 11: 'process_name',
  12: 'process_path', 13: 'package_name', 14: 'wifi_ssid', 15: 'wifi_bssid', 16: 'AdGuard domain rules',
  17: 'process_path_regex', 18: 'network_type', 19: 'network_is_expensive', 20: 'network_is_constrained',
  21: 'network_interface_address', 22: 'default_interface_address',
};

export interface DecodedSrs extends DecodedList {
  version: number;
}

export function decodeSrs(bytes: Uint8Array, list: string): DecodedSrs {
  if (bytes.length < 4 || bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1] || bytes[2] !== MAGIC[2]) {
    fail(list, 'srs', 'not a sing-box .srs rule-set: no "SRS" magic');
  }
  const version = bytes[3]!;
  if (version < 1 || version > SRS_MAX_VERSION) {
    fail(list, 'srs', `sing-box rule-set version ${version} is not supported (versions 1-${SRS_MAX_VERSION})`);
  }
  return guarded(list, 'srs', 'sing-box .srs rule-set', () => {
    let data: Uint8Array;
    try {
      data = inflateSync(bytes.subarray(4), { maxOutputLength: LIMITS.maxInflatedBytes });
    } catch (e) {
      const tooBig = (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
      fail(list, 'srs', tooBig ? `not a usable .srs: inflates to more than ${LIMITS.maxInflatedBytes} bytes` : `not a valid sing-box .srs rule-set: corrupt zlib data (${(e as Error).message})`);
    }
    const c = new ByteCursor(data);
    const n = c.uvarint('rule count');
    c.fits(n, 2, 'rules');
    const rules: HeadlessRule[] = [];
    for (let i = 0; i < n; i++) rules.push(readRule(c, 0));
    const acc = new Acc(list, 'srs');
    applyHeadlessRules(rules, acc, list, 'srs');
    return { ...acc.finish(), version };
  });
}

function readRule(c: ByteCursor, depth: number): HeadlessRule {
  if (depth > MAX_LOGICAL_DEPTH) throw new Error(`logical rules nested deeper than ${MAX_LOGICAL_DEPTH}`);
  const type = c.u8('rule type');
  if (type === 0) return readDefaultRule(c);
  if (type !== 1) throw new Error(`unknown rule type ${type}`);
  const mode = c.u8('logical mode');
  if (mode > 1) throw new Error(`unknown logical mode ${mode}`);
  const n = c.uvarint('logical rule count');
  c.fits(n, 2, 'logical rules');
  const rules: HeadlessRule[] = [];
  for (let i = 0; i < n; i++) rules.push(readRule(c, depth + 1));
  return { type: 'logical', mode: mode === 0 ? 'and' : 'or', rules, invert: c.u8('invert') !== 0 };
}

function readDefaultRule(c: ByteCursor): HeadlessRule {
  const unsupported: string[] = [];
  let keys: string[] = [];
  let keywords: string[] = [];
  let regexps: string[] = [];
  let ranges: IpRange[] = [];
  for (;;) {
    const item = c.u8('rule item type');
    switch (item) {
      case 0xff:
        return { type: 'default', unsupported, invert: c.u8('invert') !== 0, emit: (acc) => emit(acc, keys, keywords, regexps, ranges) };
      case 2:
        keys = readDomainSet(c);
        break;
      case 3:
        keywords = readStrings(c, 'domain_keyword');
        break;
      case 4:
        regexps = readStrings(c, 'domain_regex');
        break;
      case 6:
        ranges = readIpSet(c);
        break;
      case 5:
        readIpSet(c);
        unsupported.push(ITEM_NAMES[item]!);
        break;
      case 0:
      case 7:
      case 9:
        skipUint16s(c, ITEM_NAMES[item]!);
        unsupported.push(ITEM_NAMES[item]!);
        break;
      case 1:
      case 8:
      case 10:
      case 11:
      case 12:
      case 13:
      case 14:
      case 15:
      case 17:
        readStrings(c, ITEM_NAMES[item]!);
        unsupported.push(ITEM_NAMES[item]!);
        break;
      case 16:
        readDomainSet(c);
        unsupported.push(ITEM_NAMES[item]!);
        break;
      case 18: {
        const n = c.uvarint('network_type count');
        c.bytes(n, 'network_type');
        unsupported.push(ITEM_NAMES[item]!);
        break;
      }
      case 19:
      case 20:
        unsupported.push(ITEM_NAMES[item]!);
        break;
      case 21: {
        const n = c.uvarint('network_interface_address count');
        c.fits(n, 2, 'network_interface_address');
        for (let i = 0; i < n; i++) {
          c.u8('interface type');
          skipPrefixes(c);
        }
        unsupported.push(ITEM_NAMES[item]!);
        break;
      }
      case 22:
        skipPrefixes(c);
        unsupported.push(ITEM_NAMES[item]!);
        break;
      default:
        throw new Error(`unknown rule item type ${item} at offset ${c.pos - 1} (a newer sing-box?)`);
    }
  }
}

function emit(acc: Acc, keys: string[], keywords: string[], regexps: string[], ranges: IpRange[]): void {
  const exact = new Set<string>();
  for (const k of keys) if (k[0] !== PREFIX_LABEL && k[0] !== ROOT_LABEL) exact.add(k);
  const folded = new Set<string>();
  // v1 wrote a suffix as the name plus "\r.name": fold the pair back into one entry, as sing-box's Dump does.
  for (const k of keys) {
    if (k[0] === PREFIX_LABEL && k[1] === '.' && exact.has(k.slice(2))) folded.add(k.slice(2));
  }
  for (const k of keys) {
    if (k[0] === ROOT_LABEL) acc.name('domain', k.slice(1));
    else if (k[0] === PREFIX_LABEL) {
      const rest = k.slice(1);
      if (rest[0] === '.') acc.name(folded.has(rest.slice(1)) ? 'domain' : 'subdomain', rest.slice(1));
      else acc.pattern('regexp', `${rest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
    } else if (!folded.has(k)) acc.name('full', k);
  }
  for (const k of keywords) acc.pattern('keyword', k);
  for (const r of regexps) acc.pattern('regexp', r);
  for (const r of ranges) rangeToCidrs(r, (f, v, p) => acc.cidr(cidrText(f, v, p)));
}

function readDomainSet(c: ByteCursor): string[] {
  c.u8('domain set header');
  const leaves = uint64s(c, 'leaves');
  const bitmap = uint64s(c, 'label bitmap');
  const n = c.uvarint('labels length');
  const labels = c.bytes(n, 'labels');
  return succinctKeys({ bytes: leaves }, { bytes: bitmap }, labels, LIMITS.maxEntries);
}

function uint64s(c: ByteCursor, what: string): Uint8Array {
  const n = c.uvarint(`${what} length`);
  c.fits(n, 8, what);
  return c.bytes(n * 8, what);
}

const utf8 = new TextDecoder('utf-8');

function readStrings(c: ByteCursor, what: string): string[] {
  const n = c.uvarint(`${what} count`);
  c.fits(n, 1, what);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = c.uvarint(`${what} length`);
    out.push(utf8.decode(c.bytes(len, what)));
  }
  return out;
}

function skipUint16s(c: ByteCursor, what: string): void {
  const n = c.uvarint(`${what} count`);
  c.fits(n, 2, what);
  c.bytes(n * 2, what);
}

function skipPrefixes(c: ByteCursor): void {
  const n = c.uvarint('prefix count');
  c.fits(n, 2, 'prefixes');
  for (let i = 0; i < n; i++) {
    c.bytes(c.uvarint('prefix length'), 'prefix address');
    c.u8('prefix bits');
  }
}

function readIpSet(c: ByteCursor): IpRange[] {
  const v = c.u8('ip set version');
  if (v !== 1) throw new Error(`ip set version ${v} is not supported (only 1)`);
  const n = c.u64be('ip range count');
  c.fits(n, 2, 'ip ranges');
  const out: IpRange[] = [];
  for (let i = 0; i < n; i++) {
    const from = addrFromBytes(c.bytes(c.uvarint('range start length'), 'range start'));
    const to = addrFromBytes(c.bytes(c.uvarint('range end length'), 'range end'));
    if (!from || !to || from.family !== to.family || from.value > to.value) throw new Error(`ip range ${i + 1} is not a range of one address family`);
    out.push({ family: from.family, from: from.value, to: to.value });
  }
  return out;
}
