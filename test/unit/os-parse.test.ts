import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  OS_PARSE_CODE,
  ParseError,
  parseIpLinks,
  parseIpRoutes,
  parseIpRules,
  parseNftSets,
  parseNftTable,
  parseWgDump,
  type IpRoute,
  type WgDump,
} from '../../daemon/os-parse.js';

// Captured from real runs (docs/design/dataplane-notes.md §9).
const FIXTURES = new URL('../fixtures/os/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');

// Public keys in the fixtures.
const ROUTER_A = 'ZBoe7BP0sN1ejHRijgYavy/+w2FXWdpnQwUD/RQ8WHw='; // swg4023a
const GW1 = 'Ru7zj0td4ZlHef1wQxMd2dBKC8YbHPGSo4gk3sOWjUU='; // gwg4023a
const GW2 = 'NXmZaJxNnP4UhDYQxmxlt3WypLEo2UuwjQKwgV9I2ho='; // gwg4023b

// Made with crypto.randomBytes(32).toString('base64') for these tests only.
const PRIV = 'zEb0FFl3jTW/rjRjhiZJlt9g5HFQLJyWO6qxIwF1lLc=';
const PSK = 'fwI3MBmklGjNdLlvMI1jplyJhZutHnXvH8CDI+QLFT4=';
const PEER = 'hxUiL4Cb3oTMws0R+8YYctORffV9fr043j5fkc0bxQk=';

function parseError(fn: () => unknown): ParseError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ParseError);
    expect((err as ParseError).code).toBe('SPLITWAN_OS_PARSE');
    return err as ParseError;
  }
  throw new Error('expected a ParseError');
}

describe('ParseError', () => {
  it('is an Error with the documented code and names the tool', () => {
    const err = parseError(() => parseIpRules('{'));
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('ParseError');
    expect(OS_PARSE_CODE).toBe('SPLITWAN_OS_PARSE');
    expect(err.tool).toBe('ip rule');
    expect(err.message).toMatch(/^ip rule: the output is not JSON/);
  });
});

