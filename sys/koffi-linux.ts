// koffi, the library splitwan calls C through, is a native addon with builds
// for some platforms only (Linux x64, arm64, armhf, ia32, riscv64, loong64;
// musl x64 and arm64). Imported statically, a missing build stopped the whole
// daemon at import (a MIPS router, an armhf musl one), although every fast
// path built on it has a Node fallback. So it is loaded here, on first use,
// and a failure is one more reason for a fast path to fall back (and say so).
//
// `koffi` is a live binding: set by the first loadKoffi(), read by the
// modules that load it (through loadLibc(), fd-watch's load(), libnft's lib())
// before any use, at no cost per call.
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';

export type Koffi = typeof KoffiModule;
export type KoffiLib = KoffiModule.IKoffiLib;
export type KoffiFunction = KoffiModule.KoffiFunction;

/** The koffi module, once loadKoffi() has succeeded. */
export let koffi: Koffi;
let failure: Error | null = null;

/** Loads koffi (once); throws, the same error each time (code SPLITWAN_NATIVE_KOFFI), where it has no build. */
export function loadKoffi(): Koffi {
  if (koffi !== undefined) return koffi;
  if (failure !== null) throw failure;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
    return koffi;
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    failure = Object.assign(new Error(`koffi does not load on ${process.platform}-${process.arch}: ${why}`), { code: 'SPLITWAN_NATIVE_KOFFI' });
    throw failure;
  }
}
