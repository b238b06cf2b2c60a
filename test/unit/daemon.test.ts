// The composition root (createDaemon) over fake OS adapters: start, stop,
// failover, reload and their orderings, including a stop that arrives in the
// middle of a start or of a reload. What is asserted is the modelled kernel
// state (FakeRouter: ruleset, rules, routes, the active map; FakeTunnels:
// links and processes) and what the control API reports, not call logs.
import { existsSync } from 'node:fs';
import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemon, StoppedDuringStartError, type Daemon } from '../../daemon/daemon.js';
import { gatewayMark, MARK_TUNNEL } from '../../daemon/dataplane/plan.js';
import { configDir, fakeOs, type ConfigDir, type FakeOs, type Step } from '../helpers/fake-deps.js';
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

/** Nothing of splitwan is left: no ruleset, rules or routes, no tunnel, no process, no control socket. */
function expectNothingInstalled(): void {
  expect(os.router?.state.ruleset ?? null).toBeNull();
  expect(os.router?.state.rules ?? []).toEqual([]);
  expect(os.router?.state.routes ?? []).toEqual([]);
  expect(os.tunnels?.state().links ?? []).toEqual([]);
  expect(os.tunnels?.state().processes ?? []).toEqual([]);
  expect(existsSync(cd.socket)).toBe(false);
  expect(os.nft?.closed ?? true).toBe(true);
}

describe('createDaemon: start and stop', () => {
  it('starts: cleanup first, then tunnels before the data plane; status over the control handlers', async () => {
    await d.start();
    expect(d.phase).toBe('running');
    expect(os.events.slice(0, 2)).toEqual(['assertNoOtherDaemon', 'cleanup']);
    expect(os.events.indexOf('tunnels.set')).toBeLessThan(os.events.indexOf('router.set'));
    expect(os.router!.state.ruleset).toContain('table inet splitwan');
    expect(os.tunnels!.state().links.map((l) => l.ifname)).toEqual(['swg-gw1', 'swg-gw2']);
    expect(existsSync(cd.socket)).toBe(true);
    const s = await d.handlers.status();
    expect(s.active).toBe('gw1');
    expect(s.gateways.map((g) => g.name)).toEqual(['gw1', 'gw2']);
    expect(s.dns.listen).toEqual([`127.0.0.1:${cd.dnsPort}`]);
  });

  it('stops: everything installed is removed, the resolver port is free again', async () => {
    await d.start();
    await d.stop('SIGTERM');
    expect(d.phase).toBe('stopped');
    expectNothingInstalled();
    // The port can be bound again: the resolver's sockets are closed.
    const { createSocket } = await import('node:dgram');
    const sock = createSocket('udp4');
    await new Promise<void>((resolve, reject) => sock.once('error', reject).bind(cd.dnsPort, '127.0.0.1', () => resolve()));
    sock.close();
  });

  it('a bad config fails the start before anything is touched', async () => {
    writeFileSync(cd.file, 'mode: host\nrules: nope\n');
    await expect(d.start()).rejects.toThrow(/rules/);
    expect(os.events).toEqual([]);
    expect(d.phase).toBe('stopped');
  });

  it('a failed start removes what it installed', async () => {
    os.failSet = () => new Error('nft: the kernel refused the ruleset');
    await expect(d.start()).rejects.toThrow(/refused the ruleset/);
    expect(d.phase).toBe('stopped');
    expectNothingInstalled();
  });
});

describe('createDaemon: another program damages the state', () => {
  it('its table deleted: the repair follows the kernel\'s event, with the default path as it was; after stop the watch is off', async () => {
    await d.start();
    const ruleset = os.router!.state.ruleset;
    const active = os.router!.state.active;
    expect(os.damage.watching).toBe(true);
    os.router!.deleteTable(); // nft flush ruleset, as Debian's nftables.service reload does
    os.damage.emit();
    await until(() => os.router!.state.ruleset === ruleset && os.router!.state.active === active, 5000, 'the repair');
    await d.stop('SIGTERM');
    expect(os.damage.watching).toBe(false);
    expectNothingInstalled();
  });
});

describe('createDaemon: SIGTERM during start', () => {
  const steps: Step[] = ['cleanup', 'tunnels', 'router'];
  for (const step of steps) {
    it(`stop while start waits in ${step}: the start ends there, nothing is left installed, nothing is installed afterwards`, async () => {
      const reached = os.gates[step].close();
      const starting = d.start();
      await reached;
      const stopping = d.stop('SIGTERM');
      os.gates[step].release();
      await expect(starting).rejects.toBeInstanceOf(StoppedDuringStartError);
      await stopping;
      expect(d.phase).toBe('stopped');
      expectNothingInstalled();
      // Nothing comes back later (a timer, a switch, a repair).
      const changes = os.router?.changes ?? 0;
      await new Promise((r) => setTimeout(r, 400));
      expect(os.router?.changes ?? 0).toBe(changes);
      expectNothingInstalled();
    });
  }
});

describe('createDaemon: failover', () => {
  it('a dark gateway: the tunnel path moves to the other, its flows are dropped, the history records it', async () => {
    await d.start();
    expect(os.router!.state.active).toBe(`0x${MARK_TUNNEL.toString(16)} : 0x${gatewayMark(0).toString(16)}`);
    os.dark.add(gatewayMark(0));
    await until(() => os.router!.state.active === `0x${MARK_TUNNEL.toString(16)} : 0x${gatewayMark(1).toString(16)}`, 10_000, 'the switch to gw2');
    await until(() => os.dropped.includes(`0x${gatewayMark(0).toString(16)}/0xff02`), 5000, 'gw1 flows dropped');
    expect(os.dropped).toContain(`0x${MARK_TUNNEL.toString(16)}/0xff02`);
    const s = await d.handlers.status();
    expect(s.active).toBe('gw2');
    expect(s.failovers[0]).toMatchObject({ from: 'gw1', to: 'gw2' });
  });

  it('both dark: the kill switch (an empty active map); one back: traffic resumes there', async () => {
    await d.start();
    os.dark.add(gatewayMark(0));
    os.dark.add(gatewayMark(1));
    await until(() => os.router!.state.active === '', 10_000, 'the kill switch');
    expect((await d.handlers.status()).killSwitch).toEqual({ enabled: true, engaged: true });
    os.dark.delete(gatewayMark(1));
    await until(() => os.router!.state.active === `0x${MARK_TUNNEL.toString(16)} : 0x${gatewayMark(1).toString(16)}`, 10_000, 'recovery on gw2');
  });
});

