// The data plane's desired state, and pure functions that render it into an
// nftables ruleset, ip rules and routes. Nothing here touches the system: the
// Linux adapter applies what these functions return, and tests compare it.
//
// Design (proven in docs/design/dataplane-notes.md):
// - Every path has an fwmark (mask 0xff00). `tunnel` is a logical mark that a
//   map, `active`, turns into the active gateway's mark on every packet; an
//   empty `active` is the kill switch. Failover is one map update.
// - A flow's first packet is classified by the rules, in config order: CIDR
//   and source rules inline, domain rules through per-rule sets of addresses
//   the resolver tagged. The logical mark is saved in conntrack, so a flow
//   keeps its path and a failover moves tunnel flows as a whole.
// - Static per-gateway routing tables with a prohibit backstop; ip rules at
//   fixed priorities 5000-5099 that only splitwan uses.
// - Fail closed without nftables: traffic nobody marked (this machine's own
//   in host mode, the LAN's in router mode) and anything sent from a tunnel
//   address is routed into the tunnel path's table (1100: the active
//   gateway's tunnel), never by main; only marked traffic reaches main. So a
//   flushed ruleset, or a packet the kernel makes itself (a reset, an ICMP
//   error), cannot leave by the WAN. Replies to inbound connections get the
//   path they came in on (a ct mark set on the way in).
import { createHash } from 'node:crypto';
import { formatIp, parseCidr, parseIp, type ParsedCidr } from '../../lib/ip.js';
import type { Config, LinkConfig, RuleConfig, Target } from '../../config/types.js';
import { TAG_SET_SIZE } from './tag-bounds.js';
import { portPathMarkLines, portPathRules } from './port-paths.js';
import { PORTAL_SETS, portalMatchLines, portalSetLines } from './portal-rules.js'; // issue 16: captive portals
import { LINK_LOCAL } from '../local-nets.js';
import { matchIdentity, planRuleMatch, rerouteLines, ruleConditionLines, type RuleMatch, type RuleMatchContext } from './rule-match.js';
import { ruleListNames } from '../../config/lists/geodata.js';
import { appChains, appDnsChain, appDnsGuardLines, appMarkChain, planAppPins, type AppCgroupInput, type PlannedAppPin } from './app-rules.js'; // issue 16: per-app split

export const TABLE_NAME = 'splitwan';
export const MARK_MASK = 0xff00;
export const MARK_BREAKOUT = 0x1000;
export const MARK_BLOCK = 0x1e00;
export const MARK_TUNNEL = 0x1f00;
/**
 * Low bits of the saved (ct) mark, outside MARK_MASK so ip rules ignore them.
 * UNMATCHED: no rule matched the flow (it took the default path): with the
 * proxy on, such flows to the proxy's ports are its business. PROXIED: one of
 * those, redirected to the proxy (which dials the path itself).
 */
export const MARK_UNMATCHED = 0x1;
export const MARK_PROXIED = 0x2;
/** Gateway i (0-based, config order) gets 0x1100 + i * 0x100; 0x1e00 and 0x1f00 are taken. */
export const MAX_GATEWAYS = 13;
export const TABLE_TUNNEL = 1100;
export const RULE_PRIORITY_FIRST = 5000;
export const RULE_PRIORITY_LAST = 5099;
/** `from <tunnel address>` rules, one per distinct address and family. */
const PRIORITY_FROM_TUNNEL = RULE_PRIORITY_FIRST + 50;
const MAX_TUNNEL_ADDRESSES = 30;
/** Unmarked traffic → the tunnel path: host mode one rule (iif lo), router mode one per LAN interface. */
const PRIORITY_UNMARKED = RULE_PRIORITY_FIRST + 80;
export const MAX_LAN_INTERFACES = 19;
/**
 * WAN links (breakout.links): link i (its slot) gets mark 0x2000 + i * 0x100
 * and table 1201 + i; table 1200 is the breakout's (the best link's route),
 * which the breakout mark looks up instead of main. Their ip rules sit at
 * 5011 + i, and 5019 keeps any 0x2000 mark from reaching main.
 */
export const MAX_LINKS = 8;
export const MARK_LINKS = 0x2000;
export const TABLE_BREAKOUT = 1200;
const PRIORITY_LINKS = RULE_PRIORITY_FIRST + 11;
const PRIORITY_LINKS_PROHIBIT = RULE_PRIORITY_FIRST + 19;

export function linkMark(index: number): number {
  if (index < 0 || index >= MAX_LINKS) throw new RangeError(`at most ${MAX_LINKS} links`);
  return MARK_LINKS + index * 0x100;
}
export function linkTable(index: number): number {
  return TABLE_BREAKOUT + 1 + index;
}

export function gatewayMark(index: number): number {
  if (index < 0 || index >= MAX_GATEWAYS) throw new RangeError(`at most ${MAX_GATEWAYS} gateways`);
  return 0x1100 + index * 0x100;
}
export function gatewayTable(index: number): number {
  return TABLE_TUNNEL + 1 + index;
}

/**
 * Which slot (mark and table) each gateway has: a gateway keeps its slot for
 * as long as the daemon runs, whatever reloads add, remove or reorder, so a
 * reload never moves a running gateway's flows, sockets and routes to another
 * mark mid-flight. New names take the lowest free slot; a name no longer
 * configured keeps its slot (a reload put back after a failed apply finds it
 * again) until that slot is needed. Pure: `previous` is not changed.
 */
export function assignGatewaySlots(names: readonly string[], previous: ReadonlyMap<string, number> = new Map()): Map<string, number> {
  return assignSlots(names, previous, MAX_GATEWAYS, 'gateways');
}

/** The same for WAN links (their marks and tables): a link keeps its slot across reloads. */
export function assignLinkSlots(names: readonly string[], previous: ReadonlyMap<string, number> = new Map()): Map<string, number> {
  return assignSlots(names, previous, MAX_LINKS, 'links');
}

function assignSlots(names: readonly string[], previous: ReadonlyMap<string, number>, max: number, what: string): Map<string, number> {
  if (names.length > max) throw new RangeError(`at most ${max} ${what}`);
  const out = new Map(previous);
  const wanted = new Set(names);
  const used = (): Set<number> => new Set(out.values());
  for (const n of names) {
    if (out.has(n)) continue;
    let free = Array.from({ length: max }, (_, i) => i).find((i) => !used().has(i));
    if (free === undefined) {
      // Every slot is remembered: the lowest one of a gateway that is gone is reused.
      const gone = [...out].filter(([name]) => !wanted.has(name)).sort((a, b) => a[1] - b[1])[0]!;
      out.delete(gone[0]);
      free = gone[1];
    }
    out.set(n, free);
  }
  return out;
}

export interface PlannedGateway {
  name: string;
  ifname: string;
  mark: number;
  table: number;
  /** The tunnel's own addresses (its wg-quick Address=, without prefix length): what the kernel answers from. */
  addrs4: string[];
  addrs6: string[];
  /**
   * Whether IPv6 can go through it: an IPv6 address and an IPv6 AllowedIPs.
   * Without, IPv6 routed into it would be black-holed (masquerade has no
   * source, WireGuard no peer): the ruleset refuses it at once instead.
   */
  ipv6: boolean;
  /**
   * A gateway another program made: `interface` (routed into, like ours) or
   * `table` (its own routing table, `lookup`: our ip rule points there and
   * its ifname is ''). Unset: one of splitwan's WireGuard tunnels.
   */
  unmanaged?: 'interface' | 'table';
  /** kind table: the table its mark looks up. */
  lookup?: number;
}

