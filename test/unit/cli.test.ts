// The command line: `check`, `explain`, usage errors and exit codes, through
// main(argv, io) with a capturing io, plus one run of the real launcher.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, commandUsage, main, type Io } from '../../daemon/cli.js';
import type { TagHit } from '../../daemon/tag-lookup-linux.js';
import { ruleId } from '../../daemon/dataplane/plan.js';
import { loadConfig } from '../../config/load.js';
import { budget } from '../helpers/emulation.js';

const key = (): string => randomBytes(32).toString('base64');

function wgQuick(o: { address: string; dns: string; endpoint: string }): string {
  return [
    '[Interface]',
    `PrivateKey = ${key()}`,
    `Address = ${o.address}`,
    `DNS = ${o.dns}`,
    '',
    '[Peer]',
    `PublicKey = ${key()}`,
    `Endpoint = ${o.endpoint}`,
    'AllowedIPs = 0.0.0.0/0, ::/0',
    '',
  ].join('\n');
}

const GOOD = [
  'mode: router', // 1
  'lan: [br0]', // 2
  'lists:', // 3
  '  stream:', // 4
  '    file: stream.txt', // 5
  'tunnel:', // 6
  '  gateways:', // 7
  '    - name: gw1', // 8
  '      config: wg1.conf', // 9
  '    - name: gw2', // 10
  '      config: wg2.conf', // 11
  '      priority: 200', // 12
  'rules:', // 13
  '  - domains: [example.com, "*.cdn.example"]', // 14
  '    via: breakout', // 15
  '  - cidrs: [203.0.113.0/24]', // 16
  '    via: [gw2, gw1]', // 17
  '  - list: stream', // 18
  '    via: gw2', // 19
  '  - sources: [192.168.1.0/24]', // 20
  '    domains: [kids.example]', // 21
  '    via: block', // 22
  'default: tunnel', // 23
  '',
].join('\n');

const STREAM = ['# streaming services', 'netflix.com', 'nflxvideo.net', '198.51.100.0/24', ''].join('\n');

const BAD = [
  'mode: host', // 1
  'breakout:', // 2
  '  interfce: eth0', // 3
  'tunnel:', // 4
  '  gateways:', // 5
  '    - name: gw1', // 6
  '      config: wg1.conf', // 7
  'rules:', // 8
  '  - domains: [example.com]', // 9
  '    via: tunel', // 10
  '',
].join('\n');

let dir: string;
let good: string;
let bad: string;
let stream: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitwan-cli-'));
  good = join(dir, 'good', 'config.yaml');
  bad = join(dir, 'bad', 'config.yaml');
  stream = join(dir, 'good', 'stream.txt');
  await mkdir(join(dir, 'good'));
  await mkdir(join(dir, 'bad'));
  await writeFile(good, GOOD);
  await writeFile(stream, STREAM);
  await writeFile(join(dir, 'good', 'wg1.conf'), wgQuick({ address: '10.64.0.2/32', dns: '10.64.0.1', endpoint: '192.0.2.10:51820' }));
  await writeFile(join(dir, 'good', 'wg2.conf'), wgQuick({ address: '10.65.0.2/32', dns: '10.65.0.1', endpoint: '192.0.2.20:51820' }));
  await writeFile(bad, BAD);
  await writeFile(join(dir, 'bad', 'wg1.conf'), wgQuick({ address: '10.64.0.300/32', dns: '10.64.0.1', endpoint: '192.0.2.10:51820' }));
  for (const f of ['good/wg1.conf', 'good/wg2.conf', 'bad/wg1.conf']) await chmod(join(dir, f), 0o600);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Tags the fake kernel holds: address → hit. */
const fakeTags = new Map<string, TagHit | { unknown: string }>();

async function run(...argv: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  };
  // No kernel here: the running daemon's tags are looked up in a fake (see 'explain IP: the resolver's tag').
  const code = await main(argv, io, { tags: async (ip) => fakeTags.get(ip) ?? null });
  return { code, out, err };
}

