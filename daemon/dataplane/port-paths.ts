// Paths for splitwan's own sockets without SO_MARK: by source port.
//
// Where no native code runs (SPLITWAN_NATIVE=off, or koffi has no build for
// the platform: MIPS, musl armhf), a socket cannot be marked. Instead each
// path mark owns a range of source ports, and the socket binds one before
// its first packet (daemon/port-sockets.ts). Two things then put the packet
// on its path, as the mark would have:
// - ip rules `iif lo sport A-B lookup TABLE`, one beside each mark's rule at
//   the same priority: the route looked up at connect()/sendto(), which also
//   chooses the source address (the tunnel's own, not the WAN's). `iif lo`:
//   only this machine's packets; a LAN client's source port means nothing.
// - nft lines at the top of the `out` chain (type route, hook output) that
//   give such packets the path's mark, so the rest of the ruleset treats
//   them as marked sockets (not classified, not DNS-redirected, counted by
//   the WAN guard as that path's), and the kernel re-routes by the mark.
//   Only the original direction: a reply from a local server that happens to
//   listen on such a port keeps its connection's path (reply_path).
//
// The ranges: 200 ports per path mark from 61000, in slot order: breakout
// (0x1000), the 13 gateway slots (0x1100..0x1d00), the 8 WAN link slots
// (0x2000..0x2700): 61000-65399 in all. None for the tunnel's logical mark
// (0x1f00: a socket gets the active gateway's own mark) nor for block
// (0x1e00: nothing dials it). 61000 is the first port above Linux's default
// ephemeral range (ip_local_port_range 32768-60999), and the window ends
// below 65535 (ip refuses a range that ends there). So that the kernel never
// hands one of these ports to another socket even where the ephemeral range
// was widened, the router adds the window to ip_local_reserved_ports (per
// network namespace; an explicit bind, ours, still gets them).
// 200 ports: a UDP socket per upstream query holds its port until the answer
// or the timeout, so a path has room for 200 queries in flight.
import { RULE_PRIORITY_FIRST, type IpRuleSpec } from './plan.js';

export const PORT_PATH_FIRST = 61000;
export const PORTS_PER_PATH = 200;
const GATEWAY_FAMILY = 0x1000;
const LINK_FAMILY = 0x2000;
/** breakout + gateway slots (plan.ts MAX_GATEWAYS); link slots (plan.ts MAX_LINKS): a unit test keeps them equal. */
export const GATEWAY_FAMILY_SLOTS = 1 + 13;
export const LINK_SLOTS = 8;
const SLOTS = GATEWAY_FAMILY_SLOTS + LINK_SLOTS;
export const PORT_PATH_LAST = PORT_PATH_FIRST + SLOTS * PORTS_PER_PATH - 1;

export interface PortRange {
  first: number;
  last: number;
}

/** Every port of every path: what ip_local_reserved_ports must hold. */
export const PORT_PATH_WINDOW: PortRange = { first: PORT_PATH_FIRST, last: PORT_PATH_LAST };

/** The slot of a path mark (breakout 0, gateways 1..13, links 14..21; low 8 bits ignored); null for a mark that has no range. */
function slotOfMark(mark: number): number | null {
  if (!Number.isInteger(mark) || mark < 0) return null;
  const n = (mark >> 8) & 0xf;
  switch (mark & 0xfffff000) {
    case GATEWAY_FAMILY:
      return n < GATEWAY_FAMILY_SLOTS ? n : null;
    case LINK_FAMILY:
      return n < LINK_SLOTS ? GATEWAY_FAMILY_SLOTS + n : null;
    default:
      return null;
  }
}

/** The source ports of a path mark (breakout, a gateway's, a link's); null for a mark that is not a path's. */
export function portRangeOfMark(mark: number): PortRange | null {
  const slot = slotOfMark(mark);
  if (slot === null) return null;
  const first = PORT_PATH_FIRST + slot * PORTS_PER_PATH;
  return { first, last: first + PORTS_PER_PATH - 1 };
}

/** The mark whose range holds `port`; null outside every range. */
export function markOfPort(port: number): number | null {
  if (!Number.isInteger(port) || port < PORT_PATH_FIRST || port > PORT_PATH_LAST) return null;
  const slot = Math.floor((port - PORT_PATH_FIRST) / PORTS_PER_PATH);
  return slot < GATEWAY_FAMILY_SLOTS ? GATEWAY_FAMILY + (slot << 8) : LINK_FAMILY + ((slot - GATEWAY_FAMILY_SLOTS) << 8);
}

const range = (r: PortRange): string => `${r.first}-${r.last}`;

/**
 * After every path's rule (breakout 5010, links 5011-5018, gateways
 * 5020-5032), before the rules that send unmarked traffic into the tunnel
 * (5050, 5080): a path port whose table has no route (a table gateway whose
 * program emptied it, a link that is gone) is refused here, as its mark is
 * at 5099, instead of falling through to the active gateway's tunnel (its
 * probes would then pass through another path and it would never be down).
 */
export function portPathProhibitPriority(): number {
  return RULE_PRIORITY_FIRST + 41;
}

/**
 * For each rule that sends a path mark to a table, a twin at the same
 * priority that sends the mark's source ports (from this machine) there;
 * then, per family, the whole window refused (portPathProhibitPriority).
 */
export function portPathRules(rules: readonly IpRuleSpec[]): IpRuleSpec[] {
  const out: IpRuleSpec[] = [];
  const families = new Set<4 | 6>();
  for (const r of rules) {
    if (r.action !== 'lookup' || r.fwmark === undefined || r.fwmark === 0 || r.iif !== undefined || r.src !== undefined) continue;
    const ports = portRangeOfMark(r.fwmark);
    if (ports === null) continue;
    out.push({ family: r.family, priority: r.priority, iif: 'lo', sport: range(ports), table: r.table!, action: 'lookup' });
    families.add(r.family);
  }
  for (const family of families) out.push({ family, priority: portPathProhibitPriority(), iif: 'lo', sport: range(PORT_PATH_WINDOW), action: 'prohibit' });
  return out;
}

/** nft lines (one tab-indented statement each) for the top of the `out` chain: these marks' ports get their mark. */
export function portPathMarkLines(marks: readonly number[]): string[] {
  const out: string[] = [];
  for (const mark of [...new Set(marks)].sort((a, b) => a - b)) {
    const ports = portRangeOfMark(mark);
    if (ports === null) continue;
    out.push(`\t\tmeta mark 0 ct direction original meta l4proto { tcp, udp } th sport ${range(ports)} meta mark set 0x${mark.toString(16)} return`);
  }
  return out;
}

/** `ip_local_reserved_ports` as ranges ("1,5-9" → [1,1],[5,9]); what does not parse is left out. */
export function parsePortList(text: string): PortRange[] {
  const out: PortRange[] = [];
  for (const item of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(item.trim());
    if (!m) continue;
    const first = Number(m[1]);
    const last = Number(m[2] ?? m[1]);
    if (first <= last && last <= 65535) out.push({ first, last });
  }
  return out;
}

/**
 * The value that reserves `want` beside what `current` (the sysctl's text)
 * reserves already; null when `current` covers it. The kernel merges
 * overlapping ranges itself.
 */
export function reservedPortsWith(current: string, want: PortRange): string | null {
  const have = parsePortList(current).sort((a, b) => a.first - b.first);
  let next = want.first;
  for (const r of have) {
    if (r.first > next) break;
    next = Math.max(next, r.last + 1);
    if (next > want.last) return null;
  }
  const kept = current.trim();
  return kept === '' ? range(want) : `${kept},${range(want)}`;
}
