// Rules' when: (daemon/rule-scheduler.ts) and devices: names
// (daemon/devices.ts), pure parts and timers under a manual clock, and the
// plan's view of them (daemon/dataplane/rule-match.ts).
import { describe, expect, it } from 'vitest';
import type { RuleConfig, Schedule } from '../../config/types.js';
import { localTime, nextBoundary, RuleScheduler, scheduleActive } from '../../daemon/rule-scheduler.js';
import { DeviceDirectory, parseDeviceNames } from '../../daemon/devices.js';
import { planRuleMatch, ruleConditionLines } from '../../daemon/dataplane/rule-match.js';
import { recordingLogger } from '../helpers/fake-deps.js';
import { ManualClock } from '../helpers/clock.js';

const POS = { file: '/c.yaml', line: 1, col: 1 };
const sched = (o: Partial<Schedule>): Schedule => ({ days: [0, 1, 2, 3, 4, 5, 6], ranges: [{ from: 0, to: 1440 }], timeZone: 'UTC', pos: POS, ...o });
const at = (iso: string): number => Date.parse(iso);
const rule = (index: number, over: Partial<RuleConfig>): RuleConfig => ({ index, domains: [], cidrs: [], sources: [], lists: [], via: ['breakout'], label: '', pos: POS, ...over });

describe('schedules', () => {
  it('reads local time in the rule\'s zone, DST included', () => {
    // 2026-03-29 01:30 UTC: Berlin has just moved to summer time (03:30 CEST).
    expect(localTime(at('2026-03-29T01:30:00Z'), 'Europe/Berlin')).toEqual({ day: 0, minute: 3 * 60 + 30 });
    expect(localTime(at('2026-03-28T01:30:00Z'), 'Europe/Berlin')).toEqual({ day: 6, minute: 2 * 60 + 30 });
    expect(localTime(at('2026-12-07T10:00:00Z'), 'Asia/Kolkata')).toEqual({ day: 1, minute: 15 * 60 + 30 });
  });

  it('weekday ranges, and a range past midnight belongs to the day it starts', () => {
    const office = sched({ days: [1, 2, 3, 4, 5], ranges: [{ from: 8 * 60, to: 17 * 60 }] });
    expect(scheduleActive(office, at('2026-12-07T07:59:00Z'))).toBe(false); // Monday
    expect(scheduleActive(office, at('2026-12-07T08:00:00Z'))).toBe(true);
    expect(scheduleActive(office, at('2026-12-07T17:00:00Z'))).toBe(false);
    expect(scheduleActive(office, at('2026-12-06T12:00:00Z'))).toBe(false); // Sunday
    const night = sched({ days: [5], ranges: [{ from: 22 * 60, to: 6 * 60 }] }); // Friday night
    expect(scheduleActive(night, at('2026-12-11T23:00:00Z'))).toBe(true); // Fri 23:00
    expect(scheduleActive(night, at('2026-12-12T05:59:00Z'))).toBe(true); // Sat 05:59
    expect(scheduleActive(night, at('2026-12-12T06:00:00Z'))).toBe(false);
    expect(scheduleActive(night, at('2026-12-10T23:00:00Z'))).toBe(false); // Thu 23:00
  });

  it('finds the next boundary, in the zone, and none for an always-on schedule', () => {
    const office = sched({ days: [1, 2, 3, 4, 5], ranges: [{ from: 8 * 60, to: 17 * 60 }], timeZone: 'Europe/Berlin' });
    // Monday 06:59:30 UTC = 07:59:30 Berlin (winter): on at 07:00 UTC.
    expect(new Date(nextBoundary(office, at('2026-12-07T06:59:30Z'))!).toISOString()).toBe('2026-12-07T07:00:00.000Z');
    // Friday 17:00 Berlin → off; the next change is Monday 08:00 Berlin.
    expect(new Date(nextBoundary(office, at('2026-12-11T16:00:00Z'))!).toISOString()).toBe('2026-12-14T07:00:00.000Z');
    expect(nextBoundary(sched({}), at('2026-12-07T10:00:00Z'))).toBeNull();
  });

  it('RuleScheduler fires at the boundary on the injected clock, and only when a rule changed', async () => {
    const clock = new ManualClock(at('2026-12-07T07:59:00Z'));
    const seen: { rule: number; active: boolean }[][] = [];
    const s = new RuleScheduler(clock, (c) => seen.push(c));
    const r = rule(3, { when: sched({ days: [1], ranges: [{ from: 8 * 60, to: 8 * 60 + 30 }] }) });
    s.configure([rule(0, {}), r]);
    expect(s.active(r)).toBe(false);
    expect(s.active(rule(0, {}))).toBe(true);
    await clock.advance(59_000);
    expect(seen).toEqual([]);
    // Fired just after the boundary (the wall clock is past it then).
    await clock.advance(1_000 + 50);
    expect(seen).toEqual([[{ rule: 3, active: true }]]);
    expect(s.active(r)).toBe(true);
    await clock.advance(30 * 60_000);
    expect(seen.at(-1)).toEqual([{ rule: 3, active: false }]);
    // A wall clock that steps forward (NTP) is caught up by the hourly re-check at worst.
    // Monday 08:30 → next Monday 07:15: the timer armed for an hour later finds the rule on at 08:15.
    clock.stepWall(7 * 24 * 3600_000 - 75 * 60_000);
    await clock.advance(3600_000);
    expect(seen).toHaveLength(3);
    expect(seen.at(-1)).toEqual([{ rule: 3, active: true }]);
    s.stop();
  });
});

