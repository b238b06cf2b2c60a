// The compiled policy: which rule (and so which path) a name or an address
// takes. Rules are built directly as RuleConfig for the matcher cases and
// through loadConfig() for the cases that depend on files (lists, origins).

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalName, parseDomainPattern } from '../../config/domain.js';
import { parseCidr, parseIp } from '../../lib/ip.js';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import { compilePolicy, type ListContent, type Policy } from '../../config/policy.js';
import type { DomainPattern, RuleConfig, Target } from '../../config/types.js';

const CFG = '/etc/splitwan/config.yaml';

interface RuleSpec {
  domains?: string[];
  cidrs?: string[];
  sources?: string[];
  lists?: string[];
  via?: Target[];
}

/** Positions are synthetic but distinct: rule i's entry j sits at line 100*i + 10*k + j + 1. */
function buildRules(specs: RuleSpec[]): RuleConfig[] {
  return specs.map((s, i) => {
    const cidrList = (key: 'cidrs' | 'sources', k: number) =>
      (s[key] ?? []).map((c, j) => {
        const p = parseCidr(c);
        if ('error' in p) throw new Error(p.error);
        return { cidr: p.text, origin: { keyPath: `rules[${i}].${key}[${j}]`, pos: { file: CFG, line: 100 * i + 10 * k + j + 1, col: 9 } } };
      });
    return {
      index: i,
      domains: (s.domains ?? []).map((d, j) => {
        const p = parseDomainPattern(d);
        if ('error' in p) throw new Error(p.error);
        return { pattern: p.pattern, origin: { keyPath: `rules[${i}].domains[${j}]`, pos: { file: CFG, line: 100 * i + j + 1, col: 9 } } };
      }),
      cidrs: cidrList('cidrs', 1),
      sources: cidrList('sources', 2),
      lists: s.lists ?? [],
      // Each rule its own gateway by default, so a match shows which rule it was.
      via: s.via ?? [`gw:r${i}`],
      label: `rule ${i}`,
      pos: { file: CFG, line: 100 * i, col: 5 },
    };
  });
}

function policyOf(specs: RuleSpec[], opts: { default?: Target[]; lists?: ListContent[] } = {}): Policy {
  const lists = new Map((opts.lists ?? []).map((l) => [l.name, l]));
  return compilePolicy({ rules: buildRules(specs), default: opts.default ?? ['tunnel'] }, lists);
}

/** The rule index a name matches, or null. */
const ruleOf = (p: Policy, name: string, source?: string): number | null => p.matchName(name, source).rule;

