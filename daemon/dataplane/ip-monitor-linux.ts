// One long-lived `ip monitor OBJECTS` whose lines only say "something
// changed": the caller then reads the authoritative state itself (`ip -j
// ...`). Lines are debounced (a change is often several events: an address
// and its routes, a link and its addresses). When the monitor dies it is
// restarted with backoff, and the caller told to re-read, since events may
// have been missed meanwhile.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Clock, Logger } from '../../lib/logger.js';

export class IpMonitor {
  private child: ChildProcess | null = null;
  private timer: unknown = null;
  private stopped = false;
  private restarts = 0;

  constructor(
    /** What `ip monitor` watches: ['route', 'link'], ['address']... */
    private readonly objects: readonly string[],
    private readonly logger: Logger,
    private readonly clock: Clock,
    /** Called (debounced) after events, and after a restart. */
    private readonly onEvent: () => void,
    /** argv prefix for the monitor (tests: ['ip', 'netns', 'exec', NS]). */
    private readonly prefix: readonly string[] = [],
    private readonly debounceMs = 50,
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
    const argv = [...this.prefix, 'ip', 'monitor', ...this.objects];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', () => this.schedule());
    child.on('error', (e) => this.logger.warn({ err: e, objects: this.objects }, 'ip monitor failed to start'));
    child.on('exit', () => {
      if (this.stopped || this.child !== child) return;
      const delay = Math.min(30_000, 200 * 2 ** this.restarts++);
      this.logger.warn({ delay, objects: this.objects }, 'ip monitor exited; restarting');
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
    }, this.debounceMs);
  }
}