describe('parseWgDump', () => {
  it('reads the router side (wg-show-dump.txt)', () => {
    expect(parseWgDump(fixture('wg-show-dump.txt'))).toEqual({
      iface: { publicKey: ROUTER_A, listenPort: 47484, fwmark: 0x1000 },
      peers: [
        {
          publicKey: GW1,
          hasPresharedKey: false,
          endpoint: { host: '10.99.3.2', port: 51820 },
          allowedIps: ['0.0.0.0/0', '::/0'],
          latestHandshake: 1795424720_000,
          rxBytes: 19132,
          txBytes: 241746580,
          keepalive: 25,
        },
      ],
    } satisfies WgDump);
  });

  it('reads a gateway side: fwmark and keepalive off (wg-show-dump-server.txt)', () => {
    expect(parseWgDump(fixture('wg-show-dump-server.txt'))).toEqual({
      iface: { publicKey: GW1, listenPort: 51820, fwmark: null },
      peers: [
        {
          publicKey: ROUTER_A,
          hasPresharedKey: false,
          endpoint: { host: '10.99.2.2', port: 47484 },
          allowedIps: ['10.64.0.2/32', 'fd64::2/128'],
          latestHandshake: 1795424720_000,
          rxBytes: 333956,
          txBytes: 19132,
          keepalive: null,
        },
      ],
    });
  });

  it('an interface without peers', () => {
    expect(parseWgDump(`(hidden)\t${ROUTER_A}\t51820\toff\n`)).toEqual({
      iface: { publicKey: ROUTER_A, listenPort: 51820, fwmark: null },
      peers: [],
    });
  });

  it('an interface created but not configured yet: (none) keys, port 0', () => {
    expect(parseWgDump('(none)\t(none)\t0\toff\n').iface).toEqual({ publicKey: null, listenPort: 0, fwmark: null });
  });

  it('fwmark in hex or decimal; 0 counts as off', () => {
    const mark = (f: string): number | null => parseWgDump(`(hidden)\t${ROUTER_A}\t1\t${f}`).iface.fwmark;
    expect(mark('0x1000')).toBe(4096);
    expect(mark('4608')).toBe(0x1200);
    expect(mark('off')).toBeNull();
    expect(mark('0x0')).toBeNull();
  });

  it('a peer never handshaken, without endpoint or allowed IPs', () => {
    const dump = parseWgDump(`(hidden)\t${ROUTER_A}\t51820\toff\n${PEER}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n`);
    expect(dump.peers).toEqual([
      {
        publicKey: PEER,
        hasPresharedKey: false,
        endpoint: null,
        allowedIps: [],
        latestHandshake: null,
        rxBytes: 0,
        txBytes: 0,
        keepalive: null,
      },
    ]);
  });

  it('an IPv6 endpoint, a preshared key, several peers', () => {
    const text = [
      `${PRIV}\t${ROUTER_A}\t51820\t0x1000`,
      `${PEER}\t${PSK}\t[fd99:3::2]:51820\t10.64.0.1/32,fd64::1/128\t1795424700\t1\t2\t15`,
      `${GW2}\t(none)\t[fe80::1%wan0]:443\t0.0.0.0/0\t0\t3\t4\toff`,
    ].join('\n');
    const dump = parseWgDump(text);
    expect(dump.peers.map((p) => [p.publicKey, p.hasPresharedKey, p.endpoint, p.keepalive])).toEqual([
      [PEER, true, { host: 'fd99:3::2', port: 51820 }, 15],
      [GW2, false, { host: 'fe80::1%wan0', port: 443 }, null],
    ]);
    expect(dump.peers[0]?.latestHandshake).toBe(1795424700_000);
  });

  it('never keeps the private key or the preshared key', () => {
    const text =
      `${PRIV}\t${ROUTER_A}\t51820\t0x1000\n` +
      `${PEER}\t${PSK}\t10.99.3.2:51820\t0.0.0.0/0,::/0\t1795424720\t1\t2\t25\n`;
    const out = JSON.stringify(parseWgDump(text));
    expect(out).not.toContain(PRIV);
    expect(out).not.toContain(PSK);
    expect(out).toContain(PEER);
    expect(parseWgDump(text).peers[0]?.hasPresharedKey).toBe(true);
  });

  it('never puts key material into an error message', () => {
    const bad = [
      `${PRIV}\t${ROUTER_A}\t${PSK}\toff`, // a key where the port should be
      `${PRIV}\t${PSK}x\t51820\toff`, // a broken public key
      `${PRIV}\t${ROUTER_A}\t51820\toff\n${PEER}\t${PSK}\t10.99.3.2:51820\t0.0.0.0/0\t1\t2\t3`, // 7 fields
      `${PRIV}\t${ROUTER_A}\t51820\toff\n${PEER}\t${PSK}\t${PRIV}\t0.0.0.0/0\t1\t2\t3\toff`, // a key as endpoint
      `${PRIV}\t${ROUTER_A}\t51820\toff\n${PEER}\t${PSK}\t(none)\t${PRIV}\t1\t2\t3\toff`, // a key as allowed-ips
    ];
    for (const text of bad) {
      const err = parseError(() => parseWgDump(text));
      expect(err.message).toMatch(/^wg show dump: line \d/);
      expect(err.message).not.toContain(PRIV);
      expect(err.message).not.toContain(PSK);
    }
  });

  it('rejects malformed dumps', () => {
    const head = `(hidden)\t${ROUTER_A}\t51820\toff`;
    const peer = (f: Partial<Record<number, string>>): string =>
      [PEER, '(none)', '10.0.0.1:51820', '0.0.0.0/0', '0', '0', '0', 'off'].map((v, i) => f[i] ?? v).join('\t');
    const cases = [
      '',
      '\n\n',
      `${head}\textra`,
      `(hidden)\t${ROUTER_A}\t51820`,
      `(hidden)\t${ROUTER_A}\t65536\toff`,
      `(hidden)\t${ROUTER_A}\t-1\toff`,
      `(hidden)\t${ROUTER_A}\t51820\ton`,
      `(hidden)\t${ROUTER_A}\t51820\t0x100000000`,
      `(hidden)\tnotakey\t51820\toff`,
      `${head}\n${peer({ 0: 'short' })}`,
      `${head}\n${peer({ 2: '10.0.0.1' })}`,
      `${head}\n${peer({ 2: '10.0.0.1:70000' })}`,
      `${head}\n${peer({ 2: 'example.com:51820' })}`,
      `${head}\n${peer({ 2: 'fd00::1:51820' })}`,
      `${head}\n${peer({ 3: '10.0.0.0/33' })}`,
      `${head}\n${peer({ 3: '10.0.0.0/8,' })}`,
      `${head}\n${peer({ 4: 'never' })}`,
      `${head}\n${peer({ 5: '1.5' })}`,
      `${head}\n${peer({ 6: '' })}`,
      `${head}\n${peer({ 7: 'on' })}`,
    ];
    for (const text of cases) parseError(() => parseWgDump(text));
    expect(parseError(() => parseWgDump(`${head}\n${peer({})}\tx`)).message).toBe(
      'wg show dump: line 2: expected 8 tab-separated fields for a peer, got 9',
    );
  });
});