/** Output a user sees never holds a stack trace. */
function expectNoStack(r: Run): void {
  expect(r.out + r.err).not.toMatch(/\n\s+at .+[(:]/);
  expect(r.out + r.err).not.toContain('Error:');
}

describe('cli: check', () => {
  it('exits 0 and prints a summary naming each gateway and list', async () => {
    const r = await run('check', '--config', good);
    expect(r).toEqual({
      code: 0,
      err: '',
      out: [
        `${good}: OK`,
        '  mode router (lan: br0), breakout auto, kill switch on',
        '  breakout dns: auto (the system resolvers)',
        '  gateway gw1: priority 100, 10.64.0.2/32 → 192.0.2.10:51820, dns 10.64.0.1',
        '  gateway gw2: priority 200, 10.65.0.2/32 → 192.0.2.20:51820, dns 10.65.0.1',
        '  health: every 1s, down after 3 failures, up after 5; probes dns+handshake',
        `  list stream: 3 entries from ${stream}`,
        '  rules: 4 (5 names, 0 keywords, 0 regexps, 2 cidrs, 1 by source); default tunnel',
        '',
      ].join('\n'),
    });
  });

  it('accepts -c for --config', async () => {
    const r = await run('check', '-c', good);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[0]).toBe(`${good}: OK`);
  });

  it('exits 1 and prints every error as FILE:LINE:COL: key.path: message, sorted, then a count', async () => {
    const r = await run('check', '--config', bad);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err.split('\n')).toEqual([
      `${bad}:3:3: breakout.interfce: unknown key "interfce" (did you mean "interface"?)`,
      `${bad}:10:10: rules[0].via: "tunel" is not breakout, tunnel, block or a gateway name (did you mean "tunnel"?)`,
      `${join(dir, 'bad', 'wg1.conf')}:3:11: Interface.Address: "10.64.0.300/32" is not an IP address or address/prefix`,
      '3 errors',
      '',
    ]);
    expectNoStack(r);
  });

  it('exits 1 for a config file that does not exist', async () => {
    const missing = join(dir, 'nope.yaml');
    const r = await run('check', '--config', missing);
    expect(r).toEqual({ code: 1, out: '', err: `${missing}:1:1: cannot read the config file: no such file\n1 error\n` });
  });

  it('exits 1 for a YAML syntax error, with no stack trace', async () => {
    const f = join(dir, 'syntax.yaml');
    await writeFile(f, 'mode: host\ntunnel: [\n');
    const r = await run('check', '--config', f);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    const lines = r.err.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: \\S`));
    expect(lines[1]).toBe('1 error');
    expectNoStack(r);
  });

  it('prints warnings on stderr and still exits 0', async () => {
    const d = join(dir, 'warn');
      await mkdir(d);
    const f = join(d, 'config.yaml');
    await writeFile(f, ['mode: host', 'lan: [br0]', 'tunnel:', '  gateways:', '    - name: gw1', '      config: wg1.conf', ''].join('\n'));
    await writeFile(join(d, 'wg1.conf'), wgQuick({ address: '10.64.0.2/32', dns: '10.64.0.1', endpoint: '192.0.2.10:51820' }));
    await chmod(join(d, 'wg1.conf'), 0o644);
    const r = await run('check', '--config', f);
    expect(r.code).toBe(0);
    expect(r.err.split('\n')).toEqual([
      `${f}:2:6: lan: warning: lan is ignored in host mode`,
      `${f}:6:15: tunnel.gateways[0].config: warning: ${join(d, 'wg1.conf')} is readable by other users (mode 0644); this wg-quick file holds a private key: chmod 600 it`,
      '',
    ]);
    expect(r.out.split('\n')[1]).toBe('  mode host, breakout auto, kill switch on');
  });
});

describe('cli: check refuses files another user could rewrite', () => {
  async function writable(mode: number, owner: number | null): Promise<{ f: string; wg: string }> {
    const d = await mkdtemp(join(dir, 'perm-'));
    const f = join(d, 'config.yaml');
    const wg = join(d, 'wg1.conf');
    await writeFile(f, ['mode: host', 'tunnel:', '  gateways:', '    - name: gw1', '      config: wg1.conf', ''].join('\n'));
    await writeFile(wg, wgQuick({ address: '10.64.0.2/32', dns: '10.64.0.1', endpoint: '192.0.2.10:51820' }));
    await chmod(wg, mode);
    if (owner !== null) await chown(wg, owner, owner);
    return { f, wg };
  }

  it('a wg-quick file writable by its group: exit 1, FILE:LINE:COL: key: message', async () => {
    const { f, wg } = await writable(0o660, null);
    const r = await run('check', '--config', f);
    expect(r).toEqual({
      code: 1,
      out: '',
      err: `${f}:5:15: tunnel.gateways[0].config: ${wg} is writable by its group (mode 0660): they could rewrite it, and with it where your traffic goes; chmod go-w it (600: it holds a private key)\n1 error\n`,
    });
  });

  it('a wg-quick file owned by another user: exit 1, even at mode 0600', async (ctx) => {
    if (process.geteuid?.() !== 0) {
      console.log('SKIPPED cli check ownership: chown to another user needs root');
      ctx.skip();
    }
    const { f, wg } = await writable(0o600, 4243);
    const r = await run('check', '--config', f);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`${f}:5:15: tunnel.gateways[0].config: ${wg} belongs to uid 4243, not to root or the user splitwan runs as (uid 0): that user could rewrite it, and with it where your traffic goes; chown it to root\n1 error\n`);
    // Given back to root, the same file passes.
    await chown(wg, 0, 0);
    expect((await run('check', '--config', f)).code).toBe(0);
  });
});

describe('cli: explain IP: the resolver\'s tag in the running daemon', () => {
  it('says which rule\'s answer tagged the address, for how long, and which path wins', async () => {
    const rules = (await loadConfig(good)).config.rules;
    const [r0, , r2] = rules.map((r) => ruleId(r));
    try {
      // Unlisted address, tagged by rule #0 (example.com via breakout): the tag decides.
      fakeTags.set('192.0.2.80', { ruleId: r0!, set: `tag4_${r0}`, expiresMs: 312_000 });
      const a = await run('explain', '--config', good, '192.0.2.80');
      expect(a.out).toContain('  tagged now by the resolver for rule #0 (example.com,*.cdn.example, via breakout) for another 312 s: the most recent name answered with it\n');
      expect(a.out).toContain('  connections to it take: breakout\n');
      // In rule #1's CIDR but tagged by the later rule #2: rule #1 stands first, it wins.
      fakeTags.set('203.0.113.9', { ruleId: r2!, set: `tag4_${r2}` });
      const b = await run('explain', '--config', good, '--json', '203.0.113.9');
      expect(JSON.parse(b.out)).toMatchObject({ rule: 1, tagged: { rule: 2, via: 'gw2', expiresInSeconds: null }, effectiveVia: 'gw2' });
      fakeTags.set('203.0.113.10', { ruleId: r0!, set: `tag4_${r0}` });
      expect(JSON.parse((await run('explain', '--config', good, '--json', '203.0.113.10')).out)).toMatchObject({ rule: 1, tagged: { rule: 0 }, effectiveVia: 'breakout' });
      // When the kernel cannot be read, it says why instead of guessing.
      fakeTags.set('192.0.2.81', { unknown: 'reading the kernel tags needs root' });
      expect((await run('explain', '--config', good, '192.0.2.81')).out).toContain('  tags: not known (reading the kernel tags needs root)\n');
      fakeTags.set('192.0.2.82', { ruleId: 'deadbeef', set: 'tag4_deadbeef' });
      expect((await run('explain', '--config', good, '192.0.2.82')).out).toContain('no longer in the config');
    } finally {
      fakeTags.clear();
    }
  });
});

describe('cli: explain --json', () => {
  async function json(...args: string[]): Promise<unknown> {
    const r = await run('explain', '--config', good, '--json', ...args);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    // One JSON object on one line.
    expect(r.out.endsWith('\n')).toBe(true);
    expect(r.out.trimEnd().split('\n')).toHaveLength(1);
    return JSON.parse(r.out);
  }

  it('a domain rule hit', async () => {
    expect(await json('WWW.Example.COM.')).toEqual({
      input: 'WWW.Example.COM.',
      kind: 'name',
      via: 'breakout',
      candidates: ['breakout'],
      rule: 0,
      ruleLabel: 'example.com,*.cdn.example',
      match: { kind: 'domain', value: 'example.com', keyPath: 'rules[0].domains[0]', pos: { file: good, line: 14, col: 15 } },
      rulePos: { file: good, line: 14, col: 5 },
    });
  });

  it('a CIDR hit', async () => {
    expect(await json('203.0.113.9')).toEqual({
      input: '203.0.113.9',
      kind: 'ip',
      via: 'gw2',
      candidates: ['gw2', 'gw1'],
      rule: 1,
      ruleLabel: '203.0.113.0/24',
      match: { kind: 'cidr', value: '203.0.113.0/24', keyPath: 'rules[1].cidrs[0]', pos: { file: good, line: 16, col: 13 } },
      rulePos: { file: good, line: 16, col: 5 },
      tagged: null,
    });
  });

  it('a list hit, for a name and for an address', async () => {
    expect(await json('www.netflix.com')).toEqual({
      input: 'www.netflix.com',
      kind: 'name',
      via: 'gw2',
      candidates: ['gw2'],
      rule: 2,
      ruleLabel: 'list stream',
      match: { kind: 'domain', value: 'netflix.com', list: 'stream', pos: { file: stream, line: 2, col: 1 } },
      rulePos: { file: good, line: 18, col: 5 },
    });
    const ip = (await json('198.51.100.200')) as { rule: number; match: unknown };
    expect(ip.rule).toBe(2);
    expect(ip.match).toEqual({ kind: 'cidr', value: '198.51.100.0/24', list: 'stream', pos: { file: stream, line: 4, col: 1 } });
  });

  it('the default', async () => {
    expect(await json('unknown.example')).toEqual({
      input: 'unknown.example',
      kind: 'name',
      via: 'tunnel',
      candidates: ['tunnel'],
      rule: null,
      ruleLabel: null,
      match: null,
      rulePos: null,
    });
  });

  it('--source selects a sources rule only for clients inside', async () => {
    const inside = (await json('kids.example', '--source', '192.168.1.9')) as Record<string, unknown>;
    expect(inside.rule).toBe(3);
    expect(inside.via).toBe('block');
    expect(inside.match).toEqual({ kind: 'domain', value: 'kids.example', keyPath: 'rules[3].domains[0]', pos: { file: good, line: 21, col: 15 } });
    expect(((await json('kids.example', '--source', '192.168.2.9')) as Record<string, unknown>).rule).toBeNull();
    expect(((await json('kids.example')) as Record<string, unknown>).rule).toBeNull();
  });
});

describe('cli: explain text', () => {
  it('names the rule position and the entry', async () => {
    const r = await run('explain', '--config', good, 'www.example.com');
    expect(r).toEqual({
      code: 0,
      err: '',
      out: [
        'www.example.com → breakout',
        `  rule #0 (example.com,*.cdn.example) at ${good}:14:5`,
        `  matched by rules[0].domains[0] at ${good}:14:15: "example.com" matches the name and its subdomains`,
        '  addresses answered for this name are routed via breakout',
        '',
      ].join('\n'),
    });
  });

  it('names the list entry, and the candidates of a via list', async () => {
    const list = await run('explain', '--config', good, 'www.netflix.com');
    expect(list.out).toBe(
      [
        'www.netflix.com → gw2',
        `  rule #2 (list stream) at ${good}:18:5`,
        `  matched by list "stream" entry at ${stream}:2:1: "netflix.com" matches the name and its subdomains`,
        '  addresses answered for this name are routed via gw2',
        '',
      ].join('\n'),
    );
    const cidr = await run('explain', '--config', good, '203.0.113.9');
    expect(cidr.out).toBe(
      [
        '203.0.113.9 → gw2 | gw1',
        `  rule #1 (203.0.113.0/24) at ${good}:16:5`,
        `  matched by rules[1].cidrs[0] at ${good}:16:13: 203.0.113.0/24 contains the address`,
        '  the first healthy of gw2, gw1 is used',
        '  not tagged by the resolver now',
        '',
      ].join('\n'),
    );
  });

  it('says when the default applies, and blocks', async () => {
    const def = await run('explain', '--config', good, 'unknown.example');
    expect(def.out).toBe(
      [
        'unknown.example → tunnel',
        '  no rule matches; the default applies (default: tunnel)',
        '  addresses answered for this name are routed via the active gateway',
        '',
      ].join('\n'),
    );
    const blocked = await run('explain', '--config', good, '--source', '192.168.1.9', 'kids.example');
    expect(blocked.out).toBe(
      [
        'kids.example → block',
        `  rule #3 (kids.example from 192.168.1.0/24) at ${good}:20:5`,
        `  matched by rules[3].domains[0] at ${good}:21:15: "kids.example" matches the name and its subdomains`,
        '',
      ].join('\n'),
    );
  });

  it('exits 1 with the errors when the config is bad', async () => {
    const r = await run('explain', '--config', bad, 'example.com');
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err.trimEnd().split('\n').at(-1)).toBe('3 errors');
  });
});

