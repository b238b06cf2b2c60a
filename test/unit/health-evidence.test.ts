// Health judges the gateway, not the scheduler: a failed round this process
// or machine could not watch (a probe timer that fired late, a suspend just
// before) is no evidence; a real fault is still found within failAfter
// rounds; and no more than a bounded number of rounds in a row are set aside.
import { describe, expect, it } from 'vitest';
import { silentLogger, type Logger } from '../../lib/logger.js';
import { evidenceOptions, MAX_NO_EVIDENCE_IN_ROW, noEvidence, RESUME_GRACE_MS } from '../../daemon/health/evidence.js';
import { GatewayHealth } from '../../daemon/health/gateway-health.js';
import { HealthMonitor, type MonitorOptions, type MonitoredGateway } from '../../daemon/health/monitor.js';
import type { ProbeResult } from '../../daemon/health/probes.js';
import { ManualClock } from '../helpers/clock.js';

const gw = (name: string, priority: number): MonitoredGateway => ({ name, priority, path: `gw:${name}`, ifname: `swg-${name}`, dns: [], mark: 0, probes: [{ kind: 'dns' }] });

/** A monitor under `clock` with the usual settings here (1 s interval, 800 ms timeout, no jitter), `o` over them. */
function monitorOf(clock: ManualClock, o: Partial<MonitorOptions> & Pick<MonitorOptions, 'prober' | 'failAfter' | 'recoverAfter' | 'failbackHoldMs'>): HealthMonitor {
  return new HealthMonitor({ window: 10, degradeFactor: 3, intervalMs: 1000, timeoutMs: 800, clock, logger: silentLogger, onSwitch: () => undefined, random: () => 0.5, ...o });
}

describe('noEvidence', () => {
  const o = evidenceOptions(800);

  it('a timer late by more than a quarter of the timeout (200 ms of 800) sets a failure aside; less does not', () => {
    expect(o.lateLimitMs).toBe(200);
    expect(noEvidence({ lateMs: 950, sinceResumeMs: null, sleptMs: 0, inRow: 0 }, o)).toMatch(/timer fired 950 ms late/);
    expect(noEvidence({ lateMs: 150, sinceResumeMs: null, sleptMs: 0, inRow: 0 }, o)).toBeNull();
    expect(evidenceOptions(100).lateLimitMs).toBe(100); // a floor for short timeouts
  });

  it('a failure within the grace after a suspend is set aside; after it, it counts', () => {
    expect(noEvidence({ lateMs: 0, sinceResumeMs: 3000, sleptMs: 3_600_000, inRow: 0 }, o)).toMatch(/slept 3600 s/);
    expect(noEvidence({ lateMs: 0, sinceResumeMs: RESUME_GRACE_MS + 1, sleptMs: 3_600_000, inRow: 0 }, o)).toBeNull();
  });

  it('a failure while the WAN link the gateway rides is failing is the link\'s; past the cap it counts', () => {
    expect(noEvidence({ lateMs: 0, sinceResumeMs: null, sleptMs: 0, inRow: 0, underlay: 'the WAN link fiber it is reached by is failing' }, o)).toMatch(/fiber/);
    expect(noEvidence({ lateMs: 0, sinceResumeMs: null, sleptMs: 0, inRow: 0, underlay: null }, o)).toBeNull();
    expect(noEvidence({ lateMs: 0, sinceResumeMs: null, sleptMs: 0, inRow: MAX_NO_EVIDENCE_IN_ROW, underlay: 'the WAN link fiber it is reached by is failing' }, o)).toBeNull();
  });

  it('at most MAX_NO_EVIDENCE_IN_ROW in a row: then failures count, so a dead gateway on a machine that stays this busy is still left', () => {
    expect(noEvidence({ lateMs: 5000, sinceResumeMs: null, sleptMs: 0, inRow: MAX_NO_EVIDENCE_IN_ROW - 1 }, o)).not.toBeNull();
    expect(noEvidence({ lateMs: 5000, sinceResumeMs: null, sleptMs: 0, inRow: MAX_NO_EVIDENCE_IN_ROW }, o)).toBeNull();
  });
});

