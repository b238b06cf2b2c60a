// loadConfig(): every error path with its code, position, key path and
// message; warnings; defaults; path resolution; freezing; digest; files.
//
// Each case writes a config (and the files it includes) into its own directory
// under one temp root, so positions are those of a real file on disk.

import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigCodes, ConfigError, formatIssue, type ConfigIssue } from '../../config/errors.js';
import { loadConfig, nodeLoadDeps, type LoadedConfig } from '../../config/load.js';
import type { RuleConfig } from '../../config/types.js';

const key = (): string => randomBytes(32).toString('base64');

interface WgOpts {
  priv?: string;
  pub?: string;
  address?: string;
  /** null: no DNS= line. */
  dns?: string | null;
  endpoint?: string;
}

function wgQuick(o: WgOpts = {}): string {
  const lines = ['[Interface]', `PrivateKey = ${o.priv ?? key()}`, `Address = ${o.address ?? '10.64.0.2/32'}`];
  if (o.dns !== null) lines.push(`DNS = ${o.dns ?? '10.64.0.1'}`);
  lines.push('', '[Peer]', `PublicKey = ${o.pub ?? key()}`, `Endpoint = ${o.endpoint ?? '192.0.2.10:51820'}`, 'AllowedIPs = 0.0.0.0/0, ::/0', '');
  return lines.join('\n');
}

/** YAML from lines, so tests can count them. */
const y = (...lines: string[]): string => lines.join('\n') + '\n';

/** A host-mode gateway block, lines 2-5 when it follows `mode: host`. */
const GW = ['tunnel:', '  gateways:', '    - name: gw1', '      config: wg1.conf'];

type FileSpec = string | { text: string; mode: number };

let root: string;
let seq = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitwan-config-load-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes files into a fresh directory; wg-quick files (*.conf) get mode 0600 unless told. */
async function setup(files: Record<string, FileSpec>): Promise<string> {
  const dir = join(root, `case-${++seq}`);
  await mkdir(dir, { recursive: true });
  for (const [name, spec] of Object.entries(files)) {
    const p = join(dir, name);
    await mkdir(dirname(p), { recursive: true });
    const text = typeof spec === 'string' ? spec : spec.text;
    const mode = typeof spec === 'string' ? (name.endsWith('.conf') ? 0o600 : 0o644) : spec.mode;
    await writeFile(p, text);
    await chmod(p, mode);
  }
  return dir;
}

const WG_DEFAULT = (): Record<string, FileSpec> => ({ 'wg1.conf': wgQuick() });

async function loadOk(
  yaml: string,
  files: Record<string, FileSpec> = WG_DEFAULT(),
): Promise<{ dir: string; file: string; loaded: LoadedConfig }> {
  const dir = await setup({ 'config.yaml': yaml, ...files });
  const file = join(dir, 'config.yaml');
  const loaded = await loadConfig(file);
  return { dir, file, loaded };
}

async function loadErr(
  yaml: string,
  files: Record<string, FileSpec> = WG_DEFAULT(),
): Promise<{ dir: string; file: string; error: ConfigError; errors: ConfigIssue[]; warnings: ConfigIssue[] }> {
  const dir = await setup({ 'config.yaml': yaml, ...files });
  const file = join(dir, 'config.yaml');
  const caught: unknown = await loadConfig(file).then(
    () => null,
    (e: unknown) => e,
  );
  if (!(caught instanceof ConfigError)) {
    throw new Error(`expected a ConfigError, got ${caught === null ? 'a loaded config' : String(caught)}`);
  }
  return {
    dir,
    file,
    error: caught,
    errors: caught.issues.filter((i) => i.severity === 'error'),
    warnings: caught.issues.filter((i) => i.severity === 'warning'),
  };
}

/** An issue without its message and file. */
function at(i: ConfigIssue): { code: string; line: number; col: number; keyPath: string } {
  return { code: i.code, line: i.pos.line, col: i.pos.col, keyPath: i.keyPath };
}

/** Asserts exactly one error and returns it. */
function single(errors: ConfigIssue[]): ConfigIssue {
  expect(errors.map((e) => `${at(e).code} ${e.keyPath}: ${e.message}`)).toEqual([expect.any(String)]);
  return errors[0]!;
}

describe('loadConfig: the file itself', () => {
  it('reports a file that cannot be read (FILE, 1:1)', async () => {
    const file = join(root, 'does-not-exist.yaml');
    const e = await loadConfig(file).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    const issues = (e as ConfigError).issues;
    expect(issues).toEqual([
      {
        code: ConfigCodes.FILE,
        severity: 'error',
        keyPath: '',
        pos: { file, line: 1, col: 1 },
        message: 'cannot read the config file: no such file',
      },
    ]);
    expect((e as ConfigError).code).toBe(ConfigCodes.FILE);
  });

  it('reports a YAML syntax error where it is', async () => {
    const { file, errors, error } = await loadErr(y('mode: host', 'tunnel:', '  gateways: [gw1', 'rules: []'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.YAML, line: 4, col: 1, keyPath: '' });
    expect(e.pos.file).toBe(file);
    expect(e.message).not.toContain('\n');
    expect(e.message.length).toBeGreaterThan(0);
    expect(error.code).toBe(ConfigCodes.YAML);
  });

  it('reports a duplicate key (YAML) at the second occurrence', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW, 'mode: router'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.YAML, line: 6, col: 1, keyPath: '' });
    expect(e.message).toBe('Map keys must be unique');
  });

  it('reports an empty file (MISSING_KEY, 1:1)', async () => {
    for (const text of ['', '# only a comment\n', '\n\n']) {
      const { errors, file } = await loadErr(text);
      const e = single(errors);
      expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 1, col: 1, keyPath: '' });
      expect(e.pos.file).toBe(file);
      expect(e.message).toBe('the file is empty; it needs at least tunnel.gateways');
    }
  });

  it('reports a top level that is not a mapping (TYPE) at the document', async () => {
    const list = await loadErr(y('# splitwan', '- mode', '- tunnel'));
    expect(at(single(list.errors))).toEqual({ code: ConfigCodes.TYPE, line: 2, col: 1, keyPath: '' });
    expect(list.errors[0]!.message).toBe('the file must be a mapping of keys (mode:, tunnel:, rules: ...)');
    const scalar = await loadErr(y('just some text'));
    expect(at(single(scalar.errors))).toEqual({ code: ConfigCodes.TYPE, line: 1, col: 1, keyPath: '' });
  });
});