describe('policy: domain matchers', () => {
  it('"example.com" matches the name and every subdomain, nothing else', () => {
    const p = policyOf([{ domains: ['example.com'] }]);
    for (const n of ['example.com', 'www.example.com', 'a.b.c.example.com']) expect(ruleOf(p, n), n).toBe(0);
    for (const n of ['notexample.com', 'example.com.evil', 'com', 'example.org', 'wwwexample.com', 'xample.com']) {
      expect(ruleOf(p, n), n).toBeNull();
    }
  });

  it('"*.example.com" matches subdomains only, not the apex', () => {
    const p = policyOf([{ domains: ['*.example.com'] }]);
    expect(ruleOf(p, 'www.example.com')).toBe(0);
    expect(ruleOf(p, 'a.b.example.com')).toBe(0);
    expect(ruleOf(p, 'example.com')).toBeNull();
    expect(ruleOf(p, 'notexample.com')).toBeNull();
    expect(p.matchName('www.example.com').entry).toStrictEqual({
      kind: 'subdomain',
      value: 'example.com',
      keyPath: 'rules[0].domains[0]',
      pos: { file: CFG, line: 1, col: 9 },
    });
  });

  it('"full:" matches exactly that name', () => {
    const p = policyOf([{ domains: ['full:api.example.com'] }]);
    expect(ruleOf(p, 'api.example.com')).toBe(0);
    expect(ruleOf(p, 'API.Example.Com.')).toBe(0);
    expect(ruleOf(p, 'v2.api.example.com')).toBeNull();
    expect(ruleOf(p, 'example.com')).toBeNull();
    expect(p.matchName('api.example.com').entry?.kind).toBe('full');
  });

  it('"keyword:" matches names containing it, case-insensitively', () => {
    const p = policyOf([{ domains: ['keyword:Tube'] }]);
    for (const n of ['youtube.com', 'tube.example', 'WWW.YOUTUBE.COM', 'a.tubes.net']) expect(ruleOf(p, n), n).toBe(0);
    for (const n of ['tub.com', 'tu.be', 'example.com']) expect(ruleOf(p, n), n).toBeNull();
    expect(p.matchName('youtube.com').entry).toStrictEqual({
      kind: 'keyword',
      value: 'tube',
      keyPath: 'rules[0].domains[0]',
      pos: { file: CFG, line: 1, col: 9 },
    });
  });

  it('"regexp:" is used as written, case-insensitively, without a trailing dot', () => {
    const p = policyOf([{ domains: ['regexp:^ads?\\d+\\.', 'regexp:cdn[0-9]\\.example\\.net$'] }]);
    expect(ruleOf(p, 'ad1.example.com')).toBe(0);
    expect(ruleOf(p, 'ADS42.example.com')).toBe(0);
    expect(ruleOf(p, 'xads1.example.com')).toBeNull(); // anchored at the start
    expect(ruleOf(p, 'ads.example.com')).toBeNull(); // needs a digit
    expect(ruleOf(p, 'img.CDN7.example.net.')).toBe(0); // `$` holds with the trailing dot
    expect(ruleOf(p, 'cdn7.example.net.evil')).toBeNull();
    expect(p.matchName('img.cdn7.example.net').entry).toStrictEqual({
      kind: 'regexp',
      value: 'cdn[0-9]\\.example\\.net$',
      keyPath: 'rules[0].domains[1]',
      pos: { file: CFG, line: 2, col: 9 },
    });
  });

  it('compares queried names case-insensitively and without the trailing dot', () => {
    const p = policyOf([{ domains: ['Example.COM'] }]);
    for (const n of ['EXAMPLE.COM', 'example.com.', 'Www.Example.Com.', 'wWw.eXaMpLe.cOm']) expect(ruleOf(p, n), n).toBe(0);
    expect(p.matchName('WWW.EXAMPLE.COM.').entry?.value).toBe('example.com');
    expect(p.ruleForName('WWW.EXAMPLE.COM.')).toBe(0);
  });

  it('takes IDNs in the config as punycode', () => {
    const p = policyOf([{ domains: ['bücher.example', '*.MÜNCHEN.example', 'full:straße.example'] }]);
    expect(ruleOf(p, 'xn--bcher-kva.example')).toBe(0);
    expect(ruleOf(p, 'shop.xn--bcher-kva.example')).toBe(0);
    expect(ruleOf(p, 'www.xn--mnchen-3ya.example')).toBe(0);
    expect(ruleOf(p, 'xn--mnchen-3ya.example')).toBeNull();
    expect(ruleOf(p, 'xn--strae-oqa.example')).toBe(0);
    expect(ruleOf(p, 'bcher.example')).toBeNull();
    expect(p.matchName('xn--bcher-kva.example').entry?.value).toBe('xn--bcher-kva.example');
  });

  it('reads the Clash "+.x", dnsmasq ".x" and v2fly "domain:x" spellings as the name and its subdomains', () => {
    const p = policyOf([{ domains: ['+.clash.example'] }, { domains: ['.dotted.example'] }, { domains: ['domain:v2.example'] }]);
    for (const [apex, rule] of [
      ['clash.example', 0],
      ['dotted.example', 1],
      ['v2.example', 2],
    ] as const) {
      expect(ruleOf(p, apex), apex).toBe(rule);
      expect(ruleOf(p, `a.b.${apex}`), apex).toBe(rule);
      expect(ruleOf(p, `not${apex}`), apex).toBeNull();
      expect(p.matchName(apex).entry?.kind).toBe('domain');
      expect(p.matchName(apex).entry?.value).toBe(apex);
    }
  });
});

