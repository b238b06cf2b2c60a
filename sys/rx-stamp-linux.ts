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
import { constants } from 'node:os';
import { cAbi, KERNEL_TIMESPEC, LIBC_TIMESPEC, readLong, structLayout, type CAbi } from './c-abi.js';
import { koffi } from './koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from './libc-linux.js';
import { CLOCK_REALTIME, SIOCGSTAMPNS_NEW } from './linux-abi.js';
import { dgramFd } from './socket-fd.js';

interface Calls {
  stamp(fd: number, out: Buffer): number;
  realtime(out: Buffer): number;
  stampNs(b: Buffer): bigint;
  clockNs(b: Buffer): bigint;
}

let calls: Calls | null | undefined;

function lib(): Calls | null {
  if (calls !== undefined) return calls;
  if (process.platform !== 'linux') return (calls = null);
  try {
    const l = loadLibc();
    const ioctl = l.func('int ioctl(int, unsigned long, ...)') as (fd: number, req: number, t: string, buf: Buffer) => number;
    const gettime = l.func('int clock_gettime(int, _Out_ uint8_t *)') as (clock: number, out: Buffer) => number;
    calls = { stamp: (fd, out) => ioctl(fd, SIOCGSTAMPNS_NEW, 'uint8_t *', out), realtime: (out) => gettime(CLOCK_REALTIME, out), ...readers(cAbi()) };
  } catch {
    calls = null;
  }
  return calls;
}

const ENOENT = constants.errno.ENOENT;
const stampBuf = Buffer.alloc(16);
const nowBuf = Buffer.alloc(16);
/** A datagram is not kept waiting this long; a larger figure is a wall-clock step, not a measurement. */
const MAX_QUEUED_MS = 60_000;

/** The two timespecs as ns: the stamp a __kernel_timespec (64-bit fields on every ABI), the clock the C library's. */
function readers(abi: CAbi): { stampNs(b: Buffer): bigint; clockNs(b: Buffer): bigint } {
  const k = structLayout(KERNEL_TIMESPEC, abi);
  const l = structLayout(LIBC_TIMESPEC, abi);
  const wide: CAbi = { ...abi, pointerSize: 8 };
  return {
    stampNs: (b) => readLong(b, k.offset.sec, wide) * 1_000_000_000n + readLong(b, k.offset.nsec, wide),
    clockNs: (b) => readLong(b, l.offset.sec, abi) * 1_000_000_000n + readLong(b, l.offset.nsec, abi),
  };
}

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
  const waited = Number(c.clockNs(nowBuf) - c.stampNs(stampBuf)) / 1e6;
  return waited >= 0 && waited < MAX_QUEUED_MS ? waited : null;
}