describe('loadConfig: schema errors', () => {
  it('reports an unknown key at the key, with a suggestion', async () => {
    const { errors } = await loadErr(y('mode: host', 'breakout:', '  interfce: eth0', ...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.UNKNOWN_KEY, line: 3, col: 3, keyPath: 'breakout.interfce' });
    expect(e.message).toBe('unknown key "interfce" (did you mean "interface"?)');
  });

  it('lists the allowed keys when nothing is close', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW, 'log:', '  colour: red'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.UNKNOWN_KEY, line: 7, col: 3, keyPath: 'log.colour' });
    expect(e.message).toBe('unknown key "colour" (expected one of: level)');
  });

  it('reports a misspelt key inside a rule', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW, 'rules:', '  - domain: [example.com]', '    via: breakout'));
    const unknown = errors.filter((e) => e.code === ConfigCodes.UNKNOWN_KEY);
    expect(unknown.map(at)).toEqual([{ code: ConfigCodes.UNKNOWN_KEY, line: 7, col: 5, keyPath: 'rules[0].domain' }]);
    expect(unknown[0]!.message).toBe('unknown key "domain" (did you mean "domains"?)');
  });

  it('reports a wrong type at the value', async () => {
    const { errors } = await loadErr(y('mode: host', 'tunnel:', '  killSwitch: "yes"', '  gateways:', '    - name: gw1', '      config: wg1.conf'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.TYPE, line: 3, col: 15, keyPath: 'tunnel.killSwitch' });
    expect(e.message).toBe('must be a boolean, not "yes"');
  });

  it('reports a mapping where a list is expected', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW, 'rules:', '  via: breakout'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.TYPE, line: 7, col: 3, keyPath: 'rules' });
    expect(e.message).toBe('must be a list, not a mapping');
  });

  it('reports a value outside an enum', async () => {
    const { errors } = await loadErr(y('mode: server', ...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.VALUE, line: 1, col: 7, keyPath: 'mode' });
    expect(e.message).toBe('"server" is not allowed; use "router", "host"');

    const lvl = await loadErr(y('mode: host', ...GW, 'log:', '  level: verbose'));
    expect(at(single(lvl.errors))).toEqual({ code: ConfigCodes.VALUE, line: 7, col: 10, keyPath: 'log.level' });
    expect(lvl.errors[0]!.message).toBe('"verbose" is not allowed; use "trace", "debug", "info", "warn", "error", "fatal"');
  });

  it('reports a bad duration and a number where a duration is expected (DURATION)', async () => {
    const { errors } = await loadErr(y('mode: host', 'health:', '  interval: 1x', '  timeout: 5', ...GW));
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.DURATION, line: 3, col: 13, keyPath: 'health.interval' },
      { code: ConfigCodes.DURATION, line: 4, col: 12, keyPath: 'health.timeout' },
    ]);
    expect(errors[0]!.message).toBe('"1x" is not a duration (use e.g. 500ms, 1s, 5m)');
    expect(errors[1]!.message).toBe('a duration is a string such as "1s" or "500ms", not 5');
  });

  it('reports a bad duration deeper down (lists.x.timeout, proxy.peekTimeout)', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'proxy:', '  peekTimeout: 5 seconds', 'lists:', '  l1:', '    file: l1.txt', '    timeout: soon', ...GW),
      { ...WG_DEFAULT(), 'l1.txt': 'example.com\n' },
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.DURATION, line: 3, col: 16, keyPath: 'proxy.peekTimeout' },
      { code: ConfigCodes.DURATION, line: 7, col: 14, keyPath: 'lists.l1.timeout' },
    ]);
    expect(errors[0]!.message).toBe('"5 seconds" is not a duration (use e.g. 500ms, 1s, 5m)');
  });

  it('reports an out-of-range integer', async () => {
    const { errors } = await loadErr(y('mode: host', 'health:', '  failAfter: 0', 'proxy:', '  listenPort: 70000', ...GW));
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.VALUE, line: 3, col: 14, keyPath: 'health.failAfter' },
      { code: ConfigCodes.VALUE, line: 5, col: 15, keyPath: 'proxy.listenPort' },
    ]);
    expect(errors[0]!.message).toBe('0 is out of range (must be >= 1)');
    expect(errors[1]!.message).toBe('70000 is out of range (must be <= 65535)');
  });

  it('reports a missing tunnel (MISSING_KEY) at the document', async () => {
    const { errors } = await loadErr(y('# my router', 'mode: host'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 2, col: 1, keyPath: '' });
    expect(e.message).toBe('missing required key "tunnel"');
  });

  it('reports a key with no value where a mapping is expected, at the key', async () => {
    const { errors } = await loadErr(y('mode: host', 'health:', ...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.TYPE, line: 2, col: 1, keyPath: 'health' });
    expect(e.message).toBe('must be a mapping, not empty');
  });

  it('reports a list name with characters not allowed, at the name', async () => {
    const { errors } = await loadErr(y('mode: host', 'lists:', '  "my list":', '    file: a.txt', ...GW), { ...WG_DEFAULT(), 'a.txt': 'a.example\n' });
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.VALUE, line: 3, col: 3, keyPath: 'lists.my list' });
    expect(e.message).toBe('name "my list" must be letters, digits, ".", "_" or "-"');
  });

  it('reports an empty gateway list', async () => {
    const { errors } = await loadErr(y('mode: host', 'tunnel:', '  gateways: []'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.VALUE, line: 3, col: 13, keyPath: 'tunnel.gateways' });
    expect(e.message).toBe('needs at least 1 item');
  });
});

describe('loadConfig: mode and lan', () => {
  it('router mode (the default) without lan is an error at the document', async () => {
    const { errors } = await loadErr(y(...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 1, col: 1, keyPath: '' });
    expect(e.message).toBe('router mode needs lan: the LAN interfaces to serve (or set mode: host)');
  });

  it('router mode with an empty lan list is an error at lan', async () => {
    const { errors } = await loadErr(y('mode: router', 'lan: []', ...GW));
    expect(at(single(errors))).toEqual({ code: ConfigCodes.MISSING_KEY, line: 2, col: 6, keyPath: 'lan' });
  });

  it('the query log keeps 2000 records on a router and 10000 on a host unless queryLog.size says', async () => {
    expect((await loadOk(y('mode: router', 'lan: [br0]', ...GW))).loaded.config.queryLog.size).toBe(2000);
    expect((await loadOk(y('mode: host', ...GW))).loaded.config.queryLog.size).toBe(10_000);
    expect((await loadOk(y('mode: router', 'lan: [br0]', ...GW, 'queryLog: { size: 10000 }'))).loaded.config.queryLog.size).toBe(10_000);
  });

  it('lan in host mode is a warning, not an error', async () => {
    const { loaded } = await loadOk(y('mode: host', 'lan: [br0]', ...GW));
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.VALUE, line: 2, col: 6, keyPath: 'lan' }]);
    expect(loaded.warnings[0]!.severity).toBe('warning');
    expect(loaded.warnings[0]!.message).toBe('lan is ignored in host mode');
  });
});