function logRecorder(): Logger & { msgs: string[] } {
  const msgs: string[] = [];
  const at = (_o: object, msg?: string): void => void msgs.push(msg ?? '');
  const l = { msgs, trace: at, debug: () => {}, info: at, warn: at, error: at, child: () => l };
  return l;
}

/** A monitor of gw1 and gw2 under fake time; each gateway's next rounds come from `results` (default: good). */
function setup() {
  const clock = new ManualClock();
  const results = new Map<string, ProbeResult[]>([['gw1', []], ['gw2', []]]);
  const good: ProbeResult = { ok: true, rttMs: 20, error: null };
  const log = logRecorder();
  const rounds: string[] = [];
  const m = new HealthMonitor({
    failAfter: 3,
    recoverAfter: 3,
    window: 10,
    degradeFactor: 3,
    intervalMs: 1000,
    timeoutMs: 800,
    failbackHoldMs: 2000,
    prober: {
      round: async (t) => {
        rounds.push(t.name);
        return results.get(t.name)!.shift() ?? good;
      },
    },
    clock,
    logger: log,
    onSwitch: () => undefined,
    random: () => 0.5,
  });
  m.setGateways([gw('gw1', 1), gw('gw2', 2)]);
  m.start();
  const state = (name: string) => m.status().find((s) => s.name === name)!;
  return { clock, results, m, state, log, rounds };
}

const late = (ms: number): ProbeResult => ({ ok: false, rttMs: null, error: 'dns: 10.64.0.1: no answer in 800 ms', lateMs: ms });

describe('HealthMonitor: gateways that ride a failing WAN link', () => {
  it('their failures while the link is failing are set aside (they stay up); one that does not ride it, and failures once the link is fine, count', async () => {
    const clock = new ManualClock();
    let linkFailing: string | null = null;
    const dead = new Set<string>();
    const m = monitorOf(clock, {
      failAfter: 3,
      recoverAfter: 3,
      failbackHoldMs: 2000,
      prober: { round: async (t) => (dead.has(t.name) ? { ok: false, rttMs: null, error: 'dns: no answer in 800 ms', lateMs: 0 } : { ok: true, rttMs: 20, error: null }) },
      underlay: () => linkFailing,
    });
    m.setGateways([{ ...gw('gw1', 1), ridesLink: true }, gw('awg', 2)]);
    m.start();
    await clock.advance(2000);
    // The link under gw1 fails: gw1's rounds fail with it, and so do the hand-made awg's.
    linkFailing = 'the WAN link fiber it is reached by is failing';
    dead.add('gw1').add('awg');
    await clock.advance(5000);
    const st = (n: string) => m.status().find((s) => s.name === n)!;
    expect(st('gw1').state).toBe('up');
    expect(st('gw1').noEvidence).toBeGreaterThanOrEqual(3);
    expect(st('awg').state).toBe('down');
    // The link is fine again (breakout moved) and gw1 is still dead: it is its own failure now.
    linkFailing = null;
    await clock.advance(4000);
    expect(st('gw1').state).toBe('down');
    m.stop();
  });

  it('HealthMonitor.suspect: down, a failure since the last good round, or no answer for an interval and half a timeout', async () => {
    const clock = new ManualClock();
    let mode: 'ok' | 'fail' | 'silent' = 'ok';
    const m = monitorOf(clock, {
      failAfter: 3,
      recoverAfter: 3,
      failbackHoldMs: 0,
      prober: {
        round: async () => {
          if (mode === 'ok') return { ok: true, rttMs: 5, error: null };
          if (mode === 'fail') return { ok: false, rttMs: null, error: 'no answer', lateMs: 0 };
          await new Promise<void>((r) => clock.setTimeout(r, 800));
          return { ok: false, rttMs: null, error: 'no answer in 800 ms', lateMs: 0 };
        },
      },
      kind: 'link',
    });
    m.setGateways([gw('fiber', 1)]);
    m.start();
    await clock.advance(3000);
    expect(m.suspect('fiber')).toBe(false);
    expect(m.suspect('nosuch')).toBe(false);
    // Unanswered rounds: suspect before any of them has failed.
    mode = 'silent';
    await clock.advance(1550); // the last answer at 3 s, the silent round started at 4 s: 1.55 s without one (over 1.1 + 0.4)
    expect(m.status()[0]!.consecutiveFailures).toBe(0);
    expect(m.suspect('fiber')).toBe(true);
    mode = 'ok';
    await clock.advance(3000);
    expect(m.suspect('fiber')).toBe(false);
    mode = 'fail';
    await clock.advance(1000);
    expect(m.suspect('fiber')).toBe(true);
    m.stop();
  });
});

