// Source-port paths (SPLITWAN_NATIVE=off, platforms without koffi): the
// ranges, the ip rules and nft lines the plan renders for them
// (daemon/dataplane/port-paths.ts), and the sockets that bind them
// (daemon/port-sockets.ts) on loopback: the source port the peer sees.
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GATEWAY_FAMILY_SLOTS,
  LINK_SLOTS,
  markOfPort,
  parsePortList,
  PORT_PATH_FIRST,
  PORT_PATH_LAST,
  PORT_PATH_WINDOW,
  portPathMarkLines,
  portPathProhibitPriority,
  portPathRules,
  portRangeOfMark,
  PORTS_PER_PATH,
  reservedPortsWith,
} from '../../daemon/dataplane/port-paths.js';
import {
  gatewayMark,
  ipRuleSelector,
  linkMark,
  linkTable,
  MARK_BLOCK,
  MARK_BREAKOUT,
  MARK_TUNNEL,
  MARK_UNMATCHED,
  MAX_GATEWAYS,
  MAX_LINKS,
  renderIpRules,
  renderRuleset,
  type PlannedLink,
} from '../../daemon/dataplane/plan.js';
import { parseConntrackOriginalDst, parseIpRules } from '../../daemon/os-parse.js';
import { PortPathSockets } from '../../daemon/port-sockets.js';
import { SocketError } from '../../daemon/sockets.js';
import { samplePlan } from '../helpers/plans.js';

const hex = (m: number): string => `0x${m.toString(16)}`;

describe('port ranges of path marks', () => {
  it('breakout, each gateway slot and each link slot own 200 ports from 61000, above the kernel\'s ephemeral range; the mark comes back from any of them', () => {
    expect(portRangeOfMark(MARK_BREAKOUT)).toEqual({ first: 61000, last: 61199 });
    expect(portRangeOfMark(gatewayMark(0))).toEqual({ first: 61200, last: 61399 });
    expect(portRangeOfMark(gatewayMark(12))).toEqual({ first: 63600, last: 63799 });
    expect(portRangeOfMark(linkMark(0))).toEqual({ first: 63800, last: 63999 });
    expect(portRangeOfMark(linkMark(MAX_LINKS - 1))).toEqual({ first: 65200, last: 65399 });
    expect(PORT_PATH_WINDOW).toEqual({ first: 61000, last: 65399 });
    const marks = [MARK_BREAKOUT, ...Array.from({ length: MAX_GATEWAYS }, (_, i) => gatewayMark(i)), ...Array.from({ length: MAX_LINKS }, (_, i) => linkMark(i))];
    let next = PORT_PATH_FIRST;
    for (const m of marks) {
      const r = portRangeOfMark(m)!;
      // One after the other, no gap, no overlap: the window is exactly the ranges.
      expect(r.first, hex(m)).toBe(next);
      expect(r.last - r.first + 1).toBe(PORTS_PER_PATH);
      expect(r.first).toBeGreaterThan(60999);
      expect(r.last).toBeLessThan(65535); // ip refuses a range ending at 65535
      expect(markOfPort(r.first)).toBe(m);
      expect(markOfPort(r.last)).toBe(m);
      // A path mark's low bits (the ct mark's flags) do not change its range.
      expect(portRangeOfMark(m | MARK_UNMATCHED)).toEqual(r);
      next = r.last + 1;
    }
    expect(next - 1).toBe(PORT_PATH_LAST);
    expect(GATEWAY_FAMILY_SLOTS).toBe(1 + MAX_GATEWAYS);
    expect(LINK_SLOTS).toBe(MAX_LINKS);
    expect(markOfPort(PORT_PATH_FIRST - 1)).toBeNull();
    expect(markOfPort(PORT_PATH_LAST + 1)).toBeNull();
    expect(markOfPort(65535)).toBeNull();
  });

  it('no range for the logical tunnel mark, block, a link slot past the last, or what is not a path mark', () => {
    for (const m of [MARK_TUNNEL, MARK_BLOCK, 0, 0x2800, 0x2f00, 0x3000, 0x0f00, 0x11000, -0x1000, 4096.5]) expect(portRangeOfMark(m), String(m)).toBeNull();
  });
});

