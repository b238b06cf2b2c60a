// The health monitor under fake time, with a fake prober whose answers the
// test controls per gateway: schedules, hysteresis, switches handed to the
// daemon in order, kill switch and recovery.
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { HealthMonitor, type MonitorOptions, type MonitoredGateway, type Switch } from '../../daemon/health/monitor.js';
import type { ProbeResult, ProbeTarget } from '../../daemon/health/probes.js';
import { ManualClock } from '../helpers/clock.js';

const gw = (name: string, priority: number): MonitoredGateway => ({ name, priority, path: `gw:${name}`, ifname: `swg-${name}`, dns: [], mark: 0, probes: [{ kind: 'dns' }] });

/** A monitor under `clock` with the usual settings here (1 s interval, 800 ms timeout, no jitter), `o` over them. */
function monitorOf(clock: ManualClock, o: Partial<MonitorOptions> & Pick<MonitorOptions, 'prober' | 'failAfter' | 'recoverAfter' | 'failbackHoldMs'>): HealthMonitor {
  return new HealthMonitor({ window: 10, degradeFactor: 3, intervalMs: 1000, timeoutMs: 800, clock, logger: silentLogger, onSwitch: () => undefined, random: () => 0.5, ...o });
}

function setup(o: { failbackHoldMs?: number } = {}) {
  const clock = new ManualClock();
  const alive = new Map<string, boolean>([['gw1', true], ['gw2', true]]);
  const rounds: string[] = [];
  const switches: Switch[] = [];
  const prober = {
    round: async (t: ProbeTarget): Promise<ProbeResult> => {
      rounds.push(t.name);
      if (alive.get(t.name)) return { ok: true, rttMs: 20, error: null };
      // A dead gateway answers nothing: its round ends at the timeout.
      await new Promise<void>((r) => clock.setTimeout(r, 800));
      return { ok: false, rttMs: null, error: 'no answer in 800 ms' };
    },
  };
  const m = monitorOf(clock, {
    failAfter: 3,
    recoverAfter: 5,
    failbackHoldMs: o.failbackHoldMs ?? 30_000,
    prober,
    onSwitch: (s) => void switches.push(s),
    random: () => 0.5, // no jitter: rounds every 1000 ms
  });
  return { clock, alive, rounds, switches, m };
}

