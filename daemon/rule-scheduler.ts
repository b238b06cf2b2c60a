// Rules' `when:` schedules. Pure functions say whether a schedule is on at a
// wall-clock time (in its time zone, DST included) and when that next
// changes; RuleScheduler keeps one timer to the next boundary of any rule
// and calls `onBoundary` there, which re-renders the ruleset (one nft
// transaction, no config reload). Timers run on the injected clock's
// monotonic line and re-check at least hourly, so a wall clock that steps
// (NTP at boot, a suspend) is caught up within the hour at worst.
import type { Clock } from '../lib/clock.js';
import type { RuleConfig, Schedule } from '../config/types.js';

const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { ...(tz === 'local' ? {} : { timeZone: tz }), weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(tz, f);
  }
  return f;
}

/** Weekday (0 = Sunday) and minute of the day at `wallMs` in `tz`. */
export function localTime(wallMs: number, tz: string): { day: number; minute: number } {
  let day = 0;
  let h = 0;
  let m = 0;
  for (const p of formatter(tz).formatToParts(wallMs)) {
    if (p.type === 'weekday') day = WEEKDAYS[p.value] ?? 0;
    else if (p.type === 'hour') h = Number(p.value);
    else if (p.type === 'minute') m = Number(p.value);
  }
  return { day, minute: h * 60 + m };
}

/** Whether the schedule is on at `wallMs`. A range past midnight belongs to the day it starts on. */
export function scheduleActive(s: Schedule, wallMs: number): boolean {
  const { day, minute } = localTime(wallMs, s.timeZone);
  const yesterday = (day + 6) % 7;
  for (const r of s.ranges) {
    if (r.from < r.to) {
      if (s.days.includes(day) && minute >= r.from && minute < r.to) return true;
    } else {
      if (s.days.includes(day) && minute >= r.from) return true;
      if (s.days.includes(yesterday) && minute < r.to) return true;
    }
  }
  return false;
}

const MINUTE = 60_000;

/**
 * The first minute boundary after `wallMs` at which the schedule's state
 * differs from now, or null when it never changes within 8 days (every day,
 * all day). Steps go from one range edge (or midnight) of local time to the
 * next, at most an hour at a time, so DST shifts and odd offsets need no
 * arithmetic; a change found is narrowed down to its minute by bisection.
 */
export function nextBoundary(s: Schedule, wallMs: number): number | null {
  const now = scheduleActive(s, wallMs);
  const edges = [0, ...s.ranges.flatMap((r) => [r.from, r.to % 1440])];
  let lo = Math.floor(wallMs / MINUTE) * MINUTE;
  let t = lo + MINUTE;
  for (let i = 0; i < 8 * 24 * 2; i++) {
    if (scheduleActive(s, t) !== now) {
      let hi = t;
      while (hi - lo > MINUTE) {
        const mid = lo + Math.floor((hi - lo) / MINUTE / 2) * MINUTE;
        if (scheduleActive(s, mid) !== now) hi = mid;
        else lo = mid;
      }
      return hi;
    }
    const { minute } = localTime(t, s.timeZone);
    const toEdge = Math.min(...edges.map((e) => (e - minute + 1440) % 1440 || 1440));
    lo = t;
    t += Math.min(toEdge, 60) * MINUTE;
  }
  return null;
}

/** The longest a timer waits before the state is checked again (the wall clock may have stepped). */
const MAX_WAIT_MS = 60 * MINUTE;

export class RuleScheduler {
  private rules: readonly RuleConfig[] = [];
  private timer: unknown = null;
  private state = new Map<number, boolean>();

  constructor(
    private readonly clock: Clock,
    /** Called when any rule's schedule state changed (re-render the ruleset). */
    private readonly onBoundary: (changed: { rule: number; active: boolean }[]) => void,
  ) {}

  /** Whether `rule` applies now (true without `when`). */
  active(rule: RuleConfig): boolean {
    if (!rule.when) return true;
    return this.state.get(rule.index) ?? scheduleActive(rule.when, this.clock.wall());
  }

  /** Takes a config's rules; the current state is computed at once (the caller plans with it). */
  configure(rules: readonly RuleConfig[]): void {
    this.rules = rules;
    this.state = new Map(rules.filter((r) => r.when).map((r) => [r.index, scheduleActive(r.when!, this.clock.wall())]));
    this.arm();
  }

  stop(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.rules = [];
  }

  private arm(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    const now = this.clock.wall();
    let next = Infinity;
    for (const r of this.rules) {
      if (!r.when) continue;
      const b = nextBoundary(r.when, now);
      if (b !== null) next = Math.min(next, b);
    }
    if (next === Infinity) return;
    // A little after the boundary, so the wall clock is past it when the timer fires.
    const wait = Math.min(MAX_WAIT_MS, Math.max(0, next - now) + 50);
    this.timer = this.clock.setTimeout(() => this.tick(), wait);
  }

  private tick(): void {
    this.timer = null;
    const now = this.clock.wall();
    const changed: { rule: number; active: boolean }[] = [];
    for (const r of this.rules) {
      if (!r.when) continue;
      const on = scheduleActive(r.when, now);
      if (this.state.get(r.index) !== on) changed.push({ rule: r.index, active: on });
      this.state.set(r.index, on);
    }
    this.arm();
    if (changed.length) this.onBoundary(changed);
  }
}
