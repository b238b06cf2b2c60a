import { pino } from 'pino';
import type { Logger } from '../lib/logger.js';
import { formatLogLine, wantTextLogs } from './log-format.js';

/**
 * The daemon's logger: JSON lines on stdout (journald keeps them structured),
 * readable lines when stdout is a terminal, with key material redacted
 * wherever a field by that name appears.
 */
export function createLogger(level: string): Logger {
  return createReloadableLogger(level).logger;
}

/** The daemon's logger and a way to change the level of it and every child it made (`log.level` on reload). */
export interface ReloadableLogger {
  logger: Logger;
  setLevel(level: string): void;
}

/**
 * pino copies the level into each child when it is made, and modules hold
 * children made at start ({ module: 'dns' }): changing the root's level alone
 * would leave them as they were. Children are kept weakly, so loggers made
 * per request do not accumulate.
 */
export function createReloadableLogger(level: string): ReloadableLogger {
  const children = new Set<WeakRef<{ level: string }>>();
  const options = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['privateKey', 'presharedKey', '*.privateKey', '*.presharedKey', '*.*.privateKey', '*.*.presharedKey'], censor: '(hidden)' },
    onChild: (child: { level: string }) => void children.add(new WeakRef(child)),
  };
  const text = wantTextLogs(process.env, process.stdout.isTTY === true);
  const root = text ? pino(options, { write: (line: string) => void process.stdout.write(formatLogLine(line)) }) : pino(options);
  return {
    logger: root as unknown as Logger, // pino's Logger has a wider surface than ours; every method we use exists
    setLevel(next: string): void {
      if (root.level === next) return;
      (root as { level: string }).level = next;
      for (const ref of children) {
        const c = ref.deref();
        if (c === undefined) children.delete(ref);
        else c.level = next;
      }
    },
  };
}
