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

export interface TrimmableMapping {
  /** Start and end addresses (end exclusive). */
  start: number;
  end: number;
  path: string;
  /** Resident now, kB. */
  rssKb: number;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/;

/** The mappings of `smaps` that MADV_DONTNEED may drop without losing data, with pages resident now. */
export function trimmableMappings(smaps: string): TrimmableMapping[] {
  const out: TrimmableMapping[] = [];
  let cur: (TrimmableMapping & { perms: string; anonKb: number; dirtyKb: number }) | null = null;
  const done = (): void => {
    if (cur === null) return;
    // A file's path is absolute; "(deleted)" still names a file, its pages are still its own.
    const fileBacked = cur.path.startsWith('/');
    if (fileBacked && cur.perms[1] === '-' && cur.perms[3] === 'p' && cur.anonKb === 0 && cur.dirtyKb === 0 && cur.rssKb > 0) {
      out.push({ start: cur.start, end: cur.end, path: cur.path, rssKb: cur.rssKb });
    }
  };
  for (const line of smaps.split('\n')) {
    const h = HEADER.exec(line);
    if (h !== null) {
      done();
      // User-space addresses fit a double exactly (under 2^53 on every Linux ABI).
      cur = { start: parseInt(h[1]!, 16), end: parseInt(h[2]!, 16), perms: h[3]!, path: h[4]!, rssKb: 0, anonKb: 0, dirtyKb: 0 };
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
  done();
  return out;
}
