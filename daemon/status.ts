// `splitwan status` and the metrics' view of the daemon, built from what the
// parts keep: pure apart from the reads it is handed.
import type { LoadedConfig } from '../config/load.js';
import type { ResolverStats } from '../dns/resolver.js';
import type { GatewayStatus } from './health/monitor.js';
import type { LinkReport, StatusReport } from './control/protocol.js';
import { MARK_BLOCK, MARK_BREAKOUT, MARK_TUNNEL, tagSetNames, type DataplanePlan } from './dataplane/plan.js';
import type { TunnelStatus } from './tunnel/types.js';
import type { ReloadResult } from '../config/store.js';

/** A path's name from its mark, as status shows it. */
export function pathOfMark(plan: (Pick<DataplanePlan, 'gateways'> & Partial<Pick<DataplanePlan, 'links'>>) | null, mark: number): string {
  if (mark === MARK_BREAKOUT) return 'breakout';
  if (mark === MARK_TUNNEL) return 'tunnel';
  if (mark === MARK_BLOCK) return 'block';
  const g = plan?.gateways.find((x) => x.mark === mark);
  const l = plan?.links?.find((x) => x.mark === mark);
  return g ? `gw:${g.name}` : l ? `link:${l.name}` : `mark 0x${mark.toString(16)}`;
}

/** Tagged addresses per path: the tagger's count per set, summed over the rules that go there. */
export function taggedByPath(plan: Pick<DataplanePlan, 'gateways' | 'rules'> | null, countsBySet: ReadonlyMap<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of plan?.rules ?? []) {
    if (!r.tagged) continue;
    const sets = tagSetNames(r);
    const n = (countsBySet.get(sets.v4) ?? 0) + (countsBySet.get(sets.v6) ?? 0);
    const path = pathOfMark(plan, r.mark);
    out[path] = (out[path] ?? 0) + n;
  }
  return out;
}

/** Hits per rule (index -1: the default), with a short label, for metrics. */
export function ruleHits(stats: Pick<ResolverStats, 'byRule'>, config: LoadedConfig['config']): { rule: number; label: string; count: number }[] {
  return stats.byRule.flatMap((count, i) => {
    const rule = i - 1;
    return count ? [{ rule, label: rule < 0 ? 'default' : (config.rules[rule]?.label ?? `#${rule}`).slice(0, 40), count }] : [];
  });
}

export interface StatusInputs {
  version: string;
  pid: number;
  startedAt: number;
  applied: LoadedConfig;
  store: { version: number; loadedAt: number; lastReload: { at: number; status: ReloadResult['status']; error?: string } | null };
  active: string | null;
  pinned: string | null;
  health: readonly GatewayStatus[];
  /** breakout.links: the link monitor's figures and its choice. */
  links?: { health: readonly GatewayStatus[]; active: string | null };
  tunnels: readonly TunnelStatus[];
  wan: string | null;
  breakoutDns: readonly string[];
  tagged: Record<string, number>;
  dnsListen: readonly string[];
  dns: Pick<ResolverStats, 'queries' | 'hits' | 'misses' | 'servfail' | 'blocked'>;
  cacheEntries: number;
  proxy: StatusReport['proxy'];
  failovers: StatusReport['failovers'];
  /** breakout.links: switches of the breakout's link. */
  linkFailovers?: StatusReport['failovers'];
  resolved?: StatusReport['resolved'];
  /** Captive portals (issue 16). */
  portal?: StatusReport['portal'];
}

function linkReports(c: LoadedConfig['config'], i: StatusInputs): LinkReport[] {
  return (c.breakout.links ?? []).map((l) => {
    const h = i.links?.health.find((x) => x.name === l.name);
    return {
      name: l.name,
      ifname: l.interface,
      priority: l.priority,
      weight: l.weight,
      metered: l.metered,
      state: h?.state ?? 'unknown',
      active: i.links?.active === l.name,
      rttMs: h?.rttMs === null || h?.rttMs === undefined ? null : Math.round(h.rttMs * 10) / 10,
      loss: h?.loss ?? 0,
      lastError: h?.lastError ?? null,
      changedAt: h?.changedAt ?? i.startedAt,
    };
  });
}

export function statusReport(i: StatusInputs): StatusReport {
  const c = i.applied.config;
  const gw = (name: string) => i.health.find((h) => h.name === name);
  const br = gw('breakout');
  const d = i.dns;
  return {
    version: i.version,
    pid: i.pid,
    startedAt: i.startedAt,
    mode: c.mode,
    config: { file: c.file, digest: c.digest.slice(0, 12), version: i.store.version, loadedAt: i.store.loadedAt, lastReload: i.store.lastReload },
    active: i.active,
    pinned: i.pinned,
    killSwitch: { enabled: c.tunnel.killSwitch, engaged: i.active === null },
    gateways: c.tunnel.gateways.map((g) => {
      const h = gw(g.name);
      const t = i.tunnels.find((x) => x.ifname === g.ifname);
      return {
        name: g.name,
        ifname: g.ifname,
        priority: g.priority,
        state: h?.state ?? 'unknown',
        active: i.active === g.name,
        rttMs: h?.rttMs === null || h?.rttMs === undefined ? null : Math.round(h.rttMs * 10) / 10,
        loss: h?.loss ?? 0,
        lastHandshake: t?.latestHandshake ?? null,
        rxBytes: t?.rxBytes ?? 0,
        txBytes: t?.txBytes ?? 0,
        endpoint: t?.endpoint ?? null,
        lastError: h?.lastError ?? null,
        changedAt: h?.changedAt ?? i.startedAt,
      };
    }).concat(
      // Gateways another program made: no WireGuard figures of ours to show.
      (c.tunnel.unmanaged ?? []).map((g) => {
        const h = gw(g.name);
        return {
          name: g.name,
          ifname: g.kind === 'table' ? `table ${g.table}` : g.ifname,
          priority: g.priority,
          state: h?.state ?? 'unknown',
          active: i.active === g.name,
          rttMs: h?.rttMs === null || h?.rttMs === undefined ? null : Math.round(h.rttMs * 10) / 10,
          loss: h?.loss ?? 0,
          lastHandshake: null,
          rxBytes: 0,
          txBytes: 0,
          endpoint: null,
          lastError: h?.lastError ?? null,
          changedAt: h?.changedAt ?? i.startedAt,
          unmanaged: g.kind,
        };
      }),
    ),
    breakout: { interface: i.wan, state: br?.state ?? 'unknown', rttMs: br?.rttMs ?? null, dns: [...i.breakoutDns] },
    ...(c.breakout.links?.length ? { links: linkReports(c, i), linkFailovers: i.linkFailovers ?? [] } : {}),
    tagged: i.tagged,
    dns: {
      listen: [...i.dnsListen],
      queries: d.queries,
      hits: d.hits,
      misses: d.misses,
      hitRatio: d.hits + d.misses ? d.hits / (d.hits + d.misses) : null,
      servfail: d.servfail,
      blocked: d.blocked,
      cacheEntries: i.cacheEntries,
    },
    proxy: i.proxy,
    failovers: i.failovers,
    resolved: i.resolved ?? null,
    ...(i.portal ? { portal: i.portal } : {}),
  };
}
