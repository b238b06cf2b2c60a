// The data plane's plan with several WAN links and unmanaged gateways: marks,
// tables, ip rules, routes and the chains that pick a link per new flow. Pure:
// the rendered state is compared; the ruleset is applied to a real nft in
// test/lab/links-apply.test.ts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import {
  assignLinkSlots,
  ipRuleSelector,
  linkMark,
  MARK_BREAKOUT,
  MAX_LINKS,
  planDataplane,
  renderIpRules,
  renderLinkFlip,
  renderRoutes,
  renderRuleset,
  rulesetObjects,
  tunnelPathDevice,
  type DataplanePlan,
} from '../../daemon/dataplane/plan.js';
import { isOurIpEvent, isOurIpEventWith } from '../../daemon/dataplane/damage-watch.js';

const key = (): string => randomBytes(32).toString('base64');
const wg = (): string => `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n`;

let dir: string;
async function load(lines: string[]): Promise<LoadedConfig> {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, lines.join('\n'));
  return loadConfig(f);
}
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'splitwan-links-plan-'));
  writeFileSync(join(dir, 'gw1.conf'), wg(), { mode: 0o600 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LINKS = (balance: boolean): string[] => [
  'mode: router',
  'lan: [lan0]',
  'breakout:',
  `  balance: ${balance}`,
  '  links:',
  '    - { name: fiber, interface: wan0, dns: [192.0.2.53], priority: 1, weight: 2 }',
  '    - { name: lte, interface: wwan0, gateway: [198.51.100.1, "2001:db8::1"], priority: 2, weight: 1, metered: true }',
  '    - { name: dsl, interface: wan2, gateway: 203.0.113.1, priority: 3, weight: 1 }',
  'tunnel:',
  '  gateways:',
  '    - { name: gw1, config: gw1.conf }',
  '    - { name: awg, interface: awg0, dns: [10.8.0.1] }',
  '    - { name: ts, table: 52, dns: [100.100.100.100] }',
  'rules:',
  '  - cidrs: [192.0.2.0/24]',
  '    via: lte',
  '  - cidrs: [198.18.0.0/15]',
  '    via: [awg, gw1]',
];

function plan(l: LoadedConfig, o: { active?: string | null; healthy?: (n: string) => boolean; proxy?: boolean } = {}): DataplanePlan {
  return planDataplane({
    config: l.config,
    listCidrs: new Map(),
    wan: 'wan0',
    active: 'gw1',
    healthy: o.healthy ?? (() => true),
    dnsPort: 53,
    links: { active: o.active ?? null, nextHops: new Map([['wan0', { v4: '10.99.2.1', v6: 'fd99:2::1' }]]) },
  });
}

describe('links in the plan', () => {
  it('marks 0x2000+slot, tables 1201+slot; breakout by table 1200, which follows the active link', async () => {
    const p = plan(await load(LINKS(false)));
    expect(p.links!.map((l) => [l.name, l.ifname, l.mark, l.table, l.via4, l.via6, l.metered])).toEqual([
      ['fiber', 'wan0', 0x2000, 1201, '10.99.2.1', 'fd99:2::1', false],
      ['lte', 'wwan0', 0x2100, 1202, '198.51.100.1', '2001:db8::1', true],
      ['dsl', 'wan2', 0x2200, 1203, '203.0.113.1', null, false],
    ]);
    // The preferred link (priority, metered last) until the monitor says otherwise.
    expect(p.activeLink).toBe('fiber');
    expect(p.balance).toBeNull();
    const rules = renderIpRules(p).filter((r) => r.family === 4).map((r) => `${r.priority} ${ipRuleSelector(r).join(' ')}`);
    expect(rules.slice(0, 6)).toEqual([
      '5000 lookup main suppress_prefixlength 0',
      '5010 fwmark 0x1000/0xff00 lookup 1200',
      '5011 fwmark 0x2000/0xff00 lookup 1201',
      '5012 fwmark 0x2100/0xff00 lookup 1202',
      '5013 fwmark 0x2200/0xff00 lookup 1203',
      '5019 fwmark 0x2000/0xf000 prohibit',
    ]);
    // The table gateway's mark looks up its own table; the others get ours.
    expect(rules).toContain('5021 fwmark 0x1200/0xff00 lookup 1102');
    expect(rules).toContain('5022 fwmark 0x1300/0xff00 lookup 52');
    const routes = (q: DataplanePlan) => renderRoutes(q).filter((r) => r.table >= 1200 && r.type === 'unicast').map((r) => `${r.family} ${r.table} ${r.dev} ${r.via ?? '-'}`);
    expect(routes(p)).toEqual([
      '4 1200 wan0 10.99.2.1',
      '4 1201 wan0 10.99.2.1',
      '4 1202 wwan0 198.51.100.1',
      '4 1203 wan2 203.0.113.1',
      '6 1200 wan0 fd99:2::1',
      '6 1201 wan0 fd99:2::1',
      '6 1202 wwan0 2001:db8::1',
      '6 1203 wan2 -',
    ]);
    const failed = plan(await load(LINKS(false)), { active: 'dsl' });
    expect(routes(failed).filter((r) => r.includes(' 1200 '))).toEqual(['4 1200 wan2 203.0.113.1', '6 1200 wan2 -']);
    // No route into the table gateway's table: it is its program's.
    expect(renderRoutes(p).filter((r) => r.table === 52 || r.table === 1103)).toEqual([]);
  });

  it('a new breakout flow picks the active link and keeps it in its ct mark; a pinned rule sets the link mark', async () => {
    const p = plan(await load(LINKS(false)), { active: 'dsl' });
    const text = renderRuleset(p);
    expect(rulesetObjects(p).chains).toContain('pick_link');
    expect(text).toContain('\tchain pick_link {\n\t\tmeta mark set 0x2200\n\t}');
    expect(text).toContain('\t\tmeta mark 0 jump classify\n\t\tct mark 0 meta mark and 0xff00 == 0x1000 jump pick_link\n\t\tct mark 0 ct mark set meta mark\n');
    expect(p.rules[0]!.mark).toBe(linkMark(1));
    expect(text).toContain('ip daddr { 192.0.2.0/24 } meta mark set 0x2100 return');
    // Replies to connections that came in on a link leave by it; an unmanaged interface is a tunnel.
    expect(text).toContain('\t\tiifname "awg0" ct mark set 0x1200 return\n\t\tiifname "wan0" ct mark set 0x2000 return\n\t\tiifname "wwan0" ct mark set 0x2100 return\n\t\tiifname "wan2" ct mark set 0x2200 return\n\t\tct mark set 0x1000\n');
    // NAT on every link and into the unmanaged tunnels (the table gateway by its mark).
    expect(text).toContain('\t\toifname { "wan0", "wwan0", "wan2", "swg-gw1", "awg0" } masquerade\n\t\tmeta mark and 0xff00 { 0x1300 } masquerade\n');
    // The leak guard covers every link; link marks are breakout traffic.
    expect(text).toContain('\t\toifname { "wan0", "wwan0", "wan2" } meta mark and 0xf000 == 0x1000 meta mark and 0xff00 != 0x1000 counter drop');
    expect(text).toContain('\t\toifname { "wan0", "wwan0", "wan2" } meta mark and 0xff00 != 0x1000 meta mark and 0xf000 != 0x2000 ip saddr { 10.64.0.2 } counter drop');
  });

  it('a rule pinned to a dead link takes its next candidate', async () => {
    const p = plan(await load([...LINKS(false).slice(0, -4), '  - cidrs: [192.0.2.0/24]', '    via: [lte, fiber]']), { healthy: (n) => n !== 'lte' });
    expect(p.rules[0]!.mark).toBe(linkMark(0));
  });

  it('balance: numgen by weight over the usable links that are not metered; metered only when nothing else is up', async () => {
    const l = await load(LINKS(true));
    const p = plan(l);
    expect(p.balance).toEqual([
      { name: 'fiber', weight: 2 },
      { name: 'dsl', weight: 1 },
    ]);
    expect(renderRuleset(p)).toContain('\tchain pick_link {\n\t\tmeta mark set numgen random mod 3 map { 0-1 : 0x2000, 2 : 0x2200 }\n\t}');
    const oneLeft = plan(l, { healthy: (n) => n !== 'fiber' });
    expect(renderRuleset(oneLeft)).toContain('\tchain pick_link {\n\t\tmeta mark set 0x2200\n\t}');
    const meteredOnly = plan(l, { healthy: (n) => n === 'lte' || n === 'gw1' });
    expect(meteredOnly.balance).toEqual([{ name: 'lte', weight: 1 }]);
  });

  it('a link failover is one line: pick_link flushed and refilled', async () => {
    const p = plan(await load(LINKS(false)), { active: 'dsl' });
    expect(renderLinkFlip(p)).toBe('flush chain inet splitwan pick_link; add rule inet splitwan pick_link meta mark set 0x2200');
  });

  it('with the proxy on, the default path keeps its unmatched bit through the pick', async () => {
    const l = await load([...LINKS(true), 'proxy:', '  enabled: true']);
    expect(renderRuleset(plan(l))).toContain(
      '\tchain pick_link {\n\t\tmeta mark 0x1001 meta mark set numgen random mod 3 map { 0-1 : 0x2001, 2 : 0x2201 } return\n\t\tmeta mark set numgen random mod 3 map { 0-1 : 0x2000, 2 : 0x2200 }\n\t}',
    );
  });

  it('the single-WAN plan has none of it', async () => {
    const l = await load(['mode: host', 'breakout:', '  interface: wan0', 'tunnel:', '  gateways:', '    - { name: gw1, config: gw1.conf }']);
    const p = planDataplane({ config: l.config, listCidrs: new Map(), wan: 'wan0', active: 'gw1', healthy: () => true, dnsPort: null });
    expect(p.links).toBeUndefined();
    expect(renderRuleset(p)).not.toContain('pick_link');
    expect(renderIpRules(p).find((r) => r.priority === 5010)!.table).toBe('main');
    expect(renderRoutes(p).some((r) => r.table >= 1200)).toBe(false);
    expect(MARK_BREAKOUT).toBe(0x1000);
  });

  it('the tunnel path table never names a table gateway (it has no device)', async () => {
    const l = await load(['mode: host', 'tunnel:', '  gateways:', '    - { name: ts, table: 52, dns: [100.100.100.100] }', '    - { name: awg, interface: awg0, dns: [10.8.0.1] }']);
    const p = planDataplane({ config: l.config, listCidrs: new Map(), wan: 'wan0', active: 'ts', healthy: () => true, dnsPort: null });
    expect(tunnelPathDevice(p)).toBe('awg0');
  });

  it('link slots are kept across reloads, like gateways', () => {
    const a = assignLinkSlots(['fiber', 'lte']);
    const b = assignLinkSlots(['lte', 'cable', 'fiber'], a);
    expect([b.get('fiber'), b.get('lte'), b.get('cable')]).toEqual([0, 1, 2]);
    expect(() => assignLinkSlots(Array.from({ length: MAX_LINKS + 1 }, (_, i) => `l${i}`))).toThrow(RangeError);
  });

  it('route events in the link tables are damage; a watched unmanaged interface coming back too', () => {
    expect(isOurIpEvent('Deleted default via 10.99.5.1 dev wan1 table 1202 ')).toBe(true);
    expect(isOurIpEvent('default via 10.99.2.1 dev wan0 table 1200 ')).toBe(true);
    expect(isOurIpEvent('7: awg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN group default ')).toBe(false);
    expect(isOurIpEventWith('7: awg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN group default ', new Set(['awg0']))).toBe(true);
    expect(isOurIpEventWith('8: eth9: <BROADCAST> mtu 1500 ', new Set(['awg0']))).toBe(false);
    expect(isOurIpEventWith('Deleted 7: awg0: <POINTOPOINT,NOARP> mtu 1420 qdisc noqueue state DOWN group default ', new Set(['awg0']))).toBe(true);
  });
});