describe('HealthMonitor on a busy machine', () => {
  it('rounds whose timers fired ~1 s late (an event loop held, a stopped process) take no gateway down', async () => {
    const { clock, results, m, state, log } = setup();
    await clock.advance(2000);
    results.set('gw1', Array.from({ length: 6 }, () => late(950)));
    results.set('gw2', Array.from({ length: 6 }, () => late(1200)));
    await clock.advance(10_000);
    expect(state('gw1').state).toBe('up');
    expect(state('gw2').state).toBe('up');
    expect(m.active).toBe('gw1');
    expect(state('gw1').noEvidence).toBe(6);
    expect(state('gw1').consecutiveFailures).toBe(0);
    // Said, once a minute per gateway (not once a round).
    expect(log.msgs.filter((x) => x.startsWith('gateway gw1: a failed probe round taken as no evidence'))).toHaveLength(1);
    m.stop();
  });

  it('the same failures with timers on time (a real fault, on a machine as busy as 150 ms of lag): down after failAfter rounds', async () => {
    const { clock, results, m, state } = setup();
    await clock.advance(2000);
    results.set('gw1', Array.from({ length: 10 }, () => late(150)));
    await clock.advance(2600);
    // The first failed round at 3 s, confirmed twice a timeout apart (this prober fails at once: 3.8 s, 4.6 s).
    expect(state('gw1').state).toBe('down');
    expect(m.active).toBe('gw2');
    m.stop();
  });

  it('a late round between failures neither counts nor resets the run', async () => {
    const { clock, results, state, m } = setup();
    await clock.advance(2000);
    results.set('gw1', [late(0), late(0), late(900), late(0)]);
    await clock.advance(3600); // 3 s and 3.8 s: two failures; 4.6 s the late one; 5.6 s the third failure
    expect(state('gw1').state).toBe('down');
    expect(state('gw1').noEvidence).toBe(1);
    m.stop();
  });

  it('failures at once (a reload re-planning the routes under the probe: EACCES for 600 ms) are confirmed a timeout apart: no gateway down', async () => {
    const { clock, results, state, m, log } = setup();
    await clock.advance(2000);
    const refused: ProbeResult = { ok: false, rttMs: null, error: 'dns: 10.64.0.1: send EACCES 10.64.0.1:53', lateMs: 0 };
    results.set('gw2', Array.from({ length: 5 }, () => refused)); // the rounds from 3 s on are refused at once...
    await clock.advance(1600);
    results.set('gw2', []); // ...until 3.6 s; the confirmation at 3.8 s gets through
    await clock.advance(3000);
    expect(log.msgs.filter((x) => x.startsWith('gateway gw2 is'))).toEqual(['gateway gw2 is up']); // never down
    expect(state('gw2').state).toBe('up');
    expect(state('gw2').loss).toBeGreaterThan(0); // the refused round was counted, once
    m.stop();
  });

  it('past MAX_NO_EVIDENCE_IN_ROW late failures without a good round, they count: a dead gateway is left later, not never', async () => {
    const { clock, results, state, m } = setup();
    await clock.advance(2000);
    results.set('gw1', Array.from({ length: 40 }, () => late(5000)));
    await clock.advance(MAX_NO_EVIDENCE_IN_ROW * 1000 + 500);
    expect(state('gw1').state).toBe('up');
    await clock.advance(5000);
    expect(state('gw1').state).toBe('down');
    m.stop();
  });

  it('after a suspend (the boot clock ran an hour ahead), failures within the grace are set aside, later ones count', async () => {
    const { clock, results, state, m, log } = setup();
    await clock.advance(2000);
    clock.suspend(3_600_000);
    results.set('gw1', Array.from({ length: 30 }, () => late(0)));
    await clock.advance(RESUME_GRACE_MS - 1000);
    expect(state('gw1').state).toBe('up');
    expect(log.msgs.some((x) => /^the machine slept 3600 s/.test(x))).toBe(true);
    await clock.advance(5000);
    expect(state('gw1').state).toBe('down');
    m.stop();
  });

  it('a stopped process (SIGSTOP, a freezer around a suspend: no clock jumps) counts as a resume: failures while the network comes back are set aside, later ones count', async () => {
    const { clock, results, state, m, log } = setup();
    await clock.advance(2000);
    await clock.stall(6000); // every timer fires 6 s late
    results.set('gw1', Array.from({ length: 30 }, () => late(0))); // the network is not back yet: failures on time
    await clock.advance(RESUME_GRACE_MS - 2000);
    expect(state('gw1').state).toBe('up');
    expect(log.msgs.some((x) => /^this process did not run for \d+ s/.test(x))).toBe(true);
    await clock.advance(6000);
    expect(state('gw1').state).toBe('down');
    m.stop();
  });

  it('without the stop the same failures take it down at once (the case above is the stop\'s doing)', async () => {
    const { clock, results, state, m } = setup();
    await clock.advance(2000);
    results.set('gw1', Array.from({ length: 30 }, () => late(0)));
    await clock.advance(4000);
    expect(state('gw1').state).toBe('down');
    m.stop();
  });

  it('logind says the machine resumed: every gateway is probed at once, and failures within the grace are set aside', async () => {
    const { clock, results, state, m, log, rounds } = setup();
    await clock.advance(2300); // rounds at 0, 1 s, 2 s: the next due at 3 s
    const before = rounds.length;
    results.set('gw1', Array.from({ length: 30 }, () => late(0)));
    m.noteResume();
    await clock.advance(1);
    expect(rounds.length - before).toBe(2); // both gateways, 700 ms before their turn
    expect(log.msgs.some((x) => /^the machine resumed \(logind\)/.test(x))).toBe(true);
    await clock.advance(RESUME_GRACE_MS - 1500);
    expect(state('gw1').state).toBe('up');
    m.stop();
  });
});

