// breakout.links (several WAN links) and unmanaged gateways (interface: /
// table:) in the config: what loads, and every mistake with its code,
// FILE:LINE:COL and key path. Files are written to disk, so positions are a
// real file's.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigCodes, ConfigError, formatIssue, type ConfigIssue } from '../../config/errors.js';
import { loadConfig, type LoadedConfig } from '../../config/load.js';

const key = (): string => randomBytes(32).toString('base64');
const wgQuick = (): string => ['[Interface]', `PrivateKey = ${key()}`, 'Address = 10.64.0.2/32', 'DNS = 10.64.0.1', '', '[Peer]', `PublicKey = ${key()}`, 'Endpoint = 192.0.2.10:51820', 'AllowedIPs = 0.0.0.0/0, ::/0', ''].join('\n');
const y = (...lines: string[]): string => lines.join('\n') + '\n';

let root: string;
let seq = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitwan-config-links-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function write(yaml: string): Promise<string> {
  const dir = join(root, `case-${++seq}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.yaml'), yaml);
  await writeFile(join(dir, 'wg1.conf'), wgQuick());
  await chmod(join(dir, 'wg1.conf'), 0o600);
  return join(dir, 'config.yaml');
}
async function loadOk(yaml: string): Promise<LoadedConfig> {
  return loadConfig(await write(yaml));
}
async function loadErr(yaml: string): Promise<{ file: string; errors: ConfigIssue[]; warnings: ConfigIssue[] }> {
  const file = await write(yaml);
  const e: unknown = await loadConfig(file).then(() => null, (x: unknown) => x);
  if (!(e instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${e === null ? 'a loaded config' : String(e)}`);
  return { file, errors: e.issues.filter((i) => i.severity === 'error'), warnings: e.issues.filter((i) => i.severity === 'warning') };
}
const at = (i: ConfigIssue) => ({ code: i.code, line: i.pos.line, col: i.pos.col, keyPath: i.keyPath });

const LINKS = [
  'mode: host',
  'breakout:',
  '  balance: true',
  '  links:',
  '    - name: fiber',
  '      interface: wan0',
  '      dns: [192.0.2.53]',
  '      priority: 1',
  '      weight: 2',
  '    - name: lte',
  '      interface: wwan0',
  '      gateway: 198.51.100.1',
  '      dns: auto',
  '      priority: 2',
  '      weight: 1',
  '      metered: true',
];
const GW = ['tunnel:', '  gateways:', '    - name: vps', '      config: wg1.conf'];

describe('breakout.links', () => {
  it('loads the contract example: links as paths, the single-WAN keys follow the preferred link', async () => {
    const l = await loadOk(y(...LINKS, ...GW, 'rules:', '  - cidrs: [203.0.113.0/24]', '    via: lte', '  - cidrs: [198.18.0.0/15]', '    via: [lte, fiber]'));
    const b = l.config.breakout;
    expect(b.balance).toBe(true);
    expect(b.links!.map((x) => [x.name, x.path, x.interface, x.gateway, x.dns === 'auto' ? 'auto' : x.dns.map((u) => u.text), x.priority, x.weight, x.metered])).toEqual([
      ['fiber', 'link:fiber', 'wan0', [], ['192.0.2.53'], 1, 2, false],
      ['lte', 'link:lte', 'wwan0', ['198.51.100.1'], 'auto', 2, 1, true],
    ]);
    expect(b.interface).toBe('wan0');
    expect(b.dns === 'auto' ? 'auto' : b.dns.map((u) => u.text)).toEqual(['192.0.2.53']);
    expect(l.config.rules.map((r) => r.via)).toEqual([['link:lte'], ['link:lte', 'link:fiber']]);
  });

  it('the single-WAN form has no links key at all (unchanged)', async () => {
    const l = await loadOk(y('mode: host', 'breakout:', '  interface: wan0', ...GW));
    expect(l.config.breakout).toEqual({ interface: 'wan0', dns: 'auto' });
  });

  it('interface or dns beside links: an error at the key', async () => {
    const { file, errors } = await loadErr(y('mode: host', 'breakout:', '  interface: wan0', '  links:', '    - name: a', '      interface: wan1', ...GW));
    expect(errors.map(at)).toEqual([{ code: ConfigCodes.VALUE, line: 3, col: 14, keyPath: 'breakout.interface' }]);
    expect(formatIssue(errors[0]!)).toContain(`${file}:3:14: breakout.interface: use either breakout.interface (one WAN) or breakout.links, not both`);
  });

  it('duplicate names and interfaces, reserved names, a name shared with a gateway', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'breakout:', '  links:', '    - name: a', '      interface: wan0', '    - name: A', '      interface: wan0', '    - name: tunnel', '      interface: wan2', '    - name: vps', '      interface: wan3', ...GW),
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.DUPLICATE, line: 6, col: 13, keyPath: 'breakout.links[1].name' },
      { code: ConfigCodes.DUPLICATE, line: 7, col: 18, keyPath: 'breakout.links[1].interface' },
      { code: ConfigCodes.VALUE, line: 8, col: 13, keyPath: 'breakout.links[2].name' },
      { code: ConfigCodes.DUPLICATE, line: 14, col: 13, keyPath: 'tunnel.gateways[0].name' },
    ]);
  });

  it('a bad next hop, two of one family, a LAN interface as a link', async () => {
    const { errors } = await loadErr(
      y('lan: [lan0]', 'breakout:', '  links:', '    - name: a', '      interface: lan0', '      gateway: [10.0.0.1, 10.0.0.2]', '    - name: b', '      interface: wan1', '      gateway: nope', ...GW),
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.VALUE, line: 5, col: 18, keyPath: 'breakout.links[0].interface' },
      { code: ConfigCodes.VALUE, line: 6, col: 27, keyPath: 'breakout.links[0].gateway[1]' },
      { code: ConfigCodes.ADDRESS, line: 9, col: 16, keyPath: 'breakout.links[1].gateway' },
    ]);
  });

  it('schema: an unknown key, a weight of 0, more than 8 links', async () => {
    const many = Array.from({ length: 9 }, (_, i) => [`    - name: l${i}`, `      interface: wan${i}`]).flat();
    const a = await loadErr(y('mode: host', 'breakout:', '  links:', '    - name: a', '      interface: wan0', '      weigth: 2', ...GW));
    expect(a.errors.map(at)).toEqual([{ code: ConfigCodes.UNKNOWN_KEY, line: 6, col: 7, keyPath: 'breakout.links[0].weigth' }]);
    const b = await loadErr(y('mode: host', 'breakout:', '  links:', '    - name: a', '      interface: wan0', '      weight: 0', ...GW));
    expect(b.errors.map((e) => e.keyPath)).toEqual(['breakout.links[0].weight']);
    const c = await loadErr(y('mode: host', 'breakout:', '  links:', ...many, ...GW));
    expect(c.errors.map((e) => e.keyPath)).toEqual(['breakout.links']);
  });

  it('a via naming no path suggests a link', async () => {
    const { errors } = await loadErr(y(...LINKS, ...GW, 'rules:', '  - cidrs: [203.0.113.0/24]', '    via: ltee'));
    expect(errors.map(at)).toEqual([{ code: ConfigCodes.REFERENCE, line: 23, col: 10, keyPath: 'rules[0].via' }]);
    expect(errors[0]!.message).toContain('(did you mean "lte"?)');
  });

  it('warns about balance without links and weight without balance', async () => {
    const a = await loadConfig(await write(y('mode: host', 'breakout:', '  balance: true', ...GW)));
    expect(a.warnings.map((w) => w.keyPath)).toEqual(['breakout.balance']);
    const b = await loadConfig(await write(y('mode: host', 'breakout:', '  links:', '    - name: a', '      interface: wan0', '      weight: 3', ...GW)));
    expect(b.warnings.map((w) => w.keyPath)).toEqual(['breakout.links[0].weight']);
  });
});

