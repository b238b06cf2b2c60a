// The binary and JSON rule-file decoders against real published files (see
// test/fixtures/lists/rule-files/README.md for where each came from).

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ListFormatError, type DecodedList } from '../../config/lists/decoded.js';
import { detectRuleFileFormat } from '../../config/lists/detect.js';
import { parseList } from '../../config/lists/formats.js';
import { decodeGeoipDat, geoipCodes } from '../../config/lists/geoip-dat.js';
import { decodeGeosite, geositeCategories, parseGeositeSelector } from '../../config/lists/geosite.js';
import { cidrToRange, mergeRanges, type IpRange } from '../../config/lists/ip-range.js';
import { MmdbDatabase, decodeMmdb } from '../../config/lists/mmdb.js';
import { decodeMrs } from '../../config/lists/mrs.js';
import { decodeRuleFile } from '../../config/lists/rule-files.js';
import { decodeSrs } from '../../config/lists/srs.js';
import { decodeSrsJson } from '../../config/lists/srs-json.js';
import { parseCidr } from '../../lib/ip.js';

const DIR = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'lists', 'rule-files');
const file = (name: string): Uint8Array => new Uint8Array(readFileSync(join(DIR, name)));
const text = (name: string): string => readFileSync(join(DIR, name), 'utf8');

const names = (r: DecodedList): string[] => r.domains.map((d) => `${d.pattern.kind}:${d.pattern.value}`);
const sortedNames = (r: DecodedList): string[] => [...names(r)].sort();
const digest = (r: DecodedList): string => createHash('sha256').update(sortedNames(r).join('\n')).digest('hex');

/** The address space a list covers, merged, so CIDR splits do not matter. */
function coverage(cidrs: readonly { cidr: string }[]): string[] {
  const ranges: IpRange[] = cidrs.map(({ cidr }) => {
    const c = parseCidr(cidr);
    if ('error' in c) throw new Error(c.error);
    const v = c.w.reduce((acc, w) => (acc << 32n) | BigInt(w), 0n);
    return c.family === 4 ? cidrToRange(4, BigInt(c.w[3]), c.prefix) : cidrToRange(6, v, c.prefix);
  });
  return mergeRanges(ranges).map((r) => `${r.family}:${r.from}-${r.to}`);
}

function expectFormatError(fn: () => unknown, pattern: RegExp): ListFormatError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ListFormatError);
    const err = e as ListFormatError;
    expect(err.code).toBe('SPLITWAN_LIST_FORMAT');
    expect(err.message).toMatch(pattern);
    return err;
  }
  throw new Error('expected a ListFormatError');
}

// ---------------------------------------------------------------------------

