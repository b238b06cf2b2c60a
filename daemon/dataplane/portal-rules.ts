// Captive portals (issue 16): the nftables side of `splitwan portal`. Two sets
// of (address . protocol . port) with per-element timeouts hold what a portal
// window lets through bare via the breakout; one line per family in the
// steering chains (host mode's `out`, router mode's `pre`) gives a packet that
// matches the breakout's mark. The kernel drops each element when its timeout
// ends, so a window closes even if splitwan is gone.
//
// The match sets no ct mark: it is looked at on every packet of a flow that
// has no saved path, so when the window closes (timeout, login, --close) the
// flow's next packet is classified like any other (the tunnel, or the kill
// switch) instead of going on bare. The line sits after the fast path, so
// classified flows never pay for it.
import { formatIp, parseIp } from '../../lib/ip.js';
import { MARK_BREAKOUT, TABLE_NAME } from './plan.js';

export const PORTAL_SETS = { v4: 'portal4', v6: 'portal6' } as const;
/** Elements per family: a portal, its probe, a few redirects and the resolvers fit many times over; a hostile redirect chain cannot grow it. */
export const PORTAL_SET_SIZE = 256;

/** One thing a window lets through: a destination address, protocol and port. */
export interface PortalElement {
  address: string;
  proto: 'tcp' | 'udp';
  port: number;
}

/** The set declarations (inside `table inet splitwan { … }`); a re-apply keeps their elements (`flush table` does). */
export function portalSetLines(): string[] {
  return [
    `\tset ${PORTAL_SETS.v4} { type ipv4_addr . inet_proto . inet_service; flags timeout; size ${PORTAL_SET_SIZE}; }`,
    `\tset ${PORTAL_SETS.v6} { type ipv6_addr . inet_proto . inet_service; flags timeout; size ${PORTAL_SET_SIZE}; }`,
  ];
}

/** The steering lines: a packet to an open element takes the breakout (returning: nothing after it steers it again). */
export function portalMatchLines(): string[] {
  const mark = `meta mark set 0x${MARK_BREAKOUT.toString(16)} return`;
  return [`\t\tip daddr . meta l4proto . th dport @${PORTAL_SETS.v4} ${mark}`, `\t\tip6 daddr . meta l4proto . th dport @${PORTAL_SETS.v6} ${mark}`];
}

/**
 * One nft transaction that adds `elements` for `timeoutMs` (whole seconds,
 * rounded up: the kernel's granularity is fine, the user was told "until T").
 * null when there is nothing to add. Addresses that are not addresses are
 * left out (they come from DNS answers and redirects).
 */
export function renderPortalAdd(elements: readonly PortalElement[], timeoutMs: number): string | null {
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const by: { v4: string[]; v6: string[] } = { v4: [], v6: [] };
  const seen = new Set<string>();
  for (const e of elements) {
    const ip = parseIp(e.address);
    if (ip === null || !Number.isInteger(e.port) || e.port < 1 || e.port > 65535) continue;
    const el = `${formatIp(ip)} . ${e.proto} . ${e.port}`;
    if (seen.has(el)) continue;
    seen.add(el);
    (ip.family === 4 ? by.v4 : by.v6).push(`${el} timeout ${seconds}s`);
  }
  const parts: string[] = [];
  if (by.v4.length) parts.push(`add element inet ${TABLE_NAME} ${PORTAL_SETS.v4} { ${by.v4.join(', ')} }`);
  if (by.v6.length) parts.push(`add element inet ${TABLE_NAME} ${PORTAL_SETS.v6} { ${by.v6.join(', ')} }`);
  return parts.length ? parts.join('; ') : null;
}

/** Closes a window now: both sets emptied in one transaction. */
export function renderPortalFlush(): string {
  return `flush set inet ${TABLE_NAME} ${PORTAL_SETS.v4}; flush set inet ${TABLE_NAME} ${PORTAL_SETS.v6}`;
}
