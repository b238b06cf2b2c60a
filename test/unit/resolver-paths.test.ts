import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../config/types.js';
import { parseIpAddrs } from '../../daemon/os-parse.js';
import { parseResolvConf, upstreamNameservers } from '../../daemon/resolv-conf.js';
import { HOST_LISTEN, lanSubnets, listenAddresses, pathState, redirectPort, RuleTagger } from '../../daemon/resolver-paths.js';
import type { TagSets } from '../../daemon/dataplane/tagger.js';
import { rule } from '../helpers/plans.js';

const links = parseIpAddrs(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'os', 'ip-addr.json'), 'utf8'));

const up = (host: string) => ({ kind: 'plain' as const, host, port: 53, text: host });
function config(over: Partial<Config> & { dnsListen?: Config['dns']['listen'] } = {}): Config {
  const gw = (name: string, addresses: string[], dns: string) =>
    ({ name, path: `gw:${name}`, ifname: `swg-${name}`, priority: 1, wireguard: { privateKey: 'x', addresses, dns: [], peers: [], source: { file: 'f', line: 1, col: 1 } }, dns: [up(dns)], probe: null, pos: { file: 'f', line: 1, col: 1 } }) as Config['tunnel']['gateways'][number];
  return {
    mode: 'router',
    lan: ['lan0'],
    tunnel: { killSwitch: true, dns: null, gateways: [gw('gw1', ['10.64.0.2/32', 'fd64::2/128'], '10.64.0.1'), gw('gw2', ['10.65.0.2/32'], '10.65.0.1')] },
    dns: { listen: over.dnsListen ?? 'auto' } as Config['dns'],
    ...over,
  } as Config;
}

