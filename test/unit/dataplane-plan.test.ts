import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import {
  assignGatewaySlots,
  MAX_GATEWAYS,
  MARK_BLOCK,
  MARK_BREAKOUT,
  MARK_TUNNEL,
  pickTarget,
  planDataplane,
  renderActiveFlip,
  renderIpRules,
  renderRoutes,
  renderRuleset,
  ruleId,
  rulesetObjects,
  tagSetNames,
  type DataplanePlan,
  type PlannedGateway,
} from '../../daemon/dataplane/plan.js';
import { localDnsTargets } from '../../daemon/resolver-paths.js';
import { TAG_SET_LIMIT, TAG_SET_SIZE } from '../../daemon/dataplane/tag-bounds.js';
import { GW1, GW2, samplePlan } from '../helpers/plans.js';

const key = (): string => randomBytes(32).toString('base64');
const wg = (): string => `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n`;

let dir: string;
async function load(lines: string[]): Promise<LoadedConfig> {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, lines.join('\n'));
  return loadConfig(f);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'splitwan-plan-'));
  writeFileSync(join(dir, 'gw1.conf'), wg(), { mode: 0o600 });
  writeFileSync(join(dir, 'gw2.conf'), wg(), { mode: 0o600 });
  writeFileSync(join(dir, 'nets.txt'), '198.51.100.0/24\n2001:db8:1::/48\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ROUTER = [
  'mode: router',
  'lan: [lan0]',
  'tunnel:',
  '  gateways:',
  '    - { name: gw1, config: gw1.conf }',
  '    - { name: gw2, config: gw2.conf }',
  'lists:',
  '  nets: { file: nets.txt }',
  'rules:',
  '  - domains: [stream.test]', //                 0: tagged, breakout
  '    via: breakout',
  '  - cidrs: [203.0.113.0/24, "2001:db8::/32"]', // 1: inline CIDRs
  '    via: breakout',
  '  - sources: [192.168.77.50/32]', //             2: a LAN device
  '    via: breakout',
  '  - domains: [work.test]', //                    3: pinned, with a fallback
  '    sources: [192.168.77.0/24]',
  '    via: [gw2, gw1]',
  '  - list: nets', //                              4: list CIDRs
  '    via: gw1',
  '  - domains: [ads.test]',
  '    via: block',
  'default: tunnel',
];

function plan(loaded: LoadedConfig, over: Partial<{ active: string | null; healthy: (g: string) => boolean }> = {}): DataplanePlan {
  const listCidrs = new Map([...loaded.lists].map(([n, l]) => [n, Array.from(l.cidrs, (c) => c.cidr)]));
  return planDataplane({ config: loaded.config, listCidrs, wan: 'wan0', active: 'active' in over ? over.active! : 'gw1', healthy: over.healthy ?? (() => true), dnsPort: 53 });
}

describe('planDataplane', () => {
  it('gives each gateway a mark and a table, and each rule the mark of its first healthy via', async () => {
    const p = plan(await load(ROUTER));
    // The test's wg-quick files: Address = 10.64.0.2/32 only, so no IPv6 through them.
    expect(p.gateways).toEqual([
      { name: 'gw1', ifname: 'swg-gw1', mark: 0x1100, table: 1101, addrs4: ['10.64.0.2'], addrs6: [], ipv6: false },
      { name: 'gw2', ifname: 'swg-gw2', mark: 0x1200, table: 1102, addrs4: ['10.64.0.2'], addrs6: [], ipv6: false },
    ]);
    expect(p.rules.map((r) => r.mark)).toEqual([MARK_BREAKOUT, MARK_BREAKOUT, MARK_BREAKOUT, 0x1200, 0x1100, MARK_BLOCK]);
    expect(p.rules.map((r) => r.tagged)).toEqual([true, false, false, true, true, true]);
    expect(p.rules[1]).toMatchObject({ dst4: ['203.0.113.0/24'], dst6: ['2001:db8::/32'] });
    expect(p.rules[2]).toMatchObject({ src4: ['192.168.77.50/32'], dst4: [] });
    expect(p.rules[4]).toMatchObject({ dst4: ['198.51.100.0/24'], dst6: ['2001:db8:1::/48'] });
    expect(p.defaultMark).toBe(MARK_TUNNEL);
  });

  it('falls back down a via list when the pinned gateway is down', async () => {
    const p = plan(await load(ROUTER), { healthy: (g) => g !== 'gw2' });
    expect(p.rules[3]!.mark).toBe(0x1100);
  });

  it('a pinned gateway with no healthy fallback keeps its own mark (fails closed, never breakout)', () => {
    expect(pickTarget(['gw:gw1'], () => false)).toBe('gw:gw1');
    expect(pickTarget(['gw:gw2', 'gw:gw1'], () => false)).toBe('gw:gw1');
    expect(pickTarget(['gw:gw2', 'breakout'], () => false)).toBe('breakout');
  });

  it('rule ids name the rule by content, not position', async () => {
    const a = await load(ROUTER);
    const moved = [...ROUTER.slice(0, 9), '  - domains: [new.test]', '    via: gw1', ...ROUTER.slice(9)];
    const b = await load(moved);
    expect(ruleId(b.config.rules[1]!)).toBe(ruleId(a.config.rules[0]!));
    expect(ruleId(b.config.rules[0]!)).not.toBe(ruleId(a.config.rules[0]!));
  });
});

