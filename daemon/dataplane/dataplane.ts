// The data plane as the daemon drives it: apply a plan (at start and on
// reload), flip the default path (failover, kill switch, recovery) as one
// small nft transaction, and repair what someone removed as soon as the
// kernel says so (a DamageWatch: `nft monitor`, `ip monitor`), with a slow
// timer as a backstop for what no event reports.
// OS effects come in through the Router and DamageWatch interfaces, so this
// runs against fakes in unit tests.
import type { Clock, Logger } from '../../lib/logger.js';
import type { DamageWatch } from './damage-watch.js';
import { renderRoutes, type DataplanePlan } from './plan.js';
import type { Router } from './router-linux.js';

/** Repairs in a row that each found something to put back before they are spaced out (a fight with another program). */
const REPAIR_STREAK_FREE = 3;
/** A repair counts toward that streak when it comes this soon after the previous one ended: a program fighting us undoes our state at once. */
const REPAIR_STREAK_WINDOW_MS = 500;
/** The backstop's period when a DamageWatch reports removals (see DataplaneOptions.reconcileEveryMs). */
export const WATCHED_BACKSTOP_MS = 120_000;

export interface DataplaneOptions {
  router: Router;
  clock: Clock;
  logger: Logger;
  /** Events that may mean our kernel state was changed; each starts a repair. */
  watch?: DamageWatch;
  /**
   * How often the kernel state is checked against the plan anyway (default
   * 2 minutes with a watch, 3 s without). With a watch every removal is an
   * event; the timer only covers events a monitor lost, and each pass is
   * six processes (issue 17: it was every 30 s, most of an idle router's
   * process spawns once our own changes stopped waking the repair).
   */
  reconcileEveryMs?: number;
  /** Called after a repair that re-created the table (its tag sets came back empty). */
  onTagsLost?: () => void;
}

export class Dataplane {
  private plan: DataplanePlan | null = null;
  private timer: unknown = null;
  private stopped = false;
  /**
   * Changes run one at a time (a flip never interleaves with an apply), and a
   * waiting flip goes before waiting applies and repairs: a failover must not
   * queue behind a re-plan or a repair pass (each several `nft`/`ip` runs,
   * seconds on a loaded router), or tunnel traffic keeps going into a dead
   * gateway after the daemon has said it moved.
   */
  private readonly flips: Array<() => Promise<void>> = [];
  private readonly others: Array<() => Promise<void>> = [];
  private busy = false;
  /** Event-driven repairs: one waits at most, one runs at most; `again`: an event came while it ran. */
  private repair: { queued: boolean; running: boolean; again: boolean; streak: number; lastAt: number; timer: unknown } = { queued: false, running: false, again: false, streak: 0, lastAt: -Infinity, timer: null };
  /** Requests are numbered as asked; activeAsked: the request whose choice of gateway holds now. */
  private asked = 0;
  private activeAsked = 0;

  constructor(private readonly o: DataplaneOptions) {}

  get current(): DataplanePlan | null {
    return this.plan;
  }

  /** Applies a whole plan (start, reload, a via list's pinned gateway changed health). */
  apply(plan: DataplanePlan): Promise<boolean> {
    const asked = ++this.asked;
    return this.serial(async () => {
      // A flip asked for after this plan was made went ahead of it: its
      // gateway is the newer choice, so the plan does not flip back.
      const p = this.plan && this.activeAsked > asked ? { ...plan, active: this.plan.active } : plan;
      this.o.watch?.expect?.(renderRoutes(p));
      const changed = await this.o.router.set(p);
      this.plan = p;
      this.activeAsked = Math.max(this.activeAsked, asked);
      return changed;
    });
  }

  /**
   * Points the `tunnel` path at `gateway` (null: none healthy, the kill switch
   * holds, or breakout when it is off). One nft line; nothing else is rebuilt.
   */
  setActive(gateway: string | null): Promise<void> {
    const asked = ++this.asked;
    return this.serial(async () => {
      if (!this.plan) throw new Error('setActive before apply');
      this.activeAsked = asked;
      if (this.plan.active === gateway) return;
      this.o.watch?.expect?.(renderRoutes({ ...this.plan, active: gateway }));
      await this.o.router.setActive(gateway);
      this.plan = { ...this.plan, active: gateway };
    }, true);
  }