describe('policy: first match wins, by rule index', () => {
  it('a keyword in rule 0 beats a domain in rule 1', () => {
    const p = policyOf([{ domains: ['keyword:example'] }, { domains: ['example.com'] }]);
    expect(p.matchName('www.example.com')).toStrictEqual({
      rule: 0,
      via: ['gw:r0'],
      entry: { kind: 'keyword', value: 'example', keyPath: 'rules[0].domains[0]', pos: { file: CFG, line: 1, col: 9 } },
    });
  });

  it('a domain in rule 1 beats a keyword in rule 2 and a regexp in rule 3', () => {
    const p = policyOf([{ domains: ['other.example'] }, { domains: ['example.com'] }, { domains: ['keyword:example'] }, { domains: ['regexp:example'] }]);
    expect(p.matchName('www.example.com')).toStrictEqual({
      rule: 1,
      via: ['gw:r1'],
      entry: { kind: 'domain', value: 'example.com', keyPath: 'rules[1].domains[0]', pos: { file: CFG, line: 101, col: 9 } },
    });
    expect(ruleOf(p, 'example.org')).toBe(2);
    expect(p.matchName('example.org').entry?.kind).toBe('keyword');
  });

  it('a regexp in rule 0 beats a keyword in rule 1, and a keyword in rule 0 beats a regexp in rule 1', () => {
    const a = policyOf([{ domains: ['regexp:^www\\.'] }, { domains: ['keyword:www'] }]);
    expect(ruleOf(a, 'www.example.com')).toBe(0);
    expect(a.matchName('www.example.com').entry?.kind).toBe('regexp');
    expect(ruleOf(a, 'awww.example.com')).toBe(1);
    const b = policyOf([{ domains: ['keyword:www'] }, { domains: ['regexp:^www\\.'] }]);
    expect(ruleOf(b, 'www.example.com')).toBe(0);
    expect(b.matchName('www.example.com').entry?.kind).toBe('keyword');
  });

  it('full in rule 0 and domain in rule 1 on the same name', () => {
    const p = policyOf([{ domains: ['full:example.com'] }, { domains: ['example.com'] }]);
    expect(ruleOf(p, 'example.com')).toBe(0);
    expect(p.matchName('example.com').entry?.kind).toBe('full');
    expect(ruleOf(p, 'www.example.com')).toBe(1);
    expect(p.matchName('www.example.com').entry?.kind).toBe('domain');
    // The other way round the domain rule takes everything.
    const q = policyOf([{ domains: ['example.com'] }, { domains: ['full:example.com'] }]);
    expect(ruleOf(q, 'example.com')).toBe(0);
    expect(q.matchName('example.com').entry?.kind).toBe('domain');
  });

  it('a parent domain in an earlier rule beats a more specific later rule', () => {
    const p = policyOf([{ domains: ['example.com'] }, { domains: ['*.cdn.example.com', 'full:api.example.com', 'static.example.com'] }]);
    for (const n of ['a.cdn.example.com', 'api.example.com', 'static.example.com', 'x.static.example.com']) expect(ruleOf(p, n), n).toBe(0);
  });

  it('a subdomain rule before a domain rule of its parent takes the subdomains only', () => {
    const p = policyOf([{ domains: ['*.cdn.example.com'] }, { domains: ['example.com'] }]);
    expect(ruleOf(p, 'a.cdn.example.com')).toBe(0);
    expect(ruleOf(p, 'cdn.example.com')).toBe(1);
    expect(ruleOf(p, 'www.example.com')).toBe(1);
  });

  it('the same name as subdomain in rule 0 and domain in rule 1', () => {
    const p = policyOf([{ domains: ['*.example.com'] }, { domains: ['example.com'] }]);
    expect(ruleOf(p, 'example.com')).toBe(1);
    expect(ruleOf(p, 'www.example.com')).toBe(0);
  });

  it('a name repeated in a later rule never wins, and its first origin is reported', () => {
    const p = policyOf([{ domains: ['a.example', 'example.com'] }, { domains: ['example.com'] }]);
    expect(p.matchName('www.example.com').entry).toStrictEqual({
      kind: 'domain',
      value: 'example.com',
      keyPath: 'rules[0].domains[1]',
      pos: { file: CFG, line: 2, col: 9 },
    });
  });

  it('keeps via lists in order and uses the default when nothing matches', () => {
    const p = policyOf([{ domains: ['example.com'], via: ['gw:b', 'gw:a', 'breakout'] }], { default: ['gw:a', 'block'] });
    expect(p.matchName('example.com').via).toEqual(['gw:b', 'gw:a', 'breakout']);
    expect(p.matchName('example.org')).toStrictEqual({ rule: null, via: ['gw:a', 'block'], entry: null });
    expect(p.matchIp('192.0.2.1')).toStrictEqual({ rule: null, via: ['gw:a', 'block'], entry: null });
    expect(p.viaOf(0)).toEqual(['gw:b', 'gw:a', 'breakout']);
    expect(p.viaOf(-1)).toEqual(['gw:a', 'block']);
    expect(p.viaOf(null)).toEqual(['gw:a', 'block']);
  });
});

