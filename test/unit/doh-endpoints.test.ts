import { describe, expect, it } from 'vitest';
import { builtinDohList } from '../../config/lists/doh-endpoints.js';
import { compilePolicy } from '../../config/policy.js';

describe('the built-in DoH endpoint list', () => {
  it('parses cleanly into names and addresses', () => {
    const l = builtinDohList();
    expect(l.problems).toEqual([]);
    expect(l.domains.length).toBeGreaterThan(15);
    expect(l.cidrs.map((c) => c.cidr)).toEqual(expect.arrayContaining(['8.8.8.8/32', '1.1.1.1/32', '2606:4700:4700::1111/128', '9.9.9.9/32']));
  });
  it('matches the endpoints browsers use, and not their neighbours', () => {
    const l = builtinDohList();
    const rule = { index: 0, domains: [], cidrs: [], sources: [], lists: ['doh'], via: ['block' as const], label: 'doh', pos: { file: 'x', line: 1, col: 1 } };
    const p = compilePolicy({ rules: [rule], default: ['breakout'] }, new Map([['doh', { name: 'doh', file: 'doh', domains: l.domains, cidrs: l.cidrs }]]));
    for (const n of ['dns.google', 'mozilla.cloudflare-dns.com', 'cloudflare-dns.com', 'dns.quad9.net', 'anycast.dns.nextdns.io']) expect(p.ruleForName(n)).toBe(0);
    for (const n of ['google.com', 'cloudflare.com', 'example.org']) expect(p.ruleForName(n)).toBe(-1);
  });
});