describe('cli: usage', () => {
  const hint = (cmd: string): string => `Run "splitwan ${cmd} --help" for usage.\n`;

  it('help exits 0 with the usage on stdout; no arguments exit 2 with it on stderr', async () => {
    for (const h of ['help', '--help', '-h']) {
      const r = await run(h);
      expect(r.code).toBe(0);
      expect(r.err).toBe('');
      expect(r.out.startsWith('Usage: splitwan <command> [options]\n')).toBe(true);
      expect(r.out).toContain('  explain [--config PATH] [--socket PATH] NAME|IP [--source IP] [--json] [--offline]\n');
    }
    const none = await run();
    expect(none.code).toBe(2);
    expect(none.out).toBe('');
    expect(none.err).toBe((await run('help')).out);
  });

  it('version exits 0', async () => {
    const r = await run('version');
    expect(r).toEqual({ code: 0, err: '', out: 'splitwan 0.1.0\n' });
  });

  it('COMMAND --help, COMMAND -h and help COMMAND print that command\'s usage, exit 0, and run nothing', async () => {
    for (const name of Object.keys(COMMANDS)) {
      const a = await run(name, '--help');
      expect(a.code, name).toBe(0);
      expect(a.err, name).toBe('');
      expect(a.out.split('\n')[0], name).toBe(`Usage: splitwan ${name}${COMMANDS[name]!.synopsis ? ` ${COMMANDS[name]!.synopsis}` : ''}`);
      expect(await run(name, '-h'), name).toEqual(a);
      expect(await run('help', name), name).toEqual(a);
    }
    // Help wins over what the command would need or do: no NAME, no config read, no root check.
    const ex = await run('explain', '--config', join(dir, 'nope.yaml'), '--help');
    expect(ex.code).toBe(0);
    expect(ex.out).toContain('  --offline ');
    expect(ex.out).toContain('  --source IP ');
    expect(ex.out).toContain('  -c, --config PATH ');
    expect((await run('run', '--help')).out).toContain('Run the daemon (root)');
  });

  it('an unknown command exits 2 and suggests the nearest', async () => {
    expect(await run('stauts')).toEqual({ code: 2, out: '', err: 'splitwan: unknown command "stauts" (did you mean "status"?)\nRun "splitwan help" for the commands.\n' });
    expect((await run('explian', 'x.example')).err).toContain('(did you mean "explain"?)');
    expect((await run('verison')).err).toContain('(did you mean "version"?)');
    expect(await run('frobnicate')).toEqual({ code: 2, out: '', err: 'splitwan: unknown command "frobnicate"\nRun "splitwan help" for the commands.\n' });
    expect(await run('help', 'relaod')).toEqual({ code: 2, out: '', err: 'splitwan: unknown command "relaod" (did you mean "reload"?)\nRun "splitwan help" for the commands.\n' });
    // Names of Object.prototype are no commands.
    expect((await run('constructor')).code).toBe(2);
    expect((await run('help', 'toString')).code).toBe(2);
  });

  it('an unknown sub-command suggests the nearest', async () => {
    expect(await run('lists', 'refrsh')).toEqual({ code: 2, out: '', err: 'splitwan lists: unknown lists command "refrsh" (did you mean "refresh"?)\n' });
    expect(await run('dns', 'purge')).toEqual({ code: 2, out: '', err: 'splitwan dns: unknown dns command "purge" (try: splitwan dns flush)\n' });
  });

  it('an unknown option exits 2, suggesting the nearest option of that command', async () => {
    expect(await run('check', '--frob')).toEqual({ code: 2, out: '', err: `splitwan check: Unknown option '--frob'\n${hint('check')}` });
    const ex = await run('explain', '--config', good, '--verbose', 'example.com');
    expect(ex).toEqual({ code: 2, out: '', err: `splitwan explain: Unknown option '--verbose'\n${hint('explain')}` });
    expect(await run('status', '--jsno')).toEqual({ code: 2, out: '', err: `splitwan status: Unknown option '--jsno' (did you mean --json?)\n${hint('status')}` });
    expect((await run('explain', '--ofline', 'x.example')).err).toContain("Unknown option '--ofline' (did you mean --offline?)");
    expect((await run('reload', '--dryrun')).err).toContain('(did you mean --dry-run?)');
  });

  it('an option without its value exits 2', async () => {
    expect(await run('check', '--config')).toEqual({ code: 2, out: '', err: `splitwan check: Option '-c, --config <value>' argument missing\n${hint('check')}` });
  });

  it('a missing NAME and an extra argument exit 2', async () => {
    expect(await run('explain', '--config', good)).toEqual({ code: 2, out: '', err: `splitwan explain: missing NAME|IP\n${hint('explain')}` });
    expect(await run('explain', '--config', good, 'a.example', 'b.example')).toEqual({
      code: 2,
      out: '',
      err: `splitwan explain: unexpected argument "b.example"\n${hint('explain')}`,
    });
    expect(await run('check', '--config', good, 'extra')).toEqual({ code: 2, out: '', err: `splitwan check: unexpected argument "extra"\n${hint('check')}` });
  });

  it('a bad --source exits 2 before the config is read', async () => {
    const r = await run('explain', '--config', join(dir, 'nope.yaml'), '--source', '999.1.1.1', 'example.com');
    expect(r).toEqual({ code: 2, out: '', err: 'splitwan explain: --source "999.1.1.1" is not an IP address\n' });
  });

  it('an explain target that is neither a name nor an address exits 2', async () => {
    const r = await run('explain', '--config', good, 'exa mple.com');
    expect(r).toEqual({
      code: 2,
      out: '',
      err: 'splitwan explain: "exa mple.com" is not a domain name (bad label "exa mple"); give a domain name or an IP address\n',
    });
    expectNoStack(r);
  });

  it('a mistyped IPv4 address is not explained as a domain name', async () => {
    // 300.1.2.3 is no address, and a name cannot have an all-numeric top-level label (RFC 3696 2).
    const r = await run('explain', '--config', good, '300.1.2.3');
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^splitwan explain: .*300\.1\.2\.3/);
  });
});