describe('loadConfig: gateways', () => {
  it('reports a wg-quick file that cannot be read (FILE) at config', async () => {
    const { dir, errors } = await loadErr(y('mode: host', 'tunnel:', '  gateways:', '    - name: gw1', '      config: missing.conf'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.FILE, line: 5, col: 15, keyPath: 'tunnel.gateways[0].config' });
    expect(e.message).toBe(`cannot read ${join(dir, 'missing.conf')}: no such file`);
  });

  it('passes wg-quick errors through with the wg-quick file position', async () => {
    const { dir, errors } = await loadErr(y('mode: host', ...GW), { 'wg1.conf': wgQuick({ address: '10.64.0.300/32' }) });
    const e = single(errors);
    expect(e.pos).toEqual({ file: join(dir, 'wg1.conf'), line: 3, col: 11 });
    expect(e.code).toBe(ConfigCodes.ADDRESS);
    expect(e.keyPath).toBe('Interface.Address');
  });

  it('rejects a reserved gateway name', async () => {
    const { errors } = await loadErr(y('mode: host', 'tunnel:', '  gateways:', '    - name: Tunnel', '      config: wg1.conf'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.VALUE, line: 4, col: 13, keyPath: 'tunnel.gateways[0].name' });
    expect(e.message).toBe('"Tunnel" is reserved (breakout, tunnel, block, auto, default); choose another gateway name');
  });

  it('rejects a duplicate gateway name, ignoring case', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW, '    - name: GW1', '      config: wg2.conf'), {
      'wg1.conf': wgQuick(),
      'wg2.conf': wgQuick({ address: '10.65.0.2/32' }),
    });
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.DUPLICATE, line: 6, col: 13, keyPath: 'tunnel.gateways[1].name' });
    expect(e.message).toBe('gateway "GW1" is already defined at tunnel.gateways[0]');
  });

  it('rejects config together with inline keys, at the first inline key', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW, '      mtu: 1420'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.VALUE, line: 6, col: 12, keyPath: 'tunnel.gateways[0].mtu' });
    expect(e.message).toBe('use either config (a wg-quick file) or inline keys, not both');
  });

  it('rejects a gateway with neither config nor inline keys', async () => {
    const { errors } = await loadErr(y('mode: host', 'tunnel:', '  gateways:', '    - name: gw1', '      priority: 10'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 4, col: 7, keyPath: 'tunnel.gateways[0]' });
    expect(e.message).toBe('a gateway needs config (a wg-quick file) or inline privateKey, address and peer');
  });

  /** An inline gateway, lines 4-10. */
  const inline = (o: { priv: string; pub: string; endpoint?: string }): string =>
    y(
      'mode: host',
      'tunnel:',
      '  gateways:',
      '    - name: gw1',
      `      privateKey: "${o.priv}"`,
      '      address: 10.64.0.2/32',
      '      dns: 10.64.0.1',
      '      peer:',
      `        publicKey: "${o.pub}"`,
      `        endpoint: "${o.endpoint ?? '192.0.2.10:51820'}"`,
    );

  it('accepts a valid inline gateway', async () => {
    const priv = key();
    const pub = key();
    const { loaded, file } = await loadOk(inline({ priv, pub }), {});
    const gw = loaded.config.tunnel.gateways[0]!;
    expect(gw.wireguard).toStrictEqual({
      privateKey: priv,
      addresses: ['10.64.0.2/32'],
      dns: ['10.64.0.1'],
      peers: [{ publicKey: pub, endpoint: { host: '192.0.2.10', port: 51820 }, allowedIPs: ['0.0.0.0/0', '::/0'] }],
      source: { file, line: 4, col: 7 },
    });
    expect(gw.dns).toEqual([{ kind: 'plain', host: '10.64.0.1', port: 53, text: '10.64.0.1' }]);
    // The private key is inline in a 0644 file.
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.PERMISSIONS, line: 5, col: 19, keyPath: 'tunnel.gateways[0].privateKey' }]);
    expect(loaded.warnings[0]!.message).not.toContain(priv);
  });

  it('reports an inline private key that is not a key, without echoing it', async () => {
    const priv = key();
    const bad = priv.slice(0, 43); // the '=' lost in a copy and paste
    const { errors, error } = await loadErr(inline({ priv: bad, pub: key() }), {});
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.KEY, line: 5, col: 19, keyPath: 'tunnel.gateways[0].privateKey' });
    expect(e.message).toBe('is not a WireGuard key (44 characters of base64; this one has 43 characters)');
    const everything = [error.message, ...error.issues.map(formatIssue)].join('\n');
    expect(everything).not.toContain(bad);
    expect(everything).not.toContain(bad.slice(0, 16));
  });

  it('does not echo key material pasted as the public key', async () => {
    // A private key with one stray character: not a key, but still secret.
    const priv = key();
    const { errors, error } = await loadErr(inline({ priv: key(), pub: `${priv}x` }), {});
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.KEY, line: 9, col: 20, keyPath: 'tunnel.gateways[0].peer.publicKey' });
    expect([error.message, ...error.issues.map(formatIssue)].join('\n')).not.toContain(priv.slice(0, 20));
  });

  it('reports a bad public key', async () => {
    const { errors } = await loadErr(inline({ priv: key(), pub: 'not-a-key' }), {});
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.KEY, line: 9, col: 20, keyPath: 'tunnel.gateways[0].peer.publicKey' });
    expect(e.message).toBe('is not a WireGuard key (44 characters of base64; this one has 9 characters)');
  });

  /** The error at peer.endpoint (a second, consequential one is checked below). */
  const endpointError = (errors: ConfigIssue[]): ConfigIssue => {
    const e = errors.filter((x) => x.keyPath === 'tunnel.gateways[0].peer.endpoint');
    expect(e).toHaveLength(1);
    return e[0]!;
  };

  it('reports an endpoint without a port and one with a bad port', async () => {
    const noPort = await loadErr(inline({ priv: key(), pub: key(), endpoint: '192.0.2.10' }), {});
    const e1 = endpointError(noPort.errors);
    expect(at(e1)).toEqual({ code: ConfigCodes.ADDRESS, line: 10, col: 19, keyPath: 'tunnel.gateways[0].peer.endpoint' });
    expect(e1.message).toBe('"192.0.2.10": missing port');
    const badPort = await loadErr(inline({ priv: key(), pub: key(), endpoint: '192.0.2.10:99999' }), {});
    const e2 = endpointError(badPort.errors);
    expect(at(e2)).toEqual({ code: ConfigCodes.ADDRESS, line: 10, col: 19, keyPath: 'tunnel.gateways[0].peer.endpoint' });
    expect(e2.message).toBe('"192.0.2.10:99999": bad port "99999" (1-65535)');
  });

  it('reports a bad endpoint once, not also as a missing Endpoint', async () => {
    const { errors } = await loadErr(inline({ priv: key(), pub: key(), endpoint: '192.0.2.10' }), {});
    expect(errors.map((e) => `${e.keyPath}: ${e.message}`)).toEqual(['tunnel.gateways[0].peer.endpoint: "192.0.2.10": missing port']);
  });

  it('reports an inline endpoint whose host is neither an address nor a host name', async () => {
    // A wg-quick Endpoint with this host is rejected; an inline one must be too.
    const { errors } = await loadErr(inline({ priv: key(), pub: key(), endpoint: 'vpn example.com:51820' }), {});
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.ADDRESS, line: 10, col: 19, keyPath: 'tunnel.gateways[0].peer.endpoint' });
  });

  it('reports a gateway without a resolver at the gateway', async () => {
    const { errors } = await loadErr(y('mode: host', ...GW), { 'wg1.conf': wgQuick({ dns: null }) });
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 4, col: 7, keyPath: 'tunnel.gateways[0]' });
    expect(e.message).toBe('gateway "gw1" has no resolver: set DNS= in its wg-quick file or tunnel.dns');
  });

  it('tunnel.dns supplies the resolver a wg-quick file lacks', async () => {
    const { loaded } = await loadOk(y('mode: host', 'tunnel:', '  dns: [10.0.0.53]', '  gateways:', '    - name: gw1', '      config: wg1.conf'), {
      'wg1.conf': wgQuick({ dns: null }),
    });
    expect(loaded.config.tunnel.dns).toEqual([{ kind: 'plain', host: '10.0.0.53', port: 53, text: '10.0.0.53' }]);
    expect(loaded.config.tunnel.gateways[0]!.dns).toEqual([{ kind: 'plain', host: '10.0.0.53', port: 53, text: '10.0.0.53' }]);
  });

  it('warns about a wg-quick file readable by others (PERMISSIONS)', async () => {
    const { dir, loaded } = await loadOk(y('mode: host', ...GW), { 'wg1.conf': { text: wgQuick(), mode: 0o644 } });
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.PERMISSIONS, line: 5, col: 15, keyPath: 'tunnel.gateways[0].config' }]);
    expect(loaded.warnings[0]!.severity).toBe('warning');
    expect(loaded.warnings[0]!.message).toBe(
      `${join(dir, 'wg1.conf')} is readable by other users (mode 0644); this wg-quick file holds a private key: chmod 600 it`,
    );
  });

  it('refuses a wg-quick file its group or other users can write (PERMISSIONS), whoever reads it', async () => {
    for (const [mode, who] of [[0o620, 'its group'], [0o602, 'every user'], [0o666, 'every user']] as const) {
      const { dir, errors, warnings } = await loadErr(y('mode: host', ...GW), { 'wg1.conf': { text: wgQuick(), mode } });
      const e = single(errors);
      expect(at(e)).toEqual({ code: ConfigCodes.PERMISSIONS, line: 5, col: 15, keyPath: 'tunnel.gateways[0].config' });
      expect(e.message).toBe(
        `${join(dir, 'wg1.conf')} is writable by ${who} (mode ${mode.toString(8).padStart(4, '0')}): they could rewrite it, and with it where your traffic goes; chmod go-w it (600: it holds a private key)`,
      );
      // Readable too, in two of them: the error's fix (600) covers that, so no second line.
      expect(warnings).toEqual([]);
    }
  });

  it('refuses a wg-quick file, key file, list file or the config itself owned by another user, but not by root or its own user', async (ctx) => {
    if (process.geteuid?.() !== 0) {
      console.log('SKIPPED config-load ownership: chown to another user needs root');
      ctx.skip();
    }
    const other = 4242;
    const dir = await setup({
      'config.yaml': y('mode: host', 'lists:', '  l1:', '    file: l1.txt', ...GW),
      'wg1.conf': wgQuick(),
      'l1.txt': 'example.com\n',
    });
    const file = join(dir, 'config.yaml');
    for (const f of ['wg1.conf', 'l1.txt', 'config.yaml']) await chown(join(dir, f), other, other);
    const e = (await loadConfig(file).catch((x: unknown) => x)) as ConfigError;
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.issues.filter((i) => i.severity === 'error').map(at).sort((a, b) => a.line - b.line)).toEqual([
      { code: ConfigCodes.PERMISSIONS, line: 1, col: 1, keyPath: '' },
      { code: ConfigCodes.PERMISSIONS, line: 4, col: 11, keyPath: 'lists.l1.file' },
      { code: ConfigCodes.PERMISSIONS, line: 8, col: 15, keyPath: 'tunnel.gateways[0].config' },
    ].sort((a, b) => a.line - b.line));
    expect(e.issues.find((i) => i.keyPath === 'tunnel.gateways[0].config')!.message).toBe(
      `${join(dir, 'wg1.conf')} belongs to uid ${other}, not to root or the user splitwan runs as (uid 0): that user could rewrite it, and with it where your traffic goes; chown it to root`,
    );
    // The same files are fine for that user itself (splitwan check run by them)...
    await expect(loadConfig(file, { ...nodeLoadDeps, uid: other })).resolves.toBeDefined();
    // ...and files of root are fine for anyone.
    for (const f of ['wg1.conf', 'l1.txt', 'config.yaml']) await chown(join(dir, f), 0, 0);
    await expect(loadConfig(file, { ...nodeLoadDeps, uid: other })).resolves.toBeDefined();
  });

  it('a key file others can write is refused; the config others can write is refused at its top', async () => {
    const inlineGw = ['tunnel:', '  gateways:', '    - name: gw1', '      privateKeyFile: gw1.key', '      address: 10.64.0.2/32', '      dns: 10.64.0.1', '      peer:', `        publicKey: "${key()}"`, '        endpoint: 192.0.2.10:51820'];
    const keyFile = await loadErr(y('mode: host', ...inlineGw), { 'gw1.key': { text: `${key()}\n`, mode: 0o660 } });
    expect(single(keyFile.errors).keyPath).toBe('tunnel.gateways[0].privateKeyFile');
    const conf = await loadErr(y('mode: host', ...GW), { 'config.yaml': { text: y('mode: host', ...GW), mode: 0o664 }, ...WG_DEFAULT() });
    const e = single(conf.errors);
    expect(at(e)).toEqual({ code: ConfigCodes.PERMISSIONS, line: 1, col: 1, keyPath: '' });
    expect(e.message).toBe(`${conf.file} is writable by its group (mode 0664): they could rewrite it, and with it where your traffic goes; chmod go-w it`);
  });

  it('fills a gateway from its wg-quick file', async () => {
    const priv = key();
    const pub = key();
    const { dir, loaded, file } = await loadOk(y('mode: host', ...GW, '      priority: 7'), { 'wg1.conf': wgQuick({ priv, pub }) });
    expect(loaded.config.tunnel.gateways).toStrictEqual([
      {
        name: 'gw1',
        path: 'gw:gw1',
        ifname: 'swg-gw1',
        priority: 7,
        wireguard: {
          privateKey: priv,
          addresses: ['10.64.0.2/32'],
          dns: ['10.64.0.1'],
          peers: [{ publicKey: pub, endpoint: { host: '192.0.2.10', port: 51820 }, allowedIPs: ['0.0.0.0/0', '::/0'] }],
          source: { file: join(dir, 'wg1.conf'), line: 1, col: 1 },
        },
        dns: [{ kind: 'plain', host: '10.64.0.1', port: 53, text: '10.64.0.1' }],
        probe: null,
        pos: { file, line: 4, col: 7 },
      },
    ]);
  });
});

