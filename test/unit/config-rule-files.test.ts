// Rule files as `lists:` entries (geosite.dat, geoip.dat, .srs/.json, .mrs,
// .mmdb), rules' geoip:/asn: through `geodata`, and the new rule matchers:
// loaded from real files on disk with real published fixtures
// (test/fixtures/lists/rule-files/README.md), errors at FILE:LINE:COL.

import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigCodes, ConfigError, type ConfigIssue } from '../../config/errors.js';
import { ListFetcher } from '../../config/lists/fetch.js';
import { loadConfig, nodeLoadDeps, recompile, type LoadedConfig } from '../../config/load.js';

const FIX = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'lists', 'rule-files');
const KEY = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
const WG = ['[Interface]', `PrivateKey = ${KEY}`, 'Address = 10.64.0.2/32', 'DNS = 10.64.0.1', '', '[Peer]', `PublicKey = ${KEY}`, 'Endpoint = 192.0.2.10:51820', ''].join('\n');
const HEAD = ['mode: router', 'lan: [eth1]', 'tunnel:', '  gateways:', '    - name: gw1', '      config: wg1.conf'];
const y = (...lines: string[]): string => [...HEAD, ...lines].join('\n') + '\n';

let root: string;
let seq = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitwan-rule-files-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function dirWith(yaml: string, fixtures: string[] = [], extra: Record<string, string | Buffer> = {}): Promise<string> {
  const dir = join(root, `c${++seq}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'wg1.conf'), WG, { mode: 0o600 });
  await writeFile(join(dir, 'config.yaml'), yaml);
  for (const f of fixtures) await copyFile(join(FIX, f), join(dir, f));
  for (const [n, b] of Object.entries(extra)) await writeFile(join(dir, n), b);
  return dir;
}

async function load(yaml: string, fixtures: string[] = [], extra: Record<string, string | Buffer> = {}): Promise<LoadedConfig> {
  return loadConfig(join(await dirWith(yaml, fixtures, extra), 'config.yaml'));
}

async function errorsOf(yaml: string, fixtures: string[] = [], extra: Record<string, string | Buffer> = {}): Promise<ConfigIssue[]> {
  const e = await load(yaml, fixtures, extra).then(
    () => null,
    (x: unknown) => x,
  );
  if (!(e instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(e)}`);
  return e.issues.filter((i) => i.severity === 'error');
}
const where = (i: ConfigIssue): string => `${i.pos.line}:${i.pos.col} ${i.keyPath}`;

