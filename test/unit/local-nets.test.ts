// Allow-LAN (host mode): which networks count as the machine's own
// (daemon/local-nets.ts), and where the rendered ruleset puts them: after
// every rule, before the default, with the breakout's mark (which the kill
// switch does not reject). The lab side: test/e2e/laptop-lan.test.ts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load.js';
import { MARK_BREAKOUT, planDataplane, renderRuleset } from '../../daemon/dataplane/plan.js';
import { LINK_LOCAL, localNets } from '../../daemon/local-nets.js';
import type { IpAddrLink } from '../../daemon/os-parse.js';

const addr = (cidr: string, scope = 'global'): IpAddrLink['addresses'][number] => {
  const [local, len] = cidr.split('/') as [string, string];
  return { family: local.includes(':') ? 6 : 4, local, prefixlen: Number(len), scope, cidr };
};

describe('localNets', () => {
  it('the subnets of the machine\'s interfaces and link-local; not lo, not the tunnels, not host addresses', () => {
    const links: IpAddrLink[] = [
      { ifname: 'lo', addresses: [addr('127.0.0.1/8', 'host'), addr('::1/128', 'host')] },
      { ifname: 'wlan0', addresses: [addr('192.168.1.23/24'), addr('2001:db8:5::23/64'), addr('fe80::1/64', 'link')] },
      { ifname: 'docker0', addresses: [addr('172.17.0.1/16')] },
      { ifname: 'swg-vps', addresses: [addr('10.8.0.3/32'), addr('fd08::3/128')] },
      { ifname: 'wg0', addresses: [addr('10.9.0.2/24')] }, // a gateway another program made
      { ifname: 'splitwan-dns', addresses: [addr('192.0.0.8/32', 'site')] },
    ];
    expect(localNets(links, ['swg-vps', 'wg0', 'splitwan-dns'])).toEqual({ v4: ['169.254.0.0/16', '172.17.0.0/16', '192.168.1.0/24'], v6: ['2001:db8:5::/64', 'fe80::/10'] });
  });

  it('a subnet inside another, or twice, is kept once (nftables refuses overlapping intervals)', () => {
    const links: IpAddrLink[] = [
      { ifname: 'eth0', addresses: [addr('10.1.2.3/16'), addr('169.254.7.7/16', 'link')] },
      { ifname: 'eth1', addresses: [addr('10.1.9.9/24'), addr('10.1.200.1/16')] },
    ];
    expect(localNets(links, [])).toEqual({ v4: ['10.1.0.0/16', '169.254.0.0/16'], v6: ['fe80::/10'] });
  });

  it('no interfaces: link-local only', () => {
    expect(localNets([], [])).toEqual({ v4: [...LINK_LOCAL.v4], v6: [...LINK_LOCAL.v6] });
  });
});

describe('allow-LAN in the ruleset', () => {
  let dir: string;
  const key = (): string => randomBytes(32).toString('base64');
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'splitwan-allowlan-'));
    writeFileSync(join(dir, 'gw1.conf'), `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const classify = async (o: { mode: 'host' | 'router'; allowLan?: boolean }): Promise<string[]> => {
    const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(f, [`mode: ${o.mode}`, ...(o.mode === 'router' ? ['lan: [lan0]'] : []), 'tunnel:', ...(o.allowLan === undefined ? [] : [`  allowLan: ${o.allowLan}`]), '  gateways:', '    - { name: gw1, config: gw1.conf }', 'rules:', '  - cidrs: [192.168.1.50/32]', '    via: gw1', 'default: tunnel', ''].join('\n'));
    const loaded = await loadConfig(f);
    const p = planDataplane({ config: loaded.config, listCidrs: new Map(), wan: 'wlan0', active: 'gw1', healthy: () => true, dnsPort: null, localNets: { v4: ['169.254.0.0/16', '192.168.1.0/24'], v6: ['fe80::/10'] } });
    const r = renderRuleset(p);
    return r.slice(r.indexOf('chain classify {'), r.indexOf('\n\t}', r.indexOf('chain classify {'))).split('\n').map((l) => l.trim()).filter(Boolean);
  };

  it('host mode (default on): after the rules, before the default, with the breakout\'s mark', async () => {
    const c = await classify({ mode: 'host' });
    const mark = `0x${MARK_BREAKOUT.toString(16)}`;
    expect(c.slice(-3)).toEqual([`ip daddr { 169.254.0.0/16, 192.168.1.0/24 } meta mark set ${mark} return`, `ip6 daddr { fe80::/10 } meta mark set ${mark} return`, 'meta mark set 0x1f00']);
    // A rule for a LAN address still wins (it comes first).
    expect(c.findIndex((l) => l.includes('192.168.1.50'))).toBeLessThan(c.findIndex((l) => l.includes('192.168.1.0/24')));
  });

  it('off (tunnel.allowLan: false), and router mode (the LAN is not routed through it): nothing', async () => {
    for (const o of [{ mode: 'host' as const, allowLan: false }, { mode: 'router' as const }]) {
      expect((await classify(o)).some((l) => l.includes('192.168.1.0/24'))).toBe(false);
    }
  });
});
