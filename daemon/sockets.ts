// Sockets splitwan itself opens on a chosen path: DNS forwarding to a gateway's
// resolver, health probes, the proxy's dials. Both gateways share the tunnel
// address (10.64.0.2) and the resolver address (10.64.0.1), so neither the
// destination nor a local address can choose the path: the socket carries the
// path's fwmark (SO_MARK) from before its first packet, and the ip rules send
// that mark to the path's table (docs/design/dataplane-notes.md §6).
//
// This file holds the interface, the error type and its message mapping (pure),
// and a fake for unit tests of later modules. The Linux implementation, which
// needs root or CAP_NET_ADMIN, is daemon/sockets-linux.ts.
import dgram from 'node:dgram';
import net from 'node:net';
import { errnoName } from '../sys/errno.js';
import { deadline } from '../lib/deadline.js';

export interface TcpConnectOptions {
  /** An IP address literal (never a name: resolving it would not follow the path). */
  host: string;
  port: number;
  /** The path's fwmark, set before the SYN. */
  mark: number;
  /** Rejects with ETIMEDOUT (and destroys the socket) when not connected by then. Default 10 000 ms. */
  timeoutMs?: number;
}

export interface PathSockets {
  /** A UDP socket bound to an ephemeral port on the wildcard address, marked before the first send. */
  udp(family: 4 | 6, mark: number): Promise<dgram.Socket>;
  /** A connected TCP socket, marked before the SYN. Rejects with a SocketError. */
  tcpConnect(opts: TcpConnectOptions): Promise<net.Socket>;
  /** true: the path is the source port, not SO_MARK (port-sockets.ts); the data plane must add its rules. */
  readonly byPort?: boolean;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------
// Errors

/** What was being done when the OS said no. */
export type SocketOp = 'socket' | 'setsockopt(SO_MARK)' | 'getsockopt(SO_ORIGINAL_DST)' | 'bind' | 'connect' | 'fd';

export interface SocketErrorInfo {
  op: SocketOp;
  /** An errno name (`EPERM`) or a Linux errno number (mapped to its name). */
  errno: string | number;
  kind: 'udp' | 'tcp';
  family?: 4 | 6;
  /** The peer, when there is one (TCP dials, originalDst). */
  address?: string;
  port?: number;
  mark?: number;
  /** For ETIMEDOUT raised by our own connect timer. */
  timeoutMs?: number;
  /** Extra words for the message (for example what was invalid). */
  detail?: string;
  cause?: unknown;
}

export { errnoName };

export const hex = (mark: number): string => `0x${mark.toString(16)}`;

function hint(i: SocketErrorInfo, name: string): string | undefined {
  switch (name) {
    case 'EPERM':
      return i.op === 'setsockopt(SO_MARK)'
        ? 'setting a socket mark needs CAP_NET_ADMIN (Linux 5.17+ also accepts CAP_NET_RAW): run splitwan as root or grant it CAP_NET_ADMIN (AmbientCapabilities=CAP_NET_ADMIN)'
        : 'a firewall rule refused it';
    case 'EACCES':
      return 'refused by a prohibit route or a reject rule: is the path down (kill switch)?';
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
      return 'no route for this mark: are the path\'s ip rule and table installed, and is its interface up?';
    case 'ECONNREFUSED':
      return 'the peer refused the connection';
    case 'ETIMEDOUT':
      return i.timeoutMs !== undefined ? `no answer within ${i.timeoutMs} ms` : 'no answer';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many open files';
    case 'EAFNOSUPPORT':
      return 'this address family is not available (IPv6 disabled?)';
    case 'ENOENT':
      return i.op === 'getsockopt(SO_ORIGINAL_DST)' ? 'the connection was not redirected (no conntrack entry)' : undefined;
    default:
      return undefined;
  }
}

function what(i: SocketErrorInfo): string {
  const fam = i.family === undefined ? '' : i.family === 6 ? ' IPv6' : ' IPv4';
  const peer =
    i.address === undefined ? '' : ` to ${net.isIPv6(i.address) ? `[${i.address}]` : i.address}${i.port === undefined ? '' : `:${i.port}`}`;
  const mark = i.mark === undefined ? '' : ` (mark ${hex(i.mark)})`;
  return `${i.kind.toUpperCase()}${fam} socket${peer}${mark}`;
}

/** Builds the message of a SocketError; pure, so it is unit-tested. */
export function socketErrorMessage(i: SocketErrorInfo): string {
  const name = errnoName(i.errno);
  const h = hint(i, name);
  return `${what(i)}: ${i.op} failed: ${name}${i.detail ? ` (${i.detail})` : ''}${h ? `: ${h}` : ''}`;
}

/** An OS refusal while opening, marking or connecting a path socket. */
export class SocketError extends Error {
  readonly code = 'SPLITWAN_SOCKET';
  /** The errno name: `EPERM`, `ECONNREFUSED`, `ETIMEDOUT`... */
  readonly errno: string;
  readonly syscall: SocketOp;
  readonly address: string | undefined;
  readonly port: number | undefined;
  readonly mark: number | undefined;
  constructor(info: SocketErrorInfo) {
    super(socketErrorMessage(info), info.cause === undefined ? undefined : { cause: info.cause });
    this.name = 'SocketError';
    this.errno = errnoName(info.errno);
    this.syscall = info.op;
    this.address = info.address;
    this.port = info.port;
    this.mark = info.mark;
  }
}

/** Node's own socket errors (`err.code === 'ECONNREFUSED'`, `err.syscall`) → SocketError. */
export function fromNodeError(err: unknown, base: Omit<SocketErrorInfo, 'errno' | 'op' | 'cause'> & { op?: SocketOp }): SocketError {
  if (err instanceof SocketError) return err;
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.code === 'string' ? e.code : typeof e?.errno === 'number' ? -e.errno : 'EIO';
  const op: SocketOp = base.op ?? (e?.syscall === 'bind' ? 'bind' : 'connect');
  return new SocketError({ ...base, op, errno, cause: err });
}

// ---------------------------------------------------------------------------
// Argument checks shared by the real sockets and the fake

/** Throws a SocketError (EINVAL) for a mark that is not a 32-bit unsigned integer. */
export function checkMark(mark: number, kind: 'udp' | 'tcp', family?: 4 | 6): void {
  if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff)
    throw new SocketError({ op: 'setsockopt(SO_MARK)', errno: 'EINVAL', kind, family, detail: `mark ${String(mark)} is not a 32-bit unsigned integer` });
}

