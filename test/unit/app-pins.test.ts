// Per-app split's bookkeeping (daemon/apps/app-pins.ts) over the cgroup
// model (cgroups-fake.ts): the rules are loaded before a process is moved,
// our cgroups go when their last process has gone, exe entries move their
// processes, patterns pin other programs' cgroups in place, an unknown path
// names the known ones. And apps: in the config, with FILE:LINE:COL errors.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppPins, type PathDns } from '../../daemon/apps/app-pins.js';
import { FakeCgroups } from '../../daemon/apps/cgroups-fake.js';
import { ConfigError, type ConfigIssue } from '../../config/errors.js';
import { loadConfig } from '../../config/load.js';
import type { Config, PathName } from '../../config/types.js';
import { ManualClock } from '../helpers/clock.js';
import { recordingLogger } from '../helpers/fake-deps.js';

const key = (): string => randomBytes(32).toString('base64');
const wgQuick = (): string => ['[Interface]', `PrivateKey = ${key()}`, 'Address = 10.64.0.2/32', 'DNS = 10.64.0.1', '', '[Peer]', `PublicKey = ${key()}`, 'Endpoint = 192.0.2.10:51820', 'AllowedIPs = 0.0.0.0/0', ''].join('\n');
let root: string;
let seq = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitwan-app-pins-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
async function write(lines: string[]): Promise<string> {
  const dir = join(root, `case-${++seq}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.yaml'), ['mode: host', 'breakout: { interface: wan0, dns: [192.0.2.53] }', 'tunnel:', '  gateways:', '    - { name: vps, config: wg1.conf }', ...lines, ''].join('\n'));
  await writeFile(join(dir, 'wg1.conf'), wgQuick());
  await chmod(join(dir, 'wg1.conf'), 0o600);
  return join(dir, 'config.yaml');
}
async function errorsOf(lines: string[]): Promise<ConfigIssue[]> {
  const e: unknown = await loadConfig(await write(lines)).then(() => null, (x: unknown) => x);
  if (!(e instanceof ConfigError)) throw new Error('expected a ConfigError');
  return e.issues.filter((i) => i.severity === 'error');
}

describe('apps: in the config', () => {
  it('loads exe and cgroup entries with their path', async () => {
    const l = await loadConfig(await write(['apps:', '  - { exe: /usr/bin/firefox, via: breakout }', '  - cgroup: "/user.slice/app-*.scope/"', '    via: VPS']));
    expect(l.config.apps?.map((a) => ({ exe: a.exe, cgroup: a.cgroup, via: a.via, line: a.pos.line }))).toEqual([
      { exe: '/usr/bin/firefox', cgroup: null, via: 'breakout', line: 7 },
      { exe: null, cgroup: 'user.slice/app-*.scope', via: 'gw:vps', line: 8 },
    ]);
  });
  it('no apps: none (the key stays out)', async () => {
    expect((await loadConfig(await write([]))).config.apps).toBeUndefined();
  });
  it('every mistake at its file, line, column and key', async () => {
    const errs = await errorsOf([
      'apps:',
      '  - { exe: /a, cgroup: b, via: breakout }',
      '  - { exe: firefox, via: breakout }',
      '  - { exe: /b, via: [vps, breakout] }',
      '  - { exe: /c, via: block }',
      '  - { exe: /d, via: nowhere }',
      '  - { cgroup: "a/../b", via: tunnel }',
      '  - { exe: /e }',
    ]);
    const got = errs.map((i) => `${i.pos.line}:${i.pos.col} ${i.keyPath}: ${i.message}`);
    expect(got).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^7:5 apps\[0\]: an app entry names either exe:/),
        expect.stringMatching(/^8:12 apps\[1\]\.exe: "firefox" is not an absolute path/),
        expect.stringMatching(/^9:21 apps\[2\]\.via: must be a string, not a list/),
        expect.stringMatching(/^10:21 apps\[3\]\.via: an app takes breakout, tunnel, a gateway or a link/),
        expect.stringMatching(/^11:21 apps\[4\]\.via: "nowhere" is not breakout, tunnel, block or a gateway name/),
        expect.stringMatching(/^12:15 apps\[5\]\.cgroup: "a\/\.\.\/b"/),
        expect.stringMatching(/^13:5 apps\[6\]: missing required key "via"/),
      ]),
    );
    expect(errs.every((i) => i.pos.file.endsWith('config.yaml'))).toBe(true);
  });
});

function setup(apps: Config['apps'] = []) {
  const cg = new FakeCgroups();
  const clock = new ManualClock();
  const events: string[] = [];
  const dns = new Map<PathName, boolean>();
  const config = { tunnel: { gateways: [{ name: 'vps' }, { name: 'home' }], unmanaged: [] }, breakout: { links: [] }, apps } as unknown as Config;
  let healthyVps = true;
  const pins = new AppPins({
    cgroups: cg,
    clock,
    logger: recordingLogger(),
    config: () => config,
    root: 'test.slice',
    apply: async () => {
      events.push(`apply ${pins.inputs().map((i) => `${i.path}@${i.nftPath}#${i.id}`).join(',')}`);
    },
    dns: async (path): Promise<PathDns> => {
      dns.set(path, true);
      events.push(`dns ${path}`);
      return { v4: 5353, v6: null, close: async () => void dns.set(path, false) };
    },
  });
  return { cg, clock, events, dns, pins, config, setHealthy: (b: boolean) => (healthyVps = b), healthy: () => healthyVps };
}

describe('AppPins', () => {
  it('exec: the cgroup is made, its resolver started and the rules loaded before the process is moved', async () => {
    const t = setup();
    t.cg.procs.set(4000, { exe: '/usr/bin/node', cgroup: 'user.slice' });
    await t.pins.start();
    const r = await t.pins.exec('VPS', 4000);
    expect(r).toEqual({ path: 'gw:vps', cgroup: 'test.slice/via-gw-vps' });
    expect(t.events).toEqual(['dns gw:vps', `apply gw:vps@test.slice/via-gw-vps#${t.cg.dirs.get('test.slice/via-gw-vps')}`]);
    expect(t.cg.procs.get(4000)!.cgroup).toBe('test.slice/via-gw-vps');
    expect(t.pins.inputs()).toEqual([{ path: 'gw:vps', nftPath: 'test.slice/via-gw-vps', level: 2, id: t.cg.dirs.get('test.slice/via-gw-vps'), dns4: 5353, dns6: null }]);
    // A second program on the same path: same cgroup, no new rules.
    t.cg.procs.set(4001, { exe: '/usr/bin/node', cgroup: 'user.slice' });
    await t.pins.exec('vps', 4001);
    expect(t.events.length).toBe(2);
  });

  it('an unknown path is refused, naming the known ones', async () => {
    const t = setup();
    await t.pins.start();
    expect(() => t.pins.exec('nope', 4000)).toThrow('no path named "nope": the paths are breakout, tunnel, vps, home');
  });

  it('the cgroup goes when its last process has gone; the resolver closes; the rules follow', async () => {
    const t = setup();
    t.cg.procs.set(4000, { exe: '/x', cgroup: '' });
    await t.pins.start();
    await t.pins.exec('breakout', 4000);
    await t.pins.tick();
    expect(t.cg.dirs.has('test.slice/via-breakout')).toBe(true);
    t.cg.procs.delete(4000);
    await t.pins.tick();
    expect(t.cg.dirs.has('test.slice/via-breakout')).toBe(false);
    expect(t.dns.get('breakout')).toBe(false);
    expect(t.events.at(-1)).toBe('apply ');
  });

  it('a cgroup removed and made again by someone else: its id changed, so it leaves the rules (nft would refuse a stale one) until pinned again', async () => {
    const t = setup();
    t.cg.procs.set(4000, { exe: '/x', cgroup: '' });
    await t.pins.start();
    await t.pins.exec('tunnel', 4000);
    t.cg.dirs.set('test.slice/via-tunnel', 999);
    expect(t.pins.inputs()).toEqual([]);
    await t.pins.exec('tunnel', 4000);
    expect(t.pins.inputs()[0]!.id).toBe(999);
  });

  it('apps: exe — running processes of the executable are moved (once); others are left', async () => {
    const t = setup([{ index: 0, exe: '/usr/bin/firefox', cgroup: null, via: 'breakout', pos: { file: 'c', line: 1, col: 1 } }]);
    t.cg.procs.set(10, { exe: '/usr/bin/firefox', cgroup: 'user.slice/app.scope' });
    t.cg.procs.set(11, { exe: '/usr/bin/curl', cgroup: 'user.slice/app.scope' });
    await t.pins.start();
    await t.pins.tick();
    expect(t.cg.procs.get(10)!.cgroup).toBe('test.slice/via-breakout');
    expect(t.cg.procs.get(11)!.cgroup).toBe('user.slice/app.scope');
    await t.pins.tick();
    expect(t.cg.moves.length).toBe(1);
    expect(t.pins.status(() => false)).toEqual([{ path: 'breakout', cgroup: 'test.slice/via-breakout', kind: ['exe'] }]);
  });

  it('apps: cgroup — matching cgroups are pinned where they are (nothing moved), and dropped when they go', async () => {
    const t = setup([{ index: 0, exe: null, cgroup: 'user.slice/app-firefox-*.scope', via: 'gw:vps', pos: { file: 'c', line: 1, col: 1 } }]);
    await t.cg.ensure('user.slice/app-firefox-1.scope');
    await t.cg.ensure('user.slice/app-term-1.scope');
    await t.pins.start();
    await t.pins.tick();
    expect(t.pins.inputs().map((i) => [i.path, i.nftPath, i.level])).toEqual([['gw:vps', 'user.slice/app-firefox-1.scope', 2]]);
    expect(t.cg.moves).toEqual([]);
    expect(t.pins.status((p) => p === 'gw:vps')).toEqual([{ path: 'gw:vps', cgroup: 'user.slice/app-firefox-1.scope', kind: ['cgroup'], refused: true }]);
    t.cg.dirs.delete('user.slice/app-firefox-1.scope');
    await t.pins.tick();
    await t.pins.tick();
    expect(t.pins.inputs()).toEqual([]);
    expect(t.dns.get('gw:vps')).toBe(false);
  });

  it('start after a crash: empty cgroups of ours go; one still holding a program is pinned again; stop removes ours', async () => {
    const t = setup();
    await t.cg.ensure('test.slice/via-breakout');
    await t.cg.ensure('test.slice/via-gw-home');
    t.cg.procs.set(50, { exe: '/x', cgroup: 'test.slice/via-gw-home' });
    await t.pins.start();
    expect(t.cg.dirs.has('test.slice/via-breakout')).toBe(false);
    expect(t.pins.inputs().map((i) => i.path)).toEqual(['gw:home']);
    t.cg.procs.delete(50);
    await t.pins.stop();
    expect([...t.cg.dirs.keys()].filter((d) => d.startsWith('test.slice'))).toEqual([]);
  });

  it('no cgroup2: exec says so', async () => {
    const t = setup();
    t.cg.mountPoint = null;
    await t.pins.start();
    await expect(t.pins.exec('breakout', 4000)).rejects.toMatchObject({ code: 'SPLITWAN_APPS_NO_CGROUP2' });
  });
});
