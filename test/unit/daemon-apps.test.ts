// Per-app split wired into the composition root (createDaemon over fake OS
// adapters): `splitwan exec`'s request pins a process, the ruleset carries the
// pin (and it survives a reload and a failover: a re-plan keeps it), status
// and explain show it, a pin to a gateway that went down is refused, and the
// stop removes our cgroups.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { gatewayMark, MARK_BREAKOUT } from '../../daemon/dataplane/plan.js';
import { configDir, fakeOs, type ConfigDir, type FakeOs } from '../helpers/fake-deps.js';
import { until } from '../helpers/daemon.js';

let cd: ConfigDir;
let os: FakeOs;
let d: Daemon;

beforeEach(async () => {
  cd = await configDir();
  os = fakeOs();
  d = createDaemon(os.deps, { configPath: cd.file });
});
afterEach(async () => {
  for (const g of Object.values(os.gates)) g.release();
  await d.stop('test end');
  cd.remove();
});

describe('createDaemon: per-app split', () => {
  it('exec pins the process; the ruleset, status and explain show it; a reload keeps it; the stop removes the cgroup', async () => {
    await d.start();
    os.cgroups.procs.set(4242, { exe: '/usr/bin/splitwan', cgroup: 'user.slice' });
    const r = await d.handlers.appExec!('breakout', 4242);
    expect(r).toEqual({ path: 'breakout', cgroup: 'splitwan.slice/via-breakout' });
    expect(os.cgroups.procs.get(4242)!.cgroup).toBe('splitwan.slice/via-breakout');
    expect(d.plan!.apps).toEqual([expect.objectContaining({ path: 'breakout', nftPath: 'splitwan.slice/via-breakout', level: 2, mark: MARK_BREAKOUT })]);
    expect(os.router!.state.ruleset).toContain('socket cgroupv2 level 2 "splitwan.slice/via-breakout" meta mark set 0x1000 return');
    expect((await d.handlers.status()).apps).toEqual([{ path: 'breakout', cgroup: 'splitwan.slice/via-breakout', kind: ['exec'] }]);
    expect((await d.handlers.explain('stream.test', undefined)).apps).toEqual([{ path: 'breakout', cgroup: 'splitwan.slice/via-breakout' }]);
    // A reload re-plans from the new file: the pin stays.
    cd.write({ rules: 'rules:\n  - domains: [other.test]\n    via: breakout' });
    expect((await d.handlers.reload(false)).status).toBe('applied');
    expect(d.plan!.apps?.map((a) => a.path)).toEqual(['breakout']);
    os.cgroups.procs.delete(4242);
    await d.stop('test');
    expect(os.cgroups.dirs.has('splitwan.slice/via-breakout')).toBe(false);
    expect(os.cgroups.dirs.has('splitwan.slice')).toBe(false);
  });

  it('a pin to a gateway: its mark while it is up, refused once it is down', async () => {
    await d.start();
    os.cgroups.procs.set(4243, { exe: '/bin/sh', cgroup: '' });
    await d.handlers.appExec!('GW2', 4243);
    expect(d.plan!.apps![0]!.mark).toBe(gatewayMark(1));
    os.dark.add(gatewayMark(1));
    await until(() => d.plan!.apps?.[0]?.mark === null, 8000, 'gw2 down: its pin refused');
    expect(os.router!.state.ruleset).toContain('socket cgroupv2 level 2 "splitwan.slice/via-gw-gw2" jump reject_flow');
    expect((await d.handlers.status()).apps?.[0]?.refused).toBe(true);
  });

  it('an unknown path is refused, naming the known ones, and nothing is moved', async () => {
    await d.start();
    os.cgroups.procs.set(4244, { exe: '/bin/sh', cgroup: '' });
    await expect(async () => d.handlers.appExec!('nowhere', 4244)).rejects.toMatchObject({ code: 'SPLITWAN_APPS_UNKNOWN_PATH', message: 'no path named "nowhere": the paths are breakout, tunnel, gw1, gw2' });
    expect(os.cgroups.moves).toEqual([]);
  });
});