describe('parseIpAddrs (ip -j addr, real output)', () => {
  it('reads every link with its v4/v6 addresses, prefixes and scopes', () => {
    const lan = links.find((l) => l.ifname === 'lan0')!;
    expect(lan.addresses.map((a) => [a.family, a.cidr, a.scope])).toEqual([
      [4, '192.168.77.1/24', 'global'],
      [6, 'fd77::1/64', 'global'],
      [6, expect.stringMatching(/^fe80::/), 'link'],
    ]);
    expect(links.find((l) => l.ifname === 'lo')!.addresses.map((a) => a.local)).toEqual(['127.0.0.1', '::1']);
  });
  it('names the tool and the link on garbage', () => {
    expect(() => parseIpAddrs('[{"ifname":"x","addr_info":[{"family":"inet"}]}]')).toThrow(/ip addr.*x address #0/);
  });
});

describe('where the resolver listens and whom it answers', () => {
  it('router mode: port 53 on the LAN addresses (not link-local), the LAN prefixes, redirect to 53', () => {
    const c = config();
    const listen = listenAddresses(c, links);
    expect(listen).toEqual([
      { host: '192.168.77.1', port: 53 },
      { host: 'fd77::1', port: 53 },
    ]);
    expect(lanSubnets(c, links)).toEqual(['192.168.77.0/24', 'fd77::/64']);
    expect(redirectPort(c, listen, links)).toBe(53);
  });
  it('host mode: 127.0.0.53 and loopback only; no redirect', () => {
    const c = config({ mode: 'host', lan: [] });
    expect(listenAddresses(c, links)).toEqual([HOST_LISTEN]);
    expect(lanSubnets(c, links)).toEqual([]);
    expect(redirectPort(c, [HOST_LISTEN], links)).toBeNull();
  });
  it('dns.listen wins; a port the LAN address is not served on gets no redirect', () => {
    const c = config({ dnsListen: [{ host: '127.0.0.1', port: 5353 }] });
    expect(listenAddresses(c, links)).toEqual([{ host: '127.0.0.1', port: 5353 }]);
    expect(redirectPort(c, [{ host: '127.0.0.1', port: 5353 }], links)).toBeNull();
    expect(redirectPort(c, [{ host: '0.0.0.0', port: 5353 }], links)).toBe(5353);
  });
});

describe('pathState', () => {
  it('tunnel names use the active gateway only; no active gateway, no resolver (never the breakout)', () => {
    let active: string | null = 'gw1';
    const c = config();
    const p = pathState({ config: () => c, plan: () => ({ active }), breakout: () => [up('192.0.2.53')], healthy: () => true });
    expect(p.upstreams('tunnel').map((u) => u.text)).toEqual(['10.64.0.1']);
    expect(p.upstreams('gw:gw2').map((u) => u.text)).toEqual(['10.65.0.1']);
    expect(p.upstreams('breakout').map((u) => u.text)).toEqual(['192.0.2.53']);
    active = null;
    expect(p.upstreams('tunnel')).toEqual([]);
    active = 'gw2';
    expect(p.upstreams('tunnel').map((u) => u.text)).toEqual(['10.65.0.1']);
  });
  it('IPv6 follows the gateway\'s tunnel addresses', () => {
    let active = 'gw1';
    const c = config();
    const p = pathState({ config: () => c, plan: () => ({ active }), breakout: () => [], healthy: () => true });
    expect(p.ipv6('tunnel')).toBe(true);
    expect(p.ipv6('gw:gw2')).toBe(false);
    active = 'gw2';
    expect(p.ipv6('tunnel')).toBe(false);
    expect(p.ipv6('breakout')).toBe(true);
  });
  it('a pinned gateway that is down falls to the next candidate', () => {
    const p = pathState({ config: () => config(), plan: () => ({ active: 'gw1' }), breakout: () => [], healthy: (g) => g !== 'gw2' });
    expect(p.pick(['gw:gw2', 'breakout'])).toBe('breakout');
    expect(p.pick(['gw:gw2'])).toBe('gw:gw2'); // the last candidate: fail closed
  });
});

describe('RuleTagger', () => {
  class Nft {
    calls: string[] = [];
    pending(_s: TagSets, a: readonly string[]) {
      return a.filter((x) => x !== 'fresh');
    }
    tag(s: TagSets, a: readonly string[]) {
      this.calls.push(`tag ${s.v4} ${a.join(',')}`);
      return Promise.resolve();
    }
  }
  it('tags into the rule\'s sets, skips what is fresh; the default and untagged rules tag nothing', async () => {
    const nft = new Nft();
    const t = new RuleTagger(nft, () => ({ rules: [rule(0, 'aaaa0000', { tagged: true }), rule(1, 'bbbb0000', { tagged: false })] }));
    await t.tag(0, ['198.51.100.1', 'fresh'], 1000);
    expect(t.tag(0, ['fresh'], 1000)).toBeNull();
    expect(t.tag(1, ['198.51.100.2'], 1000)).toBeNull();
    expect(t.tag(-1, ['198.51.100.3'], 1000)).toBeNull();
    expect(nft.calls).toEqual(['tag tag4_aaaa0000 198.51.100.1']);
  });

  it('follows the plan in force: a new plan\'s rules count from the next answer on', async () => {
    const nft = new Nft();
    let plan: { rules: ReturnType<typeof rule>[] } | null = { rules: [rule(0, 'aaaa0000', { tagged: true })] };
    const t = new RuleTagger(nft, () => plan);
    await t.tag(0, ['198.51.100.1'], 1000);
    plan = { rules: [rule(0, 'cccc0000', { tagged: true }), rule(1, 'bbbb0000', { tagged: true })] };
    await t.tag(0, ['198.51.100.2'], 1000);
    await t.tag(1, ['198.51.100.3'], 1000);
    plan = { rules: [rule(0, 'cccc0000', { tagged: false })] };
    expect(t.tag(0, ['198.51.100.4'], 1000)).toBeNull();
    plan = null;
    expect(t.tag(1, ['198.51.100.5'], 1000)).toBeNull();
    expect(nft.calls).toEqual(['tag tag4_aaaa0000 198.51.100.1', 'tag tag4_cccc0000 198.51.100.2', 'tag tag4_bbbb0000 198.51.100.3']);
  });
});

describe('resolv.conf', () => {
  it('reads nameservers, skipping comments and other keywords', () => {
    expect(parseResolvConf('# x\nsearch lan\nnameserver 192.0.2.1 # isp\nnameserver fe80::1%eth0\nnameserver bogus\noptions edns0\nnameserver 192.0.2.1\n')).toEqual(['192.0.2.1', 'fe80::1%eth0']);
  });
  it('skips stubs: the systemd-resolved file is used when /etc/resolv.conf has only 127.0.0.53', () => {
    expect(upstreamNameservers(['nameserver 127.0.0.53\n', 'nameserver 192.0.2.1\n'], [])).toEqual(['192.0.2.1']);
    expect(upstreamNameservers(['nameserver 192.168.77.1\nnameserver 192.0.2.9\n'], ['192.168.77.1'])).toEqual(['192.0.2.9']);
    expect(upstreamNameservers([null, 'nameserver ::1\n'], [])).toEqual([]);
  });
});
