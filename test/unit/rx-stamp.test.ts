// The receive stamp's "now" (sys/rx-stamp-linux.ts): CLOCK_REALTIME as a
// __kernel_timespec on every ABI. On 32-bit glibc the plain clock_gettime
// writes two 32-bit longs; read as 64-bit it was garbage and armhf never used
// a stamp (found by test/integration/probe-timing under test:arch armhf).
import { endianness } from 'node:os';
import { describe, expect, it } from 'vitest';
import { realtimeCall, widenTimespec32, type Gettime } from '../../sys/rx-stamp-linux.js';

const SEC = 1_796_664_988;
const NSEC = 927_472_817;

/** A C library with the given symbols: clock_gettime writes a timespec of `longBytes` longs, __clock_gettime64 two 64-bit ones (this machine's byte order). */
function fakeLibc(symbols: string[], longBytes: 4 | 8): { func: (sig: string) => Gettime; asked: string[] } {
  const asked: string[] = [];
  const func = (sig: string): Gettime => {
    const name = /int (\w+)\(/.exec(sig)![1]!;
    asked.push(name);
    if (!symbols.includes(name)) throw new Error(`${name}: symbol not found`);
    return (_clock, out) => {
      // The C library writes in this machine's byte order.
      if (name === '__clock_gettime64' || longBytes === 8) {
        if (LE) {
          out.writeBigInt64LE(BigInt(SEC), 0);
          out.writeBigInt64LE(BigInt(NSEC), 8);
        } else {
          out.writeBigInt64BE(BigInt(SEC), 0);
          out.writeBigInt64BE(BigInt(NSEC), 8);
        }
      } else if (LE) {
        out.writeInt32LE(SEC, 0);
        out.writeInt32LE(NSEC, 4);
      } else {
        out.writeInt32BE(SEC, 0);
        out.writeInt32BE(NSEC, 4);
      }
      return 0;
    };
  };
  return { func, asked };
}

const LE = endianness() === 'LE';
const read = (b: Buffer): [bigint, bigint] => (LE ? [b.readBigInt64LE(0), b.readBigInt64LE(8)] : [b.readBigInt64BE(0), b.readBigInt64BE(8)]);

describe('receive stamps: CLOCK_REALTIME as a 64-bit timespec', () => {
  it('64-bit: clock_gettime itself', () => {
    const l = fakeLibc(['clock_gettime'], 8);
    const out = Buffer.alloc(16);
    expect(realtimeCall(l.func, 8)(out)).toBe(0);
    expect(read(out)).toEqual([BigInt(SEC), BigInt(NSEC)]);
    expect(l.asked).toEqual(['clock_gettime']);
  });

  it('32-bit: __clock_gettime64 where the C library has it (glibc >= 2.34, musl >= 1.2), never the 32-bit struct', () => {
    const l = fakeLibc(['clock_gettime', '__clock_gettime64'], 4);
    const out = Buffer.alloc(16);
    expect(realtimeCall(l.func, 4)(out)).toBe(0);
    expect(read(out)).toEqual([BigInt(SEC), BigInt(NSEC)]);
    expect(l.asked).toEqual(['__clock_gettime64']);
  });

  it('32-bit without __clock_gettime64: the 32-bit struct widened (read as 64-bit it was garbage)', () => {
    const l = fakeLibc(['clock_gettime'], 4);
    const out = Buffer.alloc(16);
    expect(realtimeCall(l.func, 4)(out)).toBe(0);
    expect(read(out)).toEqual([BigInt(SEC), BigInt(NSEC)]);
    expect(l.asked).toEqual(['__clock_gettime64', 'clock_gettime']);
  });

  it('widens in either byte order, negative values kept', () => {
    for (const le of [true, false]) {
      const t32 = Buffer.alloc(8);
      const out = Buffer.alloc(16);
      if (le) {
        t32.writeInt32LE(-2, 0);
        t32.writeInt32LE(NSEC, 4);
      } else {
        t32.writeInt32BE(-2, 0);
        t32.writeInt32BE(NSEC, 4);
      }
      widenTimespec32(t32, out, le);
      expect(le ? [out.readBigInt64LE(0), out.readBigInt64LE(8)] : [out.readBigInt64BE(0), out.readBigInt64BE(8)]).toEqual([-2n, BigInt(NSEC)]);
    }
  });
});
