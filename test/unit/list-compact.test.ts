// A loaded list keeps its entries compact (config/lists/compact.ts), not as
// the parsers and decoders return them: the compact form must give back the
// very entries every decoder and text parser produced, in order, on the
// committed fixtures; corrupt files must be refused with the same error as
// before; and a policy compiled from it must match and explain the same.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CompactCidrs, CompactDomains } from '../../config/lists/compact.js';
import { ListFormatError } from '../../config/lists/decoded.js';
import { readListContent } from '../../config/lists/list-content.js';
import { DomainIndex, KIND_DOMAIN, KIND_FULL, KIND_SUBDOMAIN } from '../../config/domain-index.js';
import { toLoadedList } from '../../config/load.js';
import { compilePolicy, type ListContent } from '../../config/policy.js';
import type { DomainPattern, ListSource, RuleConfig } from '../../config/types.js';

const LISTS = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'lists');
const bytesOf = (rel: string): Uint8Array => new Uint8Array(readFileSync(join(LISTS, rel)));

function source(name: string, rel: string, over: Partial<ListSource> = {}): ListSource {
  return { name, format: 'auto', file: join(LISTS, rel), maxBytes: 64 << 20, timeoutMs: 1000, pos: { file: 'config.yaml', line: 1, col: 1 }, ...over };
}

// Every decoder (geosite, geoip.dat, mmdb country and ASN, srs, sing-box JSON, mrs) and every text format.
const FIXTURES: [string, Partial<ListSource>][] = [
  ['rule-files/dlc-cut.dat', { select: { categories: ['google', 'netflix', 'category-ads-all'] } }],
  ['rule-files/dlc-cut.dat', { select: { categories: ['google@cn'] } }],
  ['rule-files/geoip-lite.dat', { select: { countries: ['cn', 'jp'] } }],
  ['rule-files/GeoIP2-Country-Test.mmdb', { select: { countries: ['GB', 'SE'] } }],
  ['rule-files/GeoLite2-ASN-Test.mmdb', { select: { asns: [1221] } }],
  ['rule-files/sing-geosite-google.srs', {}],
  ['rule-files/sing-geosite-v1-geosite-category-ads-all.srs', {}],
  ['rule-files/sing-geoip-netflix.srs', {}],
  ['rule-files/sing-geosite-google.json', { format: 'srs' }],
  ['rule-files/sing-geoip-telegram.json', { format: 'srs' }],
  ['rule-files/meta-geosite-google.mrs', {}],
  ['rule-files/meta-geoip-cn.mrs', {}],
  ['china-cidr.txt', {}],
  ['clash-classical.list', {}],
  ['clash-provider.yaml', {}],
  ['dnsmasq-china.conf', {}],
  ['plain-streaming.txt', {}],
  ['stevenblack-hosts', {}],
  ['v2fly-google', { format: 'v2fly' }],
];

