// One gateway's health, from the results of its probe rounds: pure logic,
// the clock's time passed in, so the state machine runs under fake timers.
//
// States: `unknown` (no verdict yet: at start, treated as usable so traffic
// flows while the first probes run), `up`, `degraded` (up, but its smoothed
// RTT is more than degradeFactor × its baseline, and 50 ms more), `down`. Hysteresis:
// `failAfter` failed rounds in a row to go down, `recoverAfter` good rounds
// in a row to come back; from `unknown` one good round is enough (there is no
// flapping to damp yet) and `failAfter` bad ones mean down. Degradation is
// damped the same way: `failAfter` rounds in a row over the threshold to be
// degraded, `recoverAfter` under its clearing level to be up again (a burst
// of slow rounds while the machine is busy is not worth moving traffic for).
//
// Figures over a sliding window of `window` rounds: loss (failed rounds),
// RTT smoothed as an EWMA, jitter as the mean difference between successive
// RTTs, and the baseline: the median RTT of the first good rounds.
//
// A round can also be no evidence (noEvidence()): it failed while this
// process or machine could not watch (a timer that fired late, a suspend).
// It is counted, and changes nothing else: not the runs, not the window.
// Times are the monotonic clock's.

export type GatewayState = 'unknown' | 'up' | 'degraded' | 'down';

export interface HealthOptions {
  failAfter: number;
  recoverAfter: number;
  /** Rounds kept for loss and jitter. */
  window: number;
  degradeFactor: number;
  /** Good rounds whose median RTT is the baseline. */
  baselineSamples?: number;
}

export interface HealthFigures {
  state: GatewayState;
  /** When the state last changed to up/degraded from down/unknown (ms); null when not usable. */
  upSince: number | null;
  /** When the state last changed (ms). */
  changedAt: number;
  /** Smoothed RTT, ms; null before any RTT. */
  rttMs: number | null;
  baselineMs: number | null;
  jitterMs: number | null;
  /** Failed rounds in the window, 0..1. */
  loss: number;
  rounds: number;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  lastError: string | null;
  /** Rounds taken as no evidence since start (see noEvidence()). */
  noEvidence: number;
}

/** EWMA weight of a new RTT sample. */
const ALPHA = 0.3;
/** Degraded clears below this share of the threshold (hysteresis). */
const DEGRADE_CLEAR = 0.8;
/**
 * And it takes this much more than the baseline, too: on a 1 ms link a busy
 * machine's 4 ms wobble is not degradation worth moving traffic for.
 */
export const DEGRADE_FLOOR_MS = 50;

export class GatewayHealth {
  private state: GatewayState = 'unknown';
  private upSince: number | null = null;
  private changedAt: number;
  private okRun = 0;
  private failRun = 0;
  /** RTT samples in a row whose smoothed RTT was over the degraded threshold / under its clearing level. */
  private slowRun = 0;
  private fastRun = 0;
  private readonly results: boolean[] = [];
  private readonly rtts: number[] = [];
  private readonly firstRtts: number[] = [];
  private baseline: number | null = null;
  private smoothed: number | null = null;
  private lastError: string | null = null;
  private rounds = 0;
  private noEvidenceRounds = 0;
  /**
   * The path under this gateway changed (the WAN link its endpoint is reached
   * by failed, and another took over): the failures were the old link's, so
   * one good round brings it back instead of recoverAfter. A failed round once
   * it is down cancels that: it is dead through the new link too.
   */
  private fastRecover = false;

  constructor(
    private readonly o: HealthOptions,
    now: number,
  ) {
    this.changedAt = now;
  }

  get current(): GatewayState {
    return this.state;
  }

  /** Usable for traffic: up, degraded, or not yet known. */
  get usable(): boolean {
    return this.state !== 'down';
  }

