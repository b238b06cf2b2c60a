// The proxy's byte path on Linux: splice(2) through kernel pipes, so the bytes
// of a proxied connection never enter JS (nor Node's streams).
//
// Why: Node's net + pipe() moves every chunk through a JS Buffer, a stream
// callback and a write request; on this kind of box a bare Node pipe() proxy
// reaches ~0.6x haproxy's throughput (`npm run bench -- proxy`, "node pipe").
// splice(2) moves page references socket -> pipe -> socket in the kernel; JS
// only makes two calls per up-to-pipe-size chunk.
//
// How:
// - Handoff. server.ts peeks and dials with Node sockets, then calls start().
//   The OS fd is taken from each socket (`socket._handle.fd`). This is safe
//   because from then on Node never does I/O on them: reading is stopped
//   (`_handle.readStop()`; pause() alone lets Node read on up to its
//   highWaterMark), whatever Node had already read into its buffer is taken
//   out with read() and written first, nothing is ever written or end()ed
//   through Node again (the peek's bytes and a FIN are sent here, by send(2)
//   and shutdown(2)), and no Node timer is set on them. The sockets stay
//   referenced here until the end, when they are destroyed (or reset with
//   resetAndDestroy): Node closes each fd, exactly once, and nobody else does.
//   Nothing else may destroy them meanwhile (a closed fd's number is soon
//   another connection's): server.ts goes through Splice.reset().
// - Raw fds (startFds): the raw connection path (accept-linux.ts) accepts,
//   peeks (MSG_PEEK: the head is still in the client socket) and dials on
//   fds Node never saw, and hands both over; the engine owns them from then
//   on and closes them itself (close(2), or SO_LINGER 0 + close for a reset).
// - One epoll set per process (epoll-linux.ts), shared with the raw
//   connection path, edge-triggered; its fd is watched by libuv on the main
//   thread (config/fd-watch-linux.ts: no thread hop, no wakeup fd); each
//   readiness runs epoll_wait(0) there and pumps the connections it names.
//   koffi calls a registered callback from libuv without a JS callback scope,
//   so microtasks would wait for the next one: fd-watch-linux schedules a
//   setImmediate after each readiness, whose scope runs them in this same
//   loop turn.
// - Copy first, then splice. A direction starts by copying: recv(2) into one
//   native buffer shared by all connections, send(2) at once. For the few
//   hundred bytes a short connection moves each way that is cheaper than
//   splice(2) (no pipe, no page references: measured ~10 µs of kernel time
//   less per connection). The first read that fills the buffer (bulk) or the
//   first send the destination cannot take whole switches that direction to
//   splice(2) for good; what the destination did not take is kept (a copy)
//   and sent first.
// - Pump (one direction, src -> pipe -> dst): read with splice(src -> pipe,
//   SPLICE_F_NONBLOCK|SPLICE_F_MOVE) while the pipe has room, write with
//   splice(pipe -> dst) while it has bytes, until the source says EAGAIN with
//   an empty pipe (wait for EPOLLIN) or the destination says EAGAIN (wait for
//   its EPOLLOUT edge: backpressure; the source is not read meanwhile, its
//   receive buffer fills and TCP closes the window). EAGAIN from the read with
//   bytes still in the pipe may mean a full pipe, not an empty socket, so it
//   goes on writing and reads again. At most PUMP_ROUNDS chunks per turn; a
//   connection with more is pumped again from a setImmediate (an edge would
//   not come again), so one flow cannot starve the others or the timers.
// - Pipes are pooled: a direction holds one only while bytes are in flight,
//   so idle connections cost no pipes (2 fds each) and the fd budget stays
//   that of the sockets. A pipe goes back to the pool empty, or is closed.
// - Half-close: EOF (splice returns 0) from one side: once that direction's
//   pipe is drained, shutdown(SHUT_WR) the other. Both ways ended: both
//   sockets are destroyed (a clean close).
// - Reset propagation: an error reading one side or writing the other
//   (ECONNRESET, EPIPE...; EPOLLERR with SO_ERROR set) resets the other side
//   (SO_LINGER 0 + close: resetAndDestroy) and closes the failed one.
// - Idle: every connection keeps the time of its last byte either way; one
//   interval timer (a quarter of the shortest idle timeout, 10 ms .. 1 s)
//   resets those idle too long, so the timeout fires within +25 %.
// - Bytes per direction: what Node had read before the handoff (bytesRead)
//   plus what splice moved.
import { constants } from 'node:os';
import type net from 'node:net';
import { koffi } from '../sys/koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from '../sys/libc-linux.js';
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, epollSet, type EpollSet, type FdHandler } from './epoll-linux.js';
import { pipeSplicer, resetSocket, type Splice, type SpliceEnd, type SpliceOptions, type SpliceResult, type Splicer } from './splice.js';
import { MSG_DONTWAIT, MSG_NOSIGNAL, O_CLOEXEC, O_NONBLOCK, SOL_SOCKET, SO_ERROR, SO_LINGER } from '../sys/linux-abi.js';
import { fastPathOr, type FallbackReport } from '../sys/native-fallback.js';