/** One WAN link (breakout.links) as the kernel sees it. */
export interface PlannedLink {
  name: string;
  ifname: string;
  mark: number;
  table: number;
  /** Next hop per family (configured, else the link's default route in main); null: straight out of the interface. */
  via4: string | null;
  via6: string | null;
  weight: number;
  metered: boolean;
}

/** One config rule as the kernel sees it. */
export interface PlannedRule {
  index: number;
  /** Stable across edits of other rules: names its tag sets. */
  id: string;
  /** The mark of the path the rule's traffic takes now (the first healthy of its via). */
  mark: number;
  dst4: string[];
  dst6: string[];
  src4: string[];
  src6: string[];
  /** Domain or list-name rules: the resolver tags addresses into this rule's sets. */
  tagged: boolean;
  /** Ports, protocol, devices, schedule (rule-match.ts); absent for rules without them. */
  match?: RuleMatch;
}

export interface DataplanePlan {
  mode: Config['mode'];
  lan: string[];
  wan: string;
  gateways: PlannedGateway[];
  /** The gateway the `tunnel` path uses now; null: none healthy. */
  active: string | null;
  /** WAN links (breakout.links); unset or empty: one WAN (`wan`), breakout by main. */
  links?: PlannedLink[];
  /** The link `breakout` uses now (table 1200: splitwan's own sockets, WireGuard's UDP; new flows without balance). */
  activeLink?: string | null;
  /** With balance: the links new breakout flows are spread over, by weight (each flow keeps its link); null: all by activeLink. */
  balance?: { name: string; weight: number }[] | null;
  killSwitch: boolean;
  rules: PlannedRule[];
  /** The mark for traffic no rule matches. */
  defaultMark: number;
  /** Port of splitwan's resolver; LAN DNS to any other server is redirected there (router mode). */
  dnsPort: number | null;
  /**
   * Host mode: where this machine's own DNS to other servers (port 53, not
   * to a local address, not from splitwan's marked sockets) is sent instead:
   * the resolver's loopback addresses. A family without one has such DNS
   * rejected, so no application bypasses the resolver (and its tags).
   * null: no redirect (router mode, or nothing to send it to).
   */
  localDns: { v4: LocalDns | null; v6: LocalDns | null } | null;
  /**
   * The transparent proxy: TCP flows no rule matched, to `ports`, are
   * redirected to `port`; with blockQuic, UDP/443 of such flows is rejected so
   * browsers fall back to TCP where the SNI shows. null: off.
   */
  proxy: { port: number; ports: number[]; blockQuic: boolean } | null;
  /**
   * `dns.blockEncryptedDns`: clients' DNS-over-TLS (853) and the DoH
   * endpoints' addresses (443, from `dns.dohLists`) are rejected, so they
   * fall back to splitwan's resolver. null: off.
   */
  encryptedDns: { v4: string[]; v6: string[] } | null;
  /** splitwan's own sockets choose their path by source port, not SO_MARK (no native code): port-paths.ts. */
  portPaths?: boolean;
  /**
   * Allow-LAN (host mode, `tunnel.allowLan`): this machine's own networks
   * (daemon/local-nets.ts) take the breakout when no rule claimed them, so
   * the kill switch never cuts the printer or a portal's gateway. null: off.
   */
  allowLan?: { v4: string[]; v6: string[] } | null;
  /** Per-app split (app-rules.ts): pinned cgroups, ahead of the rules; unset: none. */
  apps?: PlannedAppPin[];
}

export interface LocalDns {
  host: string;
  port: number;
}

/** The path marks a Target can resolve to, given which paths are healthy. */
export function targetMark(t: Target, gateways: readonly PlannedGateway[], links: readonly PlannedLink[] = []): number {
  if (t === 'breakout') return MARK_BREAKOUT;
  if (t === 'tunnel') return MARK_TUNNEL;
  if (t === 'block') return MARK_BLOCK;
  if (t.startsWith('link:')) {
    const l = links.find((x) => `link:${x.name}` === t);
    if (!l) throw new Error(`unknown link in ${t}`);
    return l.mark;
  }
  const g = gateways.find((x) => `gw:${x.name}` === t);
  if (!g) throw new Error(`unknown gateway in ${t}`);
  return g.mark;
}

/**
 * The first candidate of a via list that is usable now: breakout, block and
 * tunnel always are (tunnel's own health is the `active` map's business); a
 * pinned gateway or link is when `healthy` says so (gateway and link names
 * never collide). Falls back to the last candidate, so a rule pinned to a
 * dead gateway fails closed rather than leaking.
 */
export function pickTarget(via: readonly Target[], healthy: (gateway: string) => boolean): Target {
  for (const t of via) {
    if (t.startsWith('gw:') ? healthy(t.slice(3)) : t.startsWith('link:') ? healthy(t.slice(5)) : true) return t;
  }
  return via[via.length - 1]!;
}

export function ruleId(rule: RuleConfig): string {
  const h = createHash('sha256');
  const extra = matchIdentity(rule);
  h.update(JSON.stringify([rule.domains.map((d) => d.pattern), rule.cidrs.map((c) => c.cidr), rule.sources.map((s) => s.cidr), rule.lists, ...(extra ? [extra] : [])]));
  return h.digest('hex').slice(0, 8);
}

/** The addresses of interface CIDRs (10.64.0.2/32 → 10.64.0.2), per family, in canonical form. */
function hostAddresses(cidrs: readonly string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const c of cidrs) {
    const ip = parseIp(c.split('/')[0]!.trim());
    if (ip) (ip.family === 4 ? v4 : v6).push(formatIp(ip));
  }
  return { v4, v6 };
}

function split(cidrs: readonly string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const c of cidrs) {
    const p = parseCidr(c) as ParsedCidr;
    (p.family === 4 ? v4 : v6).push(p.text);
  }
  return { v4, v6 };
}

