// A clock whose time moves only when the test says so, with timers; for
// schedules (health probes) driven through async code. Its three clocks
// move together unless a test says otherwise: stepWall() moves the wall
// clock alone (an NTP step, a person setting the time), suspend() moves the
// boot clock alone (a laptop that slept).
import type { Clock } from '../../lib/clock.js';

export class ManualClock implements Clock {
  /** Monotonic ms. */
  t: number;
  /** wall() - now(). */
  private wallOffset: number;
  /** boot() - now(): grows by the time suspended. */
  private slept = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private seq = 0;

  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.wallOffset = 0;
  }

  now(): number {
    return this.t;
  }

  wall(): number {
    return this.t + this.wallOffset;
  }

  boot(): number {
    return this.t + this.slept;
  }

  /** The wall clock steps by `ms` (negative: back); monotonic time and timers do not move. */
  stepWall(ms: number): void {
    this.wallOffset += ms;
  }

  /**
   * The machine sleeps for `ms`: the boot and wall clocks move on, the
   * monotonic one (and its timers) does not, as CLOCK_MONOTONIC on Linux.
   */
  suspend(ms: number): void {
    this.slept += ms;
    this.wallOffset += ms;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.push({ at: this.t + Math.max(0, ms), fn, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }

  /**
   * Moves time forward by `ms`, firing each due timer at its own time, in
   * order, and letting the promises it starts settle before the next.
   */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const next = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
    await settle();
  }

  /**
   * Moves time forward by `ms` with every due timer firing only at the end,
   * late: what a blocked event loop or a stopped process does to timers.
   */
  async stall(ms: number): Promise<void> {
    this.t += ms;
    await this.advance(0);
  }
}

/** Lets pending promise callbacks (and the ones they chain) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}
