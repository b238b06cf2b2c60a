import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ConcreteListFormat,
  type ParsedList,
  detectListFormat,
  parseClashYamlDocument,
  parseList,
} from '../../config/lists/formats.js';
import type { DomainPattern } from '../../config/types.js';

const FIXTURES = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'lists');
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

/** Domains as compact tuples, so expectations read like the files. */
const doms = (p: ParsedList): [DomainPattern['kind'], string, number][] =>
  p.domains.map((d) => [d.pattern.kind, d.pattern.value, d.line]);
const cidrs = (p: ParsedList): [string, number][] => p.cidrs.map((c) => [c.cidr, c.line]);

const FIXTURE_FORMATS: [string, ConcreteListFormat][] = [
  ['stevenblack-hosts', 'hosts'],
  ['dnsmasq-china.conf', 'dnsmasq'],
  ['clash-provider.yaml', 'clash'],
  ['clash-classical.list', 'clash'],
  ['v2fly-google', 'v2fly'],
  ['china-cidr.txt', 'cidr'],
  ['plain-streaming.txt', 'plain'],
];

describe('detectListFormat on the fixtures', () => {
  it.each(FIXTURE_FORMATS)('%s is %s, with and without its name', (file, format) => {
    const text = fixture(file);
    expect(detectListFormat(text, file)).toBe(format);
    expect(detectListFormat(text)).toBe(format);
    expect(detectListFormat(text, `https://lists.example.net/dl/${file}?token=x#frag`)).toBe(format);
    expect(parseList(text, 'auto', file).format).toBe(format);
  });
});

describe('hosts', () => {
  const p = parseList(fixture('stevenblack-hosts'), 'auto', 'stevenblack-hosts');

  it('takes every name as the name and its subdomains', () => {
    expect(doms(p)).toEqual([
      ['domain', 'ck.getcookiestxt.com', 40],
      ['domain', 'eu1.clevertap-prod.com', 41],
      ['domain', 'wizhumpgyros.com', 42],
      ['domain', 'coccyxwickimp.com', 43],
      ['domain', 'webmail-who-int.000webhostapp.com', 44],
      ['domain', 'ads.example-tracker.net', 47],
      ['domain', 'adserver.example.org', 48],
      ['domain', 'pixel.example.org', 48],
    ]);
    expect(p.cidrs).toEqual([]);
  });

  it('skips the localhost boilerplate and counts it', () => {
    // 13 boilerplate lines of one name each, plus `0.0.0.0 0.0.0.0`.
    expect(p.ignored).toBe(14);
  });

  it('reports a bad name at its column and keeps the rest of the line', () => {
    expect(p.problems).toEqual([
      { line: 49, col: 9, message: '"bad_label-.example.com" is not a domain name (bad label "bad_label-")' },
    ]);
    const q = parseList('0.0.0.0 ok.example bad..example also.example\n', 'hosts');
    expect(doms(q)).toEqual([
      ['domain', 'ok.example', 1],
      ['domain', 'also.example', 1],
    ]);
    expect(q.problems).toEqual([{ line: 1, col: 20, message: expect.stringContaining('"bad..example"') }]);
  });

  it('needs an address first and a name after it', () => {
    const q = parseList('ads.example 0.0.0.0\n0.0.0.0\n  0.0.0.0/8 x.example\n', 'hosts');
    expect(q.problems).toEqual([
      { line: 1, col: 1, message: '"ads.example" is not an IP address (a hosts line starts with one)' },
      { line: 2, col: 1, message: 'address "0.0.0.0" has no host names after it' },
      { line: 3, col: 3, message: '"0.0.0.0/8" is not an IP address (a hosts line starts with one)' },
    ]);
    expect(q.domains).toEqual([]);
  });
});