/** Builds the plan from the config, the list contents' CIDRs, and health. */
export function planDataplane(input: {
  config: Config;
  /** CIDRs per list name (from the loaded lists). */
  listCidrs: ReadonlyMap<string, readonly string[]>;
  wan: string;
  active: string | null;
  healthy: (gateway: string) => boolean;
  dnsPort: number | null;
  /** Host mode: the resolver's addresses own DNS is redirected to (see DataplanePlan.localDns). */
  localDns?: DataplanePlan['localDns'];
  /** blockEncryptedDns: the DoH endpoints' CIDRs; default: those of `dns.dohLists`. */
  dohCidrs?: readonly string[];
  /** Each gateway's slot (assignGatewaySlots); default: config order. */
  slots?: ReadonlyMap<string, number>;
  /** breakout.links: each link's slot (assignLinkSlots; default: config order), the best link now, next hops found in main. */
  links?: {
    slots?: ReadonlyMap<string, number>;
    /** The link breakout uses (the link monitor's choice); default: the preferred one. */
    active: string | null;
    /** Default routes in main by interface (a link without `gateway:` uses its own). */
    nextHops?: ReadonlyMap<string, { v4?: string; v6?: string }>;
  };
  portPaths?: boolean;
  /** Host mode, allow-LAN: this machine's own networks (localNets); default: link-local only. */
  localNets?: { v4: readonly string[]; v6: readonly string[] };
  /** Schedules and device MACs now (rule-match.ts); default: schedules on, device names unknown. */
  match?: RuleMatchContext;
  /** Per-app split: the pinned cgroups (daemon/apps/). */
  apps?: readonly AppCgroupInput[];
}): DataplanePlan {
  const { config } = input;
  const unmanaged = config.tunnel.unmanaged ?? [];
  if (config.tunnel.gateways.length + unmanaged.length > MAX_GATEWAYS) throw new RangeError(`at most ${MAX_GATEWAYS} gateways`);
  const slots = input.slots ?? assignGatewaySlots([...config.tunnel.gateways, ...unmanaged].map((g) => g.name));
  const slotOf = (name: string): number => {
    const slot = slots.get(name);
    if (slot === undefined) throw new Error(`no slot for gateway ${name}`);
    return slot;
  };
  const gateways = config.tunnel.gateways.map((g): PlannedGateway => {
    const addrs = hostAddresses(g.wireguard.addresses);
    const v6Allowed = g.wireguard.peers.some((p) => p.allowedIPs.some((a) => (parseCidr(a) as ParsedCidr).family === 6));
    const slot = slotOf(g.name);
    return { name: g.name, ifname: g.ifname, mark: gatewayMark(slot), table: gatewayTable(slot), addrs4: addrs.v4, addrs6: addrs.v6, ipv6: addrs.v6.length > 0 && v6Allowed };
  });
  // Another program's tunnels: their addresses are theirs to change (none
  // known here), and whether IPv6 goes through them too; what they refuse
  // they refuse themselves.
  for (const g of [...unmanaged].sort((a, b) => a.index - b.index)) {
    const slot = slotOf(g.name);
    gateways.push({
      name: g.name,
      ifname: g.ifname,
      mark: gatewayMark(slot),
      table: gatewayTable(slot),
      addrs4: [],
      addrs6: [],
      ipv6: true,
      unmanaged: g.kind,
      ...(g.kind === 'table' ? { lookup: g.table! } : {}),
    });
  }
  const links = planLinks(config.breakout.links ?? [], input.links?.slots, input.links?.nextHops);
  const linkPart = links.length ? linkState(links, config.breakout.links!, input.links?.active ?? null, config.breakout.balance === true, input.healthy) : null;
  if (config.mode === 'router' && config.lan.length > MAX_LAN_INTERFACES) throw new RangeError(`at most ${MAX_LAN_INTERFACES} LAN interfaces`);
  const rules = config.rules.map((r): PlannedRule => {
    const dst = split([...r.cidrs.map((c) => c.cidr), ...ruleListNames(r).flatMap((l) => input.listCidrs.get(l) ?? [])]);
    const match = planRuleMatch(r, input.match);
    const src = split(r.sources.map((s) => s.cidr));
    const hasNames = r.domains.length > 0 || r.lists.length > 0;
    return {
      index: r.index,
      id: ruleId(r),
      mark: targetMark(pickTarget(r.via, input.healthy), gateways, links),
      dst4: dst.v4,
      dst6: dst.v6,
      src4: src.v4,
      src6: src.v6,
      tagged: hasNames,
      ...(match ? { match } : {}),
    };
  });
  return {
    mode: config.mode,
    lan: config.lan,
    wan: input.wan,
    gateways,
    active: input.active,
    ...(linkPart ? { links, activeLink: linkPart.active, balance: linkPart.balance } : {}),
    killSwitch: config.tunnel.killSwitch,
    rules,
    defaultMark: targetMark(pickTarget(config.default, input.healthy), gateways, links),
    dnsPort: input.dnsPort,
    localDns: config.mode === 'host' ? (input.localDns ?? null) : null,
    encryptedDns: config.dns.blockEncryptedDns ? split(input.dohCidrs ?? config.dns.dohLists.flatMap((l) => input.listCidrs.get(l) ?? [])) : null,
    proxy: config.proxy.enabled ? { port: config.proxy.listenPort, ports: [...config.proxy.ports], blockQuic: config.proxy.blockQuic } : null,
    ...(input.portPaths ? { portPaths: true } : {}),
    allowLan: config.mode === 'host' && config.tunnel.allowLan ? { v4: [...(input.localNets ?? LINK_LOCAL).v4], v6: [...(input.localNets ?? LINK_LOCAL).v6] } : null,
    ...(input.apps?.length ? { apps: planAppPins(input.apps, { breakout: MARK_BREAKOUT, tunnel: MARK_TUNNEL, gateways, links }, input.healthy) } : {}),
  };
}

function planLinks(config: readonly LinkConfig[], slotsIn: ReadonlyMap<string, number> | undefined, nextHops: ReadonlyMap<string, { v4?: string; v6?: string }> | undefined): PlannedLink[] {
  if (config.length > MAX_LINKS) throw new RangeError(`at most ${MAX_LINKS} links`);
  const slots = slotsIn ?? assignLinkSlots(config.map((l) => l.name));
  return config.map((l): PlannedLink => {
    const slot = slots.get(l.name);
    if (slot === undefined) throw new Error(`no slot for link ${l.name}`);
    const own = nextHops?.get(l.interface);
    const configured = (f: 4 | 6): string | undefined => l.gateway.find((g) => (parseIp(g)?.family ?? 0) === f);
    return { name: l.name, ifname: l.interface, mark: linkMark(slot), table: linkTable(slot), via4: configured(4) ?? own?.v4 ?? null, via6: configured(6) ?? own?.v6 ?? null, weight: l.weight, metered: l.metered };
  });
}

/**
 * Which link breakout takes: the monitor's choice, else the preferred one
 * (lowest priority, not metered); with balance, every usable link that is not
 * metered by weight (the metered ones only when no other is usable, the
 * active one alone when none is).
 */
function linkState(links: readonly PlannedLink[], config: readonly LinkConfig[], asked: string | null, balance: boolean, healthy: (name: string) => boolean): { active: string; balance: { name: string; weight: number }[] | null } {
  const prio = (l: PlannedLink): number => (l.metered ? 1e9 : 0) + (config.find((c) => c.name === l.name)?.priority ?? 0);
  const preferred = [...links].sort((a, b) => prio(a) - prio(b))[0]!;
  const active = links.find((l) => l.name === asked) ?? preferred;
  if (!balance) return { active: active.name, balance: null };
  const usable = links.filter((l) => healthy(l.name));
  const unmetered = usable.filter((l) => !l.metered);
  const spread = unmetered.length ? unmetered : usable.length ? usable : [active];
  return { active: active.name, balance: spread.map((l) => ({ name: l.name, weight: l.weight })) };
}

