// Drops the pages of read-only file mappings from the process's memory
// (sys/resident-trim.ts: which, and why nothing is lost). madvise(2) through
// koffi; without native code nothing is trimmed (the daemon runs the same,
// with start-up's pages resident).
import { readFileSync } from 'node:fs';
import { loadLibc } from './libc-linux.js';
import type { KoffiFunction } from './koffi-linux.js';
import { runsNatively, smapsCountsCopies, trimmableMappings } from './resident-trim.js';

/** linux/mman-common.h: the same value on every architecture (the generic and the MIPS/PA-RISC headers agree). */
const MADV_DONTNEED = 4;

export interface ResidentTrim {
  /** Mappings trimmed, and the kB they had resident. */
  mappings: number;
  trimmedKb: number;
  /** The process's RSS before and after, kB. */
  rssBeforeKb: number;
  rssAfterKb: number;
}

let madvise: KoffiFunction | null = null;

function rssKb(): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
}

/** Trims now; throws when it cannot (no koffi, no C library, no /proc). */
export function trimResident(): ResidentTrim {
  madvise ??= loadLibc().func('int madvise(uintptr_t addr, size_t length, int advice)');
  let kernelArch: string | null = null;
  try {
    kernelArch = readFileSync('/proc/sys/kernel/arch', 'utf8').trim();
  } catch {
    // an older kernel: nothing to compare (qemu-user is a test bench's, not a router's)
  }
  if (!runsNatively(kernelArch, process.arch)) throw new Error(`emulated (Node for ${process.arch} on a ${kernelArch} kernel): madvise does not do there what the kernel does; nothing trimmed`);
  const smaps = readFileSync('/proc/self/smaps', 'utf8');
  if (!smapsCountsCopies(smaps)) throw new Error('/proc/self/smaps counts no private copy in any writable file mapping: not trusted to trim by');
  const rssBeforeKb = rssKb();
  let mappings = 0;
  let trimmedKb = 0;
  for (const m of trimmableMappings(smaps)) {
    // EINVAL/ENOMEM: the mapping changed since smaps was read (a library unloaded): skipped.
    if ((madvise(m.start, m.end - m.start, MADV_DONTNEED) as number) !== 0) continue;
    mappings++;
    trimmedKb += m.rssKb;
  }
  return { mappings, trimmedKb, rssBeforeKb, rssAfterKb: rssKb() };
}
