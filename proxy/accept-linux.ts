// The proxy's raw connection path on Linux: listen, accept, peek and dial on
// plain fds, without a Node socket object anywhere, then hand both fds to the
// splice engine (splice-linux.ts startFds). server.ts decides (policy, kill
// switch, counters, logs) through RawHooks; this file does only the fd work.
//
// Why: with splice(2) moving the bytes, what a connection costs is its setup,
// and Node's was most of it: an accepted net.Socket (a TCPWrap, a stream, its
// listeners), the dial's net.Socket and connect machinery, their destruction,
// getpeername behind socket.remoteAddress, a timer each. haproxy sets up a
// connection for ~60 µs of CPU on this kind of box; Node's net + pipe() for
// ~200. The fd path is a handful of syscalls and no per-connection object
// but one small record (`Pending`) until the splice takes over.
//
// Per connection:
//   accept4(SOCK_NONBLOCK|SOCK_CLOEXEC), in batches of up to ACCEPT_BATCH per
//   readiness of the listening socket (watched by libuv: fd-watch-linux.ts;
//   level-triggered, so what a batch leaves comes back next turn);
//   SO_ORIGINAL_DST (IPv4 listener) or IP6T_SO_ORIGINAL_DST (IPv6: the
//   listener is v6-only, so the family is the listener's, no getpeername);
//   the loop check (RawHooks.isSelf);
//   the client fd joins the shared epoll set (epoll-linux.ts) and is peeked
//   at once (its first bytes often came with the connection) and on each
//   readiness: recv(MSG_PEEK) up to PEEK_LIMIT into one native buffer shared
//   by all connections ("peek, never consume": the bytes stay in the socket
//   and the splice moves them, so the server gets exactly what was sent);
//   the decision (RawHooks.decide), then socket() + SO_MARK (the path's mark;
//   none for mark 0, which needs no privilege) + TCP_NODELAY + a
//   non-blocking connect; writable -> SO_ERROR; then startFds.
// Refusals, blocks and failed dials close the client with a RST (SO_LINGER 0).
//
// Timers: none per connection. One interval per proxy (a quarter of the
// shorter of the peek and connect timeouts, 10 ms .. 1 s) finds the peeks and
// dials that ran out, so they end within +25 % of their timeout.
//
// Accepted sockets inherit TCP_NODELAY from the listening socket (Linux
// copies the listener's options into each child), so it is set once there.
import net from 'node:net';
import { constants } from 'node:os';
import { koffi } from '../sys/koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from '../sys/libc-linux.js';
import { readI32, writeI32, writeU32 } from '../sys/c-abi.js';
import { readSockaddr, writeSockaddr } from '../sys/sockaddr.js';
import { READABLE, watchFd, type FdWatch } from '../sys/fd-watch-linux.js';
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, epollSet, errnoName, type EpollSet, type FdHandler } from './epoll-linux.js';
import { peek, PEEK_LIMIT, type PeekResult } from './peek.js';
import { reasonOf } from '../sys/native-fallback.js';
import type { Splice, Splicer } from './splice.js';
import { originalDstProblem } from '../sys/original-dst-probe-linux.js';
import { AF_INET, AF_INET6, IPV6_V6ONLY, MSG_DONTWAIT, MSG_PEEK, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, SOL_IP, SOL_IPV6, SOL_SOCKET, SO_ERROR, SO_LINGER, SO_MARK, SO_ORIGINAL_DST, SO_REUSEADDR } from '../sys/linux-abi.js';

const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const E = constants.errno;

/** Connections accepted per readiness of a listener before the others get a turn. */
const ACCEPT_BATCH = 64;
/** After EMFILE/ENFILE (no fd for a new connection), accepting pauses this long instead of spinning. */
const ACCEPT_PAUSE_MS = 100;