const hex = (n: number): string => `0x${n.toString(16)}`;
/**
 * What is not routed to a path: this machine's own addresses, and broadcast
 * and multicast (DHCP, neighbour solicitations, mDNS), which a path mark
 * would only get rejected (the kill switch, a tunnel without IPv6).
 */
const NOT_ROUTED = '\t\tfib daddr type { local, broadcast, multicast } return';
const quoteList = (xs: readonly string[]): string => `{ ${xs.map((x) => `"${x}"`).join(', ')} }`;
const setOf = (xs: readonly string[]): string => `{ ${xs.join(', ')} }`;

/** Names of a rule's tag sets (the resolver adds addresses to them). */
export function tagSetNames(rule: Pick<PlannedRule, 'id'>): { v4: string; v6: string } {
  return { v4: `tag4_${rule.id}`, v6: `tag6_${rule.id}` };
}

/** Every gateway's tunnel addresses, each once (gateways of one provider often share one). */
export function tunnelAddresses(plan: Pick<DataplanePlan, 'gateways'>): { v4: string[]; v6: string[] } {
  return { v4: [...new Set(plan.gateways.flatMap((g) => g.addrs4))], v6: [...new Set(plan.gateways.flatMap((g) => g.addrs6))] };
}

/** The tunnel the tunnel path's table (1100) routes into: the active gateway's, else the first's; null without gateways. */
export function tunnelPathDevice(plan: Pick<DataplanePlan, 'gateways' | 'active'>): string | null {
  // A table gateway has no device to route into: the first gateway that has one stands in.
  const withDev = plan.gateways.filter((g) => g.ifname !== '');
  return (withDev.find((g) => g.name === plan.active) ?? withDev[0])?.ifname ?? null;
}

/** The interfaces traffic leaves by to the internet: every link's, or the one WAN. */
export function wanInterfaces(plan: Pick<DataplanePlan, 'wan' | 'links'>): string[] {
  return plan.links?.length ? plan.links.map((l) => l.ifname) : [plan.wan];
}

/**
 * The contents of the `active` map: tunnel → the active gateway's mark; with
 * no active gateway, empty (kill switch) or breakout when the kill switch is off.
 */
export function activeElements(plan: Pick<DataplanePlan, 'active' | 'gateways' | 'killSwitch'>): string {
  const g = plan.gateways.find((x) => x.name === plan.active);
  if (g) return `${hex(MARK_TUNNEL)} : ${hex(g.mark)}`;
  return plan.killSwitch ? '' : `${hex(MARK_TUNNEL)} : ${hex(MARK_BREAKOUT)}`;
}

/** The one-line transaction that flips the default path (failover, kill, recovery). */
export function renderActiveFlip(plan: Pick<DataplanePlan, 'active' | 'gateways' | 'killSwitch'>): string {
  const el = activeElements(plan);
  return `flush map inet ${TABLE_NAME} active${el ? `; add element inet ${TABLE_NAME} active { ${el} }` : ''}`;
}

/** The chains and sets a plan's ruleset defines. */
export function rulesetObjects(plan: DataplanePlan): { chains: string[]; sets: string[] } {
  const sets = ['active', PORTAL_SETS.v4, PORTAL_SETS.v6];
  for (const r of plan.rules) if (r.tagged) sets.push(tagSetNames(r).v4, tagSetNames(r).v6);
  if (plan.encryptedDns) sets.push('doh4', 'doh6');
  // Both modes hook prerouting (inbound flows get their path) and output (replies and the kernel's own packets).
  const chains = ['classify', 'resolve', 'reject_flow', 'inbound', 'reply_path', 'pre', 'out', 'post'];
  if (plan.gateways.length) chains.push('mss');
  if (plan.links?.length) chains.push('pick_link');
  if (plan.rules.some((r) => r.match?.reroute)) chains.push('reroute');
  if (plan.wan !== 'lo') chains.push('wan_guard');
  if (plan.mode === 'router' && plan.dnsPort !== null) chains.push('dns_redirect');
  if (plan.localDns) chains.push('dns_out');
  // A base chain cannot change its hook: the redirect chain is named after it, as pre/out are.
  if (plan.proxy) chains.push(plan.mode === 'router' ? 'proxy_pre' : 'proxy_out', 'proxy_guard');
  chains.push(...appChains(plan.apps));
  return { chains, sets };
}

/**
 * The whole ruleset, applied with `nft -f -` in one transaction. It starts
 * with `table …; flush table …` rather than `delete table`, so a re-apply
 * keeps the tagged addresses in the sets (same set names, same types).
 * `current` is what the table holds now (from `nft -j list table`): chains
 * and sets the plan no longer has are deleted in the same transaction, since
 * a flush empties chains but keeps them hooked.
 */
