/**
 * The logging surface modules use: pino's, so a pino child logger fits, and
 * tests pass a recording fake. Modules receive a child ({ module: 'dns' }).
 */
export interface Logger {
  trace(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** A logger that drops everything (for commands that print instead). */
export const silentLogger: Logger = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

// The clock lives in clock.ts; modules that take a logger usually take a clock too.
export { systemClock, type Clock } from './clock.js';