describe('compact list entries', () => {
  it.each(FIXTURES)('%s %j: the loaded list gives back every entry the decoder or parser returned, in order', (rel, over) => {
    const src = source('l', rel, over);
    const content = readListContent(bytesOf(rel), src);
    const loaded = toLoadedList(src, bytesOf(rel), src.file!, 'file');
    expect(loaded.domains).toBeInstanceOf(CompactDomains);
    expect(loaded.cidrs).toBeInstanceOf(CompactCidrs);
    expect(content.domains.length + content.cidrs.length).toBeGreaterThan(0);
    expect(loaded.domains.length).toBe(content.domains.length);
    expect(loaded.cidrs.length).toBe(content.cidrs.length);
    expect([...loaded.domains]).toEqual(content.domains);
    expect([...loaded.cidrs]).toEqual(content.cidrs);
    // Everything else the parser said (format, problems, ignored, sections) is kept as it was.
    const { domains: _d, cidrs: _c, ...rest } = content;
    expect(loaded.parsed).toEqual(rest);
    expect(loaded.sections).toEqual('sections' in content ? content.sections : undefined);
  });

  it('refuses corrupt and truncated rule files with the same error as the decoder', () => {
    const cases: [string, Partial<ListSource>, (b: Uint8Array) => Uint8Array][] = [
      ['rule-files/dlc-cut.dat', { select: { categories: ['google'] } }, (b) => b.subarray(0, b.length >> 1)],
      ['rule-files/dlc-cut.dat', { select: { categories: ['netflx'] } }, (b) => b],
      ['rule-files/geoip-lite.dat', { select: { countries: ['cn'] } }, (b) => b.subarray(0, 1000)],
      ['rule-files/sing-geosite-google.srs', {}, (b) => b.subarray(0, 200)],
      ['rule-files/meta-geosite-google.mrs', {}, (b) => Uint8Array.from(b, (x, i) => (i > 40 && i < 400 ? x ^ 0x5a : x))],
      ['rule-files/GeoIP2-Country-Test.mmdb', { select: { countries: ['GB'] } }, (b) => b.subarray(0, 5000)],
      ['rule-files/MaxMind-DB-test-broken-pointers-24.mmdb', { select: { countries: ['GB'] } }, (b) => b],
    ];
    for (const [rel, over, corrupt] of cases) {
      const src = source('bad', rel, over);
      const bytes = corrupt(bytesOf(rel));
      let decoderError: unknown;
      try {
        readListContent(bytes, src);
      } catch (e) {
        decoderError = e;
      }
      expect(decoderError, rel).toBeInstanceOf(ListFormatError);
      expect(() => toLoadedList(src, bytes, src.file!, 'file'), rel).toThrow((decoderError as ListFormatError).message);
    }
  });

  it('keeps every kind, line numbers and non-ASCII values (a keyword or regexp may hold any character)', () => {
    const entries: { pattern: DomainPattern; line: number }[] = [
      { pattern: { kind: 'domain', value: 'example.com' }, line: 1 },
      { pattern: { kind: 'subdomain', value: 'a-rather-long-name.example.org' }, line: 7 },
      { pattern: { kind: 'full', value: 'x.y' }, line: 8 },
      { pattern: { kind: 'keyword', value: 'bücher' }, line: 1_000_000 },
      { pattern: { kind: 'regexp', value: '^ads[0-9]+\\.' }, line: 4_000_000 },
      { pattern: { kind: 'domain', value: '' }, line: 2 },
    ];
    const c = new CompactDomains(entries);
    expect(c.length).toBe(entries.length);
    expect([...c]).toEqual(entries);
    expect(c.at(3)).toEqual(entries[3]);
    expect([...new CompactDomains([])]).toEqual([]);
    const cidrs = [
      { cidr: '10.0.0.0/8', line: 3 },
      { cidr: '2001:db8::/32', line: 4 },
    ];
    expect([...new CompactCidrs(cidrs)]).toEqual(cidrs);
  });

  it('a policy compiled from the compact form matches and explains as one compiled from the arrays', () => {
    const rel = 'rule-files/dlc-cut.dat';
    const src = source('g', rel, { select: { categories: ['google', 'netflix'] } });
    const content = readListContent(bytesOf(rel), src);
    const loaded = toLoadedList(src, bytesOf(rel), src.file!, 'file');
    const rules: RuleConfig[] = [{ index: 0, domains: [], cidrs: [], sources: [], lists: ['g'], via: ['breakout'], label: 'g', pos: { file: 'c', line: 1, col: 1 } } as unknown as RuleConfig];
    const asArrays: ListContent = { name: 'g', file: src.file!, domains: content.domains, cidrs: content.cidrs, ...('sections' in content && content.sections ? { sections: content.sections } : {}) };
    const a = compilePolicy({ rules, default: ['tunnel'] }, new Map([['g', asArrays]]));
    const b = compilePolicy({ rules, default: ['tunnel'] }, new Map([['g', loaded]]));
    expect(b.stats).toEqual(a.stats);
    const probes = content.domains.filter((d) => d.pattern.kind !== 'regexp').slice(0, 400).map((d) => `www.${d.pattern.value.replace(/[^a-z0-9.-]/g, '')}.`);
    probes.push('nothing.invalid', 'netflix.com', 'WWW.GOOGLE.COM');
    for (const name of probes) expect(b.matchName(name), name).toEqual(a.matchName(name));
    expect(b.matchName('netflix.com').entry).toMatchObject({ list: 'g', value: 'netflix.com', section: expect.stringMatching(/netflix/) });
  });
});

