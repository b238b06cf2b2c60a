// The libuv fd watch (sys/fd-watch-linux.ts) on a real pipe: the contract the
// resolver's UDP, the proxy's accept path and the splice engine rely on, run
// by `npm run test:arch` under each architecture (uv_poll_t is made through
// koffi: its size, the event bits and the callback's arguments are the
// running ABI's).
import { afterEach, describe, expect, it } from 'vitest';
import { loadKoffi } from '../../sys/koffi-linux.js';
import { READABLE, watchFd, WRITABLE, type FdWatch } from '../../sys/fd-watch-linux.js';
import { loadLibc } from '../../sys/libc-linux.js';
import { skipNative } from '../helpers/native.js';

// Where koffi has a build, the watch must load: a failure there fails these tests.
const available = process.platform === 'linux' && skipNative('test/integration/fd-watch.test.ts (the libuv fd watch through koffi)') === null;

interface Pipe {
  r: number;
  w: number;
}

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

function libc(): { pipe2(fds: Int32Array, flags: number): number; write(fd: number, b: Buffer, n: number): number; read(fd: number, b: Buffer, n: number): number; close(fd: number): number } {
  const l = loadLibc();
  return {
    pipe2: l.func('int pipe2(_Out_ int *, int)') as never,
    write: l.func('intptr_t write(int, const void *, size_t)') as never,
    read: l.func('intptr_t read(int, _Out_ void *, size_t)') as never,
    close: l.func('int close(int)') as never,
  };
}

const open: number[] = [];
const watches: FdWatch[] = [];

function pipe(): Pipe {
  const fds = new Int32Array(2);
  expect(libc().pipe2(fds, O_NONBLOCK | O_CLOEXEC), `pipe2: errno ${loadKoffi().errno()}`).toBe(0);
  open.push(fds[0]!, fds[1]!);
  return { r: fds[0]!, w: fds[1]! };
}

/** Resolves with the first `n` (status, events) the watch reports, or what came within `ms`. */
function events(fd: number, mask: number, n: number, ms = 5000): { seen: Promise<[number, number][]>; watch: FdWatch } {
  const got: [number, number][] = [];
  let done!: (v: [number, number][]) => void;
  const seen = new Promise<[number, number][]>((r) => (done = r));
  const timer = setTimeout(() => done(got), ms);
  const watch = watchFd(
    fd,
    mask,
    (status, ev) => {
      got.push([status, ev]);
      if (got.length >= n) {
        clearTimeout(timer);
        done(got);
      }
    },
    (e) => {
      throw e;
    },
  );
  watches.push(watch);
  return { seen, watch };
}

afterEach(async () => {
  // Every watch is closed (libuv lets go) before its fd is.
  await Promise.all(watches.splice(0).map((w) => w.close()));
  for (const fd of open.splice(0)) libc().close(fd);
});

describe.skipIf(!available)('libuv fd watch through koffi', () => {
  it('a pipe becomes readable when a byte is written: status 0, READABLE; not before', async () => {
    const p = pipe();
    const got: [number, number][] = [];
    const w = watchFd(p.r, READABLE, (status, ev) => got.push([status, ev]), (e) => {
      throw e;
    });
    watches.push(w);
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toEqual([]); // nothing written yet: no readiness
    expect(libc().write(p.w, Buffer.from('x'), 1)).toBe(1);
    await expect.poll(() => got.length, { timeout: 5000 }).toBeGreaterThan(0);
    expect(got[0]).toEqual([0, READABLE]);
  });

  it('the write end of an empty pipe is writable at once', async () => {
    const p = pipe();
    const { seen } = events(p.w, WRITABLE, 1);
    expect(await seen).toEqual([[0, WRITABLE]]);
  });

  it('set(0) stops the callbacks, set(READABLE) brings them back (level-triggered: unread bytes report again)', async () => {
    const p = pipe();
    let count = 0;
    const w = watchFd(p.r, READABLE, () => count++, (e) => {
      throw e;
    });
    watches.push(w);
    libc().write(p.w, Buffer.from('y'), 1);
    await expect.poll(() => count, { timeout: 5000 }).toBeGreaterThan(0);
    w.set(0);
    await new Promise((r) => setTimeout(r, 50));
    const stopped = count;
    await new Promise((r) => setTimeout(r, 200));
    expect(count).toBe(stopped);
    w.set(READABLE);
    await expect.poll(() => count, { timeout: 5000 }).toBeGreaterThan(stopped);
    const b = Buffer.alloc(8);
    expect(libc().read(p.r, b, 8)).toBe(1);
    expect(b[0]).toBe('y'.charCodeAt(0));
  });

  it('close() resolves once libuv let go: the fd can be closed then, and no callback comes after', async () => {
    const p = pipe();
    let count = 0;
    const w = watchFd(p.r, READABLE, () => count++, (e) => {
      throw e;
    });
    await w.close();
    libc().write(p.w, Buffer.from('z'), 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(count).toBe(0);
    await w.close(); // twice is fine
  });

  it('a callback that throws goes to onError; the watch keeps working', async () => {
    const p = pipe();
    const errors: string[] = [];
    let calls = 0;
    const w = watchFd(
      p.r,
      READABLE,
      () => {
        calls++;
        if (calls === 1) throw new Error('boom');
      },
      (e) => errors.push(e.message),
    );
    watches.push(w);
    libc().write(p.w, Buffer.from('a'), 1);
    await expect.poll(() => calls, { timeout: 5000 }).toBeGreaterThan(1);
    expect(errors).toEqual(['boom']);
  });

  it('an fd that is not open is refused with SPLITWAN_FD_WATCH', () => {
    expect(() => watchFd(100_000, READABLE, () => undefined, () => undefined)).toThrow(expect.objectContaining({ code: 'SPLITWAN_FD_WATCH' }));
  });
});