describe('policy: addresses', () => {
  it('IPv4: the lowest rule index wins, not the longest prefix', () => {
    const p = policyOf([{ cidrs: ['10.0.0.0/8'] }, { cidrs: ['10.1.2.0/24'] }]);
    expect(p.matchIp('10.1.2.3')).toStrictEqual({
      rule: 0,
      via: ['gw:r0'],
      entry: { kind: 'cidr', value: '10.0.0.0/8', keyPath: 'rules[0].cidrs[0]', pos: { file: CFG, line: 11, col: 9 } },
    });
    const q = policyOf([{ cidrs: ['10.1.2.0/24'] }, { cidrs: ['10.0.0.0/8'] }]);
    expect(q.matchIp('10.1.2.3').rule).toBe(0);
    expect(q.matchIp('10.9.9.9').rule).toBe(1);
    expect(q.matchIp('11.0.0.1').rule).toBeNull();
  });

  it('IPv6: the lowest rule index wins, not the longest prefix', () => {
    const p = policyOf([{ cidrs: ['2001:db8::/32'] }, { cidrs: ['2001:db8:1::/48'] }]);
    expect(p.matchIp('2001:db8:1::5').rule).toBe(0);
    const q = policyOf([{ cidrs: ['2001:db8:1::/48'] }, { cidrs: ['2001:db8::/32'] }]);
    expect(q.matchIp('2001:db8:1::5').rule).toBe(0);
    expect(q.matchIp('2001:db8:2::5').rule).toBe(1);
    expect(q.matchIp('2001:db9::1').rule).toBeNull();
    expect(q.matchIp('2001:db8:2::5').entry?.value).toBe('2001:db8::/32');
  });

  it('keeps families apart, handles /0 and /32 and clears host bits', () => {
    const p = policyOf([{ cidrs: ['198.51.100.7'] }, { cidrs: ['10.1.2.3/8'] }, { cidrs: ['::/0'] }, { cidrs: ['0.0.0.0/0'] }]);
    expect(p.matchIp('198.51.100.7').rule).toBe(0);
    expect(p.matchIp('198.51.100.7').entry?.value).toBe('198.51.100.7/32');
    expect(p.matchIp('198.51.100.8').rule).toBe(3);
    expect(p.matchIp('10.200.0.1').entry?.value).toBe('10.0.0.0/8');
    expect(p.matchIp('fe80::1').rule).toBe(2);
    expect(p.matchIp(parseIp('192.0.2.1')!).rule).toBe(3);
  });

  it('refuses something that is not an address', () => {
    const p = policyOf([{ cidrs: ['10.0.0.0/8'] }]);
    expect(() => p.matchIp('example.com')).toThrow(TypeError);
  });

  it('names do not match CIDR rules and addresses do not match domain rules', () => {
    const p = policyOf([{ domains: ['keyword:10'] }, { cidrs: ['10.0.0.0/8'] }]);
    expect(p.matchIp('10.0.0.1').rule).toBe(1);
    expect(p.matchName('host10.example').rule).toBe(0);
  });
});

