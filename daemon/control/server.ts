// The control API server: HTTP+JSON on a unix socket that only root can open
// (mode 0600, owned by the daemon's user; its directory is made 0700 when we
// create it). A socket file left by a crashed run is replaced; one a running
// daemon answers on is not (two daemons would fight over the kernel state).
//
// A second server on `read.sock` beside it (readOnly) serves only what reads:
// status, explain and the rules, to the members of `control.group` (mode 0660,
// that group; the directory is opened to the group for traversal, never for
// writing). Nothing there can change routing, and the query log (who asked
// for what) is not on it.
//
// Requests are small: bodies over 64 KiB, unknown routes and bad JSON get a
// JSON error, never a crash. Handlers are the daemon's (daemon/control-handlers.ts, wired in createDaemon).
import { chmod, chown, mkdir, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { ROUTES, routeKey, type ExplainReport, type ListsReport, type LogQuery, type LogReport, type ReloadReport, type RulesReport, type SelectReport, type StatusReport } from './protocol.js';

export interface ControlHandlers {
  status(): Promise<StatusReport> | StatusReport;
  /** dryRun: what `file` (default: the config file) would change, nothing applied. */
  reload(dryRun: boolean, file?: string): Promise<ReloadReport>;
  select(gateway: string | null): Promise<SelectReport> | SelectReport;
  explain(target: string, source: string | undefined): Promise<ExplainReport> | ExplainReport;
  refreshLists(): Promise<ListsReport>;
  flushDns(): { flushed: number };
  queryLog(q: LogQuery): LogReport;
  rules(): RulesReport;
}

/** A LogQuery from a request's search parameters (shared with the dashboard); throws a 400 for bad numbers. */
export function logQueryOf(p: URLSearchParams): LogQuery {
  const int = (k: string, def: number | undefined, max: number): number | undefined => {
    const v = p.get(k);
    if (v === null || v === '') return def;
    if (!/^\d{1,15}$/.test(v)) throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', `${k} must be a whole number`);
    return Math.min(Number(v), max);
  };
  const text = (k: string): string | undefined => {
    const v = p.get(k);
    if (v === null || v === '') return undefined;
    if (v.length > 255) throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', `${k} is longer than 255 characters`);
    return v;
  };
  const since = int('since', undefined, Number.MAX_SAFE_INTEGER);
  const client = text('client');
  const name = text('name');
  const path = text('path');
  return { limit: int('limit', 100, 5000)!, ...(since !== undefined ? { since } : {}), ...(client ? { client } : {}), ...(name ? { name } : {}), ...(path ? { path } : {}) };
}

export class ControlError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The read-only socket beside the control socket. */
export function readSocketPath(controlSocket: string): string {
  return join(dirname(controlSocket), 'read.sock');
}

/** What the read-only socket serves: nothing here changes routing or shows who asked for what. */
const READ_ONLY_ROUTES: ReadonlySet<string> = new Set([routeKey(ROUTES.status), routeKey(ROUTES.explain), routeKey(ROUTES.rules)]);

export class ControlListenError extends Error {
  readonly code = 'SPLITWAN_CONTROL_LISTEN';
}

const MAX_BODY = 64 * 1024;

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_BODY) {
        reject(new ControlError(413, 'SPLITWAN_CONTROL_REQUEST', 'request body over 64 KiB'));
        req.destroy();
        return;
      }
      chunks.push(d);
    });
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', 'the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** True when something answers on the socket (a running daemon), false for a stale file. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Refuses to start a second daemon: its start-up cleanup would tear down the
 * first one's tunnels and routing. Run before anything touches the kernel.
 */
export async function assertNoOtherDaemon(path: string): Promise<void> {
  if (await answers(path)) throw new ControlListenError(`another splitwan is running: its control socket ${path} answers (stop it first)`);
}

export class ControlServer {
  private server: http.Server | null = null;

  constructor(
    private readonly handlers: ControlHandlers,
    private readonly onError: (e: Error) => void = () => {},
    private readonly o: { readOnly?: boolean } = {},
  ) {}

