// The composition root with several WAN links and an unmanaged gateway, over
// fake OS adapters: each link is probed through its own mark (the fake ping
// answers per mark), the best link carries breakout (table 1200, new flows'
// pick_link), a dead link's flows are dropped and breakout moves, the
// preferred link comes back after the failback hold; an unmanaged gateway is
// routed into, probed and failed over to and from, and never created.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { gatewayMark, linkMark, MARK_MASK, TABLE_BREAKOUT } from '../../daemon/dataplane/plan.js';
import { configDir, fakeOs, type ConfigDir, type FakeOs } from '../helpers/fake-deps.js';
import { until } from '../helpers/daemon.js';
import { formatStatus } from '../../daemon/commands/control.js';
import { sampleOf } from '../../daemon/web/history.js';

let cd: ConfigDir;
let os: FakeOs;
let d: Daemon;

function writeLinks(o: { balance?: boolean } = {}): void {
  const text = [
    'mode: host',
    'breakout:',
    `  balance: ${o.balance ?? false}`,
    '  links:',
    '    - { name: fiber, interface: wan0, gateway: 10.99.2.1, dns: [127.0.0.1:9], priority: 1, weight: 2 }',
    '    - { name: lte, interface: wan1, gateway: 10.99.5.1, dns: [127.0.0.1:9], priority: 2, weight: 1 }',
    'dns:',
    `  listen: [127.0.0.1:${cd.dnsPort}]`,
    'control:',
    `  socket: ${cd.socket}`,
    'health:',
    '  interval: 100ms',
    '  timeout: 100ms',
    '  failAfter: 2',
    '  recoverAfter: 2',
    '  failbackHold: 300ms',
    '  probe: [{ kind: icmp, target: 10.64.0.1 }]',
    'tunnel:',
    '  gateways:',
    '    - { name: gw1, config: gw1.conf }',
    '    - { name: awg, interface: awg0, dns: [10.8.0.1], priority: 200 }',
    'rules:',
    '  - cidrs: [192.0.2.0/24]',
    '    via: [lte, fiber]',
    '',
  ].join('\n');
  writeFileSync(cd.file, text);
}

beforeEach(async () => {
  cd = await configDir();
  writeLinks();
  os = fakeOs();
  d = createDaemon(os.deps, { configPath: cd.file });
});
afterEach(async () => {
  for (const g of Object.values(os.gates)) g.release();
  await d.stop('test end');
  cd.remove();
});

const table1200 = (): string[] => os.router!.state.routes.filter((r) => r.table === TABLE_BREAKOUT && r.type === 'unicast' && r.family === 4).map((r) => `${r.dev} ${r.via}`);

