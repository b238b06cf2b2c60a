// The small part of protobuf that geosite.dat and geoip.dat need, on top of
// @bufbuild/protobuf's BinaryReader (which bounds every length it reads
// against the buffer and validates tags). We read the messages by hand
// instead of generating code: the schemas are four fields deep and fixed, and
// reading one entry's name before its body lets a selection skip the rest of
// a 60 MB file without decoding it.

import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

export { BinaryReader, WireType };

/**
 * Calls `field` for each field of the message in `buf`; `field` reads the
 * value (true), returns false to have it skipped, or 'stop' once it has
 * what it wanted. Groups (proto2) never occur in
 * these files and are refused rather than recursed into.
 */
export function forEachField(buf: Uint8Array, field: (no: number, wt: WireType, r: BinaryReader) => boolean | 'stop'): void {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (wt === WireType.StartGroup || wt === WireType.EndGroup) throw new Error(`protobuf group in field ${no}: not this format`);
    const took = field(no, wt, r);
    if (took === 'stop') return;
    if (!took) r.skip(wt, no);
  }
}

/**
 * A protobuf reader over one buffer that walks nested messages by offsets,
 * for geosite.dat's ~100k small Domain messages: forEachField makes a
 * BinaryReader (with a DataView) and a subarray per message, which made
 * decoding a selection mostly allocation and GC. Every length is checked
 * against the end of the message that holds it before it is used.
 */
export class ProtoCursor {
  pos = 0;
  /** Field number and wire type of the last tag() call. */
  no = 0;
  wt = 0;

  constructor(readonly buf: Uint8Array) {}

  /** A varint's low 32 bits (as protobuf reads uint32/int32: up to 10 bytes), within [pos, end). */
  uint32(end: number): number {
    const buf = this.buf;
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) throw new RangeError('premature EOF');
      const b = buf[this.pos++]!;
      if (i < 5) v = (v | ((b & 0x7f) << (7 * i))) >>> 0;
      if (b < 0x80) return v;
    }
    throw new Error('invalid varint');
  }

  /** Reads a tag: returns the field number, `wt` holds the wire type; refuses field 0, unknown wire types and groups (never in these files). */
  tag(end: number): number {
    const start = this.pos;
    const t = this.uint32(end);
    if (this.pos - start > 5 || (this.pos - start === 5 && this.buf[this.pos - 1]! > 0x0f)) throw new Error('illegal tag: varint overflows uint32');
    this.no = Math.floor(t / 8);
    this.wt = t & 7;
    if (this.no <= 0 || this.wt > 5) throw new Error(`illegal tag: field no ${this.no} wire type ${this.wt}`);
    if (this.wt === WireType.StartGroup || this.wt === WireType.EndGroup) throw new Error(`protobuf group in field ${this.no}: not this format`);
    return this.no;
  }

  /** A length-delimited field's length, checked to fit before `end`; pos is then at its first byte. */
  len(end: number): number {
    const n = this.uint32(end);
    if (n > end - this.pos) throw new RangeError('premature EOF');
    return n;
  }

  /** Skips the value of the field whose tag was just read. */
  skip(end: number): void {
    switch (this.wt) {
      case WireType.Varint:
        for (let i = 0; ; i++) {
          if (this.pos >= end || i >= 10) throw new RangeError('premature EOF or varint too long');
          if (this.buf[this.pos++]! < 0x80) return;
        }
      case WireType.Bit64:
      case WireType.Bit32: {
        const n = this.wt === WireType.Bit64 ? 8 : 4;
        if (n > end - this.pos) throw new RangeError('premature EOF');
        this.pos += n;
        return;
      }
      default: {
        const n = this.len(end); // (read before pos: len() moves it past the length)
        this.pos += n;
      }
    }
  }
}