describe('unmanaged gateways', () => {
  it('loads interface and table gateways beside a managed one, as paths', async () => {
    const l = await loadOk(
      y('mode: host', 'tunnel:', '  gateways:', '    - { name: vps, config: wg1.conf }', '    - { name: awg, interface: awg0, dns: [10.8.0.1], priority: 5 }', '    - { name: tsexit, table: 52, dns: [100.100.100.100] }', 'rules:', '  - cidrs: [203.0.113.0/24]', '    via: [awg, tsexit]'),
    );
    expect(l.config.tunnel.gateways.map((g) => g.name)).toEqual(['vps']);
    expect(l.config.tunnel.unmanaged!.map((g) => [g.name, g.path, g.kind, g.ifname, g.table, g.priority, g.dns.map((u) => u.text), g.index])).toEqual([
      ['awg', 'gw:awg', 'interface', 'awg0', null, 5, ['10.8.0.1'], 1],
      ['tsexit', 'gw:tsexit', 'table', '', 52, 100, ['100.100.100.100'], 2],
    ]);
    expect(l.config.rules[0]!.via).toEqual(['gw:awg', 'gw:tsexit']);
  });

  it('refuses WireGuard keys on an unmanaged gateway, both kinds at once, our tables and names, no resolver', async () => {
    const { errors } = await loadErr(
      y(
        'mode: host',
        'tunnel:',
        '  gateways:',
        '    - name: a',
        '      interface: awg0',
        '      config: wg1.conf',
        '      dns: [10.8.0.1]',
        '    - { name: b, interface: tun0, table: 52, dns: [10.8.0.1] }',
        '    - { name: c, table: 1101, dns: [10.8.0.1] }',
        '    - { name: d, interface: swg-x, dns: [10.8.0.1] }',
        '    - { name: e, table: 254, dns: [10.8.0.1] }',
        '    - { name: f, interface: tun1 }',
      ),
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.VALUE, line: 6, col: 15, keyPath: 'tunnel.gateways[0].config' },
      { code: ConfigCodes.VALUE, line: 8, col: 42, keyPath: 'tunnel.gateways[1].table' },
      { code: ConfigCodes.VALUE, line: 9, col: 25, keyPath: 'tunnel.gateways[2].table' },
      { code: ConfigCodes.VALUE, line: 10, col: 29, keyPath: 'tunnel.gateways[3].interface' },
      { code: ConfigCodes.VALUE, line: 11, col: 25, keyPath: 'tunnel.gateways[4].table' },
      { code: ConfigCodes.MISSING_KEY, line: 12, col: 7, keyPath: 'tunnel.gateways[5]' },
    ]);
  });

  it('tunnel.dns serves an unmanaged gateway without dns', async () => {
    const l = await loadOk(y('mode: host', 'tunnel:', '  dns: [10.9.0.1]', '  gateways:', '    - { name: awg, interface: awg0 }'));
    expect(l.config.tunnel.unmanaged![0]!.dns.map((u) => u.text)).toEqual(['10.9.0.1']);
    expect(l.config.tunnel.gateways).toEqual([]);
  });
});