describe('geosite.dat (v2fly dlc, cut)', () => {
  const dat = file('dlc-cut.dat');
  const manifest = JSON.parse(text('dlc-cut.manifest.json')) as {
    source: { sha256: string };
    categories: Record<string, { bodyBytes: number; bodySha256: string; selections: Record<string, { entries: number; sha256: string }> }>;
  };

  it('lists its 18 categories', () => {
    const cats = geositeCategories(dat, 'dlc-cut.dat');
    expect(cats.map((c) => c.name).sort()).toEqual(Object.keys(manifest.categories).sort());
    for (const c of cats) {
      expect(c.body.length).toBe(manifest.categories[c.name]!.bodyBytes);
      expect(createHash('sha256').update(c.body).digest('hex')).toBe(manifest.categories[c.name]!.bodySha256);
    }
  });

  it('decodes every category and attribute selection exactly as the full file did', () => {
    for (const cat of Object.values(manifest.categories)) {
      for (const [sel, want] of Object.entries(cat.selections)) {
        const r = decodeGeosite(dat, { categories: [sel] }, 'dlc-cut.dat');
        expect([sel, r.domains.length]).toEqual([sel, want.entries]);
        expect([sel, digest(r)]).toEqual([sel, want.sha256]);
      }
    }
  });

  it.skipIf(!process.env.SPLITWAN_FULL_DLC || !existsSync(process.env.SPLITWAN_FULL_DLC))('matches the full file itself (SPLITWAN_FULL_DLC)', () => {
    const full = new Uint8Array(readFileSync(process.env.SPLITWAN_FULL_DLC!));
    expect(createHash('sha256').update(full).digest('hex')).toBe(manifest.source.sha256);
    for (const name of Object.keys(manifest.categories)) {
      for (const sel of [name, `${name}@cn`, `${name}@!cn`]) {
        expect(names(decodeGeosite(dat, { categories: [sel] }, 'cut'))).toEqual(names(decodeGeosite(full, { categories: [sel] }, 'full')));
      }
    }
  });

  it('maps the four domain types and keeps known entries', () => {
    const netflix = decodeGeosite(dat, { categories: ['netflix'] }, 'dlc');
    expect(names(netflix)).toContain('domain:netflix.com');
    expect(names(netflix)).toContain('domain:nflxvideo.net');
    const google = decodeGeosite(dat, { categories: ['google'] }, 'dlc');
    expect(names(google)).toContain('domain:google.com');
    expect(names(google)).toContain('full:firebase-settings.crashlytics.com');
    expect(names(google).filter((n) => n.startsWith('regexp:')).length).toBeGreaterThan(0);
    // Full/RootDomain/Regex above; Plain (keyword) comes through as a keyword pattern:
    const kw = decodeRuleFile(hand.geositeWith([{ type: 0, value: 'netflix' }]), 'geosite', { categories: ['t'] }, 'hand');
    expect(names(kw)).toEqual(['keyword:netflix']);
  });

  it('takes category names in any case', () => {
    const a = names(decodeGeosite(dat, { categories: ['netflix'] }, 'dlc'));
    expect(names(decodeGeosite(dat, { categories: ['NETFLIX'] }, 'dlc'))).toEqual(a);
    expect(names(decodeGeosite(dat, { categories: ['NetFlix'] }, 'dlc'))).toEqual(a);
  });

  it('filters by @attr and @!attr, which partition a category', () => {
    const all = decodeGeosite(dat, { categories: ['google'] }, 'dlc');
    const cn = decodeGeosite(dat, { categories: ['google@cn'] }, 'dlc');
    const notCn = decodeGeosite(dat, { categories: ['google@!cn'] }, 'dlc');
    expect(cn.domains.length).toBe(156);
    expect(notCn.domains.length).toBe(956);
    expect([...sortedNames(cn), ...sortedNames(notCn)].sort()).toEqual(sortedNames(all));
    expect(names(cn)).toContain('full:firebase-settings.crashlytics.com');
    expect(names(notCn)).not.toContain('full:firebase-settings.crashlytics.com');
    expect(names(decodeGeosite(dat, { categories: ['GOOGLE@CN'] }, 'dlc'))).toEqual(names(cn));
  });

  it('says when a filter selects nothing, with the attributes there are', () => {
    const r = decodeGeosite(dat, { categories: ['netflix@cn'] }, 'dlc');
    expect(r.domains).toEqual([]);
    expect(r.problems[0]!.message).toMatch(/"netflix@cn" selects no entry/);
  });

  it('unions several selections without duplicates', () => {
    const r = decodeGeosite(dat, { categories: ['netflix', 'NETFLIX', 'openai'] }, 'dlc');
    expect(r.domains.length).toBe(28 + 18);
  });

  it('names an unknown category and suggests the closest', () => {
    const e = expectFormatError(() => decodeGeosite(dat, { categories: ['netflx'] }, 'dlc-cut.dat'), /unknown category 'netflx' \(did you mean 'netflix'\?\)/);
    expect(e.list).toBe('dlc-cut.dat');
    expect(e.message.startsWith('dlc-cut.dat: ')).toBe(true);
  });

  it('refuses malformed selectors', () => {
    expect(parseGeositeSelector('google@')).toHaveProperty('error');
    expect(parseGeositeSelector('@cn')).toHaveProperty('error');
    expect(parseGeositeSelector('a@!!b')).toHaveProperty('error');
    expect(parseGeositeSelector(' Google@CN@!ads ')).toEqual({ category: 'google', require: ['cn'], exclude: ['ads'], text: 'Google@CN@!ads' });
    expectFormatError(() => decodeGeosite(dat, { categories: ['google@'] }, 'dlc'), /malformed attribute filter/);
  });
});