describe('policy: sources', () => {
  const specs: RuleSpec[] = [
    { sources: ['192.168.1.0/24'], domains: ['example.com'], via: ['breakout'] },
    { domains: ['example.com'], via: ['tunnel'] },
    { sources: ['192.168.1.0/24', '2001:db8:aa::/48'], cidrs: ['203.0.113.0/24'], via: ['block'] },
    { sources: ['192.168.7.50/32'], via: ['gw:kids'] },
  ];

  it('a sources rule matches only when a source is given and it is inside', () => {
    const p = policyOf(specs);
    expect(p.matchName('www.example.com').rule).toBe(1);
    expect(p.matchName('www.example.com', '192.168.2.7').rule).toBe(1);
    expect(p.matchName('www.example.com', '192.168.1.7')).toStrictEqual({
      rule: 0,
      via: ['breakout'],
      entry: { kind: 'domain', value: 'example.com', keyPath: 'rules[0].domains[0]', pos: { file: CFG, line: 1, col: 9 } },
    });
    expect(p.matchName('www.example.com', parseIp('192.168.1.7')!).rule).toBe(0);
    // ruleForName ignores source rules.
    expect(p.ruleForName('www.example.com')).toBe(1);
  });

  it('host mode: source rules match nothing (every client is this machine), the others still do', () => {
    const p = compilePolicy({ rules: buildRules(specs), default: ['tunnel'], mode: 'host' }, new Map());
    expect(p.hasSourceRules).toBe(false);
    expect(p.matchName('www.example.com', '192.168.1.7').rule).toBe(1);
    expect(p.matchName('www.example.com', '127.0.0.1').rule).toBe(1);
    expect(p.matchIp('203.0.113.9', '192.168.1.7').rule).toBeNull();
    expect(p.matchName('anything.test', '192.168.7.50').rule).toBeNull();
    expect(compilePolicy({ rules: buildRules(specs), default: ['tunnel'], mode: 'router' }, new Map()).matchName('www.example.com', '192.168.1.7').rule).toBe(0);
  });

  it('sources and destinations are AND', () => {
    const p = policyOf(specs);
    // Inside the sources, but the name is not in rule 0 and nothing else matches it.
    expect(p.matchName('example.org', '192.168.1.7').rule).toBeNull();
    // The CIDR rule 2 needs both the source and the destination.
    expect(p.matchIp('203.0.113.9', '192.168.1.7').rule).toBe(2);
    expect(p.matchIp('203.0.113.9', '2001:db8:aa::9').rule).toBe(2);
    expect(p.matchIp('203.0.113.9', '192.168.9.9').rule).toBeNull();
    expect(p.matchIp('203.0.113.9').rule).toBeNull();
    expect(p.matchIp('198.51.100.1', '192.168.1.7').rule).toBeNull();
    expect(p.matchIp('203.0.113.9', '192.168.1.7').entry).toStrictEqual({
      kind: 'cidr',
      value: '203.0.113.0/24',
      keyPath: 'rules[2].cidrs[0]',
      pos: { file: CFG, line: 211, col: 9 },
    });
  });

  it('a rule with sources only matches everything from those clients', () => {
    const p = policyOf(specs);
    const entry = { kind: 'source', value: '192.168.7.50/32', keyPath: 'rules[3].sources[0]', pos: { file: CFG, line: 321, col: 9 } };
    expect(p.matchName('anything.example', '192.168.7.50')).toStrictEqual({ rule: 3, via: ['gw:kids'], entry });
    expect(p.matchIp('8.8.8.8', '192.168.7.50')).toStrictEqual({ rule: 3, via: ['gw:kids'], entry });
    // An earlier rule still wins for the same client.
    expect(p.matchName('example.com', '192.168.7.50').rule).toBe(1);
    expect(p.matchName('anything.example', '192.168.7.51').rule).toBeNull();
    expect(p.matchName('anything.example').rule).toBeNull();
    expect(p.hasSourceRules).toBe(true);
    expect(policyOf([{ domains: ['a.example'] }]).hasSourceRules).toBe(false);
  });
});

