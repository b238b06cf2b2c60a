// The query log's ring (dns/query-log.ts): bounded, readable from a seq on,
// privacy settings applied when written, and a reconfigure that keeps what
// fits. Records are read back as `splitwan log` and the dashboard see them.
import { describe, expect, it } from 'vitest';
import { anonymizeAddress, NO_RULE, QueryLog } from '../../dns/query-log.js';
import { TYPE } from '../../dns/wire.js';

const clock = { t: 1000, now(): number { return this.t; }, wall(): number { return 1_700_000_000_000 + this.t; } };
const policy = { rules: [{ label: 'video' }, { label: 'work' }] };

function fill(log: QueryLog, n: number, from = 0, client = '192.168.1.20'): void {
  for (let i = from; i < from + n; i++) log.record(clock.now() + i, client, `n${i}.test`, TYPE.A, policy, i % 2, 'breakout', false, ['192.0.2.1'], 0, 5, 'answered');
}

/** The question bytes the fast path hands over (name, type, class) as latin1. */
function wireQuestion(name: string, type: number): string {
  const labels = name.split('.').map((l) => String.fromCharCode(l.length) + l).join('');
  return labels + '\0' + String.fromCharCode(type >> 8, type & 0xff, 0, 1);
}

describe('QueryLog', () => {
  it('keeps the newest `size` records; since() continues where it left off and says what it missed', () => {
    const log = new QueryLog(clock, { privacy: 'full', size: 5 });
    fill(log, 3);
    const a = log.since(0);
    expect(a.entries.map((e) => e.name)).toEqual(['n0.test', 'n1.test', 'n2.test']);
    expect([a.next, a.missed]).toEqual([3, 0]);
    fill(log, 6, 3); // 9 written, 5 kept
    const b = log.since(a.next);
    expect(b.entries.map((e) => e.seq)).toEqual([4, 5, 6, 7, 8]);
    expect(b.missed).toBe(1);
    expect(log.count).toBe(5);
    expect(log.latest(2).map((e) => e.name)).toEqual(['n8.test', 'n7.test']);
    expect(log.latest(10, (e) => e.rule === 1).map((e) => e.seq)).toEqual([7, 5]);
  });

  it('decodes a record: wall time, type and rcode names, the rule label of the policy it was decided by', () => {
    const log = new QueryLog(clock, { privacy: 'full', size: 10 });
    log.record(2000, '10.0.0.5', 'x.test', TYPE.AAAA, policy, 1, 'gw:gw2', false, null, 3, -1, 'answered');
    log.record(2001, '10.0.0.5', 'y.test', 99, policy, -1, 'tunnel', false, null, 2, -1, 'servfail');
    log.record(2002, '10.0.0.5', 'z.test', TYPE.A, null, NO_RULE, '', false, null, -1, -1, 'limited');
    const [x, y, z] = log.since(0).entries;
    expect(x).toMatchObject({ at: 1_700_000_002_000, name: 'x.test', type: 'AAAA', rule: 1, ruleLabel: 'work', path: 'gw:gw2', answers: [], upstreamMs: null, rcode: 'NXDOMAIN' });
    expect(y).toMatchObject({ type: 'TYPE99', rule: null, ruleLabel: 'default', rcode: 'SERVFAIL', result: 'servfail' });
    expect(z).toMatchObject({ rule: null, ruleLabel: null, path: null, rcode: 'DROPPED', result: 'limited' });
  });

  it('decodes the fast path’s question bytes only when read', () => {
    const log = new QueryLog(clock, { privacy: 'full', size: 10 });
    log.hit(3000, '192.168.1.9', wireQuestion('www.example.org', TYPE.HTTPS), policy, 0, 'breakout', '203.0.113.9', 0);
    expect(log.latest(1)[0]).toMatchObject({ client: '192.168.1.9', name: 'www.example.org', type: 'HTTPS', rule: 0, ruleLabel: 'video', answers: ['203.0.113.9'], cached: true, result: 'answered' });
  });

  it('anonymize keeps clients as their /24 or /48; turning privacy up forgets what was recorded before', () => {
    expect(anonymizeAddress('192.168.1.77')).toBe('192.168.1.0');
    expect(anonymizeAddress('2001:db8:1:2:3::9')).toBe('2001:db8:1::');
    expect(anonymizeAddress('fe80::1%eth0')).toBe('fe80::');
    const log = new QueryLog(clock, { privacy: 'full', size: 10 });
    fill(log, 3);
    log.configure({ privacy: 'anonymize', size: 10 });
    expect(log.count).toBe(0);
    expect(log.since(0)).toMatchObject({ entries: [], next: 3, missed: 3 });
    fill(log, 2, 3, '192.168.1.77');
    expect(log.since(0).entries.map((e) => [e.seq, e.client])).toEqual([
      [3, '192.168.1.0'],
      [4, '192.168.1.0'],
    ]);
  });

  it('off records nothing (the resolver checks `on`); a smaller ring keeps the newest, with their seq', () => {
    const log = new QueryLog(clock, { privacy: 'full', size: 10 });
    fill(log, 8);
    log.configure({ privacy: 'full', size: 3 });
    expect(log.since(0).entries.map((e) => e.seq)).toEqual([5, 6, 7]);
    fill(log, 1, 8);
    expect(log.since(0).entries.map((e) => e.name)).toEqual(['n6.test', 'n7.test', 'n8.test']);
    log.configure({ privacy: 'off', size: 3 });
    expect(log.on).toBe(false);
    expect([log.count, log.since(0).entries.length]).toEqual([0, 0]);
  });
});