export function renderRuleset(plan: DataplanePlan, current: { chains: readonly string[]; sets: readonly string[] } = { chains: [], sets: [] }): string {
  const L: string[] = [];
  const t = `inet ${TABLE_NAME}`;
  const want = rulesetObjects(plan);
  L.push(`table ${t}`, `flush table ${t}`);
  // Chains first: a rule referencing a set must go before the set can.
  for (const c of current.chains) if (!want.chains.includes(c)) L.push(`delete chain ${t} ${c}`);
  for (const s of current.sets) if (!want.sets.includes(s)) L.push(`delete ${s === 'active' ? 'map' : 'set'} ${t} ${s}`);
  // A flushed table keeps set elements (that is what keeps tags): a list-made set is emptied to be re-filled.
  for (const s of ['doh4', 'doh6']) if (want.sets.includes(s) && current.sets.includes(s)) L.push(`flush set ${t} ${s}`);
  L.push(`table ${t} {`);
  for (const r of plan.rules) {
    if (!r.tagged) continue;
    const n = tagSetNames(r);
    L.push(`\tset ${n.v4} { type ipv4_addr; flags timeout; size ${TAG_SET_SIZE}; }`);
    L.push(`\tset ${n.v6} { type ipv6_addr; flags timeout; size ${TAG_SET_SIZE}; }`);
  }
  L.push(`\tmap active { type mark : mark; }`);
  L.push(...portalSetLines()); // issue 16: what `splitwan portal` opens (portal-rules.ts)
  if (plan.encryptedDns) {
    const els = (xs: string[]): string => (xs.length ? ` elements = ${setOf(xs)};` : '');
    L.push(`\tset doh4 { type ipv4_addr; flags interval; auto-merge;${els(plan.encryptedDns.v4)} }`);
    L.push(`\tset doh6 { type ipv6_addr; flags interval; auto-merge;${els(plan.encryptedDns.v6)} }`);
  }

  // classify: the first packet of a flow, by the rules in order; the first that
  // matches sets the logical mark and returns.
  L.push(`\tchain classify {`);
  const reroute: string[] = [];
  /** Lines of the rules so far: in the reroute chain they come first (returning), so a later rule never takes an earlier one's flows. */
  const prior: string[] = [];
  for (const r of plan.rules) {
    if (plan.mode === 'host' && (r.src4.length || r.src6.length || r.match?.macs)) {
      // Sources name LAN clients, and host mode has none (config warns): this
      // machine's own packets carry its own addresses, which a source CIDR
      // may well cover, so the rule is left out rather than matching them.
      L.push(`\t\t# rule ${r.index}: sources match LAN clients only (none in host mode)`);
      continue;
    }
    const m = `meta mark set ${hex(r.mark)} return`;
    const n = tagSetNames(r);
    const srcConds: string[] = [];
    if (r.src4.length) srcConds.push(`ip saddr ${setOf(r.src4)}`);
    if (r.src6.length) srcConds.push(`ip6 saddr ${setOf(r.src6)}`);
    const dstConds: string[] = [];
    if (r.dst4.length) dstConds.push(`ip daddr ${setOf(r.dst4)}`);
    if (r.dst6.length) dstConds.push(`ip6 daddr ${setOf(r.dst6)}`);
    if (r.tagged) dstConds.push(`ip daddr @${n.v4}`, `ip6 daddr @${n.v6}`);
    L.push(`\t\t# rule ${r.index}`);
    // Sources and destinations together: "these destinations from these clients"; ports, devices, schedule: rule-match.ts.
    const lines = ruleConditionLines(srcConds, dstConds, r.match);
    if (r.match?.reroute) reroute.push(...prior.splice(0).map((c) => `${c} return`), ...rerouteLines(ruleConditionLines(srcConds, dstConds, { ...r.match, off: null }) ?? [], r.match.active, hex(r.mark)));
    if (lines === null) L.push(`\t\t# rule ${r.index}: ${r.match?.off ?? 'no device it names is known now'}`);
    else for (const c of lines) L.push(`\t\t${c} ${m}`);
    prior.push(...(lines ?? []));
  }
  if (plan.allowLan) {
    // Allow-LAN: this machine's own networks, when no rule above claimed them,
    // take the breakout (not resolved: the kill switch does not cut them).
    if (plan.allowLan.v4.length) L.push(`\t\tip daddr ${setOf(plan.allowLan.v4)} meta mark set ${hex(MARK_BREAKOUT)} return`);
    if (plan.allowLan.v6.length) L.push(`\t\tip6 daddr ${setOf(plan.allowLan.v6)} meta mark set ${hex(MARK_BREAKOUT)} return`);
  }
  // With the proxy on, the default is told apart from a rule that chose the same path.
  L.push(`\t\tmeta mark set ${hex(plan.defaultMark | (plan.proxy ? MARK_UNMATCHED : 0))}`, `\t}`);

  // resolve: every packet, logical → concrete; what is still logical is dead.
  L.push(`\tchain resolve {`);
  if (plan.proxy) L.push(`\t\tmeta mark set meta mark and ${hex(MARK_MASK)}`);
  L.push(`\t\tmeta mark ${hex(MARK_BLOCK)} jump reject_flow`);
  L.push(`\t\tmeta mark ${hex(MARK_TUNNEL)} meta mark set meta mark map @active`);
  L.push(`\t\tmeta mark ${hex(MARK_TUNNEL)} jump reject_flow`);
  // A gateway without IPv6 would black-hole it (the client waits for its own
  // timeout): refused at once, as the kill switch refuses.
  const v4only = plan.gateways.filter((g) => !g.ipv6).map((g) => hex(g.mark));
  if (v4only.length) L.push(`\t\tmeta nfproto ipv6 meta mark ${setOf(v4only)} jump reject_flow`);
  L.push(`\t}`);
  L.push(`\tchain reject_flow {`, `\t\tmeta l4proto tcp reject with tcp reset`, `\t\treject with icmpx admin-prohibited`, `\t}`);
  const apps = plan.apps ?? [];
  if (apps.length) L.push(...appMarkChain(apps), ...appDnsChain(apps)); // issue 16: per-app split
  if (plan.links?.length) L.push(...renderPickLink(plan));
  // reroute (rule-match.ts): scheduled rules with reroute: true, tried on every packet before the fast path.
  const hasReroute = plan.rules.some((r) => r.match?.reroute);
  if (hasReroute) L.push(`\tchain reroute {`, ...reroute.map((l) => `\t\t${l}`), `\t}`);
  const rerouteJump = hasReroute ? [`\t\tjump reroute`] : [];

  // mark: save the logical mark in conntrack on the first packet, restore it after.
  // Encrypted DNS that would bypass the resolver (and its policy) is refused; clients fall back to port 53.
  const encrypted = plan.encryptedDns
    ? [`\t\tmeta l4proto { tcp, udp } th dport 853 jump reject_flow`, `\t\tip daddr @doh4 meta l4proto { tcp, udp } th dport 443 jump reject_flow`, `\t\tip6 daddr @doh6 meta l4proto { tcp, udp } th dport 443 jump reject_flow`]
    : [];
  const mark: string[] = [];
  // A flow redirected to the proxy keeps the mark it came with (0): the nat hook
  // sends it to a local port, and a path mark would route it into a tunnel table.
  if (plan.proxy) mark.push(`\t\tct mark and ${hex(MARK_PROXIED)} == ${hex(MARK_PROXIED)} return`);
  mark.push(`\t\tct mark != 0 meta mark set ct mark`, `\t\tmeta mark 0 jump classify`);
  // Several links: a new breakout flow takes a link now, and its ct mark keeps it there for its life.
  if (plan.links?.length) mark.push(`\t\tct mark 0 meta mark and ${hex(MARK_MASK)} == ${hex(MARK_BREAKOUT)} jump pick_link`);
  mark.push(`\t\tct mark 0 ct mark set meta mark`);
  if (plan.proxy) {
    // Flows the proxy takes are not resolved here: the nat hook redirects them to
    // the proxy, which picks the path by SNI/Host (and refuses a dead tunnel itself).
    const unmatched = `ct mark and ${hex(MARK_UNMATCHED | MARK_PROXIED)} == ${hex(MARK_UNMATCHED)}`;
    mark.push(`\t\t${unmatched} tcp dport ${setOf(plan.proxy.ports.map(String))} ct mark set ct mark or ${hex(MARK_PROXIED)} meta mark set 0 return`);
    if (plan.proxy.blockQuic) mark.push(`\t\t${unmatched} udp dport 443 jump reject_flow`);
  }
  mark.push(`\t\tjump resolve`);
  // Every packet of a flow already classified goes straight to resolve with
  // its saved path: no FIB lookup (`fib daddr type local`) and no other
  // test per packet, which is most of what the data path costs over plain
  // routing (`bench forward`). Flows to local addresses, DNS redirected in
  // host mode and (with the proxy) unmatched flows the proxy took never get
  // a path in their ct mark, so they still take the slow path. With
  // blockEncryptedDns, the fast path comes after its rejects, so turning it
  // on cuts established DoT flows too.
  const fast = plan.proxy
    ? `\t\tct mark and ${hex(MARK_MASK)} != 0 ct mark and ${hex(MARK_PROXIED)} == 0 meta mark set ct mark goto resolve`
    : `\t\tct mark != 0 meta mark set ct mark goto resolve`;
  const fastBeforeFib = encrypted.length ? [] : [fast];
  const fastAfterEncrypted = encrypted.length ? [fast] : [];
  const addrs = tunnelAddresses(plan);
  // inbound: a connection that comes in (not from the LAN) keeps the path it
  // came in on, so its replies leave by it: the ip rules send unmarked
  // traffic into the tunnel, and a reply to an ssh session or a port forward
  // from the WAN belongs on the WAN; one that came through a tunnel (a
  // stray packet of a flow whose entry was dropped, picked up mid-stream)
  // goes back into it, never out of the WAN with the tunnel's address.
  L.push(`\tchain inbound {`, `\t\tiifname "lo" return`);
  for (const g of plan.gateways) if (g.ifname !== '') L.push(`\t\tiifname "${g.ifname}" ct mark set ${hex(g.mark)} return`);
  // Replies to a connection that came in on a link leave by that link.
  for (const l of plan.links ?? []) L.push(`\t\tiifname "${l.ifname}" ct mark set ${hex(l.mark)} return`);
  L.push(`\t\tct mark set ${hex(MARK_BREAKOUT)}`, `\t}`);
  // reply_path: a reply takes its flow's path (not resolved: the kill switch
  // must not reject the resets and errors the kernel sends back). A flow older
  // than the table has none: from a tunnel address it is the ip rules'
  // business (into the tunnel), from any other address the breakout's.
  L.push(`\tchain reply_path {`, `\t\tct mark and ${hex(MARK_MASK)} != 0 meta mark set ct mark and ${hex(MARK_MASK)} return`);
  if (addrs.v4.length) L.push(`\t\tip saddr ${setOf(addrs.v4)} return`);
  if (addrs.v6.length) L.push(`\t\tip6 saddr ${setOf(addrs.v6)} return`);
  L.push(`\t\tmeta mark set ${hex(MARK_BREAKOUT)}`, `\t}`);
  // Without SO_MARK, splitwan's own sockets are known by source port (port-paths.ts): links' too.
  const portLines = plan.portPaths ? portPathMarkLines([MARK_BREAKOUT, ...plan.gateways.map((g) => g.mark), ...(plan.links ?? []).map((l) => l.mark)]) : [];
  if (plan.mode === 'router') {
    L.push(`\tchain pre {`, `\t\ttype filter hook prerouting priority mangle; policy accept;`);
    // A LAN host answering a connection from outside (a port forward).
    L.push(`\t\tct direction reply iifname ${quoteList(plan.lan)} goto reply_path`);
    L.push(`\t\tct direction reply return`);
    L.push(`\t\tiifname != ${quoteList(plan.lan)} ct state new jump inbound`);
    L.push(`\t\tiifname != ${quoteList(plan.lan)} return`);
    L.push(...rerouteJump, ...fastBeforeFib, NOT_ROUTED);
    L.push(...portalMatchLines(), ...encrypted, ...fastAfterEncrypted, ...mark, `\t}`);
    // The router's own packets are not steered (they take main), except what
    // belongs to a LAN flow: replies (the proxy's, the resolver's) and the
    // ICMP errors the router sends about a forwarded flow, which must take the
    // flow's path: main would send an error about a tunnel flow out of the
    // WAN, with the tunnel's address once NAT has rewritten it.
    L.push(`\tchain out {`, `\t\ttype route hook output priority mangle; policy accept;`);
    L.push(...portLines);
    L.push(...appDnsGuardLines(apps));
    L.push(`\t\tmeta mark != 0 return`, `\t\toifname "lo" return`, `\t\tct direction reply goto reply_path`);
    L.push(`\t\tct state related ct mark and ${hex(MARK_MASK)} != 0 meta mark set ct mark and ${hex(MARK_MASK)} goto resolve`);
    // Per-app split: the router's own pinned programs take their path (their flows' only ct marks), all else main.
    if (apps.length) L.push(`\t\tct mark and ${hex(MARK_MASK)} != 0 meta mark set ct mark and ${hex(MARK_MASK)} goto resolve`, NOT_ROUTED, `\t\tjump apps`, `\t\tmeta mark != 0 ct mark set meta mark goto resolve`);
    L.push(`\t}`);
  } else {
    L.push(`\tchain pre {`, `\t\ttype filter hook prerouting priority mangle; policy accept;`);
    L.push(`\t\tct state new jump inbound`, `\t}`);
    L.push(`\tchain out {`, `\t\ttype route hook output priority mangle; policy accept;`);
    L.push(...portLines);
    L.push(...appDnsGuardLines(apps)); // issue 16: before loopback returns (the local stub)
    L.push(`\t\toifname "lo" return`);
    // Sockets splitwan marked itself (SO_MARK: resolver, probes, proxy dials) and WireGuard's own UDP.
    L.push(`\t\tmeta mark != 0 return`);
    L.push(`\t\tct direction reply goto reply_path`);
    // Neighbour discovery of this machine's own links (unicast NS/NA to a
    // neighbour): never steered, or a tunnel without IPv6 (refused) or the
    // kill switch would cut IPv6 on the LAN and the WAN too.
    L.push(...rerouteJump, ...fastBeforeFib, `\t\ticmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } return`, NOT_ROUTED);
    if (apps.length) L.push(`\t\tjump apps`); // issue 16: a pinned program's new flow takes its path, whatever the rules say
    if (plan.localDns) {
      // DNS to another server is not steered: the nat hook below sends it to
      // splitwan's resolver (a path mark here would also make the kill switch
      // reject it before it is redirected). A family the resolver does not
      // listen on is refused.
      if (!plan.localDns.v4) L.push(`\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 jump reject_flow`);
      if (!plan.localDns.v6) L.push(`\t\tmeta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 jump reject_flow`);
      L.push(`\t\tmeta l4proto { tcp, udp } th dport 53 return`);
    }
    L.push(...portalMatchLines(), ...encrypted, ...fastAfterEncrypted, ...mark, `\t}`);
  }

  const tunnels = plan.gateways.map((g) => g.ifname).filter((i) => i !== '');
  // A table gateway's interface is another program's choice: its traffic is known by its mark.
  const tableMarks = plan.gateways.filter((g) => g.unmanaged === 'table').map((g) => hex(g.mark));
  if (plan.gateways.length) {
    // Postrouting sees forwarded and local traffic with its final interface.
    L.push(`\tchain mss {`, `\t\ttype filter hook postrouting priority mangle; policy accept;`);
    if (tunnels.length) L.push(`\t\toifname ${quoteList(tunnels)} tcp flags syn tcp option maxseg size set rt mtu`);
    if (tableMarks.length) L.push(`\t\tmeta mark and ${hex(MARK_MASK)} ${setOf(tableMarks)} tcp flags syn tcp option maxseg size set rt mtu`);
    L.push(`\t}`);
  }

  if (plan.mode === 'router' && plan.dnsPort !== null) {
    // LAN clients asking any other resolver get splitwan's answer: no bypass, no leak.
    L.push(`\tchain dns_redirect {`, `\t\ttype nat hook prerouting priority dstnat; policy accept;`);
    L.push(`\t\tiifname ${quoteList(plan.lan)} meta l4proto { tcp, udp } th dport 53 redirect to :${plan.dnsPort}`, `\t}`);
  }

  if (plan.localDns) {
    // This machine's DNS to any other server gets splitwan's answer: no bypass,
    // no untagged answer. Local resolvers are left alone (the `out` chain does
    // not steer them either); splitwan's own sockets carry a mark.
    const { v4, v6 } = plan.localDns;
    L.push(`\tchain dns_out {`, `\t\ttype nat hook output priority -100; policy accept;`);
    L.push(`\t\tmeta mark != 0 return`, `\t\tfib daddr type local return`);
    if (v4) L.push(`\t\tmeta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to ${v4.host}:${v4.port}`);
    if (v6) L.push(`\t\tmeta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 dnat ip6 to [${v6.host}]:${v6.port}`);
    L.push(`\t}`);
  }

  if (plan.proxy) {
    // Only flows the mark chain flagged (LAN traffic in router mode, local in host
    // mode; never splitwan's own marked sockets, whose ct mark stays 0).
    const hook = plan.mode === 'router' ? 'prerouting priority dstnat' : 'output priority -100';
    L.push(`\tchain ${plan.mode === 'router' ? 'proxy_pre' : 'proxy_out'} {`, `\t\ttype nat hook ${hook}; policy accept;`);
    L.push(`\t\tct mark and ${hex(MARK_PROXIED)} == ${hex(MARK_PROXIED)} meta l4proto tcp redirect to :${plan.proxy.port}`, `\t}`);
    // The proxy port answers redirected flows only: straight connections are reset.
    L.push(`\tchain proxy_guard {`, `\t\ttype filter hook input priority filter; policy accept;`);
    L.push(`\t\ttcp dport ${plan.proxy.port} ct status dnat accept`, `\t\ttcp dport ${plan.proxy.port} reject with tcp reset`, `\t}`);
  }

  if (plan.wan !== 'lo') {
    // Defence in depth, not the fix: nothing on a tunnel path (by its mark) and
    // nothing from a tunnel address that is not breakout traffic (host mode's
    // breakout flows start from the tunnel address and are masqueraded below)
    // leaves by the WAN, even when our ip rules are gone. Before NAT, so the
    // source is the one the kernel chose. Counted: the counters say whether
    // it ever had to act.
    // With several links, every link is a WAN, and a link's mark is breakout traffic.
    const wans = wanInterfaces(plan);
    const oif = wans.length === 1 ? `"${wans[0]}"` : quoteList(wans);
    const notBreakout = `meta mark and ${hex(MARK_MASK)} != ${hex(MARK_BREAKOUT)}${plan.links?.length ? ` meta mark and 0xf000 != ${hex(MARK_LINKS)}` : ''}`;
    L.push(`\tchain wan_guard {`, `\t\ttype filter hook postrouting priority filter; policy accept;`);
    L.push(`\t\toifname ${oif} meta mark and 0xf000 == ${hex(MARK_BREAKOUT)} meta mark and ${hex(MARK_MASK)} != ${hex(MARK_BREAKOUT)} counter drop`);
    if (addrs.v4.length) L.push(`\t\toifname ${oif} ${notBreakout} ip saddr ${setOf(addrs.v4)} counter drop`);
    if (addrs.v6.length) L.push(`\t\toifname ${oif} ${notBreakout} ip6 saddr ${setOf(addrs.v6)} counter drop`);
    L.push(`\t}`);
  }

  L.push(`\tchain post {`, `\t\ttype nat hook postrouting priority srcnat; policy accept;`);
  if (plan.localDns) {
    // DNS that dns_out sent to the resolver still carries this machine's
    // outward address (chosen for the server it was meant for), and the
    // resolver answers loopback clients only: it comes from loopback instead.
    const { v4, v6 } = plan.localDns;
    if (v4) L.push(`\t\toifname "lo" ip saddr != 127.0.0.0/8 ip daddr ${v4.host} meta l4proto { tcp, udp } th dport ${v4.port} ct status dnat snat ip to 127.0.0.1`);
    if (v6) L.push(`\t\toifname "lo" ip6 saddr != ::1 ip6 daddr ${v6.host} meta l4proto { tcp, udp } th dport ${v6.port} ct status dnat snat ip6 to ::1`);
  }
  // What leaves a tunnel from that tunnel's own address needs no NAT: its
  // source is already right. Masqueraded, splitwan's own queries to gateways
  // that share their addresses (10.64.0.2 → 10.64.0.1:53 on every Mullvad
  // tunnel) collide in conntrack: a query through gw2 from a source port a
  // query through gw1 used a moment before met gw1's NAT binding, and the
  // kernel refused the send (EPERM), which health took for gw2 failing.
  for (const g of plan.gateways) {
    if (g.addrs4.length) L.push(`\t\toifname "${g.ifname}" ip saddr ${setOf(g.addrs4)} return`);
    if (g.addrs6.length) L.push(`\t\toifname "${g.ifname}" ip6 saddr ${setOf(g.addrs6)} return`);
  }
  L.push(`\t\toifname ${quoteList([...wanInterfaces(plan), ...tunnels])} masquerade`);
  if (tableMarks.length) L.push(`\t\tmeta mark and ${hex(MARK_MASK)} ${setOf(tableMarks)} masquerade`);
  L.push(`\t}`);
  L.push(`}`);
  // The `active` map's content is not part of the ruleset: a re-apply keeps
  // map elements, and the default path changes only through renderActiveFlip.
  return L.join('\n') + '\n';
}

