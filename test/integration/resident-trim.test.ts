// Trimming read-only file pages (sys/resident-trim-linux.ts) in a real Node process: RSS falls by the
// start-up pages of the node binary, and the process runs on (its code comes back from the page cache;
// the loader's relocated tables, which it must not lose, are left alone).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { budget } from '../helpers/emulation.js';

const EMULATED = process.env.SPLITWAN_ARCH_POOL === 'emulated';
const TRIM = join(import.meta.dirname, '..', '..', 'dist', 'sys', 'resident-trim-linux.js');

// Touches what a daemon's start-up touches (a big Map, JSON, Intl, a RegExp), trims, then works again
// through the same and other code: a dropped page that was not the file's own would crash it or corrupt this.
const CHILD = `
import { readFileSync } from 'node:fs';
import { trimResident } from ${JSON.stringify(TRIM)};
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
const work = (n) => { const m = new Map(); for (let i = 0; i < n; i++) m.set('k' + i, { i }); let s = 0; for (const v of m.values()) s += v.i; return s + JSON.stringify([...m.keys()].slice(0, 100)).length + new Intl.NumberFormat('de').format(1234.5).length + (/^k(\\d+)$/.exec('k42')?.[1]?.length ?? 0); };
const want = work(100000);
let t;
try {
  t = trimResident();
} catch (e) {
  t = { error: e.message };
}
const again = work(100000);
process.stdout.write(JSON.stringify({ ...t, same: again === want, later: rss() }));
`;

describe('trimResident (madvise of read-only file mappings)', () => {
  it('drops the binary\'s resident pages, and the process works on with the same results', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', CHILD], { encoding: 'utf8', timeout: budget(30_000) });
    const r = JSON.parse(out) as { mappings: number; trimmedKb: number; rssBeforeKb: number; rssAfterKb: number; same: boolean; later: number; error?: string };
    expect(r.same).toBe(true);
    if (EMULATED) {
      // qemu-user passes madvise through onto mappings it made anonymous: trimming there killed the child
      // ("stack smashing detected"). The kernel's own architecture tells the emulator: nothing is trimmed.
      console.warn(`NOTE (resident-trim): emulated: ${r.error ?? 'trimmed'}`);
      expect(r.error).toMatch(/^emulated/);
      return;
    }
    expect(r.error).toBeUndefined();
    expect(r.mappings).toBeGreaterThan(0);
    // The binary alone had tens of MB resident after start-up; most of it is gone, and the work after brings back only what it runs.
    expect(r.trimmedKb).toBeGreaterThan(20_000);
    expect(r.rssAfterKb).toBeLessThan(r.rssBeforeKb - 15_000);
    expect(r.later).toBeLessThan(r.rssBeforeKb);
  });
});