  /**
   * Records one probe round: ok with the RTT it measured (null when its
   * probes measure none, e.g. handshake only), or failed with why. Returns
   * the new state when it changed, else null.
   */
  record(now: number, ok: boolean, rttMs: number | null = null, error: string | null = null): GatewayState | null {
    this.rounds++;
    this.results.push(ok);
    // `while`: a reload may have made the window smaller.
    while (this.results.length > this.o.window) this.results.shift();
    if (ok) {
      this.okRun++;
      this.failRun = 0;
      this.lastError = null;
      if (rttMs !== null && Number.isFinite(rttMs) && rttMs >= 0) this.sample(rttMs);
    } else {
      if (this.state === 'down') this.fastRecover = false;
      this.failRun++;
      this.okRun = 0;
      this.lastError = error;
    }
    return this.transition(now);
  }

  /** The underlay changed (see fastRecover). */
  recheck(): void {
    this.fastRecover = true;
  }

  /**
   * A round that failed while nobody could watch (the process stalled, the
   * machine slept): counted, and nothing else changes.
   */
  noEvidence(): void {
    this.rounds++;
    this.noEvidenceRounds++;
  }

  private sample(rtt: number): void {
    this.rtts.push(rtt);
    while (this.rtts.length > this.o.window) this.rtts.shift();
    this.smoothed = this.smoothed === null ? rtt : ALPHA * rtt + (1 - ALPHA) * this.smoothed;
    const n = this.o.baselineSamples ?? 5;
    if (this.baseline === null) {
      this.firstRtts.push(rtt);
      if (this.firstRtts.length >= n) this.baseline = median(this.firstRtts);
    }
    const th = this.threshold();
    if (th === null) return;
    this.slowRun = this.smoothed > th ? this.slowRun + 1 : 0;
    this.fastRun = this.smoothed < th * DEGRADE_CLEAR ? this.fastRun + 1 : 0;
  }

  /** The smoothed RTT above which the gateway is slow; null before a baseline. */
  private threshold(): number | null {
    if (this.baseline === null || this.smoothed === null || this.baseline <= 0) return null;
    return Math.max(this.o.degradeFactor * this.baseline, this.baseline + DEGRADE_FLOOR_MS);
  }

  private transition(now: number): GatewayState | null {
    const before = this.state;
    let next = before;
    if (before === 'down') {
      if (this.okRun >= this.o.recoverAfter || (this.fastRecover && this.okRun >= 1)) next = 'up';
    } else if (this.failRun >= this.o.failAfter) {
      next = 'down';
    } else if (before === 'unknown') {
      if (this.okRun >= 1) next = 'up';
    }
    if (next === 'up' || next === 'degraded') next = this.degradedOrUp(next === 'degraded' || before === 'degraded');
    // Usable again (or never down): the next failures are evidence as usual.
    if (this.okRun >= 1 && next !== 'down') this.fastRecover = false;
    if (next === before) return null;
    this.state = next;
    this.changedAt = now;
    if (next === 'down') this.upSince = null;
    else if ((before === 'down' || before === 'unknown') && this.upSince === null) this.upSince = now;
    return next;
  }

  /** Up or degraded by the smoothed RTT against the baseline, with hysteresis and damping. */
  private degradedOrUp(wasDegraded: boolean): GatewayState {
    if (this.threshold() === null) return wasDegraded ? 'degraded' : 'up';
    if (wasDegraded) return this.fastRun >= this.o.recoverAfter ? 'up' : 'degraded';
    return this.slowRun >= this.o.failAfter ? 'degraded' : 'up';
  }

  figures(): HealthFigures {
    let jitter: number | null = null;
    if (this.rtts.length >= 2) {
      let sum = 0;
      for (let i = 1; i < this.rtts.length; i++) sum += Math.abs(this.rtts[i]! - this.rtts[i - 1]!);
      jitter = sum / (this.rtts.length - 1);
    }
    const failed = this.results.filter((r) => !r).length;
    return {
      state: this.state,
      upSince: this.upSince,
      changedAt: this.changedAt,
      rttMs: this.smoothed,
      baselineMs: this.baseline,
      jitterMs: jitter,
      loss: this.results.length ? failed / this.results.length : 0,
      rounds: this.rounds,
      consecutiveFailures: this.failRun,
      consecutiveSuccesses: this.okRun,
      lastError: this.lastError,
      noEvidence: this.noEvidenceRounds,
    };
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