// The scratch memory (one block, used synchronously): the peek buffer, then a sockaddr, its length, an int option.
const ADDR = PEEK_LIMIT;
const ADDR_LEN = ADDR + 128;
const OPT = ADDR_LEN + 8;
const SCRATCH = OPT + 8;

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, val: number, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: number, len: number): number;
  bind(fd: number, addr: number, len: number): number;
  listen(fd: number, backlog: number): number;
  getsockname(fd: number, addr: number, len: number): number;
  accept4(fd: number, addr: number, len: number, flags: number): number;
  connect(fd: number, addr: number, len: number): number;
  recv(fd: number, buf: number, len: number, flags: number): number;
  inet_pton(af: number, src: string, dst: number): number;
  close(fd: number): number;
}

let libc: Libc | null = null;

function load(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux') throw new Error(`accept-linux: needs Linux (this is ${process.platform})`);
  const l = loadLibc();
  // Every pointer is into our own native memory, passed as an integer: koffi neither copies nor pins.
  libc = {
    socket: l.func('int socket(int, int, int)') as Libc['socket'],
    setsockopt: l.func('int setsockopt(int, int, int, uintptr_t, uint32_t)') as Libc['setsockopt'],
    getsockopt: l.func('int getsockopt(int, int, int, uintptr_t, uintptr_t)') as Libc['getsockopt'],
    bind: l.func('int bind(int, uintptr_t, uint32_t)') as Libc['bind'],
    listen: l.func('int listen(int, int)') as Libc['listen'],
    getsockname: l.func('int getsockname(int, uintptr_t, uintptr_t)') as Libc['getsockname'],
    accept4: l.func('int accept4(int, uintptr_t, uintptr_t, int)') as Libc['accept4'],
    connect: l.func('int connect(int, uintptr_t, uint32_t)') as Libc['connect'],
    recv: l.func('intptr_t recv(int, uintptr_t, size_t, int)') as Libc['recv'],
    inet_pton: l.func('int inet_pton(int, const char *, uintptr_t)') as Libc['inet_pton'],
    close: l.func('int close(int)') as Libc['close'],
  };
  return libc;
}

/** An address and port, as the proxy logs and compares them (IPv4-mapped IPv6 shown as IPv4). */
export interface RawAddress {
  address: string;
  port: number;
}

/** What server.ts does for the raw path: every decision, count and log line is its own. */
export interface RawHooks<R extends { mark: number }> {
  /**
   * A connection of `client` was accepted (counted); false: reset it now
   * (closing, over maxConnections or its client's cap: counted as refused).
   * true takes a place for the client: dropped() gives it back unless the
   * connection is spliced (then the splice's end does).
   */
  admit(inFlight: number, client: RawAddress): boolean;
  /** An admitted connection ended before its splice (refused, blocked, reset, failed dial, close()). */
  dropped(client: RawAddress): void;
  /** Where the client was going; default SO_ORIGINAL_DST on the fd. null: not redirected. */
  originalDst?(fd: number, v6: boolean): RawAddress | null;
  /** A connection straight to the proxy's own port (not redirected: a loop). */
  isSelf(dst: RawAddress): boolean;
  /** Counts and logs a refusal; the connection is reset after. */
  refuse(client: RawAddress, reason: 'not-redirected' | 'loop', why: string): void;
  /**
   * The policy's answer for what the peek saw (`bytes` is valid during the
   * call only), with the path's mark; null: reset the client (blocked, kill
   * switch), already counted and logged.
   */
  decide(client: RawAddress, dst: RawAddress, bytes: Buffer, result: PeekResult, timedOut: boolean): R | null;
  /** The dial failed (counted and logged there); the client is reset after. */
  dialFailed(route: R, message: string): void;
  /** Both fds are the splice's now. */
  spliced(route: R, splice: Splice): void;
  /** The timeouts in force (a reload changes them). */
  timeouts(): { peekMs: number; connectMs: number; idleMs: number };
  warn(obj: object, msg: string): void;
}

const PEEKING = 0;
const DIALLING = 1;

