// Long-running processes a benchmark starts (servers, daemons, tunnels):
// output kept for error messages, stopped by their own pid only, and all of
// them findable through `procs` for the bench's `finally`.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** VmRSS of a process, MB. */
export function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/**
 * Where a process's resident memory is, MB, from /proc/PID/smaps: `brk` (the
 * [heap]: malloc's main arena), `anon` (anonymous mappings: V8's heap pages,
 * other malloc arenas, thread stacks), `file` (the executable and libraries,
 * mapped files) and the rest ([stack], [vdso]...).
 */
export function rssByKind(pid: number): { brk: number; anon: number; file: number; other: number } {
  const out = { brk: 0, anon: 0, file: 0, other: 0 };
  let kind: keyof typeof out = 'other';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1]!;
      kind = name === '[heap]' ? 'brk' : name === '' ? 'anon' : name.startsWith('/') ? 'file' : 'other';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] += Number(rss[1]) / 1024;
  }
  return out;
}

/** utime + stime of a process (all its threads, not its children), ms (USER_HZ 100). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on: 14, 15 are utime, stime
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** argv run inside network namespace `ns`. */
export const inNs = (ns: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', ns, ...argv];

export const sleep = (ms: number): Promise<void> => new Promise<void>((r) => setTimeout(r, ms));

/** Polls f every stepMs until it gives a value (not null, undefined or false); throws after ms naming what it waited for. */
export async function until<V>(what: string, f: () => V | null | undefined | false | Promise<V | null | undefined | false>, ms: number, stepMs = 20): Promise<V> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** Every Proc not yet stopped. */
export const procs = new Set<Proc>();

export class Proc {
  readonly child: ChildProcess;
  tail = '';
  exitCode: number | null | undefined = undefined; // undefined: running
  readonly exited: Promise<void>;

  /** `ipc`: a Node child with an IPC channel (`ask`, and `stop` asks it to stop). */
  constructor(
    readonly name: string,
    argv: readonly string[],
    o: { ipc?: boolean; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: o.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
    const add = (d: string) => (this.tail = (this.tail + d).slice(-32_768));
    this.child.stdout!.setEncoding('utf8').on('data', add);
    this.child.stderr!.setEncoding('utf8').on('data', add);
    this.exited = new Promise((r) => {
      this.child.on('error', (e) => add(`\n${e.message}`));
      this.child.on('exit', (code, sig) => ((this.exitCode = code ?? (sig ? -1 : null)), r()));
    });
    procs.add(this);
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  get pid(): number {
    return this.child.pid!;
  }

  async until(what: string, test: () => boolean, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!test()) {
      if (!this.running) throw new Error(`${this.name} exited (${this.exitCode}) before ${what}: ${this.tail.trim().slice(-800)}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${this.tail.trim().slice(-800)}`);
      await sleep(10);
    }
  }

  /** A reply of type `type` to `cmd` over IPC. */
  ask<T>(cmd: string, type: string, ms = 15_000, extra: object = {}): Promise<T> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => (this.child.off('message', on), reject(new Error(`${this.name}: no ${type} reply to ${cmd} in ${ms} ms`))), ms);
      const on = (m: { type?: string }) => {
        if (m.type !== type) return;
        clearTimeout(t);
        this.child.off('message', on);
        resolve(m as T);
      };
      this.child.on('message', on);
      this.child.send({ ...extra, cmd });
    });
  }

  /** SIGTERM (or an IPC stop) by our child's pid, SIGKILL after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 3000): Promise<number | null | undefined> {
    if (this.running) {
      if (this.child.connected) this.child.send({ cmd: 'stop' });
      else this.child.kill('SIGTERM');
    }
    if (await Promise.race([this.exited.then(() => false), sleep(graceMs).then(() => true)])) {
      if (this.running) this.child.kill('SIGKILL');
      await this.exited;
    }
    procs.delete(this);
    return this.exitCode;
  }
}
