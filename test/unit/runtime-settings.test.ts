// The daemon's memory settings (daemon/runtime-settings.ts): what the start
// line says is missing when `splitwan run` was started without them.
import { describe, expect, it } from 'vitest';
import { DAEMON_ENV, DAEMON_NODE_FLAGS, missingRuntimeSettings } from '../../daemon/runtime-settings.js';

describe('missingRuntimeSettings', () => {
  const env = Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`);

  it('started as the service files start it: nothing missing', () => {
    expect(missingRuntimeSettings([...DAEMON_NODE_FLAGS], { ...DAEMON_ENV })).toEqual([]);
  });

  it('the flags may come through NODE_OPTIONS too', () => {
    expect(missingRuntimeSettings([], { ...DAEMON_ENV, NODE_OPTIONS: `--enable-source-maps ${DAEMON_NODE_FLAGS.join(' ')}` })).toEqual([]);
  });

  it('started by hand: each missing flag and variable is named', () => {
    expect(missingRuntimeSettings([], {})).toEqual([...DAEMON_NODE_FLAGS, ...env]);
    expect(missingRuntimeSettings(['--max-semi-space-size=16'], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=8' })).toEqual([...DAEMON_NODE_FLAGS, ...env]);
  });
});
