// The last hour of what the overview charts: each path's RTT and loss, DNS
// queries per second and the cache hit ratio, sampled from the status report
// every SAMPLE_MS into a bounded ring (an hour's worth). Only runs while the
// dashboard is on.
import type { Clock, Logger } from '../../lib/logger.js';
import type { StatusReport } from '../control/protocol.js';

export const SAMPLE_MS = 10_000;
const KEEP = 360; // one hour

export interface HistorySample {
  /** Unix ms. */
  at: number;
  /** Per path (gateway name, `breakout`, or `link:NAME` for a WAN link): RTT in ms (null: none measured) and loss 0..1. */
  paths: Record<string, { rttMs: number | null; loss: number; state: string }>;
  /** DNS queries per second since the previous sample; null for the first. */
  qps: number | null;
  /** Cache hits / queries since the previous sample; null when there were none. */
  hitRatio: number | null;
}

/** A WAN link's key in a sample's paths. */
export const linkKey = (name: string): string => `link:${name}`;

/** One sample from two status reports (pure). */
export function sampleOf(now: StatusReport, prev: StatusReport | null, at: number, prevAt: number | null): HistorySample {
  const paths: HistorySample['paths'] = {};
  for (const g of now.gateways) paths[g.name] = { rttMs: g.rttMs, loss: g.loss, state: g.state };
  paths.breakout = { rttMs: now.breakout.rttMs, loss: 0, state: now.breakout.state };
  // `link:` keeps a link apart from a gateway of the same name (their names are separate namespaces in status).
  for (const l of now.links ?? []) paths[linkKey(l.name)] = { rttMs: l.rttMs, loss: l.loss, state: l.state };
  let qps: number | null = null;
  let hitRatio: number | null = null;
  if (prev !== null && prevAt !== null && at > prevAt) {
    const q = now.dns.queries - prev.dns.queries;
    qps = Math.max(0, q) / ((at - prevAt) / 1000);
    hitRatio = q > 0 ? Math.max(0, now.dns.hits - prev.dns.hits) / q : null;
  }
  return { at, paths, qps, hitRatio };
}

export class HealthHistory {
  private readonly samples: HistorySample[] = [];
  private prev: { report: StatusReport; at: number } | null = null;
  private timer: unknown = null;

  constructor(private readonly d: { status: () => Promise<StatusReport>; clock: Clock; logger: Logger }) {}

  start(): void {
    if (this.timer !== null) return;
    const tick = (): void => {
      void this.sample().catch((e: unknown) => this.d.logger.debug({ err: e }, 'dashboard history sample failed'));
      this.timer = this.d.clock.setTimeout(tick, SAMPLE_MS);
    };
    tick();
  }

  stop(): void {
    if (this.timer !== null) this.d.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  async sample(): Promise<void> {
    const report = await this.d.status();
    const at = this.d.clock.wall();
    this.samples.push(sampleOf(report, this.prev?.report ?? null, at, this.prev?.at ?? null));
    if (this.samples.length > KEEP) this.samples.shift();
    this.prev = { report, at };
  }

  list(): readonly HistorySample[] {
    return this.samples;
  }
}
