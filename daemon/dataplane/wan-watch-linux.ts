// Follows the default route for `breakout.interface: auto` (a laptop moving
// between networks), by watching, not polling: one long-lived
// `ip monitor route link` (ip-monitor-linux.ts), whose lines only say
// "something changed"; then the authoritative state is read with
// `ip -j route show default`. Link events
// matter because a link going down removes its IPv4 routes without a route
// event (docs/design/dataplane-notes.md §10).
import type { Clock, Logger } from '../../lib/logger.js';
import type { Runner } from '../exec-linux.js';
import { parseIpRoutes, type IpRoute } from '../os-parse.js';
import { IpMonitor } from './ip-monitor-linux.js';

export interface WanState {
  /** The interface of the preferred IPv4 default route, or null when there is none. */
  ifname: string | null;
  gateway: string | null;
  ifname6: string | null;
}

/** The preferred default route: the lowest metric, not a blackhole. */
export function pickDefault(routes: readonly IpRoute[]): IpRoute | null {
  const usable = routes.filter((r) => r.dst === 'default' && (r.type === 'unicast' || r.type === undefined) && r.dev);
  usable.sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0));
  return usable[0] ?? null;
}

export class WanWatcher {
  private readonly monitor: IpMonitor;
  private last: string | null = null;

  constructor(
    private readonly run: Runner,
    private readonly logger: Logger,
    clock: Clock,
    private readonly onChange: (wan: WanState) => void,
    /** argv prefix for the monitor (tests: ['ip', 'netns', 'exec', NS]). */
    prefix: readonly string[] = [],
    debounceMs = 50,
  ) {
    this.monitor = new IpMonitor(['route', 'link'], logger, clock, () => void this.check(), prefix, debounceMs);
  }

  async start(): Promise<WanState> {
    const s = await this.read();
    this.last = JSON.stringify(s);
    this.monitor.start();
    return s;
  }

  stop(): void {
    this.monitor.stop();
  }

  async read(): Promise<WanState> {
    const v4 = pickDefault(parseIpRoutes((await this.run.run(['ip', '-j', '-4', 'route', 'show', 'table', 'main', 'default'])).stdout));
    const v6 = pickDefault(parseIpRoutes((await this.run.run(['ip', '-j', '-6', 'route', 'show', 'table', 'main', 'default'])).stdout));
    return { ifname: v4?.dev ?? null, gateway: v4?.gateway ?? null, ifname6: v6?.dev ?? null };
  }

  private async check(): Promise<void> {
    try {
      const s = await this.read();
      const key = JSON.stringify(s);
      if (key === this.last) return;
      this.last = key;
      this.monitor.healthy();
      this.logger.info({ wan: s.ifname, gateway: s.gateway }, 'default route changed');
      this.onChange(s);
    } catch (e) {
      this.logger.warn({ err: e }, 'reading the default route failed');
    }
  }
}