/**
 * pick_link: a new breakout flow's link. Without balance, the active link;
 * with it, a random draw weighted by the links' weights (numgen: no state, so
 * nothing to keep in step; the draw is saved in the flow's ct mark). With the
 * proxy on, the default path's flows carry the unmatched bit, kept here.
 */
function renderPickLink(plan: DataplanePlan): string[] {
  const links = plan.links ?? [];
  const markOf = (name: string): number => links.find((l) => l.name === name)!.mark;
  const L = [`\tchain pick_link {`];
  const to = (low: number): string => {
    const spread = plan.balance ?? null;
    if (spread && spread.length > 1) {
      let at = 0;
      const els = spread.map((b) => {
        const range = b.weight === 1 ? `${at}` : `${at}-${at + b.weight - 1}`;
        at += b.weight;
        return `${range} : ${hex(markOf(b.name) | low)}`;
      });
      return `meta mark set numgen random mod ${at} map { ${els.join(', ')} }`;
    }
    const name = spread?.[0]?.name ?? plan.activeLink ?? links[0]!.name;
    return `meta mark set ${hex(markOf(name) | low)}`;
  };
  if (plan.proxy) L.push(`\t\tmeta mark ${hex(MARK_BREAKOUT | MARK_UNMATCHED)} ${to(MARK_UNMATCHED)} return`);
  L.push(`\t\t${to(0)}`, `\t}`);
  return L;
}

