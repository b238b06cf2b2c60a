// Address arithmetic for rule files that store IP ranges (sing-box and mihomo
// keep `from..to` pairs, go4.org/netipx IPSet ranges) or CIDRs as raw bytes
// (geoip.dat), and the complement that geoip.dat's reverse_match asks for.
// Addresses are bigints: 128-bit IPv6 and 32-bit IPv4 share one code path.

import { formatIp } from '../../lib/ip.js';

export type Family = 4 | 6;

export interface IpRange {
  family: Family;
  from: bigint;
  to: bigint; // inclusive
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** An address from 4 or 16 bytes; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4, as netip's Unmap does. */
export function addrFromBytes(b: Uint8Array): { family: Family; value: bigint } | null {
  if (b.length !== 4 && b.length !== 16) return null;
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  if (b.length === 4) return { family: 4, value: v };
  if (v >> 32n === 0xffffn) return { family: 4, value: v & 0xffffffffn };
  return { family: 6, value: v };
}

export function formatAddr(family: Family, v: bigint): string {
  if (family === 4) return formatIp({ family: 4, w: [0, 0, 0, Number(v)] });
  const w: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) w[i] = Number((v >> BigInt(96 - 32 * i)) & 0xffffffffn);
  return formatIp({ family: 6, w });
}

/** The CIDR text of `value/prefix`, host bits cleared. */
export function cidrText(family: Family, value: bigint, prefix: number): string {
  const bits = BITS[family];
  const host = (1n << BigInt(bits - prefix)) - 1n;
  return `${formatAddr(family, value & ~host)}/${prefix}`;
}

/**
 * The fewest CIDRs covering exactly `from..to`. At most 2 per bit of the
 * address per range, so the output is bounded by the input.
 */
export function rangeToCidrs(r: IpRange, out: (family: Family, value: bigint, prefix: number) => void): void {
  const bits = BITS[r.family];
  let from = r.from;
  const to = r.to;
  while (from <= to) {
    // The largest block aligned at `from` that does not pass `to`.
    let size = 0;
    while (size < bits) {
      const next = size + 1;
      const mask = (1n << BigInt(next)) - 1n;
      if ((from & mask) !== 0n || from + mask > to) break;
      size = next;
    }
    out(r.family, from, bits - size);
    from += 1n << BigInt(size);
  }
}

/** Merges overlapping and adjacent ranges of one family, sorted. */
export function mergeRanges(ranges: IpRange[]): IpRange[] {
  const sorted = [...ranges].sort((a, b) => a.family - b.family || (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  const out: IpRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.family === r.family && r.from <= last.to + 1n) {
      if (r.to > last.to) last.to = r.to;
    } else out.push({ ...r });
  }
  return out;
}

/** Everything of both families that `ranges` does not cover (reverse_match, `!cn`). */
export function complementRanges(ranges: IpRange[]): IpRange[] {
  const merged = mergeRanges(ranges);
  const out: IpRange[] = [];
  for (const family of [4, 6] as const) {
    const max = (1n << BigInt(BITS[family])) - 1n;
    let next = 0n;
    for (const r of merged) {
      if (r.family !== family) continue;
      if (r.from > next) out.push({ family, from: next, to: r.from - 1n });
      next = r.to + 1n;
    }
    if (next <= max) out.push({ family, from: next, to: max });
  }
  return out;
}

export function cidrToRange(family: Family, value: bigint, prefix: number): IpRange {
  const host = (1n << BigInt(BITS[family] - prefix)) - 1n;
  const from = value & ~host;
  return { family, from, to: from | host };
}
