// Zstandard decompression with a hard cap on the output, for mihomo .mrs
// files. fzstd does the decoding (pure JS, no native build, works on Node 20,
// which has no zstd in node:zlib), vendored with its little-endian tables
// fixed (fzstd-portable.ts: big-endian machines decoded garbage). It allocates what a frame header declares
// (content size or window size, up to 2 GB) and has no output limit, so we
// first walk the frame and block headers ourselves: every frame's window and
// content size must be under the cap, and so must the most the blocks could
// produce (a raw block its size, an RLE block its run, a compressed block at
// most 128 KiB). A "zstd bomb" is refused before any of it is decoded.

import * as fzstd from './fzstd-portable.js';

/** fzstd's one-shot decoder (the vendored file is untyped: its published signature). */
const decompress: (dat: Uint8Array, buf?: Uint8Array) => Uint8Array = fzstd.decompress;

export class ZstdError extends Error {
  override name = 'ZstdError';
}

const BLOCK_MAX = 128 * 1024;

/** True when the bytes start with a zstd frame (or a skippable frame). */
export function isZstd(b: Uint8Array): boolean {
  if (b.length < 4) return false;
  const m = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  return m === 0xfd2fb528 || (m & 0xfffffff0) >>> 0 === 0x184d2a50;
}

function le(b: Uint8Array, at: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + b[at + i]!;
  return v;
}

/** The most the frames can decode to, from their headers alone; throws ZstdError on a bad header. */
export function zstdOutputBound(b: Uint8Array, cap: number): number {
  let at = 0;
  let bound = 0;
  const need = (n: number, what: string): void => {
    if (at + n > b.length) throw new ZstdError(`truncated: ${what} at offset ${at}`);
  };
  if (b.length === 0) throw new ZstdError('empty input');
  while (at < b.length) {
    need(4, 'frame magic');
    const magic = le(b, at, 4);
    at += 4;
    if (magic >= 0x184d2a50 && magic <= 0x184d2a5f) {
      need(4, 'skippable frame size');
      const size = le(b, at, 4);
      at += 4;
      need(size, 'skippable frame');
      at += size;
      continue;
    }
    if (magic !== 0xfd2fb528) throw new ZstdError(`no zstd frame at offset ${at - 4}`);
    need(1, 'frame header');
    const fhd = b[at++]!;
    if (fhd & 0x08) throw new ZstdError('reserved bit set in the frame header');
    const single = (fhd >> 5) & 1;
    const checksum = (fhd >> 2) & 1;
    const dictFlag = fhd & 3;
    const fcsFlag = fhd >> 6;
    if (dictFlag !== 0) throw new ZstdError('frame needs a dictionary');
    let window = 0;
    if (!single) {
      need(1, 'window descriptor');
      const wd = b[at++]!;
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
    }
    const fcsSize = fcsFlag === 0 ? single : 1 << fcsFlag;
    need(fcsSize, 'frame content size');
    const fcs = fcsSize === 0 ? -1 : le(b, at, fcsSize) + (fcsSize === 2 ? 256 : 0);
    at += fcsSize;
    if (single) window = fcs;
    if (window > cap || fcs > cap) throw new ZstdError(`a frame declares ${Math.max(window, fcs)} bytes (the cap is ${cap})`);
    const blockMax = Math.min(window || BLOCK_MAX, BLOCK_MAX);
    let frameOut = 0;
    for (;;) {
      need(3, 'block header');
      const h = le(b, at, 3);
      at += 3;
      const last = h & 1;
      const type = (h >> 1) & 3;
      const size = h >>> 3;
      if (type === 3) throw new ZstdError('reserved block type');
      if (type === 1) {
        need(1, 'RLE block');
        at += 1;
        frameOut += size;
      } else {
        need(size, type === 0 ? 'raw block' : 'compressed block');
        at += size;
        frameOut += type === 0 ? size : blockMax;
      }
      if (size > BLOCK_MAX) throw new ZstdError(`a block of ${size} bytes (the most is ${BLOCK_MAX})`);
      if (bound + frameOut > cap) throw new ZstdError(`inflates to more than ${cap} bytes`);
      if (last) break;
    }
    bound += frameOut;
    if (checksum) {
      need(4, 'checksum');
      at += 4;
    }
  }
  return bound;
}

/** Decompresses all frames; refuses input that could inflate past `cap` bytes. */
export function inflateZstd(b: Uint8Array, cap: number): Uint8Array {
  zstdOutputBound(b, cap);
  let out: Uint8Array;
  try {
    out = decompress(b);
  } catch (e) {
    throw new ZstdError(`corrupt zstd data: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (out.length > cap) throw new ZstdError(`inflates to more than ${cap} bytes`);
  return out;
}