describe('assignGatewaySlots', () => {
  it('config order at first; then a gateway keeps its slot whatever reloads add, remove or reorder; new names take the lowest free slot', () => {
    const a = assignGatewaySlots(['gw1', 'gw2']);
    expect([...a]).toEqual([['gw1', 0], ['gw2', 1]]);
    const b = assignGatewaySlots(['gw2'], a); // gw1 removed: gw2 stays in slot 1
    expect(b.get('gw2')).toBe(1);
    const c = assignGatewaySlots(['gw3', 'gw2', 'gw1'], b); // gw1 back (a failed reload put back): its old slot
    expect(Object.fromEntries(c)).toEqual({ gw1: 0, gw2: 1, gw3: 2 });
    expect([...a]).toEqual([['gw1', 0], ['gw2', 1]]); // pure
  });

  it('when every slot is remembered, the lowest slot of a gateway that is gone is reused', () => {
    const names = Array.from({ length: MAX_GATEWAYS }, (_, i) => `g${i}`);
    const full = assignGatewaySlots(names);
    const next = assignGatewaySlots([...names.filter((n) => n !== 'g3' && n !== 'g5'), 'new'], full);
    expect(next.get('new')).toBe(3);
    expect(next.has('g3')).toBe(false);
    expect(next.get('g5')).toBe(5);
    expect(() => assignGatewaySlots([...names, 'one-too-many'])).toThrow(RangeError);
  });
});

