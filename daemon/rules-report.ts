// The rules and lists as the dashboard shows them: each rule with the
// queries it decided, each list with its size, where it comes from and how
// its last download went. Pure: the daemon hands in what it has.
import type { LoadedConfig } from '../config/load.js';
import type { ResolverStats } from '../dns/resolver.js';
import type { RulesReport } from './control/protocol.js';

/** The last download of each URL list (ListRefresher.onResult), kept by the daemon. */
export class ListRefreshBook {
  private readonly last = new Map<string, { at: number; status: string; error?: string }>();
  note(name: string, at: number, r: { status: string; error?: string }): void {
    this.last.set(name, { at, status: r.status, ...(r.error !== undefined ? { error: r.error } : {}) });
  }
  get(name: string): { at: number; status: string; error?: string } | null {
    return this.last.get(name) ?? null;
  }
}

export function rulesReport(loaded: LoadedConfig, stats: Pick<ResolverStats, 'byRule'>, refreshes: ListRefreshBook): RulesReport {
  const c = loaded.config;
  return {
    rules: c.rules.map((r) => ({
      index: r.index,
      label: r.label,
      via: [...r.via],
      hits: stats.byRule[r.index + 1] ?? 0,
      domains: r.domains.length,
      cidrs: r.cidrs.length,
      sources: r.sources.length,
      lists: [...r.lists],
      at: `${r.pos.file}:${r.pos.line}`,
    })),
    default: { via: [...c.default], hits: stats.byRule[0] ?? 0 },
    lists: [...loaded.lists.values()].map((l) => ({
      name: l.source.name,
      source: l.source.url ?? l.source.file ?? '',
      format: l.parsed?.format ?? l.source.format,
      entries: l.domains.length + l.cidrs.length,
      origin: l.origin,
      problems: l.parsed?.problems.length ?? 0,
      lastRefresh: refreshes.get(l.source.name),
    })),
  };
}