describe('policy: lists', () => {
  const list: ListContent = {
    name: 'stream',
    file: '/var/lib/splitwan/lists/stream.txt',
    domains: [
      { pattern: { kind: 'domain', value: 'netflix.com' }, line: 3 },
      { pattern: { kind: 'subdomain', value: 'nflxvideo.net' }, line: 4 },
      { pattern: { kind: 'keyword', value: 'hulu' }, line: 9 },
    ],
    cidrs: [{ cidr: '198.51.100.0/24', line: 12 }],
  };

  it('matches list entries and says which list and line', () => {
    const p = policyOf([{ domains: ['example.com'] }, { lists: ['stream'], via: ['gw:us'] }], { lists: [list] });
    expect(p.matchName('www.netflix.com')).toStrictEqual({
      rule: 1,
      via: ['gw:us'],
      entry: { kind: 'domain', value: 'netflix.com', list: 'stream', pos: { file: list.file, line: 3, col: 1 } },
    });
    expect(p.matchName('a.nflxvideo.net').entry).toStrictEqual({
      kind: 'subdomain',
      value: 'nflxvideo.net',
      list: 'stream',
      pos: { file: list.file, line: 4, col: 1 },
    });
    expect(p.matchName('nflxvideo.net').rule).toBeNull();
    expect(p.matchName('www.hulu.example').entry).toStrictEqual({ kind: 'keyword', value: 'hulu', list: 'stream', pos: { file: list.file, line: 9, col: 1 } });
    expect(p.matchIp('198.51.100.20')).toStrictEqual({
      rule: 1,
      via: ['gw:us'],
      entry: { kind: 'cidr', value: '198.51.100.0/24', list: 'stream', pos: { file: list.file, line: 12, col: 1 } },
    });
  });

  it('a list in a later rule loses to an earlier rule, and a list not loaded matches nothing', () => {
    const p = policyOf([{ domains: ['keyword:netflix'] }, { lists: ['stream'] }, { lists: ['remote'] }], { lists: [list] });
    expect(p.matchName('www.netflix.com').rule).toBe(0);
    expect(p.matchName('a.nflxvideo.net').rule).toBe(1);
  });

  describe('from files, through loadConfig', () => {
    let dir: string;
    let loaded: LoadedConfig;
    const file = (): string => join(dir, 'config.yaml');

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'splitwan-policy-'));
      const key = (): string => randomBytes(32).toString('base64');
      const wg = (addr: string): string =>
        `[Interface]\nPrivateKey = ${key()}\nAddress = ${addr}\nDNS = 10.64.0.1\n\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n`;
      await writeFile(join(dir, 'wg1.conf'), wg('10.64.0.2/32'));
      await writeFile(join(dir, 'wg2.conf'), wg('10.65.0.2/32'));
      await chmod(join(dir, 'wg1.conf'), 0o600);
      await chmod(join(dir, 'wg2.conf'), 0o600);
      await mkdir(join(dir, 'lists'));
      await writeFile(join(dir, 'lists', 'stream.txt'), ['# streaming', 'netflix.com', '', 'full:api.example.com', '203.0.113.0/24', ''].join('\n'));
      await writeFile(
        file(),
        [
          'mode: router', // 1
          'lan: [br0]', // 2
          'lists:', // 3
          '  stream:', // 4
          '    file: lists/stream.txt', // 5
          '    format: plain', // 6
          'tunnel:', // 7
          '  gateways:', // 8
          '    - name: gw1', // 9
          '      config: wg1.conf', // 10
          '    - name: GW2', // 11
          '      config: wg2.conf', // 12
          'rules:', // 13
          '  - domains:', // 14
          '      - bücher.example', // 15
          '      - "*.Example.org"', // 16
          '    via: breakout', // 17
          '  - list: stream', // 18
          '    via: [gw2, GW1, breakout]', // 19
          '  - sources: [192.168.1.0/24]', // 20
          '    cidrs: ["2001:db8::/32"]', // 21
          '    via: block', // 22
          'default: [gw1, breakout]', // 23
          '',
        ].join('\n'),
      );
      loaded = await loadConfig(file());
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('reports the rule entry with its key path and position in the config', () => {
      expect(loaded.warnings).toEqual([]);
      expect(loaded.policy.matchName('www.xn--bcher-kva.example')).toStrictEqual({
        rule: 0,
        via: ['breakout'],
        entry: { kind: 'domain', value: 'xn--bcher-kva.example', keyPath: 'rules[0].domains[0]', pos: { file: file(), line: 15, col: 9 } },
      });
      expect(loaded.policy.matchName('cdn.example.org').entry).toStrictEqual({
        kind: 'subdomain',
        value: 'example.org',
        keyPath: 'rules[0].domains[1]',
        pos: { file: file(), line: 16, col: 9 },
      });
    });

    it('reports the list entry with the list file and line, and keeps via in order', () => {
      const listFile = join(dir, 'lists', 'stream.txt');
      expect(loaded.policy.matchName('www.netflix.com')).toStrictEqual({
        rule: 1,
        via: ['gw:GW2', 'gw:gw1', 'breakout'],
        entry: { kind: 'domain', value: 'netflix.com', list: 'stream', pos: { file: listFile, line: 2, col: 1 } },
      });
      expect(loaded.policy.matchName('api.example.com').entry).toStrictEqual({
        kind: 'full',
        value: 'api.example.com',
        list: 'stream',
        pos: { file: listFile, line: 4, col: 1 },
      });
      expect(loaded.policy.matchName('www.api.example.com').rule).toBeNull();
      expect(loaded.policy.matchIp('203.0.113.77')).toStrictEqual({
        rule: 1,
        via: ['gw:GW2', 'gw:gw1', 'breakout'],
        entry: { kind: 'cidr', value: '203.0.113.0/24', list: 'stream', pos: { file: listFile, line: 5, col: 1 } },
      });
    });

    it('applies sources rules from the file and the default', () => {
      expect(loaded.policy.matchIp('2001:db8::1', '192.168.1.10')).toStrictEqual({
        rule: 2,
        via: ['block'],
        entry: { kind: 'cidr', value: '2001:db8::/32', keyPath: 'rules[2].cidrs[0]', pos: { file: file(), line: 21, col: 13 } },
      });
      expect(loaded.policy.matchIp('2001:db8::1').rule).toBeNull();
      expect(loaded.policy.matchIp('2001:db8::1').via).toEqual(['gw:gw1', 'breakout']);
      expect(loaded.policy.matchName('unknown.example')).toStrictEqual({ rule: null, via: ['gw:gw1', 'breakout'], entry: null });
      expect(loaded.policy.stats).toEqual({ rules: 3, domains: 4, keywords: 0, regexps: 0, cidrs: 2, sourceRules: 1 });
    });
  });
});

