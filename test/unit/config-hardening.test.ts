// Hostile and careless inputs: each case here was a real defect once.
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, formatIssue, type ConfigIssue } from '../../config/errors.js';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import { parseList } from '../../config/lists/formats.js';
import { main } from '../../daemon/cli.js';

const key = (): string => randomBytes(32).toString('base64');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'splitwan-hard-'));
  writeFileSync(join(dir, 'gw1.conf'), `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEAD = ['mode: host', 'tunnel:', '  gateways:', '    - { name: gw1, config: gw1.conf }'];

async function load(lines: string[]): Promise<LoadedConfig> {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, lines.join('\n'), { mode: 0o600 });
  return loadConfig(f);
}
async function issues(lines: string[]): Promise<ConfigIssue[]> {
  try {
    const l = await load(lines);
    return [...l.warnings];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.issues];
    throw e;
  }
}

describe('regexps run in linear time', () => {
  it('a catastrophic pattern from a rule answers at once', async () => {
    const l = await load([...HEAD, 'rules:', '  - domains: ["regexp:^(a+)+$"]', '    via: breakout']);
    const t0 = performance.now();
    expect(l.policy.matchName(`${'a'.repeat(40)}.b`).rule).toBeNull();
    expect(l.policy.matchName('aaaa').rule).toBe(0);
    expect(performance.now() - t0).toBeLessThan(1000); // backtracking takes minutes here
  });

  it('a catastrophic pattern from a list answers at once', async () => {
    writeFileSync(join(dir, 'evil.txt'), 'regexp:^(a|aa)+$\nkeyword:zzz\n');
    const l = await load([...HEAD, 'lists:', '  evil: { file: evil.txt, format: v2fly }', 'rules:', '  - list: evil', '    via: block']);
    const t0 = performance.now();
    expect(l.policy.matchName(`${'a'.repeat(60)}.b`).rule).toBeNull();
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('backreferences are refused with a reason', async () => {
    const i = await issues([...HEAD, 'rules:', '  - domains: ["regexp:(a)\\\\1"]', '    via: breakout']);
    expect(i.find((x) => x.severity === 'error')).toMatchObject({ code: 'SPLITWAN_CONFIG_DOMAIN', keyPath: 'rules[0].domains[0]' });
    expect(i[0]!.message).toContain('linear time');
  });

  it('lookbehind is refused with a reason, whatever the Node.js (Node 22 and later could run it)', async () => {
    const i = await issues([...HEAD, 'rules:', '  - domains: ["regexp:(?<=^ads)\\\\.example$"]', '    via: breakout']);
    expect(i.filter((x) => x.severity === 'error')).toEqual([
      expect.objectContaining({ code: 'SPLITWAN_CONFIG_DOMAIN', keyPath: 'rules[0].domains[0]', message: expect.stringContaining('uses lookaround, which splitwan refuses') }),
    ]);
  });

  it('warns when upper-case letters in a regexp can never match', async () => {
    const i = await issues([...HEAD, 'rules:', '  - domains: ["regexp:^IMG[0-9]+"]', '    via: breakout']);
    expect(i).toEqual([expect.objectContaining({ severity: 'warning', code: 'SPLITWAN_CONFIG_REGEXP', keyPath: 'rules[0].domains[0]' })]);
  });
});

describe('secrets never echoed', () => {
  it('a key pasted into any inline field is hidden in every message', async () => {
    const secret = key();
    const gw = (over: Record<string, string>): string[] => {
      const f = { privateKey: key(), address: '10.64.0.2/32', dns: '10.64.0.1', publicKey: key(), endpoint: '192.0.2.1:51820', allowedIPs: '0.0.0.0/0', ...over };
      const keyLine = 'privateKeyFile' in over ? `      privateKeyFile: "${over.privateKeyFile}"` : `      privateKey: "${f.privateKey}"`;
      return ['mode: host', 'tunnel:', ...('tunnelDns' in over ? [`  dns: ["${over.tunnelDns}"]`] : []), '  gateways:', '    - name: gw1', keyLine, `      address: "${f.address}"`, `      dns: "${f.dns}"`, '      peer:', `        publicKey: "${f.publicKey}"`, `        endpoint: "${f.endpoint}"`, `        allowedIPs: ["${f.allowedIPs}"]`];
    };
    const cases: Record<string, string>[] = [
      { privateKeyFile: secret },
      { address: secret },
      { dns: secret },
      { publicKey: `${secret}x` },
      { endpoint: secret },
      { allowedIPs: secret },
      { tunnelDns: secret },
    ];
    for (const c of cases) {
      const found = (await issues(gw(c))).filter((i) => i.severity === 'error');
      expect(found.length, JSON.stringify(Object.keys(c))).toBeGreaterThan(0);
      const text = found.map(formatIssue).join('\n');
      expect(text, JSON.stringify(Object.keys(c))).not.toContain(secret.slice(0, 16));
    }
  });

  it('check does not print a list URL password', async () => {
    const f = join(dir, 'cred.yaml');
    writeFileSync(f, [...HEAD, `stateDir: ${join(dir, 'state')}`, 'lists:', '  priv: { url: "https://user:s3cretPass@example.org/l.txt" }', 'rules:', '  - list: priv', '    via: breakout'].join('\n'), { mode: 0o600 });
    let out = '';
    const code = await main(['check', '--config', f], { out: (t) => void (out += t), err: (t) => void (out += t) });
    expect(code).toBe(0);
    expect(out).toContain('example.org');
    expect(out).not.toContain('s3cretPass');
  });
});

describe('IPv4-mapped addresses', () => {
  it('a mapped CIDR in cidrs and sources matches the IPv4 clients it means (router mode: sources are LAN clients)', async () => {
    const l = await load(['mode: router', 'lan: [lan0]', ...HEAD.slice(1), 'rules:', '  - cidrs: ["::ffff:10.0.0.0/104"]', '    via: breakout', '  - sources: ["::ffff:192.168.2.0/120"]', '    via: block']);
    expect(l.policy.matchIp('10.1.2.3').rule).toBe(0);
    expect(l.policy.matchIp('::ffff:10.1.2.3').rule).toBe(0);
    expect(l.policy.matchName('x.test', '192.168.2.5').rule).toBe(1);
    expect(l.config.rules[0]!.cidrs[0]!.cidr).toBe('10.0.0.0/8');
  });
});

describe('values that could never work', () => {
  it('durations out of range are errors', async () => {
    const i = await issues([...HEAD, 'health: { interval: 0s, failbackHold: 99999999999999999999d }']);
    expect(i.filter((x) => x.severity === 'error').map((x) => [x.code, x.keyPath])).toEqual([
      ['SPLITWAN_CONFIG_DURATION', 'health.interval'],
      ['SPLITWAN_CONFIG_DURATION', 'health.failbackHold'],
    ]);
  });

  it('a via target after block is never used: a warning says so', async () => {
    const i = await issues([...HEAD, 'rules:', '  - domains: [a.test]', '    via: [block, gw1]']);
    expect(i).toEqual([expect.objectContaining({ severity: 'warning', keyPath: 'rules[0].via[1]' })]);
  });

  it('a keyword that cannot match a name is refused', async () => {
    const i = await issues([...HEAD, 'rules:', '  - domains: ["keyword:bücher", "keyword:A B"]', '    via: breakout']);
    expect(i.filter((x) => x.severity === 'error').map((x) => x.keyPath)).toEqual(['rules[0].domains[0]', 'rules[0].domains[1]']);
  });

  it('an empty via list is one error, not two', async () => {
    const i = await issues([...HEAD, 'rules:', '  - domains: [a.test]', '    via: []']);
    expect(i.map((x) => [x.keyPath, x.message])).toEqual([['rules[0].via', 'needs at least 1 item']]);
  });
});

describe('YAML', () => {
  it('merge keys work', async () => {
    const l = await load([...HEAD, 'x-base: &base { via: breakout }', 'rules:', '  - <<: *base', '    domains: [a.test]'].filter((x) => !x.startsWith('x-')).map((x) => x.replace('<<: *base', 'via: breakout')));
    expect(l.policy.matchName('a.test').rule).toBe(0);
    const f = join(dir, 'merge.yaml');
    writeFileSync(f, ['mode: host', 'tunnel: &t', '  gateways: [{ name: gw1, config: gw1.conf }]', 'rules:', '  - &r { domains: [a.test], via: breakout }', '  - <<: *r', '    domains: [b.test]'].join('\n'), { mode: 0o600 });
    const m = await loadConfig(f);
    expect(m.policy.matchName('b.test').rule).toBe(1);
  });

  it('several documents: a clear error', async () => {
    const i = await issues([...HEAD, '---', 'mode: router']);
    expect(i[0]).toMatchObject({ code: 'SPLITWAN_CONFIG_YAML' });
    expect(i[0]!.message).toContain('several YAML documents');
  });
});

describe('lists', () => {
  it('a list of addresses with a few names (DoH endpoints) keeps the names', () => {
    const p = parseList('dns.google\ncloudflare-dns.com\n8.8.8.8\n1.1.1.1\n2606:4700:4700::1111\n', 'auto');
    expect(p.format).toBe('plain');
    expect(p.domains.map((d) => d.pattern.value)).toEqual(['dns.google', 'cloudflare-dns.com']);
    expect(p.cidrs.map((c) => c.cidr)).toEqual(['8.8.8.8/32', '1.1.1.1/32', '2606:4700:4700::1111/128']);
  });
});

describe('the shipped example', () => {
  it('docs/examples/config.yaml passes check once its wg-quick files and list exist', async () => {
    const d = join(dir, 'example');
    mkdirSync(join(d, 'lists'), { recursive: true, mode: 0o755 });
    // Modes set, not left to the umask and the checkout's modes (check refuses a group-writable config:
    // an emulated worker under test:arch wrote 0664 here).
    cpSync(join(import.meta.dirname, '..', '..', 'docs', 'examples', 'config.yaml'), join(d, 'config.yaml'));
    chmodSync(join(d, 'config.yaml'), 0o644);
    for (const g of ['gw1', 'gw2']) {
      writeFileSync(join(d, `${g}.conf`), `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n`, { mode: 0o600 });
    }
    writeFileSync(join(d, 'lists', 'mine.txt'), 'netflix.test\n', { mode: 0o644 });
    let out = '';
    const code = await main(['check', '--config', join(d, 'config.yaml')], { out: (t) => void (out += t), err: (t) => void (out += t) });
    expect(out).toContain(': OK');
    expect(code).toBe(0);
  });
});

describe('regexp engines', () => {
  it('simple patterns use the fast engine, risky ones the linear engine', async () => {
    const { compileNameRegexp } = await import('../../config/safe-regexp.js');
    const engine = (s: string): string => {
      const c = compileNameRegexp(s);
      return 'error' in c ? 'error' : c.linear ? 'linear' : 'fast';
    };
    expect(engine('^img[0-9]+\\.')).toBe('fast');
    expect(engine('(^|\\.)ads?\\.example\\.com$')).toBe('fast');
    expect(engine('^(a+)+$')).toBe('linear');
    expect(engine('^(a|aa)+$')).toBe('linear');
    expect(engine('a*b*c')).toBe('linear');
    expect(engine('(a)\\1')).toBe('error');
    expect(engine('(?<n>a)\\k<n>')).toBe('error');
  });

  // The same patterns are valid on every Node.js splitwan runs on: Node 22's
  // linear engine runs lookbehind and Node 24 parses (?i:...) and duplicate
  // group names, Node 20 does neither. CI runs this file under both.
  it('refuses lookaround, modifier groups and duplicate group names on every Node.js, saying why', async () => {
    const { compileNameRegexp } = await import('../../config/safe-regexp.js');
    const error = (s: string): string | undefined => {
      const c = compileNameRegexp(s);
      return 'error' in c ? c.error : undefined;
    };
    for (const p of ['(?<=x)y', '(?<!x)y', 'x(?=y)', 'x(?!y)', '^(?<=a+)b$']) {
      expect(error(p)).toBe(`regular expression "${p}" uses lookaround, which splitwan refuses (Node.js 20 cannot run it in linear time)`);
    }
    // Only where the engine would see a group: escaped or in a class, it is text.
    for (const p of ['\\(?=', '[(?<=]x', '\\\\(?:a)', 'a(?:b|c)', '(?<name>a)b']) expect(error(p), p).toBeUndefined();
    expect(error('\\\\(?=a)')).toMatch(/lookaround/);
    const modifier = error('(?-i:a)b');
    // Node 20 and 22 fail it as syntax; Node 24 parses it, and splitwan refuses it.
    expect(modifier).toMatch(/^bad regular expression: |modifier group/);
    if (Number(process.versions.node.split('.')[0]) >= 24) {
      expect(modifier).toBe('regular expression "(?-i:a)b" uses a modifier group such as (?i:...), which Node.js before 24 does not know (names are matched in lower case anyway)');
      expect(error('(?<x>a)|(?<x>b)')).toBe('regular expression "(?<x>a)|(?<x>b)" names two groups alike, which Node.js before 24 does not allow');
    } else {
      expect(error('(?<x>a)|(?<x>b)')).toMatch(/^bad regular expression: /);
    }
  });
});

describe('limits', () => {
  it('more gateways than marks and tables is a config error, not a crash at run time', async () => {
    const gws = Array.from({ length: 14 }, (_, i) => `    - { name: g${i}, config: gw1.conf }`);
    const i = await issues(['mode: host', 'tunnel:', '  gateways:', ...gws]);
    expect(i.filter((x) => x.severity === 'error').map((x) => [x.code, x.keyPath])).toEqual([['SPLITWAN_CONFIG_VALUE', 'tunnel.gateways']]);
  });
});
