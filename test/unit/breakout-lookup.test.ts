import * as dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import type { PathName, Upstream } from '../../config/types.js';
import type { Question } from '../../dns/forwarder.js';
import { breakoutLookup } from '../../daemon/tunnel/gateway-spec.js';

/** A forwarder that answers from a table and records the path and resolvers it was asked through. */
function fakeForwarder(table: Record<string, string[]>) {
  const asked: string[] = [];
  return {
    asked,
    forward: async (query: Buffer, q: Question, ups: readonly Upstream[], path: PathName): Promise<Buffer> => {
      asked.push(`${path} ${ups.map((u) => u.text).join(',')} ${q.qname}/${q.qtype}`);
      const d = dnsPacket.decode(query);
      const type = q.qtype === 1 ? 'A' : 'AAAA';
      const answers = (table[`${q.qname}/${type}`] ?? []).map((data) => ({ type, name: q.qname, class: 'IN' as const, ttl: 60, data }));
      return dnsPacket.encode({ type: 'response', id: d.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE, questions: d.questions ?? [], answers: answers as dnsPacket.Answer[] });
    },
  };
}
const ups = [{ kind: 'plain' as const, host: '192.0.2.53', port: 53, text: '192.0.2.53' }];

describe('breakoutLookup (gateway endpoints)', () => {
  it('asks the breakout resolvers on the breakout path; A first, then AAAA', async () => {
    const f = fakeForwarder({ 'vpn.example/A': ['198.51.100.7'], 'v6only.example/AAAA': ['2001:db8::7'] });
    const lookup = breakoutLookup(f, () => ups);
    expect(await lookup('vpn.example')).toBe('198.51.100.7');
    expect(await lookup('v6only.example')).toBe('2001:db8::7');
    expect(f.asked).toEqual(['breakout 192.0.2.53 vpn.example/1', 'breakout 192.0.2.53 v6only.example/1', 'breakout 192.0.2.53 v6only.example/28']);
  });
  it('says which resolvers failed to find it', async () => {
    const lookup = breakoutLookup(fakeForwarder({}), () => ups);
    await expect(lookup('nowhere.example')).rejects.toThrow(/cannot resolve gateway endpoint nowhere.example through the breakout resolvers \(192.0.2.53\)/);
  });
});
