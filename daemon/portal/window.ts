// What a portal window lets through (issue 16), planned from what the probe
// found: pure. TCP 80 and 443 to the probe's and the portal's hosts (every
// address the breakout's resolvers give them), and DNS to the breakout's
// resolvers on their own ports. Nothing else: no other port, no other host.
import { isIP } from 'node:net';
import type { Upstream } from '../../config/types.js';
import type { PortalElement } from '../dataplane/portal-rules.js';

/** The ports a portal's web pages use. */
export const PORTAL_PORTS = [80, 443] as const;

export interface PortalHost {
  name: string;
  addresses: string[];
}

/** The elements for some hosts' addresses: TCP 80 and 443 each. */
export function hostElements(hosts: readonly PortalHost[]): PortalElement[] {
  return hosts.flatMap((h) => h.addresses.flatMap((address) => PORTAL_PORTS.map((port) => ({ address, proto: 'tcp' as const, port }))));
}

/** A resolver's address, protocols and port, when it is known by address (plain, DoT; DoH by an IP literal). */
export function resolverElements(u: Upstream): PortalElement[] {
  if (u.kind === 'plain') return [{ address: u.host, proto: 'udp', port: u.port }, { address: u.host, proto: 'tcp', port: u.port }];
  if (u.kind === 'tls') return [{ address: u.host, proto: 'tcp', port: u.port }];
  try {
    const url = new URL(u.url);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    return isIP(host) ? [{ address: host, proto: 'tcp', port: Number(url.port) || 443 }] : [];
  } catch {
    return [];
  }
}

/** Everything a window opens: the hosts' web ports and the resolvers. */
export function planPortalWindow(hosts: readonly PortalHost[], resolvers: readonly Upstream[]): { elements: PortalElement[]; dns: string[] } {
  const dns = resolvers.flatMap((u) => (resolverElements(u).length ? [u.text] : []));
  return { elements: [...hostElements(hosts), ...resolvers.flatMap(resolverElements)], dns };
}
