// `splitwan run` as a child process inside a lab namespace, for e2e tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

/**
 * With the daemon emulated (SPLITWAN_TEST_NODE: `npm run test:arch`), it
 * starts, reacts and stops ~10x slower: every wait for it stretches by this
 * much (until(), the start and stop waits, and the e2e tests' own timeouts
 * through slow()). Natively 1: nothing changes.
 */
export const SLOW = process.env.SPLITWAN_TEST_NODE ? 10 : 1;

/** A test's or hook's timeout, stretched when the daemon is emulated. */
export function slow(ms: number): number {
  return ms * SLOW;
}

export interface Daemon {
  child: ChildProcess;
  /** Every line it printed (pino JSON), stdout and stderr. */
  output: string[];
  exited: Promise<number | null>;
}

export async function until(cond: () => boolean | Promise<boolean>, ms = 8000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms * SLOW;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The Node that runs the daemon: this test's own, or another architecture's
 * (`npm run test:arch` sets SPLITWAN_TEST_NODE to it, and SPLITWAN_TEST_QEMU
 * to qemu-<arch>-static where binfmt_misc cannot start it), so the lab e2e
 * tests drive a daemon running under emulation.
 */
export function daemonNode(env: NodeJS.ProcessEnv = process.env): string[] {
  const node = env.SPLITWAN_TEST_NODE || process.execPath;
  return env.SPLITWAN_TEST_QEMU ? [env.SPLITWAN_TEST_QEMU, node] : [node];
}


/** Starts `splitwan run --config CFG` in namespace `ns`; resolves once it logged "splitwan running". */
export async function startDaemon(ns: string, cfg: string): Promise<Daemon> {
  const output: string[] = [];
  const child = spawn('ip', ['netns', 'exec', ns, ...daemonNode(), join(root, 'bin', 'splitwan'), 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => output.push(...d.split('\n').filter(Boolean)));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => output.push(...d.split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const d = { child, output, exited };
  try {
    await until(() => output.some((l) => l.includes('splitwan running')) || child.exitCode !== null, 20_000, 'the daemon to start'); // until() stretches it under emulation
  } catch (e) {
    // Not started in time (a loaded machine): the caller never gets `d` to
    // stop, so it is stopped here, by pid, rather than left running.
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
    throw e;
  }
  if (child.exitCode !== null) throw new Error(`daemon exited: ${output.join('\n')}`);
  // `npm run test:e2e:nonative`: the daemon must really run without native code (source-port paths).
  if (process.env.SPLITWAN_NATIVE === 'off' && !output.some((l) => l.includes('path sockets: SO_MARK fast path off (SPLITWAN_NATIVE=off)'))) {
    await stopDaemon(d);
    throw new Error(`SPLITWAN_NATIVE=off, but the daemon did not say its path sockets are source-port paths:\n${output.join('\n')}`);
  }
  return d;
}

/** Signals the daemon (our own child, by pid) and resolves with its exit code. */
export async function stopDaemon(d: Daemon, signal: NodeJS.Signals = 'SIGTERM', graceMs = 20_000 * SLOW): Promise<number | null> {
  if (d.child.exitCode === null) d.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), graceMs)));
  const r = await Promise.race([d.exited, late]);
  clearTimeout(timer);
  if (r !== 'late') return r;
  // A stop that hangs is a bug: say where it stood, then make sure nothing is left running.
  let where = '';
  try {
    const { readdirSync, readFileSync } = await import('node:fs');
    const pid = d.child.pid!;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const comm = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      const wchan = readFileSync(`/proc/${pid}/task/${t}/wchan`, 'utf8').trim();
      const state = /State:\s*(.*)/.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'))?.[1] ?? '?';
      where += `\n  thread ${t} ${comm}: ${state} in ${wchan}`;
    }
  } catch (e) {
    where = ` (threads unreadable: ${(e as Error).message})`;
  }
  if (process.env.SPLITWAN_TEST_GDB) {
    const { spawnSync } = await import('node:child_process');
    const g = spawnSync('gdb', ['-p', String(d.child.pid), '-batch', '-ex', 'thread 1', '-ex', 'bt 25'], { encoding: 'utf8', timeout: 30_000 });
    where += `\n${g.stdout.split('\n').filter((l) => l.startsWith('#')).join('\n')}`;
  }
  d.child.kill('SIGKILL');
  await d.exited;
  throw new Error(`the daemon did not stop within ${graceMs} ms of ${signal}; its threads:${where}\nits last lines:\n${d.output.slice(-4).join('\n')}`);
}

/**
 * The config the lab e2e tests start from: the lab's two gateways (gw1.conf,
 * gw2.conf in `dir`, priorities 1 and 2), the ISP's resolver for the
 * breakout, state and control socket in `dir`; `lines` follow (rules,
 * health...). Names are the gateways' names in splitwan.
 */
export function labConfig(o: { dir: string; ispResolver: string; names: readonly [string, string]; mode?: 'router' | 'host'; lines: readonly string[]; controlGroup?: string }): string {
  const mode = o.mode ?? 'router';
  return [
    `mode: ${mode}`,
    ...(mode === 'router' ? ['lan: [lan0]'] : []),
    `breakout: { interface: wan0, dns: [${o.ispResolver}] }`,
    'tunnel:',
    '  gateways:',
    `    - { name: ${o.names[0]}, config: gw1.conf, priority: 1 }`,
    `    - { name: ${o.names[1]}, config: gw2.conf, priority: 2 }`,
    `stateDir: ${join(o.dir, 'state')}`,
    `control: { socket: ${join(o.dir, 'control.sock')}${o.controlGroup ? `, group: ${o.controlGroup}` : ''} }`,
    ...o.lines,
    '',
  ].join('\n');
}

/**
 * An e2e file's afterAll: stop the daemon, then remove the lab and the
 * config dir even when the stop failed (stopDaemon kills a hung daemon, then throws).
 */
export async function teardown(o: { daemon: Daemon | null; lab: { destroy(): Promise<void> } | undefined; dir: string | undefined; beforeDestroy?: () => Promise<void> }): Promise<void> {
  try {
    if (o.daemon && o.daemon.child.exitCode === null) await stopDaemon(o.daemon);
  } finally {
    await o.beforeDestroy?.().catch(() => undefined);
    await o.lab?.destroy();
    if (o.dir) rmSync(o.dir, { recursive: true, force: true });
  }
}
