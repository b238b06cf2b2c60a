// The health monitor: probes every gateway on its own schedule (interval with
// a little jitter, one round in flight per gateway), feeds the results to each
// gateway's state machine, and picks the active gateway after every round.
// A change of the active gateway is handed to `onSwitch` (the daemon flips the
// data plane, flushes the tunnel path's DNS cache, drops the flows of a dead
// gateway). Timers come from the injected clock: unit tests run it under fake
// time with a fake prober.
//
// A failed round the process or machine could not watch (a probe timer that
// fired late, a suspend just before) is no evidence (evidence.ts): counted,
// logged at a bounded rate, and not held against the gateway.
import { mark, sleptBetween, wallOf, type Clock, type ClockMark } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import { LogThrottle } from '../../lib/log-throttle.js';
import { evidenceOptions, FROZEN_LATE_MS, noEvidence } from './evidence.js';
import { GatewayHealth, type HealthFigures, type HealthOptions } from './gateway-health.js';
import { NAIVE_TIMING, type ProbeResult, type ProbeTarget } from './probes.js';
import { selectGateway, type Candidate } from './select.js';

/** health.timeout's default, for a monitor not told the probes' timeout. */
const DEFAULT_TIMEOUT_MS = 800;

/**
 * Rounds of one gateway in flight at once at most: a round unanswered for
 * half a timeout gets the next beside it (probe()); with rounds half a
 * timeout apart, two are in flight and a third only at the instant the
 * oldest times out.
 */
const MAX_IN_FLIGHT = 3;

/** The name the breakout path's health is kept under (no gateway can have it: `breakout` is reserved). */
export const BREAKOUT = 'breakout';

export interface MonitoredGateway extends ProbeTarget {
  priority: number;
  /** Reached through the breakout's WAN link (splitwan's WireGuard gateways): see MonitorOptions.underlay. */
  ridesLink?: boolean;
}

export interface Switch {
  from: string | null;
  to: string | null;
  reason: string;
  /** The gateway left is down (its flows should be dropped so clients reconnect at once). */
  fromDown: boolean;
}

export interface MonitorOptions extends HealthOptions {
  intervalMs: number;
  /** The probes' timeout: a timer later than a share of it makes a failed round no evidence; fast failures are confirmed this far apart. Default 800. */
  timeoutMs?: number;
  failbackHoldMs: number;
  prober: { round(t: ProbeTarget): Promise<ProbeResult> };
  clock: Clock;
  logger: Logger;
  onSwitch: (s: Switch) => void | Promise<void>;
  /** Any gateway's state changed (rules pinned to gateways may pick another candidate). */
  onHealthChange?: (gateway: string, state: string) => void;
  /** 0..1; jitter is ±10% of the interval. */
  random?: () => number;
  /** What it watches, for the log: gateways (default: the `tunnel` path) or WAN links (the `breakout` path). */
  kind?: 'gateway' | 'link';
  /**
   * Why the WAN link under gateways that ride it is failing now, or null: a
   * failed round of such a gateway is then no evidence (evidence.ts).
   */
  underlay?: () => string | null;
}

export interface GatewayStatus extends HealthFigures {
  name: string;
  priority: number;
  active: boolean;
}

interface Entry {
  gw: MonitoredGateway;
  /** A gateway the tunnel path can use; false for the breakout (watched for status only). */
  selectable: boolean;
  order: number;
  health: GatewayHealth;
  /** The next round's timer: the steady cadence, or the hedge of a round in flight. */
  timer: unknown;
  /** Rounds in flight (more than one only while they go unanswered). */
  inFlight: number;
  /** The number of the latest round started, and of the latest one recorded (an older one ending after it is stale). */
  started: number;
  recorded: number;
  /** Rounds numbered below this are stale: they were sent before the WAN link under the gateway changed (recheckGateways). */
  freshFrom: number;
  /** When its next round is due (monotonic ms): how late its timer fired says how busy the loop is. */
  dueAt: number;
  /** Failed rounds set aside since its last good round. */
  noEvidenceRun: number;
  /** When it last answered (monotonic ms; its start before any answer). */
  lastOkAt: number;
}

