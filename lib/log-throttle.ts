// Rate limit for a log line a flood can repeat ("no upstream answered",
// refusals, overload drops): per kind, the first `burst` lines of a window
// are logged, the rest only counted, and when the window closes one line
// says how many were left out, with the fields of the last one. A flood of
// 800k queries then costs a few lines a window, not thousands, and the
// count of what happened is still in the log.
//
// Kinds are a few fixed strings chosen by the caller (never a name or an
// address from a packet: a flood of random names would make a kind per
// packet); past `maxKinds`, further kinds share one.
import type { Clock } from './clock.js';
import type { Logger } from './logger.js';

type Level = 'debug' | 'info' | 'warn' | 'error';

interface Kind {
  /** When this window opened (monotonic ms). */
  since: number;
  logged: number;
  suppressed: number;
  level: Level;
  last: { obj: object; msg: string } | null;
  timer: unknown;
}

export interface LogThrottleOptions {
  /** Default 10 s. */
  windowMs?: number;
  /** Lines logged per kind and window before counting starts; default 1. */
  burst?: number;
  /** Default 64. */
  maxKinds?: number;
}

const OVERFLOW = '(other)';

export class LogThrottle {
  private readonly kinds = new Map<string, Kind>();
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly maxKinds: number;
  /** Lines left out since start, every kind. */
  suppressedTotal = 0;

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    o: LogThrottleOptions = {},
  ) {
    this.windowMs = o.windowMs ?? 10_000;
    this.burst = o.burst ?? 1;
    this.maxKinds = o.maxKinds ?? 64;
  }

  debug(kind: string, obj: object, msg: string): void {
    this.line('debug', kind, obj, msg);
  }

  info(kind: string, obj: object, msg: string): void {
    this.line('info', kind, obj, msg);
  }

  warn(kind: string, obj: object, msg: string): void {
    this.line('warn', kind, obj, msg);
  }

  error(kind: string, obj: object, msg: string): void {
    this.line('error', kind, obj, msg);
  }

  /** Writes the pending counts now and stops the timers (at stop). */
  flush(): void {
    for (const [name, k] of this.kinds) {
      this.clock.clearTimeout(k.timer);
      this.summarize(k);
      this.kinds.delete(name);
    }
  }

  private line(level: Level, kind: string, obj: object, msg: string): void {
    const now = this.clock.now();
    const name = this.kinds.has(kind) || this.kinds.size < this.maxKinds ? kind : OVERFLOW;
    let k = this.kinds.get(name);
    if (k === undefined) {
      k = { since: now, logged: 0, suppressed: 0, level, last: null, timer: null };
      this.kinds.set(name, k);
    }
    if (k.logged < this.burst) {
      k.logged++;
      this.log[level](obj, msg);
      this.arm(name, k);
      return;
    }
    k.suppressed++;
    this.suppressedTotal++;
    k.level = level;
    k.last = { obj, msg };
  }

  /** At the window's end: the count, and a fresh window (the kind is forgotten when nothing came). */
  private arm(name: string, k: Kind): void {
    if (k.timer !== null) return;
    k.timer = this.clock.setTimeout(() => {
      k.timer = null;
      if (k.suppressed === 0) {
        this.kinds.delete(name);
        return;
      }
      this.summarize(k);
      k.since = this.clock.now();
      k.logged = 0;
      k.suppressed = 0;
      k.last = null;
      // The flood goes on: the next window counts again (and ends with its own count).
      this.arm(name, k);
      k.logged = this.burst;
    }, this.windowMs - (this.clock.now() - k.since));
  }

  private summarize(k: Kind): void {
    if (k.suppressed === 0 || k.last === null) return;
    const secs = Math.round(this.windowMs / 100) / 10;
    this.log[k.level]({ ...k.last.obj, suppressed: k.suppressed, windowS: secs }, `${k.last.msg} (${k.suppressed} more like this in ${secs} s, not logged one by one)`);
  }
}
