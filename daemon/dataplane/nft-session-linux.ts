// One long-lived `nft -i`: a tag or a failover costs a write to a pipe, not a
// process spawn (about 0.4 ms instead of 4 ms; docs/design/dataplane-notes.md §8).
//
// nft -i prints nothing on success, so every command line is followed by a
// marker line, `@sync N`, which nft rejects as a syntax error on stderr
// without touching the kernel. stderr is then one ordered stream: errors
// printed before marker N belong to command N.
//
// nft -i keeps every line in its (libedit) history and writes it to
// $HOME/.nft.history on exit: each command costs more as the session ages
// (0.2 ms fresh, 1 ms after 100k lines, measured by `bench dns`), and the
// file would record every tagged destination. So nft runs with HOME set to
// a private directory removed on close, and a session is replaced by a fresh
// one every RECYCLE_AFTER commands, between commands.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '../../lib/logger.js';

export class NftError extends Error {
  readonly code = 'SPLITWAN_NFT';
  constructor(
    readonly command: string,
    readonly errors: readonly string[],
  ) {
    super(`nft: ${errors.join('; ')} (in: ${command.length > 200 ? command.slice(0, 200) + '…' : command})`);
    this.name = 'NftError';
  }
}

/** One element to add: the address and its timeout, whole seconds. */
export interface ElementAdd {
  address: string;
  timeoutS: number;
}

/**
 * Element changes in sets of one `inet` table, as one transaction: every
 * delete runs before every add (a move between sets), all or nothing.
 */
export interface ElementChanges {
  table: string;
  /** Set name → addresses to delete (each must be there, or the whole transaction fails). */
  deletes: ReadonlyMap<string, readonly string[]>;
  /** Set name → elements to add (an element already there gets the new timeout). */
  adds: ReadonlyMap<string, readonly ElementAdd[]>;
}

/** The nft line equivalent to `changes` (nft -i's way, and error messages). */
export function renderElementChanges(c: ElementChanges): string {
  const parts: string[] = [];
  for (const [set, as] of c.deletes) if (as.length) parts.push(`delete element inet ${c.table} ${set} { ${as.join(', ')} }`);
  for (const [set, es] of c.adds) {
    // `expires` as well as `timeout`: from Linux 6.12 on, an element already
    // there takes a new expiry only when told (with the same timeout alone it
    // keeps the old one: a refresh would not refresh); before 6.12, never.
    if (es.length) parts.push(`add element inet ${c.table} ${set} { ${es.map((e) => `${e.address} timeout ${e.timeoutS}s expires ${e.timeoutS}s`).join(', ')} }`);
  }
  return parts.join('; ');
}

/** What the tagger and the failover need: run one line as one transaction. */
export interface NftExec {
  exec(line: string): Promise<void>;
  /**
   * Element changes without nft's parser and cache (netlink straight to the
   * kernel), in order with exec()'s lines; absent where there is no such
   * path (nft -i), and then the tagger renders lines.
   */
  elements?(changes: ElementChanges): Promise<void>;
}

interface Pending {
  seq: number;
  line: string;
  resolve(): void;
  reject(e: Error): void;
}

const HOME_PREFIX = 'splitwan-nft-';

/**
 * Removes the private HOMEs (and the nft history in them) that sessions of
 * processes no longer alive left behind, e.g. after a crash. Returns how many.
 */