describe('createDaemon: reload', () => {
  it('applies a good edit: the new rule is in the kernel, status reports applied', async () => {
    await d.start();
    cd.write({ rules: 'rules:\n  - domains: [stream.test]\n    via: breakout\n  - cidrs: [198.51.100.0/24]\n    via: gw2' });
    const r = await d.handlers.reload(false);
    expect(r.status).toBe('applied');
    expect(os.router!.state.ruleset).toContain('198.51.100.0/24');
    expect((await d.handlers.status()).config.lastReload?.status).toBe('applied');
  });

  it('a part that fails to apply: reported failed with the reason, the previous config is back in the kernel, and the next reload tries again', async () => {
    await d.start();
    const before = os.router!.state.ruleset;
    os.failSet = (p) => (p.rules.some((x) => x.dst4.includes('198.51.100.0/24')) ? new Error('nft: the kernel refused the ruleset') : null);
    cd.write({ rules: 'rules:\n  - domains: [stream.test]\n    via: breakout\n  - cidrs: [198.51.100.0/24]\n    via: gw2' });
    const r = await d.handlers.reload(false);
    expect(r.status).toBe('failed');
    expect(r.error).toMatch(/refused the ruleset/);
    expect(os.router!.state.ruleset).toBe(before);
    expect(d.store!.current.config.rules).toHaveLength(1);
    const s = await d.handlers.status();
    expect(s.config.lastReload).toMatchObject({ status: 'failed', error: expect.stringMatching(/refused the ruleset/) });
    // The same file again is not "unchanged": it is tried again, and applies once the fault is gone.
    expect((await d.handlers.reload(false)).status).toBe('failed');
    os.failSet = null;
    expect((await d.handlers.reload(false)).status).toBe('applied');
    expect(os.router!.state.ruleset).toContain('198.51.100.0/24');
    expect(d.store!.current.config.rules).toHaveLength(2);
  });

  it('a tunnel that cannot be built: failed, and the running tunnels are as before', async () => {
    await d.start();
    const links = os.tunnels!.state().links.map((l) => l.ifname);
    os.failTunnels = (specs) => (specs.some((x) => x.name === 'gw3') ? new Error('wireguard-go: cannot create swg-gw3') : null);
    cd.write({ gateways: ['gw1', 'gw2', 'gw3'] });
    const r = await d.handlers.reload(false);
    expect(r.status).toBe('failed');
    expect(r.error).toMatch(/swg-gw3/);
    expect(os.tunnels!.state().links.map((l) => l.ifname)).toEqual(links);
    expect((await d.handlers.status()).gateways.map((g) => g.name)).toEqual(['gw1', 'gw2']);
  });

  it('a reload that removes the active gateway: the other takes over, recorded as a failover, the old flows dropped', async () => {
    await d.start();
    cd.write({ gateways: ['gw2'] });
    expect((await d.handlers.reload(false)).status).toBe('applied');
    const s = await d.handlers.status();
    expect(s.active).toBe('gw2');
    expect(s.failovers[0]).toMatchObject({ from: 'gw1', to: 'gw2', reason: 'removed by a reload' });
    expect(os.dropped).toContain(`0x${MARK_TUNNEL.toString(16)}/0xff02`);
    // gw2 keeps its mark and table: its flows, sockets and routes are not moved under it.
    expect(d.plan!.gateways).toMatchObject([{ name: 'gw2', mark: gatewayMark(1) }]);
    expect(os.router!.state.active).toBe(`0x${MARK_TUNNEL.toString(16)} : 0x${gatewayMark(1).toString(16)}`);
    expect(os.dropped).toContain(`0x${gatewayMark(0).toString(16)}/0xff02`);
    expect(os.dropped).not.toContain(`0x${gatewayMark(1).toString(16)}/0xff02`);
  });

  it('a reload that reorders gateways moves no gateway to another mark and drops no flow; a new one takes a free slot', async () => {
    await d.start();
    cd.write({ gateways: ['gw3', 'gw2', 'gw1'] });
    expect((await d.handlers.reload(false)).status).toBe('applied');
    expect(Object.fromEntries(d.plan!.gateways.map((g) => [g.name, g.mark]))).toEqual({ gw1: gatewayMark(0), gw2: gatewayMark(1), gw3: gatewayMark(2) });
    expect(os.dropped).toEqual([]);
  });

  it('SIGTERM during a reload: the stop waits for it, then removes everything; nothing is re-installed after', async () => {
    await d.start();
    cd.write({ gateways: ['gw1', 'gw2', 'gw3'] });
    const reached = os.gates.tunnels.close();
    const reloading = d.handlers.reload(false);
    await reached;
    const stopping = d.stop('SIGTERM');
    os.gates.tunnels.release();
    const r = await reloading;
    await stopping;
    expect(['applied', 'failed']).toContain(r.status);
    expect(d.phase).toBe('stopped');
    expectNothingInstalled();
    await new Promise((res) => setTimeout(res, 300));
    expectNothingInstalled();
  });
});
