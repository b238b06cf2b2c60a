// What tells the data plane that someone changed its kernel state: another
// program flushing the ruleset (Debian's nftables.service reload, OpenWrt's
// fw4 restart: `nft flush ruleset`), an admin deleting our table, rules or
// routes, a tunnel link going away. The repair follows these events instead
// of a timer: the time it takes is the time the kernel runs without our
// state, and without it only the fail-closed ip rules stand.
//
// The filters are pure and read one line of `nft monitor` or `ip monitor
// rule route link` (fixtures in test/fixtures/os/). A line is only a trigger:
// the repair reads the authoritative state itself, and our own changes
// (applies, flips) trigger a repair that finds nothing to do.
import { MAX_GATEWAYS, MAX_LINKS, RULE_PRIORITY_FIRST, RULE_PRIORITY_LAST, TABLE_BREAKOUT, TABLE_NAME, TABLE_TUNNEL } from './plan.js';

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

/** A DamageWatch for unit tests: `emit()` is an event. */
export class FakeDamageWatch implements DamageWatch {
  private onChange: (() => void) | null = null;
  started = 0;
  stopped = 0;

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
