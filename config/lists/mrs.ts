// mihomo rule-provider binary files (.mrs), as mihomo writes them
// (rules/provider/mrs_converter.go, mrs_reader.go; component/trie/
// domain_set_bin.go; component/cidr/ipcidr_set_bin.go). The whole file is
// one zstd stream of:
//
//   "MRS" 0x01                  magic and format version 1
//   behavior  u8                0 domain, 1 ipcidr (2 classical has no mrs form)
//   count     int64 BE          rules in the source list (informational)
//   extra     int64 BE + bytes  reserved, skipped
//   payload:
//     domain: u8 version (1), then three int64-BE-counted arrays: leaves
//             []uint64, labelBitmap []uint64, labels []byte (a succinct trie
//             of reversed names, see succinct.ts)
//     ipcidr: u8 version (1), int64 BE n, then n ranges of two 16-byte
//             addresses (from, to); IPv4 is stored mapped (::ffff:a.b.c.d)
//
// Trie keys are mihomo's domain patterns: `+.x` (x and its subdomains; the
// trie also holds `x` itself, which we fold back in as mihomo's own dump
// does), `.x` written as `+.x` without `x` (subdomains only), `*` for one
// label, and plain names (exact).

import { ByteCursor } from './byte-cursor.js';
import { Acc, LIMITS, fail, guarded, type DecodedList } from './decoded.js';
import { addrFromBytes, cidrText, rangeToCidrs } from './ip-range.js';
import { succinctKeys } from './succinct.js';
import { inflateZstd, isZstd } from './zstd.js';

const MAGIC = [0x4d, 0x52, 0x53, 0x01]; // "MRS" 1

export type MrsBehavior = 'domain' | 'ipcidr';

export interface DecodedMrs extends DecodedList {
  behavior: MrsBehavior;
  /** The rule count mihomo stored (of the source list, before the trie added implied names). */
  declaredCount: number;
}

export function decodeMrs(bytes: Uint8Array, list: string): DecodedMrs {
  if (!isZstd(bytes)) fail(list, 'mrs', 'not a mihomo .mrs file: it is not zstd-compressed');
  return guarded(list, 'mrs', 'mihomo .mrs file', () => {
    const data = inflateZstd(bytes, LIMITS.maxInflatedBytes);
    const c = new ByteCursor(data);
    const magic = c.bytes(4, 'magic');
    if (magic[0] !== MAGIC[0] || magic[1] !== MAGIC[1] || magic[2] !== MAGIC[2]) {
      fail(list, 'mrs', 'not a mihomo .mrs file: no "MRS" magic after decompression');
    }
    if (magic[3] !== MAGIC[3]) fail(list, 'mrs', `mihomo .mrs version ${magic[3]} is not supported (only 1)`);
    const b = c.u8('behavior');
    if (b !== 0 && b !== 1) {
      fail(list, 'mrs', b === 2 ? 'classical .mrs rule providers do not exist (mihomo writes domain and ipcidr only)' : `unknown .mrs behavior ${b}`);
    }
    const declaredCount = c.u64be('rule count');
    const extra = c.u64be('extra length');
    c.bytes(extra, 'extra data');
    const acc = new Acc(list, 'mrs');
    if (b === 0) readDomainSet(c, acc);
    else readIpSet(c, acc);
    return { ...acc.finish(), behavior: b === 0 ? 'domain' : 'ipcidr', declaredCount };
  });
}

function version1(c: ByteCursor, what: string): void {
  const v = c.u8(`${what} version`);
  if (v !== 1) throw new Error(`${what} version ${v} is not supported (only 1)`);
}

function words(c: ByteCursor, what: string): Uint8Array {
  const n = c.u64be(`${what} length`);
  if (n < 1) throw new Error(`${what} length ${n} is invalid`);
  c.fits(n, 8, what);
  return c.bytes(n * 8, what);
}

function readDomainSet(c: ByteCursor, acc: Acc): void {
  version1(c, 'domain set');
  const leaves = words(c, 'leaves');
  const bitmap = words(c, 'label bitmap');
  const n = c.u64be('labels length');
  if (n < 1) throw new Error(`labels length ${n} is invalid`);
  const labels = c.bytes(n, 'labels');
  const keys = succinctKeys({ bytes: leaves }, { bytes: bitmap }, labels, LIMITS.maxEntries);
  const all = new Set(keys);
  for (const key of keys) {
    if (key.startsWith('+.')) {
      const base = key.slice(2);
      // `+.x` puts both x and .x into the trie; mihomo's dump folds x back in, so do we.
      if (all.has(base)) acc.name('domain', base);
      else acc.name('subdomain', base);
    } else if (all.has(`+.${key}`)) {
      continue;
    } else if (key.includes('*')) {
      wildcard(acc, key);
    } else if (key.includes('+')) {
      acc.problem(acc.next(), `"${key}": "+" only makes sense as a leading "+." in mihomo names; entry skipped`);
    } else {
      acc.name('full', key);
    }
  }
}

/** `*` stands for exactly one label in mihomo: `*.example.com`, `a.*.example.com`. */
function wildcard(acc: Acc, key: string): void {
  const labels = key.split('.');
  const parts = labels.map((l) => (l === '*' ? '[^.]+' : l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  if (labels.some((l) => l !== '*' && l.includes('*'))) {
    acc.problem(acc.next(), `"${key}": "*" must be a whole label; entry skipped`);
    return;
  }
  acc.pattern('regexp', `^${parts.join('\\.')}$`);
}

function readIpSet(c: ByteCursor, acc: Acc): void {
  version1(c, 'ip set');
  const n = c.u64be('range count');
  if (n < 1) throw new Error(`range count ${n} is invalid`);
  c.fits(n, 32, 'ranges');
  for (let i = 0; i < n; i++) {
    const from = addrFromBytes(c.bytes(16, 'range start'));
    const to = addrFromBytes(c.bytes(16, 'range end'));
    if (!from || !to || from.family !== to.family || from.value > to.value) {
      acc.problem(acc.next(), `range ${i + 1} is not a range of one address family; skipped`);
      continue;
    }
    rangeToCidrs({ family: from.family, from: from.value, to: to.value }, (f, v, p) => acc.cidr(cidrText(f, v, p)));
  }
}