describe('dnsmasq', () => {
  const p = parseList(fixture('dnsmasq-china.conf'), 'auto', 'dnsmasq-china.conf');

  it('takes every domain between the slashes of server=, ipset=, nftset=, address= and local=', () => {
    expect(doms(p)).toEqual([
      ['domain', '0-100.com', 2],
      ['domain', '0-6.com', 3],
      ['domain', '00.net', 4],
      ['domain', '000000.net', 5],
      ['domain', 'baidu.com', 6],
      ['domain', 'qq.com', 7],
      ['domain', 'taobao.com', 8],
      ['domain', 'tmall.com', 8],
      ['domain', 'jd.com', 9],
      ['domain', 'ad.doubleclick.net', 10],
      ['domain', 'lan', 12],
    ]);
  });

  it('ignores address=/#/ and directives without domains', () => {
    // address=/#/, server=223.5.5.5, no-resolv, cache-size=10000
    expect(p.ignored).toBe(4);
  });

  it('reports bad domains at their column and unterminated domain lists', () => {
    expect(p.problems).toEqual([
      { line: 16, col: 9, message: '"exa mple.cn" is not a domain name (bad label "exa mple")' },
      { line: 17, col: 1, message: 'server= has no closing "/" after its domains' },
    ]);
  });

  it('rejects lines that are no directive at all', () => {
    const q = parseList('server=/a.example/1.1.1.1\n<html>\n', 'dnsmasq');
    expect(doms(q)).toEqual([['domain', 'a.example', 1]]);
    expect(q.problems).toEqual([
      { line: 2, col: 1, message: '"<html>" is not a dnsmasq directive (expected key=value)' },
    ]);
  });
});

describe('clash', () => {
  it('reads a YAML rule provider with quotes, options and comments', () => {
    const p = parseList(fixture('clash-provider.yaml'), 'auto', 'clash-provider.yaml');
    expect(doms(p)).toEqual([
      ['domain', 'google.com', 4],
      ['full', 'www.youtube.com', 5],
      ['keyword', 'googleapis', 6],
      ['regexp', '^ads?\\d{1,3}\\.example\\.com$', 7],
      ['domain', 'gstatic.com', 8],
      ['subdomain', 'ggpht.com', 9],
      ['full', 'plain.example.net', 16],
    ]);
    expect(cidrs(p)).toEqual([
      ['91.108.4.0/22', 10],
      ['2001:67c:4e8::/48', 11],
    ]);
    // PROCESS-NAME, GEOIP, MATCH
    expect(p.ignored).toBe(3);
    expect(p.problems).toEqual([
      { line: 15, col: 5, message: '"bad domain.com" is not a domain name (bad label "bad domain")' },
    ]);
  });

  it('reads the same entries through the yaml package as through the fast path', () => {
    const text = fixture('clash-provider.yaml');
    const fast = parseList(text, 'clash');
    const slow = parseClashYamlDocument(text);
    expect(slow).toEqual(fast);
    // Columns of quoted entries point past the quote in both.
    const quoted = parseList("payload:\n  - 'exa mple.com'\n", 'clash');
    expect(quoted.problems[0]).toMatchObject({ line: 2, col: 6 });
    expect(parseClashYamlDocument("payload:\n  - 'exa mple.com'\n").problems[0]).toMatchObject({ line: 2, col: 6 });
  });

  it('hands YAML outside the simple shape to the yaml package', () => {
    const flow = parseList(`# flow style\npayload: ['DOMAIN-SUFFIX,a.example', "+.b.example"]\n`, 'auto');
    expect(flow.format).toBe('clash');
    expect(doms(flow)).toEqual([
      ['domain', 'a.example', 2],
      ['domain', 'b.example', 2],
    ]);
    const escaped = parseList('payload:\n  - "DOMAIN,\\x61.example"\n  - \'it\'\'s.example\'\n  - 10\n', 'clash');
    expect(doms(escaped)).toEqual([['full', 'a.example', 2]]);
    expect(escaped.problems).toEqual([
      { line: 3, col: 6, message: `"it's.example" is not a domain name (bad label "it's")` },
      { line: 4, col: 5, message: 'payload entry 10 is not a string (quote it)' },
    ]);
  });

  it('reports broken YAML and a missing payload', () => {
    const broken = parseList('payload:\n  - [DOMAIN,a.example\n', 'clash');
    expect(broken.problems.length).toBeGreaterThan(0);
    expect(broken.problems[0]!.message).toMatch(/^YAML: /);
    const noPayload = parseList('payload:\n', 'clash');
    expect(noPayload.problems).toEqual([
      { line: 1, col: 1, message: 'no "payload:" list in this Clash rule provider' },
    ]);
  });

  it('reads a classical text provider', () => {
    const p = parseList(fixture('clash-classical.list'), 'auto', 'clash-classical.list');
    expect(doms(p)).toEqual([
      ['domain', 't.me', 5],
      ['domain', 'telegram.org', 6],
      ['full', 'telegram.me', 7],
      ['keyword', 'telegram', 8],
    ]);
    expect(cidrs(p)).toEqual([
      ['149.154.160.0/20', 9],
      ['2001:b28:f23d::/48', 10],
    ]);
    // IP-ASN, PROCESS-NAME, SRC-IP-CIDR, DST-PORT
    expect(p.ignored).toBe(4);
    expect(p.problems).toEqual([
      { line: 15, col: 1, message: '"149.154.999.0/24" is not an IP address or CIDR' },
    ]);
  });

  it('maps the bare forms of domain and ipcidr payloads', () => {
    const p = parseList(
      '+.a.example\n*.b.example\n.c.example\nd.example\n10.1.2.3/8\n2001:db8::1\nAND,((DOMAIN,x.example),(NETWORK,UDP))\nDOMAIN-SUFFIX,.e.example\n!!\n',
      'clash',
    );
    expect(doms(p)).toEqual([
      ['domain', 'a.example', 1],
      ['subdomain', 'b.example', 2],
      ['subdomain', 'c.example', 3],
      ['full', 'd.example', 4],
      ['domain', 'e.example', 8],
    ]);
    expect(cidrs(p)).toEqual([
      ['10.0.0.0/8', 5],
      ['2001:db8::1/128', 6],
    ]);
    expect(p.ignored).toBe(1);
    expect(p.problems).toEqual([{ line: 9, col: 1, message: '"!!" is not a domain name (bad label "!!")' }]);
  });
});

