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
});
