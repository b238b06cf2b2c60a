// The tests of a native fast path (recvmmsg, splice, raw accept, the libuv
// fd watch: koffi and the C library) cannot run where koffi ships no build
// for the platform (s390x, standing in for big-endian MIPS, under
// `npm run test:arch`), nor with SPLITWAN_NATIVE=off: there they skip, and
// say so loudly with the reason. Where koffi does ship a build, a native
// path that does not load is the test's failure, never a skip.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** koffi's name for this platform's prebuilt directory (node_modules/koffi/build/koffi/<name>). */
export function koffiBuildName(platform: string = process.platform, arch: string = process.arch, glibc: boolean = isGlibc()): string {
  const a = ({ arm: 'armhf', riscv64: 'riscv64d' } as Record<string, string>)[arch] ?? arch;
  return `${platform === 'linux' && !glibc ? 'musl' : platform}_${a}`;
}

function isGlibc(): boolean {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime !== undefined;
}

/** Why this process cannot run native code by design (not by a defect), or null when it must. */
export function nativeUnavailable(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.SPLITWAN_NATIVE === 'off') return 'SPLITWAN_NATIVE=off';
  const dir = join(dirname(createRequire(import.meta.url).resolve('koffi/package.json')), 'build', 'koffi', koffiBuildName());
  return existsSync(dir) ? null : `koffi ships no build for ${koffiBuildName()} (${process.arch}, ${process.platform}): the Node fallbacks run there instead`;
}

/**
 * Why the daemon a test starts cannot run native code, or null: this
 * process's reason, or that the emulated daemon's Node has no koffi build
 * (`npm run test:arch -- s390x`: SPLITWAN_TEST_NODE_NATIVE=0).
 */
export function daemonNativeUnavailable(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.SPLITWAN_TEST_NODE && env.SPLITWAN_TEST_NODE_NATIVE === '0') return `the daemon's Node (${env.SPLITWAN_TEST_NODE}) has no koffi build`;
  return nativeUnavailable(env);
}

/** nativeUnavailable(), said once as a SKIPPED line naming `what` when it is not null. */
export function skipNative(what: string): string | null {
  const why = nativeUnavailable();
  if (why !== null) console.warn(`SKIPPED ${what}: ${why}`);
  return why;
}
