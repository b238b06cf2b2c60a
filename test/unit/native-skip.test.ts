// test/helpers/native.ts: when the native contract tests skip (by design:
// koffi ships no build for the platform, or SPLITWAN_NATIVE=off) and when
// they must run (a build exists: a failure to load is then their failure).
import { describe, expect, it } from 'vitest';
import { koffiBuildName, nativeUnavailable } from '../helpers/native.js';

describe('the native tests\' skip rule', () => {
  it('names koffi\'s prebuilt directory as koffi does', () => {
    expect(koffiBuildName('linux', 'x64', true)).toBe('linux_x64');
    expect(koffiBuildName('linux', 'arm', true)).toBe('linux_armhf');
    expect(koffiBuildName('linux', 'riscv64', true)).toBe('linux_riscv64d');
    expect(koffiBuildName('linux', 'arm64', false)).toBe('musl_arm64');
    expect(koffiBuildName('linux', 's390x', true)).toBe('linux_s390x');
  });

  it('SPLITWAN_NATIVE=off skips; on a platform koffi builds for, nothing does', () => {
    expect(nativeUnavailable({ SPLITWAN_NATIVE: 'off' })).toBe('SPLITWAN_NATIVE=off');
    const why = nativeUnavailable({});
    if (['x64', 'arm64', 'arm'].includes(process.arch)) expect(why).toBeNull();
    else expect(why).toMatch(/^koffi ships no build for linux_/);
  });
});
