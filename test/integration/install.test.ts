// install.sh end to end, into temporary directories only:
//
//   checkout (this repo, already built)            TMP/
//     install.sh --prefix TMP/opt/splitwan   ──▶     opt/splitwan/  bin dist node_modules (prod) docs
//                --bindir TMP/bin                                   config/schema.json packaging/
//                --etc    TMP/etc                    bin/splitwan ─▶ ../opt/splitwan/bin/splitwan
//                --no-service --no-deps --no-build   etc/config.yaml (0600, dir 0700)
//
// No system packages, no systemd, nothing outside TMP (npm's cache and logs
// are pointed into TMP too). The rendered unit is checked statically and with
// `systemd-analyze verify` when that exists.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../daemon/runtime-settings.js';
import { budget } from '../helpers/emulation.js';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const INSTALL = join(REPO, 'install.sh');
const CAPS = ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'];

const tmp = mkdtempSync(join(tmpdir(), 'splitwan-install-'));
const prefix = join(tmp, 'opt', 'splitwan');
const bindir = join(tmp, 'bin');
const etc = join(tmp, 'etc');
const link = join(bindir, 'splitwan');
const config = join(etc, 'config.yaml');
// npm (prune) writes its cache and logs here, not into the user's home.
// install.sh takes the node in PATH: the one running this test comes first
// (CI runs the suites under the packaged Node too, not only the system's).
const env = {
  ...process.env,
  PATH: [dirname(process.execPath), process.env.PATH].filter(Boolean).join(':'),
  npm_config_cache: join(tmp, 'npm-cache'),
  npm_config_update_notifier: 'false',
};
const pathArgs = ['--prefix', prefix, '--bindir', bindir, '--etc', etc];
const testArgs = [...pathArgs, '--no-service', '--no-deps', '--no-build'];

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: opts.cwd ?? '/', env, encoding: 'utf8', timeout: budget(120_000) }); // budget(): npm and the CLI run emulated under test:arch
}
function install(...extra: string[]): SpawnSyncReturns<string> {
  return run(INSTALL, [...testArgs, ...extra]);
}
function show(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}
function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
/** Every entry under dir with what would show a rewrite: inode, size, mtime, mode, link target. */
function snapshot(dir: string, out = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = lstatSync(p);
    out.set(p, `${s.ino} ${s.size} ${s.mtimeMs} ${s.mode} ${s.isSymbolicLink() ? readlinkSync(p) : ''}`);
    if (s.isDirectory()) snapshot(p, out);
  }
  return out;
}
function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    out.push(p);
    if (lstatSync(p).isDirectory()) walk(p, out);
  }
  return out;
}

let first: SpawnSyncReturns<string>;
let firstMs = 0;