describe('cli: every option is documented where users look', () => {
  /** `--json`, `--dry-run`... in a line of text. */
  const flagsIn = (text: string): string[] => [...text.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1]!).sort();

  it('each command\'s usage line lists exactly the options it accepts, and its --help explains each', () => {
    for (const [name, c] of Object.entries(COMMANDS)) {
      expect(flagsIn(c.synopsis), name).toEqual(Object.keys(c.options).sort());
      const help = commandUsage(name);
      for (const o of Object.keys(c.options)) expect(help, `${name} --${o}`).toMatch(new RegExp(`^  (-[a-z], )?--${o}\\b.*\\S`, 'm'));
    }
  });

  it('the README\'s command list shows each command with the same options as its usage, and vice versa', () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const block = /## Commands\n\n```\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const listed = new Map<string, string>();
    for (const line of block!.split('\n').filter((l) => l.startsWith('splitwan '))) {
      // A description follows as a shell comment.
      const [, name, rest] = /^splitwan (\S+)([^#]*)/.exec(line)!;
      listed.set(name!, rest!.trim());
    }
    expect([...listed.keys()].sort()).toEqual([...Object.keys(COMMANDS), 'help'].sort());
    expect(listed.get('help')).toBe('[COMMAND] | version');
    for (const [name, c] of Object.entries(COMMANDS)) {
      expect(listed.get(name), name).toBe(c.synopsis);
      expect(flagsIn(listed.get(name)!), name).toEqual(Object.keys(c.options).sort());
    }
  });
});