// ---------------------------------------------------------------------------

describe('geoip.dat (MetaCubeX geoip-lite)', () => {
  const dat = file('geoip-lite.dat');

  it('lists its entries', () => {
    expect(geoipCodes(dat, 'g').map((e) => e.code)).toEqual([
      'APPLE', 'BILIBILI', 'CLOUDFLARE', 'CLOUDFRONT', 'CN', 'FACEBOOK', 'GOOGLE', 'JP', 'NETFLIX', 'PRIVATE', 'TELEGRAM', 'TWITTER',
    ]);
  });

  it('decodes a code in any case', () => {
    const cn = decodeGeoipDat(dat, { codes: ['cn'] }, 'g');
    expect(cn.cidrs.length).toBe(7502);
    expect(cn.cidrs.slice(0, 3).map((c) => c.cidr)).toEqual(['1.0.1.0/24', '1.0.2.0/23', '1.0.8.0/21']);
    expect(cn.problems).toEqual([]);
    expect(decodeGeoipDat(dat, { codes: ['CN'] }, 'g').cidrs).toEqual(cn.cidrs);
    expect(cn.cidrs.some((c) => c.cidr.includes(':'))).toBe(true); // IPv6 too
  });

  it('matches the same list published as text', () => {
    const priv = decodeGeoipDat(dat, { codes: ['private'] }, 'g');
    expect(priv.cidrs.map((c) => c.cidr)).toContain('192.168.0.0/16');
    expect(coverage(priv.cidrs)).toEqual(coverage(parseList(text('meta-geoip-private.list'), 'cidr').cidrs));
    // (The other .list files here are of the full build; geoip-lite.dat is the lite one, where they differ.)
  });

  it('"!code" is the complement, over both families', () => {
    const priv = decodeGeoipDat(dat, { codes: ['private'] }, 'g');
    const notPriv = decodeGeoipDat(dat, { codes: ['!private'] }, 'g');
    const both = coverage([...priv.cidrs, ...notPriv.cidrs]);
    expect(both).toEqual([`4:0-${2n ** 32n - 1n}`, `6:0-${2n ** 128n - 1n}`]);
    expect(notPriv.cidrs.map((c) => c.cidr)).toContain('1.0.0.0/8');
    expect(notPriv.cidrs.map((c) => c.cidr)).not.toContain('10.0.0.0/8');
  });

  it('names an unknown code and suggests the closest', () => {
    expectFormatError(() => decodeGeoipDat(dat, { codes: ['cnn'] }, 'geoip-lite.dat'), /geoip-lite\.dat: unknown country code 'cnn' \(did you mean 'cn'\?\)/);
  });
});

// ---------------------------------------------------------------------------

/** Drops exact names that a same-name suffix entry already covers (sing-box's encoder drops them too). */
function withoutRedundantFull(r: DecodedList): string[] {
  const suffixes = new Set(r.domains.filter((d) => d.pattern.kind === 'domain').map((d) => d.pattern.value));
  return sortedNames(r).filter((n) => !(n.startsWith('full:') && suffixes.has(n.slice(5))));
}