describe('lists: rule files', () => {
  it('takes a geosite.dat category, with attribute filters, detected from the content', async () => {
    const l = await load(
      y('lists:', '  nf: { file: dlc-cut.dat, category: netflix }', '  gcn: { file: dlc-cut.dat, category: "google@cn" }', '  gnocn: { file: dlc-cut.dat, category: "google@!cn", format: geosite }', 'rules:', '  - list: nf', '    via: breakout', '  - list: [gcn]', '    via: gw1'),
      ['dlc-cut.dat'],
    );
    expect(l.lists.get('nf')!.domains.length).toBeGreaterThan(10);
    expect(l.policy.matchName('www.netflix.com').rule).toBe(0);
    const m = l.policy.matchName('nflxvideo.net');
    expect(m.entry).toMatchObject({ list: 'nf', kind: 'domain', value: 'nflxvideo.net', section: 'category netflix' });
    // @cn and @!cn partition google.
    const g = l.lists.get('gcn')!.domains.length + l.lists.get('gnocn')!.domains.length;
    expect(l.lists.get('gcn')!.domains.length).toBeGreaterThan(0);
    expect(g).toBeGreaterThan(l.lists.get('gcn')!.domains.length);
  });

  it('reads geoip.dat, .srs (binary and JSON), .mrs and .mmdb lists', async () => {
    const l = await load(
      y(
        'lists:',
        '  jp: { file: geoip-lite.dat, country: jp }',
        '  nf: { file: sing-geosite-netflix.srs }',
        '  nfj: { file: sing-geosite-netflix.json, format: srs }',
        '  tg: { file: meta-geoip-telegram.mrs, format: mrs }',
        '  gb: { file: GeoIP2-Country-Test.mmdb, country: GB }',
        '  telstra: { file: GeoLite2-ASN-Test.mmdb, asn: AS1221 }',
        'rules:',
        '  - list: [jp, nf, nfj, tg, gb, telstra]',
        '    via: breakout',
      ),
      ['geoip-lite.dat', 'sing-geosite-netflix.srs', 'sing-geosite-netflix.json', 'meta-geoip-telegram.mrs', 'GeoIP2-Country-Test.mmdb', 'GeoLite2-ASN-Test.mmdb'],
    );
    expect(l.policy.matchName('netflix.com').entry?.list).toBe('nf');
    expect(l.lists.get('nfj')!.domains.length).toBeGreaterThan(0);
    expect(l.policy.matchIp('81.2.69.161').entry).toMatchObject({ list: 'gb', value: '81.2.69.160/27' });
    expect(l.policy.matchIp('1.128.0.1').entry).toMatchObject({ list: 'telstra', value: '1.128.0.0/11' });
    expect(l.lists.get('tg')!.cidrs.length).toBeGreaterThan(0);
    expect(l.lists.get('jp')!.cidrs.length).toBeGreaterThan(100);
  });

  it('refuses an unknown category with FILE:LINE:COL and a suggestion', async () => {
    const errs = await errorsOf(y('lists:', '  nf:', '    file: dlc-cut.dat', '    category: netflx'), ['dlc-cut.dat']);
    expect(errs.map(where)).toEqual(['10:15 lists.nf.category']);
    expect(errs[0]!.message).toMatch(/^nf: unknown category 'netflx' \(did you mean 'netflix'\?\)/);
    expect(errs[0]!.code).toBe(ConfigCodes.LIST);
  });

  it('refuses a file whose format is not what the list says, and an unknown country', async () => {
    const errs = await errorsOf(
      y('lists:', '  a:', '    file: sing-geosite-netflix.srs', '    format: geosite', '  b:', '    file: geoip-lite.dat', '    country: xx'),
      ['sing-geosite-netflix.srs', 'geoip-lite.dat'],
    );
    expect(errs.map(where)).toEqual(['9:11 lists.a.file', '13:14 lists.b.country']);
    expect(errs[0]!.message).toMatch(/^a: not a geosite\.dat: it looks like a sing-box binary rule-set/);
    expect(errs[1]!.message).toMatch(/^b: unknown country code 'xx'/);
  });

  it('never reads a binary file as text: no entries, or binary content, is an error', async () => {
    const errs = await errorsOf(
      y('lists:', '  bin:', '    file: junk.bin', '  empty:', '    file: empty.txt', '  srs-as-hosts:', '    file: sing-geosite-netflix.srs', '    format: hosts'),
      ['sing-geosite-netflix.srs'],
      { 'junk.bin': Buffer.from([0x00, 0xff, 0x13, 0x37, 0x00, 0x80, 0x81]), 'empty.txt': '# nothing here\n' },
    );
    expect(errs.map((e) => where(e))).toEqual(['9:11 lists.bin.file', '11:11 lists.empty.file', '13:11 lists.srs-as-hosts.file']);
    expect(errs[0]!.message).toMatch(/^bin: not a list: binary data/);
    expect(errs[1]!.message).toMatch(/^empty: no entries found/);
    expect(errs[2]!.message).toMatch(/^srs-as-hosts: format: hosts was given, but the file is a srs rule file/);
  });

  it('caches a downloaded rule file as bytes: the daemon starts from it offline', async () => {
    const dir = await dirWith('', ['sing-geosite-netflix.srs']);
    const state = join(dir, 'state');
    const bytes = await readFile(join(dir, 'sing-geosite-netflix.srs'));
    // What a download leaves: body and meta, through the fetcher's own writer (a refresh without a server is not needed to read it back).
    await mkdir(join(state, 'lists'), { recursive: true });
    const { createHash } = await import('node:crypto');
    await writeFile(join(state, 'lists', 'nf.txt'), bytes);
    await writeFile(join(state, 'lists', 'nf.meta.json'), JSON.stringify({ url: 'https://example.org/netflix.srs', fetchedAt: 1, sha256: createHash('sha256').update(bytes).digest('hex') }));
    const cached = await new ListFetcher({ cacheDir: state }).readCache('nf');
    expect(Buffer.compare(cached!.bytes, bytes)).toBe(0);
    await writeFile(join(dir, 'config.yaml'), y('stateDir: state', 'lists:', '  nf: { url: "https://example.org/netflix.srs" }', 'rules:', '  - list: nf', '    via: breakout'));
    const l = await loadConfig(join(dir, 'config.yaml'), nodeLoadDeps);
    expect(l.lists.get('nf')!.origin).toBe('cache');
    expect(l.policy.matchName('netflix.com').rule).toBe(0);
  });
});

