// The default-route watcher against the real kernel, in a namespace:
//
//   [sw-ww-<pid>]  wan0 10.98.1.2/24 ── (peer wan0-p)      wan1 10.98.2.2/24 ── (peer wan1-p)
//
// Moving the default route from wan0 to wan1, and taking wan1 down (which
// removes its routes without a route event), are both seen, without polling.
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, systemClock } from '../../lib/logger.js';
import { netnsRunner } from '../../daemon/exec-linux.js';
import { WanWatcher, type WanState } from '../../daemon/dataplane/wan-watch-linux.js';

const NS = `sw-ww-${process.pid}`;
const supported = process.getuid?.() === 0;
const why = 'needs root (network namespaces)';
const ip = (args: string[]): void => void execFileSync('ip', ['-n', NS, ...args]);

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!supported && !process.env.CI)('WanWatcher', () => {
  let watcher: WanWatcher | undefined;
  beforeAll(() => {
    if (!supported) throw new Error(`lab test cannot run: ${why}`);
    execFileSync('ip', ['netns', 'add', NS]);
    for (const [d, net] of [['wan0', '10.98.1'], ['wan1', '10.98.2']] as const) {
      ip(['link', 'add', d, 'type', 'veth', 'peer', 'name', `${d}-p`]);
      ip(['addr', 'add', `${net}.2/24`, 'dev', d]);
      ip(['link', 'set', d, 'up']);
      ip(['link', 'set', `${d}-p`, 'up']);
    }
    ip(['route', 'add', 'default', 'via', '10.98.1.1', 'dev', 'wan0']);
  });
  afterAll(() => {
    watcher?.stop();
    spawnSync('ip', ['netns', 'del', NS]);
  });

  it('reports the current WAN, then follows changes', async () => {
    const seen: WanState[] = [];
    watcher = new WanWatcher(netnsRunner(NS), silentLogger, systemClock, (s) => void seen.push(s), ['ip', 'netns', 'exec', NS]);
    const first = await watcher.start();
    expect(first).toMatchObject({ ifname: 'wan0', gateway: '10.98.1.1' });
    await new Promise((r) => setTimeout(r, 100)); // let the monitor attach

    ip(['route', 'replace', 'default', 'via', '10.98.2.1', 'dev', 'wan1']);
    await until(() => seen.some((s) => s.ifname === 'wan1'));
    expect(seen.at(-1)).toMatchObject({ ifname: 'wan1', gateway: '10.98.2.1' });

    ip(['link', 'set', 'wan1', 'down']);
    await until(() => seen.at(-1)?.ifname === null);
  });
});

it.skipIf(supported || !!process.env.CI)('WanWatcher: SKIPPED', () => {
  console.warn(`SKIPPED lab test (wan-watch): ${why}. CI runs it as root.`);
});
