// The clocks: durations on the monotonic one, wall time only for people, the
// boot clock telling a suspend apart.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { mark, sleptBetween, systemClock, wallOf, SUSPEND_NOISE_MS } from '../../lib/clock.js';
import { ManualClock } from '../helpers/clock.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('systemClock', () => {
  it('now() does not follow the wall clock: a step back of an hour leaves durations alone', () => {
    const before = systemClock.now();
    // Only Date is faked: as if NTP (or a person) set the wall clock back an hour.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 });
    expect(systemClock.wall()).toBeLessThan(Date.now() + 1); // wall() is Date's
    const after = systemClock.now();
    expect(after).toBeGreaterThanOrEqual(before);
    expect(after - before).toBeLessThan(1000);
  });

  it('boot() runs with now() while nothing sleeps (to /proc/uptime\'s 10 ms), read after read', () => {
    const a = mark(systemClock);
    const t = performance.now();
    // Longer than the noise: a boot clock read that came back stale (the same text again) fails here.
    while (performance.now() - t < 150) {
      // busy: a process that is running, not sleeping
    }
    const b = mark(systemClock);
    expect(b.mono - a.mono).toBeGreaterThanOrEqual(150);
    expect(b.boot - a.boot).toBeGreaterThan(100);
    expect(Math.abs(b.boot - a.boot - (b.mono - a.mono))).toBeLessThan(SUSPEND_NOISE_MS);
    expect(sleptBetween(a, b)).toBe(0);
  });
});

describe('marks', () => {
  it('a suspend shows as the boot clock running ahead of the monotonic one', () => {
    const c = new ManualClock();
    const a = mark(c);
    c.t += 1000;
    c.suspend(60_000);
    c.t += 500;
    expect(sleptBetween(a, mark(c))).toBe(60_000);
  });

  it('a stopped process (SIGSTOP) or a busy loop is not a suspend: both clocks ran', () => {
    const c = new ManualClock();
    const a = mark(c);
    c.t += 30_000;
    expect(sleptBetween(a, mark(c))).toBe(0);
  });

  it('wallOf: the wall time of a monotonic instant, for status lines', () => {
    const c = new ManualClock(5_000);
    c.stepWall(1_700_000_000_000);
    const changed = c.now();
    c.t += 2_000;
    expect(wallOf(c, changed)).toBe(1_700_000_000_000 + 5_000);
  });
});
