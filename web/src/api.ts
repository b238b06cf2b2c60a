// The dashboard's calls to the daemon (daemon/web/server.ts): same-origin
// fetches with the session cookie; every change carries the CSRF token the
// login (or /api/session) gave.
import type { ExplainReport, LogReport, ReloadReport, RulesReport, SelectReport, StatusReport, ListsReport } from '../../daemon/control/protocol.js';
import type { HistorySample } from '../../daemon/web/history.js';

export type { ExplainReport, LogReport, ReloadReport, RulesReport, SelectReport, StatusReport, ListsReport, HistorySample };
export type { QueryLogEntry } from '../../dns/query-log.js';

export interface Session {
  authenticated: boolean;
  csrf?: string;
  publicRead: boolean;
  passwordSet: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;
/** Called when a request finds the session gone (401), with the server's word on why: the app shows the login form. */
let onLoggedOut: (why: string) => void = () => {};
export const whenLoggedOut = (fn: (why: string) => void): void => void (onLoggedOut = fn);
const loggedOut = (why: string): void => {
  csrf = null;
  onLoggedOut(why);
};

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    if (csrf !== null) headers['x-csrf-token'] = csrf;
  }
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(method === 'POST' ? { body: JSON.stringify(body ?? {}) } : {}) });
  const j = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) {
    if (res.status === 401 && path !== '/api/login') loggedOut(j.error ?? 'your session ended');
    throw new ApiError(res.status, j.error ?? `HTTP ${res.status}`);
  }
  return j as T;
}

export async function session(): Promise<Session> {
  const s = await call<Session>('GET', '/api/session');
  csrf = s.csrf ?? null;
  return s;
}

export async function login(password: string): Promise<Session> {
  const s = await call<Session>('POST', '/api/login', { password });
  csrf = s.csrf ?? null;
  return session();
}

export async function logout(): Promise<void> {
  await call('POST', '/api/logout');
  csrf = null;
}

export const status = (): Promise<StatusReport> => call('GET', '/api/status');
export const history = (): Promise<{ samples: HistorySample[] }> => call('GET', '/api/history');
export const rules = (): Promise<RulesReport> => call('GET', '/api/rules');
export const explain = (q: string, source?: string): Promise<ExplainReport & { text: string }> =>
  call('GET', `/api/explain?${new URLSearchParams({ q, ...(source ? { source } : {}) }).toString()}`);
export const select = (gateway: string | null): Promise<SelectReport> => call('POST', '/api/select', { gateway });
export const reload = (dryRun: boolean): Promise<ReloadReport> => call('POST', '/api/reload', { dryRun });
export const refreshLists = (): Promise<ListsReport> => call('POST', '/api/lists/refresh');

/** How long the live log waits before it opens a stream the server refused for another reason than the session. */
const REOPEN_MS = 5000;

/**
 * The live query log: a server-sent event stream of records matching the
 * filter. The browser reconnects by itself after a network error (a daemon
 * restart); an HTTP error closes the stream for good, and EventSource does
 * not say which: the same query asked once as a plain GET does, so a 401
 * (the session ended: a restart forgets sessions) goes to the login form
 * like any other call, and anything else is shown and retried later. A
 * session that ends while the stream is open is told in the stream.
 */
export function logStream(filter: { client?: string; name?: string; path?: string }, onEntries: (r: LogReport) => void, onError: (why: string) => void): () => void {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v) p.set(k, v);
  p.set('limit', '200');
  let es: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;
  const open = (): void => {
    const s = new EventSource(`/api/log/stream?${p.toString()}`);
    es = s;
    s.addEventListener('entries', (e) => onEntries(JSON.parse((e as MessageEvent<string>).data) as LogReport));
    s.addEventListener('session-ended', (e) => {
      s.close();
      loggedOut((JSON.parse((e as MessageEvent<string>).data) as { error: string }).error);
    });
    s.onerror = () => {
      if (s.readyState !== EventSource.CLOSED) return onError('disconnected: retrying…');
      s.close();
      const q = new URLSearchParams(p);
      q.set('limit', '0');
      call<LogReport>('GET', `/api/log?${q.toString()}`).then(
        () => onError('the live view was refused: trying again in a few seconds'),
        (x: unknown) => onError(x instanceof ApiError && x.status === 401 ? 'your session ended' : `the live view failed: ${(x as Error).message}; trying again in a few seconds`),
      ).finally(() => {
        if (!closed) timer = setTimeout(open, REOPEN_MS);
      });
    };
  };
  open();
  return () => {
    closed = true;
    if (timer !== null) clearTimeout(timer);
    es?.close();
  };
}