describe('rules: geoip and asn through geodata', () => {
  const files = ['GeoIP2-Country-Test.mmdb', 'GeoLite2-ASN-Test.mmdb', 'geoip-lite.dat'];

  it('selects a country and an AS from the databases; explain names them', async () => {
    const l = await load(y('lists:', '  country: { file: GeoIP2-Country-Test.mmdb }', '  asndb: { file: GeoLite2-ASN-Test.mmdb }', 'geodata: { country: country, asn: asndb }', 'rules:', '  - geoip: GB', '    via: breakout', '  - asn: [1221]', '    via: gw1'), files);
    expect(l.policy.matchIp('81.2.69.161').entry).toMatchObject({ list: 'geoip:GB', value: '81.2.69.160/27' });
    expect(l.policy.matchIp('1.128.0.1')).toMatchObject({ rule: 1, entry: { list: 'asn:1221' } });
    expect(l.policy.matchIp('192.0.2.1').rule).toBeNull();
    // A refresh of another list recompiles; the selections are made again from the database in use.
    const again = recompile(l, l.lists);
    expect(again.policy.matchIp('1.128.0.1').rule).toBe(1);
  });

  it('reports an unknown country, a missing database and a database of the wrong kind at the rule', async () => {
    const errs = await errorsOf(
      y('lists:', '  country: { file: geoip-lite.dat }', '  asndb: { file: GeoIP2-Country-Test.mmdb }', 'geodata: { country: country, asn: asndb }', 'rules:', '  - geoip: [JP, XX]', '    via: breakout', '  - asn: 13335', '    via: gw1'),
      files,
    );
    expect(errs.map(where)).toEqual(['12:17 rules[0].geoip[1]', '14:10 rules[1].asn']);
    expect(errs[0]!.message).toMatch(/^country: unknown country code 'xx'/);
    expect(errs[1]!.message).toMatch(/^asndb: .*has no ASN data/);
    const none = await errorsOf(y('rules:', '  - geoip: JP', '    via: breakout'));
    expect(none.map(where)).toEqual(['8:12 rules[0].geoip']);
    expect(none[0]!.message).toMatch(/needs a country database/);
  });
});

describe('rules: ports, protocol, devices, when', () => {
  it('parses them, and reports bad values where they are', async () => {
    const l = await load(
      y('rules:', '  - ports: [443, "27000-27050"]', '    protocol: udp', '    devices: [AA-BB-CC-DD-EE-01, kids-tablet]', '    when: { days: mon-fri, time: "22:00-06:00", timezone: Europe/Berlin }', '    reroute: true', '    via: breakout'),
    );
    const r = l.config.rules[0]!;
    expect(r.ports!.map((p) => [p.from, p.to])).toEqual([[443, 443], [27000, 27050]]);
    expect(r.protocol).toBe('udp');
    expect(r.devices!.map((d) => [d.device, d.mac])).toEqual([['aa:bb:cc:dd:ee:01', 'aa:bb:cc:dd:ee:01'], ['kids-tablet', null]]);
    expect(r.when).toMatchObject({ days: [1, 2, 3, 4, 5], ranges: [{ from: 1320, to: 360 }], timeZone: 'Europe/Berlin' });
    expect(r.reroute).toBe(true);
    const errs = await errorsOf(y('rules:', '  - ports: [0, "9-3"]', '    protocol: icmp', '    devices: ["not a mac!"]', '    when: { days: funday, time: "8-17", timezone: Mars/Olympus }', '    via: breakout'));
    expect(errs.map(where).sort()).toEqual(['10:15 rules[0].devices[0]', '11:19 rules[0].when.days', '8:13 rules[0].ports[0]', '8:16 rules[0].ports[1]', '9:15 rules[0].protocol']);
  });
});

