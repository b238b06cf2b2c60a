// The dns/ and proxy/ modules ask for sockets by path name; the kernel knows
// paths by fwmark. This adapter turns one into the other at the moment of
// dialling, so `tunnel` always means the gateway that is active now.
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { PathName } from '../config/types.js';
import type { PathDialer } from '../dns/forwarder.js';
import { MARK_BREAKOUT, type PlannedGateway, type PlannedLink } from './dataplane/plan.js';
import type { PathSockets } from './sockets.js';

export class MarkedDialer implements PathDialer {
  constructor(
    private readonly sockets: PathSockets,
    /** The gateways and the active one, as the data plane has them now. */
    private readonly state: () => { gateways: readonly PlannedGateway[]; active: string | null; links?: readonly PlannedLink[] },
  ) {}

  /** The mark for a path; throws when the tunnel has no active gateway (the kill switch holds). */
  markOf(path: PathName): number {
    if (path === 'breakout') return MARK_BREAKOUT;
    const s = this.state();
    if (path.startsWith('link:')) {
      const l = s.links?.find((x) => x.name === path.slice(5));
      if (!l) throw new Error(`unknown link ${path.slice(5)}`);
      return l.mark;
    }
    const name = path === 'tunnel' ? s.active : path.slice(3);
    const g = s.gateways.find((x) => x.name === name);
    if (!g) throw new Error(path === 'tunnel' ? 'no healthy gateway: tunnel traffic is blocked (kill switch)' : `unknown gateway ${path.slice(3)}`);
    return g.mark;
  }

  /** Upstream UDP sockets are shared per mark (dns/udp-pool.ts): `tunnel` after a failover is another gateway's. */
  routeOf(path: PathName): string {
    return `mark:${this.markOf(path)}`;
  }

  async udp(path: PathName, family: 4 | 6): Promise<dgram.Socket> {
    return this.sockets.udp(family, this.markOf(path));
  }

  async tcp(path: PathName, host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    return this.sockets.tcpConnect({ host, port, mark: this.markOf(path), timeoutMs });
  }
}
