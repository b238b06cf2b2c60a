// Which entries of the temp directory the key sweep may remove
// (daemon/tunnel/key-dirs-linux.ts staleKeyDir): the decision alone, on facts.
// The sweep itself, on a real temp directory, is test/integration/key-sweep.test.ts.
import { describe, expect, it } from 'vitest';
import { STALE_MS, staleKeyDir, type KeyDirFacts } from '../../daemon/tunnel/key-dirs-linux.js';

const NOW = 1_700_000_000_000;
const ME = { ownUid: 0, ownPid: 4000, now: NOW, alive: (pid: number) => pid === 4000 || pid === 5000 };
const dir = (over: Partial<KeyDirFacts>): KeyDirFacts => ({ name: 'splitwan-wg-3000-Ab12Cd', isDirectory: true, uid: 0, mode: 0o40700, mtimeMs: NOW - 1000, ...over });

describe('staleKeyDir', () => {
  it('removes a directory whose maker is gone, at once', () => {
    expect(staleKeyDir(dir({}), ME)).toBe('its process 3000 is gone');
  });

  it('keeps one of a live process until it is far older than a setconf, and never its own', () => {
    expect(staleKeyDir(dir({ name: 'splitwan-wg-5000-Ab12Cd' }), ME)).toBeNull();
    expect(staleKeyDir(dir({ name: 'splitwan-wg-5000-Ab12Cd', mtimeMs: NOW - STALE_MS - 1 }), ME)).toMatch(/^older than 60 s/);
    expect(staleKeyDir(dir({ name: 'splitwan-wg-4000-Ab12Cd', mtimeMs: NOW - 10 * STALE_MS }), ME)).toBeNull();
  });

  it('takes the older versions\' directories (no pid in the name) only once they are old', () => {
    expect(staleKeyDir(dir({ name: 'splitwan-wg-Ab12Cd' }), ME)).toBeNull();
    expect(staleKeyDir(dir({ name: 'splitwan-wg-Ab12Cd', mtimeMs: NOW - STALE_MS - 1 }), ME)).toBe('made by an earlier version, unused since');
  });

  it('leaves alone what is not exactly one of its own directories', () => {
    for (const over of [
      { isDirectory: false }, // a file, or a symlink (lstat)
      { uid: 1000 }, // someone else's
      { mode: 0o40755 }, // not as mkdtemp makes it
      { mode: 0o40710 },
      { name: 'splitwan-wg-3000-Ab12' }, // not mkdtemp's six characters
      { name: 'splitwan-wg-3000-Ab12Cd-x' },
      { name: 'splitwan-wgx-3000-Ab12Cd' },
      { name: 'splitwan-cli-Ab12Cd' },
      { name: 'other' },
    ] satisfies Partial<KeyDirFacts>[]) {
      expect(staleKeyDir(dir(over), ME), JSON.stringify(over)).toBeNull();
    }
  });
});