describe('parseIpRules', () => {
  const v4 = [
    { priority: 0, action: 'lookup', table: 'local' },
    { priority: 5000, action: 'lookup', table: 'main', suppressPrefixLength: 0 },
    { priority: 5010, action: 'lookup', table: 'main', fwmark: 0x1000, fwmask: 0xff00 },
    { priority: 5020, action: 'lookup', table: '1101', fwmark: 0x1100, fwmask: 0xff00 },
    { priority: 5021, action: 'lookup', table: '1102', fwmark: 0x1200, fwmask: 0xff00 },
    { priority: 5030, action: 'lookup', table: '1100', fwmark: 0x1f00, fwmask: 0xff00 },
    { priority: 5099, action: 'prohibit', fwmark: 0x1000, fwmask: 0xf000 },
    { priority: 32766, action: 'lookup', table: 'main' },
    { priority: 32767, action: 'lookup', table: 'default' },
  ];

  it('reads ip -j rule (ip-rule.json)', () => {
    expect(parseIpRules(fixture('ip-rule.json'))).toEqual(v4);
  });

  it('reads ip -j -6 rule and sets the family given (ip-rule6.json)', () => {
    const rules = parseIpRules(fixture('ip-rule6.json'), 6);
    expect(rules).toEqual(v4.slice(0, 8).map((r) => ({ ...r, family: 6 })));
    expect(parseIpRules(fixture('ip-rule.json'), 4).every((r) => r.family === 4)).toBe(true);
  });

  it('selectors, masks, actions ip prints in other setups', () => {
    const json = JSON.stringify([
      { priority: 100, src: '10.99.1.0', srclen: 24, dst: 'fd00::1', iif: 'lan0', table: 'main', proto: 'boot' },
      { priority: 101, src: 'all', fwmark: '0x10', table: 200 },
      { priority: 102, src: 'all', action: 'blackhole' },
      { priority: 103, src: 'all', action: 'unreachable' },
      { priority: 104, src: 'all', action: 'goto', goto: 200 },
    ]);
    expect(parseIpRules(json)).toEqual([
      { priority: 100, action: 'lookup', table: 'main', src: '10.99.1.0/24', dst: 'fd00::1', iif: 'lan0' },
      { priority: 101, action: 'lookup', table: '200', fwmark: 0x10, fwmask: 0xffffffff },
      { priority: 102, action: 'blackhole' },
      { priority: 103, action: 'unreachable' },
      { priority: 104, action: 'goto' },
    ]);
  });

  it('empty output or an empty list: no rules', () => {
    expect(parseIpRules('')).toEqual([]);
    expect(parseIpRules('[]\n')).toEqual([]);
  });

  it('rejects malformed output', () => {
    for (const json of [
      '[{"priority":1,',
      '{"priority":1}',
      '[1]',
      '[{"table":"main"}]',
      '[{"priority":-1,"table":"main"}]',
      '[{"priority":"5000","table":"main"}]',
      '[{"priority":5000}]',
      '[{"priority":5000,"table":"main","fwmark":"0xg"}]',
      '[{"priority":5000,"table":"main","fwmark":"0x100000000"}]',
      '[{"priority":5000,"table":"main","fwmask":[]}]',
      '[{"priority":5000,"table":true}]',
      '[{"priority":5000,"table":"main","suppress_prefixlen":"0"}]',
      '[{"priority":5000,"table":"main","src":"10.0.0.0","srclen":"8"}]',
    ]) {
      expect(parseError(() => parseIpRules(json)).message).toMatch(/^ip rule: /);
    }
  });
});

