import type { ParsedCidr, ParsedIp } from '../lib/ip.js';

// CIDRs grouped by prefix length. "First match wins" across rules means the
// answer is the lowest rule index among every prefix that contains the
// address, not the longest prefix, so a lookup probes each length present
// (at most 33 for IPv4) and keeps the minimum.

interface Slot {
  rule: number;
  origin: number;
  text: string;
}

export interface CidrHit {
  rule: number;
  origin: number;
  cidr: string;
}

function maskWord(w: number, bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return w >>> 0;
  return (w & (0xffffffff << (32 - bits))) >>> 0;
}

function v6Key(w: readonly number[], prefix: number): string {
  let s = '';
  for (let i = 0; i < 4; i++) s += maskWord(w[i]!, prefix - 32 * i).toString(16) + ':';
  return s;
}

export class CidrIndex {
  private v4 = new Map<number, Map<number, Slot>>();
  private v6 = new Map<number, Map<string, Slot>>();
  private v4Lengths: number[] = [];
  private v6Lengths: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(c: ParsedCidr, rule: number, origin: number): void {
    if (c.family === 4) {
      let m = this.v4.get(c.prefix);
      if (!m) this.v4.set(c.prefix, (m = new Map()));
      const k = maskWord(c.w[3], c.prefix);
      const cur = m.get(k);
      if (!cur) this.count++;
      if (!cur || rule < cur.rule) m.set(k, { rule, origin, text: c.text });
    } else {
      let m = this.v6.get(c.prefix);
      if (!m) this.v6.set(c.prefix, (m = new Map()));
      const k = v6Key(c.w, c.prefix);
      const cur = m.get(k);
      if (!cur) this.count++;
      if (!cur || rule < cur.rule) m.set(k, { rule, origin, text: c.text });
    }
  }

  build(): this {
    this.v4Lengths = [...this.v4.keys()].sort((a, b) => b - a);
    this.v6Lengths = [...this.v6.keys()].sort((a, b) => b - a);
    return this;
  }

  lookup(ip: ParsedIp): CidrHit | null {
    let best: Slot | undefined;
    if (ip.family === 4) {
      for (const len of this.v4Lengths) {
        const s = this.v4.get(len)!.get(maskWord(ip.w[3], len));
        if (s && (!best || s.rule < best.rule)) best = s;
      }
    } else {
      for (const len of this.v6Lengths) {
        const s = this.v6.get(len)!.get(v6Key(ip.w, len));
        if (s && (!best || s.rule < best.rule)) best = s;
      }
    }
    return best ? { rule: best.rule, origin: best.origin, cidr: best.text } : null;
  }
}