const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
const F_SETPIPE_SZ = 1031;
const SHUT_WR = 1;
const EAGAIN = constants.errno.EAGAIN;
const EINTR = constants.errno.EINTR;
/** Chunks moved per direction per turn before yielding to others (up to 8 MiB with 1 MiB pipes). */
const PUMP_ROUNDS = 8;
/** Idle pipes kept for reuse. */
const POOL_MAX = 64;
/**
 * The pipe size asked for (F_SETPIPE_SZ; the kernel's default is 64 KiB, its
 * default cap for unprivileged users 1 MiB). Measured on loopback (iperf3
 * through the proxy, 2 cores): 64 KiB 22.5 Gbit/s at 215 ms CPU/GB, 256 KiB
 * 26-29 at 150-180, 1 MiB 31-33 at 120-130. It is a bound, not an
 * allocation: a pipe holds pages only while bytes are in flight, and those
 * are references to the sockets' own pages.
 */
const DEFAULT_PIPE_SIZE = 1 << 20;
/** The copy buffer (see "Copy first"): a read that fills it means bulk, and the direction splices from then on. */
const COPY_SIZE = 64 * 1024;

interface Libc {
  splice(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags: number): number;
  pipe2(fds: Int32Array, flags: number): number;
  fcntl(fd: number, cmd: number, ...args: unknown[]): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  sendAt(fd: number, buf: number, len: number, flags: number): number;
  recvAt(fd: number, buf: number, len: number, flags: number): number;
  shutdown(fd: number, how: number): number;
  getsockopt(fd: number, level: number, name: number, val: Int32Array, len: number[]): number;
  setsockopt(fd: number, level: number, name: number, val: Int32Array, len: number): number;
  close(fd: number): number;
}

let libc: Libc | null = null;

function load(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux') throw new Error(`splice-linux: needs Linux (this is ${process.platform})`);
  const l = loadLibc();
  // Pointers into our own native memory go as integers (uintptr_t): koffi neither copies nor pins.
  const c: Libc = {
    splice: l.func('intptr_t splice(int, uintptr_t, int, uintptr_t, size_t, unsigned int)') as Libc['splice'],
    pipe2: l.func('int pipe2(_Out_ int *, int)') as Libc['pipe2'],
    fcntl: l.func('int fcntl(int, int, ...)') as Libc['fcntl'],
    send: l.func('intptr_t send(int, const void *, size_t, int)') as Libc['send'],
    sendAt: l.func('intptr_t send(int, uintptr_t, size_t, int)') as Libc['sendAt'],
    recvAt: l.func('intptr_t recv(int, uintptr_t, size_t, int)') as Libc['recvAt'],
    shutdown: l.func('int shutdown(int, int)') as Libc['shutdown'],
    getsockopt: l.func('int getsockopt(int, int, int, _Out_ int *, _Inout_ uint32_t *)') as Libc['getsockopt'],
    setsockopt: l.func('int setsockopt(int, int, int, const int *, uint32_t)') as Libc['setsockopt'],
    close: l.func('int close(int)') as Libc['close'],
  };
  libc = c;
  return c;
}

const LINGER_RESET = new Int32Array([1, 0]); // struct linger { l_onoff = 1, l_linger = 0 }: close() sends a RST