/** Checks a tcpConnect request; returns the address family of the host. */
export function checkTcp(opts: TcpConnectOptions): 4 | 6 {
  const family = net.isIP(opts.host);
  const base = { op: 'connect' as const, errno: 'EINVAL', kind: 'tcp' as const, address: opts.host, port: opts.port, mark: opts.mark };
  if (family === 0) throw new SocketError({ ...base, detail: 'the host must be an IP address: resolve it through the path first' });
  if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) throw new SocketError({ ...base, detail: `bad port ${String(opts.port)}` });
  if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0)) throw new SocketError({ ...base, detail: `bad timeoutMs ${String(opts.timeoutMs)}` });
  checkMark(opts.mark, 'tcp', family as 4 | 6);
  return family as 4 | 6;
}

/**
 * Connects an (already created, maybe pre-marked) net.Socket, from `localPort`
 * when given (daemon/port-sockets.ts); on error or after
 * timeoutMs it destroys the socket, so its fd is closed, and rejects with a
 * SocketError naming the peer.
 */
export function connectWithTimeout(sock: net.Socket, opts: TcpConnectOptions, family: 4 | 6, localPort?: number): Promise<net.Socket> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const base = { kind: 'tcp' as const, family, address: opts.host, port: opts.port, mark: opts.mark };
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: SocketError | null) => {
      if (done) return;
      done = true;
      timer.cancel();
      sock.removeListener('error', onError);
      sock.removeListener('connect', onConnect);
      if (err) {
        sock.on('error', () => undefined); // late errors of a destroyed socket
        sock.destroy();
        reject(err);
      } else resolve(sock);
    };
    const onError = (e: unknown) => finish(fromNodeError(e, base));
    const onConnect = () => finish(null);
    // Judged after the I/O ready when the timer fired (lib/deadline.ts): a busy loop does not fail a connect that succeeded.
    const timer = deadline(timeoutMs, (e) => finish(Object.assign(new SocketError({ ...base, op: 'connect', errno: 'ETIMEDOUT', timeoutMs }), { lateMs: e.lateMs })));
    sock.once('error', onError);
    sock.once('connect', onConnect);
    try {
      sock.connect({ host: opts.host, port: opts.port, family, ...(localPort !== undefined ? { localPort } : {}) });
    } catch (e) {
      finish(fromNodeError(e, base));
    }
  });
}

