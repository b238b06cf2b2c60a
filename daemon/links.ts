// WAN links (breakout.links) as the daemon drives them: each link is probed
// through itself like a gateway (its own HealthMonitor, same hysteresis and
// failback hold), the best usable one carries `breakout`, and a link without
// a configured next hop uses its own default route from main. Pure helpers:
// daemon.ts wires them.
import type { Config, ProbeSpec, Upstream } from '../config/types.js';
import { linkMark } from './dataplane/plan.js';
import type { MonitoredGateway } from './health/monitor.js';

/**
 * Metered links rank after every other one whatever their priority: breakout
 * takes one only when no other link is usable (failover), never by choice.
 */
export const METERED_RANK = 1_000_000;

/** What a link's probe round runs: the configured probes without `handshake` (a link is no tunnel); none left: a dns probe. */
export function linkProbes(probes: readonly ProbeSpec[]): ProbeSpec[] {
  const usable = probes.filter((p) => p.kind !== 'handshake');
  return usable.length ? usable : [{ kind: 'dns' }];
}

/** The links as the link monitor watches them: probed through their own mark, their resolvers (auto: the breakout's). */
export function monitoredLinks(c: Config, slots: ReadonlyMap<string, number>, breakoutDns: readonly Upstream[]): MonitoredGateway[] {
  return (c.breakout.links ?? []).map((l) => ({
    name: l.name,
    priority: l.priority + (l.metered ? METERED_RANK : 0),
    path: l.path,
    ifname: l.interface,
    dns: l.dns === 'auto' ? breakoutDns : l.dns,
    mark: linkMark(slots.get(l.name)!),
    probes: linkProbes(c.health.probe),
  }));
}

/** Unmanaged gateways as the gateway monitor watches them (no handshake to read: splitwan does not run them). */
export function monitoredUnmanaged(c: Config, markOf: (name: string) => number): MonitoredGateway[] {
  return (c.tunnel.unmanaged ?? []).map((g) => ({ name: g.name, priority: g.priority, path: g.path, ifname: g.ifname, dns: g.dns, mark: markOf(g.name), probes: linkProbes(g.probe ?? c.health.probe) }));
}

/** Default routes of main by interface (`ip -j route show default`, both families): a link's own next hop. */
export function nextHopsByInterface(routes: readonly { family: 4 | 6; dev?: string; gateway?: string }[]): Map<string, { v4?: string; v6?: string }> {
  const out = new Map<string, { v4?: string; v6?: string }>();
  for (const r of routes) {
    if (r.dev === undefined || r.gateway === undefined) continue;
    const e = out.get(r.dev) ?? {};
    // The first (lowest metric, as ip lists them) wins.
    if (r.family === 4) e.v4 ??= r.gateway;
    else e.v6 ??= r.gateway;
    out.set(r.dev, e);
  }
  return out;
}
