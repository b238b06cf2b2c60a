// Which of the process's mappings can leave memory and come back unchanged
// (issue 17: a router's RSS). Pure: parses /proc/self/smaps text.
//
// Why: the node binary is ~100 MB, and start-up touches ~40 MB of it
// (V8's snapshot, the builtins, ICU, the parsers of the config and of a
// 100k-name list) that stay mapped for the daemon's life although the
// running daemon uses a fraction of it. The kernel would drop those pages
// under memory pressure; until then they count in RSS. A read-only private
// mapping of a file whose pages are all the file's own (no copy-on-write
// copies: smaps' Anonymous is 0) loses nothing to MADV_DONTNEED: a page the
// daemon touches again is read back from the page cache (a minor fault).
//
// Never a writable mapping, nor one with private copies (RELRO: the GOT the
// loader relocated, then made read-only; DONTNEED would restore the file's
// unrelocated bytes), nor anything not backed by a file ([vdso], the heap,
// V8's code space).
//
// Not under an emulator: qemu-user turns some private file mappings into
// anonymous memory filled from the file, and passes MADV_DONTNEED through;
// trimming there killed the process ("stack smashing detected", test:arch
// armhf). The kernel's own architecture (/proc/sys/kernel/arch, which qemu
// does not make up, unlike uname) must be the family Node was built for.
// Two more guards do not take smaps' page counts alone: a read-only mapping
// that ends where a writable one of the same file begins is RELRO by the ELF
// loader's layout, and is left whatever smaps says; and smaps that counts no
// private copy in any writable file mapping (a real kernel always shows the
// written .data of the executable) is not believed: nothing is trimmed.

export interface TrimmableMapping {
  /** Start and end addresses (end exclusive). */
  start: number;
  end: number;
  path: string;
  /** Resident now, kB. */
  rssKb: number;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/;

interface Mapping extends TrimmableMapping {
  perms: string;
  anonKb: number;
  dirtyKb: number;
}

function parseSmaps(smaps: string): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | null = null;
  for (const line of smaps.split('\n')) {
    const h = HEADER.exec(line);
    if (h !== null) {
      // User-space addresses fit a double exactly (under 2^53 on every Linux ABI).
      cur = { start: parseInt(h[1]!, 16), end: parseInt(h[2]!, 16), perms: h[3]!, path: h[4]!, rssKb: 0, anonKb: 0, dirtyKb: 0 };
      out.push(cur);
      continue;
    }
    if (cur === null) continue;
    const f = /^(Rss|Anonymous|Private_Dirty):\s+(\d+) kB/.exec(line);
    if (f === null) continue;
    const kb = Number(f[2]);
    if (f[1] === 'Rss') cur.rssKb = kb;
    else if (f[1] === 'Anonymous') cur.anonKb = kb;
    else cur.dirtyKb = kb;
  }
  return out;
}

/** A file's path is absolute; "(deleted)" still names a file, its pages are still its own. */
const isFile = (m: Mapping): boolean => m.path.startsWith('/');

/**
 * Does this smaps count private copies? A real kernel shows them in the written, writable mappings of
 * files (the executable's .data at least); an emulator's made-up smaps shows none anywhere.
 */
export function smapsCountsCopies(smaps: string): boolean {
  return countsCopies(parseSmaps(smaps));
}

const countsCopies = (maps: readonly Mapping[]): boolean => maps.some((m) => isFile(m) && m.perms[1] === 'w' && m.perms[3] === 'p' && m.anonKb > 0);

/** The mappings of `smaps` that MADV_DONTNEED may drop without losing data, with pages resident now. */
export function trimmableMappings(smaps: string): TrimmableMapping[] {
  const maps = parseSmaps(smaps);
  if (!countsCopies(maps)) return [];
  return maps
    .filter((m, i) => {
      if (!isFile(m) || m.perms[1] !== '-' || m.perms[3] !== 'p' || m.anonKb !== 0 || m.dirtyKb !== 0 || m.rssKb === 0) return false;
      // RELRO: read-only, right before the same file's writable segment (the ELF loader's layout).
      const next = maps[i + 1];
      return !(next !== undefined && next.start === m.end && next.path === m.path && next.perms[1] === 'w');
    })
    .map(({ start, end, path, rssKb }) => ({ start, end, path, rssKb }));
}

/** The architecture family of a kernel's machine name or of Node's process.arch (arm and aarch64 are one: a 32-bit userland on a 64-bit kernel). */
function family(arch: string): string {
  if (/^(x86_64|x64|ia32|i[3-6]86|amd64)$/.test(arch)) return 'x86';
  if (/^(arm|aarch64|arm64)/.test(arch)) return 'arm';
  if (/^(ppc|powerpc)/.test(arch)) return 'ppc';
  if (/^loong/.test(arch)) return 'loongarch';
  if (/^s390/.test(arch)) return 's390';
  return arch.replace(/(64|32)?(el|le|be)?$/, ''); // mips64el -> mips, riscv64 -> riscv
}

/**
 * Does this process run on its own architecture's kernel? false: an emulator runs it (qemu-user: an arm
 * Node on an x86_64 kernel). `kernelArch` null (no /proc/sys/kernel/arch: an older kernel): taken as native.
 */
export function runsNatively(kernelArch: string | null, nodeArch: string): boolean {
  if (kernelArch === null) return true;
  return family(kernelArch.trim()) === family(nodeArch);
}
