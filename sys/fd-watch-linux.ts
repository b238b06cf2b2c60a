// Readiness of a raw file descriptor, on Node's own event loop: a libuv
// `uv_poll_t` made and started through koffi (Node exports libuv's symbols to
// addons; `koffi.load(null)` finds them in the running process).
//
// Why not poll(2) on libuv's thread pool (koffi `.async`), as the resolver's
// UDP transport did first: every wakeup was a hand-off between a pool thread
// and the main thread, two context switches and futex round trips per batch;
// with the process on one core (`bench dns` pins it) that was about half of
// the CPU a cache hit cost. A uv_poll_t is what Node's own sockets use: the
// main thread's epoll wakes the callback directly, no thread involved, and an
// active handle keeps the process alive like a listening socket does.
//
// Only on the main thread (the handle lives on uv_default_loop(), which is
// the main thread's loop; a worker_thread has a loop of its own).
//
// Rules libuv sets (uv_poll docs): one active handle per fd; the fd must stay
// open until the handle is closed: `close()` resolves once libuv released
// it, and only then may the caller close the fd.
import { koffi, loadKoffi } from './koffi-linux.js';

export const READABLE = 1;
export const WRITABLE = 2;

/** libuv's UV_POLL handle type (uv.h: uv_handle_type). */
const UV_POLL = 8;

export interface FdWatch {
  /** Watches `events` (READABLE | WRITABLE...) from now on; 0 stops watching until set again. */
  set(events: number): void;
  /** Stops for good; resolves once libuv has let go of the fd (the caller may close it then). */
  close(): Promise<void>;
}

/**
 * Called on the main thread when the fd is ready: `status` < 0 is a libuv
 * error (UV_EBADF...), `events` what is ready. Exceptions are caught and
 * passed to `onError` (one bad callback must not unwind libuv's loop).
 */
export type FdReady = (status: number, events: number) => void;

interface Uv {
  loop: unknown;
  handleSize: number;
  pollInit(loop: unknown, handle: number, fd: number): number;
  pollStart(handle: number, events: number, cb: unknown): number;
  pollStop(handle: number): number;
  close(handle: number, cb: unknown): void;
  strerror(err: number): string;
  pollCb: unknown;
  closeCb: unknown;
}

let uv: Uv | null = null;
let unavailable: Error | null = null;
const watches = new Map<number, Watch>();
const closing = new Map<number, () => void>();

function load(): Uv {
  if (uv !== null) return uv;
  if (unavailable !== null) throw unavailable;
  try {
    if (process.platform !== 'linux') throw new Error(`needs Linux (this is ${process.platform})`);
    loadKoffi();
    const self = koffi.load(null as unknown as string); // the running process: node and the libuv it exports
    // Handles are passed as integers (uintptr_t): memory of ours, never copied or pinned by koffi.
    const PollCb = koffi.proto('void splitwan_uv_poll_cb(uintptr_t handle, int status, int events)');
    const CloseCb = koffi.proto('void splitwan_uv_close_cb(uintptr_t handle)');
    const defaultLoop = self.func('void *uv_default_loop()') as () => unknown;
    const handleSize = self.func('size_t uv_handle_size(int type)') as (t: number) => number;
    const u: Uv = {
      loop: defaultLoop(),
      handleSize: Number(handleSize(UV_POLL)),
      pollInit: self.func('int uv_poll_init(void *loop, uintptr_t handle, int fd)') as Uv['pollInit'],
      pollStart: self.func('int uv_poll_start(uintptr_t handle, int events, splitwan_uv_poll_cb *cb)') as Uv['pollStart'],
      pollStop: self.func('int uv_poll_stop(uintptr_t handle)') as Uv['pollStop'],
      close: self.func('void uv_close(uintptr_t handle, splitwan_uv_close_cb *cb)') as Uv['close'],
      strerror: self.func('const char *uv_strerror(int err)') as Uv['strerror'],
      // One callback of each kind for every handle, registered once for the
      // process's life: dispatch is by the handle's address.
      pollCb: koffi.register((handle: number | bigint, status: number, events: number) => watches.get(Number(handle))?.ready(status, events), koffi.pointer(PollCb)),
      closeCb: koffi.register((handle: number | bigint) => {
        const done = closing.get(Number(handle));
        closing.delete(Number(handle));
        done?.();
      }, koffi.pointer(CloseCb)),
    };
    if (!(u.handleSize > 0)) throw new Error('uv_handle_size(UV_POLL) is 0');
    uv = u;
    return u;
  } catch (e) {
    unavailable = new Error(`libuv poll handles unavailable through koffi: ${(e as Error).message}`);
    throw unavailable;
  }
}

let settling = false;
const settled = (): void => {
  settling = false;
};
/**
 * libuv calls the callback outside any of Node's callback scopes, and it is
 * closing one that runs process.nextTick callbacks and promise reactions.
 * koffi's callback trampoline ran them promptly where measured here, but
 * that is its implementation's business, and the proxy's splice engine saw
 * reactions wait for whatever callback came next (a timer, another socket:
 * milliseconds or more on an idle process). An immediate is such a scope,
 * in this same turn of the loop (its check phase): one per turn at most.
 */
function settleSoon(): void {
  if (settling) return;
  settling = true;
  setImmediate(settled);
}

/** Why watchFd cannot work in this process (not Linux, koffi does not load, libuv's symbols are not exported), or null when it can. */
export function fdWatchProblem(): string | null {
  try {
    load();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

class Watch implements FdWatch {
  private readonly mem: ReturnType<typeof koffi.alloc>;
  readonly addr: number;
  private closed = false;

  constructor(
    fd: number,
    private readonly cb: FdReady,
    private readonly onError: (e: Error) => void,
  ) {
    const u = load();
    this.mem = koffi.alloc('uint8', u.handleSize);
    this.addr = Number(koffi.address(this.mem));
    const r = u.pollInit(u.loop, this.addr, fd);
    if (r !== 0) {
      koffi.free(this.mem);
      throw Object.assign(new Error(`uv_poll_init(fd ${fd}): ${u.strerror(r)}`), { code: 'SPLITWAN_FD_WATCH' });
    }
    watches.set(this.addr, this);
  }

  ready(status: number, events: number): void {
    try {
      this.cb(status, events);
    } catch (e) {
      this.onError(e as Error);
    }
    settleSoon();
  }

  set(events: number): void {
    if (this.closed) return;
    const u = load();
    const r = events === 0 ? u.pollStop(this.addr) : u.pollStart(this.addr, events, u.pollCb);
    if (r !== 0) throw Object.assign(new Error(`uv_poll_start: ${u.strerror(r)}`), { code: 'SPLITWAN_FD_WATCH' });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    const u = load();
    watches.delete(this.addr);
    return new Promise((resolve) => {
      closing.set(this.addr, () => {
        koffi.free(this.mem);
        resolve();
      });
      u.close(this.addr, u.closeCb); // stops the poll too; the callback runs on a later loop turn
    });
  }
}

/** Watches `fd` for `events` (0: made but not started); throws (code SPLITWAN_FD_WATCH) when libuv refuses it. */
export function watchFd(fd: number, events: number, onReady: FdReady, onError: (e: Error) => void): FdWatch {
  const w = new Watch(fd, onReady, onError);
  if (events !== 0) {
    try {
      w.set(events);
    } catch (e) {
      void w.close();
      throw e;
    }
  }
  return w;
}