describe('parseIpRoutes', () => {
  it('reads ip -j route (ip-route.json)', () => {
    expect(parseIpRoutes(fixture('ip-route.json'))).toEqual([
      { dst: 'default', type: 'unicast', table: 'main', gateway: '10.99.2.1', dev: 'wan0' },
      {
        dst: '10.99.1.0/24',
        type: 'unicast',
        table: 'main',
        dev: 'lan0',
        protocol: 'kernel',
        scope: 'link',
        prefsrc: '10.99.1.1',
      },
      {
        dst: '10.99.2.0/24',
        type: 'unicast',
        table: 'main',
        dev: 'wan0',
        protocol: 'kernel',
        scope: 'link',
        prefsrc: '10.99.2.2',
      },
    ] satisfies IpRoute[]);
  });

  it('reads ip -j -6 route (ip-route6.json)', () => {
    const routes = parseIpRoutes(fixture('ip-route6.json'));
    expect(routes).toHaveLength(9);
    expect(routes[0]).toEqual({
      dst: 'fd64::2',
      type: 'unicast',
      table: 'main',
      dev: 'swg4023a',
      protocol: 'kernel',
      metric: 256,
    });
    expect(routes[8]).toEqual({
      dst: 'default',
      type: 'unicast',
      table: 'main',
      gateway: 'fd99:2::1',
      dev: 'wan0',
      metric: 1024,
    });
  });

  it('reads ip -j route show table all (ip-route-all.json): per-path tables, prohibit backstops', () => {
    const routes = parseIpRoutes(fixture('ip-route-all.json'));
    expect(routes).toHaveLength(50);
    expect(routes.slice(0, 6)).toEqual([
      { dst: 'default', type: 'prohibit', table: '1100', metric: 4000000000 },
      { dst: 'default', type: 'unicast', table: '1101', dev: 'swg4023a', scope: 'link' },
      { dst: 'default', type: 'prohibit', table: '1101', metric: 4000000000 },
      { dst: 'default', type: 'unicast', table: '1102', dev: 'swg4023b', scope: 'link' },
      { dst: 'default', type: 'prohibit', table: '1102', metric: 4000000000 },
      { dst: 'default', type: 'unicast', table: 'main', gateway: '10.99.2.1', dev: 'wan0' },
    ]);
    expect(routes[8]).toEqual({
      dst: '10.64.0.2',
      type: 'local',
      table: 'local',
      dev: 'swg4023a',
      protocol: 'kernel',
      scope: 'host',
      prefsrc: '10.64.0.2',
    });
    const count = (key: (r: IpRoute) => string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of routes) out[key(r)] = (out[key(r)] ?? 0) + 1;
      return out;
    };
    expect(count((r) => r.type)).toEqual({
      unicast: 16,
      local: 15,
      prohibit: 6,
      anycast: 6,
      multicast: 4,
      broadcast: 3,
    });
    expect(count((r) => r.table)).toEqual({ local: 28, main: 12, '1101': 4, '1102': 4, '1100': 2 });
    // Without -6, `table all` lists both families: the IPv6 dump is its tail.
    expect(routes.slice(17)).toEqual(parseIpRoutes(fixture('ip-route6-all.json')));
  });

  it('reads ip -j -6 route show table all (ip-route6-all.json): v6 prohibit routes name dev lo', () => {
    const routes = parseIpRoutes(fixture('ip-route6-all.json'));
    expect(routes).toHaveLength(33);
    expect(routes.slice(0, 2)).toEqual([
      { dst: 'default', type: 'prohibit', table: '1100', dev: 'lo', metric: 4000000000 },
      { dst: 'default', type: 'unicast', table: '1101', dev: 'swg4023a', metric: 1024 },
    ]);
    expect(routes.at(-1)).toEqual({
      dst: 'ff00::/8',
      type: 'multicast',
      table: 'local',
      dev: 'wan0',
      protocol: 'kernel',
      metric: 256,
    });
  });

  it('multipath routes and a v6 next hop for a v4 route', () => {
    const json = JSON.stringify([
      {
        dst: 'default',
        protocol: 'static',
        metric: 10,
        flags: [],
        nexthops: [
          { gateway: '10.0.0.1', dev: 'wan0', weight: 1, flags: [] },
          { gateway: '10.0.1.1', dev: 'wan1', weight: 2, flags: ['linkdown'] },
        ],
      },
      { dst: '10.9.0.0/16', via: { family: 'inet6', host: 'fe80::1' }, dev: 'wan0', protocol: 4, flags: [] },
    ]);
    expect(parseIpRoutes(json)).toEqual([
      {
        dst: 'default',
        type: 'unicast',
        table: 'main',
        protocol: 'static',
        metric: 10,
        nexthops: [
          { gateway: '10.0.0.1', dev: 'wan0', weight: 1 },
          { gateway: '10.0.1.1', dev: 'wan1', weight: 2 },
        ],
      },
      { dst: '10.9.0.0/16', type: 'unicast', table: 'main', gateway: 'fe80::1', dev: 'wan0', protocol: '4' },
    ]);
  });

  it('empty output: no routes', () => {
    expect(parseIpRoutes('')).toEqual([]);
    expect(parseIpRoutes('[]')).toEqual([]);
  });

  it('rejects malformed output', () => {
    for (const json of [
      'Error: ipv4: FIB table does not exist.',
      '{"dst":"default"}',
      '[null]',
      '[{"dev":"wan0"}]',
      '[{"dst":""}]',
      '[{"dst":"default","metric":"1024"}]',
      '[{"dst":"default","metric":-1}]',
      '[{"dst":"default","dev":4}]',
      '[{"dst":"default","type":null}]',
      '[{"dst":"default","via":{"family":"inet6"}}]',
      '[{"dst":"default","nexthops":{}}]',
      '[{"dst":"default","nexthops":[1]}]',
      '[{"dst":"default","nexthops":[{"weight":"1"}]}]',
    ]) {
      expect(parseError(() => parseIpRoutes(json)).message).toMatch(/^ip route: /);
    }
  });
});

