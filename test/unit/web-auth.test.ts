// The dashboard's sessions, login limits and the charts' samples, under a
// clock the test moves.
import { describe, expect, it } from 'vitest';
import { CONCURRENT_CHECKS, GLOBAL_FAILURES, IDLE_MS, LoginLimiter, MAX_AGE_MS, PER_CLIENT_FAILURES, Sessions, WINDOW_MS } from '../../daemon/web/auth.js';
import { sampleOf } from '../../daemon/web/history.js';
import type { StatusReport } from '../../daemon/control/protocol.js';

const clock = { t: 0, now(): number { return this.t; } };

describe('Sessions', () => {
  it('a session lives while used, ends after IDLE_MS unused or MAX_AGE_MS in all, and on logout', () => {
    clock.t = 0;
    const s = new Sessions(clock);
    const a = s.create();
    expect(a.token).not.toBe(a.csrf);
    expect(s.get(a.token)).toEqual(expect.objectContaining({ csrf: a.csrf }));
    expect(s.get('forged')).toBeNull();
    clock.t = IDLE_MS - 1;
    expect(s.get(a.token)).not.toBeNull(); // used: kept alive
    clock.t += IDLE_MS + 1;
    expect(s.get(a.token)).toBeNull();
    const b = s.create();
    const made = clock.t;
    // Used every half IDLE_MS, right up to MAX_AGE_MS: it lives until then, not after.
    for (clock.t = made; clock.t < made + MAX_AGE_MS; clock.t += IDLE_MS / 2) expect(s.get(b.token)).not.toBeNull();
    clock.t += 1; // just past MAX_AGE_MS since it was made
    expect(s.get(b.token)).toBeNull();
    expect(s.get(b.token)).toBeNull();
    const c = s.create();
    s.end(c.token);
    expect(s.get(c.token)).toBeNull();
  });

  it('says why a token opens no session (logout, password, expired, unknown); alive() does not keep a session alive', () => {
    clock.t = 0;
    const s = new Sessions(clock);
    const out = s.create();
    s.end(out.token);
    const idle = s.create();
    const watched = s.create();
    clock.t = IDLE_MS / 2;
    expect(s.alive(watched.token)).toBe(true);
    const kept = s.create();
    expect([s.why(out.token), s.why(kept.token), s.why('forged'), s.why(null)]).toEqual(['logout', null, 'unknown', null]);
    clock.t = IDLE_MS + 1;
    // alive() at IDLE_MS/2 was no use: the session idled out like the other one.
    expect([s.alive(watched.token), s.why(watched.token), s.why(idle.token)]).toEqual([false, 'expired', 'expired']);
    expect(s.get(kept.token)).not.toBeNull();
    s.clear();
    expect([s.get(kept.token), s.why(kept.token), s.why(out.token)]).toEqual([null, 'password', 'logout']);
  });

  it('keeps at most 64 sessions: the oldest goes', () => {
    const s = new Sessions(clock);
    const first = s.create();
    for (let i = 0; i < 64; i++) s.create();
    expect(s.size).toBe(64);
    expect(s.get(first.token)).toBeNull();
  });
});

describe('LoginLimiter', () => {
  it('per client: PER_CLIENT_FAILURES wrong guesses, then a wait until the window moves on; a success clears it', () => {
    clock.t = 0;
    const l = new LoginLimiter(clock);
    for (let i = 0; i < PER_CLIENT_FAILURES; i++) {
      expect(l.admit('10.0.0.5')).toBeNull();
      l.done('10.0.0.5', false);
    }
    expect(l.admit('10.0.0.5')).toBe(WINDOW_MS);
    expect(l.admit('10.0.0.6')).toBeNull(); // another client is not held up
    l.done('10.0.0.6', true);
    clock.t = WINDOW_MS;
    expect(l.admit('10.0.0.5')).toBeNull();
    l.done('10.0.0.5', true);
  });

  it('overall: GLOBAL_FAILURES from many addresses hold everyone; at most CONCURRENT_CHECKS at once', () => {
    clock.t = 0;
    const l = new LoginLimiter(clock);
    for (let i = 0; i < GLOBAL_FAILURES; i++) {
      expect(l.admit(`10.1.${i}.1`)).toBeNull();
      l.done(`10.1.${i}.1`, false);
    }
    expect(l.admit('192.168.1.9')).toBeGreaterThan(0);
    clock.t = WINDOW_MS;
    const held: string[] = [];
    for (let i = 0; i < CONCURRENT_CHECKS; i++) {
      expect(l.admit(`c${i}`)).toBeNull();
      held.push(`c${i}`);
    }
    expect(l.admit('one-more')).toBe(1000);
    l.done(held[0]!, true);
    expect(l.admit('one-more')).toBeNull();
  });
});

describe('the charts’ samples', () => {
  const report = (queries: number, hits: number): StatusReport =>
    ({
      gateways: [{ name: 'gw1', rttMs: 12.5, loss: 0.1, state: 'up' }],
      breakout: { rttMs: 3, state: 'up' },
      dns: { queries, hits },
    }) as unknown as StatusReport;

  it('RTT and loss per path; queries per second and the hit ratio between two reports', () => {
    expect(sampleOf(report(100, 50), null, 1000, null)).toEqual({ at: 1000, paths: { gw1: { rttMs: 12.5, loss: 0.1, state: 'up' }, breakout: { rttMs: 3, loss: 0, state: 'up' } }, qps: null, hitRatio: null });
    const s = sampleOf(report(300, 200), report(100, 50), 11_000, 1000);
    expect([s.qps, s.hitRatio]).toEqual([20, 0.75]);
    expect(sampleOf(report(100, 50), report(100, 50), 11_000, 1000)).toMatchObject({ qps: 0, hitRatio: null });
  });
});
