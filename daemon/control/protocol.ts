// The control API's shapes: HTTP+JSON over the unix socket `control.socket`.
// The daemon serves them (daemon/control/server.ts), the CLI asks for them
// (daemon/control/client.ts). Fields are added, never renamed: scripts read
// `splitwan status --json`.
import type { ExplainResult } from '../explain.js';
import type { QueryLogEntry } from '../../dns/query-log.js';

export interface ControlRoute {
  method: 'GET' | 'POST';
  path: string;
}

/** Every request the daemon serves: the server routes by these, the CLI asks by them. */
export const ROUTES = {
  status: { method: 'GET', path: '/v1/status' },
  reload: { method: 'POST', path: '/v1/reload' },
  select: { method: 'POST', path: '/v1/select' },
  explain: { method: 'GET', path: '/v1/explain' },
  listsRefresh: { method: 'POST', path: '/v1/lists/refresh' },
  dnsFlush: { method: 'POST', path: '/v1/dns/flush' },
  // The query log (`splitwan log`, the dashboard): ?since=SEQ&limit=N&client=&name=&path=
  log: { method: 'GET', path: '/v1/log' },
  // Rules with their hits, lists with their size, source and last refresh (the dashboard).
  rules: { method: 'GET', path: '/v1/rules' },
  // Captive portals (issue 16): open one for a while ({close: true}: close it now). Root only, as every route.
  portal: { method: 'POST', path: '/v1/portal' },
  // Per-app split (issue 16): `splitwan exec` moves its own process into a path's cgroup (root only).
  appExec: { method: 'POST', path: '/v1/apps/exec' },
} as const satisfies Record<string, ControlRoute>;

/** "GET /v1/status": how the server matches a request. */
export const routeKey = (r: ControlRoute): string => `${r.method} ${r.path}`;

export interface GatewayReport {
  name: string;
  ifname: string;
  priority: number;
  /** unknown | up | degraded | down */
  state: string;
  active: boolean;
  rttMs: number | null;
  /** Share of failed probe rounds in the health window, 0..1. */
  loss: number;
  /** Unix ms of the latest WireGuard handshake; null: none yet. */
  lastHandshake: number | null;
  rxBytes: number;
  txBytes: number;
  endpoint: string | null;
  lastError: string | null;
  /** Unix ms of the last state change. */
  changedAt: number;
  /** A gateway another program made (an interface or a routing table): no WireGuard figures. Absent: splitwan's own tunnel. */
  unmanaged?: 'interface' | 'table';
}

export interface LinkReport {
  name: string;
  ifname: string;
  priority: number;
  weight: number;
  metered: boolean;
  state: string;
  /** Carries breakout now (the best usable link). */
  active: boolean;
  rttMs: number | null;
  loss: number;
  lastError: string | null;
  changedAt: number;
}

export interface FailoverRecord {
  at: number;
  from: string | null;
  to: string | null;
  reason: string;
}

export interface StatusReport {
  version: string;
  pid: number;
  startedAt: number;
  mode: 'router' | 'host';
  config: { file: string; digest: string; version: number; loadedAt: number; lastReload: { at: number; status: string; error?: string } | null };
  /** The gateway carrying the tunnel path; null: none healthy (the kill switch holds when on). */
  active: string | null;
  /** `splitwan select NAME`; null: automatic. */
  pinned: string | null;
  killSwitch: { enabled: boolean; engaged: boolean };
  gateways: GatewayReport[];
  breakout: { interface: string | null; state: string; rttMs: number | null; dns: string[] };
  /** breakout.links: each WAN link's health; `active`: the link breakout takes now (unset: one WAN). */
  links?: LinkReport[];
  /** Addresses the resolver has routed now, per path (breakout, gw:NAME, tunnel, block). */
  tagged: Record<string, number>;
  dns: { listen: string[]; queries: number; hits: number; misses: number; hitRatio: number | null; servfail: number; blocked: number; cacheEntries: number };
  proxy: { listen: string[]; paths: Record<string, { connections: number; active: number; bytesUp: number; bytesDown: number }> } | null;
  /** Most recent first, at most 20. */
  failovers: FailoverRecord[];
  /** breakout.links: switches of the link breakout takes (`to` null: none up), most recent first, at most 20. */
  linkFailovers?: FailoverRecord[];
  /** Host mode beside systemd-resolved: the takeover (absent or null: none made). */
  resolved?: { active: boolean; resolvedRunning: boolean; ifname: string; reapplied: number; lastError: string | null } | null;
  /** Captive portals (issue 16); absent: a daemon without them. */
  portal?: PortalReport;
  /** Per-app split (issue 16): cgroups pinned to a path (exec, apps: exe, apps: cgroup); absent: none. */
  apps?: { path: string; cgroup: string; kind: string[]; refused?: boolean }[];
}

