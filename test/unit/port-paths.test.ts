// Source-port paths (SPLITWAN_NATIVE=off, platforms without koffi): the
// ranges, the ip rules and nft lines the plan renders for them
// (daemon/dataplane/port-paths.ts), and the sockets that bind them
// (daemon/port-sockets.ts) on loopback: the source port the peer sees.
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { markOfPort, portPathMarkLines, portPathRules, portRangeOfMark, PORT_PATH_FIRST } from '../../daemon/dataplane/port-paths.js';
import { gatewayMark, ipRuleSelector, MARK_BREAKOUT, MARK_TUNNEL, renderIpRules, renderRuleset } from '../../daemon/dataplane/plan.js';
import { parseConntrackOriginalDst, parseIpRules } from '../../daemon/os-parse.js';
import { PortPathSockets } from '../../daemon/port-sockets.js';
import { SocketError } from '../../daemon/sockets.js';
import { samplePlan } from '../helpers/plans.js';

describe('port ranges of path marks', () => {
  it('breakout and each gateway slot own 256 ports from 61440, above the kernel\'s ephemeral range; the mark comes back from any of them', () => {
    expect(portRangeOfMark(MARK_BREAKOUT)).toEqual({ first: 61440, last: 61695 });
    expect(portRangeOfMark(gatewayMark(0))).toEqual({ first: 61696, last: 61951 });
    expect(portRangeOfMark(gatewayMark(12))).toEqual({ first: 64768, last: 65023 });
    for (let i = 0; i < 13; i++) {
      const r = portRangeOfMark(gatewayMark(i))!;
      expect(r.first).toBeGreaterThan(60999);
      expect(r.last).toBeLessThan(65535); // ip refuses a range ending at 65535
      expect(markOfPort(r.first)).toBe(gatewayMark(i));
      expect(markOfPort(r.last)).toBe(gatewayMark(i));
    }
    expect(markOfPort(PORT_PATH_FIRST - 1)).toBeNull();
    expect(markOfPort(65535)).toBeNull();
  });

  it('no range for the logical tunnel mark or what is not a path mark', () => {
    for (const m of [MARK_TUNNEL, 0, 0x2000, 0x0f00, 4096.5]) expect(portRangeOfMark(m), String(m)).toBeNull();
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

describe('the plan with port paths', () => {
  it('each mark rule has a twin at its priority for the mark\'s ports, from this machine only (iif lo)', () => {
    const without = renderIpRules(plan);
    const rules = renderIpRules({ ...plan, portPaths: true });
    const added = rules.filter((r) => !without.includes(r) && r.sport !== undefined);
    expect(rules.slice(0, without.length)).toEqual(without);
    expect(added.filter((r) => r.family === 4).map((r) => `${r.priority} ${ipRuleSelector(r).join(' ')}`)).toEqual([
      '5010 iif lo sport 61440-61695 lookup main',
      '5020 iif lo sport 61696-61951 lookup 1101',
      '5021 iif lo sport 61952-62207 lookup 1102',
    ]);
    expect(portPathRules(without)).toEqual(added);
  });

  it('ip -j rule output of such a rule parses back to the same rule (the router compares them)', () => {
    // Captured from iproute2 6.1 (Debian 12): `ip -j rule show` after `ip rule add pref 5020 iif lo sport 61696-61951 lookup 1101`.
    const json = '[{"priority":5020,"src":"all","iif":"lo","sport_start":61696,"sport_end":61951,"table":"1101"}]';
    expect(parseIpRules(json, 4)).toEqual([{ priority: 5020, family: 4, iif: 'lo', sport: '61696-61951', table: '1101', action: 'lookup' }]);
  });

  it('the out chain marks the ports first (host and router mode); without port paths nothing changes', () => {
    for (const mode of ['host', 'router'] as const) {
      const off = renderRuleset(samplePlan({ mode }));
      const on = renderRuleset(samplePlan({ mode, portPaths: true }));
      expect(off).not.toContain('th sport');
      const out = on.slice(on.indexOf('chain out {')).split('\n').slice(2, 5).map((l) => l.trim());
      expect(out, mode).toEqual([
        'meta mark 0 meta l4proto { tcp, udp } th sport 61440-61695 meta mark set 0x1000 return',
        'meta mark 0 meta l4proto { tcp, udp } th sport 61696-61951 meta mark set 0x1100 return',
        'meta mark 0 meta l4proto { tcp, udp } th sport 61952-62207 meta mark set 0x1200 return',
      ]);
      // Nothing else differs.
      expect(on.split('\n').filter((l) => !l.includes('th sport'))).toEqual(off.split('\n'));
    }
    expect(portPathMarkLines([0x1100, 0x1000, 0x1100, MARK_TUNNEL])).toHaveLength(2);
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
      expect(s.localPort).toBeGreaterThanOrEqual(61440);
      expect(s.localPort).toBeLessThanOrEqual(61695);
      while (ports.length === 0) await new Promise((r) => setTimeout(r, 10));
      expect(ports, `IPv${family}: the port the server saw`).toEqual([s.localPort]);
      s.destroy();
    }
  });

  it('a mark with no range is refused with a SocketError naming it', async () => {
    await expect(sockets.udp(4, MARK_TUNNEL)).rejects.toThrow(SocketError);
    await expect(sockets.tcpConnect({ host: '127.0.0.1', port: 1, mark: 0x2000 })).rejects.toThrow(/not a path mark/);
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
