// v2fly / Xray geoip.dat: a protobuf GeoIPList (routercommon/common.proto):
//
//   GeoIPList { repeated GeoIP entry = 1; }
//   GeoIP     { string country_code = 1; repeated CIDR cidr = 2; bool reverse_match = 3; }
//   CIDR      { bytes ip = 1; uint32 prefix = 2; }   ip: 4 or 16 bytes
//
// A selection names codes in any case ("CN", "private"); "!cn" means every
// address not in cn, as the proxies' `geoip:!cn` does. An entry with
// reverse_match set means the same inversion; both together cancel out.
// Inverted sets are written out as the complement's CIDRs (both families).

import { didYouMean } from '../errors.js';
import { Acc, fail, guarded, type DecodedList } from './decoded.js';
import { addrFromBytes, cidrText, cidrToRange, complementRanges, formatAddr, rangeToCidrs, type IpRange } from './ip-range.js';
import { WireType, forEachField } from './protobuf.js';

export interface GeoipEntry {
  code: string; // as the file spells it
  body: Uint8Array;
}

export interface GeoipSelection {
  /** "cn", "private", "!cn"; their union is returned. */
  codes: string[];
}

/** The entries of a geoip.dat, without decoding their CIDRs. */
export function geoipCodes(bytes: Uint8Array, list: string): GeoipEntry[] {
  return guarded(list, 'geoip', 'geoip.dat', () => {
    const out: GeoipEntry[] = [];
    forEachField(bytes, (no, wt, r) => {
      if (no !== 1 || wt !== WireType.LengthDelimited) throw new Error(`unexpected field ${no} (wire type ${wt}) in GeoIPList`);
      const body = r.bytes();
      let code: string | null = null;
      forEachField(body, (n, w, rr) => {
        if (n === 1 && w === WireType.LengthDelimited) {
          code = rr.string();
          return 'stop';
        }
        return false;
      });
      if (code === null) throw new Error(`entry ${out.length + 1} has no country_code`);
      out.push({ code, body });
      return true;
    });
    if (out.length === 0) throw new Error('no entries (an empty file, or not a geoip.dat)');
    return out;
  });
}

interface RawCidr {
  ip: Uint8Array;
  prefix: number;
}

function readEntry(body: Uint8Array): { cidrs: RawCidr[]; reverse: boolean } {
  const cidrs: RawCidr[] = [];
  let reverse = false;
  forEachField(body, (no, wt, r) => {
    if (no === 2 && wt === WireType.LengthDelimited) {
      const c: RawCidr = { ip: new Uint8Array(0), prefix: 0 };
      forEachField(r.bytes(), (n, w, rr) => {
        if (n === 1 && w === WireType.LengthDelimited) c.ip = rr.bytes();
        else if (n === 2 && w === WireType.Varint) c.prefix = rr.uint32();
        else return false;
        return true;
      });
      cidrs.push(c);
    } else if (no === 3 && wt === WireType.Varint) reverse = r.bool();
    else return false;
    return true;
  });
  return { cidrs, reverse };
}

export function decodeGeoipDat(bytes: Uint8Array, selection: GeoipSelection, list: string): DecodedList {
  if (selection.codes.length === 0) fail(list, 'geoip', 'no country code selected (e.g. "cn", "private", "!cn")');
  const entries = geoipCodes(bytes, list);
  const byCode = new Map<string, GeoipEntry>();
  for (const e of entries) if (!byCode.has(e.code.toLowerCase())) byCode.set(e.code.toLowerCase(), e);
  return guarded(list, 'geoip', 'geoip.dat', () => {
    const acc = new Acc(list, 'geoip');
    const seen = new Set<string>();
    for (const raw of selection.codes) {
      const t = raw.trim().toLowerCase();
      const negate = t.startsWith('!');
      const code = negate ? t.slice(1).trim() : t;
      const entry = byCode.get(code);
      if (!entry) {
        const hint = didYouMean(code, byCode.keys());
        fail(list, 'geoip', `unknown country code '${code}'${hint ? ` (did you mean '${hint}'?)` : ''}; the file has ${byCode.size} entries`);
      }
      acc.section(`country ${negate ? '!' : ''}${code}`);
      const { cidrs, reverse } = readEntry(entry.body);
      const add = (text: string): void => {
        if (seen.has(text)) return;
        seen.add(text);
        acc.cidr(text);
      };
      if (negate === reverse) {
        for (const c of cidrs) {
          const text = cidrOf(c);
          if (text === null) acc.problem(acc.next(), `a CIDR of ${c.ip.length} bytes with prefix ${c.prefix} is not an address; skipped`);
          else add(text);
        }
        continue;
      }
      const ranges: IpRange[] = [];
      for (const c of cidrs) {
        const a = addrFromBytes(c.ip);
        if (!a || c.prefix > (c.ip.length === 4 ? 32 : 128)) continue;
        // A 16-byte ::ffff:a.b.c.d address came back as IPv4: its prefix counts the 96 mapped bits.
        const prefix = a.family === 4 && c.ip.length === 16 ? Math.max(0, c.prefix - 96) : c.prefix;
        ranges.push(cidrToRange(a.family, a.value, prefix));
      }
      for (const r of complementRanges(ranges)) rangeToCidrs(r, (f, v, p) => add(cidrText(f, v, p)));
    }
    return acc.finish();
  });
}

function cidrOf(c: RawCidr): string | null {
  if (c.ip.length === 4) return c.prefix <= 32 ? `${c.ip.join('.')}/${c.prefix}` : null;
  if (c.ip.length !== 16 || c.prefix > 128) return null;
  let v = 0n;
  for (const x of c.ip) v = (v << 8n) | BigInt(x);
  return `${formatAddr(6, v)}/${c.prefix}`;
}
