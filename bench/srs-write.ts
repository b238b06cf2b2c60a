// Writes a sing-box binary rule-set (.srs, version 2) of domain rules, as
// sing-box's own writer lays it out (common/srs/binary.go, sing
// common/domain/set.go): "SRS", version, then zlib of one default rule whose
// domain item is a succinct trie of the reversed keys. For the policy bench,
// which needs a rule-set far larger than the published fixtures; the bench
// decodes what this writes and checks it gets every name back.
import { deflateSync } from 'node:zlib';

function uvarint(n: number, out: number[]): void {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

/** Bits as a Go []uint64 written big-endian: bit i is bit (i & 63) of word i >> 6. */
function words(bits: Uint8Array, n: number, out: number[]): void {
  const count = Math.ceil(n / 64);
  uvarint(count, out);
  const bytes = new Uint8Array(count * 8);
  for (let i = 0; i < n; i++) if (bits[i]) bytes[(i >>> 6) * 8 + 7 - ((i >>> 3) & 7)]! |= 1 << (i & 7);
  for (const b of bytes) out.push(b);
}

/** The succinct trie of `keys` (byte strings, stored reversed): leaves, label bitmap, labels. */
function succinct(keys: Buffer[], out: number[]): void {
  keys.sort(Buffer.compare);
  const leaves = new Uint8Array(keys.reduce((n, k) => n + k.length, 1) + 1);
  const bitmap: number[] = [];
  const labels: number[] = [];
  const queue: { lo: number; hi: number; col: number }[] = [{ lo: 0, hi: keys.length, col: 0 }];
  for (let node = 0; node < queue.length; node++) {
    let { lo } = queue[node]!;
    const { hi, col } = queue[node]!;
    if (lo < hi && keys[lo]!.length === col) {
      leaves[node] = 1;
      lo++;
    }
    for (let j = lo; j < hi; ) {
      const c = keys[j]![col]!;
      let k = j;
      while (k < hi && keys[k]![col] === c) k++;
      labels.push(c);
      bitmap.push(0);
      queue.push({ lo: j, hi: k, col: col + 1 });
      j = k;
    }
    bitmap.push(1);
  }
  out.push(1); // set version
  words(leaves, queue.length, out);
  words(Uint8Array.from(bitmap), bitmap.length, out);
  uvarint(labels.length, out);
  for (const l of labels) out.push(l);
}

/** An .srs with one rule: `suffixes` as domain_suffix (name and subdomains), `full` as exact names. */
export function writeSrs(suffixes: readonly string[], full: readonly string[] = []): Buffer {
  const rev = (s: string): Buffer => Buffer.from([...s].reverse().join(''), 'latin1');
  const keys = [...suffixes.map((s) => rev(`\n${s}`)), ...full.map((s) => rev(s))];
  const body: number[] = [];
  uvarint(1, body); // one rule
  body.push(0); // default rule
  body.push(2); // domain item
  succinct(keys, body);
  body.push(0xff, 0); // end of items, not inverted
  return Buffer.concat([Buffer.from([0x53, 0x52, 0x53, 2]), deflateSync(Buffer.from(body))]);
}
