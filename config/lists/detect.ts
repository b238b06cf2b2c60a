// Which rule-file format a file is, from its content: magic bytes for .srs,
// .mrs (zstd) and .mmdb (the metadata marker near its end), JSON shape for
// sing-box source rule-sets, and the protobuf shape of the first entries for
// geosite.dat vs geoip.dat. null means none of them: the caller falls back to
// the text formats (formats.ts detectListFormat).

import { BinaryReader, WireType } from './protobuf.js';
import type { BinaryListFormat } from './decoded.js';
import { isZstd } from './zstd.js';

const MMDB_MARKER = Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1');
/** The spec puts the metadata in the last 128 KiB. */
const MMDB_METADATA_MAX = 128 * 1024;

export function isMmdb(b: Uint8Array): boolean {
  const tail = Buffer.from(b.buffer, b.byteOffset, b.byteLength).subarray(Math.max(0, b.length - MMDB_METADATA_MAX));
  return tail.lastIndexOf(MMDB_MARKER) >= 0;
}

function isSrs(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0x53 && b[1] === 0x52 && b[2] === 0x53;
}

function firstNonSpace(b: Uint8Array): number {
  for (let i = 0; i < b.length && i < 4096; i++) {
    const c = b[i]!;
    if (c === 0xef && b[i + 1] === 0xbb && b[i + 2] === 0xbf) {
      i += 2;
      continue;
    }
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return c;
  }
  return -1;
}

function looksLikeSrsJson(b: Uint8Array): boolean {
  if (firstNonSpace(b) !== 0x7b) return false; // '{'
  try {
    const doc: unknown = JSON.parse(new TextDecoder().decode(b).replace(/^\uFEFF/, ''));
    return typeof doc === 'object' && doc !== null && Array.isArray((doc as { rules?: unknown }).rules);
  } catch {
    return false;
  }
}

/**
 * geosite.dat and geoip.dat are both `repeated Entry entry = 1` of entries
 * with `string country_code = 1` and repeated field 2 messages. A geoip CIDR
 * starts with field 1 as bytes (its address); a geosite Domain starts with
 * field 1 as a varint (its type) or, for type 0 (omitted in proto3), with
 * field 2 as a string. Entries with nothing in field 2 say nothing, so a few
 * are looked at.
 */
function protobufKind(b: Uint8Array): 'geosite' | 'geoip' | null {
  try {
    const r = new BinaryReader(b);
    for (let entries = 0; entries < 64 && r.pos < r.len; entries++) {
      const [no, wt] = r.tag();
      if (no !== 1 || wt !== WireType.LengthDelimited) return null;
      const e = new BinaryReader(r.bytes());
      let sawCode = false;
      while (e.pos < e.len) {
        const [fno, fwt] = e.tag();
        if (fno === 1 && fwt === WireType.LengthDelimited) {
          const code = e.bytes();
          if (code.length === 0 || code.length > 64 || code.some((c) => c < 0x20 || c > 0x7e)) return null;
          sawCode = true;
        } else if (fno === 2 && fwt === WireType.LengthDelimited) {
          const inner = new BinaryReader(e.bytes());
          if (inner.len === 0) continue;
          const [ino, iwt] = inner.tag();
          if (!sawCode) return null;
          if (ino === 1 && iwt === WireType.LengthDelimited) return 'geoip';
          if ((ino === 1 && iwt === WireType.Varint) || (ino === 2 && iwt === WireType.LengthDelimited)) return 'geosite';
          return null;
        } else if (fno === 3 && fwt === WireType.Varint) {
          e.skip(fwt, fno); // geoip reverse_match
        } else return null;
      }
    }
  } catch {
    return null;
  }
  return null;
}

/** The rule-file format of `bytes`, or null when it is none of the binary/JSON ones. */
export function detectRuleFileFormat(bytes: Uint8Array): BinaryListFormat | null {
  if (isSrs(bytes)) return 'srs';
  if (isZstd(bytes)) return 'mrs';
  if (isMmdb(bytes)) return 'mmdb';
  if (looksLikeSrsJson(bytes)) return 'srs-json';
  return protobufKind(bytes);
}

/** What a file looks like, for error messages ("it looks like a sing-box rule-set"). */
export function describeRuleFile(bytes: Uint8Array): string {
  const f = detectRuleFileFormat(bytes);
  switch (f) {
    case 'srs':
      return 'a sing-box binary rule-set (.srs)';
    case 'mrs':
      return 'zstd data (a mihomo .mrs?)';
    case 'mmdb':
      return 'a MaxMind database (.mmdb)';
    case 'srs-json':
      return 'a sing-box source rule-set (JSON)';
    case 'geosite':
      return 'a geosite.dat';
    case 'geoip':
      return 'a geoip.dat';
    case null:
      return firstNonSpace(bytes) >= 0x20 && firstNonSpace(bytes) < 0x7f ? 'text' : 'unknown binary data';
  }
}
