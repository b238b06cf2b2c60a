// The health state machine and gateway selection, driven by a fake time.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GatewayHealth, type GatewayState } from '../../daemon/health/gateway-health.js';
import { selectGateway, type Candidate } from '../../daemon/health/select.js';

const OPTS = { failAfter: 3, recoverAfter: 5, window: 10, degradeFactor: 3 };

describe('GatewayHealth', () => {
  it('unknown → up on the first good round; down only after failAfter bad rounds in a row', () => {
    const h = new GatewayHealth(OPTS, 0);
    expect(h.current).toBe('unknown');
    expect(h.usable).toBe(true);
    expect(h.record(1000, true, 20)).toBe('up');
    expect(h.figures().upSince).toBe(1000);
    expect(h.record(2000, false, null, 'timeout')).toBeNull();
    expect(h.record(3000, false, null, 'timeout')).toBeNull();
    expect(h.record(4000, true, 20)).toBeNull(); // the run is broken: still up
    for (const t of [5000, 6000]) expect(h.record(t, false)).toBeNull();
    expect(h.record(7000, false, null, 'no answer in 1000 ms')).toBe('down');
    expect(h.usable).toBe(false);
    expect(h.figures()).toMatchObject({ state: 'down', upSince: null, changedAt: 7000, consecutiveFailures: 3, lastError: 'no answer in 1000 ms' });
  });

  it('comes back only after recoverAfter good rounds in a row (a flapping link stays down)', () => {
    const h = new GatewayHealth(OPTS, 0);
    for (let i = 1; i <= 3; i++) h.record(i * 1000, false);
    expect(h.current).toBe('down');
    // good, good, bad, good...: never five in a row
    const pattern = [true, true, false, true, true, true, false, true, true, true, true, false];
    pattern.forEach((ok, i) => h.record(10_000 + i * 1000, ok, 20));
    expect(h.current).toBe('down');
    for (let i = 0; i < 4; i++) expect(h.record(30_000 + i * 1000, true, 20)).toBeNull();
    expect(h.record(34_000, true, 20)).toBe('up');
    expect(h.figures().upSince).toBe(34_000);
  });

  it('an unknown gateway that never answers goes down after failAfter rounds', () => {
    const h = new GatewayHealth(OPTS, 0);
    expect(h.record(1000, false)).toBeNull();
    expect(h.record(2000, false)).toBeNull();
    expect(h.record(3000, false)).toBe('down');
  });

  it('degraded when the smoothed RTT exceeds degradeFactor × the baseline; clears with hysteresis', () => {
    const h = new GatewayHealth({ ...OPTS, baselineSamples: 5 }, 0);
    for (let i = 0; i < 5; i++) h.record(i, true, 20);
    expect(h.figures().baselineMs).toBe(20);
    let t = 10;
    const states: GatewayState[] = [];
    for (let i = 0; i < 10; i++) states.push((h.record(t++, true, 200) ?? h.current) as GatewayState);
    expect(states).toContain('degraded');
    expect(h.current).toBe('degraded');
    expect(h.usable).toBe(true);
    // Back to 60 ms: above 0.8 × 70 = 56 (the threshold is max(3 × 20, 20 + 50)), so still degraded...
    for (let i = 0; i < 20; i++) h.record(t++, true, 60);
    expect(h.current).toBe('degraded');
    // ...and at 20 ms it clears.
    for (let i = 0; i < 20; i++) h.record(t++, true, 20);
    expect(h.current).toBe('up');
  });

  it('a small absolute rise on a fast link is not degradation', () => {
    const h = new GatewayHealth(OPTS, 0);
    for (let i = 0; i < 5; i++) h.record(i, true, 1);
    for (let i = 0; i < 20; i++) h.record(10 + i, true, 30); // 30× the baseline, but only 29 ms more
    expect(h.current).toBe('up');
    for (let i = 0; i < 20; i++) h.record(40 + i, true, 80);
    expect(h.current).toBe('degraded');
  });

  it('loss, jitter and RTT over the window', () => {
    const h = new GatewayHealth({ ...OPTS, window: 4 }, 0);
    h.record(1, true, 10);
    h.record(2, true, 30);
    h.record(3, false);
    h.record(4, true, 20);
    h.record(5, true, 20); // the window now holds the last 4 rounds: 30, fail, 20, 20
    const f = h.figures();
    expect(f.loss).toBe(0.25);
    expect(f.jitterMs).toBeCloseTo((20 + 10 + 0) / 3);
    expect(f.rttMs).toBeGreaterThan(10);
    expect(f.rounds).toBe(5);
  });

  it('property: never down without failAfter failures in a row, never back up without recoverAfter successes', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { maxLength: 200 }), (rounds) => {
        const h = new GatewayHealth(OPTS, 0);
        let fails = 0;
        let oks = 0;
        let prev: GatewayState = h.current;
        rounds.forEach((ok, i) => {
          fails = ok ? 0 : fails + 1;
          oks = ok ? oks + 1 : 0;
          h.record(i, ok, ok ? 10 : null);
          const s = h.current;
          if (s === 'down' && prev !== 'down') expect(fails).toBeGreaterThanOrEqual(OPTS.failAfter);
          if (prev === 'down' && s !== 'down') expect(oks).toBeGreaterThanOrEqual(OPTS.recoverAfter);
          prev = s;
        });
      }),
    );
  });
});

