// The transparent proxy. nftables redirects TCP flows that no rule matched
// (untagged destinations on the proxy's ports) here; for each connection:
//   1. the original destination comes from the kernel (SO_ORIGINAL_DST): the
//      client chose that address, so it is where we dial, never a re-resolve;
//   2. the first bytes are held (up to PEEK_LIMIT or peekTimeout) until the TLS
//      ClientHello or HTTP request head names the destination;
//   3. the name goes through the same policy and path choice as the resolver;
//   4. the connection is dialled on that path (a socket carrying the path's
//      mark), the held bytes are written first, unchanged, and both sides are
//      spliced.
// "Peek, never consume": the proxy terminates nothing. What it read while
// peeking is replayed byte for byte, so the TLS session is the client's own.
//
// Pure of OS effects: the kernel lookups (original destination, marked dials)
// come in through ProxyDeps, so tests run it on loopback with plain sockets.
// The byte path is a Splicer (ProxyDeps.splicer): by default splice(2) on
// Linux (splice-linux.ts, SPLITWAN_PROXY_SPLICE=pipe for Node's pipe()), as
// the resolver picks its UDP transport.
//
// Two ways to accept, peek and dial, with the same decisions, counters and
// logs (everything below `route()` is shared):
// - `raw` (accept-linux.ts, the default on Linux): listening, accept4, the
//   peek (MSG_PEEK) and the dial (a socket with the path's mark from
//   ProxyDialer.markOf) on plain fds, then splice(2) on them: no Node socket
//   object per connection, which was most of what a connection cost;
// - `node`: net.Server, net.Socket, ProxyDialer.tcp(), then the Splicer.
//   Portable; used where the raw path cannot run (not Linux, the pipe
//   splicer, a dialer without markOf, a listen address that is a name), and
//   with SPLITWAN_PROXY_ACCEPT=node.
import net from 'node:net';
import type { Policy } from '../config/policy.js';
import type { PathName, Target } from '../config/types.js';
import { RawConnections, rawAvailable, rawProblem, type RawAddress, type RawHooks } from './accept-linux.js';
import { processNotes, type FallbackNotes } from '../sys/native-fallback.js';
import { ClientConnections, LogWindow } from './client-cap.js';
import { peek, PEEK_LIMIT, type PeekResult } from './peek.js';
import { defaultSplicer } from './splice-linux.js';
import { resetSocket, type Splice, type SpliceEnd, type Splicer } from './splice.js';