describe('loadConfig: other settings', () => {
  it('reads an inline private key from privateKeyFile and warns when others can read it', async () => {
    const priv = key();
    const { dir, file, loaded } = await loadOk(
      y(
        'mode: host',
        'tunnel:',
        '  gateways:',
        '    - name: gw1',
        '      privateKeyFile: keys/gw1.key',
        '      address: [10.64.0.2/32, "fd00::2/128"]',
        '      dns: [10.64.0.1]',
        '      peer:',
        `        publicKey: "${key()}"`,
        '        endpoint: vpn.example.net:51820',
        '        allowedIPs: 0.0.0.0/0',
      ),
      { 'keys/gw1.key': { text: `${priv}\n`, mode: 0o640 } },
    );
    const wg = loaded.config.tunnel.gateways[0]!.wireguard;
    expect(wg.privateKey).toBe(priv);
    expect(wg.addresses).toEqual(['10.64.0.2/32', 'fd00::2/128']);
    expect(wg.peers[0]!.endpoint).toEqual({ host: 'vpn.example.net', port: 51820 });
    expect(wg.peers[0]!.allowedIPs).toEqual(['0.0.0.0/0']);
    expect(loaded.config.files).toEqual([file, join(dir, 'keys', 'gw1.key')]);
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.PERMISSIONS, line: 5, col: 23, keyPath: 'tunnel.gateways[0].privateKeyFile' }]);
    expect(loaded.warnings[0]!.message).toBe(
      `${join(dir, 'keys', 'gw1.key')} is readable by other users (mode 0640); this file holds a private key: chmod 600 it`,
    );
  });

  it('reports an unknown dohLists reference with a suggestion', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'lists:', '  doh:', '    file: doh.txt', 'dns:', '  blockEncryptedDns: true', '  dohLists: [dho]', ...GW),
      { ...WG_DEFAULT(), 'doh.txt': 'dns.google\n' },
    );
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.REFERENCE, line: 7, col: 14, keyPath: 'dns.dohLists[0]' });
    expect(e.message).toBe('no list named "dho" under lists (did you mean "doh"?)');
  });

  it('checks metrics.listen, dns.listen and control.socket', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'metrics:', '  listen: localhost:9464', 'dns:', '  listen: [dns.local]', 'control:', '  socket: splitwan.sock', ...GW),
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.ADDRESS, line: 5, col: 12, keyPath: 'dns.listen[0]' },
      { code: ConfigCodes.ADDRESS, line: 3, col: 11, keyPath: 'metrics.listen' },
      { code: ConfigCodes.VALUE, line: 7, col: 11, keyPath: 'control.socket' },
    ]);
    expect(errors.map((e) => e.message)).toEqual([
      '"dns.local": listen on an IP address, not a name',
      '"localhost:9464": use an IP address and port, e.g. 127.0.0.1:9464',
      'the control socket must be an absolute path',
    ]);
    const g = await loadErr(y('mode: host', 'control:', '  group: "Wheel Users"', ...GW));
    expect(g.errors.map(at)).toEqual([{ code: ConfigCodes.VALUE, line: 3, col: 10, keyPath: 'control.group' }]);
    expect(g.errors[0]!.message).toContain('"Wheel Users" is not a group name');
    expect((await loadOk(y('mode: host', 'control:', '  group: null', ...GW))).loaded.config.control.group).toBeNull();
    expect((await loadOk(y('mode: host', 'control:', '  group: "100"', ...GW))).loaded.config.control.group).toBe('100');
    const ok = await loadOk(y('mode: host', 'metrics:', '  listen: 127.0.0.1:9464', 'dns:', '  listen: [127.0.0.53, "[::1]:5353"]', ...GW));
    expect(ok.loaded.config.metrics).toEqual({ listen: { host: '127.0.0.1', port: 9464 } });
    expect(ok.loaded.config.dns.listen).toEqual([
      { host: '127.0.0.53', port: 53 },
      { host: '::1', port: 5353 },
    ]);
  });

  it('checks probes that need a target', async () => {
    const { errors } = await loadErr(y('mode: host', 'health:', '  probe: [http, {kind: tcp, target: nope}, dns]', ...GW));
    expect(errors.map((e) => [e.code, e.keyPath, e.message])).toEqual([
      [ConfigCodes.VALUE, 'health.probe[0]', 'an http probe needs url: an http:// or https:// URL'],
      [ConfigCodes.ADDRESS, 'health.probe[1]', 'a tcp probe needs target: host:port'],
    ]);
  });
});