describe('the kernel\'s reserved ports (ip_local_reserved_ports)', () => {
  it('the window is added beside what is reserved; nothing to write when it is covered already', () => {
    expect(reservedPortsWith('', PORT_PATH_WINDOW)).toBe('61000-65399');
    expect(reservedPortsWith('\n', PORT_PATH_WINDOW)).toBe('61000-65399');
    expect(reservedPortsWith('5000-5010,8080', PORT_PATH_WINDOW)).toBe('5000-5010,8080,61000-65399');
    expect(reservedPortsWith('61000-65399', PORT_PATH_WINDOW)).toBeNull();
    expect(reservedPortsWith('1024-65535', PORT_PATH_WINDOW)).toBeNull();
    // Covered by pieces that touch.
    expect(reservedPortsWith('62000-65535,61000-61999', PORT_PATH_WINDOW)).toBeNull();
    // A hole of one port is not covered.
    expect(reservedPortsWith('61000-62000,62002-65399', PORT_PATH_WINDOW)).toBe('61000-62000,62002-65399,61000-65399');
    expect(reservedPortsWith('61000-65398', PORT_PATH_WINDOW)).toBe('61000-65398,61000-65399');
  });

  it('the sysctl\'s list parses; what does not is left out', () => {
    expect(parsePortList('1,5-9, 20-21\n')).toEqual([{ first: 1, last: 1 }, { first: 5, last: 9 }, { first: 20, last: 21 }]);
    expect(parsePortList('')).toEqual([]);
    expect(parsePortList('9-5,x,70000,1-2-3')).toEqual([]);
  });
});

const plan = {
  gateways: [
    { name: 'a', ifname: 'swg-a', mark: gatewayMark(0), table: 1101, addrs4: ['10.64.0.2'], addrs6: [], ipv6: false },
    { name: 'b', ifname: 'swg-b', mark: gatewayMark(1), table: 1102, addrs4: ['10.64.0.2'], addrs6: [], ipv6: false },
  ],
  mode: 'host' as const,
  lan: [],
};
const links: PlannedLink[] = [
  { name: 'fiber', ifname: 'wan0', mark: linkMark(0), table: linkTable(0), via4: '10.99.2.1', via6: null, weight: 1, metered: false },
  { name: 'lte', ifname: 'wan1', mark: linkMark(3), table: linkTable(3), via4: null, via6: null, weight: 1, metered: true },
];

