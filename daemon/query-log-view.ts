// Reading the query log for people: `splitwan log` (through the control
// socket) and the dashboard ask the same questions (a client, a name pattern,
// a path), so the selection and the client names are applied here, once, and
// only when someone reads: the resolver's hot path never pays for them.
import type { QueryLog, QueryLogEntry } from '../dns/query-log.js';
import type { LogQuery, LogReport } from './control/protocol.js';

/** `*.example.com` as a RegExp (`*`: any run of characters); without `*`: any part of the name. Case-insensitive. */
export function namePattern(pattern: string): (name: string) => boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  if (!p.includes('*')) return (name) => name.includes(p);
  const re = new RegExp(`^${p.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (name) => re.test(name);
}

/** The records a query selects (client: the address, or part of its name). */
export function logFilter(q: Pick<LogQuery, 'client' | 'name' | 'path'>): (e: QueryLogEntry) => boolean {
  const name = q.name === undefined ? null : namePattern(q.name);
  const client = q.client?.toLowerCase();
  return (e) =>
    (q.path === undefined || e.path === q.path) &&
    (name === null || name(e.name)) &&
    (client === undefined || e.client === client || (e.clientName !== null && e.clientName.toLowerCase().includes(client)));
}

/** Names LAN clients by address (daemon/client-names.ts); null: unknown. */
export type ClientNamer = (address: string) => string | null;

/**
 * Answers a LogQuery: with `since`, the records after it (oldest first, at
 * most `limit`, those the filter drops still move `next` on); without, the
 * newest `limit` that match, oldest first.
 */
export function readLog(log: QueryLog, names: ClientNamer | null, q: LogQuery): LogReport {
  const keep = logFilter(q);
  const anonymous = log.settings.privacy !== 'full';
  const named = (e: QueryLogEntry): QueryLogEntry => {
    if (!anonymous && names !== null) e.clientName = names(e.client);
    return e;
  };
  const { privacy, size } = log.settings;
  if (q.since !== undefined) {
    // Reads at most a ring's worth: a filter that matches nothing ends the call rather than spinning.
    const r = log.since(q.since, Math.max(size, 1));
    const entries: QueryLogEntry[] = [];
    let next = r.next;
    for (const e of r.entries) {
      if (!keep(named(e))) continue;
      if (entries.length === q.limit) {
        next = e.seq;
        break;
      }
      entries.push(e);
    }
    return { privacy, size, entries, next, missed: r.missed };
  }
  const entries = log.latest(q.limit, (e) => keep(named(e))).reverse();
  return { privacy, size, entries, next: log.nextSeq, missed: 0 };
}