describe('v2fly', () => {
  const p = parseList(fixture('v2fly-google'), 'auto', 'v2fly-google');

  it('reads prefixes, drops attributes and comments', () => {
    expect(doms(p)).toEqual([
      ['domain', 'google.com', 6],
      ['domain', 'googleapis.com', 7],
      ['full', 'www.google.cn', 8],
      ['keyword', 'googlevideo', 9],
      ['regexp', '^google\\.com\\.[a-z]{2}$', 10],
      ['domain', 'gstatic.com', 11],
      ['domain', 'doubleclick.net', 13],
    ]);
    expect(p.cidrs).toEqual([]);
  });

  it('counts include: lines as ignored, not as problems', () => {
    expect(p.ignored).toBe(2);
  });

  it('reports bad entries and stray words at their column', () => {
    expect(p.problems).toEqual([
      { line: 12, col: 1, message: '"bad!.example" is not a domain name (bad label "bad!")' },
      { line: 14, col: 13, message: 'unexpected "bar.example" after "foo.example" (attributes start with "@")' },
    ]);
  });
});

describe('cidr', () => {
  const p = parseList(fixture('china-cidr.txt'), 'auto', 'china-cidr.txt');

  it('normalises v4 and v6, clears host bits, makes bare addresses host routes', () => {
    expect(cidrs(p)).toEqual([
      ['1.0.1.0/24', 3],
      ['1.0.2.0/23', 4],
      ['36.0.0.0/8', 5],
      ['101.6.6.6/32', 6],
      ['2001:da8::/32', 7],
      ['2400:da00::/32', 8],
      ['240e::/128', 9],
    ]);
    expect(p.domains).toEqual([]);
    expect(p.ignored).toBe(0);
  });

  it('reports bad lines', () => {
    expect(p.problems).toEqual([
      { line: 11, col: 1, message: '"1.2.3.0/33" has a bad prefix length (0-32)' },
      { line: 12, col: 1, message: '"not-an-ip" is not an IP address or CIDR' },
    ]);
    expect(parseList('  \t10.0.0.0/99\n', 'cidr').problems).toEqual([
      { line: 1, col: 4, message: '"10.0.0.0/99" has a bad prefix length (0-32)' },
    ]);
  });

  it('rejects words after the address, so a hosts file does not pass for a CIDR list', () => {
    const q = parseList('0.0.0.0 ads.example.com\n', 'cidr');
    expect(q.cidrs).toEqual([]);
    expect(q.problems).toEqual([{ line: 1, col: 9, message: 'unexpected "ads.example.com" after "0.0.0.0"' }]);
  });

  it('reads Spamhaus DROP style annotations', () => {
    const q = parseList('; Spamhaus DROP List\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16;SBL434604\n', 'auto');
    expect(q.format).toBe('cidr');
    expect(cidrs(q)).toEqual([
      ['1.10.16.0/20', 2],
      ['1.19.0.0/16', 3],
    ]);
  });
});