describe('sing-box .srs and source .json', () => {
  it.each(['geosite-netflix', 'geosite-google', 'geosite-private', 'geoip-netflix', 'geoip-private', 'geoip-telegram'])(
    'sing-%s.srs (version 2) decodes to the entries of its source .json',
    (n) => {
      const srs = decodeSrs(file(`sing-${n}.srs`), n);
      const json = decodeSrsJson(file(`sing-${n}.json`), n);
      expect(srs.version).toBe(2);
      expect(json.version).toBe(2);
      expect(withoutRedundantFull(srs)).toEqual(withoutRedundantFull(json));
      expect(coverage(srs.cidrs)).toEqual(coverage(json.cidrs));
      expect(srs.domains.length + srs.cidrs.length).toBeGreaterThan(0);
    },
  );

  it('reads known entries of v2 files', () => {
    const nf = decodeSrs(file('sing-geosite-netflix.srs'), 'n');
    expect(names(nf)).toContain('domain:netflix.com');
    expect(nf.domains.length).toBe(28);
    const ip = decodeSrs(file('sing-geoip-netflix.srs'), 'n');
    expect(ip.cidrs.length).toBe(83);
    expect(ip.cidrs[0]!.cidr).toBe('23.246.0.0/18');
  });

  it('reads version 1 files (sing-geosite), where a suffix is a name plus a ".name" key', () => {
    const nf = decodeSrs(file('sing-geosite-v1-geosite-netflix.srs'), 'n');
    expect(nf.version).toBe(1);
    expect(sortedNames(nf)).toEqual(sortedNames(decodeSrs(file('sing-geosite-netflix.srs'), 'n')));
    const gcn = decodeSrs(file('sing-geosite-v1-geosite-google@cn.srs'), 'g');
    expect(gcn.domains.length).toBe(202);
    expect(names(gcn)).toContain('domain:g.cn');
    // sing-geosite writes a dot-less root domain (a TLD) as ".gle": subdomains only.
    const google = decodeSrs(file('sing-geosite-v1-geosite-private.srs'), 'p');
    expect(names(google)).toContain('subdomain:lan');
    const ads = decodeSrs(file('sing-geosite-v1-geosite-category-ads-all.srs'), 'a');
    expect(ads.domains.length).toBe(752);
  });

  it('reports a regexp that cannot run safely and keeps the rest', () => {
    const p = decodeSrs(file('sing-geosite-private.srs'), 'p');
    expect(p.problems.map((x) => x.message).join()).toMatch(/\^\[a-z\]\(\[a-z0-9-\]\{0,61\}/);
    expect(p.domains.length).toBe(130);
  });

  it('skips rules it cannot apply, naming the field, and fails when none is left', () => {
    const doc = (rules: unknown[]): string => JSON.stringify({ version: 3, rules });
    const r = decodeSrsJson(doc([{ domain_suffix: ['a.example'], port: [443] }, { domain: 'b.example', ip_cidr: '192.0.2.1' }]), 'j');
    expect(names(r)).toEqual(['full:b.example']);
    expect(r.cidrs.map((c) => c.cidr)).toEqual(['192.0.2.1/32']);
    expect(r.ignored).toBe(1);
    expect(r.problems[0]!.message).toMatch(/rule 1: "port" cannot be applied/);
    expectFormatError(() => decodeSrsJson(doc([{ process_name: 'curl' }]), 'x.json'), /x\.json: no rule of this rule-set can be used: rule 1: "process_name"/);
    expectFormatError(() => decodeSrsJson(doc([{ domain: 'a.example', invert: true }]), 'x.json'), /"invert": true/);
    expectFormatError(() => decodeSrsJson(doc([{ domian: 'a.example' }]), 'x.json'), /unknown field "domian"/);
    expectFormatError(() => decodeSrsJson(JSON.stringify({ version: 9, rules: [] }), 'x.json'), /"version" must be 1-4/);
    const or = decodeSrsJson(doc([{ type: 'logical', mode: 'or', rules: [{ domain_suffix: '.c.example' }, { domain_keyword: 'tracker' }] }]), 'j');
    expect(names(or)).toEqual(['subdomain:c.example', 'keyword:tracker']);
    expectFormatError(() => decodeSrsJson(doc([{ type: 'logical', mode: 'and', rules: [{ domain: 'a.example' }] }]), 'j'), /logical "and"/);
  });
});

// ---------------------------------------------------------------------------

describe('mihomo .mrs', () => {
  it.each(['geosite-netflix', 'geosite-google', 'geosite-private', 'geosite-category-ads-all'])('meta-%s.mrs holds the names of its .list', (n) => {
    const mrs = decodeMrs(file(`meta-${n}.mrs`), n);
    const list = parseList(text(`meta-${n}.list`), 'clash');
    expect(mrs.behavior).toBe('domain');
    expect(list.problems).toEqual([]);
    // mihomo's trie keeps one copy of a name, and "+.x" already holds the exact x.
    expect(withoutRedundantFull(mrs)).toEqual([...new Set(withoutRedundantFull({ ...list, format: 'mrs' }))]);
    expect(new Set(names(mrs)).size).toBe(mrs.domains.length);
    expect(mrs.declaredCount).toBe(list.domains.length);
  });

  it.each(['geoip-netflix', 'geoip-private', 'geoip-telegram', 'geoip-cn'])('meta-%s.mrs covers the addresses of its .list', (n) => {
    const mrs = decodeMrs(file(`meta-${n}.mrs`), n);
    const list = parseList(text(`meta-${n}.list`), 'cidr');
    expect(mrs.behavior).toBe('ipcidr');
    expect(coverage(mrs.cidrs)).toEqual(coverage(list.cidrs));
  });

  it('known entries', () => {
    const nf = decodeMrs(file('meta-geosite-netflix.mrs'), 'n');
    expect(names(nf)).toContain('domain:netflix.com');
    expect(names(nf)).toContain('full:netflix.com.edgesuite.net');
    expect(decodeMrs(file('meta-geoip-cn.mrs'), 'cn').cidrs.length).toBe(5711);
  });
});

// ---------------------------------------------------------------------------

describe('MaxMind .mmdb', () => {
  const country = new MmdbDatabase(file('GeoIP2-Country-Test.mmdb'), 'GeoIP2-Country-Test.mmdb');

  it('looks addresses up', () => {
    expect(country.databaseType).toBe('GeoIP2-Country');
    expect(country.lookup('81.2.69.160')).toEqual({ network: '81.2.69.160/27', countries: ['GB'], asn: null, organization: null });
    expect(country.lookup('2a02:cf40::1')?.countries).toEqual(['NO']);
    expect(country.lookup('89.160.20.112')?.countries).toEqual(['SE']);
    expect(country.lookup('1.2.3.4')).toBeNull();
    expect(country.lookup('not an address')).toBeNull();
  });

  it('selects a country as CIDRs, in address order, every one of which looks up to that country', () => {
    const gb = country.select({ countries: ['gb'] });
    expect(gb.cidrs.map((c) => c.cidr)).toEqual(expect.arrayContaining(['81.2.69.160/27', '2.125.160.216/29']));
    for (const { cidr } of gb.cidrs) {
      const first = cidr.slice(0, cidr.indexOf('/'));
      expect([cidr, country.lookup(first)?.countries]).toEqual([cidr, ['GB']]);
      expect(country.lookup(first)?.network).toBe(cidr);
    }
    const all = country.select({ countries: ['GB', 'SE', 'US', 'CN', 'JP', 'NO', 'BT', 'PH', 'DE', 'GI'].filter((c) => {
      try {
        country.select({ countries: [c] });
        return true;
      } catch {
        return false;
      }
    }) });
    expect(all.cidrs.length).toBeGreaterThan(gb.cidrs.length);
  });

  it('names a country the database does not have', () => {
    expectFormatError(() => country.select({ countries: ['XX'] }), /no network in this database \(GeoIP2-Country\) has country 'XX'/);
  });

  it('selects ASNs', () => {
    const asn = new MmdbDatabase(file('GeoLite2-ASN-Test.mmdb'), 'asn');
    expect(asn.lookup('1.128.0.1')).toEqual({ network: '1.128.0.0/11', countries: [], asn: 1221, organization: 'Telstra Pty Ltd' });
    const r = asn.select({ asns: [1221] });
    expect(r.cidrs.map((c) => c.cidr)).toContain('1.128.0.0/11');
    for (const { cidr } of r.cidrs) expect(asn.lookup(cidr.slice(0, cidr.indexOf('/')))?.asn).toBe(1221);
    expectFormatError(() => asn.select({ countries: ['DE'] }), /has no country data/);
    expectFormatError(() => asn.select({ asns: [4294967295] }), /no network .* has ASN 4294967295/);
    expect(decodeMmdb(file('GeoLite2-ASN-Test.mmdb'), { asns: [1221] }, 'asn').cidrs).toEqual(r.cidrs);
  });

  it('reads IPv4-only and mixed test databases, and refuses broken ones with the format error', () => {
    const v4 = new MmdbDatabase(file('MaxMind-DB-test-ipv4-24.mmdb'), 'v4');
    expect(v4.ipVersion).toBe(4);
    expect(v4.lookup('1.1.1.1')?.network).toBe('1.1.1.1/32');
    expect(new MmdbDatabase(file('MaxMind-DB-test-mixed-24.mmdb'), 'm').lookup('::1.1.1.1')?.network).toBe('::101:101/128');
    for (const broken of ['MaxMind-DB-test-broken-search-tree-24.mmdb', 'MaxMind-DB-test-broken-pointers-24.mmdb']) {
      try {
        const db = new MmdbDatabase(file(broken), broken);
        db.lookup('1.1.1.16');
        db.lookup('1.1.1.32');
      } catch (e) {
        expect(e).toBeInstanceOf(ListFormatError);
      }
    }
  });
});

// ---------------------------------------------------------------------------

describe('detection', () => {
  it.each([
    ['dlc-cut.dat', 'geosite'],
    ['geoip-lite.dat', 'geoip'],
    ['sing-geosite-google.srs', 'srs'],
    ['sing-geosite-v1-geosite-netflix.srs', 'srs'],
    ['sing-geoip-private.json', 'srs-json'],
    ['meta-geosite-google.mrs', 'mrs'],
    ['meta-geoip-cn.mrs', 'mrs'],
    ['GeoIP2-Country-Test.mmdb', 'mmdb'],
    ['GeoLite2-ASN-Test.mmdb', 'mmdb'],
    ['meta-geoip-cn.list', null],
    ['meta-geosite-google.list', null],
  ] as const)('%s is %s', (f, want) => {
    expect(detectRuleFileFormat(file(f))).toBe(want);
  });

  it('decodeRuleFile detects, and refuses content of another format than the one given', () => {
    expect(decodeRuleFile(file('meta-geosite-netflix.mrs'), 'auto', {}, 'n').format).toBe('mrs');
    expect(decodeRuleFile(file('dlc-cut.dat'), 'auto', { categories: ['netflix'] }, 'd').domains.length).toBe(28);
    expectFormatError(() => decodeRuleFile(file('sing-geosite-netflix.srs'), 'geosite', { categories: ['netflix'] }, 'n.srs'), /^n\.srs: not a geosite\.dat: it looks like a sing-box binary rule-set \(\.srs\)$/);
    expectFormatError(() => decodeRuleFile(file('dlc-cut.dat'), 'auto', {}, 'd'), /a geosite\.dat needs a selection/);
    expectFormatError(() => decodeRuleFile(file('meta-geoip-cn.list'), 'auto', {}, 'l'), /it looks like text/);
  });
});

// ---------------------------------------------------------------------------

/** Small hand-made files. */
export const hand = {
  /** A geosite.dat with one category "T" holding the given domains. */
  geositeWith(domains: { type: number; value: string; attrs?: string[] }[]): Uint8Array {
    const bytes = (field: number, body: number[]): number[] => [(field << 3) | 2, ...varint(body.length), ...body];
    const str = (s: string): number[] => [...Buffer.from(s)];
    const site = [
      ...bytes(1, str('T')),
      ...domains.flatMap((d) => bytes(2, [...(d.type ? [0x08, d.type] : []), ...bytes(2, str(d.value)), ...(d.attrs ?? []).flatMap((a) => bytes(3, bytes(1, str(a))))])),
    ];
    return new Uint8Array(bytes(1, site));
  },
};

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
