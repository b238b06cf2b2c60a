// One long-lived monitor process (`ip monitor OBJECTS`, `nft monitor`) whose
// lines only say "something changed": the caller then reads the
// authoritative state itself (`ip -j ...`, `nft -j list ...`). Lines are
// debounced (a change is often several events: an address and its routes, a
// link and its addresses, a table and its chains). When the monitor dies it
// is restarted with backoff, and the caller told to re-read, since events may
// have been missed meanwhile.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Clock, Logger } from '../../lib/logger.js';

export interface CommandMonitorOptions {
  /** Only lines this accepts are events (default: every line). */
  filter?: (line: string) => boolean;
  debounceMs?: number;
}

export class CommandMonitor {
  private child: ChildProcess | null = null;
  private timer: unknown = null;
  private stopped = false;
  private restarts = 0;

  constructor(
    /** The monitor's argv, e.g. ['ip', 'monitor', 'route'] (tests: prefixed with ['ip', 'netns', 'exec', NS]). */
    private readonly argv: readonly string[],
    private readonly logger: Logger,
    private readonly clock: Clock,
    /** Called (debounced) after events, and after a restart. */
    private readonly onEvent: () => void,
    private readonly options: CommandMonitorOptions = {},
  ) {}

  start(): void {
    this.stopped = false;
    this.spawn();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.child?.kill('SIGTERM');
    this.child = null;
  }

  /** A read worked: the next restart starts its backoff over. */
  healthy(): void {
    this.restarts = 0;
  }

  private spawn(): void {
    if (this.stopped) return;
    const child = spawn(this.argv[0]!, this.argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    const filter = this.options.filter;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!filter || filter(line)) this.schedule();
    });
    child.on('error', (e) => this.logger.warn({ err: e, argv: this.argv }, 'monitor failed to start'));
    child.on('exit', () => {
      if (this.stopped || this.child !== child) return;
      const delay = Math.min(30_000, 200 * 2 ** this.restarts++);
      this.logger.warn({ delay, argv: this.argv }, 'monitor exited; restarting');
      this.clock.setTimeout(() => {
        this.spawn();
        this.schedule();
      }, delay);
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.onEvent();
    }, this.options.debounceMs ?? 50);
  }
}

/** `ip monitor OBJECTS`: every line is an event. */
export class IpMonitor extends CommandMonitor {
  constructor(
    /** What `ip monitor` watches: ['route', 'link'], ['address']... */
    objects: readonly string[],
    logger: Logger,
    clock: Clock,
    onEvent: () => void,
    /** argv prefix for the monitor (tests: ['ip', 'netns', 'exec', NS]). */
    prefix: readonly string[] = [],
    debounceMs = 50,
  ) {
    super([...prefix, 'ip', 'monitor', ...objects], logger, clock, onEvent, { debounceMs });
  }
}