describe('plain', () => {
  const p = parseList(fixture('plain-streaming.txt'), 'auto', 'plain-streaming.txt');

  it('normalises case, trailing dots and IDNs, and knows the rules prefixes', () => {
    expect(doms(p)).toEqual([
      ['domain', 'netflix.com', 2],
      ['domain', 'nflxvideo.net', 3],
      ['domain', 'xn--bcher-kva.example', 4],
      ['subdomain', 'cdn.example.org', 5],
      ['domain', 'static.example.org', 6],
      ['domain', 'dotted.example', 7],
      ['full', 'api.example.com', 8],
      ['keyword', 'nflx', 9],
    ]);
  });

  it('puts addresses with the CIDRs rather than taking them for names', () => {
    expect(cidrs(p)).toEqual([['203.0.113.7/32', 13]]);
  });

  it('reports a bad line and keeps going', () => {
    expect(p.problems).toEqual([
      { line: 12, col: 1, message: '"exa mple.com" is not a domain name (bad label "exa mple")' },
    ]);
    expect(p.ignored).toBe(0);
  });

  it('keeps a # inside an entry and cuts one after a space', () => {
    const q = parseList('regexp:^a#b$\nx.example #note\n', 'plain');
    expect(doms(q)).toEqual([
      ['regexp', '^a#b$', 1],
      ['domain', 'x.example', 2],
    ]);
  });
});

describe('CRLF and BOM', () => {
  it.each(FIXTURE_FORMATS)('%s parses the same with CRLF line ends and a BOM', (file, format) => {
    const text = fixture(file);
    const windows = `\ufeff${text.replace(/\n/g, '\r\n')}`;
    expect(detectListFormat(windows, file)).toBe(format);
    expect(parseList(windows, 'auto', file)).toEqual(parseList(text, 'auto', file));
  });

  it('counts columns after the BOM', () => {
    const p = parseList('\ufeffexa mple.com\r\n', 'plain');
    expect(p.problems).toEqual([{ line: 1, col: 1, message: expect.stringContaining('"exa mple.com"') }]);
  });
});

