// Which mappings may leave memory (sys/resident-trim.ts): only what comes back unchanged from its file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runsNatively, smapsCountsCopies, trimmableMappings } from '../../sys/resident-trim.js';

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

describe('smaps that counts no private copies (not what a real kernel shows)', () => {
  // The same mappings with every copy count made 0.
  const zeroed = smaps.replace(/^(Anonymous|Private_Dirty):\s+\d+ kB$/gm, '$1:              0 kB');

  it('is not believed: nothing is trimmable', () => {
    expect(smapsCountsCopies(smaps)).toBe(true);
    expect(smapsCountsCopies(zeroed)).toBe(false);
    expect(trimmableMappings(zeroed)).toEqual([]);
  });

  it('RELRO is left by its place (read-only, right before the same file\'s writable segment) whatever its counts say', () => {
    // Believed (the executable's .data shows its copies), but RELRO's own counts zeroed.
    const relroZeroed = smaps.replace(/(0563a000-0563e000 r--p[^\n]*\n(?:[^\n]*\n){2}Private_Clean:[^\n]*\n)Private_Dirty:\s+8 kB\nAnonymous:\s+8 kB/, '$1Private_Dirty:         0 kB\nAnonymous:             0 kB');
    expect(relroZeroed).not.toBe(smaps);
    expect(trimmableMappings(relroZeroed).find((m) => m.start === 0x563a000)).toBeUndefined();
    expect(trimmableMappings(relroZeroed)).toHaveLength(5);
  });
});

describe('runsNatively (an emulator is told by the kernel\'s own architecture, which qemu-user does not make up)', () => {
  it('the same family is native: a 32-bit userland on a 64-bit kernel too', () => {
    for (const [k, n] of [['x86_64', 'x64'], ['x86_64', 'ia32'], ['aarch64', 'arm64'], ['aarch64', 'arm'], ['armv7l', 'arm'], ['s390x', 's390x'], ['mips', 'mips'], ['mips64', 'mipsel'], ['riscv64', 'riscv64'], ['ppc64le', 'ppc64']] as const) {
      expect(runsNatively(k, n), `${n} on ${k}`).toBe(true);
    }
  });

  it('another family is an emulator (test:arch: arm, arm64 and s390x Node on x86_64)', () => {
    for (const n of ['arm', 'arm64', 's390x']) expect(runsNatively('x86_64', n)).toBe(false);
    expect(runsNatively('aarch64', 'x64')).toBe(false);
  });

  it('no /proc/sys/kernel/arch (an older kernel): taken as native', () => {
    expect(runsNatively(null, 'arm')).toBe(true);
  });
});
