// `splitwan run`: the daemon over the real operating system, until SIGTERM or
// SIGINT. The wiring is createDaemon (daemon.ts); this only connects it to
// the process's signals.
import type { EventEmitter } from 'node:events';
import { systemClock, type Logger } from '../lib/logger.js';
import { createDaemon, StoppedDuringStartError } from './daemon.js';
import { linuxDeps } from './deps-linux.js';
import type { Runner } from './exec-linux.js';
import type { LoadedConfig } from '../config/load.js';

export { cleanupAll } from './deps-linux.js';

export interface RunOptions {
  configPath: string;
  /** The config as the CLI loaded it (to check it): the daemon starts from it instead of loading it again. */
  loaded?: LoadedConfig;
  /** For status: the package version. */
  version?: string;
  logger: Logger;
  /** Changes the logger's level (its children's too): `log.level` on reload. */
  setLogLevel?: (level: string) => void;
  signals: Pick<EventEmitter, 'on' | 'off' | 'once'>;
  runner?: Runner;
}

/** Runs the daemon; resolves when it has stopped cleanly (also when a signal came during start). */
export async function runDaemon(o: RunOptions): Promise<void> {
  const daemon = createDaemon(
    linuxDeps({ logger: o.logger, clock: systemClock, ...(o.runner ? { runner: o.runner } : {}), ...(o.setLogLevel ? { setLogLevel: o.setLogLevel } : {}), ...(o.version !== undefined ? { version: o.version } : {}) }),
    { configPath: o.configPath, ...(o.loaded ? { loaded: o.loaded } : {}) },
  );
  let stopping: Promise<void> | null = null;
  let signalled!: () => void;
  const asked = new Promise<void>((r) => (signalled = r));
  const onSignal = (signal: NodeJS.Signals) => () => {
    stopping ??= daemon.stop(signal);
    signalled();
  };
  const term = onSignal('SIGTERM');
  const int = onSignal('SIGINT');
  o.signals.on('SIGTERM', term);
  o.signals.on('SIGINT', int);
  try {
    try {
      await daemon.start();
    } catch (e) {
      // A signal during start: everything installed was undone; that is a clean stop.
      if (e instanceof StoppedDuringStartError) return;
      throw e;
    }
    await asked;
    await stopping;
  } finally {
    o.signals.off('SIGTERM', term);
    o.signals.off('SIGINT', int);
  }
}