describe('detection from content and names', () => {
  it.each<[string, string, ConcreteListFormat]>([
    ['hosts lines', '# blocklist\n0.0.0.0 a.example\n0.0.0.0 b.example\n127.0.0.1 c.example d.example\n', 'hosts'],
    ['dnsmasq lines', 'server=/a.example/1.1.1.1\nipset=/b.example/set\n', 'dnsmasq'],
    ['clash classical', 'DOMAIN-SUFFIX,a.example\nIP-CIDR,10.0.0.0/8\n', 'clash'],
    ['clash domain text', '+.a.example\n+.b.example\nc.example\n', 'clash'],
    ['clash yaml', '# header\n\npayload:\n  - a.example\n', 'clash'],
    ['v2fly prefixes', 'a.example\ndomain:b.example\nc.example\n', 'v2fly'],
    ['v2fly attributes', 'a.example @cn\nb.example\n', 'v2fly'],
    ['v2fly shared prefixes only', 'a.example\nfull:b.example\nregexp:^c\\.example$\n', 'v2fly'],
    ['plain with rules prefixes and adblock comments', '! list\na.example\nfull:b.example\n', 'plain'],
    ['cidrs', '10.0.0.0/8\n192.168.1.1\n2001:db8::/32\n', 'cidr'],
    ['plain names', 'a.example\nb.example\n', 'plain'],
    ['empty', '', 'plain'],
    ['only comments', '# nothing\n\n', 'plain'],
  ])('%s', (_what, text, format) => {
    expect(detectListFormat(text)).toBe(format);
  });

  it('lets a .conf name settle a mostly-other dnsmasq file', () => {
    const text = 'conf-dir=/etc/dnsmasq.d\nno-resolv\nbogus-priv\nserver=/a.example/1.1.1.1\n';
    expect(detectListFormat(text, 'https://x.example/accelerated-domains.china.conf')).toBe('dnsmasq');
  });

  it('lets a hosts name settle a file with few address lines', () => {
    const text = 'a.example\nb.example\nc.example\n0.0.0.0 d.example\n';
    expect(detectListFormat(text)).toBe('plain');
    expect(detectListFormat(text, '/etc/splitwan/hosts.block')).toBe('hosts');
  });
});

describe('robustness', () => {
  const formats = ['auto', 'plain', 'hosts', 'dnsmasq', 'clash', 'v2fly', 'cidr'] as const;

  it('never throws and reports problems within the text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.constantFrom(...formats), (text, format) => {
        const p = parseList(text, format);
        const lineCount = text.split('\n').length;
        for (const x of [...p.problems, ...p.domains, ...p.cidrs]) {
          expect(x.line).toBeGreaterThanOrEqual(1);
          expect(x.line).toBeLessThanOrEqual(lineCount);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with the yaml package on simple payloads', () => {
    const entry = fc.constantFrom(
      'DOMAIN-SUFFIX,a.example',
      "'+.b.example'",
      '"*.c.example"',
      'IP-CIDR,10.0.0.0/8,no-resolve',
      'd.example   # note',
      "'exa mple'",
      'GEOIP,CN',
      '2001:db8::/32',
    );
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 20 }), fc.constantFrom('', '  '), (items, indent) => {
        const text = `# provider\npayload:\n${items.map((i) => `${indent}- ${i}\n`).join('')}`;
        expect(parseList(text, 'clash')).toEqual(parseClashYamlDocument(text));
      }),
      { numRuns: 200 },
    );
  });

  // Speed is measured by `npm run bench -- policy` (load_ms), not here: CI machines are shared.
  it('parses 100k-line lists of every format, detecting each', () => {
    const n = 100_000;
    const names = Array.from({ length: n }, (_, i) => `host-${i}.example${i % 7}.com`);
    const texts: [ConcreteListFormat, string][] = [
      ['plain', names.join('\n')],
      ['hosts', names.map((x) => `0.0.0.0 ${x}`).join('\n')],
      ['dnsmasq', names.map((x) => `server=/${x}/114.114.114.114`).join('\n')],
      ['clash', `payload:\n${names.map((x) => `  - DOMAIN-SUFFIX,${x}`).join('\n')}`],
      ['v2fly', names.map((x) => `full:${x} @cn`).join('\n')],
      ['cidr', Array.from({ length: n }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`).join('\n')],
    ];
    for (const [format, text] of texts) {
      const p = parseList(text, 'auto');
      expect(p.format).toBe(format);
      expect(p.domains.length + p.cidrs.length).toBe(n);
      expect(p.problems).toEqual([]);
    }
  });
});