export function removeStaleHomes(dir: string = tmpdir(), alive: (pid: number) => boolean = pidAlive): number {
  let n = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const m = new RegExp(`^${HOME_PREFIX}(\\d+)-`).exec(name);
    if (!m || alive(Number(m[1]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    n++;
  }
  return n;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: a check, nothing is sent
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Commands one `nft -i` runs before a fresh one takes over. Measured with
 * `bench dns` (100k tagged addresses): every 2000, a miss adds p50 0.5-0.7 ms
 * unloaded; every 20000, 1.1 ms (the history grows faster than linearly in
 * cost). The price is a fresh nft's first command, which loads the table
 * (~90 ms with 100k addresses): the misses' p99 under load. In-process
 * libnftables (as dnsmasq --nftset) would remove both; see the notes.
 */
export const RECYCLE_AFTER = 2000;

export class NftSession implements NftExec {
  private child: ChildProcessWithoutNullStreams | null = null;
  private spare: ChildProcessWithoutNullStreams | null = null;
  private home: string | null = null;
  /** Commands sent to the current child. */
  private used = 0;
  /** Sessions started (for tests and status). */
  started = 0;
  private seq = 0;
  private pending: Pending[] = [];
  private errors: string[] = [];
  private closed = false;

  constructor(
    private readonly logger: Logger,
    private readonly argv: readonly string[] = ['nft', '-i'],
    private readonly recycleAfter: number = RECYCLE_AFTER,
  ) {}

  /** Lets the current child go: it exits on EOF; its exit is no longer ours to report. */
  private retire(): void {
    const c = this.child;
    this.child = null;
    if (!c) return;
    c.removeAllListeners('exit');
    c.stderr.removeAllListeners();
    c.stderr.resume(); // drained, so the child never blocks on a full pipe
    c.on('exit', () => {});
    c.stdin.end();
    // A child that ignores EOF is stopped (ours, by its pid).
    setTimeout(() => {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    }, 2000).unref();
  }

  /** A started nft -i, not yet in use (its process start-up is paid before the switch; its first command still loads the table). */
  private spawnChild(): ChildProcessWithoutNullStreams {
    const [cmd, ...args] = this.argv;
    this.home ??= mkdtempSync(join(tmpdir(), `${HOME_PREFIX}${process.pid}-`));
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HOME: this.home } });
    this.started++;
    child.stdin.on('error', () => {}); // EPIPE surfaces through 'exit'
    child.once('exit', () => {
      if (this.spare === child) this.spare = null;
    });
    child.on('error', () => {
      if (this.spare === child) this.spare = null;
    });
    return child;
  }

  private ensure(): ChildProcessWithoutNullStreams {
    // The replacement starts a little before it is needed, in the background.
    if (this.child && this.spare === null && this.used >= this.recycleAfter * 0.9) this.spare = this.spawnChild();
    // The switch happens between commands only: the old child has answered everything it was sent.
    if (this.child && this.used >= this.recycleAfter && this.pending.length === 0) this.retire();
    if (this.child) return this.child;
    const child = this.spare ?? this.spawnChild();
    this.spare = null;
    this.used = 0;
    child.stdout.resume(); // nft -i prints nothing without -e; drain anyway
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (l) => this.onLine(l));
    child.on('error', (e) => this.fail(e));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      if (!this.closed) this.logger.warn({ code, signal }, 'nft -i exited; it is restarted on the next command');
      this.fail(new Error(`nft -i exited (${signal ?? code})`));
    });
    this.child = child;
    return child;
  }

  private onLine(line: string): void {
    const m = /^@sync (\d+)$/.exec(line);
    if (m) {
      const seq = Number(m[1]);
      // The line before the marker is the marker's own "syntax error" line.
      this.errors.pop();
      const errs = this.errors.filter((e) => e.startsWith('Error:')).map((e) => e.slice(7));
      this.errors = [];
      while (this.pending.length && this.pending[0]!.seq <= seq) {
        const p = this.pending.shift()!;
        if (p.seq === seq && errs.length) p.reject(new NftError(p.line, errs));
        else p.resolve();
      }
      return;
    }
    if (/^\s*\^+\s*$/.test(line)) return; // caret line under an echoed command
    this.errors.push(line);
  }

  private fail(e: Error): void {
    const all = this.pending;
    this.pending = [];
    this.errors = [];
    for (const p of all) p.reject(e);
  }

  exec(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('nft session closed'));
    if (line.includes('\n')) return Promise.reject(new TypeError('one line is one transaction: no newlines'));
    const child = this.ensure();
    const seq = ++this.seq;
    this.used++;
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ seq, line, resolve, reject });
      child.stdin.write(`${line}\n@sync ${seq}\n`);
    });
  }

  close(): void {
    this.closed = true;
    for (const c of [this.child, this.spare]) {
      if (!c) continue;
      c.stdin.end();
      c.kill('SIGTERM');
    }
    this.child = null;
    this.spare = null;
    this.fail(new Error('nft session closed'));
    if (this.home) rmSync(this.home, { recursive: true, force: true });
    this.home = null;
  }
}