describe('HealthMonitor', () => {
  it('a gateway going down: the switch is handed over before the health change, so the flip is asked for first', async () => {
    const clock = new ManualClock();
    let alive = true;
    const events: string[] = [];
    const m: HealthMonitor = new HealthMonitor({
      failAfter: 3,
      recoverAfter: 5,
      window: 10,
      degradeFactor: 3,
      intervalMs: 1000,
      failbackHoldMs: 30_000,
      prober: { round: async (t: ProbeTarget): Promise<ProbeResult> => (t.name === 'gw1' && !alive ? { ok: false, rttMs: null, error: 'no answer' } : { ok: true, rttMs: 20, error: null }) },
      clock,
      logger: silentLogger,
      onSwitch: (s) => void events.push(`switch ${s.from} -> ${s.to}`),
      // The daemon re-plans here, from m.active: by now it must be the new choice.
      onHealthChange: (g, state) => void events.push(`${g} ${state}, active ${m.active}`),
      random: () => 0.5,
    });
    m.setGateways([gw('gw1', 1), gw('gw2', 2)]);
    m.start();
    await clock.advance(2000);
    events.length = 0;
    alive = false;
    // Fails at once at 3 s, confirmed a timeout apart (800 ms: 3.8 s, 4.6 s).
    await clock.advance(2600);
    expect(events).toEqual(['gw1 down, active gw2', 'switch gw1 -> gw2']);
    m.stop();
  });

  it('starts on the preferred gateway, probes each once per interval, one round at a time', async () => {
    const { clock, rounds, m } = setup();
    expect(m.setGateways([gw('gw1', 1), gw('gw2', 2)])).toBe('gw1');
    m.start();
    await clock.advance(10_000);
    // At 0 and every second after: 11 rounds each.
    expect(rounds.filter((r) => r === 'gw1')).toHaveLength(11);
    expect(rounds.filter((r) => r === 'gw2')).toHaveLength(11);
    expect(m.status().map((s) => [s.name, s.state, s.active])).toEqual([['gw1', 'up', true], ['gw2', 'up', false]]);
    m.stop();
  });

  it('fails over after failAfter bad rounds, marks the old one down, kill switch when both fail, recovers', async () => {
    const { clock, alive, switches, m } = setup();
    m.setGateways([gw('gw1', 1), gw('gw2', 2)]);
    m.start();
    await clock.advance(5000);
    alive.set('gw1', false);
    // The next round (at 6 s) goes unanswered: half a timeout on, the next starts beside it
    // (6.4 s, 6.8 s); each fails at its own timeout (6.8 s, 7.2 s), down at the third: 7.6 s.
    await clock.advance(2599);
    expect(m.active).toBe('gw1');
    await clock.advance(1);
    expect(m.active).toBe('gw2');
    expect(switches.at(-1)).toMatchObject({ from: 'gw1', to: 'gw2', fromDown: true, reason: 'gw1 is down' });
    expect(m.healthy('gw1')).toBe(false);

    alive.set('gw2', false);
    await clock.advance(4000);
    expect(m.active).toBeNull();
    expect(switches.at(-1)).toMatchObject({ from: 'gw2', to: null, fromDown: true });

    // gw2 comes back first: after 5 good rounds it carries traffic (nothing to fail back from).
    alive.set('gw2', true);
    await clock.advance(5000);
    expect(m.active).toBe('gw2');
    // gw1 comes back: up after 5 rounds, preferred, but only after 30 s up.
    alive.set('gw1', true);
    await clock.advance(5000 + 29_000);
    expect(m.active).toBe('gw2');
    await clock.advance(2000);
    expect(m.active).toBe('gw1');
    expect(switches.at(-1)).toMatchObject({ from: 'gw2', to: 'gw1', fromDown: false });
    await m.settled();
    expect(switches.map((s) => `${s.from}→${s.to}`)).toEqual(['gw1→gw2', 'gw2→null', 'null→gw2', 'gw2→gw1']);
    m.stop();
  });

  it('a round unanswered for half a timeout gets the next beside it: down after (failAfter + 1) / 2 timeouts, each round waited a whole one', async () => {
    const { clock, alive, rounds, m } = setup();
    m.setGateways([gw('gw1', 1), gw('gw2', 2)]);
    m.start();
    await clock.advance(5000);
    alive.set('gw1', false);
    rounds.length = 0;
    await clock.advance(1000); // the round at 6 s starts
    await clock.advance(1599);
    expect(m.healthy('gw1')).toBe(true);
    // Started at 6.0, 6.4, 6.8 and 7.2 s: never more than two unanswered at once (rounds end at their 800 ms timeout).
    expect(rounds.filter((r) => r === 'gw1')).toHaveLength(4);
    await clock.advance(1);
    expect(m.healthy('gw1')).toBe(false);
    // Down: back to one round a second (its last hedge ends at 8.0 s; the next at 9.0 s).
    const at = rounds.filter((r) => r === 'gw1').length;
    await clock.advance(3000);
    expect(rounds.filter((r) => r === 'gw1').length - at).toBeLessThanOrEqual(3);
    m.stop();
  });

  it('a lost round whose hedge answered before its timeout is stale: not counted (failAfter 1: one counted loss would take it down)', async () => {
    const clock = new ManualClock();
    let inFlight = 0;
    let most = 0;
    let n = 0;
    const m = monitorOf(clock, {
      failAfter: 1,
      recoverAfter: 3,
      degradeFactor: 100,
      failbackHoldMs: 0,
      prober: {
        round: async (): Promise<ProbeResult> => {
          const k = n++;
          inFlight++;
          most = Math.max(most, inFlight);
          // Every third round is lost (it times out at 800 ms); the others answer in 300 ms,
          // so a lost one's hedge (400 ms on) has answered by 700 ms.
          const lost = k % 3 === 1;
          await new Promise<void>((r) => clock.setTimeout(r, lost ? 800 : 300));
          inFlight--;
          return lost ? { ok: false, rttMs: null, error: 'no answer in 800 ms' } : { ok: true, rttMs: 300, error: null };
        },
      },
    });
    m.setGateways([gw('gw1', 1)]);
    m.start();
    await clock.advance(20_000);
    expect(n).toBeGreaterThan(20);
    expect(m.healthy('gw1')).toBe(true);
    expect(m.status()[0]!.consecutiveFailures).toBe(0);
    expect(most).toBe(2);
    m.stop();
  });

  it('recheckGateways (the WAN link changed): a round at once; one in flight, sent by the old link, failing after it is stale and does not cancel the one-round recovery', async () => {
    const clock = new ManualClock();
    let alive = false;
    let deadInFlightSince: number | null = null;
    const m = monitorOf(clock, {
      failAfter: 3,
      recoverAfter: 5,
      failbackHoldMs: 0,
      prober: {
        round: async (): Promise<ProbeResult> => {
          const ok = alive;
          if (!ok) deadInFlightSince = clock.now();
          // A live answer takes 300 ms; a lost round times out at 800 ms.
          await new Promise<void>((r) => clock.setTimeout(r, ok ? 300 : 800));
          if (!ok) deadInFlightSince = null;
          return ok ? { ok: true, rttMs: 300, error: null } : { ok: false, rttMs: null, error: 'no answer in 800 ms' };
        },
      },
    });
    m.setGateways([gw('gw1', 1)]);
    m.start();
    await clock.advance(5000);
    expect(m.healthy('gw1')).toBe(false);
    // Just after a round of the dead path started: the new link comes, and the recheck with it.
    while (deadInFlightSince === null || clock.now() - deadInFlightSince < 600) await clock.advance(10);
    alive = true;
    m.recheckGateways();
    // The old round fails at 800 ms (200 ms on), the new one answers at 300 ms: up after one round, not five.
    await clock.advance(310);
    expect(m.healthy('gw1')).toBe(true);
    m.stop();
  });

  it('recheckGateways: rounds of a gateway still up that wait for an answer (sent by the old link) are stale too: it is not taken down by them', async () => {
    const clock = new ManualClock();
    let alive = true;
    let deadRounds = 0;
    const states: string[] = [];
    const m = monitorOf(clock, {
      failAfter: 1, // one counted failure would take it down
      recoverAfter: 3,
      failbackHoldMs: 0,
      prober: {
        round: async (): Promise<ProbeResult> => {
          const ok = alive;
          if (!ok) deadRounds++;
          await new Promise<void>((r) => clock.setTimeout(r, ok ? 20 : 800));
          return ok ? { ok: true, rttMs: 20, error: null } : { ok: false, rttMs: null, error: 'no answer in 800 ms' };
        },
      },
      onHealthChange: (_g, st) => void states.push(st),
    });
    m.setGateways([gw('gw1', 1)]);
    m.start();
    await clock.advance(3000);
    // The link dies: a round and its hedge go unanswered, no failure recorded yet.
    alive = false;
    while (deadRounds < 2) await clock.advance(10);
    expect(m.status()[0]!.consecutiveFailures).toBe(0);
    // The other link takes over before they time out.
    alive = true;
    m.recheckGateways();
    await clock.advance(3000);
    expect(states).toEqual(['up']);
    expect(m.healthy('gw1')).toBe(true);
    m.stop();
  });

  it('a pin holds while the pinned gateway is usable; a reload keeps health by name', async () => {
    const { clock, alive, m } = setup();
    m.setGateways([gw('gw1', 1), gw('gw2', 2)]);
    m.start();
    await clock.advance(3000);
    m.pin('gw2');
    expect(m.active).toBe('gw2');
    expect(() => m.pin('nope')).toThrow(/no gateway named nope/);
    alive.set('gw2', false);
    await clock.advance(3500);
    expect(m.active).toBe('gw1');
    // Reload: gw2 removed, gw3 added; gw1 keeps its rounds.
    const before = m.status().find((s) => s.name === 'gw1')!.rounds;
    alive.set('gw3', true);
    m.setGateways([gw('gw1', 1), gw('gw3', 3)]);
    expect(m.status().map((s) => s.name)).toEqual(['gw1', 'gw3']);
    expect(m.status().find((s) => s.name === 'gw1')!.rounds).toBe(before);
    await clock.advance(2000);
    expect(m.status().find((s) => s.name === 'gw3')!.state).toBe('up');
    m.stop();
  });

  it('the breakout is watched for status and logs, never chosen for the tunnel path', async () => {
    const { clock, alive, m, switches } = setup();
    m.setGateways([gw('gw1', 1)]);
    m.setBreakout({ ...gw('wan', 0), path: 'breakout' });
    alive.set('breakout', true);
    m.start();
    await clock.advance(2000);
    expect(m.status().map((s) => [s.name, s.state, s.active])).toEqual([['gw1', 'up', true], ['breakout', 'up', false]]);
    alive.set('gw1', false);
    await clock.advance(3500);
    expect(m.active).toBeNull(); // the breakout is not a gateway: the kill switch holds
    alive.set('breakout', false);
    await clock.advance(3500);
    expect(m.status().find((s) => s.name === 'breakout')!.state).toBe('down');
    expect(switches.map((s) => s.to)).toEqual([null]);
    m.setBreakout(null);
    expect(m.status().map((s) => s.name)).toEqual(['gw1']);
    m.stop();
  });

  it('a reload\'s settings apply from the next round, states kept', async () => {
    const { clock, alive, m } = setup();
    m.setGateways([gw('gw1', 1), gw('gw2', 2)]);
    m.start();
    await clock.advance(3000);
    m.configure({ failAfter: 1, recoverAfter: 5, window: 10, degradeFactor: 3, intervalMs: 500, failbackHoldMs: 30_000 });
    expect(m.active).toBe('gw1');
    alive.set('gw1', false);
    await clock.advance(2000); // the round due at 4 s fails at its timeout (4.8 s): one is enough now
    expect(m.active).toBe('gw2');
    m.stop();
  });

  it('a prober that throws counts as a failed round, and probing goes on', async () => {
    const { clock, m } = setup();
    const mm = new HealthMonitor({
      failAfter: 2, recoverAfter: 1, window: 5, degradeFactor: 3, intervalMs: 1000, failbackHoldMs: 0,
      prober: { round: async () => { throw new Error('boom'); } },
      clock, logger: silentLogger, onSwitch: () => {}, random: () => 0.5,
    });
    mm.setGateways([gw('gw1', 1)]);
    mm.start();
    await clock.advance(3000);
    // 0 ms and its confirmation a timeout later (800 ms: a failure at once is confirmed no sooner
    // than a timeout would have been; down), then one a second: 1800, 2800
    expect(mm.status()[0]).toMatchObject({ state: 'down', lastError: 'boom', rounds: 4 });
    mm.stop();
    m.stop();
  });
});
