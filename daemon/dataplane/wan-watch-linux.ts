// Follows the default route for `breakout.interface: auto` (a laptop moving
// between networks), by watching, not polling: one long-lived
// `ip monitor route link`, whose lines only say "something changed"; then the
// authoritative state is read with `ip -j route show default`. Link events
// matter because a link going down removes its IPv4 routes without a route
// event (docs/design/dataplane-notes.md §10).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Clock, Logger } from '../../config/logger.js';
import type { Runner } from '../exec-linux.js';
import { parseIpRoutes, type IpRoute } from '../os-parse.js';

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
  private child: ChildProcess | null = null;
  private timer: unknown = null;
  private last: string | null = null;
  private stopped = false;
  private restarts = 0;

  constructor(
    private readonly run: Runner,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly onChange: (wan: WanState) => void,
    /** argv prefix for the monitor (tests: ['ip', 'netns', 'exec', NS]). */
    private readonly prefix: readonly string[] = [],
    private readonly debounceMs = 50,
  ) {}

  async start(): Promise<WanState> {
    const s = await this.read();
    this.last = JSON.stringify(s);
    this.spawnMonitor();
    return s;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.child?.kill('SIGTERM');
    this.child = null;
  }

  async read(): Promise<WanState> {
    const v4 = pickDefault(parseIpRoutes((await this.run.run(['ip', '-j', '-4', 'route', 'show', 'table', 'main', 'default'])).stdout));
    const v6 = pickDefault(parseIpRoutes((await this.run.run(['ip', '-j', '-6', 'route', 'show', 'table', 'main', 'default'])).stdout));
    return { ifname: v4?.dev ?? null, gateway: v4?.gateway ?? null, ifname6: v6?.dev ?? null };
  }

  private spawnMonitor(): void {
    if (this.stopped) return;
    const argv = [...this.prefix, 'ip', 'monitor', 'route', 'link'];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', () => this.schedule());
    child.on('error', (e) => this.logger.warn({ err: e }, 'ip monitor failed to start'));
    child.on('exit', () => {
      if (this.stopped || this.child !== child) return;
      // Restart with backoff, and re-read: events may have been missed meanwhile.
      const delay = Math.min(30_000, 200 * 2 ** this.restarts++);
      this.logger.warn({ delay }, 'ip monitor exited; restarting');
      this.clock.setTimeout(() => {
        this.spawnMonitor();
        this.schedule();
      }, delay);
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.check();
    }, this.debounceMs);
  }

  private async check(): Promise<void> {
    try {
      const s = await this.read();
      const key = JSON.stringify(s);
      if (key === this.last) return;
      this.last = key;
      this.restarts = 0;
      this.logger.info({ wan: s.ifname, gateway: s.gateway }, 'default route changed');
      this.onChange(s);
    } catch (e) {
      this.logger.warn({ err: e }, 'reading the default route failed');
    }
  }
}
