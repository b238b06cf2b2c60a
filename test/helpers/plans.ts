// Data-plane plans for tests: two gateways, a LAN, and rules built by `rule()`.
import type { DataplanePlan, PlannedGateway, PlannedRule } from '../../daemon/dataplane/plan.js';

// Both carry the same tunnel address, as a provider's gateways do (Mullvad).
export const GW1: PlannedGateway = { name: 'gw1', ifname: 'swg-gw1', mark: 0x1100, table: 1101, addrs4: ['10.64.0.2'], addrs6: ['fd64::2'], ipv6: true };
export const GW2: PlannedGateway = { name: 'gw2', ifname: 'swg-gw2', mark: 0x1200, table: 1102, addrs4: ['10.64.0.2'], addrs6: ['fd64::2'], ipv6: true };

/** A rule to the breakout with nothing to match unless `over` says so. */
export function rule(index: number, id: string, over: Partial<PlannedRule> = {}): PlannedRule {
  return { index, id, mark: 0x1000, dst4: [], dst6: [], src4: [], src6: [], tagged: false, ...over };
}

/** Router mode, gw1 active, kill switch on, no rules; override what a test needs. */
export function samplePlan(over: Partial<DataplanePlan> = {}): DataplanePlan {
  return {
    mode: 'router',
    lan: ['lan0'],
    wan: 'wan0',
    gateways: [GW1, GW2],
    active: 'gw1',
    killSwitch: true,
    rules: [],
    defaultMark: 0x1f00,
    dnsPort: 53,
    localDns: null,
    proxy: null,
    encryptedDns: null,
    ...over,
  };
}