/**
 * The one-line transaction that moves new breakout flows to other links (a
 * link failover, failback, a change of the balance): pick_link's rules
 * replaced, nothing else; the whole ruleset follows in the re-plan.
 */
export function renderLinkFlip(plan: DataplanePlan): string {
  const rules = renderPickLink(plan).slice(1, -1).map((l) => `add rule inet ${TABLE_NAME} pick_link ${l.trim()}`);
  return [`flush chain inet ${TABLE_NAME} pick_link`, ...rules].join('; ');
}

export interface IpRuleSpec {
  family: 4 | 6;
  priority: number;
  fwmark?: number;
  fwmask?: number;
  /** `from ADDR` (a single address). */
  src?: string;
  /** `iif IF` (`lo`: this machine's own packets). */
  iif?: string;
  table?: string;
  action: 'lookup' | 'prohibit';
  suppressPrefixLength?: number;
  /** `sport A-B` (port-paths.ts). */
  sport?: string;
}

export interface RouteSpec {
  family: 4 | 6;
  table: number;
  type: 'unicast' | 'prohibit';
  dev?: string;
  /** A next hop (a WAN link's gateway). */
  via?: string;
  metric?: number;
}

/** The ip rules, per family, at splitwan's fixed priorities. */
export function renderIpRules(plan: Pick<DataplanePlan, 'gateways' | 'mode' | 'lan' | 'links' | 'portPaths'>): IpRuleSpec[] {
  const out: IpRuleSpec[] = [];
  const addrs = tunnelAddresses(plan);
  for (const family of [4, 6] as const) {
    // LAN and connected routes always win, so per-path tables need only a default route.
    out.push({ family, priority: RULE_PRIORITY_FIRST, table: 'main', action: 'lookup', suppressPrefixLength: 0 });
    // Several links: breakout follows the best link's table (1200), not main; each link has its own.
    const links = plan.links ?? [];
    out.push({ family, priority: RULE_PRIORITY_FIRST + 10, fwmark: MARK_BREAKOUT, fwmask: MARK_MASK, table: links.length ? String(TABLE_BREAKOUT) : 'main', action: 'lookup' });
    for (const l of links) out.push({ family, priority: PRIORITY_LINKS + (l.table - TABLE_BREAKOUT - 1), fwmark: l.mark, fwmask: MARK_MASK, table: String(l.table), action: 'lookup' });
    if (links.length) out.push({ family, priority: PRIORITY_LINKS_PROHIBIT, fwmark: MARK_LINKS, fwmask: 0xf000, action: 'prohibit' });
    // At its slot's priority (table - 1101), so a reload that reorders gateways changes no rule.
    // A table gateway's mark looks up the table its program fills.
    for (const g of plan.gateways) out.push({ family, priority: RULE_PRIORITY_FIRST + 20 + (g.table - TABLE_TUNNEL - 1), fwmark: g.mark, fwmask: MARK_MASK, table: String(g.lookup ?? g.table), action: 'lookup' });
    out.push({ family, priority: RULE_PRIORITY_FIRST + 40, fwmark: MARK_TUNNEL, fwmask: MARK_MASK, table: String(TABLE_TUNNEL), action: 'lookup' });
    if (plan.gateways.length) {
      // What the kernel sends from a tunnel address on its own (a reset for a
      // flow whose conntrack entry is gone, an ICMP error) goes back into a
      // tunnel, whatever nftables says: into its gateway's, or the active
      // one's when gateways share the address (Mullvad-style).
      const list = family === 4 ? addrs.v4 : addrs.v6;
      if (list.length > MAX_TUNNEL_ADDRESSES) throw new RangeError(`at most ${MAX_TUNNEL_ADDRESSES} tunnel addresses per family`);
      list.forEach((a, i) => {
        const owners = plan.gateways.filter((g) => (family === 4 ? g.addrs4 : g.addrs6).includes(a));
        const table = owners.length === 1 ? String(owners[0]!.table) : String(TABLE_TUNNEL);
        out.push({ family, priority: PRIORITY_FROM_TUNNEL + i, src: a, table, action: 'lookup' });
      });
      // Traffic nobody marked takes the tunnel path, not main: with the table
      // gone (another program flushed the ruleset) it fails closed.
      const iifs = plan.mode === 'host' ? ['lo'] : plan.lan;
      iifs.forEach((iif, i) => out.push({ family, priority: PRIORITY_UNMARKED + i, iif, fwmark: 0, fwmask: 0xffffffff, table: String(TABLE_TUNNEL), action: 'lookup' }));
    }
    // Anything carrying one of our marks never falls through to main (a leak).
    out.push({ family, priority: RULE_PRIORITY_LAST, fwmark: 0x1000, fwmask: 0xf000, action: 'prohibit' });
  }
  if (plan.portPaths) out.push(...portPathRules(out));
  return out;
}

