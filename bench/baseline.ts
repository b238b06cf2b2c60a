// The previous code path as a peer: splitwan at another git commit (by
// default the one before the fail-closed routing and the event-driven repair,
// issue 15), built into a temp dir with this checkout's node_modules, so a
// benchmark can run it side by side with this build in the same lab.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The commit before issue 15's data-plane work: its repair is a 3 s timer, its rules do not fail closed. */
export const BASELINE_REF = process.env.BENCH_BASELINE_REF ?? 'd8f7371';

export interface Baseline {
  ref: string;
  /** bin/splitwan of the build. */
  bin: string;
  remove(): void;
}

/** Runs argv; `stderr` holds both outputs (tsc reports on stdout). */
function run(argv: readonly string[], o: { cwd?: string; stdinFrom?: NodeJS.ReadableStream } = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { cwd: o.cwd, stdio: [o.stdinFrom ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stderr = '';
    c.stdout!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    c.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    if (o.stdinFrom) o.stdinFrom.pipe(c.stdin!);
    c.on('error', (e) => resolve({ code: 127, stderr: e.message }));
    c.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

/** Builds `ref`, or says why it cannot (no git checkout, an unknown commit, a failed build). */
export async function buildBaseline(ref = BASELINE_REF): Promise<Baseline | { skipped: string }> {
  const root = join(import.meta.dirname, '..', '..');
  if (!existsSync(join(root, 'node_modules', 'typescript'))) return { skipped: 'no node_modules/typescript here' };
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-baseline-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    const archive = spawn('git', ['-C', root, 'archive', '--format=tar', ref], { stdio: ['ignore', 'pipe', 'pipe'] });
    let gitErr = '';
    archive.stderr!.setEncoding('utf8').on('data', (d: string) => (gitErr += d));
    const gitDone = new Promise<number>((r) => {
      archive.on('error', () => r(127));
      archive.on('close', (c) => r(c ?? 1));
    });
    const tar = await run(['tar', '-x', '-C', dir], { stdinFrom: archive.stdout! });
    const gitCode = await gitDone;
    if (gitCode !== 0 || tar.code !== 0) {
      remove();
      return { skipped: `git archive ${ref}: ${(gitErr || tar.stderr).trim().split('\n')[0] ?? `exit ${gitCode}`}` };
    }
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const tsc = await run([process.execPath, join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: dir });
    if (tsc.code !== 0) {
      remove();
      return { skipped: `building ${ref} failed: ${tsc.stderr.trim().slice(0, 300)}` };
    }
    return { ref, bin: join(dir, 'bin', 'splitwan'), remove };
  } catch (e) {
    remove();
    return { skipped: `building ${ref}: ${(e as Error).message}` };
  }
}