describe('GatewayHealth: degradation is damped like failures', () => {
  it('fewer than failAfter slow rounds in a row do not degrade; failAfter do; recoverAfter fast ones clear it', () => {
    const h = new GatewayHealth({ failAfter: 3, recoverAfter: 3, window: 10, degradeFactor: 3, baselineSamples: 5 }, 0);
    let t = 0;
    for (let i = 0; i < 5; i++) h.record(t++, true, 2);
    // A burst of two slow rounds (the machine was busy): the smoothed RTT jumps over the threshold, twice.
    h.record(t++, true, 400);
    h.record(t++, true, 400);
    expect(h.current).toBe('up');
    for (let i = 0; i < 10; i++) h.record(t++, true, 2);
    expect(h.current).toBe('up');
    for (let i = 0; i < 3; i++) h.record(t++, true, 400);
    expect(h.current).toBe('degraded');
    for (let i = 0; i < 30 && h.current === 'degraded'; i++) h.record(t++, true, 2);
    expect(h.current).toBe('up');
  });

  it('a round set aside changes nothing but its count', () => {
    const h = new GatewayHealth({ failAfter: 3, recoverAfter: 3, window: 10, degradeFactor: 3 }, 0);
    h.record(1, true, 10);
    h.record(2, false, null, 'x');
    h.noEvidence();
    h.record(3, false, null, 'x');
    expect(h.figures()).toMatchObject({ state: 'up', consecutiveFailures: 2, noEvidence: 1, rounds: 4, loss: 2 / 3 });
  });
});
