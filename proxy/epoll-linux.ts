// One epoll set per process for the proxy's raw fds: the sockets being spliced
// (splice-linux.ts) and the connections being peeked and dialled
// (accept-linux.ts). Each fd is registered once, edge-triggered, for
// everything (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) and never modified: a
// connection changes hands (peek -> dial -> splice) by changing the handler
// its fd number points to, which costs no syscall. A new owner must not rely
// on an edge the previous one consumed: it tries its I/O once when it takes
// over (see splice-linux.ts startFds).
//
// The epoll fd itself is watched by libuv on the main thread
// (config/fd-watch-linux.ts: a uv_poll handle): each readiness runs
// epoll_wait(0) here and calls the handlers it names. The watch is started
// while fds are registered and stopped (within a second) when none are, so an
// empty set does not keep the process alive.
//
// Memory layout: struct epoll_event is packed on x86-64 (12 bytes: events,
// then data at offset 4) and naturally aligned elsewhere (16 bytes, data at
// 8; i386: 12, 4): sys/c-abi.ts computes it for the running ABI, checked
// against koffi's at load. `events` is in the machine's byte order; `data`
// (the fd) is opaque to the kernel, a round trip.
import { errnoName } from '../sys/errno.js';
import { koffi, koffiLayoutProblem } from '../sys/koffi-linux.js'; // loaded by loadLibc(), before any use
import { cAbi, epollEventLayout, EPOLL_EVENT } from '../sys/c-abi.js';
import { EPOLL_CLOEXEC } from '../sys/linux-abi.js';
import { loadLibc } from '../sys/libc-linux.js';
import { READABLE, watchFd, type FdWatch } from '../sys/fd-watch-linux.js';

export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const EPOLLRDHUP = 0x2000;
const EPOLLET = 0x80000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_MOD = 3;

const MAX_EVENTS = 256;

/** Who owns an fd now: called with the fd and its epoll events. Must not throw. */
export interface FdHandler {
  ready(fd: number, events: number): void;
}

interface EpollLibc {
  epoll_create1(flags: number): number;
  epoll_ctl(epfd: number, op: number, fd: number, ev: number): number;
  epoll_wait(epfd: number, evs: number, max: number, timeout: number): number;
  close(fd: number): number;
}

export { errnoName };

export class EpollSet {
  private readonly c: EpollLibc;
  private readonly epfd: number;
  private readonly evAddr: number;
  private readonly evView: DataView;
  /** sizeof(struct epoll_event), offsetof(data), the byte order: this ABI's. */
  private readonly evSize: number;
  private readonly evData: number;
  private readonly le: boolean;
  private readonly ctlAddr: number;
  private readonly ctlView: DataView;
  private readonly byFd: (FdHandler | undefined)[] = [];
  private count = 0;
  private readonly watch: FdWatch;
  private watching = false;
  private idleCheck: NodeJS.Timeout | null = null;
  /** Inside a batch of events: closes wait for its end (see close()). */
  private inBatch = false;
  private readonly toClose: number[] = [];
  private readonly toRun: (() => void)[] = [];
  /** Date.now() as of the current batch (handlers read it instead of asking again). */
  now = Date.now();

  constructor() {
    const l = loadLibc();
    const abi = cAbi();
    const ev = epollEventLayout(abi);
    const problem = koffiLayoutProblem('epoll_event', EPOLL_EVENT, ev, abi.epollPacked);
    if (problem !== null) throw Object.assign(new Error(problem), { code: 'SPLITWAN_NATIVE_ABI' });
    const EV_SIZE = ev.size;
    this.evSize = ev.size;
    this.evData = ev.offset.data;
    this.le = abi.littleEndian;
    // Pointers into our own native memory go as integers (uintptr_t): koffi neither copies nor pins.
    this.c = {
      epoll_create1: l.func('int epoll_create1(int)') as EpollLibc['epoll_create1'],
      epoll_ctl: l.func('int epoll_ctl(int, int, int, uintptr_t)') as EpollLibc['epoll_ctl'],
      epoll_wait: l.func('int epoll_wait(int, uintptr_t, int, int)') as EpollLibc['epoll_wait'],
      close: l.func('int close(int)') as EpollLibc['close'],
    };
    this.epfd = this.c.epoll_create1(EPOLL_CLOEXEC);
    if (this.epfd < 0) throw new Error(`epoll_create1: ${errnoName(koffi.errno())}`);
    const evs = koffi.alloc('uint8', EV_SIZE * (MAX_EVENTS + 1)); // lives as long as the process (one set)
    this.evAddr = Number(koffi.address(evs));
    this.evView = new DataView(koffi.view(evs, EV_SIZE * (MAX_EVENTS + 1)));
    // The last slot is epoll_ctl's argument.
    this.ctlAddr = this.evAddr + EV_SIZE * MAX_EVENTS;
    this.ctlView = new DataView(this.evView.buffer, EV_SIZE * MAX_EVENTS, EV_SIZE);
    this.watch = watchFd(
      this.epfd,
      0,
      (status) => {
        if (status >= 0) this.drain();
      },
      // A handler that threw: surface it as an uncaught exception, outside libuv's callback.
      (e) =>
        setImmediate(() => {
          throw e;
        }),
    );
  }