/** The socket's fd, or -1 (no handle: destroyed, or not a TCP socket). */
function fdOf(s: net.Socket): number {
  // net.Socket's _handle is not deprecated (unlike dgram's); it is a TCPWrap with an fd.
  const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/** Stops Node reading `s` and returns what it had read but nobody consumed. */
function takeOver(s: net.Socket): Buffer | null {
  // read() may restart the handle's reading (it asks for more below the
  // highWaterMark); reads only arrive from the event loop, so stopping right
  // after loses nothing.
  const buffered = s.readableLength > 0 ? (s.read() as Buffer | null) : null;
  const h = (s as unknown as { _handle?: { readStop?: () => number; reading?: boolean } | null })._handle;
  if (h?.readStop) {
    h.readStop();
    h.reading = false;
  }
  return buffered;
}

type Side = 'client' | 'server';

class Dir {
  /** The pipe while bytes are in flight: [read end, write end], or null. */
  pr = -1;
  pw = -1;
  inPipe = 0;
  /** Bytes to send before the pipe's (the peek's, Node's buffer). */
  pending: Buffer | null = null;
  eof = false;
  shut = false;
  moved = 0;
  /** Still copying (recv/send), not yet splicing. */
  copy = true;
  /**
   * The source signalled its FIN (EPOLLRDHUP) or an error, or we cannot
   * tell: read it until EAGAIN or EOF. Otherwise a short read means it is
   * empty, and its next bytes bring an edge of their own.
   */
  srcHup = true;
  constructor(
    readonly src: number,
    readonly dst: number,
    readonly srcSide: Side,
    readonly dstSide: Side,
  ) {}
}

class Conn implements Splice, FdHandler {
  readonly up: Dir;
  readonly down: Dir;
  end: SpliceEnd | null = null;
  closed = false;
  lastActive: number;
  /** In the engine's `again` list. */
  queued = false;
  readonly done: Promise<SpliceResult>;
  resolve!: (r: SpliceResult) => void;
  readonly upBase: number;
  readonly downBase: number;

  constructor(
    readonly engine: Engine,
    /** The Node sockets the fds belong to (start()), or null: raw fds the engine owns (startFds()). */
    readonly client: net.Socket | null,
    readonly server: net.Socket | null,
    readonly cfd: number,
    readonly sfd: number,
    readonly idleMs: number,
    now: number,
  ) {
    this.up = new Dir(cfd, sfd, 'client', 'server');
    this.down = new Dir(sfd, cfd, 'server', 'client');
    this.upBase = client?.bytesRead ?? 0;
    this.downBase = server?.bytesRead ?? 0;
    this.lastActive = now;
    this.done = new Promise((r) => (this.resolve = r));
  }

  ready(fd: number, events: number): void {
    this.engine.onEvent(this, fd, events);
  }

  bytes(): { up: number; down: number } {
    return { up: this.upBase + this.up.moved, down: this.downBase + this.down.moved };
  }

  reset(): void {
    this.engine.fail(this, null, 'closed');
  }
}

class Engine implements Splicer {
  readonly name = 'splice';
  private readonly c: Libc;
  private readonly ep: EpollSet;
  private readonly live = new Set<Conn>();
  private readonly pool: number[] = [];
  private readonly pipeFds = new Int32Array(2);
  private readonly soErr = new Int32Array(1);
  /** The copy buffer, native (its address goes to recv/send as an integer), and a view of it. */
  private readonly copyAddr: number;
  private readonly copyBuf: Buffer;
  private again: Conn[] = [];
  private againScheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweepEvery = 0;

  constructor(private readonly pipeSize: number) {
    this.c = load();
    this.ep = epollSet();
    const mem = koffi.alloc('uint8', COPY_SIZE); // one per process, for its life
    this.copyAddr = Number(koffi.address(mem));
    this.copyBuf = Buffer.from(koffi.view(mem, COPY_SIZE));
  }

  get now(): number {
    return this.ep.now;
  }

  start(client: net.Socket, server: net.Socket, idleTimeoutMs: number, o: SpliceOptions = {}): Splice {
    const cfd = fdOf(client);
    const sfd = fdOf(server);
    // A socket without an fd (destroyed meanwhile, or not a TCP handle): the portable way handles it.
    if (cfd < 0 || sfd < 0 || client.destroyed || server.destroyed) return pipeSplicer.start(client, server, idleTimeoutMs, o);
    this.ep.now = Date.now();
    const fromClient = takeOver(client);
    const fromServer = takeOver(server);
    const conn = new Conn(this, client, server, cfd, sfd, idleTimeoutMs, this.ep.now);
    const head = o.head !== undefined && o.head.length > 0 ? o.head : null;
    conn.up.pending = head && fromClient ? Buffer.concat([head, fromClient]) : (head ?? fromClient);
    conn.down.pending = fromServer;
    if (o.clientEnded) conn.up.eof = true;
    // Errors Node might still report on these sockets are ours to act on, not Node's.
    client.on('error', noop);
    server.on('error', noop);
    this.live.add(conn);
    if (!this.ep.set(cfd, conn) || !this.ep.set(sfd, conn)) {
      this.fail(conn, 'client', 'reset-by-client');
      return conn;
    }
    if (idleTimeoutMs > 0) this.scheduleSweep(idleTimeoutMs);
    // The head goes at once (the server is waiting for it); the rest on readiness (the registration reports it).
    if (conn.up.pending !== null || conn.up.eof) this.pump(conn, conn.up);
    if (conn.down.pending !== null && !conn.closed) this.pump(conn, conn.down);
    return conn;
  }

  /**
   * Takes over two connected, non-blocking TCP fds Node never saw (the raw
   * connection path): from here on only the Splice touches them, and it
   * closes them. They may be in the epoll set already (under the caller's
   * handler): edges the caller consumed are not replayed, so both directions
   * are tried once now; the server's only if `seen` says it was readable
   * (without `seen`: always, and both read to the end).
   */
  startFds(cfd: number, sfd: number, idleTimeoutMs: number, seen?: FdsSeen): Splice {
    const conn = new Conn(this, null, null, cfd, sfd, idleTimeoutMs, this.ep.now);
    if (seen !== undefined) {
      conn.up.srcHup = seen.clientHup;
      conn.down.srcHup = seen.serverHup;
    }
    const serverReadable = seen?.serverReadable ?? true;
    this.live.add(conn);
    if (!this.ep.set(cfd, conn) || !this.ep.set(sfd, conn)) {
      this.fail(conn, 'client', 'reset-by-client');
      return conn;
    }
    if (idleTimeoutMs > 0) this.scheduleSweep(idleTimeoutMs);
    this.pump(conn, conn.up);
    // A server that just connected has rarely spoken yet: its next edge says when (a splice now would be an EAGAIN).
    if (!conn.closed && serverReadable) this.pump(conn, conn.down);
    return conn;
  }

  /** An epoll event for one of the connection's fds (epoll-linux.ts calls it; never throws out of libuv). */
  onEvent(conn: Conn, fd: number, events: number): void {
    if (conn.closed) return;
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) (fd === conn.cfd ? conn.up : conn.down).srcHup = true;
    if ((events & EPOLLERR) !== 0) {
      const err = this.sockError(fd);
      if (err !== 0) {
        const side: Side = fd === conn.cfd ? 'client' : 'server';
        this.fail(conn, side, side === 'client' ? 'reset-by-client' : 'reset-by-server');
        return;
      }
    }
    const isClient = fd === conn.cfd;
    // Readable (or its FIN/RST): the direction it feeds. Writable: the direction it drains, if that has bytes waiting.
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) this.pump(conn, isClient ? conn.up : conn.down);
    if (conn.closed) return;
    if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) !== 0) {
      const d = isClient ? conn.down : conn.up;
      if (d.inPipe > 0 || d.pending !== null) this.pump(conn, d);
    }
  }

  private sockError(fd: number): number {
    const len = [4];
    this.soErr[0] = 0;
    if (this.c.getsockopt(fd, SOL_SOCKET, SO_ERROR, this.soErr, len) !== 0) return koffi.errno();
    return this.soErr[0]!;
  }

  private acquirePipe(d: Dir): boolean {
    const fromPool = this.pool.pop();
    if (fromPool !== undefined) {
      d.pr = fromPool;
      d.pw = this.pool.pop()!;
      return true;
    }
    if (this.c.pipe2(this.pipeFds, O_NONBLOCK | O_CLOEXEC) !== 0) return false;
    d.pr = this.pipeFds[0]!;
    d.pw = this.pipeFds[1]!;
    // Best effort: a bigger pipe means fewer calls per byte; over the user's pipe budget the kernel says no.
    if (this.pipeSize !== 65536) this.c.fcntl(d.pw, F_SETPIPE_SZ, 'int', this.pipeSize);
    return true;
  }

  private releasePipe(d: Dir): void {
    if (d.pr < 0) return;
    if (d.inPipe === 0 && this.pool.length < POOL_MAX * 2) {
      // Pushed write end first so pop() gives the read end first.
      this.pool.push(d.pw, d.pr);
    } else {
      this.c.close(d.pr);
      this.c.close(d.pw);
    }
    d.pr = d.pw = -1;
    d.inPipe = 0;
  }

  /** Moves what it can of one direction now; see the header. */
  pump(conn: Conn, d: Dir): void {
    const c = this.c;
    for (let round = 0; round < PUMP_ROUNDS; round++) {
      if (d.pending !== null) {
        const p = d.pending;
        const w = c.send(d.dst, p, p.length, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
          const e = koffi.errno();
          if (e === EAGAIN || e === EINTR) return;
          return this.fail(conn, d.dstSide, d.dstSide === 'client' ? 'reset-by-client' : 'reset-by-server');
        }
        conn.lastActive = this.now;
        d.pending = w >= p.length ? null : p.subarray(w);
        if (d.pending !== null) continue;
      }
      let readAgain = false;
      if (!d.eof && d.copy) {
        const n = c.recvAt(d.src, this.copyAddr, COPY_SIZE, MSG_DONTWAIT);
        if (n > 0) {
          d.moved += n;
          conn.lastActive = this.now;
          let w = c.sendAt(d.dst, this.copyAddr, n, MSG_DONTWAIT | MSG_NOSIGNAL);
          if (w < 0) {
            const e = koffi.errno();
            if (e !== EAGAIN && e !== EINTR) return this.fail(conn, d.dstSide, d.dstSide === 'client' ? 'reset-by-client' : 'reset-by-server');
            w = 0;
          }
          if (w < n) {
            // The destination is full: keep the rest (a copy: the buffer is everyone's), wait for its EPOLLOUT edge, splice after.
            d.pending = Buffer.from(this.copyBuf.subarray(w, n));
            d.copy = false;
            return;
          }
          if (n === COPY_SIZE) d.copy = false;
          else if (!d.srcHup) return; // a short read emptied it (see srcHup): no EAGAIN to collect
          continue;
        }
        if (n === 0) d.eof = true;
        else {
          const e = koffi.errno();
          if (e === EINTR) continue;
          if (e === EAGAIN) return; // the socket is empty: wait for its next EPOLLIN edge
          return this.fail(conn, d.srcSide, d.srcSide === 'client' ? 'reset-by-client' : 'reset-by-server');
        }
      } else if (!d.eof) {
        if (d.pr < 0 && !this.acquirePipe(d)) return this.fail(conn, null, 'closed'); // out of fds: give up this connection, not the process
        const r = c.splice(d.src, 0, d.pw, 0, this.pipeSize, SPLICE_FLAGS);
        if (r > 0) {
          d.inPipe += r;
          d.moved += r;
          conn.lastActive = this.now;
          readAgain = true;
        } else if (r === 0) {
          d.eof = true;
        } else {
          const e = koffi.errno();
          if (e !== EAGAIN && e !== EINTR) return this.fail(conn, d.srcSide, d.srcSide === 'client' ? 'reset-by-client' : 'reset-by-server');
          if (e === EAGAIN && d.inPipe === 0) {
            // An empty pipe took nothing: the socket is empty. Wait for its next EPOLLIN edge.
            this.releasePipe(d);
            return;
          }
          // EAGAIN with bytes in the pipe may mean a full pipe: write, then read again.
          readAgain = true;
        }
      }
      if (d.inPipe > 0) {
        const w = c.splice(d.pr, 0, d.dst, 0, d.inPipe, SPLICE_FLAGS);
        if (w > 0) {
          d.inPipe -= w;
          conn.lastActive = this.now;
        } else {
          const e = koffi.errno();
          if (e === EAGAIN) return; // the destination is full: its EPOLLOUT edge resumes us
          if (e !== EINTR) return this.fail(conn, d.dstSide, d.dstSide === 'client' ? 'reset-by-client' : 'reset-by-server');
        }
      }
      if (d.eof && d.inPipe === 0) {
        this.releasePipe(d);
        if (!d.shut) {
          d.shut = true;
          // ENOTCONN: the peer is gone already; the other direction will tell. When the other direction has ended
          // too, both sockets are closed right below, and a close sends the same FIN (we read their EOFs: no
          // unread bytes that would make it a RST).
          if (!(d === conn.up ? conn.down : conn.up).shut) c.shutdown(d.dst, SHUT_WR);
        }
        if (conn.up.shut && conn.down.shut) this.finish(conn, 'closed');
        return;
      }
      if (!readAgain && d.inPipe === 0) {
        this.releasePipe(d);
        return;
      }
    }
    // More to do than one turn allows: again soon, after the others.
    if (conn.queued) return;
    conn.queued = true;
    this.again.push(conn);
    if (!this.againScheduled) {
      this.againScheduled = true;
      setImmediate(() => this.runAgain());
    }
  }

  private runAgain(): void {
    this.againScheduled = false;
    const list = this.again;
    this.again = [];
    this.ep.now = Date.now();
    for (const conn of list) {
      conn.queued = false;
      if (conn.closed) continue;
      this.pump(conn, conn.up);
      if (!conn.closed) this.pump(conn, conn.down);
    }
  }

  /**
   * Ends a connection badly: `failed` (the side that errored, or null) is
   * closed, the other reset; with null both are reset.
   */
  fail(conn: Conn, failed: Side | null, end: SpliceEnd): void {
    if (conn.closed) return;
    conn.end ??= end;
    this.teardown(conn);
    // The failed side's peer reset it or it is gone: closing it is enough (a reset there reaches nobody).
    this.closeSide(conn.client, conn.cfd, failed !== 'client');
    this.closeSide(conn.server, conn.sfd, failed !== 'server');
    this.settle(conn);
  }

  private finish(conn: Conn, end: SpliceEnd): void {
    if (conn.closed) return;
    conn.end ??= end;
    this.teardown(conn);
    this.closeSide(conn.client, conn.cfd, false);
    this.closeSide(conn.server, conn.sfd, false);
    this.settle(conn);
  }

  /** Closes one side: its Node socket (Node closes the fd), or the raw fd; with `reset`, by a RST. */
  private closeSide(s: net.Socket | null, fd: number, reset: boolean): void {
    if (s !== null) {
      // Node closes the fd at once: after the batch (epoll-linux.ts close()).
      this.ep.defer(() => (reset ? resetSocket(s) : s.destroy()));
      return;
    }
    if (reset) this.c.setsockopt(fd, SOL_SOCKET, SO_LINGER, LINGER_RESET, 8);
    this.ep.close(fd);
  }

  private teardown(conn: Conn): void {
    conn.closed = true;
    // Node sockets' fds leave the epoll set when Node closes them; raw ones in closeSide.
    if (conn.client !== null) {
      if (this.ep.owner(conn.cfd) === conn) this.ep.forget(conn.cfd);
      if (this.ep.owner(conn.sfd) === conn) this.ep.forget(conn.sfd);
    }
    // A pipe with bytes in it is closed, not pooled.
    this.releasePipe(conn.up);
    this.releasePipe(conn.down);
    this.live.delete(conn);
    if (this.live.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
      this.sweepEvery = 0;
    }
  }

  private settle(conn: Conn): void {
    const b = conn.bytes();
    // From a libuv callback, the reactions run in fd-watch-linux's immediate, this same turn.
    conn.resolve({ end: conn.end ?? 'closed', up: b.up, down: b.down });
  }

  private scheduleSweep(idleMs: number): void {
    const every = Math.min(1000, Math.max(10, Math.floor(idleMs / 4)));
    if (this.sweepTimer !== null && this.sweepEvery <= every) return;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepEvery = every;
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = (this.ep.now = Date.now());
    for (const conn of this.live) {
      if (conn.idleMs > 0 && now - conn.lastActive >= conn.idleMs) this.fail(conn, null, 'idle');
    }
  }
}

