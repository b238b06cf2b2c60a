// Runs system commands: argv arrays only, never a shell. Secrets never go in
// argv: a command that needs one reads it from stdin (`input`) or from a 0600
// file its caller writes (wg setconf, daemon/tunnel/tunnels-linux.ts).
import { execFile } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  /** Written to the command's stdin (configs, rulesets, keys). */
  input?: string;
  timeoutMs?: number;
  /** Resolve with a non-zero code instead of throwing. */
  allowFail?: boolean;
}

/** A failed command: its argv, exit code and stderr (never its stdin, which may hold a key). */
export class CommandError extends Error {
  readonly code = 'SPLITWAN_OS_COMMAND';
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`${argv.join(' ')} failed (exit ${exitCode}): ${stderr.trim().split('\n').slice(0, 3).join(' | ') || 'no output'}`);
    this.name = 'CommandError';
  }
}

export interface Runner {
  run(argv: readonly string[], opts?: RunOptions): Promise<CommandResult>;
}

export const linuxRunner: Runner = {
  run(argv, opts = {}) {
    const [cmd, ...args] = argv;
    if (!cmd) return Promise.reject(new TypeError('empty argv'));
    return new Promise((resolve, reject) => {
      const child = execFile(
        cmd,
        args,
        { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' },
        (err, stdout, stderr) => {
          const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? ((err as unknown as { code: number }).code) : err.killed ? 124 : 127) : 0;
          if (code !== 0 && !opts.allowFail) reject(new CommandError(argv, code, stderr || (err?.message ?? '')));
          else resolve({ stdout, stderr, code });
        },
      );
      if (opts.input !== undefined) child.stdin?.end(opts.input);
      else child.stdin?.end();
    });
  },
};

/**
 * Runs every command inside network namespace `ns` (`ip netns exec`): how
 * tests and the lab drive the Linux adapters without touching the machine's
 * own namespace.
 */
export function netnsRunner(ns: string, base: Runner = linuxRunner): Runner {
  return { run: (argv, opts) => base.run(['ip', 'netns', 'exec', ns, ...argv], opts) };
}
