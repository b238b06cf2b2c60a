import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import type { GatewayConfig } from '../../config/types.js';
import { EndpointRefresher } from '../../daemon/tunnel/endpoint-refresh.js';
import { ManualClock } from '../helpers/clock.js';

const gw = (name: string, host: string): GatewayConfig =>
  ({ name, wireguard: { peers: [{ publicKey: 'k', allowedIPs: [], endpoint: { host, port: 51820 } }] } }) as unknown as GatewayConfig;

describe('EndpointRefresher', () => {
  it('while a gateway given by name is down, looks it up every 30 s and moves the tunnel to a new address', async () => {
    const clock = new ManualClock();
    const down = new Set<string>();
    const dns = new Map([['vpn.example', '198.51.100.1'], ['home.example', '203.0.113.1']]);
    const addr = new Map([['gw1', '198.51.100.1'], ['gw2', '203.0.113.1'], ['gw3', '192.0.2.3']]);
    const asked: string[] = [];
    const applied: string[] = [];
    const r = new EndpointRefresher({
      gateways: () => [gw('gw1', 'vpn.example'), gw('gw2', 'home.example'), gw('gw3', '192.0.2.3')],
      isDown: (n) => down.has(n),
      lookup: async (h) => {
        asked.push(h);
        const a = dns.get(h);
        if (!a) throw new Error('NXDOMAIN');
        return a;
      },
      current: (n) => addr.get(n) ?? null,
      apply: async (n, a) => {
        applied.push(`${n}=${a}`);
        addr.set(n, a);
      },
      clock,
      logger: silentLogger,
    });
    r.start();
    await clock.advance(30_000);
    expect(asked).toEqual([]); // nobody is down
    down.add('gw2');
    down.add('gw3'); // an address, not a name: nothing to look up
    await clock.advance(30_000);
    expect(asked).toEqual(['home.example']);
    expect(applied).toEqual([]); // same address
    dns.set('home.example', '203.0.113.99'); // the home server got a new address
    await clock.advance(30_000);
    expect(applied).toEqual(['gw2=203.0.113.99']);
    dns.delete('home.example'); // a failed lookup changes nothing
    await clock.advance(30_000);
    expect(applied).toEqual(['gw2=203.0.113.99']);
    r.stop();
  });
});
