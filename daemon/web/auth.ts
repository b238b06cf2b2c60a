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
/** Why sessions ended, remembered for this many tokens: enough to tell each open page why it has to log in again. */
const MAX_ENDED = 2 * MAX_SESSIONS;

/** Why a cookie no longer opens a session. `unknown`: never made here, or forgotten (the daemon restarted). */
export type SessionEnd = 'logout' | 'password' | 'expired' | 'unknown';

/** What a page shows on its login form when its session is gone. */
export const SESSION_END_TEXT: Readonly<Record<SessionEnd, string>> = {
  logout: 'your session ended: it was logged out (here or in another window)',
  password: "your session ended: the dashboard's password was changed",
  expired: 'your session expired (8 hours unused, or a week old)',
  unknown: 'your session is no longer valid (the daemon restarted, or it was ended)',
};

interface Session {
  csrf: string;
  created: number;
  seen: number;
}

const token = (): string => randomBytes(32).toString('base64url');
const expired = (s: Session, now: number): boolean => now - s.seen > IDLE_MS || now - s.created > MAX_AGE_MS;

/** Equal strings, compared in constant time (a token's bytes do not leak through timing). */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  private readonly byToken = new Map<string, Session>();
  /** Tokens of ended sessions and why they ended (bounded: the oldest are forgotten first). */
  private readonly ended = new Map<string, SessionEnd>();

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
    if (t === null || !this.alive(t)) return null;
    const s = this.byToken.get(t)!;
    s.seen = this.clock.now();
    return s;
  }

  /** Whether a token's session is still live, without counting as a use (an open live view is not activity). */
  alive(t: string | null): boolean {
    if (t === null) return false;
    const s = this.byToken.get(t);
    if (s === undefined) return false;
    if (!expired(s, this.clock.now())) return true;
    this.finish(t, 'expired');
    return false;
  }

  /** Why a token opens no session (null: it does, or no token was sent). */
  why(t: string | null): SessionEnd | null {
    if (t === null || this.alive(t)) return null;
    return this.ended.get(t) ?? 'unknown';
  }

  end(t: string | null): void {
    if (t !== null && this.byToken.has(t)) this.finish(t, 'logout');
  }

  /** Every session ends (the password changed). */
  clear(): void {
    for (const t of [...this.byToken.keys()]) this.finish(t, 'password');
  }

  get size(): number {
    return this.byToken.size;
  }

  private sweep(now: number): void {
    for (const [t, s] of this.byToken) if (expired(s, now)) this.finish(t, 'expired');
  }

  private finish(t: string, why: SessionEnd): void {
    this.byToken.delete(t);
    this.ended.delete(t);
    this.ended.set(t, why);
    if (this.ended.size > MAX_ENDED) this.ended.delete(this.ended.keys().next().value!);
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
