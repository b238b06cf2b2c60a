// Which mappings may leave memory (sys/resident-trim.ts): only what comes back unchanged from its file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { trimmableMappings } from '../../sys/resident-trim.js';

// The node binary's mappings as /proc/self/smaps showed them (x86-64, Node 20), fields cut to those read, plus
// an anonymous executable mapping (V8's code space), a shared file mapping and a deleted library.
const smaps = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'smaps', 'node-x64.smaps'), 'utf8');

describe('trimmableMappings', () => {
  const got = trimmableMappings(smaps);
  const at = (start: number) => got.find((m) => m.start === start);

  it("takes the binary's read-only private mappings whose pages are all the file's own", () => {
    expect(got.map((m) => [m.start.toString(16), m.end.toString(16), m.rssKb])).toEqual([
      ['400000', 'b6f000', 5948],
      ['b72000', '25fe000', 16628],
      ['2601000', '563a000', 7548],
      ['7f2f4de00000', '7f2f4df92000', 576], // the builtins V8 mapped again near its code
      ['7f2f52000000', '7f2f52008000', 32], // a deleted file's pages are still the file's
    ]);
    expect(at(0x400000)?.path).toBe('/usr/bin/node');
  });

  it('leaves RELRO (relocated, then read-only: its copies would go back to the unrelocated bytes)', () => {
    expect(at(0x563a000)).toBeUndefined();
  });

  it('leaves writable, anonymous, shared and special mappings, and those with nothing resident', () => {
    for (const a of [0x563e000, 0x1f667000, 0x7f2f50000000, 0x7f2f51000000, 0x7f2f54f6f000, 0x7ffd5befb000, 0x2600000]) expect(at(a)).toBeUndefined();
  });

  it('reads nothing from text that is not smaps', () => {
    expect(trimmableMappings('')).toEqual([]);
    expect(trimmableMappings('Rss: 100 kB\nnot a mapping\n')).toEqual([]);
  });
});