describe('createDaemon with breakout.links', () => {
  it('breakout by the preferred link; a dead link moves it and drops its flows; failback after the hold', async () => {
    await d.start();
    expect(d.plan!.links!.map((l) => l.name)).toEqual(['fiber', 'lte']);
    expect(table1200()).toEqual(['wan0 10.99.2.1']);
    expect(os.router!.state.ruleset).toContain('\tchain pick_link {\n\t\tmeta mark set 0x2000\n\t}');
    // The pinned rule takes lte's mark whatever breakout does.
    expect(d.plan!.rules[0]!.mark).toBe(linkMark(1));
    os.dark.add(linkMark(0));
    await until(() => d.plan?.activeLink === 'lte', 5000);
    await until(() => table1200()[0] === 'wan1 10.99.5.1', 5000);
    expect(os.router!.state.ruleset).toContain('\tchain pick_link {\n\t\tmeta mark set 0x2100\n\t}');
    await until(() => os.dropped.includes(`0x${linkMark(0).toString(16)}/0x${(MARK_MASK | 0x2).toString(16)}`), 5000);
    // Links show in status as gateways do: state, and which one breakout takes.
    const st = await d.handlers.status();
    await until(async () => (await d.handlers.status()).links?.find((l) => l.name === 'fiber')?.state === 'down', 5000);
    const st2 = await d.handlers.status();
    expect(st2.links!.map((l) => [l.name, l.ifname, l.active])).toEqual([
      ['fiber', 'wan0', false],
      ['lte', 'wan1', true],
    ]);
    expect(formatStatus(st2, Date.now())).toMatch(/breakout: by lte/);
    expect(formatStatus(st2, Date.now())).toMatch(/\* +lte +wan1/);
    expect(st.gateways.map((g) => [g.name, g.ifname, g.unmanaged])).toEqual([
      ['gw1', 'swg-gw1', undefined],
      ['awg', 'awg0', 'interface'],
    ]);
    // The move is a link failover, apart from the gateways' (the dashboard and status show both).
    expect(st2.linkFailovers).toEqual([{ at: expect.any(Number), from: 'fiber', to: 'lte', reason: 'fiber is down' }]);
    expect(st2.failovers.filter((f) => f.to === 'lte' || f.from === 'fiber')).toEqual([]);
    expect(formatStatus(st2, Date.now())).toMatch(/recent link failovers:\n.*fiber → lte {2}\(fiber is down\)/);
    // The dashboard's charts sample each link beside the gateways.
    expect(sampleOf(st2, null, 1, null).paths).toMatchObject({ 'link:fiber': { state: 'down', loss: expect.any(Number) }, 'link:lte': { state: 'up' }, gw1: { state: expect.any(String) } });
    os.dark.delete(linkMark(0));
    const back = Date.now();
    await until(() => d.plan?.activeLink === 'fiber', 5000);
    // Not before it has been up for the hold (300 ms) after recoverAfter good rounds.
    expect(Date.now() - back).toBeGreaterThanOrEqual(300);
    expect(table1200()).toEqual(['wan0 10.99.2.1']);
    expect((await d.handlers.status()).linkFailovers!.map((f) => [f.from, f.to])).toEqual([
      ['lte', 'fiber'],
      ['fiber', 'lte'],
    ]);
  });

  it('gateways that failed with the link are rechecked at once when breakout moves', async () => {
    await d.start();
    // The link dies, and the gateway reached through it with it.
    os.dark.add(linkMark(0));
    os.dark.add(gatewayMark(0));
    const rebinds = os.tunnels!.rebinds;
    await until(() => d.plan?.activeLink === 'lte', 5000);
    await until(() => os.logger.lines.some((l) => l.msg.startsWith('the WAN link changed') && (l.obj.gateways as string[]).includes('gw1')), 5000);
    // The tunnels send from the new link's address (wireguard-go's remembered source cleared).
    expect(os.tunnels!.rebinds).toBeGreaterThan(rebinds);
    os.dark.delete(gatewayMark(0));
    await until(() => d.plan?.active === 'gw1', 5000);
  });

  it('a rule pinned to a dead link takes its next candidate until the link is back', async () => {
    await d.start();
    os.dark.add(linkMark(1));
    await until(() => d.plan?.rules[0]?.mark === linkMark(0), 5000);
    expect(os.router!.state.ruleset).toContain('ip daddr { 192.0.2.0/24 } meta mark set 0x2000 return');
    os.dark.delete(linkMark(1));
    await until(() => d.plan?.rules[0]?.mark === linkMark(1), 5000);
  });

  it('balance: both links by weight while up; the dead one leaves the spread', async () => {
    writeLinks({ balance: true });
    await d.start();
    await until(() => (os.router!.state.ruleset ?? '').includes('numgen random mod 3 map { 0-1 : 0x2000, 2 : 0x2100 }'), 5000);
    os.dark.add(linkMark(1));
    await until(() => (os.router!.state.ruleset ?? '').includes('\tchain pick_link {\n\t\tmeta mark set 0x2000\n\t}'), 5000);
  });

  it('an unmanaged gateway: routed into, never created; the tunnel fails over to it and back', async () => {
    await d.start();
    expect(os.tunnels!.state().links.map((l) => l.ifname)).toEqual(['swg-gw1']);
    const awg = d.plan!.gateways.find((g) => g.name === 'awg')!;
    expect(awg.unmanaged).toBe('interface');
    expect(os.router!.state.routes.some((r) => r.table === awg.table && r.dev === 'awg0')).toBe(true);
    expect(d.plan!.active).toBe('gw1');
    os.dark.add(gatewayMark(0));
    await until(() => d.plan?.active === 'awg', 5000);
    expect(os.router!.state.active).toBe(`0x1f00 : 0x${awg.mark.toString(16)}`);
    os.dark.add(awg.mark);
    await until(() => d.plan?.active === null, 5000);
    expect(os.router!.state.active).toBe(''); // the kill switch covers it
    os.dark.delete(gatewayMark(0));
    await until(() => d.plan?.active === 'gw1', 5000);
  });
});
