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
//
// The ranges: mark 0x1000 + n * 0x100 (n = 0..14: breakout, the 13 gateway
// slots, block) → ports 61440 + n * 256 .. + 255. The tunnel's logical mark
// (0x1f00) has none: a socket gets the active gateway's own mark, and ip
// refuses a range that ends at 65535. 61440-65279 lies above Linux's
// default ephemeral range (ip_local_port_range 32768-60999), so the kernel
// never hands these ports out to another socket by itself.
import type { IpRuleSpec } from './plan.js';

export const PORT_PATH_FIRST = 61440;
export const PORTS_PER_PATH = 256;
const MARK_BASE = 0x1000;
const MARK_STEP = 0x100;
const SLOTS = 15;

export interface PortRange {
  first: number;
  last: number;
}

/** The source ports of a path mark (0x1000..0x1f00, low bits ignored); null for a mark that is not a path's. */
export function portRangeOfMark(mark: number): PortRange | null {
  if (!Number.isInteger(mark) || (mark & 0xf000) !== MARK_BASE) return null;
  const n = (mark - MARK_BASE) >> 8;
  if (n < 0 || n >= SLOTS) return null;
  const first = PORT_PATH_FIRST + n * PORTS_PER_PATH;
  return { first, last: first + PORTS_PER_PATH - 1 };
}

/** The mark whose range holds `port`; null outside every range. */
export function markOfPort(port: number): number | null {
  if (!Number.isInteger(port) || port < PORT_PATH_FIRST || port >= PORT_PATH_FIRST + SLOTS * PORTS_PER_PATH) return null;
  return MARK_BASE + Math.floor((port - PORT_PATH_FIRST) / PORTS_PER_PATH) * MARK_STEP;
}

const range = (r: PortRange): string => `${r.first}-${r.last}`;

/**
 * For each rule that sends a path mark to a table, a twin at the same
 * priority that sends the mark's source ports (from this machine) there.
 */
export function portPathRules(rules: readonly IpRuleSpec[]): IpRuleSpec[] {
  const out: IpRuleSpec[] = [];
  for (const r of rules) {
    if (r.action !== 'lookup' || r.fwmark === undefined || r.fwmark === 0 || r.iif !== undefined || r.src !== undefined) continue;
    const ports = portRangeOfMark(r.fwmark);
    if (ports === null) continue;
    out.push({ family: r.family, priority: r.priority, iif: 'lo', sport: range(ports), table: r.table!, action: 'lookup' });
  }
  return out;
}

/** nft lines (one tab-indented statement each) for the top of the `out` chain: these marks' ports get their mark. */
export function portPathMarkLines(marks: readonly number[]): string[] {
  const out: string[] = [];
  for (const mark of [...new Set(marks)].sort((a, b) => a - b)) {
    const ports = portRangeOfMark(mark);
    if (ports === null) continue;
    out.push(`\t\tmeta mark 0 meta l4proto { tcp, udp } th sport ${range(ports)} meta mark set 0x${mark.toString(16)} return`);
  }
  return out;
}
