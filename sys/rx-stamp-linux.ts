// When a datagram really arrived: the kernel's receive timestamp of the
// last datagram a socket read (ioctl SIOCGSTAMPNS), so a round trip is
// measured to the packet's arrival, not to when a busy event loop got round
// to reading it.
//
// The first SIOCGSTAMPNS on a socket turns stamping on (and fails with
// ENOENT: nothing read yet); from then on the kernel stamps each datagram
// as it comes in, and after each read the ioctl returns that datagram's
// stamp. The stamp is CLOCK_REALTIME; what is returned is only the
// difference to CLOCK_REALTIME read at once, so a caller subtracts a
// duration from its own monotonic clock and a wall-clock step can only
// spoil the one reading it falls into (then null: out of range).
//
// Not on Linux, or where the call fails: null, and callers time the event.
import type dgram from 'node:dgram';
import { constants, endianness } from 'node:os';
import { cAbi } from './c-abi.js';
import { koffi } from './koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from './libc-linux.js';
import { CLOCK_REALTIME, SIOCGSTAMPNS_NEW } from './linux-abi.js';
import { dgramFd } from './socket-fd.js';

interface Calls {
  stamp(fd: number, out: Buffer): number;
  realtime(out: Buffer): number;
}

let calls: Calls | null | undefined;

function lib(): Calls | null {
  if (calls !== undefined) return calls;
  if (process.platform !== 'linux') return (calls = null);
  try {
    const l = loadLibc();
    const ioctl = l.func('int ioctl(int, unsigned long, ...)') as (fd: number, req: number, t: string, buf: Buffer) => number;
    calls = { stamp: (fd, out) => ioctl(fd, SIOCGSTAMPNS_NEW, 'uint8_t *', out), realtime: realtimeCall((sig) => l.func(sig) as Gettime) };
  } catch {
    calls = null;
  }
  return calls;
}

export type Gettime = (clock: number, out: Buffer) => number;

/**
 * CLOCK_REALTIME written as a __kernel_timespec (two 64-bit integers, what
 * SIOCGSTAMPNS_NEW writes), whatever the C library's time_t. On a 32-bit ABI
 * the plain `clock_gettime` symbol writes the 32-bit struct timespec (two
 * longs): read as 64-bit integers it was garbage, every stamp fell out of
 * range, and on armhf the loop's lateness counted as round trip again
 * (test/integration/probe-timing under `npm run test:arch -- armhf`).
 * `__clock_gettime64` (glibc >= 2.34, musl >= 1.2) writes the 64-bit struct;
 * without it the 32-bit one is widened here (good until 2038).
 */
export function realtimeCall(func: (signature: string) => Gettime, pointerSize: 4 | 8 = cAbi().pointerSize): (out: Buffer) => number {
  if (pointerSize === 8) {
    const gettime = func('int clock_gettime(int, _Out_ uint8_t *)');
    return (out) => gettime(CLOCK_REALTIME, out);
  }
  try {
    const gettime64 = func('int __clock_gettime64(int, _Out_ uint8_t *)');
    return (out) => gettime64(CLOCK_REALTIME, out);
  } catch {
    const gettime = func('int clock_gettime(int, _Out_ uint8_t *)');
    const t32 = Buffer.alloc(8);
    return (out) => {
      const r = gettime(CLOCK_REALTIME, t32);
      widenTimespec32(t32, out, LE);
      return r;
    };
  }
}

/** A 32-bit struct timespec (two 32-bit longs) into a __kernel_timespec (two 64-bit integers), in the given byte order. */
export function widenTimespec32(t32: Buffer, out: Buffer, littleEndian: boolean): void {
  if (littleEndian) {
    out.writeBigInt64LE(BigInt(t32.readInt32LE(0)), 0);
    out.writeBigInt64LE(BigInt(t32.readInt32LE(4)), 8);
  } else {
    out.writeBigInt64BE(BigInt(t32.readInt32BE(0)), 0);
    out.writeBigInt64BE(BigInt(t32.readInt32BE(4)), 8);
  }
}

const ENOENT = constants.errno.ENOENT;
const stampBuf = Buffer.alloc(16);
const nowBuf = Buffer.alloc(16);
/** A datagram is not kept waiting this long; a larger figure is a wall-clock step, not a measurement. */
const MAX_QUEUED_MS = 60_000;

const LE = endianness() === 'LE';
/** A __kernel_timespec (two native 64-bit integers) as ns. */
const ns = (b: Buffer): bigint => (LE ? b.readBigInt64LE(0) * 1_000_000_000n + b.readBigInt64LE(8) : b.readBigInt64BE(0) * 1_000_000_000n + b.readBigInt64BE(8));

/**
 * Turns on receive stamps for a bound socket; false where they are not
 * available (then queuedMs() returns null).
 */
export function enableRxStamps(sock: dgram.Socket): boolean {
  const c = lib();
  const fd = dgramFd(sock);
  if (c === null || fd < 0) return false;
  if (c.stamp(fd, stampBuf) === 0) return true; // something was read already: on, too
  return koffi.errno() === ENOENT;
}

/**
 * How long the datagram the socket read last waited in the kernel before
 * this process read it, ms; null when unknown. Call it in the 'message'
 * handler of that datagram (Node reads one datagram, then emits it).
 */
export function queuedMs(sock: dgram.Socket): number | null {
  const c = lib();
  const fd = dgramFd(sock);
  if (c === null || fd < 0 || c.stamp(fd, stampBuf) !== 0 || c.realtime(nowBuf) !== 0) return null;
  const waited = Number(ns(nowBuf) - ns(stampBuf)) / 1e6;
  return waited >= 0 && waited < MAX_QUEUED_MS ? waited : null;
}