  /**
   * Makes `h` the owner of `fd`: registers it (the first time) or just points
   * it at the new handler. False when the kernel refused the registration.
   */
  set(fd: number, h: FdHandler): boolean {
    if (this.byFd[fd] !== undefined) {
      this.byFd[fd] = h;
      return true;
    }
    this.ctlView.setUint32(0, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this.le);
    this.ctlView.setUint32(this.evData, fd, this.le);
    this.ctlView.setUint32(this.evData + 4, 0, this.le);
    // EEXIST: an fd number registered by a socket whose handler forgot it without closing it (should not happen): take it over.
    if (this.c.epoll_ctl(this.epfd, EPOLL_CTL_ADD, fd, this.ctlAddr) !== 0 && this.c.epoll_ctl(this.epfd, EPOLL_CTL_MOD, fd, this.ctlAddr) !== 0) return false;
    this.byFd[fd] = h;
    if (++this.count === 1 && !this.watching) this.startWatching();
    return true;
  }

  /** Drops `fd`'s handler; call it right before closing the fd (closing removes it from the set: nothing else holds it). */
  forget(fd: number): void {
    if (this.byFd[fd] === undefined) return;
    this.byFd[fd] = undefined;
    this.count--;
  }

  /**
   * Forgets and closes `fd`. Inside a batch the close waits for the batch's
   * end: a number closed now could be reused at once (a dial's socket()) and
   * then receive events the batch still holds for the old socket.
   */
  close(fd: number): void {
    this.forget(fd);
    if (this.inBatch) this.toClose.push(fd);
    else this.c.close(fd);
  }

  /** Runs `fn` (something that closes fds: destroying a Node socket) now, or after the batch; see close(). */
  defer(fn: () => void): void {
    if (this.inBatch) this.toRun.push(fn);
    else fn();
  }

  /** The fd's handler now, if any. */
  owner(fd: number): FdHandler | undefined {
    return this.byFd[fd];
  }

  private startWatching(): void {
    this.watch.set(READABLE);
    this.watching = true;
    // Stopping the watch when the set empties would cost two syscalls in libuv per toggle (one connection at a time
    // does that per connection); a slow check costs nothing and lets the process exit within a second.
    this.idleCheck ??= setInterval(() => {
      if (this.count > 0) return;
      this.watch.set(0);
      this.watching = false;
      clearInterval(this.idleCheck!);
      this.idleCheck = null;
    }, 1000).unref();
  }

  private drain(): void {
    const n = this.c.epoll_wait(this.epfd, this.evAddr, MAX_EVENTS, 0);
    if (n <= 0) return;
    this.now = Date.now();
    const v = this.evView;
    this.inBatch = true;
    try {
      for (let i = 0; i < n; i++) {
        const at = i * this.evSize;
        const fd = v.getUint32(at + this.evData, this.le);
        // Looked up per event: an earlier handler of this batch may have let the fd go or handed it on.
        this.byFd[fd]?.ready(fd, v.getUint32(at, this.le));
      }
    } finally {
      this.inBatch = false;
      for (const fd of this.toClose) this.c.close(fd);
      this.toClose.length = 0;
      if (this.toRun.length > 0) {
        const run = this.toRun.splice(0);
        for (const fn of run) fn();
      }
    }
  }
}

let set: EpollSet | null = null;

/** The process's set; throws where it cannot work (not Linux, no libc, no exported libuv). */
export function epollSet(): EpollSet {
  if (process.platform !== 'linux') throw new Error(`epoll-linux: needs Linux (this is ${process.platform})`);
  set ??= new EpollSet();
  return set;
}
