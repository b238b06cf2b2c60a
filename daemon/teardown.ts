// One stack of undo steps for everything the daemon starts or installs: each
// part pushes how to undo itself as soon as it exists, so a stop (or a failed
// start) undoes exactly what was done, in reverse order, whatever step it
// reached. A step that fails is logged and the rest still run.
import type { Logger } from '../lib/logger.js';

export class TeardownStack {
  private readonly steps: { what: string; undo: () => unknown }[] = [];
  private done = false;

  constructor(private readonly logger: Logger) {}

  /** Registers how to undo `what`; runs at once when the stack was already unwound. */
  push(what: string, undo: () => unknown): void {
    if (this.done) {
      void this.runStep({ what, undo });
      return;
    }
    this.steps.push({ what, undo });
  }

  /** Undoes everything, last pushed first. Idempotent. */
  async unwind(): Promise<void> {
    this.done = true;
    for (let s = this.steps.pop(); s; s = this.steps.pop()) await this.runStep(s);
  }

  get size(): number {
    return this.steps.length;
  }

  private async runStep(s: { what: string; undo: () => unknown }): Promise<void> {
    try {
      await s.undo();
    } catch (e) {
      this.logger.error({ err: e, step: s.what }, `stopping: ${s.what} failed`);
    }
  }
}
