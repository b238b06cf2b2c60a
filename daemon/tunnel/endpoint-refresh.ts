// Gateway endpoints given by name are looked up at start and on reload; a
// gateway that goes down may have moved (a VPN provider renumbering, a
// dynamic-DNS home server), so while it stays down its name is looked up
// again every `everyMs`, and a new address goes to the tunnel at once.
import type { Clock, Logger } from '../../lib/logger.js';
import type { GatewayConfig } from '../../config/types.js';
import { isIP } from 'node:net';

export interface EndpointRefreshDeps {
  /** The gateways as configured now. */
  gateways: () => readonly GatewayConfig[];
  /** Whether a gateway is down now. */
  isDown: (name: string) => boolean;
  /** Looks a name up through the breakout resolvers. */
  lookup: (name: string) => Promise<string>;
  /** The address a gateway's tunnel uses now. */
  current: (name: string) => string | null;
  /** Puts a new endpoint address into the gateway's tunnel. */
  apply: (name: string, address: string) => Promise<void>;
  clock: Clock;
  logger: Logger;
  everyMs?: number;
}

export class EndpointRefresher {
  private timer: unknown = null;
  private running = false;
  private busy = false;

  constructor(private readonly d: EndpointRefreshDeps) {}

  start(): void {
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) this.d.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Looks up the endpoints of down gateways now (also what the timer runs); returns the gateways moved. */
  async check(): Promise<string[]> {
    if (this.busy) return [];
    this.busy = true;
    const moved: string[] = [];
    try {
      for (const g of this.d.gateways()) {
        const host = g.wireguard.peers[0]?.endpoint?.host;
        if (host === undefined || isIP(host) !== 0 || !this.d.isDown(g.name)) continue;
        let address: string;
        try {
          address = await this.d.lookup(host);
        } catch (e) {
          this.d.logger.warn({ gateway: g.name, host, err: (e as Error).message }, 'looking up a down gateway\'s endpoint failed');
          continue;
        }
        const was = this.d.current(g.name);
        if (address === was) continue;
        this.d.logger.info({ gateway: g.name, host, from: was, to: address }, 'a down gateway\'s endpoint moved: using its new address');
        await this.d.apply(g.name, address);
        moved.push(g.name);
      }
    } finally {
      this.busy = false;
    }
    return moved;
  }

  private arm(): void {
    if (!this.running) return;
    this.timer = this.d.clock.setTimeout(() => {
      void this.check()
        .catch((e: unknown) => this.d.logger.error({ err: e }, 'endpoint refresh failed'))
        .finally(() => this.arm());
    }, this.d.everyMs ?? 30_000);
  }
}