/** One rule as `ip rule add` arguments after `pref N` (also how `config diff` shows it). */
export function ipRuleSelector(r: IpRuleSpec): string[] {
  const a: string[] = [];
  if (r.src !== undefined) a.push('from', r.src);
  if (r.iif !== undefined) a.push('iif', r.iif);
  if (r.sport !== undefined) a.push('sport', r.sport);
  if (r.fwmark !== undefined) a.push('fwmark', `0x${r.fwmark.toString(16)}/0x${(r.fwmask ?? 0xffffffff).toString(16)}`);
  if (r.action === 'prohibit') a.push('prohibit');
  else a.push('lookup', r.table!);
  if (r.suppressPrefixLength !== undefined) a.push('suppress_prefixlength', String(r.suppressPrefixLength));
  return a;
}

/**
 * Routes in splitwan's tables: each gateway's default via its tunnel, the
 * tunnel path's (1100) via the active gateway's (the first's when none is:
 * the kill switch is nftables' reject, and without nftables a dead tunnel
 * still leaks nothing), prohibit backstops under all.
 */
export function renderRoutes(plan: Pick<DataplanePlan, 'gateways' | 'active' | 'links' | 'activeLink'>): RouteSpec[] {
  const out: RouteSpec[] = [];
  const dev = tunnelPathDevice(plan);
  const links = plan.links ?? [];
  const active = links.find((l) => l.name === plan.activeLink) ?? links[0];
  const linkRoute = (l: PlannedLink, family: 4 | 6, table: number): RouteSpec => {
    const via = family === 4 ? l.via4 : l.via6;
    return { family, table, type: 'unicast', dev: l.ifname, ...(via !== null ? { via } : {}) };
  };
  for (const family of [4, 6] as const) {
    if (dev !== null) out.push({ family, table: TABLE_TUNNEL, type: 'unicast', dev });
    out.push({ family, table: TABLE_TUNNEL, type: 'prohibit', metric: 4_000_000_000 });
    for (const g of plan.gateways) {
      // A table gateway's routes are its program's: we only point its mark there.
      if (g.unmanaged === 'table') continue;
      out.push({ family, table: g.table, type: 'unicast', dev: g.ifname });
      out.push({ family, table: g.table, type: 'prohibit', metric: 4_000_000_000 });
    }
    if (active) {
      // The breakout's table follows the best link, as 1100 follows the active gateway.
      out.push(linkRoute(active, family, TABLE_BREAKOUT));
      out.push({ family, table: TABLE_BREAKOUT, type: 'prohibit', metric: 4_000_000_000 });
    }
    for (const l of links) {
      out.push(linkRoute(l, family, l.table));
      out.push({ family, table: l.table, type: 'prohibit', metric: 4_000_000_000 });
    }
  }
  return out;
}
