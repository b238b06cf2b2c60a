// What the CLI and its commands share: exit codes, the output seam, usage errors.
// A module of its own so commands do not import cli.ts (which imports them).

/** Exit codes, stable for scripts. */
export const Exit = {
  OK: 0,
  CONFIG: 1, // the configuration has errors
  USAGE: 2, // the command line is wrong
  NOT_RUNNING: 3, // the daemon is not running
  NEEDS_ROOT: 4, // run and cleanup change the kernel's routing
  APPLY: 5, // a valid config could not be applied (the previous one runs)
  SOFTWARE: 70, // a bug
} as const;

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

export class UsageError extends Error {
  readonly code = 'SPLITWAN_USAGE';
}
