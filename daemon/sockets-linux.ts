// Path sockets on Linux: SO_MARK through koffi (docs/design/dataplane-notes.md §6),
// and SO_ORIGINAL_DST for the transparent proxy (§7). Needs root or CAP_NET_ADMIN
// (setting SO_MARK); the daemon's own ip rules send each mark to its path's table.
//
// - UDP: Node's dgram binds (port 0), then the bound fd is marked before the
//   socket is handed out, so the first datagram already carries the mark
//   (sys/socket-fd.ts finds the fd).
// - TCP: libc socket(AF_INET|AF_INET6, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) makes the fd,
//   it is marked, wrapped in `new net.Socket({ fd })`, and connected on that very
//   handle (libuv connects an existing fd), so the SYN is marked. On an error or the
//   timeout the socket is destroyed, which closes the fd; an fd that never reached a
//   net.Socket is closed with libc close().
// - originalDst: getsockopt(SOL_IP, SO_ORIGINAL_DST) or (SOL_IPV6, IP6T_SO_ORIGINAL_DST),
//   both 80. A v4-mapped peer on a dual-stack listener uses SOL_IP. net.Socket's
//   `_handle` (unlike dgram's) is not deprecated.
//
// libc is loaded lazily, so importing this module on another OS does not fail.
import dgram from 'node:dgram';
import net from 'node:net';
import { constants } from 'node:os';
import { koffi } from '../sys/koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from '../sys/libc-linux.js';
import { writeU32 } from '../sys/c-abi.js';
import { fastPathOr, type FallbackReport } from '../sys/native-fallback.js';
import { errnoName } from '../sys/errno.js';
import { PortPathSockets } from './port-sockets.js';
import { parseConntrackOriginalDst } from './os-parse.js';
import type { Runner } from './exec-linux.js';
import { readSockaddr } from '../sys/sockaddr.js';
import { originalDstProblem } from '../sys/original-dst-probe-linux.js';
import { dgramFd, netFd } from '../sys/socket-fd.js';
import {
  checkMark,
  checkTcp,
  connectWithTimeout,
  SocketError,
  type PathSockets,
  type TcpConnectOptions,
} from './sockets.js';
import { AF_INET, AF_INET6, SOCK_DGRAM, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, SOL_IP, SOL_IPV6, SOL_SOCKET, SO_MARK, SO_ORIGINAL_DST } from '../sys/linux-abi.js';


interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: Buffer, len: number[]): number;
  close(fd: number): number;
}

let libc: Libc | null = null;

function lib(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux') throw new Error(`sockets-linux: needs Linux (this is ${process.platform})`);
  const l = loadLibc();
  libc = {
    socket: l.func('int socket(int domain, int type, int protocol)') as Libc['socket'],
    setsockopt: l.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)') as Libc['setsockopt'],
    getsockopt: l.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)') as Libc['getsockopt'],
    close: l.func('int close(int fd)') as Libc['close'],
  };
  return libc;
}

/** setsockopt(SO_MARK); returns 0 or the errno. */
function setMark(fd: number, mark: number): number {
  const v = Buffer.alloc(4);
  writeU32(v, mark, 0); // the kernel reads a native int
  return lib().setsockopt(fd, SOL_SOCKET, SO_MARK, v, 4) === 0 ? 0 : koffi.errno();
}

export class LinuxPathSockets implements PathSockets {
  /** `logger`: where a fallback (the dgram fd read the deprecated way) is said, once. */
  constructor(private readonly report: FallbackReport = {}) {}

  async udp(family: 4 | 6, mark: number): Promise<dgram.Socket> {
    checkMark(mark, 'udp', family);
    lib();
    const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    const base = { kind: 'udp' as const, family, mark };
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (e: NodeJS.ErrnoException) => reject(new SocketError({ ...base, op: 'bind', errno: e.code ?? 'EIO', cause: e }));
        sock.once('error', onError);
        sock.bind({ port: 0 }, () => {
          sock.removeListener('error', onError);
          resolve();
        });
      });
      const fd = dgramFd(sock, this.report);
      if (fd < 0) throw new SocketError({ ...base, op: 'fd', errno: 'EBADF', detail: 'cannot find the socket\'s fd in this Node version' });
      const errno = setMark(fd, mark);
      if (errno !== 0) throw new SocketError({ ...base, op: 'setsockopt(SO_MARK)', errno });
      return sock;
    } catch (e) {
      try {
        sock.close();
      } catch {
        // not bound or already closed
      }
      throw e;
    }
  }

  tcpConnect(opts: TcpConnectOptions): Promise<net.Socket> {
    let family: 4 | 6;
    let fd: number;
    const base = { kind: 'tcp' as const, address: opts.host, port: opts.port, mark: opts.mark };
    try {
      family = checkTcp(opts);
      const c = lib();
      fd = c.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) throw new SocketError({ ...base, family, op: 'socket', errno: koffi.errno() });
      const errno = setMark(fd, opts.mark);
      if (errno !== 0) {
        c.close(fd);
        throw new SocketError({ ...base, family, op: 'setsockopt(SO_MARK)', errno });
      }
    } catch (e) {
      return Promise.reject(e);
    }
    let sock: net.Socket;
    try {
      sock = new net.Socket({ fd, readable: true, writable: true });
    } catch (e) {
      lib().close(fd);
      const err = e as NodeJS.ErrnoException;
      return Promise.reject(new SocketError({ ...base, family, op: 'fd', errno: err.code ?? 'EBADF', cause: e }));
    }
    return connectWithTimeout(sock, opts, family);
  }
}

