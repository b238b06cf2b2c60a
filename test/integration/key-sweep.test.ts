// The sweep of WireGuard key files a killed daemon left (daemon/tunnel/key-dirs-linux.ts)
// on a real temp directory, and the leak it exists for: a process running the
// real LinuxTunnels (built, dist/) is SIGKILLed while `wg setconf` holds its
// key file, and the next sweep removes it.
//
//   <tmp>/splitwan-wg-<pid>-XXXXXX/swg-gw1-0.conf  (0600 in 0700: the private key)
//
// The commands are a fake runner (no ip, no wg: nothing leaves this directory).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyDirPrefix, STALE_MS, sweepKeyDirs } from '../../daemon/tunnel/key-dirs-linux.js';
import type { Logger } from '../../lib/logger.js';

const root = join(import.meta.dirname, '..', '..');
const built = join(root, 'dist', 'daemon', 'tunnel', 'tunnels-linux.js');
const isRoot = process.geteuid?.() === 0;

function recorder(): Logger & { lines: { level: string; obj: object; msg: string }[] } {
  const lines: { level: string; obj: object; msg: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg: msg ?? '' });
  const l = { lines, trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => l };
  return l;
}

/** A pid that was a process a moment ago and is none now. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), `splitwan-sweep-${process.pid}-`));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A key directory as setconf makes one: 0700, a 0600 key file inside. */
function keyDir(parent: string, name: string, files: Record<string, string> = { 'swg-gw1-0.conf': '[Interface]\nPrivateKey = (a key)\n' }): string {
  const d = join(parent, name);
  mkdirSync(d, { mode: 0o700 });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text, { mode: 0o600 });
  return d;
}

describe('sweepKeyDirs on a real temp directory', () => {
  it('removes only its own leftovers: dead maker, old, its owner, 0700, key files only', () => {
    const parent = mkdtempSync(join(tmp, 'case-'));
    const dead = deadPid();
    const old = (Date.now() - 2 * STALE_MS) / 1000;
    const gone = keyDir(parent, `splitwan-wg-${dead}-Ab12Cd`);
    const legacyOld = keyDir(parent, 'splitwan-wg-Xy34Zw');
    utimesSync(legacyOld, old, old);
    const legacyNew = keyDir(parent, 'splitwan-wg-Qq56Rr');
    const mine = keyDir(parent, `${keyDirPrefix()}Mm78Nn`);
    const open = keyDir(parent, `splitwan-wg-${dead}-Op90Pq`, { 'swg-gw1-0.conf': 'key', 'notes.txt': 'not ours' });
    const wide = keyDir(parent, `splitwan-wg-${dead}-Wd12Ef`);
    chmodSync(wide, 0o755);
    // A symlink with a key directory's name, pointing at a directory that must survive.
    const target = keyDir(parent, 'precious');
    symlinkSync(target, join(parent, `splitwan-wg-${dead}-Ln34Kk`));
    const unrelated = keyDir(parent, 'splitwan-wgx-1-Ab12Cd');

    const log = recorder();
    const removed = sweepKeyDirs(parent, log);

    expect(removed.sort()).toEqual([gone, legacyOld].sort());
    for (const d of [gone, legacyOld]) expect(existsSync(d)).toBe(false);
    for (const d of [legacyNew, mine, open, wide, target, unrelated, join(parent, `splitwan-wg-${dead}-Ln34Kk`)]) expect(existsSync(d), d).toBe(true);
    expect(readdirSync(target)).toEqual(['swg-gw1-0.conf']);
    expect(readdirSync(open).sort()).toEqual(['notes.txt', 'swg-gw1-0.conf']);
    expect(log.lines).toContainEqual({ level: 'warn', obj: { dir: open, unexpected: ['notes.txt'] }, msg: 'a key directory holds something splitwan never puts there: left alone' });
    expect(log.lines).toContainEqual({ level: 'info', obj: { removed }, msg: 'removed WireGuard key files left by a killed run' });
    // Nothing to do the second time.
    expect(sweepKeyDirs(parent, log)).toEqual([]);
  });

  it('leaves a directory of another user alone, even one of a dead pid', (ctx) => {
    if (!isRoot) {
      console.log('SKIPPED key sweep ownership: chown to another user needs root');
      ctx.skip();
    }
    const parent = mkdtempSync(join(tmp, 'owner-'));
    const theirs = keyDir(parent, `splitwan-wg-${deadPid()}-Th12Rs`);
    chownSync(theirs, 4244, 4244);
    expect(sweepKeyDirs(parent, recorder())).toEqual([]);
    expect(existsSync(theirs)).toBe(true);
  });

  it('a temp directory it cannot read is logged, not thrown', () => {
    const log = recorder();
    expect(sweepKeyDirs(join(tmp, 'does-not-exist'), log)).toEqual([]);
    expect(log.lines.map((l) => l.msg)).toEqual(['cannot read the temp directory to sweep key files']);
  });
});

describe('a daemon killed with -9 while wg setconf holds its key file', () => {
  it('leaves the key file behind, and the next sweep removes it', async () => {
    if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
    const parent = mkdtempSync(join(tmp, 'kill-'));
    const key = randomBytes(32).toString('base64');
    // The real LinuxTunnels; the runner answers every command but `wg setconf`, which never returns.
    const script = `
      const { LinuxTunnels } = await import(${JSON.stringify(pathToFileURL(built).href)});
      const runner = { run: (argv) => argv[0] === 'wg' && argv[1] === 'setconf'
        ? (console.log('SETCONF ' + argv[3]), new Promise(() => {}))
        : Promise.resolve({ code: 0, stdout: '', stderr: '' }) };
      const t = new LinuxTunnels({ runner, mode: 'kernel', tmpParent: ${JSON.stringify(parent)} });
      void t.set([{ name: 'gw1', ifname: 'swg-gw1', privateKey: ${JSON.stringify(key)}, addresses: ['10.64.0.2/32'], mtu: 1420, fwmark: 0x100,
        peer: { publicKey: ${JSON.stringify(randomBytes(32).toString('base64'))}, endpoint: { host: '192.0.2.1', port: 51820 }, allowedIPs: ['0.0.0.0/0'] } }]);
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const file = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          const m = /SETCONF (\S+)\n/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`the child exited (${code}) before wg setconf`)));
      });
      // What a kill -9 leaves: the key, mode 0600, in a 0700 directory named after the dead pid.
      const dir = join(file, '..');
      expect(dir.startsWith(join(parent, `splitwan-wg-${child.pid}-`))).toBe(true);
      expect(readFileSync(file, 'utf8')).toContain(`PrivateKey = ${key}`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      expect(existsSync(file)).toBe(true);

      const log = recorder();
      expect(sweepKeyDirs(parent, log)).toEqual([dir]);
      expect(existsSync(dir)).toBe(false);
      expect(readdirSync(parent)).toEqual([]);
      // The log names the directory, never the key.
      expect(JSON.stringify(log.lines)).not.toContain(key);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