describe('parseIpLinks', () => {
  it('reads ip -j link (ip-link.json)', () => {
    expect(parseIpLinks(fixture('ip-link.json'))).toEqual([
      { ifname: 'lo', ifindex: 1, mtu: 65536, up: true, operstate: 'UNKNOWN' },
      { ifname: 'lan0', ifindex: 2, mtu: 1500, up: true, operstate: 'UP' },
      { ifname: 'wan0', ifindex: 3, mtu: 1500, up: true, operstate: 'UP' },
      { ifname: 'swg4023a', ifindex: 4, mtu: 1420, up: true, operstate: 'UNKNOWN' },
      { ifname: 'swg4023b', ifindex: 5, mtu: 1420, up: true, operstate: 'UNKNOWN' },
    ]);
  });

  it('reads ip -j -d link (ip-link-details.json): wireguard-go links are tun', () => {
    const links = parseIpLinks(fixture('ip-link-details.json'));
    expect(links.map((l) => [l.ifname, l.kind])).toEqual([
      ['lo', undefined],
      ['lan0', 'veth'],
      ['wan0', 'veth'],
      ['swg4023a', 'tun'],
      ['swg4023b', 'tun'],
    ]);
    expect(links.map(({ kind: _kind, ...rest }) => rest)).toEqual(parseIpLinks(fixture('ip-link.json')));
  });

  it('a down link, an enslaved link', () => {
    const json = JSON.stringify([
      { ifindex: 9, ifname: 'swg1', flags: ['POINTOPOINT', 'MULTICAST', 'NOARP'], mtu: 1420, operstate: 'DOWN' },
      { ifindex: 10, ifname: 'eth1', flags: ['BROADCAST', 'UP'], mtu: 1500, operstate: 'UP', master: 'br0' },
    ]);
    expect(parseIpLinks(json)).toEqual([
      { ifname: 'swg1', ifindex: 9, mtu: 1420, up: false, operstate: 'DOWN' },
      { ifname: 'eth1', ifindex: 10, mtu: 1500, up: true, operstate: 'UP', master: 'br0' },
    ]);
  });

  it('rejects malformed output', () => {
    for (const json of [
      '[',
      '"lo"',
      '[{"ifindex":1,"flags":[],"mtu":1500}]',
      '[{"ifname":"lo","flags":[],"mtu":1500}]',
      '[{"ifname":"lo","ifindex":1,"flags":[]}]',
      '[{"ifname":"lo","ifindex":1,"mtu":1500}]',
      '[{"ifname":"lo","ifindex":1,"mtu":1500,"flags":"UP"}]',
      '[{"ifname":"lo","ifindex":1,"mtu":1500,"flags":[1]}]',
      '[{"ifname":"lo","ifindex":1,"mtu":1500,"flags":[],"linkinfo":"tun"}]',
      '[{"ifname":"lo","ifindex":1,"mtu":1500,"flags":[],"master":5}]',
    ]) {
      expect(parseError(() => parseIpLinks(json)).message).toMatch(/^ip link: /);
    }
  });
});

