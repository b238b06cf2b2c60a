// The proxy's per-client connection cap. The global cap (maxConnections)
// keeps the daemon's fds bounded; alone it lets one client (a scanner, a
// runaway app, a device on the LAN that opens connections it never closes)
// take every place and shut everyone else out. Each client address gets at
// most `limit` connections open at once (peeking, dialling or spliced); one
// more is reset at accept.
//
// Clients are told apart by address, IPv6 included: a LAN shares one /64,
// so grouping by prefix would make the cap a second global one.

/** Open connections per client address. */
export class ClientConnections {
  private readonly open = new Map<string, number>();

  /** Takes a place for `client`; false when it has `limit` open already. */
  acquire(client: string, limit: number): boolean {
    const n = this.open.get(client) ?? 0;
    if (n >= limit) return false;
    this.open.set(client, n + 1);
    return true;
  }

  /** Gives a place back (its connection ended). */
  release(client: string): void {
    const n = this.open.get(client);
    if (n === undefined) return;
    if (n <= 1) this.open.delete(client);
    else this.open.set(client, n - 1);
  }

  /** Connections `client` has open now. */
  count(client: string): number {
    return this.open.get(client) ?? 0;
  }

  /** Clients with a connection open now. */
  get clients(): number {
    return this.open.size;
  }
}

/**
 * At most one log line per window for a kind of event: a flood of refusals
 * must not become a flood of log lines. Memory is two numbers, whatever the
 * number of clients.
 */
export class LogWindow {
  private last = -Infinity;
  private unlogged = 0;

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  /** null: count this one, say nothing; else log now, with how many went unlogged since the last line. */
  take(): { suppressed: number } | null {
    const t = this.now();
    if (t - this.last < this.windowMs) {
      this.unlogged++;
      return null;
    }
    this.last = t;
    const suppressed = this.unlogged;
    this.unlogged = 0;
    return { suppressed };
  }
}
