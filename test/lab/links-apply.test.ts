// Applies the plan of several WAN links and unmanaged gateways with the real
// nft and ip, inside a network namespace this test creates (never the
// machine's own):
//
//   [sw-la-<pid>]  lan0, wan0, wwan0, wan2, awg0, swg-gw1 (veth pairs, both ends inside)
//
// Proves nft accepts pick_link (numgen by weight, the proxy's unmatched bit),
// the inbound marks, the guard and the NAT over every link, and that ip
// accepts the link rules and routes (with next hops). Needs root: CI runs as root.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load.js';
import { ipRuleSelector, planDataplane, renderIpRules, renderLinkFlip, renderRoutes, renderRuleset, type DataplanePlan } from '../../daemon/dataplane/plan.js';

const NS = `sw-la-${process.pid}`;
const isRoot = process.getuid?.() === 0;
const haveNft = spawnSync('nft', ['--version']).status === 0;
const supported = isRoot && haveNft;
const why = !isRoot ? 'needs root (network namespaces)' : 'nft is not installed';
if (!supported) console.warn(`SKIPPED test/lab/links-apply.test.ts: ${why}`);

const inNs = (argv: string[], input?: string): string => execFileSync('ip', ['netns', 'exec', NS, ...argv], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
const key = (): string => randomBytes(32).toString('base64');

let dir: string;
async function plan(balance: boolean, proxy: boolean): Promise<DataplanePlan> {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    f,
    [
      'mode: router',
      'lan: [lan0]',
      'breakout:',
      `  balance: ${balance}`,
      '  links:',
      '    - { name: fiber, interface: wan0, gateway: [10.99.2.1, "fd99:2::1"], weight: 2 }',
      '    - { name: lte, interface: wwan0, gateway: 10.99.5.1, metered: true }',
      '    - { name: dsl, interface: wan2, gateway: 10.99.6.1 }',
      'tunnel:',
      '  gateways:',
      '    - { name: gw1, config: gw1.conf }',
      '    - { name: awg, interface: awg0, dns: [10.8.0.1] }',
      '    - { name: ts, table: 52, dns: [100.100.100.100] }',
      `proxy: { enabled: ${proxy} }`,
    ].join('\n'),
  );
  const l = await loadConfig(f);
  return planDataplane({ config: l.config, listCidrs: new Map(), wan: 'wan0', active: 'gw1', healthy: () => true, dnsPort: 53, links: { active: null } });
}

describe.skipIf(!supported && !process.env.CI)('links and unmanaged gateways in a real nft and ip', () => {
  beforeAll(() => {
    if (!supported) throw new Error(`lab test cannot run: ${why}`);
    dir = mkdtempSync(join(tmpdir(), 'splitwan-links-apply-'));
    writeFileSync(join(dir, 'gw1.conf'), `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n`, { mode: 0o600 });
    execFileSync('ip', ['netns', 'add', NS]);
    for (const d of ['lan0', 'wan0', 'wwan0', 'wan2', 'awg0', 'swg-gw1']) execFileSync('ip', ['-n', NS, 'link', 'add', d, 'type', 'veth', 'peer', 'name', `${d.slice(0, 10)}-p`]);
    const addrs: [string, string][] = [['wan0', '10.99.2.2/24'], ['wwan0', '10.99.5.2/24'], ['wan2', '10.99.6.2/24']];
    for (const [d, a] of addrs) execFileSync('ip', ['-n', NS, 'addr', 'add', a, 'dev', d]);
    execFileSync('ip', ['-n', NS, '-6', 'addr', 'add', 'fd99:2::2/64', 'dev', 'wan0', 'nodad']);
    for (const d of ['wan0', 'wwan0', 'wan2', 'awg0', 'swg-gw1']) execFileSync('ip', ['-n', NS, 'link', 'set', d, 'up']);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NS]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [balance, proxy] of [
    [false, false],
    [true, false],
    [true, true],
  ] as const) {
    it(`nft takes the ruleset (balance ${balance}, proxy ${proxy})`, async () => {
      const p = await plan(balance, proxy);
      inNs(['nft', '-f', '-'], renderRuleset(p));
      const listed = inNs(['nft', 'list', 'chain', 'inet', 'splitwan', 'pick_link']);
      if (balance) expect(listed).toMatch(/numgen random mod 3 map \{ 0-1 : 0x0000200\d, 2 : 0x0000220\d \}/);
      else expect(listed).toContain('meta mark set 0x00002000');
      // A link failover's flip: one line, pick_link's rules replaced.
      inNs(['nft', '-f', '-'], renderLinkFlip({ ...p, activeLink: 'dsl', balance: null }) + '\n');
      expect(inNs(['nft', 'list', 'chain', 'inet', 'splitwan', 'pick_link'])).toMatch(/meta mark set 0x0000220\d/);
      inNs(['nft', 'delete', 'table', 'inet', 'splitwan']);
    });
  }

  it('ip takes the rules and the routes, next hops included', async () => {
    const p = await plan(false, false);
    for (const f of [4, 6] as const) {
      const rules = renderIpRules(p).filter((r) => r.family === f).map((r) => ['rule', 'add', 'pref', String(r.priority), ...ipRuleSelector(r)].join(' '));
      inNs(['ip', `-${f}`, '-batch', '-'], rules.join('\n') + '\n');
      const routes = renderRoutes(p)
        .filter((r) => r.family === f)
        .map((r) => ['route', 'replace', ...(r.type === 'prohibit' ? ['prohibit'] : []), f === 4 ? '0.0.0.0/0' : '::/0', ...(r.via ? ['via', r.via] : []), ...(r.type === 'unicast' ? ['dev', r.dev!] : []), 'table', String(r.table), ...(r.metric !== undefined ? ['metric', String(r.metric)] : [])].join(' '));
      inNs(['ip', `-${f}`, '-batch', '-'], routes.join('\n') + '\n');
    }
    expect(inNs(['ip', 'route', 'show', 'table', '1200'])).toContain('default via 10.99.2.1 dev wan0');
    expect(inNs(['ip', 'route', 'show', 'table', '1202'])).toContain('default via 10.99.5.1 dev wwan0');
    expect(inNs(['ip', '-6', 'route', 'show', 'table', '1201'])).toContain('default via fd99:2::1 dev wan0');
    expect(inNs(['ip', 'rule', 'show'])).toMatch(/5022:\s+from all fwmark 0x1300\/0xff00 lookup 52/);
    // A breakout-marked lookup goes by the best link; a link mark by its own table.
    expect(inNs(['ip', 'route', 'get', '198.51.100.9', 'mark', '0x1000'])).toContain('via 10.99.2.1 dev wan0');
    expect(inNs(['ip', 'route', 'get', '198.51.100.9', 'mark', '0x2200'])).toContain('via 10.99.6.1 dev wan2');
  });
});
