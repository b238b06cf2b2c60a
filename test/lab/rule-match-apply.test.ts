// Rulesets with port, protocol, device and schedule rules (rule-match.ts),
// applied with the real nft inside a network namespace this test creates:
//
//   [sw-rm-<pid>]  lan0, wan0, swg-gw1, swg-gw2 (veth pairs with both ends inside)
//
// Proves nft accepts every condition the renderer writes (ports and ranges,
// tcp/udp, ether saddr sets, the reroute chain) and that a schedule flip is
// a re-render that keeps tagged addresses. Needs root: CI runs as root.
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderRuleset, tagSetNames, type DataplanePlan } from '../../daemon/dataplane/plan.js';
import type { RuleMatch } from '../../daemon/dataplane/rule-match.js';
import { rule, samplePlan } from '../helpers/plans.js';

const NS = `sw-rm-${process.pid}`;
const isRoot = process.getuid?.() === 0;
const haveNft = spawnSync('nft', ['--version']).status === 0;
const supported = isRoot && haveNft;
if (!supported) console.log(`SKIPPED rule-match-apply: ${!isRoot ? 'needs root (network namespaces)' : 'nft is not installed'}`);

function nft(args: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', NS, 'nft', ...args], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}
function state(): { chains: string[]; sets: string[] } {
  const j = JSON.parse(nft(['-j', 'list', 'table', 'inet', 'splitwan'])) as { nftables: Record<string, { name: string }>[] };
  return { chains: j.nftables.filter((o) => o.chain).map((o) => o.chain!.name), sets: j.nftables.filter((o) => o.set || o.map).map((o) => (o.set ?? o.map)!.name) };
}

const m = (over: Partial<RuleMatch>): RuleMatch => ({ protocol: null, ports: [], macs: null, active: true, reroute: false, off: null, ...over });

function plan(active: boolean): DataplanePlan {
  return samplePlan({
    rules: [
      rule(0, 'aaaa0001', { match: m({ protocol: 'udp', ports: ['3478', '27000-27050'] }) }),
      rule(1, 'aaaa0002', { tagged: true, match: m({ protocol: 'tcp', ports: ['443'] }) }),
      rule(2, 'aaaa0003', { match: m({ macs: ['02:00:00:00:00:01', '02:00:00:00:00:02'] }) }),
      rule(3, 'aaaa0004', { src4: ['192.168.77.0/24'], dst6: ['2001:db8::/32'], match: m({ macs: ['02:00:00:00:00:03'], ports: ['22'] }) }),
      rule(4, 'aaaa0005', { dst4: ['198.51.100.0/24'], match: m({ active, reroute: true, off: active ? null : 'off now' }) }),
      rule(5, 'aaaa0006', { match: m({ macs: [], off: null }) }),
    ],
  });
}

describe.skipIf(!supported && !process.env.CI)('rule matchers in a real nft', () => {
  beforeAll(() => {
    if (!supported) throw new Error('lab test cannot run: needs root and nft');
    execFileSync('ip', ['netns', 'add', NS]);
    for (const d of ['lan0', 'wan0', 'swg-gw1', 'swg-gw2']) execFileSync('ip', ['-n', NS, 'link', 'add', d, 'type', 'veth', 'peer', 'name', `${d}-p`]);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NS]);
  });

  it('accepts ports, ranges, protocols, MAC sets and the reroute chain', () => {
    const text = renderRuleset(plan(true));
    nft(['-f', '-'], text);
    // A device rule none of whose devices is known renders no line (never "every client").
    expect(text).toContain('# rule 5: no device it names is known now');
    expect(text).not.toMatch(/aaaa0006|^\t\tmeta mark set 0x1000 return$/m);
    const classify = nft(['list', 'chain', 'inet', 'splitwan', 'classify']);
    expect(classify).toMatch(/udp dport \{ 3478, 27000-27050 \} meta mark set 0x00001000 return/);
    expect(classify).toMatch(/ip daddr @tag4_aaaa0002 tcp dport 443 meta mark set/);
    expect(classify).toMatch(/ether saddr \{ 02:00:00:00:00:01, 02:00:00:00:00:02 \} meta mark set/);
    // Source CIDRs and devices are both clients: either, with the IPv6 destination (the CIDR is IPv4, so only the MAC pairs with it).
    expect(classify).toMatch(/ether saddr 02:00:00:00:00:03 ip6 daddr 2001:db8::\/32 (th|tcp|udp|meta l4proto).*22/);
    expect(classify).not.toMatch(/ip saddr 192\.168\.77\.0\/24 ip6 daddr/);
    const reroute = nft(['list', 'chain', 'inet', 'splitwan', 'reroute']);
    expect(reroute).toMatch(/ip daddr 198\.51\.100\.0\/24 meta mark set 0x00001000 ct mark set meta mark goto resolve/);
    // The rules before it come first and return: a reroute rule never takes an earlier rule's flows.
    expect(reroute.indexOf('udp dport { 3478, 27000-27050 } return')).toBeGreaterThan(0);
    expect(reroute.indexOf('udp dport { 3478, 27000-27050 } return')).toBeLessThan(reroute.indexOf('198.51.100.0/24'));
    expect(nft(['list', 'chain', 'inet', 'splitwan', 'pre'])).toMatch(/jump reroute[\s\S]*ct mark != 0x00000000 meta mark set ct mark goto resolve/);
  });

  it('a schedule boundary is a re-render: the rule goes, the reroute line clears the saved path, tags stay', () => {
    const p = plan(true);
    nft(['-f', '-'], renderRuleset(p, state()));
    const t = tagSetNames(p.rules[1]!);
    nft(['-f', '-'], `add element inet splitwan ${t.v4} { 198.51.100.9 timeout 10m }\n`);
    nft(['-f', '-'], renderRuleset(plan(false), state()));
    expect(nft(['list', 'chain', 'inet', 'splitwan', 'classify'])).not.toContain('198.51.100.0/24');
    expect(nft(['list', 'chain', 'inet', 'splitwan', 'reroute'])).toMatch(/ip daddr 198\.51\.100\.0\/24 ct mark set 0x00000000/);
    expect(nft(['list', 'set', 'inet', 'splitwan', t.v4])).toContain('198.51.100.9');
    // Without reroute rules the chain goes.
    nft(['-f', '-'], renderRuleset(samplePlan({ rules: [] }), state()));
    expect(state().chains).not.toContain('reroute');
  });
});