/** A captive portal as splitwan sees it (status, `splitwan portal`). */
export interface PortalReport {
  /** open: a window lets the portal through now; suspected: the probe saw one; none: the probe got its 204; unknown: no answer yet; off: not probed (portal.enabled false). */
  state: 'open' | 'suspected' | 'none' | 'unknown' | 'off';
  /** The portal's page as the probe followed it; null: none seen. */
  url: string | null;
  probeUrl: string;
  /** Unix ms and outcome of the latest probe; null: none yet. */
  lastProbe: { at: number; result: 'online' | 'portal' | 'failed'; error?: string } | null;
  /** The open window: what goes through bare via the breakout, until when (unix ms). */
  window: { openedAt: number; until: number; hosts: { name: string; addresses: string[] }[]; ports: number[]; dns: string[] } | null;
  /** What a `splitwan portal` request did, in words. */
  message?: string;
}

/** `POST /v1/apps/exec`: the process `pid` now takes `path` (its cgroup `cgroup`, under the cgroup2 root). */
export interface AppExecReport {
  path: string;
  cgroup: string;
}

export interface ReloadReport {
  /** failed: the file is good but applying it failed; the previous config was put back. */
  status: 'applied' | 'unchanged' | 'rejected' | 'failed' | 'dry-run';
  /** Errors of a rejected file, warnings of an applied one: `file:line:col: message`. */
  issues: string[];
  /** Why applying failed (status failed). */
  error?: string;
  /** Dry run: what the new file would change, in words. */
  changes?: string[];
}

export interface SelectReport {
  active: string | null;
  pinned: string | null;
}

export interface ListsReport {
  lists: { name: string; ok: boolean; entries?: number; changed?: boolean; error?: string }[];
}

export type ExplainReport = ExplainResult;

export interface ControlError {
  error: string;
  code: string;
}

/** What `GET /v1/log` selects: records after `since` (oldest first: follow), else the newest `limit` (oldest first). */
export interface LogQuery {
  since?: number;
  limit: number;
  /** An address, or part of a client's name. */
  client?: string;
  /** A glob (`*.example.com`; `*` is any run of characters) or, without `*`, any part of the name. */
  name?: string;
  /** breakout, tunnel, gw:NAME, block. */
  path?: string;
}

export interface LogReport {
  privacy: 'off' | 'anonymize' | 'full';
  /** Records the ring holds at most. */
  size: number;
  entries: QueryLogEntry[];
  /** Ask `since=next` for what comes after. */
  next: number;
  /** Records that were overwritten before they were read (since only). */
  missed: number;
}

export interface RulesReport {
  rules: {
    index: number;
    label: string;
    via: string[];
    /** Queries it decided since start (or since the rules last changed). */
    hits: number;
    domains: number;
    cidrs: number;
    sources: number;
    lists: string[];
    /** file:line of the rule. */
    at: string;
  }[];
  default: { via: string[]; hits: number };
  lists: {
    name: string;
    source: string;
    format: string;
    /** Entries in force (domains + CIDRs). */
    entries: number;
    /** file: a list file; cache: the last good download; none: never downloaded. */
    origin: 'file' | 'cache' | 'none';
    /** Lines that could not be read. */
    problems: number;
    /** Unix ms and outcome of the last download (URL lists, since start); null: none yet. */
    lastRefresh: { at: number; status: string; error?: string } | null;
  }[];
}