const c = (name: string, over: Partial<Candidate> = {}): Candidate => ({ name, priority: 100, order: 0, state: 'up', upSince: 0, rttMs: 20, ...over });

describe('selectGateway', () => {
  const HOLD = 30_000;
  it('picks by state, then priority, then RTT, then order', () => {
    expect(selectGateway({ candidates: [c('a', { priority: 2 }), c('b', { priority: 1 })], current: null, now: 0, failbackHoldMs: HOLD }).active).toBe('b');
    expect(selectGateway({ candidates: [c('a', { rttMs: 40 }), c('b', { rttMs: 10, order: 1 })], current: null, now: 0, failbackHoldMs: HOLD }).active).toBe('b');
    expect(selectGateway({ candidates: [c('a', { state: 'degraded', priority: 1 }), c('b', { priority: 2 })], current: null, now: 0, failbackHoldMs: HOLD }).active).toBe('b');
    expect(selectGateway({ candidates: [c('a', { rttMs: null }), c('b', { rttMs: null, order: 1 })], current: null, now: 0, failbackHoldMs: HOLD }).active).toBe('a');
  });

  it('leaves a down gateway at once; all down: null (kill switch); recovery picks again', () => {
    const both = (sa: GatewayState, sb: GatewayState): Candidate[] => [c('gw1', { priority: 1, state: sa, upSince: sa === 'down' ? null : 0 }), c('gw2', { priority: 2, state: sb, order: 1, upSince: sb === 'down' ? null : 0 })];
    const s1 = selectGateway({ candidates: both('down', 'up'), current: 'gw1', now: 5000, failbackHoldMs: HOLD });
    expect(s1).toEqual({ active: 'gw2', reason: 'gw1 is down' });
    const s2 = selectGateway({ candidates: both('down', 'down'), current: 'gw2', now: 6000, failbackHoldMs: HOLD });
    expect(s2.active).toBeNull();
    expect(s2.reason).toMatch(/kill switch/);
    expect(selectGateway({ candidates: both('down', 'up'), current: null, now: 9000, failbackHoldMs: HOLD }).active).toBe('gw2');
  });

  it('fails back to the preferred gateway only after it has been up for failbackHold', () => {
    const cands = (upSince: number): Candidate[] => [c('gw1', { priority: 1, upSince }), c('gw2', { priority: 2, order: 1 })];
    expect(selectGateway({ candidates: cands(100_000), current: 'gw2', now: 100_000 + HOLD - 1, failbackHoldMs: HOLD }).active).toBe('gw2');
    const back = selectGateway({ candidates: cands(100_000), current: 'gw2', now: 100_000 + HOLD, failbackHoldMs: HOLD });
    expect(back.active).toBe('gw1');
    expect(back.reason).toMatch(/gw1 \(priority 1\) is preferred and has been up 30 s/);
  });

  it('equal priorities: RTT alone never moves traffic off a working gateway', () => {
    const cands = [c('gw1', { rttMs: 80 }), c('gw2', { rttMs: 10, order: 1 })];
    expect(selectGateway({ candidates: cands, current: 'gw1', now: 1e9, failbackHoldMs: HOLD }).active).toBe('gw1');
  });

  it('leaves a degraded gateway for an up one once that has held, when that one is really faster', () => {
    const cands = [c('gw1', { priority: 1, state: 'degraded', rttMs: 180 }), c('gw2', { priority: 2, order: 1, upSince: 0, rttMs: 25 })];
    expect(selectGateway({ candidates: cands, current: 'gw1', now: HOLD - 1, failbackHoldMs: HOLD }).active).toBe('gw1');
    const s = selectGateway({ candidates: cands, current: 'gw1', now: HOLD, failbackHoldMs: HOLD });
    expect(s).toEqual({ active: 'gw2', reason: 'gw1 is degraded, gw2 is up' });
  });

  it('stays on a degraded gateway when the up one is about as slow (one cause slows both: a busy machine, a full uplink)', () => {
    // Seen in the lab at a load of 15 on two cores: gw1 (baseline 2 ms) degraded at ~70 ms, gw2 not yet at ~45 ms.
    const cands = (rtt2: number): Candidate[] => [c('gw1', { priority: 1, state: 'degraded', rttMs: 70 }), c('gw2', { priority: 2, order: 1, upSince: 0, rttMs: rtt2 })];
    expect(selectGateway({ candidates: cands(45), current: 'gw1', now: 1e9, failbackHoldMs: HOLD }).active).toBe('gw1');
    expect(selectGateway({ candidates: cands(20), current: 'gw1', now: 1e9, failbackHoldMs: HOLD }).active).toBe('gw2');
    // Without RTTs (handshake-only probes) the states decide.
    const bare = [c('gw1', { priority: 1, state: 'degraded', rttMs: null }), c('gw2', { priority: 2, order: 1, upSince: 0, rttMs: null })];
    expect(selectGateway({ candidates: bare, current: 'gw1', now: 1e9, failbackHoldMs: HOLD }).active).toBe('gw2');
    // Failback to a preferred gateway is by priority, whatever the RTTs.
    const back = [c('gw1', { priority: 1, rttMs: 60 }), c('gw2', { priority: 2, order: 1, state: 'degraded', rttMs: 60 })];
    expect(selectGateway({ candidates: back, current: 'gw2', now: 1e9, failbackHoldMs: HOLD }).active).toBe('gw1');
  });

  it('a pin wins while the pinned gateway is usable, not when it is down', () => {
    const cands = [c('gw1', { priority: 1 }), c('gw2', { priority: 2, order: 1 })];
    expect(selectGateway({ candidates: cands, current: 'gw1', now: 0, failbackHoldMs: HOLD, pinned: 'gw2' })).toEqual({ active: 'gw2', reason: 'pinned to gw2' });
    cands[1] = c('gw2', { priority: 2, order: 1, state: 'down', upSince: null });
    expect(selectGateway({ candidates: cands, current: 'gw2', now: 0, failbackHoldMs: HOLD, pinned: 'gw2' }).active).toBe('gw1');
  });

  it('flapping: driven round by round, a preferred gateway that fails every few rounds never takes traffic', () => {
    const now = { t: 0 };
    const h1 = new GatewayHealth(OPTS, 0);
    const h2 = new GatewayHealth(OPTS, 0);
    let active: string | null = null;
    const switches: string[] = [];
    for (let round = 0; round < 300; round++) {
      now.t = round * 1000;
      // gw1 (preferred) is dead for 3 rounds out of every 8; gw2 is fine.
      h1.record(now.t, round % 8 >= 3, 20);
      h2.record(now.t, true, 30);
      const cands: Candidate[] = [
        { name: 'gw1', priority: 1, order: 0, state: h1.current, upSince: h1.figures().upSince, rttMs: h1.figures().rttMs },
        { name: 'gw2', priority: 2, order: 1, state: h2.current, upSince: h2.figures().upSince, rttMs: h2.figures().rttMs },
      ];
      const s = selectGateway({ candidates: cands, current: active, now: now.t, failbackHoldMs: HOLD });
      if (s.active !== active) switches.push(`${round}:${s.active}`);
      active = s.active;
    }
    // gw2 from the first round (gw1 had not answered yet), and for good: gw1 comes
    // up for a few rounds at a time (after 5 good ones) but never holds 30 s.
    expect(switches).toEqual(['0:gw2']);
    expect(h1.figures().rounds).toBe(300);
  });

  it('an outage of the preferred gateway: over to gw2 after failAfter rounds, back after recoverAfter + failbackHold', () => {
    const h1 = new GatewayHealth(OPTS, 0);
    const h2 = new GatewayHealth(OPTS, 0);
    let active: string | null = null;
    const switches: string[] = [];
    for (let round = 0; round < 120; round++) {
      const t = round * 1000;
      h1.record(t, round < 10 || round >= 20, 20); // dead from round 10 to 19
      h2.record(t, true, 30);
      const fig = (h: GatewayHealth) => h.figures();
      const s = selectGateway({
        candidates: [
          { name: 'gw1', priority: 1, order: 0, state: h1.current, upSince: fig(h1).upSince, rttMs: fig(h1).rttMs },
          { name: 'gw2', priority: 2, order: 1, state: h2.current, upSince: fig(h2).upSince, rttMs: fig(h2).rttMs },
        ],
        current: active,
        now: t,
        failbackHoldMs: 30_000,
      });
      if (s.active !== active) switches.push(`${round}:${s.active}`);
      active = s.active;
    }
    // Down at the 3rd failed round (12), up again after 5 good ones (24), back 30 s later (54).
    expect(switches).toEqual(['0:gw1', '12:gw2', '54:gw1']);
  });
});