describe('loadConfig: resolvers', () => {
  it('reports upstreams that are not resolvers, at each item', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'breakout:', '  dns:', '    - dns.example.com', '    - http://dns.example/dns-query', '    - 9.9.9.9', ...GW),
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.ADDRESS, line: 4, col: 7, keyPath: 'breakout.dns[0]' },
      { code: ConfigCodes.ADDRESS, line: 5, col: 7, keyPath: 'breakout.dns[1]' },
    ]);
    expect(errors[0]!.message).toBe('"dns.example.com": a plain resolver must be an IP address');
    expect(errors[1]!.message).toBe('"http://dns.example/dns-query": DoH needs https://, not http://');
  });

  it('DoH and DoT upstreams, http and tcp probes by name are errors at check time (they would fail every query at run time)', async () => {
    const { errors } = await loadErr(
      y(
        'mode: host',
        'breakout:',
        '  interface: eth0',
        '  dns:',
        '    - https://dns.example/dns-query',
        '    - tls://dns.example',
        'health:',
        '  probe:',
        '    - { kind: http, url: "http://probe.example/generate_204" }',
        '    - { kind: tcp, target: "probe.example:443" }',
        ...GW,
      ),
      WG_DEFAULT(),
    );
    expect(errors.map((e) => [e.code, e.keyPath])).toEqual([
      [ConfigCodes.ADDRESS, 'breakout.dns[0]'],
      [ConfigCodes.ADDRESS, 'breakout.dns[1]'],
      [ConfigCodes.ADDRESS, 'health.probe[0]'],
      [ConfigCodes.ADDRESS, 'health.probe[1]'],
    ]);
    expect(errors[0]!.message).toContain('e.g. https://9.9.9.9/dns-query');
    expect(errors[1]!.message).toContain('e.g. tls://9.9.9.9#dns.quad9.net');
  });

  it('accepts DoH, DoT and plain upstreams with ports', async () => {
    const { loaded } = await loadOk(
      y(
        'mode: host',
        'breakout:',
        '  interface: eth0',
        '  dns:',
        '    - https://9.9.9.9/dns-query',
        '    - tls://[2001:db8::53]:8853',
        '    - tls://1.1.1.1#cloudflare-dns.com',
        '    - 9.9.9.9:5353',
        '    - "[2001:db8::1]:53"',
        ...GW,
      ),
    );
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config.breakout).toEqual({
      interface: 'eth0',
      dns: [
        { kind: 'doh', url: 'https://9.9.9.9/dns-query', text: 'https://9.9.9.9/dns-query' },
        { kind: 'tls', host: '2001:db8::53', port: 8853, servername: '2001:db8::53', text: 'tls://[2001:db8::53]:8853' },
        { kind: 'tls', host: '1.1.1.1', port: 853, servername: 'cloudflare-dns.com', text: 'tls://1.1.1.1#cloudflare-dns.com' },
        { kind: 'plain', host: '9.9.9.9', port: 5353, text: '9.9.9.9:5353' },
        { kind: 'plain', host: '2001:db8::1', port: 53, text: '[2001:db8::1]:53' },
      ],
    });
  });
});