describe('cli: the launcher', () => {
  it('bin/splitwan check runs the built CLI and sets the exit code', async () => {
    const bin = fileURLToPath(new URL('../../bin/splitwan', import.meta.url));
    const built = fileURLToPath(new URL('../../dist/daemon/cli.js', import.meta.url));
    if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
    const exec = (args: string[]): Promise<Run> =>
      new Promise((resolve) => {
        execFile(process.execPath, [bin, ...args], { timeout: budget(15_000) }, (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
          resolve({ code, out: String(stdout), err: String(stderr) });
        });
      });

    const ok = await exec(['check', '--config', good]);
    expect(ok.err).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.out.split('\n')[0]).toBe(`${good}: OK`);
    expect(ok.out).toContain('  gateway gw1: priority 100, 10.64.0.2/32 → 192.0.2.10:51820, dns 10.64.0.1\n');
    expect(ok.out).toContain(`  list stream: 3 entries from ${stream}\n`);

    const ko = await exec(['check', '--config', bad]);
    expect(ko.code).toBe(1);
    expect(ko.out).toBe('');
    expect(ko.err).toContain(`${bad}:3:3: breakout.interfce: unknown key "interfce" (did you mean "interface"?)\n`);
    expect(ko.err.endsWith('3 errors\n')).toBe(true);
    expect(ko.err).not.toContain('internal error');
  });
});
