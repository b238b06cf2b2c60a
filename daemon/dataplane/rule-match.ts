// A rule's matchers beyond destination and source addresses, as nftables
// conditions: protocol and ports, LAN devices by MAC address, and whether
// its schedule has it on now. Pure; plan.ts calls these from the classify
// rendering, so port, device and schedule rules are enforced in the kernel
// on a flow's first packet, like CIDR rules.
//
// Devices match by MAC (`ether saddr`, router mode: LAN packets reach the
// prerouting hook with their Ethernet header), so a device whose address
// changes (a new DHCP lease, IPv6 privacy addresses) stays matched. A device
// named by host name is matched by the MACs its DHCP lease or /etc/ethers
// gives now; one not found matches nothing until it is (never everything).
//
// A schedule switches the rule's lines on and off: the daemon re-renders the
// ruleset at each boundary (daemon/rule-scheduler.ts), in one transaction,
// with no config reload. Flows already classified keep their path (their
// conntrack mark), unless the rule says `reroute: true`: then its lines are
// also evaluated for every packet before that fast path (the `reroute`
// chain), so at a boundary running flows move: on, to the rule's path; off,
// their saved path is cleared and the next packet is classified again.
import type { RuleConfig } from '../../config/types.js';
import { portsText, scheduleText } from '../../config/rule-matchers.js';

/** What plan.ts keeps of a rule's matchers (PlannedRule.match). */
export interface RuleMatch {
  protocol: 'tcp' | 'udp' | null;
  /** nft port expressions: "443", "27000-27050". */
  ports: string[];
  /** null: the rule names no devices; else the MACs they have now (empty: none known, matches nothing). */
  macs: string[] | null;
  /** Whether the schedule has the rule on now (true without `when`). */
  active: boolean;
  reroute: boolean;
  /** Why the rule renders no lines now, for the ruleset's comment. */
  off: string | null;
}

/** What the daemon knows at planning time: the schedule state and the devices' MACs. */
export interface RuleMatchContext {
  active(rule: RuleConfig): boolean;
  /** The MACs a device name has now (DHCP leases, /etc/ethers); [] when unknown. */
  macsOf(name: string): string[];
}

/** Without a context: schedules on, names resolve to nothing. */
const NO_CONTEXT: RuleMatchContext = { active: () => true, macsOf: () => [] };

/** The rule's matchers for the plan; undefined when it has none of them (nothing changes for plain rules). */
export function planRuleMatch(rule: RuleConfig, ctx: RuleMatchContext = NO_CONTEXT): RuleMatch | undefined {
  const ports = rule.ports ?? [];
  const devices = rule.devices ?? [];
  if (ports.length === 0 && !rule.protocol && devices.length === 0 && !rule.when) return undefined;
  let macs: string[] | null = null;
  if (devices.length > 0) {
    const set = new Set<string>();
    for (const d of devices) for (const m of d.mac !== null ? [d.mac] : ctx.macsOf(d.device)) set.add(m);
    macs = [...set].sort();
  }
  const active = rule.when ? ctx.active(rule) : true;
  let off: string | null = null;
  if (!active) off = `off now (when: ${scheduleText(rule.when!)})`;
  else if (macs !== null && macs.length === 0) off = `no device of ${devices.map((d) => d.device).join(', ')} is known now`;
  return { protocol: rule.protocol ?? null, ports: portsText(ports).split(',').filter((p) => p !== ''), macs, active, reroute: rule.reroute === true && !!rule.when, off };
}

const setOf = (xs: readonly string[]): string => (xs.length === 1 ? xs[0]! : `{ ${xs.join(', ')} }`);

/** The "who" condition of a rule's devices, or null. Sources and devices are both clients: either matches. */
export function deviceCondition(m: RuleMatch | undefined): string | null {
  return m?.macs && m.macs.length > 0 ? `ether saddr ${setOf(m.macs)}` : null;
}

/** Conditions ANDed onto every line of the rule (protocol, ports), with a trailing space; '' for none. */
function l4Condition(m: RuleMatch | undefined): string {
  if (!m || (m.protocol === null && m.ports.length === 0)) return '';
  const proto = m.protocol ?? '{ tcp, udp }';
  return m.ports.length ? `meta l4proto ${proto} th dport ${setOf(m.ports)} ` : `meta l4proto ${proto} `;
}

/** Whether a client and a destination condition can hold together (an Ethernet address goes with either family). */
function sameFamily(who: string, dst: string): boolean {
  if (who.startsWith('ether ')) return true;
  return who.startsWith('ip6') === dst.startsWith('ip6');
}

/**
 * The rule's lines without their verdict: its client conditions (sources,
 * and devices added here) times its destination conditions, each with the
 * protocol and ports. null: the rule matches nothing now (`m.off` says why).
 */
export function ruleConditionLines(srcConds: readonly string[], dstConds: readonly string[], m: RuleMatch | undefined): string[] | null {
  if (m?.off) return null;
  // Devices none of which is known match nothing (never every client).
  if (m?.macs && m.macs.length === 0) return null;
  const who = [...srcConds];
  const dev = deviceCondition(m);
  if (dev) who.push(dev);
  const l4 = l4Condition(m).trimEnd();
  const join = (...parts: string[]): string => parts.filter((p) => p !== '').join(' ');
  if (dstConds.length === 0 && who.length === 0) return l4 ? [l4] : [];
  if (dstConds.length === 0) return who.map((s) => join(s, l4));
  if (who.length === 0) return dstConds.map((d) => join(d, l4));
  const out: string[] = [];
  // Clients and destinations together: "these destinations from these clients".
  for (const s of who) for (const d of dstConds) if (sameFamily(s, d)) out.push(join(s, d, l4));
  return out;
}

/**
 * The `reroute` chain's lines for one rule (the lines it would have when on,
 * whatever the schedule says now): on, a matching packet takes the rule's
 * path and its flow keeps it; off, a flow that has a path is classified
 * again. `markExpr` is the hex mark, `resolve` the chain that resolves it.
 */
export function rerouteLines(lines: readonly string[], active: boolean, markHex: string): string[] {
  return lines.map((c) => (active ? `${c} meta mark set ${markHex} ct mark set meta mark goto resolve` : `${c} ct mark set 0`));
}

/** The identity of a rule's matchers for its tag sets' names; '' for a rule without them (names stay as they were). */
export function matchIdentity(rule: RuleConfig): string {
  const parts = {
    ports: (rule.ports ?? []).map((p) => [p.from, p.to]),
    protocol: rule.protocol ?? null,
    devices: (rule.devices ?? []).map((d) => d.device),
    geoip: (rule.geoip ?? []).map((g) => g.code),
    asns: (rule.asns ?? []).map((a) => a.asn),
    when: rule.when ? scheduleText(rule.when) : null,
  };
  const empty = parts.ports.length + parts.devices.length + parts.geoip.length + parts.asns.length === 0 && !parts.protocol && !parts.when;
  return empty ? '' : JSON.stringify(parts);
}