describe('loadConfig: lists', () => {
  it('needs exactly one of file and url', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'lists:', '  both:', '    file: a.txt', '    url: https://lists.example/a.txt', '  neither:', '    format: plain', ...GW),
      { ...WG_DEFAULT(), 'a.txt': 'example.com\n' },
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.VALUE, line: 4, col: 5, keyPath: 'lists.both' },
      { code: ConfigCodes.MISSING_KEY, line: 7, col: 5, keyPath: 'lists.neither' },
    ]);
    expect(errors.map((e) => e.message)).toEqual(['a list needs exactly one of file or url', 'a list needs exactly one of file or url']);
  });

  it('rejects a url that is not http(s), without its password', async () => {
    const { errors, error } = await loadErr(y('mode: host', 'lists:', '  l1:', '    url: ftp://user:hunter2@example.com/list.txt', ...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.ADDRESS, line: 4, col: 10, keyPath: 'lists.l1.url' });
    // The user info is dropped or masked; the password never shows.
    expect(e.message).toMatch(/^"ftp:\/\/(user(:\*+)?@)?example\.com\/list\.txt" is not an http:\/\/ or https:\/\/ URL$/);
    expect(error.message).not.toContain('hunter2');
  });

  it('rejects a bad cron expression', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'stateDir: state', 'lists:', '  l1:', '    url: https://lists.example/l1.txt', '    refresh: every day', ...GW),
    );
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.CRON, line: 6, col: 14, keyPath: 'lists.l1.refresh' });
    expect(e.message).toBe('"every day" is not a cron expression (e.g. "0 4 * * *": daily at 04:00)');
  });

  it('reports a list file that is missing (FILE)', async () => {
    const { dir, errors } = await loadErr(y('mode: host', 'lists:', '  l1:', '    file: missing.txt', ...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.FILE, line: 4, col: 11, keyPath: 'lists.l1.file' });
    expect(e.message).toBe(`cannot read ${join(dir, 'missing.txt')}: no such file`);
  });

  it('reports a reference to an unknown list, with a suggestion', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'lists:', '  stream:', '    file: stream.txt', ...GW, 'rules:', '  - list: strem', '    via: breakout'),
      { ...WG_DEFAULT(), 'stream.txt': 'netflix.com\n' },
    );
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.REFERENCE, line: 10, col: 11, keyPath: 'rules[0].list' });
    expect(e.message).toBe('no list named "strem" under lists (did you mean "stream"?)');
  });

  it('reports an unknown list in a list of lists at the item', async () => {
    const { errors } = await loadErr(
      y('mode: host', 'lists:', '  stream:', '    file: stream.txt', ...GW, 'rules:', '  - list: [stream, zzzzzzzz]', '    via: breakout'),
      { ...WG_DEFAULT(), 'stream.txt': 'netflix.com\n' },
    );
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.REFERENCE, line: 10, col: 20, keyPath: 'rules[0].list[1]' });
    expect(e.message).toBe('no list named "zzzzzzzz" under lists');
  });

  it('warns about a url list never downloaded (LIST), and loads it empty', async () => {
    const { dir, loaded } = await loadOk(y('mode: host', 'stateDir: state', 'lists:', '  remote:', '    url: https://lists.example/r.txt', ...GW));
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.LIST, line: 5, col: 5, keyPath: 'lists.remote' }]);
    expect(loaded.warnings[0]!.message).toBe('list "remote" has not been downloaded yet; its rules match nothing until the daemon fetches it');
    const l = loaded.lists.get('remote')!;
    expect(l.origin).toBe('none');
    expect(l.domains).toEqual([]);
    expect(loaded.config.lists).toEqual([
      {
        name: 'remote',
        format: 'auto',
        url: 'https://lists.example/r.txt',
        refresh: '0 4 * * *',
        maxBytes: 33554432,
        timeoutMs: 30000,
        pos: { file: join(dir, 'config.yaml'), line: 5, col: 5 },
      },
    ]);
  });

  it('refuses a plain http list without a sha256 pin (INSECURE): the network could rewrite routing', async () => {
    const { errors } = await loadErr(y('mode: host', 'lists:', '  ads:', '    url: http://user:hunter2@lists.example/ads.txt', ...GW));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.INSECURE, line: 4, col: 10, keyPath: 'lists.ads.url' });
    expect(e.message).toBe(
      '"http://lists.example/ads.txt" is plain http: anyone on the network path could rewrite this list, and with it your routing; use an https:// URL, or pin the content with sha256: (the output of sha256sum on the file)',
    );
  });

  it('takes a plain http list with a sha256 pin, and uses a cached copy only when it is the pinned content', async () => {
    const text = 'ads.example\n';
    const pin = createHash('sha256').update(text).digest('hex');
    const url = 'http://lists.example/ads.txt';
    const doc = (p: string): string => y('mode: host', 'stateDir: state', 'lists:', '  ads:', `    url: ${url}`, `    sha256: ${p}`, ...GW);
    const cache = (body: string): Record<string, FileSpec> => ({
      ...WG_DEFAULT(),
      'state/lists/ads.txt': body,
      'state/lists/ads.meta.json': JSON.stringify({ url, fetchedAt: 1, sha256: createHash('sha256').update(body).digest('hex') }),
    });
    // Upper-case hex is the same pin.
    const ok = await loadOk(doc(pin.toUpperCase()), cache(text));
    expect(ok.loaded.config.lists[0]).toMatchObject({ url, sha256: pin });
    expect(ok.loaded.lists.get('ads')!.origin).toBe('cache');
    expect([...ok.loaded.lists.get('ads')!.domains].map((d) => d.pattern)).toEqual([{ kind: 'domain', value: 'ads.example' }]);
    expect(ok.loaded.warnings).toEqual([]);
    // A copy that is not the pinned content (downloaded before the pin, or tampered with) is not used.
    const stale = await loadOk(doc(pin), cache('ads.example\nbank.example\n'));
    expect(stale.loaded.lists.get('ads')!.origin).toBe('none');
    expect(stale.loaded.lists.get('ads')!.domains).toEqual([]);
    expect(stale.loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.LIST, line: 6, col: 13, keyPath: 'lists.ads.sha256' }]);
    expect(stale.loaded.warnings[0]!.message).toBe('the cached copy of list "ads" does not match its sha256 pin; the list matches nothing until a download does');
  });

  it('rejects a sha256 that is not 64 hex digits, and warns about one on a file list', async () => {
    const { errors } = await loadErr(y('mode: host', 'lists:', '  ads:', '    url: http://lists.example/ads.txt', '    sha256: abc123', ...GW));
    expect(errors.map(at)).toContainEqual({ code: ConfigCodes.VALUE, line: 5, col: 13, keyPath: 'lists.ads.sha256' });
    const pin = 'a'.repeat(64);
    const { loaded } = await loadOk(y('mode: host', 'lists:', '  l1:', '    file: l1.txt', `    sha256: ${pin}`, ...GW), { ...WG_DEFAULT(), 'l1.txt': 'example.com\n' });
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.VALUE, line: 5, col: 13, keyPath: 'lists.l1.sha256' }]);
  });

  it('warns about unparsable list lines at the list file position', async () => {
    const { dir, loaded } = await loadOk(y('mode: host', 'lists:', '  l1:', '    file: l1.txt', '    format: plain', ...GW), {
      ...WG_DEFAULT(),
      'l1.txt': 'example.com\nexa mple.com\n',
    });
    expect(loaded.warnings).toHaveLength(1);
    expect(loaded.warnings[0]!.pos).toEqual({ file: join(dir, 'l1.txt'), line: 2, col: 1 });
    expect(loaded.warnings[0]!.code).toBe(ConfigCodes.LIST);
    expect(loaded.warnings[0]!.message).toContain('(line skipped)');
    expect([...loaded.lists.get('l1')!.domains]).toEqual([{ pattern: { kind: 'domain', value: 'example.com' }, line: 1 }]);
  });
});

