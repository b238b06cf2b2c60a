// The transparent proxy's listeners (proxy.enabled): started, moved or
// stopped by the config; the proxy's own options follow without a rebind.
import type { Config } from '../../config/types.js';
import type { Logger } from '../../lib/logger.js';
import type { ListenAddress } from '../../dns/server.js';
import type { TransparentProxy } from '../../proxy/server.js';
import { formatListen, sameListen } from './dns-listener.js';

/** Host mode: local clients are redirected to loopback; router mode: LAN clients to the router's own addresses. */
export function proxyListenAddresses(c: Config): ListenAddress[] {
  const port = c.proxy.listenPort;
  return c.mode === 'host' ? [{ host: '127.0.0.1', port }, { host: '::1', port }] : [{ host: '0.0.0.0', port }, { host: '::', port }];
}

export const proxyOptions = (c: Config) => ({ peekTimeoutMs: c.proxy.peekTimeoutMs, idleTimeoutMs: c.proxy.idleTimeoutMs, maxConnectionsPerClient: c.proxy.maxConnectionsPerClient });

type ProxyLike = Pick<TransparentProxy, 'listen' | 'close' | 'configure' | 'acceptName' | 'splicerName'>;

export class ProxyListener<P extends ProxyLike = TransparentProxy> {
  proxy: P | null = null;
  private at: ListenAddress[] = [];

  constructor(
    private readonly make: (c: Config) => P,
    private readonly logger: Logger,
  ) {}

  async serve(c: Config): Promise<void> {
    const want = c.proxy.enabled ? proxyListenAddresses(c) : [];
    if (this.proxy && sameListen(want, this.at)) {
      this.proxy.configure(proxyOptions(c));
      return;
    }
    await this.close();
    if (want.length === 0) return;
    const p = this.make(c);
    const bound: ListenAddress[] = [];
    for (const a of want) {
      try {
        await p.listen([a]);
        bound.push(a);
      } catch (e) {
        // A host without IPv6 (no ::1) still proxies IPv4; anything else is fatal.
        const cause = (e as Error).cause as NodeJS.ErrnoException | undefined;
        if (a.host.includes(':') && cause?.code === 'EADDRNOTAVAIL') {
          this.logger.warn({ listen: formatListen(a) }, 'no IPv6 here: the proxy serves IPv4 only');
          continue;
        }
        await p.close();
        throw e;
      }
    }
    this.proxy = p;
    this.at = want;
    this.logger.info({ listen: bound.map(formatListen), ports: c.proxy.ports, accept: p.acceptName, splicer: p.splicerName }, 'proxy listening');
  }

  async close(): Promise<void> {
    const p = this.proxy;
    this.proxy = null;
    this.at = [];
    await p?.close();
  }
}