describe('DomainIndex after build', () => {
  it('gives each entry\'s key back from its bytes (explain), with no strings kept', () => {
    const ix = new DomainIndex();
    ix.add('example.com', KIND_DOMAIN, 0, 11);
    ix.add('a.very-long-label-indeed.example.net', KIND_FULL, 1, 12);
    const before = [ix.entryKey(0), ix.entryKey(1)];
    ix.build();
    expect([ix.entryKey(0), ix.entryKey(1)]).toEqual(before);
    expect(ix.size).toBe(2);
    const hit = { rule: -1, entry: -1, kind: -1 };
    expect(ix.lookup('WWW.Example.COM.', hit)).toBe(0);
    expect(ix.entryKey(hit.entry)).toBe('example.com');
    expect(ix.origin(hit.entry, hit.kind)).toBe(11);
  });

  it('keeps every kind of a name named with several (one rule an entry for the rest), first rule winning per kind', () => {
    const ix = new DomainIndex();
    ix.add('multi.test', KIND_FULL, 5, 50);
    ix.add('multi.test', KIND_SUBDOMAIN, 2, 20);
    ix.add('multi.test', KIND_DOMAIN, 7, 70);
    ix.add('multi.test', KIND_SUBDOMAIN, 1, 10); // a later rule with a lower number: the lower wins
    ix.add('one.test', KIND_SUBDOMAIN, 3, 30);
    ix.add('plain.test', KIND_FULL, 4, 40);
    for (let i = 0; i < 2000; i++) ix.add(`n${i}.fill.test`, KIND_DOMAIN, 9, i); // the table grows past its first sizes
    ix.build();
    const hit = { rule: -1, entry: -1, kind: -1 };
    // The whole name: FULL (5) and DOMAIN (7); SUBDOMAIN does not match it.
    expect(ix.lookup('multi.test', hit)).toBe(5);
    expect([hit.kind, ix.origin(hit.entry, hit.kind)]).toEqual([KIND_FULL, 50]);
    // A subdomain: SUBDOMAIN (1) and DOMAIN (7).
    expect(ix.lookup('a.multi.test', hit)).toBe(1);
    expect([hit.kind, ix.origin(hit.entry, hit.kind)]).toEqual([KIND_SUBDOMAIN, 10]);
    expect(ix.origin(hit.entry, KIND_DOMAIN)).toBe(70);
    // Single-kind entries: each matches only where its kind does.
    expect(ix.lookup('one.test')).toBe(-1);
    expect(ix.lookup('x.one.test', hit)).toBe(3);
    expect(ix.origin(hit.entry, KIND_FULL)).toBe(-1);
    expect(ix.lookup('plain.test')).toBe(4);
    expect(ix.lookup('x.plain.test')).toBe(-1);
    expect(ix.lookup('deep.n1999.fill.test', hit)).toBe(9);
    expect([ix.entryKey(hit.entry), ix.origin(hit.entry, KIND_DOMAIN)]).toEqual(['n1999.fill.test', 1999]);
    expect(ix.lookup('n2000.fill.test')).toBe(-1);
  });

  it('reads keys where a list keeps them, and copies only the others', () => {
    const a = Buffer.from('alpha.testbeta.test', 'latin1');
    const b = Buffer.from('xxgamma.test', 'latin1');
    const ix = new DomainIndex();
    ix.add('alpha.test', KIND_DOMAIN, 0, 1, a, 0);
    ix.add('gamma.test', KIND_DOMAIN, 1, 2, b, 2);
    ix.add('own.test', KIND_FULL, 2, 3); // no bytes: copied at build
    ix.add('beta.test', KIND_DOMAIN, 3, 4, a, 10);
    ix.add('alpha.test', KIND_FULL, 4, 5, a, 0); // a second kind of a key already there
    ix.build();
    const hit = { rule: -1, entry: -1, kind: -1 };
    expect(ix.lookup('www.Alpha.Test', hit)).toBe(0);
    expect(ix.entryKey(hit.entry)).toBe('alpha.test');
    expect(ix.lookup('alpha.test')).toBe(0);
    expect(ix.lookup('x.gamma.test', hit)).toBe(1);
    expect(ix.entryKey(hit.entry)).toBe('gamma.test');
    expect(ix.lookup('own.test', hit)).toBe(2);
    expect(ix.entryKey(hit.entry)).toBe('own.test');
    expect(ix.lookup('beta.test')).toBe(3);
    expect(ix.lookup('eta.test')).toBe(-1);
    expect(ix.lookup('xxgamma.test')).toBe(-1);
  });
});
