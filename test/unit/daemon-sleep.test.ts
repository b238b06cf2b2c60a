// logind's PrepareForSleep wired into the composition root (issue 16): after
// the resume signal every gateway is probed at once (not at its next turn),
// and the watch ends with the daemon. Over fake OS adapters (test/helpers/fake-deps.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { gatewayMark } from '../../daemon/dataplane/plan.js';
import { configDir, fakeOs, type ConfigDir, type FakeOs } from '../helpers/fake-deps.js';
import { until } from '../helpers/daemon.js';
import { readFileSync, writeFileSync } from 'node:fs';

let cd: ConfigDir;
let os: FakeOs;
let d: Daemon;

beforeEach(async () => {
  cd = await configDir();
  // Rounds a minute apart: a round soon after the signal can only be the signal's doing.
  writeFileSync(cd.file, readFileSync(cd.file, 'utf8').replace('  interval: 100ms', '  interval: 60s'));
  os = fakeOs();
  d = createDaemon(os.deps, { configPath: cd.file });
});
afterEach(async () => {
  await d.stop('test end');
  cd.remove();
});

describe('createDaemon: logind sleep signals', () => {
  it('resumed: both gateways probed at once, the failures while the network comes back are no evidence; stop ends the watch', async () => {
    await d.start();
    expect(os.sleep.watching).toBe(true);
    await until(() => os.logger.lines.some((l) => l.msg === 'splitwan running'), 5000, 'running');
    await new Promise((r) => setTimeout(r, 300)); // the first rounds are done; the next are a minute away
    os.dark.add(gatewayMark(0)); // the Wi-Fi is not back yet
    const before = os.logger.lines.length;
    os.sleep.emit(true);
    os.sleep.emit(false);
    await until(() => os.logger.lines.slice(before).some((l) => /^the machine resumed \(logind\)/.test(l.msg)), 5000, 'the resume noted');
    await until(() => os.logger.lines.slice(before).some((l) => /gateway gw1: a failed probe round taken as no evidence/.test(l.msg)), 5000, 'gw1 probed at once and set aside');
    expect((await d.handlers.status()).active).toBe('gw1');
    await d.stop('SIGTERM');
    expect(os.sleep.watching).toBe(false);
  });
});
