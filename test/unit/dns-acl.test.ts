// ClientAcl: who may ask the resolver. Loopback always, the LAN subnets the
// daemon passes in, nobody else (splitwan is never an open resolver). Clients
// of a dual-stack socket appear as ::ffff:a.b.c.d and must be judged as the
// IPv4 address they are.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClientAcl } from '../../dns/acl.js';

describe('ClientAcl', () => {
  it('admits loopback, IPv4 and IPv6, with no subnets configured', () => {
    const acl = new ClientAcl([]);
    for (const a of ['127.0.0.1', '127.0.0.53', '127.255.255.254', '::1', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) {
      expect(acl.allows(a), a).toBe(true);
    }
    for (const a of ['192.168.1.2', '10.0.0.1', '::2', '::', '0.0.0.0', 'fe80::1']) {
      expect(acl.allows(a), a).toBe(false);
    }
    expect(acl.subnets).toEqual(['127.0.0.0/8', '::1/128']);
  });

  it('admits the LAN subnets (host bits ignored) and nobody outside them', () => {
    const acl = new ClientAcl(['192.168.1.5/24', '10.20.0.0/16', 'fd00:1::/64', 'fe80::/64']);
    expect(acl.subnets).toEqual(['127.0.0.0/8', '::1/128', '192.168.1.0/24', '10.20.0.0/16', 'fd00:1::/64', 'fe80::/64']);
    for (const a of ['192.168.1.0', '192.168.1.7', '192.168.1.255', '10.20.255.1', 'fd00:1::1', 'fd00:1::ffff:1', 'fe80::1%eth0']) {
      expect(acl.allows(a), a).toBe(true);
    }
    for (const a of ['192.168.2.7', '192.168.0.255', '10.21.0.1', 'fd00:2::1', 'fd00:1:0:1::1', '8.8.8.8', '2001:db8::1', '1.1.1.1']) {
      expect(acl.allows(a), a).toBe(false);
    }
  });

  it('judges IPv4-mapped IPv6 clients as the IPv4 address they are', () => {
    const acl = new ClientAcl(['192.168.1.0/24']);
    expect(acl.allows('::ffff:192.168.1.7')).toBe(true);
    expect(acl.allows('::FFFF:192.168.1.7')).toBe(true);
    expect(acl.allows('::ffff:c0a8:107')).toBe(true); // the same address in hex
    expect(acl.allows('::ffff:192.168.2.7')).toBe(false);
    expect(acl.allows('::ffff:8.8.8.8')).toBe(false);
    // A mapped subnet is the IPv4 subnet.
    const mapped = new ClientAcl(['::ffff:10.0.0.0/104']);
    expect(mapped.subnets).toContain('10.0.0.0/8');
    expect(mapped.allows('10.1.2.3')).toBe(true);
    expect(mapped.allows('::ffff:10.1.2.3')).toBe(true);
    expect(mapped.allows('11.1.2.3')).toBe(false);
  });

  it('refuses what is not an address', () => {
    const acl = new ClientAcl(['0.0.0.0/0']);
    for (const a of ['', 'localhost', '192.168.1', '192.168.1.1.1', '256.1.1.1', '01.2.3.4', '::g', ' 127.0.0.1', '127.0.0.1/8']) {
      expect(acl.allows(a), JSON.stringify(a)).toBe(false);
    }
    expect(acl.allows('203.0.113.9')).toBe(true);
  });

  it('throws on a bad subnet, naming it', () => {
    for (const bad of ['192.168.1.0/33', 'lan', '300.1.1.1/24', 'fd00::/129', '10.0.0.0/-1', '']) {
      expect(() => new ClientAcl(['10.0.0.0/8', bad]), JSON.stringify(bad)).toThrow(TypeError);
    }
    expect(() => new ClientAcl(['192.168.1.0/33'])).toThrow(/192\.168\.1\.0\/33/);
  });

  it('keeps its memo bounded under a spray of source addresses, and stays right', () => {
    const acl = new ClientAcl(['10.0.0.0/8']);
    const memo = (acl as unknown as { memo: Map<string, boolean> }).memo;
    expect(memo).toBeInstanceOf(Map);
    let max = 0;
    const wrong: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const a = `${i % 2 ? 10 : 11}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      if (acl.allows(a) !== (i % 2 === 1)) wrong.push(a);
      max = Math.max(max, memo.size);
    }
    expect(wrong).toEqual([]);
    expect(max).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(4096);
    // Memoised answers are the same answers.
    expect(acl.allows('10.0.0.1')).toBe(true);
    expect(acl.allows('10.0.0.1')).toBe(true);
    expect(acl.allows('11.0.0.1')).toBe(false);
    expect(acl.allows('11.0.0.1')).toBe(false);
  });

  it('property: a mapped address is judged as its IPv4 address, and agrees with a plain prefix check', () => {
    const acl = new ClientAcl(['192.168.0.0/16', '172.16.0.0/12']);
    const inside = (o: number[]): boolean => o[0] === 127 || (o[0] === 192 && o[1] === 168) || (o[0] === 172 && o[1]! >= 16 && o[1]! < 32);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }), fc.boolean(), (o, first) => {
        const v4 = o.join('.');
        const mapped = `::ffff:${v4}`;
        // Ask in both orders so the memo cannot make the second answer agree by accident.
        const [x, y] = first ? [acl.allows(v4), acl.allows(mapped)] : [acl.allows(mapped), acl.allows(v4)];
        expect(x).toBe(y);
        expect(acl.allows(v4)).toBe(inside(o));
      }),
      { numRuns: 2000 },
    );
  });
});
