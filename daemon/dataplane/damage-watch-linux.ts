// The DamageWatch on Linux: `nft monitor` for our table, `ip monitor rule
// route link` for our ip rules, tables and tunnel links. Two long-lived
// children (restarted with backoff if they die: the data plane then re-reads
// everything); lines are filtered by damage-watch.ts and debounced.
import type { Clock, Logger } from '../../lib/logger.js';
import { isOurIpEventWith, isOurNftEvent, type DamageWatch } from './damage-watch.js';
import { CommandMonitor } from './ip-monitor-linux.js';

export class LinuxDamageWatch implements DamageWatch {
  private monitors: CommandMonitor[] = [];
  /** Unmanaged gateways' interfaces: read by the filter at each line, so a reload needs no restart. */
  private links: ReadonlySet<string> = new Set();

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
    /** argv prefix for the monitors (tests: ['ip', 'netns', 'exec', NS]). */
    private readonly prefix: readonly string[] = [],
    private readonly debounceMs = 30,
  ) {}

  start(onChange: () => void): void {
    this.stop();
    this.monitors = [
      new CommandMonitor([...this.prefix, 'nft', 'monitor'], this.logger, this.clock, onChange, { filter: isOurNftEvent, debounceMs: this.debounceMs }),
      new CommandMonitor([...this.prefix, 'ip', 'monitor', 'rule', 'route', 'link'], this.logger, this.clock, onChange, { filter: (l) => isOurIpEventWith(l, this.links), debounceMs: this.debounceMs }),
    ];
    for (const m of this.monitors) m.start();
  }

  watchLinks(names: readonly string[]): void {
    this.links = new Set(names);
  }

  stop(): void {
    for (const m of this.monitors) m.stop();
    this.monitors = [];
  }
}
