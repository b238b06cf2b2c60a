// Per-app split (issue 16): the pure parts. The ruleset's app chains (where
// they sit among the chains that decide a flow's path), the pins' marks given
// health, cgroup patterns, the cgroup2 mount and nft's name for a cgroup, and
// the CLI's helpers. The kernel side is test/e2e/laptop-apps.test.ts.
import { describe, expect, it } from 'vitest';
import { planAppPins, type AppCgroupInput } from '../../daemon/dataplane/app-rules.js';
import { MARK_BREAKOUT, MARK_TUNNEL, renderRuleset, rulesetObjects } from '../../daemon/dataplane/plan.js';
import { cgroup2Mount, nftCgroupPath, v2CgroupOf } from '../../daemon/apps/cgroups.js';
import { cgroupPatternMatches, cgroupPatternProblem, levelMatches } from '../../config/app-patterns.js';
import { execIdentity, exitCodeOf, withTerminator } from '../../daemon/commands/exec.js';
import { GW1, GW2, rule, samplePlan } from '../helpers/plans.js';

const input = (over: Partial<AppCgroupInput> = {}): AppCgroupInput => ({ path: 'breakout', nftPath: 'splitwan.slice/via-breakout', level: 2, id: 7, dns4: 40001, dns6: 40002, ...over });
const marks = { breakout: MARK_BREAKOUT, tunnel: MARK_TUNNEL, gateways: [GW1, GW2], links: [] };
const chain = (text: string, name: string): string[] => {
  const m = new RegExp(`\\tchain ${name} \\{\\n([\\s\\S]*?)\\n\\t\\}`).exec(text);
  if (!m) throw new Error(`no chain ${name} in:\n${text}`);
  return m[1]!.split('\n').map((l) => l.trim());
};

describe('planAppPins: each pin\'s mark, given health', () => {
  it('breakout and tunnel always have theirs (the active map does the kill switch); a gateway its own while up, none (refused) while down', () => {
    const pins = planAppPins([input(), input({ path: 'tunnel' }), input({ path: 'gw:gw2' }), input({ path: 'gw:gw1' }), input({ path: 'gw:gone' })], marks, (g) => g !== 'gw1');
    expect(pins.map((p) => p.mark)).toEqual([MARK_BREAKOUT, MARK_TUNNEL, GW2.mark, null, null]);
  });
});

describe('the ruleset with pinned cgroups', () => {
  const host = (apps: AppCgroupInput[], healthy = (_g: string) => true) =>
    samplePlan({ mode: 'host', lan: [], dnsPort: null, localDns: { v4: { host: '127.0.0.53', port: 53 }, v6: null }, rules: [rule(0, 'aaaa0000', { tagged: true, mark: MARK_TUNNEL })], apps: planAppPins(apps, marks, healthy) });

  it('without pins nothing changes: no app chains, no jump', () => {
    const text = renderRuleset(samplePlan({ mode: 'host', lan: [] }));
    expect(text).not.toContain('apps');
    expect(rulesetObjects(samplePlan()).chains).not.toContain('apps');
  });

  it('host mode: a new flow of a pinned socket gets its path before the rules; DNS is left to the nat chain; a down gateway refuses', () => {
    const plan = host([input(), input({ path: 'gw:gw1', nftPath: 'unified/splitwan.slice/via-gw-gw1', id: 8 })], (g) => g !== 'gw1');
    const text = renderRuleset(plan);
    expect(chain(text, 'apps')).toEqual([
      'meta l4proto { tcp, udp } th dport 53 return',
      '# breakout',
      'socket cgroupv2 level 2 "splitwan.slice/via-breakout" meta mark set 0x1000 return',
      '# gw:gw1 (down: refused)',
      'socket cgroupv2 level 2 "unified/splitwan.slice/via-gw-gw1" jump reject_flow',
    ]);
    const out = chain(text, 'out');
    // After the fast path (a flow keeps the path it started with) and what is never routed, before host DNS's return and the rules.
    const at = (l: string) => out.findIndex((x) => x.startsWith(l));
    expect(at('jump apps')).toBeGreaterThan(at('ct mark != 0 meta mark set ct mark goto resolve'));
    expect(at('jump apps')).toBeGreaterThan(at('fib daddr type { local, broadcast, multicast } return'));
    expect(at('jump apps')).toBeLessThan(at('meta l4proto { tcp, udp } th dport 53 return'));
    expect(at('jump apps')).toBeLessThan(at('meta mark 0 jump classify'));
    // The mark is saved in conntrack like a rule's, and resolved (tunnel → active gateway, kill switch).
    expect(at('ct mark 0 ct mark set meta mark')).toBeGreaterThan(at('jump apps'));
    expect(chain(text, 'apps_dns')).toEqual([
      'type nat hook output priority -110; policy accept;',
      'socket cgroupv2 level 2 "splitwan.slice/via-breakout" meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to 127.0.0.1:40001',
      'socket cgroupv2 level 2 "splitwan.slice/via-breakout" meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 dnat ip6 to [::1]:40002',
      'socket cgroupv2 level 2 "unified/splitwan.slice/via-gw-gw1" meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to 127.0.0.1:40001',
      'socket cgroupv2 level 2 "unified/splitwan.slice/via-gw-gw1" meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 dnat ip6 to [::1]:40002',
    ]);
    expect(rulesetObjects(plan).chains).toEqual(expect.arrayContaining(['apps', 'apps_dns']));
  });

  it('a family the path\'s resolver does not listen on: the pinned program\'s DNS of that family is refused before anything lets it through', () => {
    const out = chain(renderRuleset(host([input({ dns6: null })])), 'out');
    const guard = out.findIndex((l) => l === 'socket cgroupv2 level 2 "splitwan.slice/via-breakout" meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 jump reject_flow');
    expect(guard).toBeGreaterThanOrEqual(0);
    expect(guard).toBeLessThan(out.indexOf('oifname "lo" return'));
  });

  it('router mode: the router\'s own pinned programs take their path; its other traffic is untouched', () => {
    const text = renderRuleset(samplePlan({ apps: planAppPins([input({ path: 'gw:gw2' })], marks, () => true) }));
    const out = chain(text, 'out');
    expect(out.slice(-4)).toEqual(['ct mark and 0xff00 != 0 meta mark set ct mark and 0xff00 goto resolve', 'fib daddr type { local, broadcast, multicast } return', 'jump apps', 'meta mark != 0 ct mark set meta mark goto resolve']);
    expect(chain(text, 'apps')).toContain('socket cgroupv2 level 2 "splitwan.slice/via-breakout" meta mark set 0x1200 return');
  });
});

