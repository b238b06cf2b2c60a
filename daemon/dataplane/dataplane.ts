// The data plane as the daemon drives it: apply a plan (at start and on
// reload), flip the default path (failover, kill switch, recovery) as one
// small nft transaction, and repair what someone removed on a schedule.
// OS effects come in through the Router and NftExec interfaces, so this runs
// against fakes in unit tests.
import type { Clock, Logger } from '../../lib/logger.js';
import type { DataplanePlan } from './plan.js';
import type { Router } from './router-linux.js';

export interface DataplaneOptions {
  router: Router;
  clock: Clock;
  logger: Logger;
  /** How often the kernel state is checked against the plan. */
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
      await this.o.router.setActive(gateway);
      this.plan = { ...this.plan, active: gateway };
    }, true);
  }

  /** Starts the periodic repair. */
  start(): void {
    this.stopped = false;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
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
    }, this.o.reconcileEveryMs ?? 3000);
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