// ---------------------------------------------------------------------------
// Fake

export interface FakeSocketRecord {
  kind: 'udp' | 'tcp';
  family: 4 | 6;
  /** The mark the real implementation would have set. */
  mark: number;
  /** TCP: the host and port asked for (before any redirect). */
  host?: string;
  port?: number;
  socket: dgram.Socket | net.Socket;
}

export interface FakePathSocketsOptions {
  /**
   * Where a tcpConnect really goes: tests map a path's peer (10.99.9.9:80 with
   * mark 0x1200) to a local server. Default: the host and port as given.
   */
  redirect?: (req: TcpConnectOptions) => { host: string; port: number } | undefined;
  /** Makes a request fail as the OS would (for example `{ errno: 'EPERM' }`). */
  fail?: (req: { kind: 'udp' | 'tcp'; family: 4 | 6; mark: number; host?: string; port?: number }) => { errno: string; op?: SocketOp } | undefined;
}

/**
 * Plain, unmarked sockets on 127.0.0.1 / ::1 that remember the mark each would
 * carry, so a test can assert which path a module chose (`markOf(socket)`, or
 * the `opened` log). Argument checks and errors are the real ones.
 */
export class FakePathSockets implements PathSockets {
  readonly opened: FakeSocketRecord[] = [];
  private readonly marks = new WeakMap<object, number>();

  constructor(private readonly opts: FakePathSocketsOptions = {}) {}

  /** The mark a socket made here would carry; undefined for any other socket. */
  markOf(socket: dgram.Socket | net.Socket): number | undefined {
    return this.marks.get(socket);
  }

  /** Destroys every socket made here that is still open. */
  closeAll(): void {
    for (const r of this.opened) {
      if (r.socket instanceof net.Socket) r.socket.destroy();
      else
        try {
          r.socket.close();
        } catch {
          // already closed
        }
    }
  }

  async udp(family: 4 | 6, mark: number): Promise<dgram.Socket> {
    checkMark(mark, 'udp', family);
    const f = this.opts.fail?.({ kind: 'udp', family, mark });
    if (f) throw new SocketError({ op: f.op ?? 'setsockopt(SO_MARK)', errno: f.errno, kind: 'udp', family, mark });
    const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      const onError = (e: unknown) => reject(fromNodeError(e, { op: 'bind', kind: 'udp', family, mark }));
      sock.once('error', onError);
      sock.bind({ port: 0, address: family === 6 ? '::1' : '127.0.0.1' }, () => {
        sock.removeListener('error', onError);
        resolve();
      });
    });
    this.marks.set(sock, mark);
    this.opened.push({ kind: 'udp', family, mark, socket: sock });
    return sock;
  }

  async tcpConnect(opts: TcpConnectOptions): Promise<net.Socket> {
    const family = checkTcp(opts);
    const f = this.opts.fail?.({ kind: 'tcp', family, mark: opts.mark, host: opts.host, port: opts.port });
    if (f) throw new SocketError({ op: f.op ?? 'connect', errno: f.errno, kind: 'tcp', family, address: opts.host, port: opts.port, mark: opts.mark });
    const to = this.opts.redirect?.(opts) ?? { host: opts.host, port: opts.port };
    const sock = new net.Socket();
    this.marks.set(sock, opts.mark);
    const record: FakeSocketRecord = { kind: 'tcp', family, mark: opts.mark, host: opts.host, port: opts.port, socket: sock };
    // The error names the peer that was asked for, as the real one would.
    const toFamily = (net.isIP(to.host) || family) as 4 | 6;
    try {
      await connectWithTimeout(sock, { ...opts, host: to.host, port: to.port }, toFamily);
    } catch (e) {
      const se = e as SocketError;
      throw new SocketError({ op: se.syscall, errno: se.errno, kind: 'tcp', family, address: opts.host, port: opts.port, mark: opts.mark, timeoutMs: opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, cause: se });
    }
    this.opened.push(record);
    return sock;
  }
}