/**
 * The destination a redirected connection was addressed to before the nft
 * `redirect` (for the transparent proxy). null when the socket has no fd or the
 * connection has no conntrack entry (ENOENT); other failures throw a SocketError.
 */
const ORIGINAL_DST_BUF = Buffer.alloc(28); // sockaddr_in6 (sockaddr_in fits)

export function originalDst(socket: net.Socket): { address: string; port: number } | null {
  const fd = netFd(socket);
  if (fd < 0) return null;
  const remote = socket.remoteAddress ?? '';
  const v6 = socket.remoteFamily === 'IPv6' && !remote.toLowerCase().startsWith('::ffff:');
  // One buffer for every call: the lookup is synchronous, per accepted connection.
  const buf = ORIGINAL_DST_BUF.fill(0);
  const len = [buf.length];
  if (lib().getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, buf, len) !== 0) {
    const errno = koffi.errno();
    if (errno === constants.errno.ENOENT) return null;
    throw new SocketError({ op: 'getsockopt(SO_ORIGINAL_DST)', errno, kind: 'tcp', family: v6 ? 6 : 4, address: remote, port: socket.remotePort });
  }
  return readSockaddr(buf, 0);
}

export const linuxPathSockets: PathSockets = new LinuxPathSockets();

/**
 * Path sockets for this platform: SO_MARK (LinuxPathSockets) where the C
 * library loads and the kernel takes the option; else source-port paths
 * (port-sockets.ts), said once. qemu-user refuses SO_MARK (ENOPROTOOPT): a
 * probe socket finds out at start, not the first query. EPERM (no
 * CAP_NET_ADMIN) keeps SO_MARK: its error says what to grant.
 */
export function pathSocketsFor(report: FallbackReport = {}): PathSockets {
  return fastPathOr<PathSockets>(
    { what: 'path sockets: SO_MARK', instead: 'source-port paths (ip rule sport)', report, turnedOff: null },
    () => {
      const c = lib();
      const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw new Error(`socket: ${errnoName(koffi.errno())}`);
      const errno = setMark(fd, 0);
      c.close(fd);
      if (errno !== 0 && errnoName(errno) !== 'EPERM') throw new Error(`setsockopt(SO_MARK): ${errnoName(errno)}`);
      return new LinuxPathSockets(report);
    },
    new PortPathSockets(),
  );
}

/**
 * originalDst without native code: asks conntrack for the entry whose reply
 * comes from this socket's local end to its peer (a spawn per proxied
 * connection: the fallback's price).
 */
export function conntrackOriginalDst(run: Runner): (socket: net.Socket) => Promise<{ address: string; port: number } | null> {
  return async (socket) => {
    const local = (socket.localAddress ?? '').replace(/^::ffff:/i, '');
    const remote = (socket.remoteAddress ?? '').replace(/^::ffff:/i, '');
    if (!local || !remote || socket.localPort === undefined || socket.remotePort === undefined) return null;
    const family = net.isIPv6(remote) ? 'ipv6' : 'ipv4';
    const r = await run.run(
      ['conntrack', '-L', '-f', family, '-p', 'tcp', '--reply-src', local, '--reply-port-src', String(socket.localPort), '--reply-dst', remote, '--reply-port-dst', String(socket.remotePort)],
      { allowFail: true },
    );
    return parseConntrackOriginalDst(r.stdout);
  };
}

/**
 * SO_ORIGINAL_DST where libc loads and the kernel answers the option
 * (sys/original-dst-probe-linux.ts: qemu-user does not), else conntrack
 * (SPLITWAN_NATIVE=off, platforms without koffi).
 */
type OriginalDstOf = (socket: net.Socket) => { address: string; port: number } | null | Promise<{ address: string; port: number } | null>;
export function originalDstFor(run: Runner, report: FallbackReport = {}): OriginalDstOf {
  return fastPathOr<OriginalDstOf>(
    { what: 'proxy original destination: SO_ORIGINAL_DST', instead: 'conntrack -L per connection', report, turnedOff: null },
    () => {
      lib();
      const problem = originalDstProblem();
      if (problem !== null) throw new Error(problem);
      return originalDst;
    },
    conntrackOriginalDst(run),
  );
}