  /** `group`: the socket is 0660 for that gid (the read-only socket), else 0600. */
  async listen(path: string, o: { group?: number } = {}): Promise<void> {
    const dir = dirname(path);
    const existed = await stat(dir).then(() => true, () => false);
    if (!existed) await mkdir(dir, { recursive: true, mode: 0o700 });
    if (await stat(path).then(() => true, () => false)) {
      if (await answers(path)) throw new ControlListenError(`another splitwan is running: its control socket ${path} answers (stop it first)`);
      await rm(path, { force: true });
    }
    const server = http.createServer((req, res) => void this.route(req, res));
    server.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new ControlListenError(`cannot listen on the control socket ${path}: ${e.code ?? e.message}`, { cause: e })));
      // umask 0177 while binding: the socket is never open to others, not even for a moment.
      const old = process.umask(0o177);
      try {
        server.listen(path, () => resolve());
      } finally {
        process.umask(old);
      }
    });
    if (o.group === undefined) await chmod(path, 0o600);
    else await this.openToGroup(path, o.group);
    server.on('error', (e) => this.onError(e));
    this.server = server;
  }

  /**
   * The socket 0660 in `gid`, and its directory traversable by that group when
   * it is ours (/run/splitwan: systemd makes it 0750 root:root). chown to a
   * group needs CAP_CHOWN or membership: the unit adds the group as a
   * supplementary one rather than the capability.
   */
  private async openToGroup(path: string, gid: number): Promise<void> {
    await chown(path, -1, gid);
    await chmod(path, 0o660);
    const dir = dirname(path);
    const d = await stat(dir);
    // Only a private directory of ours (no access for others): never /run or a shared one.
    if (d.uid === process.getuid?.() && (d.mode & 0o007) === 0) {
      if (d.gid !== gid) await chown(dir, -1, gid);
      // Traverse only: group members cannot list, add or remove files in it.
      await chmod(dir, (d.mode & 0o7700) | 0o010);
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown): void => {
      const text = JSON.stringify(body) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      const url = new URL(req.url ?? '/', 'http://splitwan');
      const route = `${req.method ?? 'GET'} ${url.pathname}`;
      if (this.o.readOnly && !READ_ONLY_ROUTES.has(route)) {
        const known = Object.values(ROUTES).some((r) => routeKey(r) === route);
        if (known) throw new ControlError(403, 'SPLITWAN_CONTROL_READONLY', `this is the read-only socket (status, explain, rules): ${route} needs root, use sudo`);
      }
      const raw = req.method === 'POST' ? await readBody(req) : {};
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', 'the body must be a JSON object');
      const body = raw as Record<string, unknown>;
      // A reload that was meant as a dry run must never apply.
      if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', 'dryRun must be true or false');
      switch (route) {
        case routeKey(ROUTES.status):
          return send(200, await this.handlers.status());
        case routeKey(ROUTES.reload):
          if (body.file !== undefined && typeof body.file !== 'string') throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', 'file must be a path');
          return send(200, await this.handlers.reload(body.dryRun === true, body.file as string | undefined));
        case routeKey(ROUTES.select): {
          const g = body.gateway;
          if (g !== null && typeof g !== 'string') throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', 'gateway must be a name or null (auto)');
          return send(200, await this.handlers.select(g));
        }
        case routeKey(ROUTES.explain): {
          const q = url.searchParams.get('q');
          if (!q) throw new ControlError(400, 'SPLITWAN_CONTROL_REQUEST', 'explain needs ?q=NAME|IP');
          return send(200, await this.handlers.explain(q, url.searchParams.get('source') ?? undefined));
        }
        case routeKey(ROUTES.listsRefresh):
          return send(200, await this.handlers.refreshLists());
        case routeKey(ROUTES.dnsFlush):
          return send(200, this.handlers.flushDns());
        case routeKey(ROUTES.log):
          return send(200, this.handlers.queryLog(logQueryOf(url.searchParams)));
        case routeKey(ROUTES.rules):
          return send(200, this.handlers.rules());
        default:
          throw new ControlError(404, 'SPLITWAN_CONTROL_REQUEST', `no such request: ${route}`);
      }
    } catch (e) {
      if (e instanceof ControlError) return send(e.status, { error: e.message, code: e.code });
      const err = e as Error & { code?: unknown };
      // A handler's own refusal (a bad name to select, a bad explain input) is the caller's mistake.
      const code = typeof err.code === 'string' && err.code.startsWith('SPLITWAN_') ? err.code : 'SPLITWAN_CONTROL_FAILED';
      send(code === 'SPLITWAN_CONTROL_FAILED' ? 500 : 400, { error: err.message, code });
    }
  }
}