/** A probe round as it went, for the debug log (benchmarks read it). */
export interface RoundRecord {
  gateway: string;
  ok: boolean;
  rttMs: number | null;
  /** How late the round's own timer fired (ms): the event loop's lag then. */
  startLateMs: number;
  /** A failed round: how late the timer that failed it fired. */
  lateMs: number;
  verdict: 'ok' | 'failed' | 'no evidence';
  error: string | null;
}

export class HealthMonitor {
  private readonly entries = new Map<string, Entry>();
  private current: string | null = null;
  private pinned: string | null = null;
  private running = false;
  private switching: Promise<void> = Promise.resolve();
  /** The tunables, shared with every GatewayHealth: a reload changes them in place. */
  private readonly o: MonitorOptions;
  /** Where the clocks stood when a round last ended: a suspend since shows as the boot clock running ahead. */
  private lastMark: ClockMark | null = null;
  /** The last suspend seen: when it was noticed (monotonic ms) and how long it was. */
  private resumed: { at: number; sleptMs: number } | null = null;
  private readonly throttled: LogThrottle;

  constructor(o: MonitorOptions) {
    this.o = { ...o };
    this.throttled = new LogThrottle(o.logger, o.clock, { windowMs: 60_000 });
  }

  /** A reload's new health settings; they apply from the next round (states and windows are kept). */
  configure(t: Pick<MonitorOptions, 'failAfter' | 'recoverAfter' | 'window' | 'degradeFactor' | 'intervalMs' | 'failbackHoldMs'> & { timeoutMs?: number }): void {
    Object.assign(this.o, t);
    this.reselect();
  }

  /** The gateway carrying the tunnel path now; null: none usable. */
  get active(): string | null {
    return this.current;
  }

  /**
   * The WAN link under the gateways changed because the one they were reached
   * by went down: a gateway that is down (or failing) now comes back after
   * one good round rather than recoverAfter, and is probed at once, so tunnel
   * traffic is back a round after the link failover instead of recoverAfter
   * rounds after it. Rounds still in flight went by the old link: their
   * failures say nothing of the new one (they would cancel the one-round
   * recovery, or take down a gateway the link's fault had not reached yet),
   * so they are stale, and a gateway with one in flight is probed at once too.
   */
  recheckGateways(): void {
    const names: string[] = [];
    for (const e of this.entries.values()) {
      if (!e.selectable) continue;
      const f = e.health.figures();
      const failing = f.state === 'down' || f.consecutiveFailures > 0;
      if (!failing && e.inFlight === 0) continue;
      if (failing) e.health.recheck();
      names.push(e.gw.name);
      e.freshFrom = e.started + 1;
      if (this.running) {
        this.o.clock.clearTimeout(e.timer);
        this.schedule(e, 0);
      }
    }
    if (names.length) this.o.logger.info({ gateways: names }, 'the WAN link changed: gateways that failed or wait for an answer are probed again at once');
  }

  /**
   * `name` is failing or may be: down, a failed round since its last good
   * one, or no answer for longer than an interval and half a timeout (its
   * latest round has gone unanswered that long). The gateway monitor asks
   * the link monitor this about the link breakout takes.
   */
  suspect(name: string): boolean {
    const e = this.entries.get(name);
    if (!e) return false;
    const f = e.health.figures();
    return f.state === 'down' || f.consecutiveFailures > 0 || this.o.clock.now() - e.lastOkAt > this.o.intervalMs * 1.1 + this.timeoutMs() / 2;
  }

  /** Whether it watches `name` (a gateway or link of its own). */
  has(name: string): boolean {
    return this.entries.get(name)?.selectable ?? false;
  }

  /** Usable for traffic (rules pinned to a gateway use it only while this holds). */
  healthy(name: string): boolean {
    return this.entries.get(name)?.health.usable ?? false;
  }

