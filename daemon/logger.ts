import { pino } from 'pino';
import type { Logger } from '../config/logger.js';
import { formatLogLine, wantTextLogs } from './log-format.js';

/**
 * The daemon's logger: JSON lines on stdout (journald keeps them structured),
 * readable lines when stdout is a terminal, with key material redacted
 * wherever a field by that name appears.
 */
export function createLogger(level: string): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['privateKey', 'presharedKey', '*.privateKey', '*.presharedKey', '*.*.privateKey', '*.*.presharedKey'], censor: '(hidden)' },
  };
  const text = wantTextLogs(process.env, process.stdout.isTTY === true);
  const logger = text ? pino(options, { write: (line: string) => void process.stdout.write(formatLogLine(line)) }) : pino(options);
  return logger as unknown as Logger; // pino's Logger has a wider surface than ours; every method we use exists
}
