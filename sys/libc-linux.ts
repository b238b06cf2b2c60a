// The one place the C library is loaded for koffi bindings (resolver UDP,
// proxy accept/splice/epoll, marked sockets, nfnetlink). glibc names it
// libc.so.6; musl (OpenWrt, Alpine) has one file that is both the loader and
// libc, under an architecture-specific name. Each module declares its own
// functions on the library this returns.
import { loadKoffi, type KoffiLib } from './koffi-linux.js';
import { arch } from 'node:process';

/** musl's libc for the architectures koffi ships musl builds for, and the generic names. */
const MUSL_NAMES: Readonly<Record<string, string>> = { x64: 'x86_64', arm64: 'aarch64', arm: 'armhf', ia32: 'i386', riscv64: 'riscv64' };

export function libcCandidates(a: string = arch): string[] {
  const musl = MUSL_NAMES[a];
  return ['libc.so.6', ...(musl ? [`libc.musl-${musl}.so.1`, `/lib/ld-musl-${musl}.so.1`] : []), 'libc.so'];
}

let loaded: KoffiLib | null = null;
let failure: Error | null = null;

/**
 * The C library, loaded once; throws (the same error every time) when none
 * of the candidates loads, naming what was tried, so a fast path can fall
 * back and say why.
 */
export function loadLibc(): KoffiLib {
  if (loaded) return loaded;
  if (failure) throw failure;
  const koffi = loadKoffi(); // throws where koffi has no build: that is the reason then
  const tried: string[] = [];
  for (const name of libcCandidates()) {
    try {
      loaded = koffi.load(name);
      return loaded;
    } catch (e) {
      tried.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  failure = Object.assign(new Error(`no C library could be loaded (${tried.join('; ')})`), { code: 'SPLITWAN_NATIVE_LIBC' });
  throw failure;
}