export interface ProxyLogger {
  /** pino's: lets the per-connection debug line cost nothing when debug is off. */
  isLevelEnabled?(level: string): boolean;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface ProxyDialer {
  /** A connected socket on the path; rejects when the path cannot carry traffic now (kill switch). */
  tcp(path: PathName, host: string, port: number, timeoutMs: number): Promise<net.Socket>;
  /**
   * The path's socket mark (SO_MARK), for the raw path, which dials by
   * itself; throws when the path cannot carry traffic now (kill switch).
   * Without it the proxy accepts and dials the `node` way.
   */
  markOf?(path: PathName): number;
}

export type OriginalDst = { address: string; port: number } | null;

export interface ProxyDeps {
  policy(): Policy;
  /** The candidate of a via list that carries traffic now (the resolver's PathState.pick). */
  pick(via: readonly Target[]): Target;
  dialer: ProxyDialer;
  /** Where the client was going before the redirect; null when the kernel has no record (not redirected). */
  originalDst(socket: net.Socket): OriginalDst | Promise<OriginalDst>;
  logger: ProxyLogger;
  /** What moves the bytes once a connection is decided; default defaultSplicer() (splice(2) on Linux). */
  splicer?: Splicer;
  /**
   * The raw path's originalDst, on the accepted fd (`v6`: an IPv6 listener's);
   * default SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST (accept-linux.ts). Tests
   * on loopback stand in for the kernel here.
   */
  originalDstFd?(fd: number, v6: boolean): { address: string; port: number } | null;
  /** `raw` or `node` (see the header); default acceptMode(): raw where it can run. */
  accept?: AcceptMode;
  /** A monotonic clock in ms, for the refusal log's window; default performance.now. */
  now?: () => number;
  /** Where a fast path that is off (splice, raw accept) is said, once; default the process's. */
  notes?: FallbackNotes;
}

export type AcceptMode = 'raw' | 'node';

/** The accept path the environment asks for: `node` with SPLITWAN_PROXY_ACCEPT=node (a way out), else `raw` where it can run. */
export function acceptMode(env: NodeJS.ProcessEnv = process.env): AcceptMode {
  return env.SPLITWAN_PROXY_ACCEPT === 'node' ? 'node' : 'raw';
}

/** A raw connection's decision: the path, its mark, the log record, and the client address whose place it holds. */
interface RawRoute {
  path: PathName;
  mark: number;
  decision: () => ProxyDecision;
  client: string;
}

export interface ProxyOptions {
  peekTimeoutMs: number;
  idleTimeoutMs: number;
  /** Default 10 s. */
  connectTimeoutMs?: number;
  /** Connections beyond this are reset at accept. Default 16 384. */
  maxConnections?: number;
  /** Connections one client address may have open at once; one more is reset at accept. Default 1024. */
  maxConnectionsPerClient?: number;
}

export class ProxyListenError extends Error {
  readonly code = 'SPLITWAN_PROXY_LISTEN';
  constructor(
    readonly address: string,
    readonly port: number,
    cause: NodeJS.ErrnoException,
  ) {
    const hint = cause.code === 'EADDRINUSE' ? ': something else listens there; pick another proxy.listenPort' : cause.code === 'EACCES' ? ': binding below 1024 needs root or CAP_NET_BIND_SERVICE' : '';
    super(`proxy cannot listen on ${address.includes(':') ? `[${address}]` : address}:${port}: ${cause.code ?? cause.message}${hint}`, { cause });
    this.name = 'ProxyListenError';
  }
}

/** How one connection was decided; logged and counted. */
export interface ProxyDecision {
  client: string;
  dst: string;
  /** What the peek found: `tls` with or without a name, `http`, or `other`. */
  seen: 'tls' | 'http' | 'other' | 'none';
  name: string | null;
  rule: number | null;
  target: Target;
}

export interface PathTraffic {
  connections: number;
  /** Connections open now. */
  active: number;
  bytesUp: number;
  bytesDown: number;
}

/** Why a connection was reset at accept, before anything was read. */
export type RefuseReason = 'not-redirected' | 'loop' | 'cap' | 'client-cap';

export interface ProxyStats {
  accepted: number;
  /** Refused before dialling: not redirected, a loop, over maxConnections or maxConnectionsPerClient. */
  refused: number;
  /** The same, by reason (`splitwan_proxy_refused_total`). */
  refusedBy: Record<RefuseReason, number>;
  blocked: number;
  /** Dials that failed, including the kill switch. */
  dialFailed: number;
  peekTimeouts: number;
  /** Completed connections by how they ended. */
  ends: Record<SpliceEnd, number>;
  paths: Record<string, PathTraffic>;
}

const DEFAULT_MAX_CONNECTIONS = 16_384;
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 1024;
/** One line per this long about clients over their cap, however many are refused. */
const CLIENT_CAP_LOG_MS = 10_000;
/** A burst of new connections (a page opening dozens) must not overflow Node's default backlog of 511. */
const LISTEN_BACKLOG = 4096;

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** `::ffff:10.0.0.1` (a v4 client on a dual-stack socket) → `10.0.0.1`. */
function unmapped(address: string): string {
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class TransparentProxy {
  private readonly servers: net.Server[] = [];
  /** The raw path, when it is the one listening. */
  private raw: RawConnections<RawRoute> | null = null;
  /** Sockets not yet handed to a splice (peeking, dialling): close() resets these; spliced ones go through their Splice. */
  private readonly sockets = new Set<net.Socket>();
  private readonly splicer: Splicer;
  /** The listeners' addresses, read once at listen (isSelf runs per connection). */
  private readonly bound: { address: string; port: number }[] = [];
  private closed = false;
  readonly stats: ProxyStats = {
    accepted: 0,
    refused: 0,
    refusedBy: { 'not-redirected': 0, loop: 0, cap: 0, 'client-cap': 0 },
    blocked: 0,
    dialFailed: 0,
    peekTimeouts: 0,
    ends: { closed: 0, 'reset-by-client': 0, 'reset-by-server': 0, idle: 0 },
    paths: {},
  };
  /** Live connections' splices by path, so stats() can include bytes of connections still open. */
  private readonly live = new Map<Splice, string>();
  /** Open connections per client address, against maxConnectionsPerClient. */
  private readonly perClient = new ClientConnections();
  private readonly clientCapLog: LogWindow;

  constructor(
    private readonly deps: ProxyDeps,
    private options: ProxyOptions,
  ) {
    this.splicer = deps.splicer ?? defaultSplicer(process.env, { logger: deps.logger, ...(deps.notes && { notes: deps.notes }) });
    this.clientCapLog = new LogWindow(CLIENT_CAP_LOG_MS, deps.now ?? (() => performance.now()));
  }

  /**
   * Takes a place for a new connection of `client` (an address); false, counted
   * and logged at most once per window, when it has its cap open already.
   */
  private admitClient(client: string): boolean {
    const limit = this.options.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
    if (this.perClient.acquire(client, limit)) return true;
    this.stats.refused++;
    this.stats.refusedBy['client-cap']++;
    const line = this.clientCapLog.take();
    if (line !== null) {
      this.deps.logger.warn(
        { client, open: this.perClient.count(client), limit, suppressed: line.suppressed },
        `proxy: client ${client} has ${limit} connections open (proxy.maxConnectionsPerClient): resetting its new ones${line.suppressed > 0 ? ` (${line.suppressed} more refusals since the last line)` : ''}`,
      );
    }
    return false;
  }

  /** Which splicer moves the bytes (`splice` or `pipe`), for the log line at start. */
  get splicerName(): string {
    return this.splicer.name;
  }

  /** How connections are accepted and dialled (`raw` or `node`), once listening; for the log line at start. */
  get acceptName(): AcceptMode {
    return this.raw !== null ? 'raw' : 'node';
  }

  /** Timeouts take effect for new connections (a reload). */
  configure(options: ProxyOptions): void {
    this.options = options;
    this.raw?.retime();
  }

  /** Listens on each address (IPv6 ones v6-only, so `0.0.0.0` and `::` coexist). Throws ProxyListenError. */
  async listen(addresses: readonly { host: string; port: number }[]): Promise<void> {
    const want = this.deps.accept ?? acceptMode();
    const markOf = this.deps.dialer.markOf?.bind(this.deps.dialer);
    const splicer = this.splicer;
    const ownDestinations = this.deps.originalDstFd === undefined;
    if (want === 'raw' && markOf !== undefined && addresses.every((a) => net.isIP(a.host) !== 0) && rawAvailable(splicer, ownDestinations)) {
      this.raw ??= new RawConnections(this.rawHooks(markOf), splicer);
      for (const a of addresses) {
        let bound: RawAddress;
        try {
          bound = this.raw.listen(a.host, a.port, LISTEN_BACKLOG);
        } catch (e) {
          throw new ProxyListenError(a.host, a.port, e as NodeJS.ErrnoException);
        }
        this.bound.push({ address: unmapped(bound.address), port: bound.port });
      }
      return;
    }
    if (this.deps.accept === 'raw') throw new Error('proxy: the raw accept path cannot run here (it needs Linux, the splice splicer, a dialer with markOf and IP listen addresses)');
    const why =
      want === 'node'
        ? { reason: this.deps.accept === 'node' ? 'asked for' : 'SPLITWAN_PROXY_ACCEPT=node', chosen: true }
        : markOf === undefined
          ? { reason: 'the dialer gives no socket marks', chosen: true }
          : !addresses.every((a) => net.isIP(a.host) !== 0)
            ? { reason: 'a listen address is a name', chosen: true }
            : // Without splice(2) there is no raw path: that choice (or failure) was noted by the splicer.
              { reason: rawProblem(splicer, ownDestinations) ?? 'unknown', chosen: typeof splicer.startFds !== 'function' };
    (this.deps.notes ?? processNotes).note(this.deps.logger, 'proxy accept: raw fds', why.reason, 'net.Server and net.Socket', why.chosen);
    for (const a of addresses) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.accept(s));
      server.maxConnections = this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) => reject(new ProxyListenError(a.host, a.port, e)));
        server.listen({ host: a.host, port: a.port, ipv6Only: a.host.includes(':'), backlog: LISTEN_BACKLOG }, () => resolve());
      });
      // After listening, errors are per connection (EMFILE at accept): logged, never fatal.
      server.on('error', (e) => this.deps.logger.warn({ err: e.message, listen: hostPort(a.host, a.port) }, 'proxy accept failed'));
      this.servers.push(server);
      const addr = server.address() as net.AddressInfo;
      this.bound.push({ address: unmapped(addr.address), port: addr.port });
    }
  }

  /** The addresses it listens on, `host:port`. */
  addresses(): { host: string; port: number }[] {
    if (this.raw !== null) return this.raw.addresses().map((a) => ({ host: a.address, port: a.port }));
    return this.servers.map((s) => {
      const a = s.address() as net.AddressInfo;
      return { host: a.address, port: a.port };
    });
  }

  /** Every path's traffic, with the bytes of open connections so far. */
  traffic(): Record<string, PathTraffic> {
    const out: Record<string, PathTraffic> = {};
    for (const [k, v] of Object.entries(this.stats.paths)) out[k] = { ...v };
    for (const [s, path] of this.live) {
      const t = out[path];
      if (!t) continue;
      const b = s.bytes();
      t.bytesUp += b.up;
      t.bytesDown += b.down;
    }
    return out;
  }

  /** Handles one accepted connection (exported for tests that hand in their own sockets). */
  accept(client: net.Socket): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    this.stats.accepted++;
    // An error before the splice owns the socket (a reset while peeking) must not be unhandled.
    client.on('error', () => {});
    const ip = unmapped(client.remoteAddress ?? '?');
    if (!this.admitClient(ip)) {
      resetSocket(client);
      return;
    }
    this.sockets.add(client);
    // Its place is given back when the socket closes, whichever way it ends (refused, blocked, spliced).
    client.once('close', () => {
      this.sockets.delete(client);
      this.perClient.release(ip);
    });
    const failed = (e: unknown): null => {
      this.deps.logger.warn({ client: peerOf(client), err: (e as Error).message }, 'proxy: no original destination');
      return null;
    };
    let dst: OriginalDst | Promise<OriginalDst>;
    try {
      dst = this.deps.originalDst(client);
    } catch (e) {
      dst = failed(e);
    }
    // A Promise where no native code runs (conntrack asked: daemon/sockets-linux.ts).
    if (dst instanceof Promise) void dst.catch(failed).then((d) => this.routeTo(client, d));
    else this.routeTo(client, dst);
  }

  private routeTo(client: net.Socket, found: OriginalDst): void {
    if (found === null) return this.refuse(client, 'not-redirected', 'not redirected (no original destination)');
    const dst = { address: unmapped(found.address), port: found.port };
    // A connection addressed to the proxy itself was not redirected: it came straight at the port.
    if (this.isSelf(dst)) return this.refuse(client, 'loop', 'addressed to the proxy itself');
    void this.peekThenDial(client, dst);
  }

  private isSelf(dst: { address: string; port: number }): boolean {
    for (const a of this.bound) {
      if (a.port === dst.port && (a.address === '0.0.0.0' || a.address === '::' || a.address === dst.address)) return true;
    }
    return false;
  }

  private refuse(client: net.Socket, reason: RefuseReason, why: string): void {
    this.stats.refused++;
    this.stats.refusedBy[reason]++;
    this.deps.logger.info({ client: peerOf(client) }, `proxy refused a connection: ${why}`);
    resetSocket(client);
  }

  private readPeek(client: net.Socket): Promise<{ bytes: Buffer; result: PeekResult; timedOut: boolean; ended: boolean }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      const finish = (final: boolean, timedOut: boolean, ended: boolean): void => {
        const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
        const result = peek(bytes, final);
        if (result.kind === 'more' && !final) return;
        done = true;
        clearTimeout(timer);
        client.off('data', onData);
        client.off('end', onEnd);
        client.off('close', onClose);
        client.pause();
        resolve({ bytes, result, timedOut, ended });
      };
      const onData = (b: Buffer): void => {
        chunks.push(b);
        size += b.length;
        finish(size >= PEEK_LIMIT, false, false);
      };
      const onEnd = (): void => finish(true, false, true);
      const onClose = (): void => {
        if (!done) finish(true, false, true);
      };
      const timer = setTimeout(() => finish(true, true, false), this.options.peekTimeoutMs);
      client.on('data', onData);
      client.on('end', onEnd);
      client.on('close', onClose);
      client.resume();
    });
  }

  private async peekThenDial(client: net.Socket, dst: { address: string; port: number }): Promise<void> {
    const { bytes, result, timedOut, ended } = await this.readPeek(client);
    if (client.destroyed) return; // the client gave up while we waited
    if (timedOut) this.stats.peekTimeouts++;
    const { target, decision } = this.route(() => unmapped(client.remoteAddress ?? ''), () => peerOf(client), dst, bytes, result);
    if (target === 'block') {
      this.stats.blocked++;
      this.deps.logger.info(decision(), 'proxy: blocked by policy');
      resetSocket(client);
      return;
    }
    const path: PathName = target;
    let upstream: net.Socket;
    try {
      upstream = await this.deps.dialer.tcp(path, dst.address, dst.port, this.options.connectTimeoutMs ?? 10_000);
    } catch (e) {
      this.stats.dialFailed++;
      this.deps.logger.info({ ...decision(), err: (e as Error).message }, 'proxy: dial failed');
      resetSocket(client);
      return;
    }
    if (client.destroyed || this.closed) {
      upstream.destroy();
      return;
    }
    if (this.deps.logger.isLevelEnabled?.('debug') ?? true) this.deps.logger.debug(decision(), 'proxy: connection');
    upstream.setNoDelay(true);
    // From here the splice owns both sockets (see Splicer.start).
    this.sockets.delete(client);
    this.track(path, this.splicer.start(client, upstream, this.options.idleTimeoutMs, { head: bytes, clientEnded: ended }));
  }

  /** The policy's decision for what the peek saw (both paths). */
  private route(clientIp: () => string, client: () => string, dst: RawAddress, bytes: Buffer, result: PeekResult): { target: Target; decision: () => ProxyDecision } {
    const name = result.kind === 'tls' ? result.sni : result.kind === 'http' ? result.host : null;
    const seen: ProxyDecision['seen'] = bytes.length === 0 ? 'none' : result.kind === 'more' ? 'other' : result.kind;
    const policy = this.deps.policy();
    let rule: number | null = null;
    if (name !== null) rule = policy.hasSourceRules ? policy.matchName(name, clientIp()).rule : nullIfNegative(policy.ruleForName(name));
    const target = this.deps.pick(policy.viaOf(rule));
    return { target, decision: () => ({ client: client(), dst: hostPort(dst.address, dst.port), seen, name, rule, target }) };
  }

  /** Counts a spliced connection on its path until it ends; `client` (raw path): its place is given back then. */
  private track(path: PathName, s: Splice, client?: string): void {
    const traffic = (this.stats.paths[path] ??= { connections: 0, active: 0, bytesUp: 0, bytesDown: 0 });
    traffic.connections++;
    traffic.active++;
    this.live.set(s, path);
    void s.done.then((r) => {
      this.live.delete(s);
      if (client !== undefined) this.perClient.release(client);
      traffic.active--;
      traffic.bytesUp += r.up;
      traffic.bytesDown += r.down;
      this.stats.ends[r.end]++;
    });
  }

  /** What the raw path (accept-linux.ts) asks of the proxy: the same decisions, counters and logs as the node path. */
  private rawHooks(markOf: (path: PathName) => number): RawHooks<RawRoute> {
    const log = this.deps.logger;
    const fromFd = this.deps.originalDstFd;
    const desc = (a: RawAddress): string => hostPort(a.address, a.port);
    return {
      admit: (inFlight, client) => {
        if (this.closed) return false;
        this.stats.accepted++;
        if (inFlight + this.live.size >= (this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
          this.stats.refused++; // not logged: a flood would flood the log too
          this.stats.refusedBy.cap++;
          return false;
        }
        return this.admitClient(client.address);
      },
      dropped: (client) => this.perClient.release(client.address),
      ...(fromFd && {
        originalDst: (fd: number, v6: boolean) => {
          const d = fromFd(fd, v6);
          return d && { address: unmapped(d.address), port: d.port };
        },
      }),
      isSelf: (dst) => this.isSelf(dst),
      refuse: (client, reason, why) => {
        this.stats.refused++;
        this.stats.refusedBy[reason]++;
        log.info({ client: desc(client) }, `proxy refused a connection: ${why}`);
      },
      decide: (client, dst, bytes, result, timedOut) => {
        if (timedOut) this.stats.peekTimeouts++;
        const { target, decision } = this.route(() => client.address, () => desc(client), dst, bytes, result);
        if (target === 'block') {
          this.stats.blocked++;
          log.info(decision(), 'proxy: blocked by policy');
          return null;
        }
        try {
          return { path: target, mark: markOf(target), decision, client: client.address };
        } catch (e) {
          this.stats.dialFailed++;
          log.info({ ...decision(), err: (e as Error).message }, 'proxy: dial failed');
          return null;
        }
      },
      dialFailed: (r, message) => {
        this.stats.dialFailed++;
        log.info({ ...r.decision(), err: message }, 'proxy: dial failed');
      },
      spliced: (r, s) => {
        if (log.isLevelEnabled?.('debug') ?? true) log.debug(r.decision(), 'proxy: connection');
        this.track(r.path, s, r.client);
      },
      timeouts: () => ({ peekMs: this.options.peekTimeoutMs, connectMs: this.options.connectTimeoutMs ?? 10_000, idleMs: this.options.idleTimeoutMs }),
      warn: (obj, msg) => log.warn(obj, msg),
    };
  }

  /**
   * Resets the open connections on these paths (their gateway died: a reset
   * makes clients reconnect at once, through the new one, instead of hanging).
   */
  resetPaths(paths: readonly string[]): number {
    let n = 0;
    for (const [s, path] of this.live) {
      if (!paths.includes(path)) continue;
      s.reset();
      n++;
    }
    return n;
  }

  /** Stops listening and resets every open connection. */
  async close(): Promise<void> {
    this.closed = true;
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    if (this.raw !== null) closing.push(this.raw.close());
    for (const s of this.live.keys()) s.reset();
    for (const s of this.sockets) resetSocket(s);
    this.servers.length = 0;
    this.bound.length = 0;
    await Promise.all(closing);
  }
}

function peerOf(s: net.Socket): string {
  return hostPort(unmapped(s.remoteAddress ?? '?'), s.remotePort ?? 0);
}

function nullIfNegative(rule: number): number | null {
  return rule < 0 ? null : rule;
}

