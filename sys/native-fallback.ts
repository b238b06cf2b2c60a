// How a native fast path that cannot run says so: once per process, through
// the logger its user was given, with the reason and what is used instead
// ("resolver UDP: recvmmsg fast path off (no C library could be loaded ...):
// using node:dgram"). Once, because the same choice is made again by each
// new user (a reload's new proxy, the start's cleanup and then the daemon's
// nft session) and would repeat the same line.

/** The part of a logger a fallback note needs (pino's, lib/logger.ts's, the proxy's). */
export interface NoteLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** Which fast paths have said why they are off. */
export class FallbackNotes {
  private readonly said = new Set<string>();

  /**
   * Logs `<what> fast path off (<reason>): using <instead>` the first time
   * `what` is noted; later calls say nothing. `chosen`: the operator asked
   * for it (an environment variable): info; otherwise the fast path could
   * not run: warn.
   */
  note(logger: NoteLogger | undefined, what: string, reason: string, instead: string, chosen = false): void {
    if (logger === undefined || this.said.has(what)) return;
    this.said.add(what);
    const line = `${what} fast path off (${reason}): using ${instead}`;
    if (chosen) logger.info({ fastPath: what, reason }, line);
    else logger.warn({ fastPath: what, reason }, line);
  }
}

/** The process's notes: every fast path's default. */
export const processNotes = new FallbackNotes();

/** Where a fast path reports that it is off: the logger, and the notes (tests pass their own). */
export interface FallbackReport {
  logger?: NoteLogger;
  notes?: FallbackNotes;
}

/**
 * A fast path, or its fallback with the reason noted once: `turnedOff` (the
 * operator's variable, e.g. `SPLITWAN_DNS_UDP=dgram`) or another OS than
 * Linux (info), else whatever `make` throws (warn).
 */
export function fastPathOr<T>(o: { what: string; instead: string; report: FallbackReport; turnedOff: string | null }, make: () => T, fallback: T): T {
  const off = (reason: string, chosen: boolean): T => {
    (o.report.notes ?? processNotes).note(o.report.logger, o.what, reason, o.instead, chosen);
    return fallback;
  };
  const turnedOff = o.turnedOff ?? nativeTurnedOff();
  if (turnedOff !== null) return off(turnedOff, true);
  if (process.platform !== 'linux') return off(`not Linux (${process.platform})`, true);
  try {
    return make();
  } catch (e) {
    return off(reasonOf(e), false);
  }
}

/**
 * `SPLITWAN_NATIVE=off`: no native code at all (no koffi, no libc); every
 * fast path takes its Node fallback, marked sockets become source-port paths.
 * The safety net for a platform koffi does not cover, and how it is tested.
 */
export function nativeTurnedOff(env: NodeJS.ProcessEnv = process.env): string | null {
  return env.SPLITWAN_NATIVE === 'off' ? 'SPLITWAN_NATIVE=off' : null;
}

/** A thrown value's first line, for a reason in parentheses. */
export function reasonOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}