describe('renderRuleset', () => {
  it('router mode: classifies forwarded LAN traffic by the rules, in order', async () => {
    const p = plan(await load(ROUTER));
    const text = renderRuleset(p);
    const classify = text.slice(text.indexOf('chain classify'), text.indexOf('chain resolve'));
    const t0 = tagSetNames(p.rules[0]!);
    const t3 = tagSetNames(p.rules[3]!);
    const lines = classify.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#') && !l.startsWith('chain') && l !== '}');
    expect(lines).toEqual([
      `ip daddr @${t0.v4} meta mark set 0x1000 return`,
      `ip6 daddr @${t0.v6} meta mark set 0x1000 return`,
      'ip daddr { 203.0.113.0/24 } meta mark set 0x1000 return',
      'ip6 daddr { 2001:db8::/32 } meta mark set 0x1000 return',
      'ip saddr { 192.168.77.50/32 } meta mark set 0x1000 return',
      `ip saddr { 192.168.77.0/24 } ip daddr @${t3.v4} meta mark set 0x1200 return`,
      'ip daddr { 198.51.100.0/24 } meta mark set 0x1100 return',
      'ip6 daddr { 2001:db8:1::/48 } meta mark set 0x1100 return',
      `ip daddr @${tagSetNames(p.rules[4]!).v4} meta mark set 0x1100 return`,
      `ip6 daddr @${tagSetNames(p.rules[4]!).v6} meta mark set 0x1100 return`,
      `ip daddr @${tagSetNames(p.rules[5]!).v4} meta mark set 0x1e00 return`,
      `ip6 daddr @${tagSetNames(p.rules[5]!).v6} meta mark set 0x1e00 return`,
      'meta mark set 0x1f00',
    ]);
    expect(text).toContain('type filter hook prerouting priority mangle');
    expect(text).toContain('iifname != { "lan0" } return');
    // The router's own packets are not classified: its output chain only gives replies and ICMP errors their flow's path.
    const out = text.slice(text.indexOf('chain out'), text.indexOf('\n\t}', text.indexOf('chain out')));
    expect(out).toContain('type route hook output priority mangle');
    expect(out).not.toContain('classify');
    expect(text).toContain('iifname { "lan0" } meta l4proto { tcp, udp } th dport 53 redirect to :53');
    expect(text).toContain('oifname { "wan0", "swg-gw1", "swg-gw2" } masquerade');
    expect(text).toContain('oifname { "swg-gw1", "swg-gw2" } tcp flags syn tcp option maxseg size set rt mtu');
    // The default path is not in the ruleset (a re-apply keeps the map's element): flips set it.
    expect(text).not.toContain('add element inet splitwan active');
    // Re-apply keeps tags: flush, never delete the table.
    expect(text.startsWith('table inet splitwan\nflush table inet splitwan\n')).toBe(true);
    expect(text).not.toContain('delete table');
  });

  it('host mode: classifies this machine\'s own traffic and leaves marked sockets alone', async () => {
    const p = plan(await load(['mode: host', ...ROUTER.slice(2)]));
    const text = renderRuleset(p);
    expect(text).toContain('type route hook output priority mangle');
    // Prerouting only gives inbound flows their path (replies follow it); nothing is classified there.
    const pre = text.slice(text.indexOf('chain pre'), text.indexOf('\n\t}', text.indexOf('chain pre')));
    expect(pre.split('\n').map((l) => l.trim()).slice(1)).toEqual(['type filter hook prerouting priority mangle; policy accept;', 'ct state new jump inbound']);
    expect(text).not.toContain('dns_redirect');
    const out = text.slice(text.indexOf('chain out'));
    expect(out.indexOf('meta mark != 0 return')).toBeLessThan(out.indexOf('jump classify'));
  });

  it('host mode: source rules classify nothing (sources name LAN clients; this machine\'s own addresses are not one)', async () => {
    const p = plan(await load(['mode: host', ...ROUTER.slice(2)]));
    const text = renderRuleset(p);
    const classify = text.slice(text.indexOf('chain classify'), text.indexOf('chain resolve'));
    expect(classify).not.toContain('saddr');
    // The rules around them are kept, in order, and rule 3's tag sets still exist (the resolver may write them).
    expect(classify).toContain('# rule 2: sources match LAN clients only');
    expect(classify).toContain('# rule 3: sources match LAN clients only');
    expect(classify.indexOf('ip daddr { 203.0.113.0/24 }')).toBeLessThan(classify.indexOf('ip daddr { 198.51.100.0/24 }'));
    expect(text).toContain(`set ${tagSetNames(p.rules[3]!).v4} {`);
  });

  it('host mode: own DNS to other servers goes to the resolver (dnat), not steered first; marked sockets and local resolvers are left alone', async () => {
    const loaded = await load(['mode: host', ...ROUTER.slice(2)]);
    const listCidrs = new Map<string, string[]>();
    const p = planDataplane({ config: loaded.config, listCidrs, wan: 'wan0', active: 'gw1', healthy: () => true, dnsPort: null, localDns: { v4: { host: '127.0.0.53', port: 53 }, v6: null } });
    const text = renderRuleset(p);
    expect(rulesetObjects(p).chains).toContain('dns_out');
    const nat = text.slice(text.indexOf('chain dns_out'), text.indexOf('\n\t}', text.indexOf('chain dns_out')));
    expect(nat).toContain('type nat hook output priority -100');
    expect(nat.indexOf('meta mark != 0 return')).toBeLessThan(nat.indexOf('dnat'));
    expect(nat.indexOf('fib daddr type local return')).toBeLessThan(nat.indexOf('dnat'));
    expect(nat).toContain('meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to 127.0.0.53:53');
    expect(nat).not.toContain('ip6 to');
    // The redirected query still carries this machine's outward address; the resolver answers loopback only.
    const post = text.slice(text.indexOf('chain post'), text.indexOf('\n\t}', text.indexOf('chain post')));
    expect(post).toContain('oifname "lo" ip saddr != 127.0.0.0/8 ip daddr 127.0.0.53 meta l4proto { tcp, udp } th dport 53 ct status dnat snat ip to 127.0.0.1');
    expect(post).not.toContain('snat ip6');
    expect(post.indexOf('snat ip to')).toBeLessThan(post.indexOf('masquerade'));
    const out = text.slice(text.indexOf('chain out'));
    // Not steered (the kill switch would reject it before the nat hook); IPv6 DNS has nowhere to go: refused.
    expect(out.indexOf('th dport 53 return')).toBeLessThan(out.indexOf('jump classify'));
    expect(out.indexOf('meta mark != 0 return')).toBeLessThan(out.indexOf('th dport 53 return'));
    expect(out).toContain('meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 jump reject_flow');
    expect(out).not.toContain('meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 jump reject_flow');
    // Router mode ignores it; without it host mode renders no dns_out.
    const router = planDataplane({ config: (await load(ROUTER)).config, listCidrs, wan: 'wan0', active: 'gw1', healthy: () => true, dnsPort: 53, localDns: p.localDns });
    expect(router.localDns).toBeNull();
    expect(renderRuleset(plan(loaded))).not.toContain('dns_out');
    expect(renderRuleset(plan(loaded))).not.toContain('snat');
  });

  it('a classified flow\'s packets go straight to resolve with the saved path (no FIB lookup); blockEncryptedDns rejects come first', async () => {
    const router = renderRuleset(plan(await load(ROUTER)));
    const pre = router.slice(router.indexOf('chain pre'), router.indexOf('\n\t}', router.indexOf('chain pre')));
    expect(pre).toContain('ct mark != 0 meta mark set ct mark goto resolve');
    expect(pre.indexOf('goto resolve')).toBeLessThan(pre.indexOf('fib daddr type { local, broadcast, multicast } return'));
    expect(pre.indexOf('iifname')).toBeLessThan(pre.indexOf('goto resolve'));
    const host = renderRuleset(plan(await load(['mode: host', ...ROUTER.slice(2)])));
    const out = host.slice(host.indexOf('chain out'), host.indexOf('\n\t}', host.indexOf('chain out')));
    // splitwan's own marked sockets are never steered, fast path or not.
    expect(out.indexOf('meta mark != 0 return')).toBeLessThan(out.indexOf('goto resolve'));
    expect(out.indexOf('goto resolve')).toBeLessThan(out.indexOf('fib daddr type { local, broadcast, multicast } return'));
    const withProxy = renderRuleset({ ...plan(await load(ROUTER)), proxy: { port: 15001, ports: [80, 443], blockQuic: true } });
    // Flows the proxy took (0x2) keep out of the fast path.
    expect(withProxy).toContain('ct mark and 0xff00 != 0 ct mark and 0x2 == 0 meta mark set ct mark goto resolve');
    const withDoh = renderRuleset({ ...plan(await load(ROUTER)), encryptedDns: { v4: ['192.0.2.53/32'], v6: [] } });
    const preDoh = withDoh.slice(withDoh.indexOf('chain pre'), withDoh.indexOf('\n\t}', withDoh.indexOf('chain pre')));
    expect(preDoh.indexOf('th dport 853 jump reject_flow')).toBeLessThan(preDoh.indexOf('goto resolve'));
  });

  it('localDnsTargets: per family, a loopback address the resolver listens on (wildcards count)', async () => {
    const host = (await load(['mode: host', ...ROUTER.slice(2)])).config;
    expect(localDnsTargets(host, [{ host: '127.0.0.53', port: 53 }])).toEqual({ v4: { host: '127.0.0.53', port: 53 }, v6: null });
    expect(localDnsTargets(host, [{ host: '0.0.0.0', port: 5353 }, { host: '::', port: 5353 }])).toEqual({ v4: { host: '127.0.0.1', port: 5353 }, v6: { host: '::1', port: 5353 } });
    expect(localDnsTargets(host, [{ host: '192.168.1.5', port: 53 }, { host: '::1', port: 53 }])).toEqual({ v4: null, v6: { host: '::1', port: 53 } });
    expect(localDnsTargets(host, [{ host: '192.168.1.5', port: 53 }])).toBeNull();
    expect(localDnsTargets((await load(ROUTER)).config, [{ host: '127.0.0.1', port: 53 }])).toBeNull();
  });

  it('kill switch: no active gateway leaves `active` empty, so tunnel traffic is rejected', async () => {
    const p = plan(await load(ROUTER), { active: null });
    const text = renderRuleset(p);
    expect(text).not.toContain('add element inet splitwan active');
    const resolve = text.slice(text.indexOf('chain resolve'), text.indexOf('chain reject_flow'));
    expect(resolve).toContain('meta mark 0x1f00 meta mark set meta mark map @active');
    expect(resolve).toContain('meta mark 0x1f00 jump reject_flow');
    expect(text).toContain('meta l4proto tcp reject with tcp reset');
    expect(text).toContain('reject with icmpx admin-prohibited');
    expect(renderActiveFlip(p)).toBe('flush map inet splitwan active');
  });

  it('with the kill switch off, no healthy gateway sends tunnel traffic via the breakout', async () => {
    const p = plan(await load([...ROUTER.slice(0, 2), 'tunnel:', '  killSwitch: false', ...ROUTER.slice(3)]), { active: null });
    expect(renderActiveFlip(p)).toBe('flush map inet splitwan active; add element inet splitwan active { 0x1f00 : 0x1000 }');
  });

  it('failover is one line: the active map changes, nothing else', async () => {
    const p = plan(await load(ROUTER), { active: 'gw2' });
    expect(renderActiveFlip(p)).toBe('flush map inet splitwan active; add element inet splitwan active { 0x1f00 : 0x1200 }');
  });

  it('deletes chains and sets the new plan no longer has, in the same transaction', async () => {
    const p = plan(await load(ROUTER));
    const text = renderRuleset(p, { chains: ['pre', 'out', 'classify', 'proxy_out'], sets: ['tag4_deadbeef', 'tag6_deadbeef', 'active', tagSetNames(p.rules[0]!).v4] });
    expect(text).toContain('delete chain inet splitwan proxy_out\n');
    expect(text).not.toContain('delete chain inet splitwan pre');
    expect(text).not.toContain('delete chain inet splitwan out');
    expect(text).toContain('delete set inet splitwan tag4_deadbeef\n');
    expect(text).toContain('delete set inet splitwan tag6_deadbeef\n');
    expect(text).not.toContain(`delete set inet splitwan ${tagSetNames(p.rules[0]!).v4}`);
    expect(text.indexOf('delete chain')).toBeLessThan(text.indexOf('delete set'));
  });

  it('tag sets are bounded: the kernel set a little larger than the tagger\'s own bound (timed-out elements count until its GC)', async () => {
    const p = plan(await load(ROUTER));
    const n = tagSetNames(p.rules.find((r) => r.tagged)!);
    const text = renderRuleset(p);
    expect(text).toContain(`\tset ${n.v4} { type ipv4_addr; flags timeout; size ${TAG_SET_SIZE}; }`);
    expect(text).toContain(`\tset ${n.v6} { type ipv6_addr; flags timeout; size ${TAG_SET_SIZE}; }`);
    expect(TAG_SET_SIZE).toBeGreaterThan(TAG_SET_LIMIT);
  });

  it('is deterministic: the same plan renders the same text', async () => {
    const l = await load(ROUTER);
    expect(renderRuleset(plan(l))).toBe(renderRuleset(plan(l)));
  });
});

