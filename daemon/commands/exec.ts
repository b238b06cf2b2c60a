// `splitwan exec --via PATH [--] COMMAND ARGS...` (per-app split, issue 16):
// asks the daemon to move this process into PATH's cgroup (the daemon loads
// the rules for it first), drops root for the user who ran sudo, then runs
// COMMAND, which inherits the cgroup: its every connection takes PATH and its
// DNS is answered from PATH's resolvers. Exit code passed through.
import { spawn } from 'node:child_process';
import { constants, userInfo } from 'node:os';
import { ControlAccessError, controlRequest, ControlRequestError, NotRunningError } from '../control/client.js';
import { ROUTES, type AppExecReport } from '../control/protocol.js';
import { Exit, type Io } from '../cli-io.js';

export interface ExecIdentity {
  uid: number;
  gid: number;
  /** For the supplementary groups (initgroups); null: only gid. */
  user: string | null;
}

/**
 * Whom the program runs as: the user who ran sudo (SUDO_UID, SUDO_GID,
 * SUDO_USER), else the caller (root running it for itself). Pure.
 */
export function execIdentity(env: NodeJS.ProcessEnv, uid: number, gid: number): ExecIdentity {
  const su = env.SUDO_UID !== undefined && /^\d+$/.test(env.SUDO_UID) ? Number(env.SUDO_UID) : null;
  const sg = env.SUDO_GID !== undefined && /^\d+$/.test(env.SUDO_GID) ? Number(env.SUDO_GID) : null;
  if (uid === 0 && su !== null && su !== 0) return { uid: su, gid: sg ?? su, user: env.SUDO_USER && /^[A-Za-z0-9._-][A-Za-z0-9._$-]*$/.test(env.SUDO_USER) ? env.SUDO_USER : null };
  return { uid, gid, user: null };
}

/** The exit code a shell would give for a child's end: its code, or 128 + the signal's number. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal !== null ? (constants.signals[signal] ?? 0) : 0);
}

/** `--` before the command when it is missing, so the command's own options are not read as ours. */
export function withTerminator(args: readonly string[], valued: readonly string[]): string[] {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return [...args];
    if (a.startsWith('-') && a !== '-') {
      if (!a.includes('=') && valued.includes(a)) i++;
      continue;
    }
    return [...args.slice(0, i), '--', ...args.slice(i)];
  }
  return [...args];
}

function dropTo(id: ExecIdentity): void {
  if (id.uid === process.getuid!() && id.gid === process.getgid!()) return;
  // Groups first, then gid, then uid (after setuid the others are not ours to set).
  // initgroups is in Node (POSIX) but not in @types/node's Process.
  const initgroups = (process as unknown as { initgroups?: (user: string, extra: number) => void }).initgroups;
  if (id.user !== null && initgroups) initgroups(id.user, id.gid);
  else process.setgroups!([id.gid]);
  process.setgid!(id.gid);
  process.setuid!(id.uid);
  const me = userInfo();
  process.env.HOME = me.homedir;
  process.env.USER = me.username;
  process.env.LOGNAME = me.username;
}

export async function execCommand(o: { socket: string; via: string; argv: readonly string[] }, io: Io): Promise<number> {
  if (process.getuid?.() !== 0) {
    io.err(`splitwan exec moves the program into a cgroup and needs root: sudo splitwan exec --via ${o.via} -- ${o.argv.join(' ')}\n`);
    return Exit.NEEDS_ROOT;
  }
  try {
    await controlRequest<AppExecReport>(o.socket, ROUTES.appExec, { via: o.via, pid: process.pid }, { timeoutMs: 30_000 });
  } catch (e) {
    if (e instanceof NotRunningError) {
      io.err(`splitwan exec: ${e.message}\n`);
      return Exit.NOT_RUNNING;
    }
    if (e instanceof ControlAccessError) {
      io.err(`splitwan exec: ${e.message}\n`);
      return Exit.NEEDS_ROOT;
    }
    if (e instanceof ControlRequestError) {
      io.err(`splitwan exec: ${e.message} (${e.code})\n`);
      return e.code === 'SPLITWAN_APPS_UNKNOWN_PATH' || e.code === 'SPLITWAN_CONTROL_REQUEST' ? Exit.USAGE : Exit.SOFTWARE;
    }
    throw e;
  }
  const id = execIdentity(process.env, process.getuid(), process.getgid!());
  try {
    dropTo(id);
  } catch (e) {
    io.err(`splitwan exec: cannot become uid ${id.uid} gid ${id.gid}: ${(e as Error).message}\n`);
    return Exit.SOFTWARE;
  }
  return new Promise<number>((resolve) => {
    const child = spawn(o.argv[0]!, o.argv.slice(1), { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals): void => void child.kill(sig);
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of sigs) process.on(s, forward);
    const done = (code: number): void => {
      for (const s of sigs) process.off(s, forward);
      resolve(code);
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      io.err(`splitwan exec: cannot run ${o.argv[0]}: ${e.code === 'ENOENT' ? 'not found' : e.message}\n`);
      done(e.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => done(exitCodeOf(code, signal)));
  });
}
