// The damage watch's line filters, on output captured from real runs
// (test/fixtures/os/): `nft monitor` and `ip monitor rule route link` in the
// router namespace of the lab while splitwan started, tagged a name, failed
// over, and someone ran `nft flush ruleset`, `ip rule del pref 5050` and
// `ip route flush table 1102`.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addedRouteKey, isOurIpEvent, isOurNftEvent, NftGenerations, routeSpecKey } from '../../daemon/dataplane/damage-watch.js';

const fixture = (name: string): string[] => readFileSync(new URL(`../fixtures/os/${name}`, import.meta.url), 'utf8').split('\n').filter(Boolean);

describe('isOurNftEvent', () => {
  const lines = fixture('nft-monitor-damage.txt');

  it('a removal of our table, chains, rules, sets or default path is an event', () => {
    const events = lines.filter(isOurNftEvent);
    // The flush: every object of the table, the table last.
    expect(events).toContain('delete table inet splitwan');
    expect(events.some((l) => l.startsWith('delete chain inet splitwan pre'))).toBe(true);
    expect(events).toContain('delete set inet splitwan active'); // nft names the map a set here
    expect(events.some((l) => l.startsWith('delete set inet splitwan tag4_'))).toBe(true);
    // Our own re-apply (`flush table`) and failover flip: events too, whose repair finds nothing to do.
    expect(events.some((l) => /^delete rule inet splitwan classify handle \d+$/.test(l))).toBe(true);
    expect(events).toContain('delete element inet splitwan active { 0x00001f00 : 0x00001100 }');
  });

  it('additions, tag elements, generation lines and other tables are not', () => {
    const not = lines.filter((l) => !isOurNftEvent(l));
    expect(not.every((l) => l.startsWith('add ') || l.startsWith('# new generation'))).toBe(true);
    expect(not.some((l) => l.startsWith('add element inet splitwan tag4_'))).toBe(true);
    for (const l of [
      'delete element inet splitwan tag4_97b10d2f { 10.99.9.9 }',
      'delete table inet splitwan_demo',
      'delete table ip splitwan',
      'delete chain inet other pre',
      'add table inet splitwan',
      '',
    ])
      expect(isOurNftEvent(l), l).toBe(false);
  });
});

describe('isOurIpEvent', () => {
  const lines = fixture('ip-monitor-rule-route-link.txt');

  it('rules at 5000-5099, routes in tables 1100-1113 and swg- links are events', () => {
    const events = lines.filter(isOurIpEvent);
    expect(events).toContain('Deleted 5050:\tfrom 10.64.0.2 lookup 1100');
    expect(events).toContain('5080:\tfrom all fwmark 0 iif lan0 lookup 1100');
    expect(events).toContain('Deleted default dev swg-gw2 table 1102 scope link ');
    expect(events).toContain('default dev swg-gw2 table 1100 scope link ');
    expect(events.some((l) => /^5: swg-gw1: <POINTOPOINT/.test(l))).toBe(true);
    expect(isOurIpEvent('Deleted 3: swg-a@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default ')).toBe(true);
  });

  it('other links, routes of other tables and other rules are not', () => {
    const not = lines.filter((l) => !isOurIpEvent(l));
    expect(not).toContain('fe80::/64 dev swg-gw1 proto kernel metric 256 pref medium');
    expect(not).toContain('local 10.64.0.2 dev swg-gw1 table local proto kernel scope host src 10.64.0.2 ');
    expect(not.some((l) => l.trim() === 'link/none')).toBe(true);
    for (const l of [
      '32766:\tfrom all lookup main',
      '4999:\tfrom all lookup 1100',
      '5100:\tfrom all lookup main',
      'default via 10.99.2.1 dev wan0',
      'default dev tun0 table 200',
      'default dev x table 1114',
      '2: wan0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default ',
      '5050: eth5: <BROADCAST,MULTICAST> mtu 1500',
    ])
      expect(isOurIpEvent(l), l).toBe(false);
  });
});

describe('NftGenerations: our own commits are not damage', () => {
  const OURS = 4242;
  const gens = (): NftGenerations => new NftGenerations((pid) => pid === OURS);
  const flip = ['delete element inet splitwan active { 0x00001f00 : 0x00001100 }', 'add element inet splitwan active { 0x00001f00 : 0x00001200 }'];

  it('a damage line is held until its generation says who committed it: ours is dropped, another program\'s is an event', () => {
    const g = gens();
    expect(g.line('# new generation 3 by process 1 (nft)')).toBe(false); // trailers seen: lines wait for theirs
    expect(flip.map((l) => g.line(l))).toEqual([false, false]);
    expect(g.line(`# new generation 4 by process ${OURS} (node)`)).toBe(false);
    expect(flip.map((l) => g.line(l))).toEqual([false, false]);
    expect(g.line('# new generation 5 by process 777 (nft)')).toBe(true);
  });

  it('a generation with no damage line is no event, whoever committed it (tags, additions)', () => {
    const g = gens();
    g.line('# new generation 1 by process 1 (nft)');
    expect(g.line('add element inet splitwan tag4_97b10d2f { 10.99.9.9 timeout 5m }')).toBe(false);
    expect(g.line('# new generation 2 by process 777 (nft)')).toBe(false);
  });

  it('before the first trailer (an nft that prints none) every damage line is an event at once', () => {
    expect(gens().line('delete table inet splitwan')).toBe(true);
  });

  it('on the captured fixture: the flush by `nft` is an event', () => {
    const g = gens();
    expect(fixture('nft-monitor-damage.txt').some((l) => g.line(l))).toBe(true);
  });
});

describe('addedRouteKey: route lines that add what the plan installs', () => {
  const want = (r: Parameters<typeof routeSpecKey>[0]): string => routeSpecKey(r);

  it('reads our default routes as `ip monitor` prints them, both families', () => {
    expect(addedRouteKey('default dev swg-gw2 table 1100 scope link ')).toBe(want({ family: 4, table: 1100, type: 'unicast', dev: 'swg-gw2' }));
    expect(addedRouteKey('default dev swg-gw2 table 1100 metric 1024 pref medium')).toBe(want({ family: 6, table: 1100, type: 'unicast', dev: 'swg-gw2' }));
    expect(addedRouteKey('prohibit default table 1101 metric 4000000000 ')).toBe(want({ family: 4, table: 1101, type: 'prohibit', metric: 4_000_000_000 }));
    expect(addedRouteKey('default via 10.99.2.1 dev wan0 table 1200 ')).toBe(want({ family: 4, table: 1200, type: 'unicast', dev: 'wan0', via: '10.99.2.1' }));
  });

  it('a deletion, another device, or a line of no table is not what we install', () => {
    expect(addedRouteKey('Deleted default dev swg-gw2 table 1102 scope link ')).toBeNull();
    expect(addedRouteKey('default via 10.99.2.1 dev wan0')).toBeNull();
    expect(addedRouteKey('5050:\tfrom 10.64.0.2 lookup 1100')).toBeNull();
    expect(addedRouteKey('default dev swg-gw1 table 1100 scope link ')).not.toBe(want({ family: 4, table: 1100, type: 'unicast', dev: 'swg-gw2' }));
    expect(addedRouteKey('prohibit default table 1101 metric 5 ')).not.toBe(want({ family: 4, table: 1101, type: 'prohibit', metric: 4_000_000_000 }));
  });
});