describe('cgroups: the mount, nft\'s name, a process\'s cgroup', () => {
  const hybrid = ['tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0', 'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0', 'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0', ''].join('\n');
  const unified = 'sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n';
  it('finds cgroup2 in both layouts, none without it; nft names the cgroup from /sys/fs/cgroup (where it stats it)', () => {
    expect(cgroup2Mount(hybrid)).toBe('/sys/fs/cgroup/unified');
    expect(cgroup2Mount(unified)).toBe('/sys/fs/cgroup');
    expect(cgroup2Mount('proc /proc proc rw 0 0\n')).toBeNull();
    expect(cgroup2Mount('none /mnt/cg\\0402 cgroup2 rw 0 0\n')).toBe('/mnt/cg 2');
    expect(nftCgroupPath('/sys/fs/cgroup', 'splitwan.slice/via-tunnel')).toBe('splitwan.slice/via-tunnel');
    expect(nftCgroupPath('/sys/fs/cgroup/unified', 'splitwan.slice/via-tunnel')).toBe('unified/splitwan.slice/via-tunnel');
    expect(nftCgroupPath('/mnt/cg2', 'x.slice/via-breakout')).toBe('../../../mnt/cg2/x.slice/via-breakout');
    expect(v2CgroupOf('9:name=systemd:/\n0::/user.slice/user-1000.slice/app.scope\n')).toBe('user.slice/user-1000.slice/app.scope');
    expect(v2CgroupOf('4:memory:/x\n')).toBeNull();
  });
});

describe('cgroup patterns (apps: cgroup)', () => {
  it('* and ? match within one level, at the same depth', () => {
    const p = 'user.slice/user-1000.slice/user@1000.service/app.slice/app-org.mozilla.firefox-*.scope';
    expect(cgroupPatternMatches(p, 'user.slice/user-1000.slice/user@1000.service/app.slice/app-org.mozilla.firefox-1234.scope')).toBe(true);
    expect(cgroupPatternMatches(p, 'user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal-1.scope')).toBe(false);
    expect(cgroupPatternMatches('a/*', 'a/b/c')).toBe(false);
    expect(cgroupPatternMatches('/a/b?/', 'a/bc')).toBe(true);
    expect(levelMatches('*a*b*', 'xxaxxbxx')).toBe(true);
    expect(levelMatches('a*', 'b')).toBe(false);
    // Linear: a hostile pattern does not take exponential time.
    const t = Date.now();
    expect(levelMatches('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(5000))).toBe(false);
    expect(Date.now() - t).toBeLessThan(2000);
  });
  it('refuses what is no cgroup path', () => {
    expect(cgroupPatternProblem('user.slice/app-*.scope')).toBeNull();
    expect(cgroupPatternProblem('/')).toMatch(/below the root/);
    expect(cgroupPatternProblem('a/../b')).toMatch(/no empty, "\." or "\.\." levels/);
    expect(cgroupPatternProblem('a/[ab]')).toMatch(/only \* and \?/);
  });
});

describe('splitwan exec: whom it runs as, its arguments, its exit code', () => {
  it('under sudo: the invoking user; root for itself: root', () => {
    expect(execIdentity({ SUDO_UID: '1000', SUDO_GID: '1001', SUDO_USER: 'me' }, 0, 0)).toEqual({ uid: 1000, gid: 1001, user: 'me' });
    expect(execIdentity({}, 0, 0)).toEqual({ uid: 0, gid: 0, user: null });
    expect(execIdentity({ SUDO_UID: '0' }, 0, 0)).toEqual({ uid: 0, gid: 0, user: null });
    expect(execIdentity({ SUDO_UID: 'x1000' }, 0, 0)).toEqual({ uid: 0, gid: 0, user: null });
    expect(execIdentity({ SUDO_UID: '1000', SUDO_USER: 'me;rm' }, 0, 0)).toEqual({ uid: 1000, gid: 1000, user: null });
  });
  it('the command\'s own options are not read as ours; --', () => {
    expect(withTerminator(['--via', 'gw1', 'curl', '-s', 'x'], ['--via'])).toEqual(['--via', 'gw1', '--', 'curl', '-s', 'x']);
    expect(withTerminator(['--via=gw1', 'curl', '--via', 'x'], ['--via'])).toEqual(['--via=gw1', '--', 'curl', '--via', 'x']);
    expect(withTerminator(['--via', 'gw1', '--', 'curl'], ['--via'])).toEqual(['--via', 'gw1', '--', 'curl']);
  });
  it('a signal is 128 + its number, as a shell says', () => {
    expect(exitCodeOf(7, null)).toBe(7);
    expect(exitCodeOf(null, 'SIGKILL')).toBe(137);
  });
});
