// A vitest pool whose workers are another architecture's Node under
// qemu-user: vitest itself (its vite server, the TypeScript transform,
// rolldown's native binding, the reporters) stays on this machine's Node,
// and only the worker that imports and runs a test file is emulated. So the
// test code, the project's modules and their dependencies (koffi's prebuilt
// binary for that architecture) run there, at emulation speed, while the
// transform does not; and vitest's own Node requirement (vite 8: >= 20.19)
// holds for the host alone, the worker runtime runs on Node 20.11.
//
// It is vitest's `forks` pool (child_process.fork, advanced serialization
// over IPC; both Nodes are 20.x, V8 11.3, one serializer format) with
// another executable: the foreign Node itself where binfmt_misc runs it, or
// qemu-<arch>-static with that Node as its first argument where it does not.
//
// Big-endian workers (s390x): V8's serializer writes doubles and two-byte
// strings in the writer's byte order and the reader does not swap them, so
// a test's duration reads as garbage (-3.97e38 ms) and text outside Latin-1
// (test names with an arrow, error messages) came out garbled; which tests
// passed, failed or were skipped (one-byte strings, small integers) comes
// through intact. `json` serialization cannot carry vitest's messages (they
// are cyclic), so this stays, and the strings are mended on arrival
// (unswapStrings): a two-byte string is the only kind that can hold a code
// unit over 0xff, so a received string with one is a swapped one. Doubles
// cannot be told from integers: durations stay garbage.
import { fork, type ChildProcess } from 'node:child_process';
import { dirname } from 'node:path';
import type { PoolOptions, PoolWorker, WorkerRequest } from 'vitest/node';

export interface EmulatedNode {
  /** The foreign Node binary. */
  node: string;
  /** qemu-<arch>-static to run it with, or null when binfmt_misc does. */
  qemu: string | null;
  /** The worker's byte order differs from this machine's (s390x here): its strings are mended (unswapStrings). */
  swapped?: boolean;
}

/** A two-byte string written in the other byte order, put back: each UTF-16 code unit's bytes swapped. */
export function unswapString(s: string): string {
  if (!/[^\u0000-\u00ff]/.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += String.fromCharCode(((c & 0xff) << 8) | (c >> 8));
  }
  return out;
}

/** Every string in a message from a worker of the other byte order mended in place (objects, arrays, errors' message and stack); returns the message. */
export function unswapStrings(v: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof v === 'string') return unswapString(v);
  if (typeof v !== 'object' || v === null || seen.has(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return v;
  seen.add(v);
  if (v instanceof Map) {
    for (const [k, x] of v) v.set(k, unswapStrings(x, seen));
    return v;
  }
  // An Error's stack is an accessor on newer V8 (Node 24), not a value: set through it.
  if (v instanceof Error && typeof v.stack === 'string') {
    const fixed = unswapString(v.stack);
    if (fixed !== v.stack) v.stack = fixed;
  }
  // Own names, not only enumerable ones: an Error's message and stack are not enumerable.
  for (const k of Object.getOwnPropertyNames(v)) {
    if (k === 'stack' && v instanceof Error) continue; // mended above, once (a second pass would garble it again)
    const d = Object.getOwnPropertyDescriptor(v, k);
    if (d === undefined || !('value' in d) || !d.writable) continue;
    const fixed = unswapStrings(d.value, seen);
    if (fixed !== d.value) (v as Record<string, unknown>)[k] = fixed;
  }
  return v;
}

const SIGKILL_AFTER_MS = 2000;
/** How long an emulated worker may take to load vitest's worker (worker-entry.mjs). */
const READY_WITHIN_MS = 10 * 60_000;
const bootstrap = new URL('worker-entry.mjs', import.meta.url).pathname;

class EmulatedForksWorker implements PoolWorker {
  readonly name: string;
  readonly cacheFs = true;
  private child: ChildProcess | null = null;
  private readonly entrypoint: string;

  constructor(
    private readonly o: PoolOptions,
    private readonly emu: EmulatedNode,
    name: string,
  ) {
    this.name = name;
    // The same worker script vitest's own forks pool starts (vitest/dist/workers/forks.js).
    this.entrypoint = new URL('workers/forks.js', `file://${o.distPath.replace(/\/?$/, '/')}`).pathname;
  }

  // vitest's PoolWorker interface types these callbacks' argument as any.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, cb: (arg: any) => void): void {
    this.proc().on(event, cb);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, cb: (arg: any) => void): void {
    this.proc().off(event, cb);
  }

  send(message: WorkerRequest): void {
    this.proc().send(message);
  }

  deserialize(data: unknown): unknown {
    return this.emu.swapped ? unswapStrings(data) : data;
  }

  async start(): Promise<void> {
    if (this.child !== null) return;
    const { node, qemu } = this.emu;
    // fork() runs `execPath ...execArgv module args`: with qemu, the foreign Node goes first in execArgv.
    // `node` on PATH is the foreign one too: what a test starts by name (install.sh's `command -v node`,
    // bin/splitwan's `#!/usr/bin/env node`) runs emulated like the test itself.
    const env = { ...(this.o.env as NodeJS.ProcessEnv) };
    env.PATH = `${dirname(node)}${env.PATH ? `:${env.PATH}` : ''}`;
    const child = fork(bootstrap, [this.entrypoint], {
      env,
      execPath: qemu ?? node,
      execArgv: [...(qemu !== null ? [node] : []), ...this.o.execArgv],
      stdio: 'pipe',
      serialization: 'advanced',
    });
    this.child = child;
    child.stdout?.pipe(process.stdout, { end: false });
    child.stderr?.pipe(process.stderr, { end: false });
    // Loaded: only then does vitest's 60 s for the start handshake begin (see worker-entry.mjs).
    await new Promise<void>((resolve, reject) => {
      const done = (e?: Error): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (e) reject(e);
        else resolve();
      };
      const onMessage = (m: unknown): void => {
        if ((m as { type?: string } | null)?.type === 'splitwan-arch-ready') done();
      };
      const onExit = (code: number | null, signal: string | null): void => done(new Error(`the emulated worker exited (${code ?? signal}) before it loaded vitest`));
      const timer = setTimeout(() => done(new Error(`the emulated worker did not load vitest within ${READY_WITHIN_MS / 1000} s`)), READY_WITHIN_MS);
      child.on('message', onMessage);
      child.on('exit', onExit);
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    // Our own child, by its handle: SIGTERM, then SIGKILL if an emulated worker is slow to go.
    const kill = setTimeout(() => child.kill('SIGKILL'), SIGKILL_AFTER_MS);
    child.kill();
    await exited;
    clearTimeout(kill);
    child.stdout?.unpipe(process.stdout);
    child.stderr?.unpipe(process.stderr);
    this.child = null;
  }

  private proc(): ChildProcess {
    if (this.child === null) throw new Error('emulated worker not started');
    return this.child;
  }
}

/** The pool for `test.pool` in a vitest config. */
export function emulatedPool(emu: EmulatedNode, name = 'emulated'): { name: string; createPoolWorker: (o: PoolOptions) => PoolWorker } {
  return { name, createPoolWorker: (o) => new EmulatedForksWorker(o, emu, name) };
}
