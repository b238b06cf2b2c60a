// The laptop parts of the composition root (issue 16), over fake OS adapters
// (test/helpers/fake-deps.ts): logind's PrepareForSleep (after the resume
// every gateway is probed at once, not at its next turn; the watch ends with
// the daemon) and a change of network (the tunnels are rebound).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { gatewayMark } from '../../daemon/dataplane/plan.js';
import { configDir, fakeOs, type ConfigDir, type FakeOs } from '../helpers/fake-deps.js';
import { until } from '../helpers/daemon.js';
import { dig } from '../helpers/dig.js';
import { startTinyUpstream } from '../helpers/dns-upstream.js';
import { readFileSync, writeFileSync } from 'node:fs';

let cd: ConfigDir;
let os: FakeOs;
let d: Daemon;

beforeEach(async () => {
  cd = await configDir();
  // Rounds a minute apart: a round soon after the signal can only be the signal's doing.
  // The breakout follows the default route (a laptop's setting).
  writeFileSync(cd.file, readFileSync(cd.file, 'utf8').replace('  interval: 100ms', '  interval: 60s').replace('  interface: wan0', '  interface: auto'));
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

describe('createDaemon: a change of network', () => {
  it('the default route moves to another link: the tunnels are rebound (their peers\' endpoints set again), once per change', async () => {
    await d.start();
    expect(os.tunnels!.rebinds).toBe(0);
    os.wan.set({ ifname: 'wlan1', gateway: '192.168.7.1', ifname6: null });
    await until(() => os.tunnels!.rebinds === 1, 5000, 'the rebind');
    expect((await d.handlers.status()).breakout.interface).toBe('wlan1');
  });
});

describe('createDaemon: breakout answers after a change of network', () => {
  it('a name cached from the old network is asked again on the new one (a portal\'s or a CDN\'s answer for there is not served)', async () => {
    const up = await startTinyUpstream({ records: (n) => (n === 'stream.test' ? [{ name: n, type: 'A', ttl: 3600, data: '198.51.100.7' }] : null) });
    try {
      writeFileSync(cd.file, readFileSync(cd.file, 'utf8').replace(/^ {2}dns: \[127\.0\.0\.1:\d+\]$/m, `  dns: [127.0.0.1:${up.port}]`));
      await d.start();
      const ask = async () => (await dig(cd.dnsPort, ['@127.0.0.1', 'stream.test', 'A'])).answer.map((a) => a.data);
      expect(await ask()).toEqual(['198.51.100.7']);
      expect(await ask()).toEqual(['198.51.100.7']);
      const asked = () => up.asked.filter((n) => n === 'stream.test').length;
      expect(asked()).toBe(1); // the second from the cache
      os.wan.set({ ifname: 'wan0', gateway: null, ifname6: null }); // the same network again: nothing forgotten
      await new Promise((r) => setTimeout(r, 100));
      expect(await ask()).toEqual(['198.51.100.7']);
      expect(asked()).toBe(1);
      os.wan.set({ ifname: 'wlan1', gateway: '192.168.7.1', ifname6: null });
      await until(() => os.tunnels!.rebinds >= 1, 5000, 'the change seen');
      expect(await ask()).toEqual(['198.51.100.7']);
      expect(asked()).toBe(2);
    } finally {
      await up.close();
    }
  });
});
