// Allow-LAN in host mode (issue 16): the networks this machine is directly
// on (its interfaces' subnets) and link-local take the breakout when no rule
// claims them, also while the kill switch holds: the printer, the NAS, a
// captive portal's gateway. Not every private range: a gateway's own network
// (its resolver 10.64.0.1) is private too and belongs in the tunnel, and so
// are networks routed through a gateway. Pure: the daemon reads `ip -j addr`.
import { cidrContains, parseCidr, type ParsedCidr } from '../lib/ip.js';
import type { IpAddrLink } from './os-parse.js';

export interface LocalNets {
  v4: string[];
  v6: string[];
}

/** Always on the link, whatever the interfaces hold. */
export const LINK_LOCAL: Readonly<LocalNets> = Object.freeze({ v4: ['169.254.0.0/16'], v6: ['fe80::/10'] });

/**
 * The subnets of every interface but `lo` and `exclude` (the tunnels, the
 * resolved link), plus link-local; a subnet inside another is left out
 * (nftables refuses overlapping intervals in one set). Host routes (/32,
 * /128: a tunnel's or a point-to-point address) are no network to reach.
 */
export function localNets(links: readonly IpAddrLink[], exclude: readonly string[]): LocalNets {
  const all: ParsedCidr[] = [];
  const add = (text: string) => {
    const c = parseCidr(text);
    if (!('error' in c)) all.push(c);
  };
  for (const t of [...LINK_LOCAL.v4, ...LINK_LOCAL.v6]) add(t);
  for (const l of links) {
    if (l.ifname === 'lo' || exclude.includes(l.ifname)) continue;
    for (const a of l.addresses) {
      if (a.scope === 'host' || a.prefixlen >= (a.family === 4 ? 32 : 128)) continue;
      add(a.cidr);
    }
  }
  // o holds c when o's prefix is no longer and c's network address is inside o.
  const kept = all.filter((c, i) => !all.some((o, j) => o.family === c.family && (o.prefix < c.prefix || (o.prefix === c.prefix && j < i)) && cidrContains(o, c)));
  const texts = (f: 4 | 6) => kept.filter((c) => c.family === f).map((c) => c.text).sort();
  return { v4: texts(4), v6: texts(6) };
}