describe('ip rules and routes', () => {
  it('fixed priorities, masked marks, a prohibit catch-all, for both families', async () => {
    const p = plan(await load(ROUTER));
    const rules = renderIpRules(p);
    const v4 = rules.filter((r) => r.family === 4);
    expect(v4).toEqual([
      { family: 4, priority: 5000, table: 'main', action: 'lookup', suppressPrefixLength: 0 },
      { family: 4, priority: 5010, fwmark: 0x1000, fwmask: 0xff00, table: 'main', action: 'lookup' },
      { family: 4, priority: 5020, fwmark: 0x1100, fwmask: 0xff00, table: '1101', action: 'lookup' },
      { family: 4, priority: 5021, fwmark: 0x1200, fwmask: 0xff00, table: '1102', action: 'lookup' },
      { family: 4, priority: 5040, fwmark: 0x1f00, fwmask: 0xff00, table: '1100', action: 'lookup' },
      // The gateways share 10.64.0.2: what the kernel sends from it takes the active one's tunnel.
      { family: 4, priority: 5050, src: '10.64.0.2', table: '1100', action: 'lookup' },
      // Unmarked LAN traffic (the ruleset is gone) takes the tunnel path, not main.
      { family: 4, priority: 5080, iif: 'lan0', fwmark: 0, fwmask: 0xffffffff, table: '1100', action: 'lookup' },
      { family: 4, priority: 5099, fwmark: 0x1000, fwmask: 0xf000, action: 'prohibit' },
    ]);
    // No IPv6 tunnel address here: no `from` rule for IPv6.
    expect(rules.filter((r) => r.family === 6)).toHaveLength(7);
    expect(rules.every((r) => r.priority >= 5000 && r.priority <= 5099)).toBe(true);
    const routes = renderRoutes(p).filter((r) => r.family === 4);
    expect(routes).toEqual([
      { family: 4, table: 1100, type: 'unicast', dev: 'swg-gw1' },
      { family: 4, table: 1100, type: 'prohibit', metric: 4_000_000_000 },
      { family: 4, table: 1101, type: 'unicast', dev: 'swg-gw1' },
      { family: 4, table: 1101, type: 'prohibit', metric: 4_000_000_000 },
      { family: 4, table: 1102, type: 'unicast', dev: 'swg-gw2' },
      { family: 4, table: 1102, type: 'prohibit', metric: 4_000_000_000 },
    ]);
  });
});