describe('loadConfig: rules', () => {
  const rulesDoc = (...rule: string[]): string => y('mode: host', ...GW, 'rules:', ...rule);

  it('reports a via typo with a suggestion', async () => {
    const { errors } = await loadErr(rulesDoc('  - domains: [example.com]', '    via: tunel'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.REFERENCE, line: 8, col: 10, keyPath: 'rules[0].via' });
    expect(e.message).toBe('"tunel" is not breakout, tunnel, block or a gateway name (did you mean "tunnel"?)');
  });

  it('reports a gateway typo inside a via list at the item, and in default', async () => {
    const { errors } = await loadErr(
      y('mode: host', ...GW, '    - name: gw2', '      config: wg2.conf', 'rules:', '  - cidrs: [10.0.0.0/8]', '    via: [gw1, gw2x]', 'default: brekout'),
      { 'wg1.conf': wgQuick(), 'wg2.conf': wgQuick({ address: '10.65.0.2/32' }) },
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.REFERENCE, line: 10, col: 16, keyPath: 'rules[0].via[1]' },
      { code: ConfigCodes.REFERENCE, line: 11, col: 10, keyPath: 'default' },
    ]);
    expect(errors[0]!.message).toBe('"gw2x" is not breakout, tunnel, block or a gateway name (did you mean "gw2"?)');
    expect(errors[1]!.message).toBe('"brekout" is not breakout, tunnel, block or a gateway name (did you mean "breakout"?)');
  });

  it('warns about a target listed twice', async () => {
    const { loaded } = await loadOk(rulesDoc('  - cidrs: [10.0.0.0/8]', '    via: [gw1, breakout, GW1]'));
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.DUPLICATE, line: 8, col: 26, keyPath: 'rules[0].via[2]' }]);
    expect(loaded.config.rules[0]!.via).toEqual(['gw:gw1', 'breakout']);
  });

  it('reports a rule with no matcher at the rule', async () => {
    const { errors } = await loadErr(rulesDoc('  - via: breakout'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 7, col: 5, keyPath: 'rules[0]' });
    expect(e.message).toBe('a rule needs domains, cidrs, sources, list, ports, protocol, geoip, asn or devices');
  });

  it('reports a rule without via (MISSING_KEY)', async () => {
    const { errors } = await loadErr(rulesDoc('  - domains: [example.com]'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.MISSING_KEY, line: 7, col: 5, keyPath: 'rules[0]' });
    expect(e.message).toBe('missing required key "via"');
  });

  it('reports bad domains (DOMAIN) at each entry', async () => {
    const { errors } = await loadErr(rulesDoc('  - domains:', '      - good.example', '      - "exa mple.com"', '      - "fulll:x.com"', '    via: breakout'));
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.DOMAIN, line: 9, col: 9, keyPath: 'rules[0].domains[1]' },
      { code: ConfigCodes.DOMAIN, line: 10, col: 9, keyPath: 'rules[0].domains[2]' },
    ]);
    expect(errors[0]!.message).toBe('"exa mple.com" is not a domain name (bad label "exa mple")');
    expect(errors[1]!.message).toBe('unknown domain prefix "fulll:" (use full:, keyword:, regexp: or domain:)');
  });

  it('reports a bad regular expression (REGEXP)', async () => {
    const { errors } = await loadErr(rulesDoc('  - domains: ["regexp:(ads"]', '    via: block'));
    const e = single(errors);
    expect(at(e)).toEqual({ code: ConfigCodes.REGEXP, line: 7, col: 15, keyPath: 'rules[0].domains[0]' });
    expect(e.message).toMatch(/^bad regular expression: .*Unterminated group/);
  });

  it('reports bad CIDRs (ADDRESS) in cidrs and sources', async () => {
    const { errors } = await loadErr(
      y('mode: router', 'lan: [br0]', ...GW, 'rules:', '  - cidrs: [10.0.0.0/33, 300.1.1.1]', '    via: breakout', '  - sources: [192.168.1.0/xx]', '    via: block'),
    );
    expect(errors.map(at)).toEqual([
      { code: ConfigCodes.ADDRESS, line: 8, col: 13, keyPath: 'rules[0].cidrs[0]' },
      { code: ConfigCodes.ADDRESS, line: 8, col: 26, keyPath: 'rules[0].cidrs[1]' },
      { code: ConfigCodes.ADDRESS, line: 10, col: 15, keyPath: 'rules[1].sources[0]' },
    ]);
    expect(errors.map((e) => e.message)).toEqual([
      '"10.0.0.0/33" has a bad prefix length (0-32)',
      '"300.1.1.1" is not an IP address or CIDR',
      '"192.168.1.0/xx" has a bad prefix length (0-32)',
    ]);
  });

  it('builds rules with origins, labels and normalised entries', async () => {
    const { file, loaded } = await loadOk(
      rulesDoc('  - name: streaming', '    domains: ["*.Example.COM", "full:a.example."]', '    cidrs: [10.1.2.3/8]', '    via: [gw1, breakout]'),
    );
    expect(loaded.config.rules).toStrictEqual([
      {
        index: 0,
        domains: [
          { pattern: { kind: 'subdomain', value: 'example.com' }, origin: { keyPath: 'rules[0].domains[0]', pos: { file, line: 8, col: 15 } } },
          { pattern: { kind: 'full', value: 'a.example' }, origin: { keyPath: 'rules[0].domains[1]', pos: { file, line: 8, col: 32 } } },
        ],
        cidrs: [{ cidr: '10.0.0.0/8', origin: { keyPath: 'rules[0].cidrs[0]', pos: { file, line: 9, col: 13 } } }],
        sources: [],
        lists: [],
        // The matchers of issue 21, empty.
        ports: [],
        protocol: null,
        geoip: [],
        asns: [],
        devices: [],
        when: null,
        reroute: false,
        via: ['gw:gw1', 'breakout'],
        label: 'streaming',
        pos: { file, line: 7, col: 5 },
      },
    ]);
  });
});

describe('loadConfig: one run reports every mistake', () => {
  it('reports all errors of a file with several mistakes', async () => {
    const { errors } = await loadErr(
      y(
        'mode: host', // 1
        'breakout:', // 2
        '  interfce: eth0', // 3 unknown key
        'health:', // 4
        '  interval: 1x', // 5 duration
        'lists:', // 6
        '  stream:', // 7
        '    file: missing.txt', // 8 missing file
        'tunnel:', // 9
        '  gateways:', // 10
        '    - name: block', // 11 reserved
        '      config: wg1.conf', // 12
        'rules:', // 13
        '  - domains: ["exa mple.com"]', // 14 bad domain
        '    via: tunel', // 15 via typo
        '  - cidrs: [10.0.0.0/33]', // 16 bad cidr
        '    via: breakout', // 17
        '  - via: breakout', // 18 no matcher
      ),
    );
    expect(errors.map((e) => [e.code, e.keyPath, e.pos.line])).toEqual(
      expect.arrayContaining([
        [ConfigCodes.UNKNOWN_KEY, 'breakout.interfce', 3],
        [ConfigCodes.DURATION, 'health.interval', 5],
        [ConfigCodes.FILE, 'lists.stream.file', 8],
        [ConfigCodes.VALUE, 'tunnel.gateways[0].name', 11],
        [ConfigCodes.DOMAIN, 'rules[0].domains[0]', 14],
        [ConfigCodes.REFERENCE, 'rules[0].via', 15],
        [ConfigCodes.ADDRESS, 'rules[1].cidrs[0]', 16],
        [ConfigCodes.MISSING_KEY, 'rules[2]', 18],
      ]),
    );
    expect(errors).toHaveLength(8);
  });
});

