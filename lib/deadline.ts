// A timeout that judges the far end, not this process's scheduler.
//
// Node runs expired timers before it polls for I/O in each turn of its
// event loop. After the loop was held up (a long task, GC, a CPU-starved
// machine, SIGSTOP), a timer that expired meanwhile runs first, while the
// answer that arrived in time still sits unread in the kernel: a plain
// setTimeout calls that a timeout. Here the verdict waits for the rest of
// that turn (setImmediate runs after the poll phase), so an answer already
// waiting is read first and wins; and the expiry says how late its timer
// fired, so a caller can tell "no answer within the time" from "this
// process was not running to see one".
//
// The cost: an expiry is reported one loop turn later than a plain timer
// would (microseconds on an idle loop).

export interface Deadline {
  /** Stops it (the answer came): the expiry callback will not run. */
  cancel(): void;
}

export interface Expiry {
  /** How much later than due its timer fired, ms (0 on an idle loop). */
  lateMs: number;
}

/**
 * Calls `onExpire` `ms` after now unless cancelled first, and only after
 * the I/O that was ready when its timer fired has been read. With
 * `naive`, the old behaviour (the timer's own callback decides): kept
 * only so a benchmark can show the difference.
 */
export function deadline(ms: number, onExpire: (e: Expiry) => void, o: { naive?: boolean } = {}): Deadline {
  const due = performance.now() + ms;
  let done = false;
  let immediate: NodeJS.Immediate | null = null;
  const timer = setTimeout(() => {
    if (done) return;
    const lateMs = Math.max(0, performance.now() - due);
    if (o.naive) {
      done = true;
      onExpire({ lateMs });
      return;
    }
    immediate = setImmediate(() => {
      if (done) return;
      done = true;
      onExpire({ lateMs });
    });
  }, ms);
  return {
    cancel: () => {
      done = true;
      clearTimeout(timer);
      if (immediate !== null) clearImmediate(immediate);
    },
  };
}

/** An error of a timeout, with how late its timer fired (see deadline()). */
export class TimeoutError extends Error {
  constructor(
    message: string,
    readonly lateMs: number,
  ) {
    super(message);
    this.name = 'TimeoutError';
  }
}

/** The lateness a failure carries (a TimeoutError's, an AggregateError's worst), else 0. */
export function latenessOf(e: unknown): number {
  if (e instanceof TimeoutError) return e.lateMs;
  if (e instanceof AggregateError) return Math.max(0, ...e.errors.map(latenessOf));
  const late = (e as { lateMs?: unknown } | null)?.lateMs;
  return typeof late === 'number' ? late : 0;
}

/**
 * `p`, or a TimeoutError after `ms` (judged as deadline() does). `onLate`
 * gets the value should `p` resolve after the timeout, to release it (a
 * socket dialled too late is closed, not leaked).
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string, onLate?: (v: T) => void, o: { naive?: boolean } = {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const d = deadline(
      ms,
      (e) => {
        settled = true;
        reject(new TimeoutError(`${what}: no answer in ${ms} ms`, e.lateMs));
      },
      o,
    );
    p.then(
      (v) => {
        if (settled) return onLate?.(v);
        settled = true;
        d.cancel();
        resolve(v);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        d.cancel();
        reject(err);
      },
    );
  });
}
