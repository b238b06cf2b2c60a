// The failover history as status and metrics show it: every carried-out
// change of the gateway behind the tunnel path (health, a pin, a reload),
// most recent first.
import type { Clock } from '../lib/logger.js';
import type { FailoverRecord } from './control/protocol.js';

export const FAILOVER_HISTORY = 20;

export class FailoverLog {
  private readonly records: FailoverRecord[] = [];
  /** The gateway the last carried-out switch went to: the next record's "from". */
  private last: string | null;

  constructor(
    private readonly clock: Clock,
    initial: string | null,
    private readonly onRecord: (from: string | null, to: string | null) => void = () => {},
  ) {
    this.last = initial;
  }

  /** Where the tunnel path points as far as the history knows. */
  get current(): string | null {
    return this.last;
  }

  /**
   * Records a switch to `to` (a switch overtaken by a later one may find
   * nothing changed: then nothing is recorded). Returns whether it recorded.
   */
  record(to: string | null, reason: string): boolean {
    const from = this.last;
    if (from === to) return false;
    this.last = to;
    // Wall time: people read it (status shows when).
    this.records.unshift({ at: this.clock.wall(), from, to, reason });
    this.records.length = Math.min(this.records.length, FAILOVER_HISTORY);
    this.onRecord(from, to);
    return true;
  }

  /** Where the tunnel path points, without a record (the end of the start). */
  baseline(to: string | null): void {
    this.last = to;
  }

  list(): FailoverRecord[] {
    return [...this.records];
  }
}