describe('parseNftTable', () => {
  it('reads nft -j list table inet splitwan (nft-table.json)', () => {
    const t = parseNftTable(fixture('nft-table.json'));
    expect(t).not.toBeNull();
    expect(t?.family).toBe('inet');
    expect(t?.name).toBe('splitwan');
    expect(t?.chains).toEqual([
      { name: 'classify', rules: 4 },
      { name: 'resolve', rules: 2 },
      { name: 'reject_dead', rules: 2 },
      { name: 'pre', hook: 'prerouting', priority: -150, type: 'filter', policy: 'accept', rules: 5 },
      { name: 'out', hook: 'output', priority: -150, type: 'route', policy: 'accept', rules: 8 },
      { name: 'mss', hook: 'forward', priority: 0, type: 'filter', policy: 'accept', rules: 1 },
      { name: 'pre_nat', hook: 'prerouting', priority: -100, type: 'nat', policy: 'accept', rules: 1 },
      { name: 'out_nat', hook: 'output', priority: -100, type: 'nat', policy: 'accept', rules: 1 },
      { name: 'post', hook: 'postrouting', priority: 100, type: 'nat', policy: 'accept', rules: 1 },
    ]);
    expect(t?.sets).toEqual([
      {
        name: 'dst4',
        type: 'ipv4_addr',
        map: 'mark',
        flags: ['timeout'],
        elements: [
          // timeout 5m expires 4m59s988ms in nft-table.nft: nft -j truncates to whole seconds.
          { key: '10.99.9.9', value: 0x1200, timeoutMs: 300_000, expiresMs: 299_000 },
          { key: '10.99.9.10', value: 0x1000, timeoutMs: 3_600_000, expiresMs: 3_599_000 },
          { key: '10.99.9.11', value: 0x1100 }, // added without a timeout: a bare value
        ],
      },
      {
        name: 'dst6',
        type: 'ipv6_addr',
        map: 'mark',
        flags: ['timeout'],
        elements: [{ key: 'fd99:9::9', value: 0x1200, timeoutMs: 300_000, expiresMs: 299_000 }],
      },
      { name: 'active', type: 'mark', map: 'mark', flags: [], elements: [{ key: String(0x1f00), value: 0x1100 }] },
      {
        name: 'sport_path',
        type: 'inet_service',
        map: 'mark',
        flags: ['interval'],
        elements: [
          { key: '40000-40999', value: 0x1100 },
          { key: '41000-41999', value: 0x1200 },
        ],
      },
    ]);
  });

  it('nft -j -t (terse) lists the chains, rules and sets without their elements (nft-table-terse.json)', () => {
    const t = parseNftTable(fixture('nft-table-terse.json'));
    expect(t?.chains).toEqual([{ name: 'c', hook: 'output', priority: 0, type: 'filter', policy: 'accept', rules: 1 }]);
    expect(t?.sets.map((x) => [x.name, x.elements.length])).toEqual([
      ['tag4_x', 0],
      ['active', 0],
    ]);
  });

  it('an absent table (nothing on stdout) is null', () => {
    expect(parseNftTable('')).toBeNull();
    expect(parseNftTable('  \n')).toBeNull();
    expect(parseNftTable('{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}')).toBeNull();
  });

  it('an empty table, an empty map (the kill switch)', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'inet', name: 'splitwan', handle: 5 } },
        { map: { family: 'inet', name: 'active', table: 'splitwan', type: 'mark', map: 'mark' } },
        { chain: { family: 'inet', table: 'splitwan', name: 'classify', handle: 1 } },
      ],
    });
    expect(parseNftTable(json)).toEqual({
      family: 'inet',
      name: 'splitwan',
      chains: [{ name: 'classify', rules: 0 }],
      sets: [{ name: 'active', type: 'mark', map: 'mark', flags: [], elements: [] }],
    });
  });

  it('sets, prefixes, timeouts on plain sets, concatenations and verdict maps', () => {
    const json = JSON.stringify({
      nftables: [
        { table: { family: 'inet', name: 'splitwan' } },
        {
          set: {
            name: 'r1_4',
            type: 'ipv4_addr',
            flags: ['interval', 'timeout'],
            elem: [
              '10.1.1.1',
              { prefix: { addr: '10.2.0.0', len: 16 } },
              { elem: { val: '10.3.3.3', timeout: 60, expires: 12 } },
              { elem: { val: { prefix: { addr: '10.4.0.0', len: 24 } }, timeout: 30, expires: 29.5 } },
              { range: ['10.5.0.1', '10.5.0.9'] },
            ],
          },
        },
        {
          set: {
            name: 'pairs',
            type: ['ipv4_addr', 'inet_service'],
            flags: 'constant',
            elem: [{ concat: ['10.0.0.1', 443] }],
          },
        },
        {
          map: {
            name: 'vm',
            type: 'mark',
            map: 'verdict',
            elem: [
              [4096, { accept: null }],
              [4352, { jump: { target: 'classify' } }],
              [4608, { goto: { target: 'resolve' } }],
              [4864, 'drop'],
            ],
          },
        },
      ],
    });
    expect(parseNftTable(json)?.sets).toEqual([
      {
        name: 'r1_4',
        type: 'ipv4_addr',
        flags: ['interval', 'timeout'],
        elements: [
          { key: '10.1.1.1' },
          { key: '10.2.0.0/16' },
          { key: '10.3.3.3', timeoutMs: 60_000, expiresMs: 12_000 },
          { key: '10.4.0.0/24', timeoutMs: 30_000, expiresMs: 29_500 },
          { key: '10.5.0.1-10.5.0.9' },
        ],
      },
      {
        name: 'pairs',
        type: ['ipv4_addr', 'inet_service'],
        flags: ['constant'],
        elements: [{ key: '10.0.0.1 . 443' }],
      },
      {
        name: 'vm',
        type: 'mark',
        map: 'verdict',
        flags: [],
        elements: [
          { key: '4096', value: 'accept' },
          { key: '4352', value: 'jump classify' },
          { key: '4608', value: 'goto resolve' },
          { key: '4864', value: 'drop' },
        ],
      },
    ]);
  });

  it('rejects malformed output', () => {
    const table = { table: { family: 'inet', name: 'splitwan' } };
    const withSet = (set: unknown): string => JSON.stringify({ nftables: [table, { set }] });
    for (const json of [
      'Error: No such file or directory',
      '[]',
      '{"nftables": {}}',
      '{"nftables": [1]}',
      '{"nftables": [{"table": {"family": "inet"}}]}',
      JSON.stringify({ nftables: [table, table] }),
      JSON.stringify({ nftables: [table, { chain: { family: 'inet' } }] }),
      JSON.stringify({ nftables: [table, { chain: { name: 'pre', prio: 'mangle' } }] }),
      JSON.stringify({ nftables: [table, { rule: { family: 'inet', handle: 4 } }] }),
      withSet({ type: 'ipv4_addr' }),
      withSet({ name: 's', type: 4 }),
      withSet({ name: 's', type: 'mark', map: 4 }),
      withSet({ name: 's', type: 'mark', flags: [1] }),
      withSet({ name: 's', type: 'mark', elem: {} }),
      withSet({ name: 's', type: 'mark', elem: [[1, 2, 3]] }),
      withSet({ name: 's', type: 'mark', elem: [null] }),
      withSet({ name: 's', type: 'mark', elem: [{ elem: 5 }] }),
      withSet({ name: 's', type: 'mark', elem: [{ elem: { val: 1, timeout: '5m' } }] }),
      withSet({ name: 's', type: 'mark', elem: [{ elem: { val: 1, expires: -1 } }] }),
      withSet({ name: 's', type: 'mark', elem: [{ range: [1] }] }),
      withSet({ name: 's', type: 'mark', elem: [{ prefix: { addr: '10.0.0.0' } }] }),
      withSet({ name: 's', type: 'mark', elem: [[1, { jump: {} }]] }),
      withSet({ name: 's', type: 'mark', elem: [[1, { unknown: 1 }]] }),
    ]) {
      expect(parseError(() => parseNftTable(json)).message).toMatch(/^nft list table: /);
    }
  });
});

