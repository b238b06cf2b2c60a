// The DamageWatch on Linux: `nft monitor` for our table, `ip monitor rule
// route link` for our ip rules, tables and tunnel links. Two long-lived
// children (restarted with backoff if they die: the data plane then re-reads
// everything); lines are filtered by damage-watch.ts and debounced. Our own
// changes are dropped there (issue 17): nftables generations this process
// committed, and route lines that say what the plan being installed says.
import { readFileSync } from 'node:fs';
import type { Clock, Logger } from '../../lib/logger.js';
import { addedRouteKey, isOurIpEventWith, NftGenerations, routeSpecKey, type DamageWatch } from './damage-watch.js';
import { CommandMonitor } from './ip-monitor-linux.js';
import type { RouteSpec } from './plan.js';

/** This process's threads seen committing (the libnftables session runs on a worker thread). */
const ownThreads = new Set<number>([process.pid]);

/**
 * Whether `pid` (a thread id, as nftables names the committer) is this
 * process: one of its threads, or a command it runs (`nft -f -`, while its
 * /proc entry still exists).
 */
export function isThisProcess(pid: number): boolean {
  if (ownThreads.has(pid)) return true;
  try {
    readFileSync(`/proc/${process.pid}/task/${pid}/comm`);
    ownThreads.add(pid);
    return true;
  } catch {
    // not a thread of ours
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
  } catch {
    return false; // gone already: taken as another program's (a repair that finds nothing)
  }
}

export class LinuxDamageWatch implements DamageWatch {
  private monitors: CommandMonitor[] = [];
  /** Unmanaged gateways' interfaces: read by the filter at each line, so a reload needs no restart. */
  private links: ReadonlySet<string> = new Set();
  /** The default routes of the plan being installed, and of the one before (a line may come after the next change began). */
  private routes: ReadonlySet<string> = new Set();
  private routesBefore: ReadonlySet<string> = new Set();

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
    /** argv prefix for the monitors (tests: ['ip', 'netns', 'exec', NS]). */
    private readonly prefix: readonly string[] = [],
    private readonly debounceMs = 30,
    /** Whether a committing thread or process is ours (tests: another rule). */
    private readonly ours: (pid: number) => boolean = isThisProcess,
  ) {}

  start(onChange: () => void): void {
    this.stop();
    const nft = new NftGenerations(this.ours);
    this.monitors = [
      new CommandMonitor([...this.prefix, 'nft', 'monitor'], this.logger, this.clock, onChange, { filter: (l) => nft.line(l), debounceMs: this.debounceMs }),
      new CommandMonitor([...this.prefix, 'ip', 'monitor', 'rule', 'route', 'link'], this.logger, this.clock, onChange, { filter: (l) => isOurIpEventWith(l, this.links) && !this.expected(l), debounceMs: this.debounceMs }),
    ];
    for (const m of this.monitors) m.start();
  }

  watchLinks(names: readonly string[]): void {
    this.links = new Set(names);
  }

  expect(routes: readonly RouteSpec[]): void {
    this.routesBefore = this.routes;
    this.routes = new Set(routes.map(routeSpecKey));
  }

  stop(): void {
    for (const m of this.monitors) m.stop();
    this.monitors = [];
  }

  /** A route line that adds what we are installing. */
  private expected(line: string): boolean {
    const k = addedRouteKey(line);
    return k !== null && (this.routes.has(k) || this.routesBefore.has(k));
  }
}