  /**
   * The gateways to watch (at start and after a reload). A gateway kept by
   * name keeps its health; new ones start unknown. Returns the active
   * gateway chosen without waiting for probes (the preferred usable one).
   */
  setGateways(gws: readonly MonitoredGateway[]): string | null {
    const now = this.o.clock.now();
    const names = new Set(gws.map((g) => g.name));
    for (const [name, e] of this.entries) {
      if (names.has(name) || !e.selectable) continue;
      this.o.clock.clearTimeout(e.timer);
      this.entries.delete(name);
    }
    gws.forEach((gw, order) => {
      const e = this.entries.get(gw.name);
      if (e) {
        e.gw = gw;
        e.order = order;
      } else {
        const entry: Entry = { gw, selectable: true, order, health: new GatewayHealth(this.o, now), timer: null, inFlight: 0, started: 0, recorded: 0, freshFrom: 0, dueAt: now, noEvidenceRun: 0, lastOkAt: now };
        this.entries.set(gw.name, entry);
        if (this.running) this.schedule(entry, 0);
      }
    });
    if (this.pinned !== null && !names.has(this.pinned)) this.pinned = null;
    this.current = selectGateway({ candidates: this.candidates(), current: this.current, now, failbackHoldMs: this.o.failbackHoldMs, pinned: this.pinned }).active;
    return this.current;
  }