describe('no parser throws anything but ParseError', () => {
  const parsers: [string, (s: string) => unknown][] = [
    ['parseWgDump', parseWgDump],
    ['parseIpRules', (s) => parseIpRules(s)],
    ['parseIpRoutes', parseIpRoutes],
    ['parseIpLinks', parseIpLinks],
    ['parseNftTable', parseNftTable],
  ];

  const onlyParseErrors = (parse: (s: string) => unknown, s: string): void => {
    try {
      parse(s);
    } catch (err) {
      if (!(err instanceof ParseError) || err.code !== 'SPLITWAN_OS_PARSE') throw err;
    }
  };

  // Tab-separated lines built from pieces wg really prints, so the field parsers are reached.
  const wgPiece = fc.constantFrom(
    '(hidden)',
    '(none)',
    'off',
    '0',
    '25',
    '51820',
    '0x1000',
    '1795424720',
    ROUTER_A,
    PEER,
    'swg1',
    '10.99.3.2:51820',
    '[fd99::2]:51820',
    '0.0.0.0/0,::/0',
    '',
  );
  const wgText = fc
    .array(fc.array(fc.oneof(wgPiece, fc.string({ maxLength: 8 })), { minLength: 1, maxLength: 10 }), { maxLength: 5 })
    .map((ls) => ls.map((fs) => fs.join('\t')).join('\n'));

  const text = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.json(),
    wgText,
    fc
      .array(fc.constantFrom('[', ']', '{', '}', ',', ':', '"', 'null', '1', 'Deleted ', 'default ', 'dev ', 'via '), {
        maxLength: 20,
      })
      .map((a) => a.join('')),
  );

  for (const [name, parse] of parsers) {
    it(`${name}: random text`, () => {
      fc.assert(fc.property(text, (s) => onlyParseErrors(parse, s)), { numRuns: 500 });
    });
  }

  // Fixtures with one value anywhere replaced by a random JSON value.
  type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
  function containers(v: Json, out: (Json[] | { [k: string]: Json })[] = []): (Json[] | { [k: string]: Json })[] {
    if (v !== null && typeof v === 'object') {
      out.push(v);
      for (const c of Array.isArray(v) ? v : Object.values(v)) containers(c, out);
    }
    return out;
  }
  const jsonFixtures: [string, (s: string) => unknown][] = [
    ['ip-rule.json', (s) => parseIpRules(s)],
    ['ip-route-all.json', parseIpRoutes],
    ['ip-link-details.json', parseIpLinks],
    ['nft-table.json', parseNftTable],
  ];
  for (const [file, parse] of jsonFixtures) {
    it(`${file} with a random value replaced`, () => {
      const base = fixture(file);
      const mutation = fc.record({
        at: fc.nat(),
        index: fc.nat(),
        key: fc.string({ maxLength: 6 }),
        value: fc.jsonValue(),
        replace: fc.boolean(),
      });
      fc.assert(
        fc.property(mutation, ({ at, index, key, value, replace }) => {
          const doc = JSON.parse(base) as Json;
          const all = containers(doc);
          const c = all[at % all.length];
          if (Array.isArray(c)) {
            if (replace && c.length > 0) c[index % c.length] = value as Json;
            else c.push(value as Json);
          } else if (c) {
            const keys = Object.keys(c);
            const k = replace && keys.length > 0 ? (keys[index % keys.length] ?? key) : key;
            c[k] = value as Json;
          }
          onlyParseErrors(parse, JSON.stringify(doc));
        }),
        { numRuns: 300 },
      );
    });
  }
});

describe('parseNftSets', () => {
  it('reads nft -j list map inet splitwan active: one element, or none (the kill switch)', () => {
    expect(parseNftSets(fixture('nft-map-active.json'))).toEqual([{ name: 'active', type: 'mark', map: 'mark', flags: [], elements: [{ key: String(0x1f00), value: 0x1100 }] }]);
    expect(parseNftSets(fixture('nft-map-active-empty.json'))).toEqual([{ name: 'active', type: 'mark', map: 'mark', flags: [], elements: [] }]);
  });

  it('refuses what is not a listing', () => {
    expect(() => parseNftSets('{"x": 1}')).toThrow(/no "nftables" list/);
    expect(() => parseNftSets('[')).toThrow();
  });
});
