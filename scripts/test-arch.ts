// `npm run test:arch -- ARCH [--only GROUP,...] [--strict] [FILE...]`
//
// Runs the tests under another architecture's Node, emulated by qemu-user:
// ARCH is armhf (32-bit ARM), arm64, or s390x (big-endian, standing in for
// MIPS). Sets up what is missing first (scripts/arch/setup.ts: qemu, the
// foreign C libraries, the official Node build from the npm registry, cached
// in ~/.cache/splitwan-arch), then:
// - unit, integration, lab (and contract, a subset of those): the test files
//   run in the emulated Node (scripts/arch/pool.ts), koffi's prebuilt binary
//   for that architecture loaded; what they spawn with process.execPath (the
//   lab's probes) is emulated too, `ip`/`nft`/`wg` stay native;
// - e2e: the test process runs on this machine's Node and the daemon it
//   starts in the lab runs emulated (SPLITWAN_TEST_NODE, test/helpers/daemon.ts).
// GROUPs: unit, integration, lab, e2e, contract (default: unit,integration,lab,e2e).
// FILEs instead of groups run just those (test/e2e/... ones as e2e).
//
// Prints vitest's own report, then a table of passed/failed/skipped per file,
// the failures compared with scripts/arch/known-failures.json (what is known
// broken on that architecture), and last one JSON object with the counts.
// Exit status: 0 when every failure is a known one; with --strict, also 1
// when a known failure passed (the list must shrink). 2 for a usage error,
// 3 when the setup failed.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ARCHES, DEFAULT_GROUPS, GROUPS } from './arch/arches.js';
import { setup, type Emulation } from './arch/setup.js';
import { countsFromReport, failureKeys, judge, table, type FileCounts } from './arch/report.js';

// Compiled to dist/scripts/: the repository is two levels up from there, one from the source.
const here = fileURLToPath(new URL('.', import.meta.url));
const repo = existsSync(join(here, '..', 'package.json')) ? join(here, '..') : join(here, '..', '..');