describe('loadConfig: the result', () => {
  it('fills in defaults', async () => {
    const { loaded, file } = await loadOk(y('mode: host', ...GW));
    const c = loaded.config;
    expect(loaded.warnings).toEqual([]);
    expect(c.file).toBe(file);
    expect(c.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(c.mode).toBe('host');
    expect(c.lan).toEqual([]);
    expect(c.breakout).toEqual({ interface: 'auto', dns: 'auto' });
    expect(c.tunnel.killSwitch).toBe(true);
    expect(c.tunnel.dns).toBeNull();
    expect(c.health).toEqual({
      intervalMs: 1000,
      timeoutMs: 1000,
      failAfter: 3,
      recoverAfter: 5,
      probe: [{ kind: 'dns' }, { kind: 'handshake' }],
      window: 30,
      degradeFactor: 3,
      failbackHoldMs: 30000,
    });
    expect(c.dns).toEqual({
      listen: 'auto',
      timeoutMs: 2000,
      tagTtlMs: 600000,
      blockEncryptedDns: false,
      dohLists: [],
      blockAnswer: 'null',
      cache: { size: 10000, minTtl: 0, maxTtl: 86400, negativeTtl: 900, serveStale: false, staleTtl: 86400 },
    });
    expect(c.proxy).toEqual({ enabled: false, ports: [80, 443], listenPort: 15001, peekTimeoutMs: 5000, idleTimeoutMs: 300000, maxConnectionsPerClient: 1024, blockQuic: true });
    expect(c.control).toEqual({ socket: '/run/splitwan/control.sock', group: 'splitwan' });
    expect(c.metrics).toEqual({ listen: null });
    expect(c.log).toEqual({ level: 'info' });
    expect(c.stateDir).toBe('/var/lib/splitwan');
    expect(c.lists).toEqual([]);
    expect(c.rules).toEqual([]);
    expect(c.default).toEqual(['tunnel']);
    expect(loaded.policy.matchName('anything.example')).toEqual({ rule: null, via: ['tunnel'], entry: null });
  });

  it('router mode is the default', async () => {
    const { loaded } = await loadOk(y('lan: [br0, wlan0]', ...GW));
    expect(loaded.config.mode).toBe('router');
    expect(loaded.config.lan).toEqual(['br0', 'wlan0']);
  });

  it('converts durations and keeps explicit values', async () => {
    const { loaded } = await loadOk(
      y('mode: host', 'health:', '  interval: 2s', '  timeout: 500ms', '  failbackHold: 1m30s', 'dns:', '  timeout: 1.5s', '  tagTtl: 1h', '  cache:', '    size: 0', ...GW, '  killSwitch: false'),
    );
    expect(loaded.config.health.intervalMs).toBe(2000);
    expect(loaded.config.health.timeoutMs).toBe(500);
    expect(loaded.config.health.failbackHoldMs).toBe(90000);
    expect(loaded.config.dns.timeoutMs).toBe(1500);
    expect(loaded.config.dns.tagTtlMs).toBe(3600000);
    expect(loaded.config.dns.cache.size).toBe(0);
    expect(loaded.config.tunnel.killSwitch).toBe(false);
  });

  it('warns when the probe timeout is longer than the interval', async () => {
    const { loaded } = await loadOk(y('mode: host', 'health:', '  interval: 1s', '  timeout: 3s', ...GW));
    expect(loaded.warnings.map(at)).toEqual([{ code: ConfigCodes.VALUE, line: 4, col: 12, keyPath: 'health.timeout' }]);
  });

  it('resolves relative paths against the config file directory, not the working directory', async () => {
    const dir = await setup({
      'etc/config.yaml': y(
        'mode: host',
        'stateDir: state',
        'lists:',
        '  stream:',
        '    file: lists/stream.txt',
        'tunnel:',
        '  gateways:',
        '    - name: gw1',
        '      config: ../wg/wg1.conf',
        'rules:',
        '  - list: stream',
        '    via: gw1',
      ),
      'etc/lists/stream.txt': 'netflix.com\n',
      'wg/wg1.conf': wgQuick(),
    });
    const abs = join(dir, 'etc', 'config.yaml');
    // A relative path to the config file resolves against the working directory.
    const { config, lists, policy } = await loadConfig(relative(process.cwd(), abs));
    expect(config.file).toBe(abs);
    expect(config.stateDir).toBe(join(dir, 'etc', 'state'));
    expect(config.tunnel.gateways[0]!.wireguard.source.file).toBe(join(dir, 'wg', 'wg1.conf'));
    expect(config.lists[0]!.file).toBe(join(dir, 'etc', 'lists', 'stream.txt'));
    expect(lists.get('stream')!.file).toBe(join(dir, 'etc', 'lists', 'stream.txt'));
    expect(policy.matchName('www.netflix.com').entry?.pos).toEqual({ file: join(dir, 'etc', 'lists', 'stream.txt'), line: 1, col: 1 });
    expect(config.files).toEqual([abs, join(dir, 'wg', 'wg1.conf'), join(dir, 'etc', 'lists', 'stream.txt')]);
  });

  it('returns a deeply frozen config', async () => {
    const { loaded } = await loadOk(
      y('mode: host', 'lists:', '  l1:', '    file: l1.txt', ...GW, 'rules:', '  - domains: [example.com]', '    list: l1', '    via: [gw1, breakout]'),
      { ...WG_DEFAULT(), 'l1.txt': 'example.org\n' },
    );
    const c = loaded.config;
    const objects: unknown[] = [
      c,
      c.tunnel,
      c.tunnel.gateways,
      c.tunnel.gateways[0],
      c.tunnel.gateways[0]!.wireguard,
      c.tunnel.gateways[0]!.wireguard.peers[0],
      c.tunnel.gateways[0]!.wireguard.peers[0]!.endpoint,
      c.tunnel.gateways[0]!.wireguard.addresses,
      c.tunnel.gateways[0]!.dns[0],
      c.health,
      c.health.probe[0],
      c.dns.cache,
      c.proxy.ports,
      c.lists[0],
      c.lists[0]!.pos,
      c.rules,
      c.rules[0]!.domains[0]!.pattern,
      c.rules[0]!.domains[0]!.origin.pos,
      c.rules[0]!.via,
      c.default,
      c.files,
    ];
    for (const o of objects) expect(Object.isFrozen(o)).toBe(true);
    expect(() => {
      (c.rules as RuleConfig[]).push(c.rules[0]!);
    }).toThrow(TypeError);
    expect(() => {
      (c.health as { intervalMs: number }).intervalMs = 1;
    }).toThrow(TypeError);
    expect(c.health.intervalMs).toBe(1000);
  });

  it('changes the digest when an included wg-quick or list file changes, and only then', async () => {
    const yaml = y('mode: host', 'lists:', '  l1:', '    file: l1.txt', ...GW, 'rules:', '  - list: l1', '    via: breakout');
    const dir = await setup({ 'config.yaml': yaml, 'wg1.conf': wgQuick(), 'l1.txt': 'example.com\n' });
    const file = join(dir, 'config.yaml');
    const d1 = (await loadConfig(file)).config.digest;
    expect((await loadConfig(file)).config.digest).toBe(d1);

    await writeFile(join(dir, 'wg1.conf'), wgQuick());
    const d2 = (await loadConfig(file)).config.digest;
    expect(d2).not.toBe(d1);

    await writeFile(join(dir, 'l1.txt'), 'example.com\nexample.org\n');
    const d3 = (await loadConfig(file)).config.digest;
    expect(d3).not.toBe(d2);

    await writeFile(file, yaml + '# a comment\n');
    const d4 = (await loadConfig(file)).config.digest;
    expect(d4).not.toBe(d3);
    expect(new Set([d1, d2, d3, d4]).size).toBe(4);
  });

  it('lists the config, wg-quick and list files in files (url lists excluded)', async () => {
    const { dir, file, loaded } = await loadOk(
      y(
        'mode: host',
        'stateDir: state',
        'lists:',
        '  a:',
        '    file: a.txt',
        '  remote:',
        '    url: https://lists.example/r.txt',
        '  b:',
        '    file: sub/b.txt',
        ...GW,
        '    - name: gw2',
        '      config: wg2.conf',
      ),
      { 'wg1.conf': wgQuick(), 'wg2.conf': wgQuick({ address: '10.65.0.2/32' }), 'a.txt': 'a.example\n', 'sub/b.txt': 'b.example\n' },
    );
    expect(loaded.config.files).toEqual([file, join(dir, 'wg1.conf'), join(dir, 'wg2.conf'), join(dir, 'a.txt'), join(dir, 'sub', 'b.txt')]);
  });
});
