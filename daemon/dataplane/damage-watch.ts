// What tells the data plane that someone changed its kernel state: another
// program flushing the ruleset (Debian's nftables.service reload, OpenWrt's
// fw4 restart: `nft flush ruleset`), an admin deleting our table, rules or
// routes, a tunnel link going away. The repair follows these events instead
// of a timer: the time it takes is the time the kernel runs without our
// state, and without it only the fail-closed ip rules stand.
//
// The filters are pure and read one line of `nft monitor` or `ip monitor
// rule route link` (fixtures in test/fixtures/os/). A line is only a trigger:
// the repair reads the authoritative state itself.
//
// Our own changes are not damage, and a repair pass reads the kernel with
// six processes (issue 17: every failover and flap cost two or three such
// passes on a router's core). They are told apart without timing: `nft
// monitor` ends each generation's events with the process (the thread) that
// committed it, so a generation of this process's own nftables session is
// dropped; a route line that adds or replaces a default route of our tables
// as the plan being installed has it (DamageWatch.expect) is ours. A
// deletion, a route the plan does not have, any rule or link line, and any
// generation of another process still start a repair at once.
import { MAX_GATEWAYS, MAX_LINKS, RULE_PRIORITY_FIRST, RULE_PRIORITY_LAST, TABLE_BREAKOUT, TABLE_NAME, TABLE_TUNNEL, type RouteSpec } from './plan.js';

export interface DamageWatch {
  /** Starts watching; `onChange` is called (debounced) when our state may have been changed, and after a watcher restart. */
  start(onChange: () => void): void;
  stop(): void;
  /**
   * Other programs' interfaces our routes go through (unmanaged gateways,
   * WAN links): their coming and going is an event too (a tunnel interface
   * made again needs its route back).
   */
  watchLinks?(names: readonly string[]): void;
  /**
   * The default routes of our tables as the plan being installed has them
   * (called before each change): a route line that says one of these, or
   * one of the previous plan's, is our own write, not damage.
   */
  expect?(routes: readonly RouteSpec[]): void;
}

const NFT_OBJECT = new RegExp(`^delete (table|chain|rule|set|map) inet ${TABLE_NAME}(?: |$)`);
const NFT_ACTIVE = new RegExp(`^delete element inet ${TABLE_NAME} active `);

/**
 * A `nft monitor` line that removes something of our table: the table, a
 * chain, a rule, a set, or the default path (the `active` map's element).
 * Tag elements come and go all the time (every DNS answer, every expiry):
 * they are not damage, and our tagger restores its own.
 */
export function isOurNftEvent(line: string): boolean {
  return NFT_OBJECT.test(line) || NFT_ACTIVE.test(line);
}

/** A rule line: `5050:\tfrom 10.64.0.2 lookup 1100` (a tab; link lines have a space). */
const IP_RULE = /^(?:Deleted )?(\d+):\t/;
const IP_TABLE = /\btable (\d+)\b/;
/** A link line: `3: swg-gw1: <...>` or `Deleted 3: swg-gw1@NONE: <...>`. */
const IP_LINK = /^(?:Deleted )?\d+: (swg-[^:@\s]+)[:@]/;
const ANY_LINK = /^(?:Deleted )?\d+: ([^:@\s]+)[:@]/;

/**
 * An `ip monitor rule route link` line about our state: a rule at our
 * priorities, a route in our tables, or a tunnel link (splitwan names them
 * `swg-<name>`: a link that goes away takes its routes along, IPv4 ones
 * without a route event).
 */
export function isOurIpEvent(line: string): boolean {
  const rule = IP_RULE.exec(line);
  if (rule) {
    const p = Number(rule[1]);
    if (p >= RULE_PRIORITY_FIRST && p <= RULE_PRIORITY_LAST) return true;
  }
  const table = IP_TABLE.exec(line);
  if (table) {
    const t = Number(table[1]);
    if (t >= TABLE_TUNNEL && t <= TABLE_TUNNEL + MAX_GATEWAYS) return true;
    if (t >= TABLE_BREAKOUT && t <= TABLE_BREAKOUT + MAX_LINKS) return true;
  }
  return IP_LINK.test(line);
}

/** Our events, and a line about one of `links` (other programs' interfaces our routes go through). */
export function isOurIpEventWith(line: string, links: ReadonlySet<string>): boolean {
  if (isOurIpEvent(line)) return true;
  const other = links.size ? ANY_LINK.exec(line) : null;
  return other !== null && links.has(other[1]!);
}

const NFT_GENERATION = /^# new generation \d+ by process (\d+)\b/;

/**
 * `nft monitor`'s lines, generation by generation: our table's damage lines
 * are held until the generation's trailer names who committed it, and an
 * event only when that was not `ours` (this process's own session). Until
 * the monitor has printed a trailer (an nft too old to print them), every
 * damage line is an event at once.
 */
export class NftGenerations {
  private held = false;
  private trailers = false;

  constructor(private readonly ours: (pid: number) => boolean) {}

  /** true: an event (our state may have been changed by another program). */
  line(line: string): boolean {
    const g = NFT_GENERATION.exec(line);
    if (g) {
      this.trailers = true;
      const held = this.held;
      this.held = false;
      return held && !this.ours(Number(g[1]));
    }
    if (!isOurNftEvent(line)) return false;
    if (!this.trailers) return true;
    this.held = true;
    return false;
  }
}

/** table/type/dev/via/metric of a default route of ours, as RouteSpec or a route line says it. */
function routeKeyOf(r: { table: number; type: string; dev?: string | undefined; via?: string | undefined; metric?: number | undefined }): string {
  return [r.table, r.type, r.dev ?? '', r.via ?? '', r.type === 'prohibit' ? (r.metric ?? '') : ''].join('/');
}

export function routeSpecKey(r: RouteSpec): string {
  return routeKeyOf(r);
}

/**
 * The key of a route line that adds or replaces a default route (not a
 * `Deleted` one); null for any other line. `default dev swg-gw1 table 1100
 * scope link`, `prohibit default table 1100 metric 4000000000`, `default via
 * 10.99.2.1 dev wan0 table 1200 ...`.
 */
export function addedRouteKey(line: string): string | null {
  const w = line.trim().split(/\s+/);
  const type = w[0] === 'prohibit' ? 'prohibit' : w[0] === 'default' ? 'unicast' : null;
  if (type === null || (type === 'prohibit' && w[1] !== 'default')) return null;
  const arg = (k: string): string | undefined => {
    const i = w.indexOf(k);
    return i > 0 && i + 1 < w.length ? w[i + 1] : undefined;
  };
  const table = Number(arg('table'));
  if (!Number.isInteger(table)) return null;
  const metric = arg('metric');
  return routeKeyOf({ table, type, dev: arg('dev'), via: arg('via'), metric: metric === undefined ? undefined : Number(metric) });
}

/** A DamageWatch for unit tests: `emit()` is an event. */
export class FakeDamageWatch implements DamageWatch {
  private onChange: (() => void) | null = null;
  started = 0;
  stopped = 0;
  /** What expect() was told last. */
  expected: readonly RouteSpec[] = [];

  expect(routes: readonly RouteSpec[]): void {
    this.expected = routes;
  }

  start(onChange: () => void): void {
    this.onChange = onChange;
    this.started++;
  }

  stop(): void {
    this.onChange = null;
    this.stopped++;
  }

  get watching(): boolean {
    return this.onChange !== null;
  }

  emit(): void {
    this.onChange?.();
  }
}
