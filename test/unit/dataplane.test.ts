import { describe, expect, it } from 'vitest';
import { silentLogger, type Clock } from '../../lib/logger.js';
import { Dataplane, WATCHED_BACKSTOP_MS } from '../../daemon/dataplane/dataplane.js';
import type { DataplanePlan } from '../../daemon/dataplane/plan.js';
import { FakeDamageWatch } from '../../daemon/dataplane/damage-watch.js';
import { FakeRouter } from '../../daemon/dataplane/router-fake.js';
import { samplePlan } from '../helpers/plans.js';

/** A clock whose timers run only when the test advances it. */
function fakeClock(): Clock & { advance(ms: number): Promise<void> } {
  let now = 0;
  let timers: { at: number; fn: () => void; id: number }[] = [];
  let nextId = 1;
  return {
    now: () => now,
    wall: () => now,
    boot: () => now,
    setTimeout: (fn, ms) => {
      const id = nextId++;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimeout: (h) => void (timers = timers.filter((t) => t.id !== h)),
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const t = timers[0];
        if (!t || t.at > end) break;
        timers.shift();
        now = t.at;
        t.fn();
        await new Promise((r) => setImmediate(r));
      }
      now = end;
    },
  };
}

const plan: DataplanePlan = samplePlan();

describe('Dataplane', () => {
  it('failover changes only the active path; the kill switch empties it', async () => {
    const router = new FakeRouter();
    const clock = fakeClock();
    const dp = new Dataplane({ router, clock, logger: silentLogger });
    await dp.apply(plan);
    const ruleset = router.state.ruleset;
    await dp.setActive('gw2');
    expect(router.state.active).toBe('0x1f00 : 0x1200');
    expect(router.state.ruleset).toBe(ruleset);
    await dp.setActive(null);
    expect(router.state.active).toBe('');
    expect(dp.current?.active).toBeNull();
  });

  it('repairs a deleted table on its schedule and says the tags are gone', async () => {
    const router = new FakeRouter();
    const clock = fakeClock();
    let lost = 0;
    const dp = new Dataplane({ router, clock, logger: silentLogger, reconcileEveryMs: 3000, onTagsLost: () => void lost++ });
    await dp.apply(plan);
    await dp.setActive('gw2');
    dp.start();
    router.deleteTable();
    await clock.advance(2999);
    expect(router.state.ruleset).toBeNull();
    await clock.advance(1);
    expect(router.state.ruleset).toContain('table inet splitwan');
    expect(router.state.active).toBe('0x1f00 : 0x1200'); // the flip survived the repair
    expect(lost).toBe(1);
    dp.stop();
  });

  it('changes never interleave: a flip waits for an apply in progress', async () => {
    const router = new FakeRouter();
    const order: string[] = [];
    const slow = {
      set: async (p: DataplanePlan) => {
        order.push('set:start');
        await new Promise((r) => setTimeout(r, 20));
        order.push('set:end');
        return router.set(p);
      },
      setActive: async (a: string | null) => {
        order.push(`active:${a}`);
        return router.setActive(a);
      },
      reconcile: () => router.reconcile(),
      cleanup: () => router.cleanup(),
    };
    const dp = new Dataplane({ router: slow, clock: fakeClock(), logger: silentLogger });
    await Promise.all([dp.apply(plan), dp.setActive('gw2')]);
    expect(order).toEqual(['set:start', 'set:end', 'active:gw2']);
    // An apply already running: the flip waits for it, even though flips go first.
    order.length = 0;
    const running = dp.apply({ ...plan, active: 'gw2' });
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all([running, dp.setActive('gw1')]);
    expect(order).toEqual(['set:start', 'set:end', 'active:gw1']);
    expect(router.state.active).toBe('0x1f00 : 0x1100');
  });

  it('a flip goes before waiting re-plans and repairs, and an older plan applied after it keeps its gateway', async () => {
    const router = new FakeRouter();
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gated = {
      set: async (p: DataplanePlan) => {
        order.push(`set:${p.active}`);
        if (order.length === 2) await gate; // the second apply holds the queue
        return router.set(p);
      },
      setActive: async (a: string | null) => {
        order.push(`active:${a}`);
        return router.setActive(a);
      },
      reconcile: async () => {
        order.push('reconcile');
        return router.reconcile();
      },
      cleanup: () => router.cleanup(),
    };
    const dp = new Dataplane({ router: gated, clock: fakeClock(), logger: silentLogger });
    await dp.apply(plan); // gw1 active
    const held = dp.apply(plan); // running, held at the gate
    await new Promise((r) => setTimeout(r, 5));
    // While it runs: a reload's plan made when gw1 was active, a repair, then gw1 dies.
    const stale = dp.apply(plan);
    const repair = dp.reconcile();
    const kill = dp.setActive(null);
    release();
    await Promise.all([held, stale, repair, kill]);
    expect(order).toEqual(['set:gw1', 'set:gw1', 'active:null', 'set:null', 'reconcile']);
    expect(router.state.active).toBe(''); // still the kill switch: the stale plan did not bring gw1 back
    expect(dp.current?.active).toBeNull();

    // Asked in the same turn (a health change re-plans and switches at once): the switch still goes first.
    order.length = 0;
    await Promise.all([dp.apply(plan), dp.setActive('gw2')]);
    expect(order).toEqual(['active:gw2', 'set:gw2']);
    expect(router.state.active).toBe('0x1f00 : 0x1200');
  });

  it('repairs on a damage event at once, not on the timer; stop() stops watching', async () => {
    const router = new FakeRouter();
    const clock = fakeClock();
    const watch = new FakeDamageWatch();
    let lost = 0;
    const dp = new Dataplane({ router, clock, logger: silentLogger, watch, onTagsLost: () => void lost++ });
    await dp.apply(plan);
    await dp.setActive('gw2');
    dp.start();
    expect(watch.watching).toBe(true);
    router.deleteTable(); // another program: `nft flush ruleset`
    watch.emit();
    await until(() => router.state.ruleset !== null);
    expect(router.state.active).toBe('0x1f00 : 0x1200');
    expect(lost).toBe(1);
    // The backstop timer is slow with a watch (2 minutes), and still there.
    router.deleteTable();
    await clock.advance(WATCHED_BACKSTOP_MS - 1);
    expect(router.state.ruleset).toBeNull();
    await clock.advance(1);
    await until(() => router.state.ruleset !== null);
    dp.stop();
    expect(watch.watching).toBe(false);
    expect(watch.stopped).toBe(1);
  });

  it('events during a repair make exactly one more pass after it; a repair that keeps finding damage is spaced out', async () => {
    const router = new FakeRouter();
    const clock = fakeClock();
    const watch = new FakeDamageWatch();
    let passes = 0;
    let release: (() => void) | null = null;
    const counted = {
      set: (p: DataplanePlan) => router.set(p),
      setActive: (a: string | null) => router.setActive(a),
      reconcile: async () => {
        passes++;
        if (release === null) await new Promise<void>((r) => (release = r));
        return router.reconcile();
      },
      cleanup: () => router.cleanup(),
    };
    const dp = new Dataplane({ router: counted, clock, logger: silentLogger, watch });
    await dp.apply(plan);
    dp.start();
    watch.emit();
    await until(() => passes === 1);
    for (let i = 0; i < 5; i++) watch.emit(); // while the first pass waits
    release!();
    await until(() => passes === 2);
    await new Promise((r) => setTimeout(r, 20));
    expect(passes).toBe(2);

    // Another program undoes our state after every pass: the first passes run at once, later ones wait.
    const times: number[] = [];
    const fighting = {
      ...counted,
      reconcile: async () => {
        times.push(clock.now());
        router.deleteTable();
        return router.reconcile();
      },
    };
    const w2 = new FakeDamageWatch();
    const dp3 = new Dataplane({ router: fighting, clock, logger: silentLogger, watch: w2 });
    await dp3.apply(plan);
    dp3.start();
    for (let i = 0; i < 6; i++) {
      const n = times.length;
      w2.emit();
      await clock.advance(i < 4 ? 0 : 10_000);
      await until(() => times.length === n + 1);
    }
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps.slice(0, 3)).toEqual([0, 0, 0]);
    expect(gaps[3]).toBeGreaterThanOrEqual(250);
    expect(gaps[4]).toBeGreaterThan(gaps[3]!);
    dp.stop();
    dp3.stop();
  });

  it('damage that comes back now and then (seconds apart) is repaired at once every time', async () => {
    const router = new FakeRouter();
    const clock = fakeClock();
    const watch = new FakeDamageWatch();
    const errors: string[] = [];
    const logger = { ...silentLogger, error: (_o: object, msg: string) => void errors.push(msg), child: () => logger };
    const dp = new Dataplane({ router, clock, logger, watch });
    await dp.apply(plan);
    dp.start();
    for (let i = 0; i < 8; i++) {
      router.deleteTable();
      watch.emit();
      await until(() => router.state.ruleset !== null);
      await clock.advance(2000);
    }
    expect(errors).toEqual([]);
    dp.stop();
  });
});

/** Waits (real time, bounded) for a condition reached through promises and setImmediate. */
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 1));
  }
}
