// CLI commands that talk to the running daemon over its control socket:
// status, reload, select, lists refresh, dns flush (and explain, which falls
// back to the config file when no daemon runs). Rendering is pure.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_CONFIG_PATH } from '../../config/load.js';
import { ControlAccessError, controlRequest, ControlRequestError, NotRunningError } from '../control/client.js';
import { readSocketPath } from '../control/server.js';
import { ROUTES, type ControlRoute, type ExplainReport, type ListsReport, type LogReport, type ReloadReport, type SelectReport, type StatusReport } from '../control/protocol.js';
import type { QueryLogEntry } from '../../dns/query-log.js';
import { Exit, type Io } from '../cli-io.js';
import { formatExplain } from '../explain.js';

export const DEFAULT_CONTROL_SOCKET = '/run/splitwan/control.sock';

/**
 * The socket: --socket, else `control.socket` of the config file (read
 * leniently: a config with errors elsewhere still names its socket), else the default.
 */
export async function controlSocket(values: { socket?: string | undefined; config?: string | undefined }): Promise<string> {
  if (values.socket) return values.socket;
  try {
    const doc = parseYaml(await readFile(values.config ?? DEFAULT_CONFIG_PATH, 'utf8')) as { control?: { socket?: unknown } } | null;
    const s = doc?.control?.socket;
    if (typeof s === 'string' && s.length > 0) return s;
  } catch {
    /* unreadable or not YAML: the default */
  }
  return DEFAULT_CONTROL_SOCKET;
}

/**
 * A request that only reads (status, explain): the control socket, else, for
 * a user who may not open it, the read-only socket beside it (control.group's
 * members; daemon/control/server.ts).
 */
export async function readRequest<T>(socket: string, route: ControlRoute, o: { query?: URLSearchParams } = {}): Promise<T> {
  try {
    return await controlRequest<T>(socket, route, undefined, o);
  } catch (e) {
    if (!(e instanceof ControlAccessError)) throw e;
    try {
      return await controlRequest<T>(readSocketPath(socket), route, undefined, o);
    } catch (e2) {
      if (e2 instanceof ControlAccessError || e2 instanceof NotRunningError) throw new ControlAccessError(`${e.message} (or, to read status and explain, be a member of the daemon's control.group, by default splitwan)`);
      throw e2;
    }
  }
}

/** Runs one request; maps "not running" to exit 3 and "not root" to exit 4 with a clear line. */
export async function withDaemon(io: Io, what: string, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof NotRunningError) {
      io.err(`splitwan ${what}: ${e.message}\n`);
      return Exit.NOT_RUNNING;
    }
    if (e instanceof ControlAccessError) {
      io.err(`splitwan ${what}: ${e.message}\n`);
      return Exit.NEEDS_ROOT;
    }
    if (e instanceof ControlRequestError && e.code === 'SPLITWAN_CONTROL_READONLY') {
      io.err(`splitwan ${what}: ${e.message}\n`);
      return Exit.NEEDS_ROOT;
    }
    if (e instanceof ControlRequestError) {
      io.err(`splitwan ${what}: ${e.message} (${e.code})\n`);
      return e.code === 'SPLITWAN_USAGE' || e.code === 'SPLITWAN_CONTROL_SELECT' ? Exit.USAGE : Exit.SOFTWARE;
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Rendering (pure)

function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(widths[c]!))).join('  ').trimEnd());
}

const failoverLine = (f: StatusReport['failovers'][number]): string => `  ${new Date(f.at).toISOString()}  ${f.from ?? 'none'} → ${f.to ?? 'none'}  (${f.reason})`;