describe('the plan with port paths', () => {
  it('each mark rule has a twin at its priority for the mark\'s ports, from this machine only (iif lo)', () => {
    const without = renderIpRules(plan);
    const rules = renderIpRules({ ...plan, portPaths: true });
    const added = rules.filter((r) => !without.includes(r) && r.sport !== undefined);
    expect(rules.slice(0, without.length)).toEqual(without);
    expect(added.filter((r) => r.family === 4).map((r) => `${r.priority} ${ipRuleSelector(r).join(' ')}`)).toEqual([
      '5010 iif lo sport 61000-61199 lookup main',
      '5020 iif lo sport 61200-61399 lookup 1101',
      '5021 iif lo sport 61400-61599 lookup 1102',
      '5041 iif lo sport 61000-65399 prohibit',
    ]);
    expect(portPathRules(without)).toEqual(added);
    // Refused after every path's rule, before the rules that send unmarked traffic into the tunnel (5050 from a tunnel address, 5080 unmarked).
    const last = Math.max(...without.filter((r) => r.action === 'lookup' && r.fwmark !== undefined && portRangeOfMark(r.fwmark) !== null).map((r) => r.priority));
    const firstUnmarked = Math.min(...without.filter((r) => r.src !== undefined || r.fwmark === 0).map((r) => r.priority));
    expect(portPathProhibitPriority()).toBeGreaterThan(last);
    expect(portPathProhibitPriority()).toBeLessThan(firstUnmarked);
  });

  it('with WAN links: each link\'s ports look up its own table at its rule\'s priority, breakout\'s the best link\'s (1200)', () => {
    const without = renderIpRules({ ...plan, links });
    const rules = renderIpRules({ ...plan, links, portPaths: true });
    const added = rules.filter((r) => r.sport !== undefined);
    for (const family of [4, 6] as const) {
      expect(added.filter((r) => r.family === family).map((r) => `${r.priority} ${ipRuleSelector(r).join(' ')}`), `IPv${family}`).toEqual([
        '5010 iif lo sport 61000-61199 lookup 1200',
        '5011 iif lo sport 63800-63999 lookup 1201',
        '5014 iif lo sport 64400-64599 lookup 1204',
        '5020 iif lo sport 61200-61399 lookup 1101',
        '5021 iif lo sport 61400-61599 lookup 1102',
        '5041 iif lo sport 61000-65399 prohibit',
      ]);
    }
    // Each twin at the priority of the rule for its mark, to the same table.
    for (const r of added.filter((x) => x.action === 'lookup')) {
      const twin = without.find((w) => w.family === r.family && w.priority === r.priority && w.fwmark !== undefined)!;
      expect(r.table).toBe(twin.table);
      expect(portRangeOfMark(twin.fwmark!)).toEqual({ first: Number(r.sport!.split('-')[0]), last: Number(r.sport!.split('-')[1]) });
    }
    expect(rules.filter((r) => r.sport === undefined)).toEqual(without);
  });

  it('ip -j rule output of such a rule parses back to the same rule (the router compares them)', () => {
    // Captured from iproute2 6.1 (Debian 12): `ip -j rule show` after `ip rule add pref 5020 iif lo sport 61696-61951 lookup 1101`.
    const json = '[{"priority":5020,"src":"all","iif":"lo","sport_start":61696,"sport_end":61951,"table":"1101"}]';
    expect(parseIpRules(json, 4)).toEqual([{ priority: 5020, family: 4, iif: 'lo', sport: '61696-61951', table: '1101', action: 'lookup' }]);
  });

  it('the out chain marks the ports first, original direction only (host and router mode); without port paths nothing changes', () => {
    for (const mode of ['host', 'router'] as const) {
      const off = renderRuleset(samplePlan({ mode }));
      const on = renderRuleset(samplePlan({ mode, portPaths: true }));
      expect(off).not.toContain('th sport');
      const out = on.slice(on.indexOf('chain out {')).split('\n').slice(2, 5).map((l) => l.trim());
      expect(out, mode).toEqual([
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 61000-61199 meta mark set 0x1000 return',
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 61200-61399 meta mark set 0x1100 return',
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 61400-61599 meta mark set 0x1200 return',
      ]);
      // Nothing else differs.
      expect(on.split('\n').filter((l) => !l.includes('th sport'))).toEqual(off.split('\n'));
    }
    expect(portPathMarkLines([0x1100, 0x1000, 0x1100, MARK_TUNNEL, MARK_BLOCK])).toHaveLength(2);
  });

  it('with WAN links the out chain marks each link\'s ports with its mark', () => {
    for (const mode of ['host', 'router'] as const) {
      const on = renderRuleset(samplePlan({ mode, links, activeLink: 'fiber', portPaths: true }));
      const lines = on.split('\n').filter((l) => l.includes('th sport')).map((l) => l.trim());
      expect(lines, mode).toEqual([
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 61000-61199 meta mark set 0x1000 return',
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 61200-61399 meta mark set 0x1100 return',
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 61400-61599 meta mark set 0x1200 return',
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 63800-63999 meta mark set 0x2000 return',
        'meta mark 0 ct direction original meta l4proto { tcp, udp } th sport 64400-64599 meta mark set 0x2300 return',
      ]);
    }
  });
});