  /**
   * Moves breakout to `plan`'s links at once (a link failover): one nft line
   * and table 1200's route, ahead of waiting re-plans; the re-plan that
   * follows applies the rest.
   */
  setLinks(plan: DataplanePlan): Promise<void> {
    return this.serial(async () => {
      if (!this.plan || !this.o.router.setLinks) return;
      this.o.watch?.expect?.(renderRoutes(plan));
      await this.o.router.setLinks(plan);
    }, true);
  }

  /** Starts repairing: on every event of the watch, and on the backstop timer. */
  start(): void {
    this.stopped = false;
    this.o.watch?.start(() => this.repairSoon());
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.o.watch?.stop();
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    if (this.repair.timer !== null) this.o.clock.clearTimeout(this.repair.timer);
    this.repair.timer = null;
  }

  /**
   * An event said our state may have changed: one repair pass, now. Events
   * during a pass make one more pass after it (the pass may have read the
   * state before the change). Our own changes are mostly not events (the
   * watch drops them: damage-watch.ts), and a pass for one that is finds
   * nothing to do; a program that keeps undoing our state would make
   * every pass repair something: after a few such passes in a row they are
   * spaced out (up to the backstop's period) and it is logged.
   */
  private repairSoon(): void {
    const r = this.repair;
    if (this.stopped) return;
    if (r.running) {
      r.again = true;
      return;
    }
    if (r.queued) return;
    r.queued = true;
    const go = (): void => {
      r.timer = null;
      r.queued = false;
      if (this.stopped) return;
      r.running = true;
      const startedAt = this.o.clock.now();
      this.reconcile()
        .then((repaired) => {
          const soon = startedAt - r.lastAt <= REPAIR_STREAK_WINDOW_MS + (r.streak > REPAIR_STREAK_FREE ? this.delayFor(r.streak) : 0);
          r.streak = repaired.length ? (soon ? r.streak + 1 : 1) : 0;
          r.lastAt = this.o.clock.now();
          if (r.streak === REPAIR_STREAK_FREE + 1) this.o.logger.error({ repaired }, 'our routing state keeps being removed (another program is fighting it?): repairs are spaced out');
        })
        .catch((e: unknown) => this.o.logger.error({ err: e }, 'repairing the data plane failed'))
        .finally(() => {
          r.running = false;
          if (r.again) {
            r.again = false;
            this.repairSoon();
          }
        });
    };
    const delay = r.streak > REPAIR_STREAK_FREE ? this.delayFor(r.streak) : 0;
    if (delay > 0) r.timer = this.o.clock.setTimeout(go, delay);
    else go();
  }

  private delayFor(streak: number): number {
    return Math.min(this.backstopMs(), 250 * 2 ** (streak - REPAIR_STREAK_FREE));
  }

  private backstopMs(): number {
    return this.o.reconcileEveryMs ?? (this.o.watch ? WATCHED_BACKSTOP_MS : 3000);
  }

  /** One repair pass now (also what the timer runs). */
  reconcile(): Promise<string[]> {
    return this.serial(async () => {
      const repaired = await this.o.router.reconcile();
      if (repaired.some((r) => r === 'nft table')) this.o.onTagsLost?.();
      return repaired;
    });
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.reconcile()
        .catch((e: unknown) => this.o.logger.error({ err: e }, 'reconciling the data plane failed'))
        .finally(() => this.arm());
    }, this.backstopMs());
  }

  private serial<T>(fn: () => Promise<T>, flip = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      (flip ? this.flips : this.others).push(() => Promise.resolve().then(fn).then(resolve, reject));
      // Started on the next turn of the loop, not now: a flip asked for in the
      // same turn as a re-plan (a health change does both) still goes first.
      if (!this.busy) {
        this.busy = true;
        setImmediate(() => void this.runNext());
      }
    });
  }

  private async runNext(): Promise<void> {
    // Before the first plan is in, there is nothing to flip: order as asked.
    const next = () => (this.plan ? (this.flips.shift() ?? this.others.shift()) : (this.others.shift() ?? this.flips.shift()));
    for (let task = next(); task; task = next()) await task(); // each settles its caller's promise, never rejects
    this.busy = false;
  }
}