export function formatStatus(s: StatusReport, now: number): string {
  const L: string[] = [];
  L.push(`splitwan ${s.version} (pid ${s.pid}), ${s.mode} mode, up ${ago(s.startedAt, now).replace(' ago', '')}`);
  const reload = s.config.lastReload ? `; last reload ${ago(s.config.lastReload.at, now)}: ${s.config.lastReload.status}${s.config.lastReload.error ? ` (${s.config.lastReload.error})` : ''}` : '';
  L.push(`config ${s.config.file} v${s.config.version} (${s.config.digest}), loaded ${ago(s.config.loadedAt, now)}${reload}`);
  const active = s.active === null ? (s.killSwitch.enabled ? 'NONE — kill switch engaged: tunnel traffic is blocked' : 'none — kill switch off: tunnel traffic leaves via the breakout') : s.active;
  L.push(`tunnel path: ${active}${s.pinned ? ` (pinned by select; "splitwan select auto" to undo)` : ''}`);
  L.push('');
  const rows = [['', 'GATEWAY', 'STATE', 'RTT', 'LOSS', 'HANDSHAKE', 'RX', 'TX', 'ENDPOINT']];
  for (const g of s.gateways) {
    rows.push([
      g.active ? '*' : '',
      `${g.name} (${g.ifname}, prio ${g.priority})`,
      g.state,
      g.rttMs === null ? '-' : `${g.rttMs} ms`,
      `${Math.round(g.loss * 100)}%`,
      g.lastHandshake === null ? 'never' : ago(g.lastHandshake, now),
      bytes(g.rxBytes),
      bytes(g.txBytes),
      g.endpoint ?? '-',
    ]);
  }
  L.push(...table(rows));
  for (const g of s.gateways) if (g.lastError && g.state !== 'up') L.push(`  ${g.name}: ${g.lastError}`);
  L.push('');
  if (s.links?.length) {
    // Several WAN links: each like a gateway; `*` marks the one breakout takes now.
    L.push(`breakout: by ${s.links.find((l) => l.active)?.name ?? 'none'}, resolvers ${s.breakout.dns.join(' ') || 'auto'}`);
    const rows = [['', 'link', 'interface', 'prio', 'weight', 'state', 'rtt', 'loss'], ...s.links.map((l) => [l.active ? '*' : '', l.name, l.ifname, String(l.priority), String(l.weight), `${l.state}${l.metered ? ' (metered)' : ''}`, l.rttMs === null ? '-' : `${Math.round(l.rttMs)} ms`, `${Math.round(l.loss * 100)}%`])];
    L.push(...table(rows));
    for (const l of s.links) if (l.lastError && l.state !== 'up') L.push(`  ${l.name}: ${l.lastError}`);
  } else L.push(`breakout: ${s.breakout.interface ?? 'no default route'}, ${s.breakout.state}${s.breakout.rttMs === null ? '' : `, rtt ${Math.round(s.breakout.rttMs)} ms`}, resolvers ${s.breakout.dns.join(' ') || 'none'}`);
  const tagged = Object.entries(s.tagged);
  L.push(`tagged addresses: ${tagged.length ? tagged.map(([p, n]) => `${p} ${n}`).join(', ') : 'none'}`);
  const d = s.dns;
  if (s.resolved) L.push(`systemd-resolved: ${s.resolved.active ? `every query sent to splitwan (link ${s.resolved.ifname})` : s.resolved.resolvedRunning ? `NOT taken over: ${s.resolved.lastError ?? 'retrying'}` : 'not running (taken over again when it is back)'}${s.resolved.reapplied ? `, applied again ${s.resolved.reapplied}x` : ''}`);
  L.push(`dns: ${d.listen.join(' ')}; ${d.queries} queries, hit ratio ${d.hitRatio === null ? '-' : `${Math.round(d.hitRatio * 100)}%`}, ${d.cacheEntries} cached, ${d.servfail} servfail, ${d.blocked} blocked`);
  if (s.proxy) {
    const paths = Object.entries(s.proxy.paths);
    L.push(`proxy: ${s.proxy.listen.join(' ')}; ${paths.length ? paths.map(([p, t]) => `${p} ${t.connections} conns (${t.active} open) ↑${bytes(t.bytesUp)} ↓${bytes(t.bytesDown)}`).join('; ') : 'no connections yet'}`);
  }
  L.push('');
  if (s.failovers.length === 0) L.push('failovers: none since start');
  else {
    L.push('recent failovers:');
    for (const f of s.failovers.slice(0, 5)) L.push(failoverLine(f));
  }
  if (s.linkFailovers?.length) {
    L.push('recent link failovers:');
    for (const f of s.linkFailovers.slice(0, 5)) L.push(failoverLine(f));
  }
  return L.join('\n') + '\n';
}

