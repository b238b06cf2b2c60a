// The dashboard's sessions and login limits. The dashboard changes routing,
// so it is guarded like root: a session is a random 256-bit token in an
// HttpOnly SameSite=Strict cookie, every change carries the session's CSRF
// token in a header, and password guesses are limited per client address and
// overall (scrypt makes each guess cost 32 MiB and a fraction of a second of a core; the limits
// keep a guesser from making the daemon spend that all day).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../lib/logger.js';

/** A session ends after this long unused, and after MAX_AGE_MS whatever happens. */
export const IDLE_MS = 8 * 3600_000;
export const MAX_AGE_MS = 7 * 24 * 3600_000;
const MAX_SESSIONS = 64;

interface Session {
  csrf: string;
  created: number;
  seen: number;
}

const token = (): string => randomBytes(32).toString('base64url');

/** Equal strings, compared in constant time (a token's bytes do not leak through timing). */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  private readonly byToken = new Map<string, Session>();

  constructor(private readonly clock: Pick<Clock, 'now'>) {}

  /** A new session: its cookie token and CSRF token. The oldest goes when there are too many. */
  create(): { token: string; csrf: string } {
    const now = this.clock.now();
    this.sweep(now);
    if (this.byToken.size >= MAX_SESSIONS) this.byToken.delete(this.byToken.keys().next().value!);
    const t = token();
    const s = { csrf: token(), created: now, seen: now };
    this.byToken.set(t, s);
    return { token: t, csrf: s.csrf };
  }

  /** The live session of a cookie token (its use keeps it alive), or null. */
  get(t: string | null): { csrf: string } | null {
    if (t === null) return null;
    const s = this.byToken.get(t);
    if (s === undefined) return null;
    const now = this.clock.now();
    if (now - s.seen > IDLE_MS || now - s.created > MAX_AGE_MS) {
      this.byToken.delete(t);
      return null;
    }
    s.seen = now;
    return s;
  }

  end(t: string | null): void {
    if (t !== null) this.byToken.delete(t);
  }

  /** Every session ends (the password changed). */
  clear(): void {
    this.byToken.clear();
  }

  get size(): number {
    return this.byToken.size;
  }

  private sweep(now: number): void {
    for (const [t, s] of this.byToken) if (now - s.seen > IDLE_MS || now - s.created > MAX_AGE_MS) this.byToken.delete(t);
  }
}

/** Guesses one address may get wrong per window, and all addresses together. */
export const PER_CLIENT_FAILURES = 5;
export const GLOBAL_FAILURES = 30;
export const WINDOW_MS = 5 * 60_000;
/** Logins checked at once: each scrypt check holds 32 MiB. */
export const CONCURRENT_CHECKS = 2;

/**
 * Login attempts: `admit` says whether an attempt may be checked now (null)
 * or how many ms to wait; failures count per address and overall within a
 * window; a success clears its address.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  private all: number[] = [];
  private checking = 0;

  constructor(private readonly clock: Pick<Clock, 'now'>) {}

  admit(client: string): number | null {
    const now = this.clock.now();
    const recent = (list: number[]): number[] => list.filter((t) => now - t < WINDOW_MS);
    this.all = recent(this.all);
    const mine = recent(this.failures.get(client) ?? []);
    if (mine.length === 0) this.failures.delete(client);
    else this.failures.set(client, mine);
    if (mine.length >= PER_CLIENT_FAILURES) return mine[0]! + WINDOW_MS - now;
    if (this.all.length >= GLOBAL_FAILURES) return this.all[0]! + WINDOW_MS - now;
    if (this.checking >= CONCURRENT_CHECKS) return 1000;
    this.checking++;
    return null;
  }

  /** The outcome of an admitted attempt. */
  done(client: string, ok: boolean): void {
    this.checking--;
    if (ok) {
      this.failures.delete(client);
      return;
    }
    const now = this.clock.now();
    this.all.push(now);
    const list = this.failures.get(client) ?? [];
    list.push(now);
    this.failures.set(client, list);
    // A flood of addresses cannot grow this without bound: the global window caps what is kept.
    if (this.failures.size > 4 * GLOBAL_FAILURES) this.failures.delete(this.failures.keys().next().value!);
  }
}