describe('explain and check name what matched', () => {
  const capture = (): { io: { out(t: string): void; err(t: string): void }; text: () => string } => {
    let out = '';
    return { io: { out: (t) => void (out += t), err: (t) => void (out += t) }, text: () => out };
  };

  it('explain names the geosite category and entry, the country, the AS, the ports, the device and the schedule', async () => {
    const { explain, formatExplain } = await import('../../daemon/explain.js');
    const l = await load(
      y(
        'lists:',
        '  nf: { file: dlc-cut.dat, category: ["google@cn", netflix] }',
        '  country: { file: GeoIP2-Country-Test.mmdb }',
        '  asndb: { file: GeoLite2-ASN-Test.mmdb }',
        'geodata: { country: country, asn: asndb }',
        'rules:',
        '  - list: nf',
        '    ports: [443, "8000-8100"]',
        '    protocol: tcp',
        '    devices: [kids-tablet]',
        '    when: { days: mon-fri, time: "08:00-17:00", timezone: UTC }',
        '    via: breakout',
        '  - geoip: GB',
        '    via: breakout',
        '  - asn: AS1221',
        '    via: gw1',
      ),
      ['dlc-cut.dat', 'GeoIP2-Country-Test.mmdb', 'GeoLite2-ASN-Test.mmdb'],
    );
    const monday10 = Date.parse('2026-12-07T10:00:00Z');
    const nf = formatExplain(explain(l.policy, 'www.netflix.com', undefined, monday10));
    expect(nf).toMatch(/matched by list "nf", category netflix, entry \d+ of \S+dlc-cut\.dat: "netflix\.com" matches the name and its subdomains/);
    expect(nf).toContain('only for tcp ports 443,8000-8100');
    expect(nf).toContain('only from device kids-tablet (by MAC address, in the kernel)');
    expect(nf).toContain('only when mon,tue,wed,thu,fri 08:00-17:00 (UTC): on now');
    expect(formatExplain(explain(l.policy, 'www.netflix.com', undefined, Date.parse('2026-12-06T10:00:00Z')))).toContain(': off now');
    expect(formatExplain(explain(l.policy, '81.2.69.161'))).toMatch(/matched by country GB in the database \S+GeoIP2-Country-Test\.mmdb: 81\.2\.69\.160\/27 contains the address/);
    expect(formatExplain(explain(l.policy, '1.128.0.1'))).toMatch(/rule #2 \(asn 1221\)[\s\S]*matched by AS1221 in the database \S+GeoLite2-ASN-Test\.mmdb: 1\.128\.0\.0\/11/);
  });

  it('check says each rule file\'s format and selection, and the rules\' conditions', async () => {
    const { checkCommand } = await import('../../daemon/commands/check.js');
    const dir = await dirWith(
      y('lists:', '  nf: { file: dlc-cut.dat, category: netflix }', '  tg: { file: sing-geoip-telegram.srs }', '  country: { file: GeoIP2-Country-Test.mmdb }', 'geodata: { country: country }', 'rules:', '  - list: [nf, tg]', '    ports: 443', '    via: breakout', '  - geoip: [GB]', '    via: gw1'),
      ['dlc-cut.dat', 'sing-geoip-telegram.srs', 'GeoIP2-Country-Test.mmdb'],
    );
    const c = capture();
    expect(await checkCommand({ config: join(dir, 'config.yaml') }, c.io)).toBe(0);
    expect(c.text()).toMatch(/list nf: \d+ entries \(geosite: category netflix\) from /);
    expect(c.text()).toMatch(/list tg: \d+ entries \(srs\) from /);
    expect(c.text()).toMatch(/list country: 0 entries \(a geodata database\)/);
    expect(c.text()).toMatch(/geoip:GB: \d+ cidrs from \S+GeoIP2-Country-Test\.mmdb/);
    expect(c.text()).toMatch(/rule #0 \(list nf,tg tcp\/udp 443\): only for tcp and udp port 443/);
  });

  it('check refuses an unknown category, country or missing ASN database at FILE:LINE:COL', async () => {
    const { checkCommand } = await import('../../daemon/commands/check.js');
    const dir = await dirWith(y('lists:', '  nf: { file: dlc-cut.dat, category: netflx }', 'rules:', '  - list: nf', '    via: breakout', '  - asn: 13335', '    via: gw1'), ['dlc-cut.dat']);
    const c = capture();
    expect(await checkCommand({ config: join(dir, 'config.yaml') }, c.io)).not.toBe(0);
    expect(c.text()).toMatch(/config\.yaml:8:38: lists\.nf\.category: nf: unknown category 'netflx' \(did you mean 'netflix'\?\)/);
    expect(c.text()).toMatch(/config\.yaml:12:10: rules\[1\]\.asn: asn: needs an ASN database/);
  });
});
