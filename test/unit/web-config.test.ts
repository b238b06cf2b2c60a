// The dashboard's config (web:, queryLog:) as loadConfig reads it, and
// `splitwan web passwd` writing a password hash into a real config file that
// loadConfig then accepts and whose hash verifies.
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.js';
import { DEFAULT_CLIENT_NAME_FILES, loadConfig, webListenProblem } from '../../config/load.js';
import { webPasswdCommand } from '../../daemon/commands/web-passwd.js';
import { hashPassword, verifyPassword } from '../../daemon/web/password.js';
import type { Io } from '../../daemon/cli.js';

let dir: string;
let seq = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitwan-webcfg-'));
  await writeFile(join(dir, 'wg1.conf'), `[Interface]\nPrivateKey = ${randomBytes(32).toString('base64')}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n\n[Peer]\nPublicKey = ${randomBytes(32).toString('base64')}\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const BASE = ['# my router', 'mode: host', 'tunnel:', '  gateways:', '    - name: gw1', '      config: wg1.conf'];
async function write(lines: string[]): Promise<string> {
  const file = join(dir, `c${++seq}.yaml`);
  await writeFile(file, [...BASE, ...lines].join('\n') + '\n', { mode: 0o640 });
  return file;
}
async function errorsOf(lines: string[]): Promise<string[]> {
  const e = await loadConfig(await write(lines)).then(() => null, (x: unknown) => x);
  if (!(e instanceof ConfigError)) throw new Error('expected a ConfigError');
  return e.issues.filter((i) => i.severity === 'error').map((i) => `${i.pos.line}:${i.keyPath}: ${i.message}`);
}
function capture(): Io & { text: () => string } {
  let out = '';
  return { out: (t) => void (out += t), err: (t) => void (out += t), text: () => out };
}

describe('web.listen: never where a WAN can reach it (refused at check time)', () => {
  it('refuses wildcards, public and CGNAT addresses; takes loopback and private LAN ones', async () => {
    for (const bad of ['0.0.0.0:8080', '[::]:8080', '203.0.113.5:8080', '100.64.0.1:8080', '[2001:db8::1]:8080']) {
      const errs = await errorsOf(['web:', `  listen: "${bad}"`]);
      expect(errs, bad).toEqual([expect.stringMatching(/^8:web\.listen: .*(every address|not a loopback or private LAN address)/)]);
    }
    for (const good of ['127.0.0.1', '192.168.1.1', '10.1.2.3', '172.20.0.1', 'fd00::1', '::1']) expect(webListenProblem(good), good).toBeNull();
    const ok = await loadConfig(await write(['web:', '  listen: 192.168.1.1:8080', '  publicRead: true']));
    expect(ok.config.web).toEqual({ listen: { host: '192.168.1.1', port: 8080 }, passwordHash: null, publicRead: true, tls: null });
    expect(ok.warnings.map((w) => w.message)).toContainEqual(expect.stringContaining('no web.passwordHash'));
  });

  it('refuses a passwordHash that splitwan web passwd did not make', async () => {
    expect(await errorsOf(['web:', '  passwordHash: hunter22'])).toEqual([expect.stringMatching(/^8:web\.passwordHash: not a hash made by `splitwan web passwd`/)]);
  });

  it('queryLog defaults: on, clients shown, 10000 records on a host, memory only', async () => {
    const c = (await loadConfig(await write([]))).config;
    expect(c.queryLog).toEqual({ privacy: 'full', size: 10000, file: null, clientNames: DEFAULT_CLIENT_NAME_FILES });
    expect(c.web.listen).toBeNull();
    const c2 = (await loadConfig(await write(['queryLog:', '  privacy: anonymize', '  size: 500', '  file: q.log', '  clientNames: leases']))).config;
    expect(c2.queryLog).toEqual({ privacy: 'anonymize', size: 500, file: { path: join(dir, 'q.log'), maxBytes: 10 << 20, keep: 3 }, clientNames: [join(dir, 'leases')] });
  });
});

describe('splitwan web passwd', () => {
  it('hashes the piped password into web.passwordHash, keeping comments and the file mode; the daemon can load it', async () => {
    const file = await write(['web:', '  listen: 127.0.0.1:8080 # loopback']);
    const stdin = new PassThrough();
    stdin.end('correct horse\nignored line\n');
    const io = capture();
    expect(await webPasswdCommand({ config: file }, io, stdin)).toBe(0);
    const text = await readFile(file, 'utf8');
    expect(text).toContain('# my router');
    expect(text).toContain('listen: 127.0.0.1:8080 # loopback');
    expect(text).not.toContain('correct horse');
    expect((await stat(file)).mode & 0o777).toBe(0o640);
    const loaded = await loadConfig(file);
    expect(await verifyPassword('correct horse', loaded.config.web.passwordHash!)).toBe(true);
    expect(await verifyPassword('correct horsf', loaded.config.web.passwordHash!)).toBe(false);
  });

  it('on a terminal: no echo, asked twice, a mismatch or a short password changes nothing', async () => {
    const file = await write([]);
    const before = await readFile(file, 'utf8');
    const tty = (typed: string): PassThrough & { isTTY: boolean; raw: boolean[]; setRawMode(r: boolean): void } => {
      const s = Object.assign(new PassThrough(), { isTTY: true, raw: [] as boolean[], setRawMode(r: boolean) { s.raw.push(r); } });
      setTimeout(() => {
        for (const ch of typed) s.write(ch);
      }, 5);
      return s;
    };
    const io = capture();
    expect(await webPasswdCommand({ config: file }, io, tty('secret-1x\rsecret-2\r'))).toBe(2);
    expect(io.text()).toContain('differ');
    expect(io.text()).not.toContain('secret');
    const short = capture();
    expect(await webPasswdCommand({ config: file }, short, tty('abc\r'))).toBe(2);
    expect(await readFile(file, 'utf8')).toBe(before);
    const good = tty('pass word!\u007f!\rpass word!\r');
    expect(await webPasswdCommand({ config: file }, capture(), good)).toBe(0);
    expect(good.raw).toEqual([true, false, true, false]);
    expect(await verifyPassword('pass word!', (await loadConfig(file)).config.web.passwordHash!)).toBe(true);
  });

  it('verifyPassword refuses hashes with parameters that would make a login cost seconds or gigabytes', async () => {
    const h = await hashPassword('x'.repeat(10), { N: 1024, r: 8, p: 1 });
    expect(await verifyPassword('x'.repeat(10), h)).toBe(true);
    expect(await verifyPassword('x'.repeat(10), h.replace('$1024$', `$${1 << 24}$`))).toBe(false);
    expect(await verifyPassword('x'.repeat(10), 'scrypt$1024$8$1$AAAA$AAAA')).toBe(false);
  });
});