  /**
   * The breakout path, probed like a gateway (its resolvers through the WAN)
   * so a dead WAN shows in the log and status; it never carries the tunnel
   * path. null: not watched (no resolver to ask).
   */
  setBreakout(target: ProbeTarget | null): void {
    const e = this.entries.get(BREAKOUT);
    if (target === null) {
      if (e) {
        this.o.clock.clearTimeout(e.timer);
        this.entries.delete(BREAKOUT);
      }
      return;
    }
    const gw: MonitoredGateway = { ...target, name: BREAKOUT, priority: 0 };
    if (e) e.gw = gw;
    else {
      const entry: Entry = { gw, selectable: false, order: -1, health: new GatewayHealth(this.o, this.o.clock.now()), timer: null, inFlight: 0, started: 0, recorded: 0, freshFrom: 0, dueAt: this.o.clock.now(), noEvidenceRun: 0, lastOkAt: this.o.clock.now() };
      this.entries.set(BREAKOUT, entry);
      if (this.running) this.schedule(entry, 0);
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    // The first round at once, so a dead gateway is seen within failAfter intervals of start.
    for (const e of this.entries.values()) this.schedule(e, 0);
  }

  stop(): void {
    this.running = false;
    this.throttled.flush();
    for (const e of this.entries.values()) {
      this.o.clock.clearTimeout(e.timer);
      e.timer = null;
    }
  }

  /** The gateway `select` pinned; null: automatic. */
  get pinnedGateway(): string | null {
    return this.pinned;
  }

  /** `splitwan select NAME` / `auto` (null). */
  pin(name: string | null): void {
    if (name !== null && !this.entries.get(name)?.selectable) throw new Error(`no gateway named ${name}`);
    this.pinned = name;
    this.reselect();
  }

  status(): GatewayStatus[] {
    const c = this.o.clock;
    return [...this.entries.values()].map((e) => {
      const f = e.health.figures();
      // Times for people: wall clock (the state machine keeps monotonic ones).
      return { name: e.gw.name, priority: e.gw.priority, active: e.selectable && e.gw.name === this.current, ...f, changedAt: wallOf(c, f.changedAt), upSince: f.upSince === null ? null : wallOf(c, f.upSince) };
    });
  }

  /** Resolves when the switches decided so far have been carried out (tests, shutdown). */
  settled(): Promise<void> {
    return this.switching;
  }

  private schedule(e: Entry, delayMs: number): void {
    e.dueAt = this.o.clock.now() + delayMs;
    e.timer = this.o.clock.setTimeout(() => void this.probe(e), delayMs);
  }

  private nextDelay(): number {
    const r = this.o.random ?? Math.random;
    return Math.round(this.o.intervalMs * (0.9 + 0.2 * r()));
  }

  private async probe(e: Entry): Promise<void> {
    if (!this.running || this.entries.get(e.gw.name) !== e) return;
    if (e.inFlight >= MAX_IN_FLIGHT) return;
    e.inFlight++;
    const seq = ++e.started;
    // Rounds start at a steady cadence: a slow round (a dead gateway's timeout) does not stretch it.
    const startedAt = this.o.clock.now();
    const startLateMs = Math.max(0, startedAt - e.dueAt);
    // Not run for seconds (stopped, frozen for a suspend): as after a sleep, before this round can fail.
    if (startLateMs > FROZEN_LATE_MS) this.markResume(startedAt, startLateMs, `this process did not run for ${Math.round(startLateMs / 1000)} s (stopped, or frozen around a suspend)`);
    // A round of a gateway not down that is still unanswered half a timeout
    // on gets the next round beside it (mwan3's failure_interval, without
    // waiting for the timeout): each round still waits a whole timeout before
    // it counts as failed, but failAfter of them end (failAfter + 1) / 2
    // timeouts after the first was sent, not failAfter timeouts (`bench
    // links`: a dead link is left ~0.8 s sooner with timeout 800ms,
    // failAfter 3). A live gateway answers well within half a timeout: no
    // extra rounds. The hedge is the entry's timer; this round's end clears
    // it when nothing newer started.
    if (e.health.current !== 'down') this.schedule(e, this.timeoutMs() / 2);
    let r: ProbeResult;
    try {
      r = await this.o.prober.round(e.gw);
    } catch (err) {
      r = { ok: false, rttMs: null, error: (err as Error).message };
    } finally {
      e.inFlight--;
    }
    if (!this.running || this.entries.get(e.gw.name) !== e) return;
    const newest = e.started === seq;
    if (newest) this.o.clock.clearTimeout(e.timer);
    // A newer round already said how the gateway is (it answered first), or the
    // link under it changed since this one was sent: its verdict is stale.
    if (seq < e.recorded || seq < e.freshFrom) {
      if (newest) this.schedule(e, Math.max(0, this.nextDelay() - (this.o.clock.now() - startedAt)));
      return;
    }
    e.recorded = seq;
    const end = this.noteSuspend();
    const setAside = r.ok || NAIVE_TIMING ? null : this.setAside(e, r, end.mono);
    const verdict = r.ok ? 'ok' : setAside === null ? 'failed' : 'no evidence';
    const record: RoundRecord = { gateway: e.gw.name, ok: r.ok, rttMs: r.rttMs, startLateMs, lateMs: r.lateMs ?? 0, verdict, error: r.error };
    this.o.logger.debug(record, 'probe round');
    if (setAside !== null) {
      e.noEvidenceRun++;
      e.health.noEvidence();
      this.throttled.info(`no-evidence ${e.gw.name}`, { gateway: e.gw.name, why: setAside, error: r.error }, `gateway ${e.gw.name}: a failed probe round taken as no evidence (${setAside})`);
      // The next round at the usual cadence: it may well see the gateway, and says so.
      if (newest) this.schedule(e, Math.max(0, this.nextDelay() - (this.o.clock.now() - startedAt)));
      return;
    }
    // Only a good round starts the count of set-aside rounds over: past the cap, late failures keep counting.
    if (r.ok) {
      e.noEvidenceRun = 0;
      e.lastOkAt = end.mono;
    }
    const changed = e.health.record(end.mono, r.ok, r.rttMs, r.error);
    if (changed !== null) {
      const f = e.health.figures();
      const what = e.selectable ? `${this.o.kind ?? 'gateway'} ${e.gw.name}` : 'the breakout (WAN)';
      this.o.logger[changed === 'down' && !e.selectable ? 'warn' : 'info']({ gateway: e.gw.name, state: changed, rttMs: f.rttMs === null ? null : Math.round(f.rttMs * 10) / 10, loss: f.loss, error: r.error }, `${what} is ${changed}`);
    }
    // The switch first: it is what moves traffic, and the data plane carries out
    // changes in the order they are asked for (a flip ahead of the re-plan below).
    this.reselect();
    if (changed !== null && e.selectable) this.o.onHealthChange?.(e.gw.name, changed);
    // A newer round in flight schedules the next when it ends.
    if (!newest) return;
    // A failed round of a gateway still up is confirmed at once (the next round
    // right after it), so a dead gateway is down after failAfter timeouts rather
    // than failAfter intervals (`bench failover`: p95 3.9 s → under 3.5 s with
    // interval 1s, failAfter 3); a down one goes back to the steady cadence.
    // A round that failed faster than a timeout (a local refusal: EACCES while
    // a reload re-plans the routes under the probe) is confirmed a timeout
    // after it started: failAfter rounds then span at least failAfter timeouts,
    // not a few milliseconds of one passing condition.
    const confirming = !r.ok && e.health.current !== 'down';
    const took = this.o.clock.now() - startedAt;
    this.schedule(e, confirming ? Math.max(0, this.timeoutMs() - took) : Math.max(0, this.nextDelay() - took));
  }

  private timeoutMs(): number {
    return this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * The machine resumed (logind's PrepareForSleep(false)): failed rounds of
   * the next seconds are no evidence, and every gateway is probed at once
   * rather than at its next turn.
   */
  noteResume(): void {
    if (!this.running) return;
    this.markResume(this.o.clock.now(), 0, 'the machine resumed (logind)');
    for (const e of this.entries.values()) {
      if (e.inFlight > 0) continue; // its end schedules the next
      if (e.timer !== null) this.o.clock.clearTimeout(e.timer);
      this.schedule(e, 0);
    }
  }

  /** Marks the clocks; a suspend since the last mark is remembered (every gateway's rounds are affected). */
  private noteSuspend(): ClockMark {
    const m = mark(this.o.clock);
    const slept = this.lastMark === null ? 0 : sleptBetween(this.lastMark, m);
    if (slept > 0) this.markResume(m.mono, slept, `the machine slept ${Math.round(slept / 1000)} s`);
    this.lastMark = m;
    return m;
  }

  private markResume(at: number, sleptMs: number, what: string): void {
    // Once per resume: every gateway's late round would say it again.
    if (this.resumed !== null && at - this.resumed.at < 1000) return;
    this.resumed = { at, sleptMs };
    this.o.logger.info({ sleptMs: Math.round(sleptMs) }, `${what}: failed probe rounds of the next ${Math.round(evidenceOptions(this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS).resumeGraceMs / 1000)} s are no evidence`);
  }

  /** Why a failed round is no evidence, or null: it counts. */
  private setAside(e: Entry, r: ProbeResult, now: number): string | null {
    return noEvidence(
      { lateMs: r.lateMs ?? 0, sinceResumeMs: this.resumed === null ? null : now - this.resumed.at, sleptMs: this.resumed?.sleptMs ?? 0, inRow: e.noEvidenceRun, underlay: e.gw.ridesLink ? (this.o.underlay?.() ?? null) : null },
      evidenceOptions(this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    );
  }

  private candidates(): Candidate[] {
    return [...this.entries.values()].filter((e) => e.selectable).map((e) => {
      const f = e.health.figures();
      return { name: e.gw.name, priority: e.gw.priority, order: e.order, state: f.state, upSince: f.upSince, rttMs: f.rttMs };
    });
  }

  private reselect(): void {
    const s = selectGateway({ candidates: this.candidates(), current: this.current, now: this.o.clock.now(), failbackHoldMs: this.o.failbackHoldMs, pinned: this.pinned });
    if (s.active === this.current) return;
    const from = this.current;
    const fromDown = from !== null && !(this.entries.get(from)?.health.usable ?? false);
    this.current = s.active;
    const sw: Switch = { from, to: s.active, reason: s.reason, fromDown };
    const message =
      this.o.kind === 'link'
        ? s.active === null
          ? 'no WAN link is up: breakout traffic stays on the preferred one'
          : `breakout link: ${s.active} (${s.reason})`
        : s.active === null
          ? 'no gateway is up: tunnel traffic is blocked (kill switch)'
          : `active gateway: ${s.active} (${s.reason})`;
    this.o.logger.warn({ from, to: s.active, reason: s.reason }, message);
    // Switches are carried out in order, one at a time.
    this.switching = this.switching.then(() => this.o.onSwitch(sw)).catch((err: unknown) => this.o.logger.error({ err, ...sw }, 'carrying out a gateway switch failed'));
  }
}