export function formatReload(r: ReloadReport): string {
  const L: string[] = [];
  if (r.status === 'dry-run') {
    L.push(r.changes && r.changes.length ? 'the new file would change:' : 'the new file changes nothing that matters');
    for (const c of r.changes ?? []) L.push(`  ${c}`);
    L.push('(dry run: nothing applied)');
  } else if (r.status === 'rejected') L.push('rejected: the running configuration is kept');
  else if (r.status === 'failed') L.push(`failed: the file is valid but applying it failed (${r.error ?? 'no reason given'}); the previous configuration was put back, and the next reload tries again`);
  else L.push(r.status === 'applied' ? 'reloaded: the new configuration is running' : 'unchanged: the file is the same as the running configuration');
  for (const i of r.issues) L.push(i);
  return L.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// Commands

export async function statusCommand(o: { socket: string; json: boolean }, io: Io, now = Date.now()): Promise<number> {
  return withDaemon(io, 'status', async () => {
    const s = await readRequest<StatusReport>(o.socket, ROUTES.status);
    io.out(o.json ? JSON.stringify(s, null, 2) + '\n' : formatStatus(s, now));
    return Exit.OK;
  });
}

export async function reloadCommand(o: { socket: string; dryRun: boolean; json: boolean; file?: string | undefined }, io: Io): Promise<number> {
  return withDaemon(io, 'reload', async () => {
    // The daemon reads the file itself: a relative path means the one here.
    const file = o.file === undefined ? undefined : (await import('node:path')).resolve(o.file);
    const r = await controlRequest<ReloadReport>(o.socket, ROUTES.reload, { dryRun: o.dryRun, ...(file ? { file } : {}) });
    io.out(o.json ? JSON.stringify(r) + '\n' : formatReload(r));
    return r.status === 'rejected' ? Exit.CONFIG : r.status === 'failed' ? Exit.APPLY : Exit.OK;
  });
}

export async function selectCommand(o: { socket: string; gateway: string }, io: Io): Promise<number> {
  return withDaemon(io, 'select', async () => {
    const r = await controlRequest<SelectReport>(o.socket, ROUTES.select, { gateway: o.gateway === 'auto' ? null : o.gateway });
    io.out(r.pinned === null ? `automatic: the best healthy gateway carries the tunnel (now ${r.active ?? 'none'})\n` : `pinned to ${r.pinned}; the tunnel path is ${r.active ?? 'none'} now\n`);
    return Exit.OK;
  });
}

export async function listsRefreshCommand(o: { socket: string; json: boolean }, io: Io): Promise<number> {
  return withDaemon(io, 'lists refresh', async () => {
    const r = await controlRequest<ListsReport>(o.socket, ROUTES.listsRefresh, {}, { timeoutMs: 120_000 });
    if (o.json) io.out(JSON.stringify(r) + '\n');
    else if (r.lists.length === 0) io.out('no URL lists in the config\n');
    else for (const l of r.lists) io.out(`${l.name}: ${l.ok ? (l.changed ? `updated (${l.entries ?? 0} entries)` : 'not modified') : `failed: ${l.error ?? 'unknown'}${l.entries !== undefined ? ' (keeping the last good copy)' : ''}`}\n`);
    return r.lists.every((l) => l.ok) ? Exit.OK : Exit.CONFIG;
  });
}

export async function dnsFlushCommand(o: { socket: string }, io: Io): Promise<number> {
  return withDaemon(io, 'dns flush', async () => {
    const r = await controlRequest<{ flushed: number }>(o.socket, ROUTES.dnsFlush, {});
    io.out(`flushed ${r.flushed} cached answers\n`);
    return Exit.OK;
  });
}

/** explain against the running daemon; null when none runs (the caller explains from the file). */
export async function explainViaDaemon(o: { socket: string; target: string; source?: string | undefined; json: boolean }, io: Io): Promise<number | null> {
  const q = new URLSearchParams({ q: o.target, ...(o.source ? { source: o.source } : {}) });
  try {
    const r = await readRequest<ExplainReport>(o.socket, ROUTES.explain, { query: q });
    io.out(o.json ? JSON.stringify(r) + '\n' : formatExplain(r));
    return Exit.OK;
  } catch (e) {
    if (e instanceof NotRunningError || e instanceof ControlAccessError) return null;
    if (e instanceof ControlRequestError && e.code === 'SPLITWAN_USAGE') {
      io.err(`splitwan explain: ${e.message}\n`);
      return Exit.USAGE;
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------
// splitwan log (issue 20): the query log, through the control socket.

function clockTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** One record as a line: time, client, type, name, path and rule, answers, cache/latency, result. */
export function formatLogEntry(e: QueryLogEntry): string {
  const client = e.clientName ? `${e.client} (${e.clientName})` : e.client;
  const rule = e.rule !== null ? `rule ${e.rule}${e.ruleLabel && e.ruleLabel !== `rule ${e.rule}` ? ` "${e.ruleLabel}"` : ''}` : (e.ruleLabel ?? '-');
  const how = e.cached ? 'cached' : e.upstreamMs !== null ? `${e.upstreamMs} ms` : '-';
  const answers = e.answers.length === 0 ? '-' : e.answers.length > 3 ? `${e.answers.slice(0, 3).join(' ')} +${e.answers.length - 3}` : e.answers.join(' ');
  const result = e.result === 'answered' ? e.rcode : `${e.result} ${e.rcode}`;
  return `${clockTime(e.at)}  ${client}  ${e.type} ${e.name}  → ${e.path ?? '-'} (${rule})  ${answers}  ${how}  ${result}`;
}

export interface LogOptions {
  socket: string;
  follow: boolean;
  json: boolean;
  client?: string | undefined;
  name?: string | undefined;
  path?: string | undefined;
  limit: number;
  /** follow: polls until this says stop (Ctrl-C in the CLI). */
  stopped?: () => boolean;
  pollMs?: number;
}

export async function logCommand(o: LogOptions, io: Io): Promise<number> {
  return withDaemon(io, 'log', async () => {
    const filter: Record<string, string> = {};
    if (o.client) filter.client = o.client;
    if (o.name) filter.name = o.name;
    if (o.path) filter.path = o.path;
    const print = (r: LogReport): void => {
      if (r.missed > 0 && !o.json) io.out(`… ${r.missed} records were overwritten before they were read\n`);
      for (const e of r.entries) io.out(o.json ? JSON.stringify(e) + '\n' : formatLogEntry(e) + '\n');
    };
    let r = await controlRequest<LogReport>(o.socket, ROUTES.log, undefined, { query: new URLSearchParams({ ...filter, limit: String(o.limit) }) });
    if (r.privacy === 'off' && !o.json) io.err('splitwan log: the query log is off (queryLog.privacy: off)\n');
    print(r);
    const stopped = o.stopped ?? (() => false);
    while (o.follow && !stopped()) {
      await new Promise((res) => setTimeout(res, o.pollMs ?? 1000));
      if (stopped()) break;
      r = await controlRequest<LogReport>(o.socket, ROUTES.log, undefined, { query: new URLSearchParams({ ...filter, limit: '5000', since: String(r.next) }) });
      print(r);
    }
    return Exit.OK;
  });
}
