// A bounds-checked reader over a byte array, for the formats with Go's
// encoding/binary layouts (sing-box .srs, mihomo .mrs). Every read checks the
// bytes left first and throws CursorError, so a declared length can never make
// us read past the end or allocate more than the input could hold.

export class CursorError extends Error {
  override name = 'CursorError';
}

export class ByteCursor {
  pos = 0;
  private readonly view: DataView;

  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Throws unless `n` more bytes are there; `what` names them in the message. */
  need(n: number, what: string): void {
    if (!(n >= 0) || n > this.remaining) {
      throw new CursorError(`${what} needs ${n} bytes at offset ${this.pos}, ${this.remaining} left (truncated or corrupt)`);
    }
  }

  u8(what = 'a byte'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Go's binary.ReadUvarint; values past 2^53 are refused (no real length is that big). */
  uvarint(what: string): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.u8(what);
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw new CursorError(`${what} at offset ${this.pos} is too large`);
        return result;
      }
      mul *= 128;
    }
    throw new CursorError(`${what} at offset ${this.pos} is not a valid varint`);
  }

  /** A big-endian 64-bit integer that must be a sane non-negative count. */
  u64be(what: string): number {
    this.need(8, what);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    // Signed in mihomo (int64), unsigned in sing-box (uint64): either way a top bit is no count.
    if (hi > 0x1fffff) throw new CursorError(`${what} (${hi >= 0x80000000 ? 'negative' : 'over 2^53'}) is not a valid count`);
    return hi * 0x100000000 + lo;
  }

  u64pairBE(what: string): [number, number] {
    this.need(8, what);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    return [hi, lo];
  }

  /** Checks that `count` items of at least `minSize` bytes each can fit in what is left. */
  fits(count: number, minSize: number, what: string): void {
    if (count * minSize > this.remaining) {
      throw new CursorError(`${what}: ${count} declared, but only ${this.remaining} bytes left (truncated or corrupt)`);
    }
  }
}
