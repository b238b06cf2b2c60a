// Time, as the daemon uses it: durations, deadlines and expiries on a
// monotonic clock; wall time only for what a person reads; and a boot clock
// that also counts the time the machine was suspended, so a gap in the
// daemon's life (a suspended laptop, a stopped process, a starved event
// loop) can be told from a fault it was watching for.
//
// Why not Date.now() for durations: a wall clock steps (NTP's first sync
// on a router without an RTC, a person setting the time, a VM restored from
// a snapshot). A step back made the tagger's shadow think a tag was alive
// that the kernel (whose set timeouts are monotonic) had already dropped:
// cache hits skipped re-tagging, and tunnel names took the default path.
import { openSync, readSync } from 'node:fs';

/** Timers and time, injected so debounces, probes and TTLs run under fake clocks in tests. */
export interface Clock {
  /** Monotonic ms (an arbitrary origin): every duration, deadline and expiry. Never steps; does not count suspend. */
  now(): number;
  /** ms since the epoch: only for what a person reads (status times, failover history). */
  wall(): number;
  /**
   * Monotonic ms that also counts time suspended (CLOCK_BOOTTIME): it runs
   * ahead of now() by exactly the time the machine slept.
   */
  boot(): number;
  /** A timer on now()'s time line. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** /proc/uptime, opened once: each read is one pread(2) (readFileSync was open, fstat, read and close, per probe round). */
let uptimeFd: number | null | undefined;
const uptimeBuf = Buffer.alloc(64);

/** /proc/uptime's first figure (CLOCK_BOOTTIME), ms; null where there is none (not Linux). */
function uptimeMs(): number | null {
  try {
    uptimeFd ??= openSync('/proc/uptime', 'r');
    if (uptimeFd === null) return null;
    // From offset 0 every time: procfs makes the text anew for a read at the start.
    const n = readSync(uptimeFd, uptimeBuf, 0, uptimeBuf.length, 0);
    const s = uptimeBuf.toString('latin1', 0, n);
    const v = Number(s.slice(0, s.indexOf(' ')));
    return Number.isFinite(v) ? v * 1000 : null;
  } catch {
    uptimeFd = null;
    return null;
  }
}

/** boot() - uptime: set at the first read, so boot() starts near now(); null: no boot clock here. */
let bootOffset: number | null | undefined;

/** The boot clock (10 ms resolution); without one, the monotonic clock: no suspend is ever seen. */
function bootMs(): number {
  if (bootOffset === null) return performance.now();
  const u = uptimeMs();
  if (u === null) {
    bootOffset = null;
    return performance.now();
  }
  bootOffset ??= u - performance.now();
  return u - bootOffset;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  boot: bootMs,
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** The wall time a monotonic instant corresponds to (for status: "changed at"). */
export function wallOf(c: Clock, mono: number): number {
  return Math.round(c.wall() - (c.now() - mono));
}

/** Where a clock stood: compared later to tell how much time was slept or lost. */
export interface ClockMark {
  mono: number;
  boot: number;
}

export function mark(c: Clock): ClockMark {
  return { mono: c.now(), boot: c.boot() };
}

/**
 * ms the machine slept between two marks: the boot clock ran ahead of the
 * monotonic one. /proc/uptime has a 10 ms resolution and is read a little
 * apart from the monotonic clock: anything under SUSPEND_NOISE_MS is noise.
 */
export function sleptBetween(a: ClockMark, b: ClockMark): number {
  const slept = b.boot - a.boot - (b.mono - a.mono);
  return slept > SUSPEND_NOISE_MS ? slept : 0;
}

export const SUSPEND_NOISE_MS = 50;
