import { describe, expect, it } from 'vitest';
import type { DataplanePlan } from '../../daemon/dataplane/plan.js';
import { FakeRouter } from '../../daemon/dataplane/router-fake.js';

const plan = (over: Partial<DataplanePlan> = {}): DataplanePlan => ({
  mode: 'host',
  lan: [],
  wan: 'wan0',
  gateways: [{ name: 'gw1', ifname: 'swg-gw1', mark: 0x1100, table: 1101, addrs4: ['10.64.0.2'], addrs6: [], ipv6: false }],
  active: 'gw1',
  killSwitch: true,
  rules: [],
  defaultMark: 0x1f00,
  dnsPort: null,
  localDns: null,
  proxy: null,
  encryptedDns: null,
  ...over,
});

describe('FakeRouter', () => {
  it('models idempotent apply, a kill-switch state and repair', async () => {
    const r = new FakeRouter();
    expect(await r.set(plan())).toBe(true);
    expect(await r.set(plan())).toBe(false);
    expect(r.state.active).toBe('0x1f00 : 0x1100');
    expect(r.state.forwarding).toBe(false);
    await r.set(plan({ active: null }));
    expect(r.state.active).toBe('');
    r.deleteTable();
    expect(await r.reconcile()).toEqual(['nft table']);
    expect(r.state.ruleset).toContain('table inet splitwan');
    await r.cleanup();
    expect(r.state).toMatchObject({ ruleset: null, rules: [], routes: [] });
  });

  it('a flip points the tunnel path\'s table at the new gateway; with none (kill switch: nftables rejects) the first gateway\'s', async () => {
    const r = new FakeRouter();
    const gw2 = { name: 'gw2', ifname: 'swg-gw2', mark: 0x1200, table: 1102, addrs4: ['10.64.0.2'], addrs6: [], ipv6: false };
    await r.set(plan({ gateways: [...plan().gateways, gw2] }));
    const dev = () => r.state.routes.find((x) => x.table === 1100 && x.type === 'unicast' && x.family === 4)?.dev;
    expect(dev()).toBe('swg-gw1');
    await r.setActive('gw2');
    expect(dev()).toBe('swg-gw2');
    expect(await r.reconcile()).toEqual([]);
    await r.setActive(null);
    expect(dev()).toBe('swg-gw1');
  });
});