const log = (line: string): void => void process.stdout.write(`test:arch: ${line}\n`);

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: npm run test:arch -- ${Object.keys(ARCHES).join('|')} [--only ${Object.keys(GROUPS).join(',')}] [--strict] [FILE...]\n`);
  process.exit(2);
}

interface Args {
  arch: string;
  groups: string[];
  files: string[];
  strict: boolean;
}

function parse(argv: readonly string[]): Args {
  const a: Args = { arch: '', groups: [], files: [], strict: false };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    if (v === '--only') a.groups.push(...(argv[++i] ?? '').split(',').filter(Boolean));
    else if (v === '--strict') a.strict = true;
    else if (v.startsWith('-')) usage(`unknown option ${v}`);
    else if (a.arch === '') a.arch = v;
    else a.files.push(v);
  }
  if (!ARCHES[a.arch]) usage(a.arch === '' ? 'which architecture?' : `unknown architecture ${a.arch}`);
  for (const g of a.groups) if (!GROUPS[g]) usage(`unknown group ${g}`);
  if (a.groups.length === 0 && a.files.length === 0) a.groups = [...DEFAULT_GROUPS];
  return a;
}

/** Runs vitest (this machine's Node) with the arch config; resolves with its report's counts. */
function vitest(filters: string[], env: NodeJS.ProcessEnv): Promise<{ files: FileCounts[]; code: number | null; seconds: number }> {
  const out = mkdtempSync(join(tmpdir(), 'splitwan-arch-'));
  const json = join(out, 'report.json');
  const argv = [join(repo, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', join(repo, 'scripts', 'arch', 'vitest.config.ts'), '--reporter=default', '--reporter=json', `--outputFile.json=${json}`, ...filters];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { cwd: repo, env, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        const files = existsSync(json) ? countsFromReport(readFileSync(json, 'utf8'), repo) : [];
        resolve({ files, code, seconds: Math.round((Date.now() - t0) / 100) / 10 });
      } catch (e) {
        reject(e as Error);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  });
}

/**
 * What is known to fail on `arch`, with why: scripts/arch/known-failures.json
 * maps each architecture to { "file > describe > test": "reason" }; a reason
 * that starts with "flaky" may fail or pass (emulation speed).
 */
function knownFailures(arch: string): Record<string, string> {
  const p = join(repo, 'scripts', 'arch', 'known-failures.json');
  if (!existsSync(p)) return {};
  const all = JSON.parse(readFileSync(p, 'utf8')) as Record<string, Record<string, string>>;
  return all[arch] ?? {};
}

async function main(): Promise<number> {
  const args = parse(process.argv.slice(2));
  const arch = ARCHES[args.arch]!;
  const t0 = Date.now();
  let emu: Emulation;
  try {
    emu = setup(arch, repo, log);
  } catch (e) {
    process.stderr.write(`test:arch: setup for ${arch.name} failed: ${(e as Error).message}\n`);
    return 3;
  }
  const setupSeconds = Math.round((Date.now() - t0) / 100) / 10;
  if (!existsSync(join(repo, 'dist', 'daemon', 'cli.js'))) {
    process.stderr.write('test:arch: dist/ is missing: `npm run test:arch` builds it first (tsc -p tsconfig.build.json)\n');
    return 3;
  }

  const emulated = new Set<string>();
  const e2e = new Set<string>();
  for (const g of args.groups) for (const f of GROUPS[g]!) (f.startsWith('test/e2e') ? e2e : emulated).add(f);
  for (const f of args.files) (f.startsWith('test/e2e') ? e2e : emulated).add(f);

  // SPLITWAN_HELPER_NODE: the lab's helper servers (lab/lab.ts helperNode()) run on this machine's Node.
  const base = { ...process.env, SPLITWAN_HELPER_NODE: process.execPath, SPLITWAN_ARCH_NODE: emu.node, SPLITWAN_ARCH_QEMU: emu.qemu ?? '', SPLITWAN_ARCH_ENDIAN: emu.probe.endianness };
  const files: FileCounts[] = [];
  const seconds: Record<string, number> = { setup: setupSeconds };
  const exits: Record<string, number | null> = {};
  if (emulated.size > 0) {
    log(`running ${[...emulated].join(' ')} in ${emu.probe.arch} Node ${emu.probe.version} (emulated)`);
    const r = await vitest([...emulated], { ...base, SPLITWAN_ARCH_POOL: 'emulated' });
    files.push(...r.files);
    seconds.emulated = r.seconds;
    exits.emulated = r.code;
  }
  if (e2e.size > 0) {
    log(`running ${[...e2e].join(' ')} on this machine's Node, the daemon in ${emu.probe.arch} Node ${emu.probe.version} (emulated)`);
    // SPLITWAN_TEST_NODE_NATIVE: whether that daemon has koffi (s390x: none), for the tests whose expectations follow it.
    const r = await vitest([...e2e], { ...base, SPLITWAN_ARCH_POOL: 'host', SPLITWAN_TEST_NODE: emu.node, SPLITWAN_TEST_QEMU: emu.qemu ?? '', SPLITWAN_TEST_NODE_NATIVE: emu.koffi ? '1' : '0' });
    files.push(...r.files);
    seconds.e2e = r.seconds;
    exits.e2e = r.code;
  }

  // A file named on its own (the contract group, FILE arguments) that is not in the report did not run
  // (an emulated worker that could not start: vitest reports that as an error, not as a failed file).
  const ran = new Set(files.map((f) => f.file));
  for (const f of [...emulated, ...e2e]) {
    if (f.endsWith('.test.ts') && existsSync(join(repo, f)) && !ran.has(f)) files.push({ file: f, passed: 0, failed: 0, skipped: 0, error: 'did not run (see vitest\'s errors above)', failures: [] });
  }
  const known = knownFailures(arch.name);
  // A reason that starts with "flaky" marks a test emulation speed alone can fail (see judge()).
  const flaky = Object.keys(known).filter((k) => known[k]!.startsWith('flaky'));
  const v = judge(files, Object.keys(known).filter((k) => !flaky.includes(k)), flaky);
  const sum = (k: 'passed' | 'failed' | 'skipped'): number => files.reduce((n, f) => n + f[k], 0);
  process.stdout.write(`\ntest:arch ${arch.name} (${emu.probe.arch}, Node ${emu.probe.version}, ${emu.probe.endianness}, koffi ${emu.koffi ? 'prebuilt' : 'none'}${emu.qemu ? ', qemu explicit: no binfmt' : ', binfmt'}):\n`);
  process.stdout.write(`${table(files).join('\n')}\n`);
  if (v.expected.length) process.stdout.write(`known failures on ${arch.name} (scripts/arch/known-failures.json), failed as known:\n${v.expected.map((x) => `  ${x}\n      why: ${known[x]}`).join('\n')}\n`);
  if (v.fixed.length) process.stdout.write(`known failures that PASSED now (remove them from scripts/arch/known-failures.json):\n${v.fixed.map((x) => `  ${x}`).join('\n')}\n`);
  if (v.unexpected.length) process.stdout.write(`FAILED, not known to fail on ${arch.name}:\n${v.unexpected.map((x) => `  ${x}`).join('\n')}\n`);
  // A vitest that failed without a failing test in its report (a crash, a config error) is a failure too.
  const crashed = Object.entries(exits).filter(([, c]) => c !== 0 && c !== 1).map(([k, c]) => `${k}: vitest exited ${c}`);
  if (crashed.length) process.stdout.write(`${crashed.join('\n')}\n`);
  const ok = v.unexpected.length === 0 && crashed.length === 0 && (!args.strict || v.fixed.length === 0) && files.length > 0;
  const summary = {
    arch: arch.name,
    node: emu.probe.version,
    nodeArch: emu.probe.arch,
    endianness: emu.probe.endianness,
    koffi: emu.koffi !== null,
    binfmt: emu.qemu === null,
    files: files.length,
    passed: sum('passed'),
    failed: sum('failed'),
    skipped: sum('skipped'),
    fileErrors: files.filter((f) => f.error !== null).length,
    knownFailed: v.expected.length,
    unexpectedFailed: v.unexpected.length,
    fixed: v.fixed.length,
    seconds,
    ok,
    failures: failureKeys(files),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return ok ? 0 : 1;
}

process.exitCode = await main();