describe('device names', () => {
  it('reads ethers, dnsmasq leases and ISC dhcpd.leases', () => {
    const m = parseDeviceNames(['02:00:00:00:00:aa kids-tablet', '# comment', '02-00-00-00-00-AB work-laptop', 'not a line at all here'].join('\n'));
    parseDeviceNames('1765100000 02:00:00:00:00:0c 192.168.1.50 Kids-Tablet 01:02:00:00:00:00:0c\n1765100000 02:00:00:00:00:0d 192.168.1.51 * *\n', m);
    parseDeviceNames('lease 192.168.1.60 {\n  starts 4 2026/12/03 10:00:00;\n  hardware ethernet 02:00:00:00:00:0e;\n  client-hostname "tv";\n}\n', m);
    expect(Object.fromEntries([...m].map(([k, v]) => [k, [...v].sort()]))).toEqual({
      'kids-tablet': ['02:00:00:00:00:0c', '02:00:00:00:00:aa'],
      'work-laptop': ['02:00:00:00:00:ab'],
      tv: ['02:00:00:00:00:0e'],
    });
  });

  it('follows a new lease: the change is reported, and the plan matches the new MAC', async () => {
    const clock = new ManualClock();
    const files = new Map([['/leases', '1765100000 02:00:00:00:00:01 192.168.1.50 tablet *\n']]);
    let changes = 0;
    const dir = new DeviceDirectory(async (p) => p.map((f) => files.get(f) ?? null), clock, recordingLogger(), () => changes++, 1000);
    await dir.configure(['/leases', '/missing'], true);
    const r = rule(0, { devices: [{ device: 'tablet', mac: null, origin: { pos: POS } }, { device: '02:00:00:00:00:99', mac: '02:00:00:00:00:99', origin: { pos: POS } }] });
    const ctx = { active: () => true, macsOf: (n: string) => dir.macsOf(n) };
    expect(planRuleMatch(r, ctx)!.macs).toEqual(['02:00:00:00:00:01', '02:00:00:00:00:99']);
    files.set('/leases', '1765100000 02:00:00:00:00:02 192.168.1.77 tablet *\n');
    await clock.advance(1000);
    expect(changes).toBe(1);
    expect(planRuleMatch(r, ctx)!.macs).toEqual(['02:00:00:00:00:02', '02:00:00:00:00:99']);
    await clock.advance(1000);
    expect(changes).toBe(1); // nothing changed
    dir.stop();
  });

  it('a device rule whose names are all unknown matches nothing, never every client', () => {
    const r = rule(0, { devices: [{ device: 'ghost', mac: null, origin: { pos: POS } }] });
    const m = planRuleMatch(r, { active: () => true, macsOf: () => [] })!;
    expect(m.off).toMatch(/no device of ghost is known/);
    expect(ruleConditionLines([], [], m)).toBeNull();
    expect(ruleConditionLines([], [], { ...m, off: null })).toBeNull();
  });
});

describe('ports and protocol as conditions', () => {
  it('ports without a protocol match tcp and udp; a protocol alone is one condition', () => {
    const ports = planRuleMatch(rule(0, { ports: [{ from: 443, to: 443, origin: { pos: POS } }, { from: 27000, to: 27050, origin: { pos: POS } }] }))!;
    expect(ruleConditionLines([], ['ip daddr 198.51.100.0/24'], ports)).toEqual(['ip daddr 198.51.100.0/24 meta l4proto { tcp, udp } th dport { 443, 27000-27050 }']);
    const udp = planRuleMatch(rule(0, { protocol: 'udp' }))!;
    expect(ruleConditionLines([], [], udp)).toEqual(['meta l4proto udp']);
    expect(planRuleMatch(rule(0, {}))).toBeUndefined();
    const off = planRuleMatch(rule(0, { protocol: 'tcp', when: sched({ days: [] }) }), { active: () => false, macsOf: () => [] })!;
    expect(ruleConditionLines([], [], off)).toBeNull();
    expect(off.off).toMatch(/^off now \(when: /);
  });
});

describe('the ruleset with matchers (pure rendering)', () => {
  it('renders ports, devices and a reroute rule after the rules before it', async () => {
    const { renderRuleset } = await import('../../daemon/dataplane/plan.js');
    const { rule: planned, samplePlan } = await import('../helpers/plans.js');
    const m = (o: object) => ({ protocol: null, ports: [], macs: null, active: true, reroute: false, off: null, ...o });
    const text = renderRuleset(
      samplePlan({
        rules: [
          planned(0, 'r0000000', { dst4: ['192.0.2.0/24'], match: m({ protocol: 'tcp', ports: ['443'] }) }),
          planned(1, 'r0000001', { match: m({ macs: ['02:00:00:00:00:01'] }) }),
          planned(2, 'r0000002', { dst4: ['198.51.100.0/24'], match: m({ reroute: true, active: false, off: 'off now' }) }),
        ],
      }),
    );
    expect(text).toContain('\t\tip daddr { 192.0.2.0/24 } meta l4proto tcp th dport 443 meta mark set 0x1000 return');
    expect(text).toContain('\t\tether saddr 02:00:00:00:00:01 meta mark set 0x1000 return');
    expect(text).toContain('\t\t# rule 2: off now');
    const chain = text.slice(text.indexOf('chain reroute {'), text.indexOf('\n\t}', text.indexOf('chain reroute {')));
    expect(chain.split('\n').map((l) => l.trim()).filter(Boolean)).toEqual([
      'chain reroute {',
      'ip daddr { 192.0.2.0/24 } meta l4proto tcp th dport 443 return',
      'ether saddr 02:00:00:00:00:01 return',
      'ip daddr { 198.51.100.0/24 } ct mark set 0',
    ]);
    // Without the feature's lines (a plan with no matchers) there is no reroute chain and no jump.
    expect(renderRuleset(samplePlan({ rules: [planned(0, 'r0000000', { dst4: ['192.0.2.0/24'] })] }))).not.toContain('reroute');
  });
});
