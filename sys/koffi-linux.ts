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
  if (process.env.SPLITWAN_NATIVE === 'off') {
    failure = Object.assign(new Error('native code is off (SPLITWAN_NATIVE=off)'), { code: 'SPLITWAN_NATIVE_KOFFI' });
    throw failure;
  }
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
    return koffi;
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    failure = Object.assign(new Error(`koffi does not load on ${process.platform}-${process.arch}: ${why}`), { code: 'SPLITWAN_NATIVE_KOFFI' });
    throw failure;
  }
}

/** The C types of sys/c-abi.ts as koffi names them. */
const KOFFI_TYPE: Readonly<Record<string, string>> = { ptr: 'void *', size_t: 'size_t', int: 'int', uint32: 'uint32', uint64: 'uint64', uint16: 'uint16', uint8: 'uint8' };

type KoffiType = ReturnType<Koffi['struct']>;

/** A struct's members for koffi: a C type name (sys/c-abi.ts) or a nested struct's members. */
export type KoffiMembers = readonly (readonly [string, string | KoffiMembers])[];

function koffiType(k: Koffi, members: KoffiMembers, packed: boolean): KoffiType {
  const def: Record<string, string | KoffiType> = {};
  for (const [m, t] of members) def[m] = typeof t === 'string' ? (KOFFI_TYPE[t] ?? t) : koffiType(k, t, false);
  return packed ? k.pack(def) : k.struct(def);
}

/**
 * Where koffi's own layout of a struct (koffi.struct, or koffi.pack when
 * `packed`) disagrees with the one computed in sys/c-abi.ts: null when size
 * and every offset agree, else what differs. A second opinion, from the C
 * compiler's rules as koffi implements them for this platform.
 */
export function koffiLayoutProblem(name: string, members: KoffiMembers, computed: { size: number; offset: Readonly<Record<string, number>> }, packed = false): string | null {
  const k = loadKoffi();
  const type = koffiType(k, members, packed);
  const diffs: string[] = [];
  if (k.sizeof(type) !== computed.size) diffs.push(`size ${k.sizeof(type)} (computed ${computed.size})`);
  for (const [m] of members) if (k.offsetof(type, m) !== computed.offset[m]) diffs.push(`${m} at ${k.offsetof(type, m)} (computed ${computed.offset[m]})`);
  return diffs.length ? `struct ${name} on ${process.arch}: koffi says ${diffs.join(', ')}` : null;
}
