// How much upstream work one client may cause: queries the cache cannot
// answer are forwarded through a path, and a flood of made-up names from one
// LAN client would otherwise go upstream as fast as it comes (40k/s in the
// demo lab saturated gw1's resolver, and the health probes that share it).
// Per client address: at most `maxInflight` misses in flight, and misses at
// `ratePerSecond` on average (a token bucket holding `burst`). A query over
// either is dropped, as the server drops one over its global in-flight
// bound: a real client retries, a flood is not forwarded.
//
// Loopback clients are this machine's own programs (in host mode, all of
// them): they are not limited here. The map of clients is bounded; when it
// is full, clients with nothing in flight are forgotten (their buckets
// would have refilled anyway).
import type { Clock } from '../lib/clock.js';

export interface ClientLimitOptions {
  maxInflight: number;
  ratePerSecond: number;
  burst: number;
  /** Clients remembered at once. */
  maxClients: number;
}

export const DEFAULT_CLIENT_LIMIT: Readonly<ClientLimitOptions> = Object.freeze({ maxInflight: 128, ratePerSecond: 1000, burst: 2000, maxClients: 4096 });

interface Bucket {
  inflight: number;
  tokens: number;
  /** When tokens were last topped up (monotonic ms). */
  at: number;
}

export type Refusal = 'inflight' | 'rate';

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

export class ClientLimiter {
  private readonly clients = new Map<string, Bucket>();
  /** Queries dropped since start, by why. */
  readonly dropped = { inflight: 0, rate: 0 };

  constructor(
    private readonly clock: Clock,
    private readonly o: ClientLimitOptions = DEFAULT_CLIENT_LIMIT,
  ) {}

  /**
   * May `address` start one more miss? null: yes, and release() must follow
   * when it settles; else why not (the query is dropped).
   */
  admit(address: string): Refusal | null {
    if (isLoopback(address)) return null;
    const now = this.clock.now();
    let b = this.clients.get(address);
    if (b === undefined) {
      if (this.clients.size >= this.o.maxClients) this.forgetIdle();
      b = { inflight: 0, tokens: this.o.burst, at: now };
      this.clients.set(address, b);
    } else {
      b.tokens = Math.min(this.o.burst, b.tokens + ((now - b.at) * this.o.ratePerSecond) / 1000);
      b.at = now;
    }
    if (b.inflight >= this.o.maxInflight) {
      this.dropped.inflight++;
      return 'inflight';
    }
    if (b.tokens < 1) {
      this.dropped.rate++;
      return 'rate';
    }
    b.tokens--;
    b.inflight++;
    return null;
  }

  release(address: string): void {
    const b = this.clients.get(address);
    if (b !== undefined && b.inflight > 0) b.inflight--;
  }

  /** Clients remembered now (tests). */
  get size(): number {
    return this.clients.size;
  }

  private forgetIdle(): void {
    for (const [a, b] of this.clients) if (b.inflight === 0) this.clients.delete(a);
    // Every one busy (a spoofed flood from a whole subnet): start over; the server's global bound still holds.
    if (this.clients.size >= this.o.maxClients) this.clients.clear();
  }
}