/** One connection between accept and the splice. */
class Pending<R extends { mark: number }> implements FdHandler {
  state = PEEKING;
  sfd = -1;
  /** When the current phase (peek, dial) began. */
  since: number;
  route: R | null = null;
  /** Every epoll event seen on each fd (OR'd), for the handoff (see splice-linux.ts FdsSeen). */
  cEvents = 0;
  sEvents = 0;
  constructor(
    readonly owner: RawConnections<R>,
    readonly cfd: number,
    readonly client: RawAddress,
    readonly dst: RawAddress,
    now: number,
  ) {
    this.since = now;
  }

  ready(fd: number, events: number): void {
    this.owner.onEvent(this, fd, events);
  }
}

interface Listener {
  fd: number;
  v6: boolean;
  address: string;
  port: number;
  watch: FdWatch;
  paused: boolean;
}

/** The error Node's net.Server would give (`code`, `errno`, `syscall`), for ProxyListenError. */
function osError(syscall: string, errno: number, address: string, port: number): NodeJS.ErrnoException {
  const code = errnoName(errno);
  return Object.assign(new Error(`${syscall} ${code} ${address}:${port}`), { code, errno: -errno, syscall, address, port });
}

/** The listeners of one proxy and its connections until they are spliced. */
export class RawConnections<R extends { mark: number }> {
  private readonly c: Libc;
  private readonly ep: EpollSet;
  private readonly mem: ReturnType<typeof koffi.alloc>;
  private readonly base: number;
  private readonly buf: Buffer;
  private readonly listeners: Listener[] = [];
  private readonly pending = new Set<Pending<R>>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly hooks: RawHooks<R>,
    private readonly splicer: Splicer & Required<Pick<Splicer, 'startFds'>>,
  ) {
    this.c = load();
    this.ep = epollSet();
    this.mem = koffi.alloc('uint8', SCRATCH);
    this.base = Number(koffi.address(this.mem));
    this.buf = Buffer.from(koffi.view(this.mem, SCRATCH));
  }

  /** Connections accepted and not yet spliced. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Listens on an IP address (an IPv6 one v6-only, so `0.0.0.0` and `::`
   * coexist); returns the bound address. Throws an errno error as Node's
   * listen() would (code EADDRINUSE, EACCES...).
   */
  listen(host: string, port: number, backlog: number): RawAddress {
    const c = this.c;
    const v6 = net.isIPv6(host);
    if (!v6 && !net.isIPv4(host)) throw osError('listen', E.EINVAL, host, port);
    const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw osError('socket', koffi.errno(), host, port);
    try {
      // As libuv does for a TCP server: a restart may bind while old connections sit in TIME_WAIT.
      this.setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      if (v6) this.setInt(fd, SOL_IPV6, IPV6_V6ONLY, 1);
      this.setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1); // inherited by every accepted socket
      const len = this.writeSockaddr(host, port, v6);
      if (c.bind(fd, this.base + ADDR, len) !== 0) throw osError('bind', koffi.errno(), host, port);
      if (c.listen(fd, backlog) !== 0) throw osError('listen', koffi.errno(), host, port);
      writeU32(this.buf, 128, ADDR_LEN);
      if (c.getsockname(fd, this.base + ADDR, this.base + ADDR_LEN) !== 0) throw osError('getsockname', koffi.errno(), host, port);
      const bound = readSockaddr(this.buf, ADDR)!;
      const l: Listener = { fd, v6, address: bound.address, port: bound.port, watch: null as unknown as FdWatch, paused: false }; // watch: set just below
      l.watch = watchFd(
        fd,
        READABLE,
        (status) => {
          if (status >= 0) this.acceptSome(l);
        },
        (e) => this.hooks.warn({ err: e.message, listen: `${host}:${bound.port}` }, 'proxy accept failed'),
      );
      this.listeners.push(l);
      this.retime();
      return bound;
    } catch (e) {
      c.close(fd);
      throw e;
    }
  }

  /** The bound addresses. */
  addresses(): RawAddress[] {
    return this.listeners.map((l) => ({ address: l.address, port: l.port }));
  }

  /**
   * The sweep's period follows the timeouts (after a reload). It runs only
   * while connections wait (issue 17: a timer firing every second with
   * nothing to do, on a router whose proxy is idle most of the day).
   */
  retime(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (this.pending.size > 0) this.armSweep();
  }

  private armSweep(): void {
    if (this.sweepTimer !== null || this.closed) return;
    const t = this.hooks.timeouts();
    const every = Math.min(1000, Math.max(10, Math.floor(Math.min(t.peekMs, t.connectMs) / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref(); // the listeners keep the process alive, not this
  }

  /** Stops listening and resets every connection not yet spliced. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const p of [...this.pending]) this.abort(p, true);
    const ls = this.listeners.splice(0);
    // libuv must let go of each fd before it is closed (fd-watch-linux.ts).
    await Promise.all(ls.map((l) => l.watch.close()));
    for (const l of ls) this.c.close(l.fd);
  }

  private setInt(fd: number, level: number, name: number, v: number): number {
    writeI32(this.buf, v, OPT);
    return this.c.setsockopt(fd, level, name, this.base + OPT, 4);
  }

  /** Writes a sockaddr for host:port at ADDR; returns its length. */
  private writeSockaddr(host: string, port: number, v6: boolean): number {
    return writeSockaddr(this.buf, ADDR, host, port, v6);
  }

  private acceptSome(l: Listener): void {
    if (this.closed || l.paused) return;
    const c = this.c;
    // The time for everything this batch starts (peeks, dials, splices), which read it from the set.
    const now = (this.ep.now = Date.now());
    for (let i = 0; i < ACCEPT_BATCH; i++) {
      writeU32(this.buf, 128, ADDR_LEN);
      const fd = c.accept4(l.fd, this.base + ADDR, this.base + ADDR_LEN, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const e = koffi.errno();
        if (e === E.EAGAIN || e === E.EINTR) return;
        if (e === E.ECONNABORTED || e === E.EPROTO) continue; // that one gave up in the queue; the next may not have
        this.hooks.warn({ err: errnoName(e), listen: `${l.address}:${l.port}` }, 'proxy accept failed');
        if (e === E.EMFILE || e === E.ENFILE || e === E.ENOBUFS || e === E.ENOMEM) this.pause(l);
        return;
      }
      const client = readSockaddr(this.buf, ADDR) ?? { address: '?', port: 0 };
      this.accepted(fd, l.v6, client, now);
    }
  }

  /** Out of fds: the listener stays readable, so waiting for readiness would spin; it sleeps a little instead. */
  private pause(l: Listener): void {
    l.paused = true;
    l.watch.set(0);
    setTimeout(() => {
      l.paused = false;
      if (!this.closed && this.listeners.includes(l)) l.watch.set(READABLE);
    }, ACCEPT_PAUSE_MS).unref();
  }

  private accepted(fd: number, v6: boolean, client: RawAddress, now: number): void {
    if (!this.hooks.admit(this.pending.size, client)) return this.resetFd(fd);
    // Admitted: from here every way out that is not a splice gives the client's place back.
    let dst: RawAddress | null;
    try {
      dst = this.hooks.originalDst ? this.hooks.originalDst(fd, v6) : this.originalDst(fd, v6, client);
    } catch (e) {
      this.hooks.warn({ client: `${client.address}:${client.port}`, err: (e as Error).message }, 'proxy: no original destination');
      dst = null;
    }
    if (dst === null) {
      this.hooks.refuse(client, 'not-redirected', 'not redirected (no original destination)');
      this.hooks.dropped(client);
      return this.resetFd(fd);
    }
    if (this.hooks.isSelf(dst)) {
      this.hooks.refuse(client, 'loop', 'addressed to the proxy itself');
      this.hooks.dropped(client);
      return this.resetFd(fd);
    }
    const p = new Pending<R>(this, fd, client, dst, now);
    if (!this.ep.set(fd, p)) {
      this.hooks.dropped(client);
      return this.resetFd(fd);
    }
    this.pending.add(p);
    this.armSweep();
    // Its first bytes often came with the connection: no need to wait for a readiness.
    this.tryPeek(p, 0, false);
  }

  /** SO_ORIGINAL_DST of an accepted fd; null when the kernel has no record (ENOENT: not redirected). */
  private originalDst(fd: number, v6: boolean, client: RawAddress): RawAddress | null {
    writeU32(this.buf, 28, ADDR_LEN);
    if (this.c.getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, this.base + ADDR, this.base + ADDR_LEN) !== 0) {
      const e = koffi.errno();
      if (e === E.ENOENT) return null;
      throw new Error(`getsockopt(${v6 ? 'IP6T_SO_ORIGINAL_DST' : 'SO_ORIGINAL_DST'}) for ${client.address}:${client.port}: ${errnoName(e)}`);
    }
    return readSockaddr(this.buf, ADDR);
  }

  onEvent(p: Pending<R>, fd: number, events: number): void {
    if (fd === p.cfd) {
      p.cEvents |= events;
      // The client reset or vanished before the splice: nothing to tell anyone.
      if ((events & (EPOLLERR | EPOLLHUP)) !== 0) return this.abort(p, false);
      if (p.state === PEEKING && (events & (EPOLLIN | EPOLLRDHUP)) !== 0) this.tryPeek(p, events, false);
      return;
    }
    if (fd !== p.sfd) return;
    p.sEvents |= events;
    if (p.state === DIALLING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) !== 0) {
      // Writable and nothing wrong: connected (no SO_ERROR to read). Otherwise SO_ERROR says why not.
      if ((events & (EPOLLERR | EPOLLHUP)) === 0) return this.connected(p, false);
      writeI32(this.buf, 0, OPT);
      writeU32(this.buf, 4, ADDR_LEN);
      const r = this.c.getsockopt(p.sfd, SOL_SOCKET, SO_ERROR, this.base + OPT, this.base + ADDR_LEN);
      const err = r !== 0 ? koffi.errno() : readI32(this.buf, OPT);
      this.dialFailed(p, 'connect', err !== 0 ? err : E.ECONNRESET);
    }
  }

  private tryPeek(p: Pending<R>, events: number, timedOut: boolean): void {
    const n = this.c.recv(p.cfd, this.base, PEEK_LIMIT, MSG_PEEK | MSG_DONTWAIT);
    let ended = (events & EPOLLRDHUP) !== 0;
    let size = n;
    if (n < 0) {
      const e = koffi.errno();
      if (e !== E.EAGAIN && e !== E.EINTR) return this.abort(p, false); // reset while we waited
      size = 0;
      if (!ended && !timedOut) return;
    } else if (n === 0) {
      ended = true; // a FIN and no bytes
    }
    if (ended) p.cEvents |= EPOLLRDHUP; // the splice must read up to that FIN (its edge may be gone)
    const final = ended || timedOut || size >= PEEK_LIMIT;
    const bytes = this.buf.subarray(0, size);
    const result = peek(bytes, final);
    if (result.kind === 'more' && !final) return;
    const route = this.hooks.decide(p.client, p.dst, bytes, result, timedOut);
    if (this.closed) return;
    if (route === null) return this.abort(p, true);
    p.route = route;
    this.dial(p);
  }

  private dial(p: Pending<R>): void {
    const c = this.c;
    const v6 = p.dst.address.includes(':'); // an IP literal from the kernel (or the stand-in): no need to parse it
    const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return this.dialFailed(p, 'socket', koffi.errno());
    p.sfd = fd;
    p.state = DIALLING;
    p.since = this.ep.now;
    const mark = p.route!.mark;
    // Mark 0 is every socket's mark already, and setting SO_MARK (even to 0) needs CAP_NET_ADMIN.
    if (mark !== 0 && this.setInt(fd, SOL_SOCKET, SO_MARK, mark | 0) !== 0) return this.dialFailed(p, 'setsockopt(SO_MARK)', koffi.errno());
    this.setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (!this.ep.set(fd, p)) return this.dialFailed(p, 'epoll_ctl', koffi.errno());
    const len = this.writeSockaddr(p.dst.address, p.dst.port, v6);
    if (c.connect(fd, this.base + ADDR, len) === 0) return this.connected(p, true);
    const e = koffi.errno();
    if (e !== E.EINPROGRESS && e !== E.EINTR) return this.dialFailed(p, 'connect', e);
    // The rest comes as the socket's EPOLLOUT (connected) or EPOLLERR (refused), or from the sweep (timeout).
  }

  /** `unknown`: connected without an event (the connect returned 0), so nothing is known about the server's side. */
  private connected(p: Pending<R>, unknown: boolean): void {
    this.pending.delete(p);
    const HUP = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
    const s = this.splicer.startFds(p.cfd, p.sfd, this.hooks.timeouts().idleMs, {
      serverReadable: unknown || (p.sEvents & (EPOLLIN | HUP)) !== 0,
      clientHup: (p.cEvents & HUP) !== 0,
      serverHup: unknown || (p.sEvents & HUP) !== 0,
    });
    this.hooks.spliced(p.route!, s);
  }

  private dialFailed(p: Pending<R>, op: string, errno: number, detail = ''): void {
    const d = p.dst;
    const to = d.address.includes(':') ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
    const name = errnoName(errno);
    this.hooks.dialFailed(p.route!, `TCP socket to ${to} (mark 0x${p.route!.mark.toString(16)}): ${op} failed: ${name}${detail}`);
    this.abort(p, true);
  }

  /** Drops a connection before the splice: its dial is closed, the client reset (`reset`) or just closed. */
  private abort(p: Pending<R>, reset: boolean): void {
    if (!this.pending.delete(p)) return;
    this.hooks.dropped(p.client);
    if (p.sfd >= 0) this.ep.close(p.sfd);
    if (reset) this.setLingerReset(p.cfd);
    this.ep.close(p.cfd);
  }

  private setLingerReset(fd: number): void {
    writeI32(this.buf, 1, OPT); // struct linger { l_onoff = 1, l_linger = 0 }: close() sends a RST
    writeI32(this.buf, 0, OPT + 4);
    this.c.setsockopt(fd, SOL_SOCKET, SO_LINGER, this.base + OPT, 8);
  }

  /** Resets an fd that never joined the epoll set. */
  private resetFd(fd: number): void {
    this.setLingerReset(fd);
    this.c.close(fd);
  }

  private sweep(): void {
    if (this.pending.size === 0) {
      if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
      this.sweepTimer = null;
      return;
    }
    const now = (this.ep.now = Date.now());
    const t = this.hooks.timeouts();
    for (const p of [...this.pending]) {
      if (p.state === PEEKING) {
        if (now - p.since >= t.peekMs) this.tryPeek(p, 0, true);
      } else if (now - p.since >= t.connectMs) {
        this.dialFailed(p, 'connect', E.ETIMEDOUT, `: no answer within ${t.connectMs} ms`);
      }
    }
  }
}

/**
 * Whether the raw path can run here with this splicer (it needs one that
 * takes fds). `ownDestinations`: it reads each connection's destination
 * with SO_ORIGINAL_DST itself (no RawHooks.originalDst given).
 */
export function rawAvailable(splicer: Splicer, ownDestinations = true): splicer is Splicer & Required<Pick<Splicer, 'startFds'>> {
  return rawProblem(splicer, ownDestinations) === null;
}

/** Why the raw path cannot run here with this splicer, or null when it can. */
export function rawProblem(splicer: Splicer, ownDestinations = true): string | null {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (typeof splicer.startFds !== 'function') return `the ${splicer.name} splicer takes no fds`;
  try {
    load();
    epollSet();
    // It reads each connection's destination from its fd (no conntrack fallback there).
    return ownDestinations ? originalDstProblem() : null;
  } catch (e) {
    return reasonOf(e);
  }
}