describe('policy: ruleForName agrees with matchName', () => {
  it('on a mixed policy', () => {
    const p = policyOf([
      { domains: ['keyword:ads', 'full:a.example'] },
      { domains: ['*.b.example', 'regexp:^c[0-9]+\\.'] },
      { sources: ['10.0.0.0/8'], domains: ['d.example'] },
      { domains: ['example', 'd.example'] },
    ]);
    const names = ['a.example', 'x.a.example', 'b.example', 'x.b.example', 'c12.example', 'd.example', 'ads.example', 'q.example', 'nothing.test', 'A.EXAMPLE.'];
    for (const n of names) {
      const m = p.matchName(n);
      expect(p.ruleForName(n), n).toBe(m.rule ?? -1);
      expect(m.via, n).toEqual(p.viaOf(m.rule));
    }
  });
});

// ---------------------------------------------------------------------------
// Property: the index agrees with a naive scan of the rules.

type Kind = 'domain' | 'subdomain' | 'full' | 'keyword';

/** What the user wrote for a pattern of this kind. */
function patternText(kind: Kind, value: string): string {
  switch (kind) {
    case 'domain':
      return value;
    case 'subdomain':
      return `*.${value}`;
    case 'full':
      return `full:${value}`;
    case 'keyword':
      return `keyword:${value}`;
  }
}

/** The reference: a name matches a pattern by the documented meaning of each kind. */
function naiveMatches(p: DomainPattern, q: string): boolean {
  switch (p.kind) {
    case 'domain':
      return q === p.value || q.endsWith(`.${p.value}`);
    case 'subdomain':
      return q.endsWith(`.${p.value}`);
    case 'full':
      return q === p.value;
    case 'keyword':
      return q.includes(p.value);
    case 'regexp':
      return new RegExp(p.value, 'i').test(q);
  }
}

/** First rule (in order) with any matching pattern, or null. */
function naiveRule(rules: readonly RuleConfig[], name: string): number | null {
  const q = canonicalName(name);
  for (const r of rules) if (r.domains.some((d) => naiveMatches(d.pattern, q))) return r.index;
  return null;
}

describe('policy: property', () => {
  // Few, overlapping labels, so suffixes and substrings collide often.
  const label = fc.constantFrom('a', 'b', 'ab', 'ba', 'com', 'x-y');
  const domainName = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
  const pattern = fc.record({
    kind: fc.constantFrom<Kind>('domain', 'subdomain', 'full', 'keyword'),
    name: domainName,
    keyword: fc.constantFrom('a', 'b', 'ab', 'b.a', 'co', 'm.a', 'x-'),
  });
  const ruleArb = fc.array(pattern, { minLength: 0, maxLength: 4 });
  const query = fc.record({
    name: domainName,
    upper: fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }),
    dot: fc.boolean(),
  });

  it('matchName(q).rule equals the first rule with a matching pattern', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 6 }), fc.array(query, { minLength: 1, maxLength: 12 }), (ruleSpecs, queries) => {
        const specs: RuleSpec[] = ruleSpecs.map((ps) => ({ domains: ps.map((p) => patternText(p.kind, p.kind === 'keyword' ? p.keyword : p.name)) }));
        // A rule with no entries is fine here: it matches nothing.
        const rules = buildRules(specs);
        const p = compilePolicy({ rules, default: ['tunnel'] }, new Map());
        for (const q of queries) {
          const name = [...q.name].map((c, i) => (q.upper[i % 16] ? c.toUpperCase() : c)).join('') + (q.dot ? '.' : '');
          const want = naiveRule(rules, name);
          const got = p.matchName(name);
          if (got.rule !== want) return false;
          if (p.ruleForName(name) !== (want ?? -1)) return false;
          // The reported entry is one of the winning rule's patterns, and it matches.
          if (want !== null) {
            const e = got.entry;
            if (!e || e.keyPath === undefined || !e.keyPath.startsWith(`rules[${want}].domains[`)) return false;
            if (!naiveMatches({ kind: e.kind, value: e.value } as DomainPattern, canonicalName(name))) return false;
          } else if (got.entry !== null) return false;
        }
        return true;
      }),
      { numRuns: 600 },
    );
  });
});