describe('PortPathSockets on loopback', () => {
  const sockets = new PortPathSockets();
  const closers: (() => void)[] = [];
  afterAll(() => closers.forEach((c) => c()));

  it('UDP: the peer sees a source port in the mark\'s range; two sockets get two ports', async () => {
    const server = dgram.createSocket('udp4');
    closers.push(() => server.close());
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    const seen: number[] = [];
    server.on('message', (_m, rinfo) => seen.push(rinfo.port));
    const a = await sockets.udp(4, gatewayMark(1));
    const b = await sockets.udp(4, gatewayMark(1));
    closers.push(() => a.close(), () => b.close());
    a.send('x', server.address().port, '127.0.0.1');
    b.send('y', server.address().port, '127.0.0.1');
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 10));
    const r = portRangeOfMark(gatewayMark(1))!;
    for (const p of seen) {
      expect(p).toBeGreaterThanOrEqual(r.first);
      expect(p).toBeLessThanOrEqual(r.last);
    }
    expect(seen[0]).not.toBe(seen[1]);
  });

  it('TCP: connected from a port of the range, IPv4 and IPv6', async () => {
    for (const [host, family] of [['127.0.0.1', 4], ['::1', 6]] as const) {
      const ports: number[] = [];
      const server = net.createServer((s) => {
        ports.push(s.remotePort!);
        s.end();
      });
      closers.push(() => server.close());
      await new Promise<void>((r) => server.listen(0, host, r));
      const s = await sockets.tcpConnect({ host, port: (server.address() as net.AddressInfo).port, mark: MARK_BREAKOUT, timeoutMs: 5000 });
      expect(s.localPort).toBeGreaterThanOrEqual(61000);
      expect(s.localPort).toBeLessThanOrEqual(61199);
      while (ports.length === 0) await new Promise((r) => setTimeout(r, 10));
      expect(ports, `IPv${family}: the port the server saw`).toEqual([s.localPort]);
      s.destroy();
    }
  });

  it('a WAN link\'s mark: UDP and TCP leave from its own range', async () => {
    const r = portRangeOfMark(linkMark(2))!;
    const server = dgram.createSocket('udp4');
    closers.push(() => server.close());
    await new Promise<void>((ok) => server.bind(0, '127.0.0.1', ok));
    const seen: number[] = [];
    server.on('message', (_m, rinfo) => seen.push(rinfo.port));
    const u = await sockets.udp(4, linkMark(2));
    closers.push(() => u.close());
    u.send('x', server.address().port, '127.0.0.1');
    while (seen.length < 1) await new Promise((ok) => setTimeout(ok, 10));
    expect(seen[0]).toBeGreaterThanOrEqual(r.first);
    expect(seen[0]).toBeLessThanOrEqual(r.last);
    const tcp = net.createServer((c) => c.end());
    closers.push(() => tcp.close());
    await new Promise<void>((ok) => tcp.listen(0, '::1', ok));
    const c = await sockets.tcpConnect({ host: '::1', port: (tcp.address() as net.AddressInfo).port, mark: linkMark(2), timeoutMs: 5000 });
    expect(markOfPort(c.localPort!)).toBe(linkMark(2));
    c.destroy();
  });

  it('a mark with no range is refused with a SocketError naming it', async () => {
    await expect(sockets.udp(4, MARK_TUNNEL)).rejects.toThrow(SocketError);
    await expect(sockets.tcpConnect({ host: '127.0.0.1', port: 1, mark: 0x2800 })).rejects.toThrow(/not a path mark/);
  });

  it('a full range: every port taken, the next UDP socket fails with EADDRINUSE (and leaks nothing)', async () => {
    const r = portRangeOfMark(gatewayMark(12))!;
    const held: dgram.Socket[] = [];
    for (let p = r.first; p <= r.last; p++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((ok) => s.bind({ port: p, exclusive: true }, ok));
      held.push(s);
    }
    closers.push(() => held.forEach((s) => s.close()));
    await expect(sockets.udp(4, gatewayMark(12))).rejects.toMatchObject({ errno: 'EADDRINUSE' });
  });
});

describe('the proxy\'s original destination from conntrack (no SO_ORIGINAL_DST)', () => {
  it('reads the original direction\'s dst and dport', () => {
    // Captured (conntrack-tools 1.4.7, Debian 12): a connection to 10.9.0.7:443 redirected to :3129 in a namespace,
    // `conntrack -L -f ipv4 -p tcp --reply-src 127.0.0.1 --reply-port-src 3129 --reply-dst 10.9.0.1 --reply-port-dst 35240`.
    const out = 'tcp      6 431999 ESTABLISHED src=10.9.0.1 dst=10.9.0.7 sport=35240 dport=443 src=127.0.0.1 dst=10.9.0.1 sport=3129 dport=35240 [ASSURED] mark=0 use=1\n';
    expect(parseConntrackOriginalDst(out)).toEqual({ address: '10.9.0.7', port: 443 });
    expect(parseConntrackOriginalDst('')).toBeNull();
    expect(parseConntrackOriginalDst('tcp 6 10 SYN_SENT src=x dst=not-an-ip sport=1 dport=2\n')).toBeNull();
  });
});
