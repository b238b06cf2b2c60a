// Which C library sys/libc-linux.ts loads (glibc's libc.so.6; musl's, under
// its architecture's names, on OpenWrt and Alpine), and what happens when
// none loads: the error names every name tried, and the fast paths fall back
// (the resolver to dgram, the proxy to Node's pipe()). koffi is replaced by a
// fake whose load() succeeds only for the names a test gives: the real one
// would find this machine's glibc. test/integration/libc-musl.test.ts checks
// the same names against a real musl loader.
import { beforeEach, describe, expect, it, vi } from 'vitest';

/** The names the fake koffi.load() accepts; every other throws as dlopen would. */
let present = new Set<string>();
const tried: string[] = [];

// koffi is loaded on first use through sys/koffi-linux.ts (createRequire, which
// vi.mock('koffi') would not reach): that module is what is replaced.
vi.mock('../../sys/koffi-linux.js', () => {
  const load = (name: string): object => {
    tried.push(name);
    if (!present.has(name)) throw new Error(`Failed to load shared library: ${name}: cannot open shared object file: No such file or directory`);
    return {
      name,
      func: () => () => {
        throw new Error('the fake libc has no functions');
      },
    };
  };
  const koffi = { load, errno: () => 0 };
  return { koffi, loadKoffi: () => koffi };
});

beforeEach(() => {
  vi.resetModules(); // libc-linux.ts keeps what it loaded (or why not) per module instance
  present = new Set();
  tried.length = 0;
});

describe('libcCandidates', () => {
  it('glibc first, then musl under its names for the architecture, then the generic name', async () => {
    const { libcCandidates } = await import('../../sys/libc-linux.js');
    expect(libcCandidates('x64')).toEqual(['libc.so.6', 'libc.musl-x86_64.so.1', '/lib/ld-musl-x86_64.so.1', 'libc.so']);
    expect(libcCandidates('arm64')).toEqual(['libc.so.6', 'libc.musl-aarch64.so.1', '/lib/ld-musl-aarch64.so.1', 'libc.so']);
    // OpenWrt's armv7 targets are hard-float: ld-musl-armhf.so.1.
    expect(libcCandidates('arm')).toEqual(['libc.so.6', 'libc.musl-armhf.so.1', '/lib/ld-musl-armhf.so.1', 'libc.so']);
  });

  it('an architecture without a musl name still ends with libc.so (musl answers that name with itself)', async () => {
    const { libcCandidates } = await import('../../sys/libc-linux.js');
    for (const a of ['mips', 'mipsel', 's390x', 'ppc64']) {
      const c = libcCandidates(a);
      expect(c[0]).toBe('libc.so.6');
      expect(c.at(-1)).toBe('libc.so');
    }
  });
});

describe('loadLibc', () => {
  it('glibc: libc.so.6, nothing else tried', async () => {
    present = new Set(['libc.so.6', 'libc.so']);
    const { loadLibc } = await import('../../sys/libc-linux.js');
    expect((loadLibc() as unknown as { name: string }).name).toBe('libc.so.6');
    expect(tried).toEqual(['libc.so.6']);
    loadLibc();
    expect(tried).toEqual(['libc.so.6']); // loaded once
  });

  it('musl (no libc.so.6): the next name that loads', async () => {
    present = new Set([`/lib/ld-musl-x86_64.so.1`, 'libc.so']);
    const { loadLibc, libcCandidates } = await import('../../sys/libc-linux.js');
    const want = libcCandidates().find((n) => present.has(n)) ?? 'libc.so';
    expect((loadLibc() as unknown as { name: string }).name).toBe(want);
    expect(tried[0]).toBe('libc.so.6');
  });

  it('none loads: SPLITWAN_NATIVE_LIBC naming every name tried and why, the same error every time, no second search', async () => {
    const { loadLibc, libcCandidates } = await import('../../sys/libc-linux.js');
    let first: unknown;
    try {
      loadLibc();
    } catch (e) {
      first = e;
    }
    expect(first).toMatchObject({ code: 'SPLITWAN_NATIVE_LIBC' });
    for (const n of libcCandidates()) expect((first as Error).message).toContain(`${n}: Failed to load shared library`);
    const n = tried.length;
    expect(() => loadLibc()).toThrow(first as Error);
    expect(tried.length).toBe(n);
  });

  it('none loads: the resolver falls back to dgram, the proxy to pipe(); nothing throws', async () => {
    const { defaultUdpTransport } = await import('../../dns/udp-mmsg-linux.js');
    const { dgramTransport } = await import('../../dns/udp.js');
    const { defaultSplicer } = await import('../../proxy/splice-linux.js');
    const { pipeSplicer } = await import('../../proxy/splice.js');
    const { rawAvailable } = await import('../../proxy/accept-linux.js');
    expect(defaultUdpTransport({})).toBe(dgramTransport);
    expect(defaultSplicer({})).toBe(pipeSplicer);
    // A splicer that takes fds, so only the missing libc can say no.
    expect(rawAvailable({ ...pipeSplicer, startFds: () => pipeSplicer.start(undefined as never, undefined as never, 0) })).toBe(false);
  });
});
