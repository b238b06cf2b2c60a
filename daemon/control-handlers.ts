// What the control socket answers (status, reload, select, explain, lists,
// flush), over the parts the composition root made: each handler reads or
// asks those parts and shapes the reply (daemon/control/protocol.ts).
import { formatIssue, type ConfigIssue } from '../config/errors.js';
import { loadConfig, type LoadDeps, type LoadedConfig } from '../config/load.js';
import type { ConfigStore } from '../config/store.js';
import type { ListRefresher } from '../config/lists/refresher.js';
import type { Policy } from '../config/policy.js';
import { normalizeDomain } from '../config/domain.js';
import { formatIp, parseIp } from '../lib/ip.js';
import type { Logger } from '../lib/logger.js';
import { diffConfigs } from './control/config-diff.js';
import type { ExplainReport, PortalReport, RulesReport, StatusReport } from './control/protocol.js';
import type { QueryLog } from '../dns/query-log.js';
import { readLog, type ClientNamer } from './query-log-view.js';
import type { ControlHandlers } from './control/server.js';
import { explain, withTag } from './explain.js';
import type { TagLookup } from './tag-lookup-linux.js';

export interface ControlContext {
  status(): Promise<StatusReport>;
  store: Pick<ConfigStore, 'reload' | 'current'>;
  loadDeps?: LoadDeps;
  /** The config whose plan is in force (rule numbers of tags and hits refer to it). */
  applied(): LoadedConfig;
  policy(): Policy;
  /** Pins the tunnel path to a gateway (null: automatic); throws for an unknown name. */
  pin(gateway: string | null): { active: string | null; pinned: string | null };
  /** Addresses the resolver's cache holds for a name. */
  cachedAddresses(name: string): string[];
  tagLookup: TagLookup;
  lists: Pick<ListRefresher, 'refreshAll'>;
  flushCache(): number;
  /** The query log and who the clients are (daemon/client-names.ts). */
  queryLog: QueryLog;
  clientName: ClientNamer | null;
  rules(): RulesReport;
  /** Captive portals (issue 16): `splitwan portal` opens a window, --close ends it. */
  portal?: { open(): Promise<PortalReport>; close(why: string): Promise<boolean>; status(): PortalReport };
  logger: Logger;
}

const refusal = (e: unknown, code: string): Error => Object.assign(new Error((e as Error).message), { code });

export function controlHandlers(x: ControlContext): ControlHandlers {
  return {
    status: () => x.status(),
    reload: async (dryRun, file) => {
      if (!dryRun) {
        const r = await x.store.reload('control');
        return { status: r.status, issues: r.issues.map(formatIssue), ...(r.error !== undefined ? { error: r.error } : {}) };
      }
      try {
        const next = await loadConfig(file ?? x.store.current.config.file, ...(x.loadDeps ? [x.loadDeps] : []));
        return { status: 'dry-run', issues: next.warnings.map(formatIssue), changes: diffConfigs(x.store.current, next) };
      } catch (e) {
        const issues = (e as { issues?: ConfigIssue[] }).issues;
        if (!issues) throw e;
        return { status: 'rejected', issues: issues.map(formatIssue) };
      }
    },
    select: (gateway) => {
      let r;
      try {
        r = x.pin(gateway);
      } catch (e) {
        throw refusal(e, 'SPLITWAN_CONTROL_SELECT');
      }
      x.logger.info({ pinned: gateway }, gateway === null ? 'gateway selection: automatic' : `gateway pinned: ${gateway}`);
      return r;
    },
    explain: async (target, source): Promise<ExplainReport> => {
      let r;
      try {
        r = explain(x.policy(), target, source);
      } catch (e) {
        throw refusal(e, 'SPLITWAN_USAGE');
      }
      const rules = x.applied().config.rules;
      if (r.kind === 'ip') return withTag(r, rules, await x.tagLookup(formatIp(parseIp(r.input)!)));
      const n = normalizeDomain(r.input);
      const addrs = 'error' in n ? [] : x.cachedAddresses(n.name);
      const addresses = [];
      for (const address of addrs) {
        const t = withTag({ ...r, kind: 'ip' }, rules, await x.tagLookup(address)).tagged;
        addresses.push({ address, tagged: t === undefined || t === null ? null : typeof t === 'string' ? t : { rule: t.rule, via: t.via, expiresInSeconds: t.expiresInSeconds } });
      }
      return { ...r, addresses };
    },
    refreshLists: async () => {
      const results = await x.lists.refreshAll();
      return {
        lists: [...results].map(([name, r]) => {
          const l = x.store.current.lists.get(name);
          return {
            name,
            ok: r.status !== 'failed',
            changed: r.status === 'updated',
            ...(r.entry ? { entries: l ? l.domains.length + l.cidrs.length : 0 } : {}),
            ...(r.error ? { error: r.error } : {}),
          };
        }),
      };
    },
    queryLog: (q) => readLog(x.queryLog, x.clientName, q),
    rules: () => x.rules(),
    ...(x.portal ? { portal: portalHandler(x.portal) } : {}),
    flushDns: () => {
      const flushed = x.flushCache();
      x.logger.info({ flushed }, 'DNS cache flushed (control)');
      return { flushed };
    },
  };
}

/** `POST /v1/portal`: open a window ({}), or close it ({close: true}); the report says what it did. */
function portalHandler(p: NonNullable<ControlContext['portal']>): (close: boolean) => Promise<PortalReport> {
  return async (close) => {
    if (!close) return p.open();
    const closed = await p.close('closed by splitwan portal --close');
    return { ...p.status(), message: closed ? 'closed' : 'no window was open' };
  };
}