describe('no leak by the WAN, fail closed without nftables (issue 15)', () => {
  const chain = (text: string, name: string): string[] => {
    const from = text.indexOf(`\tchain ${name} {`);
    expect(from, `chain ${name}`).toBeGreaterThanOrEqual(0);
    return text.slice(from, text.indexOf('\n\t}', from)).split('\n').slice(1).map((l) => l.trim());
  };
  const own = (over: Partial<PlannedGateway>): PlannedGateway[] => [
    { ...GW1, addrs4: ['10.64.0.2'], addrs6: ['fd64::2'], ...over },
    { ...GW2, addrs4: ['10.65.0.7'], addrs6: [], ipv6: false },
  ];

  it('the kernel\'s own packets from a tunnel address go into a tunnel: its gateway\'s when it owns it, the active one\'s when shared', () => {
    const shared = renderIpRules(samplePlan()).filter((r) => r.src !== undefined);
    expect(shared).toEqual([
      { family: 4, priority: 5050, src: '10.64.0.2', table: '1100', action: 'lookup' },
      { family: 6, priority: 5050, src: 'fd64::2', table: '1100', action: 'lookup' },
    ]);
    const distinct = renderIpRules(samplePlan({ gateways: own({}) })).filter((r) => r.src !== undefined);
    expect(distinct).toEqual([
      { family: 4, priority: 5050, src: '10.64.0.2', table: '1101', action: 'lookup' },
      { family: 4, priority: 5051, src: '10.65.0.7', table: '1102', action: 'lookup' },
      { family: 6, priority: 5050, src: 'fd64::2', table: '1101', action: 'lookup' },
    ]);
    // After every mark rule: marked traffic (breakout from a tunnel address in host mode) keeps its path.
    const all = renderIpRules(samplePlan());
    const from = all.find((r) => r.src)!.priority;
    expect(all.filter((r) => r.fwmark !== undefined && r.fwmark !== 0 && r.action === 'lookup').every((r) => r.priority < from)).toBe(true);
  });

  it('traffic nobody marked takes the tunnel path, not main: this machine\'s own (host), the LAN\'s (router); nothing to do without gateways', () => {
    const unmarked = (p: DataplanePlan) => renderIpRules(p).filter((r) => r.fwmark === 0).map((r) => `${r.family} ${r.priority} iif ${r.iif} → ${r.table}`);
    expect(unmarked(samplePlan({ mode: 'host', lan: [] }))).toEqual(['4 5080 iif lo → 1100', '6 5080 iif lo → 1100']);
    expect(unmarked(samplePlan({ lan: ['lan0', 'br-guest'] }))).toEqual(['4 5080 iif lan0 → 1100', '4 5081 iif br-guest → 1100', '6 5080 iif lan0 → 1100', '6 5081 iif br-guest → 1100']);
    // Only fully unmarked packets: another program's marked traffic (Tailscale's 0x80000) is not ours to take.
    expect(renderIpRules(samplePlan()).find((r) => r.fwmark === 0)!.fwmask).toBe(0xffffffff);
    const none = samplePlan({ gateways: [], active: null });
    expect(renderIpRules(none).filter((r) => r.fwmark === 0 || r.src)).toEqual([]);
    expect(renderRoutes(none).filter((r) => r.type === 'unicast')).toEqual([]);
  });

  it('the tunnel path\'s table routes into the active gateway\'s tunnel, the first\'s when none is (kill switch), with the prohibit backstop under it', () => {
    const t1100 = (p: DataplanePlan) => renderRoutes(p).filter((r) => r.table === 1100 && r.family === 4);
    expect(t1100(samplePlan({ active: 'gw2' }))).toEqual([
      { family: 4, table: 1100, type: 'unicast', dev: 'swg-gw2' },
      { family: 4, table: 1100, type: 'prohibit', metric: 4_000_000_000 },
    ]);
    expect(t1100(samplePlan({ active: null }))[0]).toEqual({ family: 4, table: 1100, type: 'unicast', dev: 'swg-gw1' });
  });

  it('inbound flows keep the path they came in on; replies take it, never resolved (the kill switch must not reject them)', () => {
    for (const mode of ['router', 'host'] as const) {
      const text = renderRuleset(samplePlan({ mode, lan: mode === 'router' ? ['lan0'] : [] }));
      expect(chain(text, 'inbound')).toEqual(['iifname "lo" return', 'iifname "swg-gw1" ct mark set 0x1100 return', 'iifname "swg-gw2" ct mark set 0x1200 return', 'ct mark set 0x1000']);
      // A flow older than the table: from the tunnel address the ip rules take it, from any other the breakout.
      expect(chain(text, 'reply_path')).toEqual(['ct mark and 0xff00 != 0 meta mark set ct mark and 0xff00 return', 'ip saddr { 10.64.0.2 } return', 'ip6 saddr { fd64::2 } return', 'meta mark set 0x1000']);
      const out = chain(text, 'out');
      expect(out).toContain('ct direction reply goto reply_path');
      expect(out.indexOf('meta mark != 0 return')).toBeLessThan(out.indexOf('ct direction reply goto reply_path'));
      expect(text).not.toContain('ct direction reply return\n\t\toifname');
    }
    const router = renderRuleset(samplePlan());
    const pre = chain(router, 'pre');
    expect(pre.slice(1, 5)).toEqual([
      'ct direction reply iifname { "lan0" } goto reply_path',
      'ct direction reply return',
      'iifname != { "lan0" } ct state new jump inbound',
      'iifname != { "lan0" } return',
    ]);
    // The router's ICMP errors about a forwarded flow take the flow's path (resolved: dead tunnel → dropped).
    expect(chain(router, 'out')).toContain('ct state related ct mark and 0xff00 != 0 meta mark set ct mark and 0xff00 goto resolve');
    const host = chain(renderRuleset(samplePlan({ mode: 'host', lan: [] })), 'out');
    expect(host.indexOf('ct direction reply goto reply_path')).toBeLessThan(host.findIndex((l) => l.includes('goto resolve')));
  });

  it('a WAN guard drops what carries a tunnel path or a tunnel address out of the WAN, counted, before NAT; breakout from a tunnel address passes', () => {
    const text = renderRuleset(samplePlan({ gateways: own({}) }));
    expect(chain(text, 'wan_guard')).toEqual([
      'type filter hook postrouting priority filter; policy accept;',
      'oifname "wan0" meta mark and 0xf000 == 0x1000 meta mark and 0xff00 != 0x1000 counter drop',
      'oifname "wan0" meta mark and 0xff00 != 0x1000 ip saddr { 10.64.0.2, 10.65.0.7 } counter drop',
      'oifname "wan0" meta mark and 0xff00 != 0x1000 ip6 saddr { fd64::2 } counter drop',
    ]);
    expect(rulesetObjects(samplePlan()).chains).toContain('wan_guard');
    // No WAN yet (auto, no default route): nothing to guard.
    expect(rulesetObjects(samplePlan({ wan: 'lo' })).chains).not.toContain('wan_guard');
    expect(renderRuleset(samplePlan({ wan: 'lo' }))).not.toContain('wan_guard');
  });

  it('no NAT for what leaves a tunnel from that tunnel\'s own address (shared addresses would collide in conntrack); the rest is masqueraded', () => {
    const post = renderRuleset(samplePlan({ gateways: [GW1, { ...GW2, addrs4: ['10.65.0.5'], addrs6: [] }] })).split('chain post {')[1]!;
    const lines = post.split('\n').map((l) => l.trim());
    const masq = lines.findIndex((l) => l.endsWith('masquerade'));
    expect(lines.indexOf('oifname "swg-gw1" ip saddr { 10.64.0.2 } return')).toBeGreaterThan(-1);
    expect(lines.indexOf('oifname "swg-gw1" ip saddr { 10.64.0.2 } return')).toBeLessThan(masq);
    expect(lines.indexOf('oifname "swg-gw1" ip6 saddr { fd64::2 } return')).toBeLessThan(masq);
    expect(lines.indexOf('oifname "swg-gw2" ip saddr { 10.65.0.5 } return')).toBeLessThan(masq);
    // gw2's own address only on gw2: a flow that started from gw1's address and now leaves by gw2 is masqueraded.
    expect(lines.some((l) => l.startsWith('oifname "swg-gw2"') && l.includes('10.64.0.2'))).toBe(false);
    expect(lines[masq]).toBe('oifname { "wan0", "swg-gw1", "swg-gw2" } masquerade');
  });

  it('IPv6 to a gateway without IPv6 is rejected at once, after the default path is resolved; gateways with IPv6 are not touched', () => {
    const resolve = chain(renderRuleset(samplePlan({ gateways: own({}) })), 'resolve');
    expect(resolve.at(-1)).toBe('meta nfproto ipv6 meta mark { 0x1200 } jump reject_flow');
    expect(resolve.indexOf('meta mark 0x1f00 meta mark set meta mark map @active')).toBeLessThan(resolve.length - 1);
    expect(chain(renderRuleset(samplePlan()), 'resolve').join('\n')).not.toContain('nfproto ipv6');
    // Neighbour discovery, DHCP and other broadcast/multicast never get a path (it would be refused with it).
    const router = chain(renderRuleset(samplePlan({ gateways: own({}) })), 'pre');
    expect(router.indexOf('fib daddr type { local, broadcast, multicast } return')).toBeLessThan(router.indexOf('meta mark 0 jump classify'));
    const host = chain(renderRuleset(samplePlan({ mode: 'host', lan: [], gateways: own({}) })), 'out');
    const nd = host.indexOf('icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } return');
    expect(nd).toBeGreaterThan(0);
    expect(nd).toBeLessThan(host.indexOf('meta mark 0 jump classify'));
    expect(host.indexOf('fib daddr type { local, broadcast, multicast } return')).toBeLessThan(host.indexOf('meta mark 0 jump classify'));
  });

  it('planDataplane: a gateway has IPv6 when it has an IPv6 address and an IPv6 AllowedIPs', async () => {
    const v6 = `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32, fd64::2/128\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n`;
    const v6NotAllowed = `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32, fd64::2/128\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`;
    writeFileSync(join(dir, 'v6.conf'), v6, { mode: 0o600 });
    writeFileSync(join(dir, 'v6na.conf'), v6NotAllowed, { mode: 0o600 });
    const p = plan(await load(['mode: host', 'tunnel:', '  gateways:', '    - { name: a, config: v6.conf }', '    - { name: b, config: v6na.conf }', '    - { name: c, config: gw1.conf }', 'default: tunnel']));
    expect(p.gateways.map((g) => [g.name, g.addrs6, g.ipv6])).toEqual([
      ['a', ['fd64::2'], true],
      ['b', ['fd64::2'], false],
      ['c', [], false],
    ]);
  });
});