function noop(): void {}

/** What the raw path saw of the fds before the handoff (their edges are consumed: see startFds). */
export interface FdsSeen {
  /** The server's socket was reported readable. */
  serverReadable: boolean;
  /** EPOLLRDHUP (or an error) was reported on the client's / the server's socket. */
  clientHup: boolean;
  serverHup: boolean;
}

let engine: Engine | null = null;

/** The splice(2) splicer (one per process); throws where it cannot work (not Linux, no libc, no exported libuv). */
export function spliceSplicer(): Splicer {
  engine ??= new Engine(DEFAULT_PIPE_SIZE);
  return engine;
}

/**
 * The splicer the proxy uses: splice(2) on Linux; Node's pipe() elsewhere,
 * where it cannot load, or with SPLITWAN_PROXY_SPLICE=pipe (a way out should a
 * kernel or a Node version misbehave). When it is pipe(), `report` hears why, once.
 */
export function defaultSplicer(env: NodeJS.ProcessEnv = process.env, report: FallbackReport = {}): Splicer {
  const turnedOff = env.SPLITWAN_PROXY_SPLICE === 'pipe' ? 'SPLITWAN_PROXY_SPLICE=pipe' : null;
  return fastPathOr({ what: 'proxy bytes: splice(2)', instead: "Node's streams (pipe())", report, turnedOff }, spliceSplicer, pipeSplicer);
}