describe('policy: address property', () => {
  // Addresses built from few octets / groups, so prefixes overlap often.
  const v4 = fc.array(fc.constantFrom(0, 1, 10, 128, 255), { minLength: 4, maxLength: 4 });
  const v6 = fc.array(fc.constantFrom(0, 1, 0x2001, 0xdb8, 0xffff), { minLength: 8, maxLength: 8 });
  const v4Text = (o: number[]): string => o.join('.');
  const v6Text = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
  const v4Big = (o: number[]): bigint => o.reduce((a, x) => (a << 8n) | BigInt(x), 0n);
  const v6Big = (g: number[]): bigint => g.reduce((a, x) => (a << 16n) | BigInt(x), 0n);
  const cidr = fc.oneof(
    fc.record({ family: fc.constant(4 as const), addr: v4, prefix: fc.constantFrom(0, 1, 7, 8, 9, 16, 24, 25, 31, 32) }),
    fc.record({ family: fc.constant(6 as const), addr: v6, prefix: fc.constantFrom(0, 1, 16, 32, 33, 48, 64, 96, 127, 128) }),
  );
  const addr = fc.oneof(
    fc.record({ family: fc.constant(4 as const), addr: v4 }),
    fc.record({ family: fc.constant(6 as const), addr: v6 }),
  );
  type C = { family: 4 | 6; addr: number[]; prefix: number };
  type A = { family: 4 | 6; addr: number[] };

  /** A queried ::ffff:a.b.c.d is the IPv4 client a.b.c.d (dual-stack sockets report them so). */
  function unmapped(a: A): A {
    if (a.family === 6 && a.addr.slice(0, 5).every((x) => x === 0) && a.addr[5] === 0xffff) {
      return { family: 4, addr: [a.addr[6]! >> 8, a.addr[6]! & 255, a.addr[7]! >> 8, a.addr[7]! & 255] };
    }
    return a;
  }

  /** A CIDR inside ::ffff:0:0/96 means the IPv4 addresses it maps (the config unmaps it: config-hardening.test.ts). */
  function unmappedCidr(c: C): C {
    if (c.prefix < 96) return c;
    const a = unmapped(c);
    return a.family === 4 ? { family: 4, addr: a.addr, prefix: c.prefix - 96 } : c;
  }

  /** Independent of lib/ip.ts: compare the top `prefix` bits as big integers. */
  function contains(mapped: C, queried: A): boolean {
    const c = unmappedCidr(mapped);
    const a = unmapped(queried);
    if (c.family !== a.family) return false;
    const bits = c.family === 4 ? 32n : 128n;
    const shift = bits - BigInt(c.prefix);
    const big = c.family === 4 ? v4Big : v6Big;
    return big(c.addr) >> shift === big(a.addr) >> shift;
  }

  it('matchIp(a).rule equals the first rule with a CIDR containing a', () => {
    fc.assert(
      fc.property(fc.array(fc.array(cidr, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 6 }), fc.array(addr, { minLength: 1, maxLength: 10 }), (ruleCidrs, addrs) => {
        const p = policyOf(ruleCidrs.map((cs) => ({ cidrs: cs.map((c) => `${c.family === 4 ? v4Text(c.addr) : v6Text(c.addr)}/${c.prefix}`) })));
        for (const a of addrs) {
          const want = ruleCidrs.findIndex((cs) => cs.some((c) => contains(c, a)));
          const got = p.matchIp(a.family === 4 ? v4Text(a.addr) : v6Text(a.addr));
          if (got.rule !== (want < 0 ? null : want)) return false;
          if (want >= 0 && !got.entry?.keyPath?.startsWith(`rules[${want}].cidrs[`)) return false;
        }
        return true;
      }),
      { numRuns: 500 },
    );
  });
});