beforeAll(() => {
  expect(existsSync(join(REPO, 'dist', 'daemon', 'cli.js')), 'build first: npm run build (npm test does)').toBe(true);
  const t0 = Date.now();
  first = install();
  firstMs = Date.now() - t0;
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('install.sh', () => {
  it('parses as bash, and the rendered procd script as sh', () => {
    expect(run('bash', ['-n', INSTALL]).status).toBe(0);
    const init = join(prefix, 'packaging', 'splitwan.init');
    const r = run('sh', ['-n', init]);
    expect(r.status, show(r)).toBe(0);
    const text = readFileSync(init, 'utf8');
    expect(text).toMatch(/^#!\/bin\/sh \/etc\/rc\.common\n/);
    expect(text).toContain('USE_PROCD=1');
    expect(text).toMatch(/procd_set_param respawn/);
    expect(text).toContain(`PROG='${prefix}/bin/splitwan'`);
    expect(text).toContain(`CONFIG='${config}'`);
    expect(text).toContain(`procd_set_param command "$NODE" ${DAEMON_NODE_FLAGS.join(' ')} "$PROG" run --config "$CONFIG"`);
    for (const [k, v] of Object.entries(DAEMON_ENV)) expect(text).toContain(`procd_set_param env ${k}=${v}`);
    expect(text).not.toMatch(/@[A-Z]+@/);
  });

  it('--help, unknown options and unsafe paths', () => {
    const help = run(INSTALL, ['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--prefix DIR[\s\S]*--bindir DIR[\s\S]*--etc DIR[\s\S]*--no-deps[\s\S]*--no-service[\s\S]*--uninstall/);
    const bad = run(INSTALL, ['--frobnicate']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('unknown option "--frobnicate"');
    const rel = run(INSTALL, ['--prefix', 'opt/splitwan', '--no-service', '--no-deps']);
    expect(rel.status).toBe(2);
    expect(rel.stderr).toContain('--prefix must be an absolute path');
    const dots = run(INSTALL, ['--prefix', `${tmp}/../x`, '--no-service', '--no-deps']);
    expect(dots.status).toBe(2);
  });

  it('installs into the prefix, links the command and writes the config 0600 in a 0700 dir', () => {
    expect(first.status, show(first)).toBe(0);
    console.info(`install.sh (first run, --no-build): ${firstMs} ms`);
    for (const f of ['package.json', 'package-lock.json', 'bin/splitwan', 'dist/daemon/cli.js', 'config/schema.json', 'docs/errors.md', 'docs/examples/config.yaml', 'node_modules/yaml/package.json', 'packaging/splitwan.service', '.splitwan-install', 'dist/lab/lab.js', 'dist/lab/echo-server.mjs', 'dist/web-assets/index.html', 'dist/web-assets/app.js']) {
      expect(existsSync(join(prefix, f)), f).toBe(true);
    }
    // Production dependencies only, no tests, no tool caches.
    for (const f of ['node_modules/vitest', 'node_modules/typescript', 'node_modules/fast-check', 'node_modules/.vite', 'dist/test/e2e', 'dist/test/helpers', 'dist/test/unit']) {
      expect(existsSync(join(prefix, f)), f).toBe(false);
    }
    // Nothing points back into the checkout.
    for (const p of walk(prefix)) {
      if (lstatSync(p).isSymbolicLink()) expect(resolve(join(p, '..'), readlinkSync(p)).startsWith(REPO + '/'), p).toBe(false);
    }
    expect(readlinkSync(link)).toBe(join(prefix, 'bin', 'splitwan'));
    expect(statSync(etc).mode & 0o777).toBe(0o700);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    const text = readFileSync(config, 'utf8');
    // The example, with its schema reference pointed at the install.
    expect(text.split('\n')[0]).toBe(`# yaml-language-server: $schema=${prefix}/config/schema.json`);
    expect(text.split('\n').slice(1).join('\n')).toBe(readFileSync(join(REPO, 'docs/examples/config.yaml'), 'utf8').split('\n').slice(1).join('\n'));
    expect(first.stdout).toContain('service not installed (--no-service)');
  });

  it('the installed command runs without the checkout (cwd /)', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const v = run(link, ['version']);
    expect(v.status, show(v)).toBe(0);
    expect(v.stdout).toBe(`splitwan ${pkg.version}\n`);
    // The process runs the installed files, not the checkout's.
    const where = run(process.execPath, ['-e', 'console.log(require("fs").realpathSync(process.argv[1]))', link]);
    expect(where.stdout.trim()).toBe(join(prefix, 'bin', 'splitwan'));
  });

  it('check on the fresh example config: fails on the files it refers to, passes once they exist', () => {
    // The example names two wg-quick files and a list next to it, which the
    // installer does not invent: check reports exactly those three (exit 1),
    // which is also why the service would not be enabled yet.
    const r = run(link, ['check', '--config', config]);
    expect(r.status, show(r)).toBe(1);
    expect(r.stderr).toContain(`${config}:12:15: tunnel.gateways[0].config: cannot read ${etc}/gw1.conf: no such file`);
    expect(r.stderr).toContain(`${config}:15:15: tunnel.gateways[1].config: cannot read ${etc}/gw2.conf: no such file`);
    expect(r.stderr).toMatch(/lists\.mine\.file: cannot read /);
    expect(r.stderr.trim().split('\n').at(-1)).toBe('3 errors');

    // With those files the installed tree validates everything (schema, wg-quick, lists).
    const key = (): string => Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 7 + 1) & 0xff)).toString('base64');
    for (const [gw, n] of [['gw1', 2], ['gw2', 3]] as const) {
      const f = join(etc, `${gw}.conf`);
      writeFileSync(f, `[Interface]\nPrivateKey = ${key()}\nAddress = 10.7.${n}.2/32\nDNS = 10.7.${n}.1\n\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.${n}:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
      chmodSync(f, 0o600);
    }
    mkdirSync(join(etc, 'lists'));
    writeFileSync(join(etc, 'lists', 'mine.txt'), 'netflix.test\n');
    const ok = run(link, ['check', '--config', config]);
    expect(ok.status, show(ok)).toBe(0);
    expect(ok.stdout).toContain(`${config}: OK`);
    expect(ok.stdout).toContain('gateway gw2: priority 2');
  });

  it('a second run changes nothing, keeps an edited config, and succeeds', () => {
    const marker = `# edited by the test ${process.pid}\n`;
    writeFileSync(config, readFileSync(config, 'utf8') + marker);
    const before = snapshot(tmp);
    const t0 = Date.now();
    const again = install();
    console.info(`install.sh (second run): ${Date.now() - t0} ms`);
    expect(again.status, show(again)).toBe(0);
    expect(again.stdout).toContain(`${prefix} is up to date`);
    expect(again.stdout).toContain(`kept ${config}`);
    const after = snapshot(tmp);
    // The prefix's parent is where the new tree is staged (and, being equal, dropped):
    // its own mtime moves; nothing in it does.
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter(
      (p) => before.get(p) !== after.get(p) && p !== join(tmp, 'opt') && !p.startsWith(join(tmp, 'npm-cache')),
    );
    expect(changed).toEqual([]);
    expect(readFileSync(config, 'utf8').endsWith(marker)).toBe(true);
    expect(statSync(config).mode & 0o777).toBe(0o600);
  }, budget(120_000)); // install.sh stages and compares the whole tree: 28 s at a load of 14 (not a figure)

  it('--destdir stages a package tree: paths rendered as installed, files under DIR, no link, no service', () => {
    const dest = join(tmp, 'destdir');
    const r = run(INSTALL, ['--destdir', dest, '--prefix', '/usr/lib/splitwan', '--bindir', '/usr/bin', '--etc', '/etc/splitwan', '--no-build']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toContain(`package tree in ${dest}: no link, no service`);
    expect(readdirSync(dest).sort()).toEqual(['etc', 'usr']);
    expect(readdirSync(join(dest, 'usr'))).toEqual(['lib']);
    const unit = readFileSync(join(dest, 'usr/lib/splitwan/packaging/splitwan.service'), 'utf8');
    expect(unit).toContain(`ExecStart=${process.execPath} ${DAEMON_NODE_FLAGS.join(' ')} /usr/lib/splitwan/bin/splitwan run --config /etc/splitwan/config.yaml`);
    expect(readFileSync(join(dest, 'usr/lib/splitwan/bin/splitwan'), 'utf8').split('\n')[0]).toBe(`#!${process.execPath}`);
    expect(readFileSync(join(dest, 'etc/splitwan/config.yaml'), 'utf8').split('\n')[0]).toBe('# yaml-language-server: $schema=/usr/lib/splitwan/config/schema.json');
    expect(statSync(join(dest, 'etc/splitwan/config.yaml')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dest, 'etc/splitwan')).mode & 0o777).toBe(0o700);
    // The package's options go together.
    const lone = run(INSTALL, ['--node-arch', 'arm64', ...testArgs]);
    expect(lone.status).toBe(2);
    expect(lone.stderr).toContain('--node-arch is for package trees: use it with --destdir');
    const un = run(INSTALL, ['--destdir', dest, '--uninstall']);
    expect(un.status).toBe(2);
  }, 60_000);

  it('refuses a prefix that is not empty and not a splitwan install', () => {
    const other = join(tmp, 'not-ours');
    mkdirSync(other);
    writeFileSync(join(other, 'precious'), 'keep me\n');
    const r = run(INSTALL, ['--prefix', other, '--bindir', join(tmp, 'bin2'), '--etc', join(tmp, 'etc2'), '--no-service', '--no-deps', '--no-build']);
    expect(r.status, show(r)).toBe(1);
    expect(r.stderr).toContain('is not a splitwan install');
    expect(readdirSync(other)).toEqual(['precious']);
    expect(existsSync(join(tmp, 'bin2'))).toBe(false);
    const u = run(INSTALL, ['--uninstall', '--prefix', other, '--bindir', join(tmp, 'bin2'), '--no-service']);
    expect(u.status, show(u)).toBe(1);
    expect(readFileSync(join(other, 'precious'), 'utf8')).toBe('keep me\n');
  });

  it('without root: says so before touching anything (default paths)', () => {
    // As root, run it as nobody; as another user, run it directly.
    const asUser = (args: string[]): SpawnSyncReturns<string> | null => {
      if (process.getuid?.() !== 0) return run(INSTALL, args);
      const runuser = which('runuser');
      if (!runuser) return null;
      return run(runuser, ['-u', 'nobody', '--', INSTALL, ...args]);
    };
    const r = asUser([]);
    if (!r) {
      console.warn('SKIPPED: non-root install.sh check (root without runuser)');
      return;
    }
    expect(r.status, show(r)).toBe(1);
    expect(r.stderr).toContain('the service needs root: run sudo ./install.sh');
    const paths = asUser(['--no-service', '--no-deps']);
    expect(paths!.status, show(paths!)).toBe(1);
    expect(paths!.stderr).toMatch(/needs root to write \/opt\/splitwan .*\/usr\/local\/bin .*\/etc\/splitwan: run sudo \.\/install\.sh/);
  });

  describe('the systemd unit', () => {
    const unitPath = (): string => join(prefix, 'packaging', 'splitwan.service');
    const settings = (): [string, string][] =>
      readFileSync(unitPath(), 'utf8')
        .split('\n')
        .filter((l) => l.trim() && !/^\s*[#;]/.test(l) && !l.startsWith('['))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
    const values = (key: string): string[] => settings().filter(([k]) => k === key).map(([, v]) => v);

    it('keeps exactly CAP_NET_ADMIN, CAP_NET_BIND_SERVICE and CAP_NET_RAW, and no other capability', () => {
      for (const key of ['CapabilityBoundingSet', 'AmbientCapabilities']) {
        const v = values(key);
        expect(v, key).toHaveLength(1);
        expect(v[0]!.split(/\s+/).sort()).toEqual(CAPS);
      }
      const mentioned = new Set(settings().flatMap(([, v]) => v.match(/\bCAP_[A-Z_]+/g) ?? []));
      expect([...mentioned].sort()).toEqual(CAPS);
    });

    it('is hardened and runs check before the daemon', () => {
      const one = (k: string): string | undefined => values(k)[0];
      expect(one('ProtectSystem')).toBe('strict');
      expect(one('ReadWritePaths')!.split(/\s+/)).toEqual(expect.arrayContaining(['/run/splitwan', '/var/lib/splitwan']));
      expect(one('ReadOnlyPaths')).toBe(etc);
      expect(one('ProtectHome')).toBe('yes');
      expect(one('PrivateTmp')).toBe('yes');
      expect(one('NoNewPrivileges')).toBe('yes');
      expect(one('RestrictAddressFamilies')!.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
      expect(one('Restart')).toBe('on-failure');
      expect(one('RuntimeDirectory')).toBe('splitwan');
      expect(one('StateDirectory')).toBe('splitwan');
      expect(values('ExecStartPre')).toContain(`${process.execPath} ${prefix}/bin/splitwan check --config ${config}`);
      // The daemon's memory settings, as daemon/runtime-settings.ts has them (bench dns measures with those).
      expect(one('ExecStart')).toBe(`${process.execPath} ${DAEMON_NODE_FLAGS.join(' ')} ${prefix}/bin/splitwan run --config ${config}`);
      expect(values('Environment')).toEqual(expect.arrayContaining(Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`)));
      // ExecReload only if the daemon handles SIGHUP (the config store reloads on it; unhandled, SIGHUP would end Node).
      const hup = readFileSync(join(REPO, 'config', 'store.ts'), 'utf8').includes("'SIGHUP'");
      expect(values('ExecReload').length > 0).toBe(hup);
      expect(readFileSync(unitPath(), 'utf8')).not.toMatch(/@[A-Z]+@/);
    });

    it('passes systemd-analyze verify', () => {
      const analyze = which('systemd-analyze');
      if (!analyze) {
        console.warn('SKIPPED: systemd-analyze verify (systemd-analyze is not installed)');
        return;
      }
      const r = run(analyze, ['verify', '--man=no', unitPath()]);
      expect(r.status, show(r)).toBe(0);
      expect(r.stderr + r.stdout, show(r)).not.toMatch(/splitwan\.service/);
    });
  });

  it('--uninstall removes the prefix and the link, keeps ETC, and can run again', () => {
    const r = run(INSTALL, ['--uninstall', ...pathArgs, '--no-service']);
    expect(r.status, show(r)).toBe(0);
    expect(existsSync(prefix)).toBe(false);
    expect(existsSync(join(tmp, 'opt'))).toBe(true); // only the prefix itself goes
    expect(() => lstatSync(link)).toThrow();
    expect(readFileSync(config, 'utf8')).toContain(`# edited by the test ${process.pid}`);
    expect(existsSync(join(etc, 'gw1.conf'))).toBe(true);
    expect(r.stdout).toContain(`kept ${etc}`);
    const again = run(INSTALL, ['--uninstall', ...pathArgs, '--no-service']);
    expect(again.status, show(again)).toBe(0);
    // No leftovers from staging next to the prefix.
    expect(readdirSync(join(tmp, 'opt'))).toEqual([]);
  });
});
