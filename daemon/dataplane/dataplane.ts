// The data plane as the daemon drives it: apply a plan (at start and on
// reload), flip the default path (failover, kill switch, recovery) as one
// small nft transaction, and repair what someone removed on a schedule.
// OS effects come in through the Router and NftExec interfaces, so this runs
// against fakes in unit tests.
import type { Clock, Logger } from '../../config/logger.js';
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
  /** Serialises changes: a flip never interleaves with an apply. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: DataplaneOptions) {}

  get current(): DataplanePlan | null {
    return this.plan;
  }

  /** Applies a whole plan (start, reload, a via list's pinned gateway changed health). */
  apply(plan: DataplanePlan): Promise<boolean> {
    return this.serial(async () => {
      const changed = await this.o.router.set(plan);
      this.plan = plan;
      return changed;
    });
  }

  /**
   * Points the `tunnel` path at `gateway` (null: none healthy, the kill switch
   * holds, or breakout when it is off). One nft line; nothing else is rebuilt.
   */
  setActive(gateway: string | null): Promise<void> {
    return this.serial(async () => {
      if (!this.plan) throw new Error('setActive before apply');
      if (this.plan.active === gateway) return;
      await this.o.router.setActive(gateway);
      this.plan = { ...this.plan, active: gateway };
    });
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

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }
}
