import { pino } from 'pino';
import type { Logger } from '../config/logger.js';

/**
 * The daemon's logger: JSON lines on stdout (journald keeps them structured),
 * with key material redacted wherever a field by that name appears.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: ['privateKey', 'presharedKey', '*.privateKey', '*.presharedKey', '*.*.privateKey', '*.*.presharedKey'], censor: '(hidden)' },
  }) as unknown as Logger; // pino's Logger has a wider surface than ours; every method we use exists
}
