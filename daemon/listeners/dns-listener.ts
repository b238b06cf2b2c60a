// The resolver's sockets and what follows from their addresses: whom it
// answers (the ACL), the port LAN DNS is redirected to (router mode), where
// this machine's own DNS is sent (host mode), and the breakout's resolvers
// (`breakout.dns: auto` reads the system's, minus splitwan's own addresses).
// A reload and a change of the LAN's addresses both come here, one at a time.
import { isIP } from 'node:net';
import type { Config, Upstream } from '../../config/types.js';
import { parseUpstream } from '../../config/upstream.js';
import type { Logger } from '../../lib/logger.js';
import { ClientAcl } from '../../dns/acl.js';
import type { DnsServer, ListenAddress } from '../../dns/server.js';
import type { DataplanePlan } from '../dataplane/plan.js';
import type { IpAddrLink } from '../os-parse.js';
import { upstreamNameservers } from '../resolv-conf.js';
import { HOST_LISTEN, lanSubnets, listenAddresses, localDnsTargets, redirectPort } from '../resolver-paths.js';

export const sameListen = (a: readonly ListenAddress[], b: readonly ListenAddress[]): boolean =>
  a.length === b.length && a.every((x, i) => x.host === b[i]!.host && x.port === b[i]!.port);

export const formatListen = (a: ListenAddress): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

/** The system's resolvers for `breakout.dns: auto`, minus stubs and splitwan's own addresses. */
export function systemResolvers(texts: readonly (string | null)[], own: readonly ListenAddress[]): Upstream[] {
  return upstreamNameservers(texts, own.map((a) => a.host)).flatMap((a) => {
    const u = parseUpstream(a.includes(':') ? `[${a}]:53` : a);
    return 'error' in u ? [] : [u];
  });
}

/** Servers as systemd-resolved gives them (`host`, `host:port`, `v6%zone`, `[v6%zone]:port`) → upstreams. */
export function resolvedUpstreams(servers: readonly string[]): Upstream[] {
  return servers.flatMap((a) => {
    const u = parseUpstream(isIP(a.replace(/%.*$/, '')) === 6 ? `[${a}]:53` : a);
    return 'error' in u ? [] : [u];
  });
}

export interface DnsListenerDeps {
  server: Pick<DnsServer, 'listen' | 'close' | 'udpTransport'>;
  /** `ip -j addr`: the interfaces' addresses (router mode, dns.listen auto). */
  links(): Promise<IpAddrLink[]>;
  /** The resolv.conf files' texts (null: missing), for `breakout.dns: auto`. */
  resolvConfTexts(): Promise<(string | null)[]>;
  logger: Logger;
}

export class DnsListener {
  listen: ListenAddress[] = [];
  acl = new ClientAcl([]);
  dnsPort: number | null = null;
  localDns: DataplanePlan['localDns'] = null;
  breakoutDns: readonly Upstream[] = [];
  /**
   * Host mode, `dns.listen: auto`: where to listen, in order: the next when
   * one is taken. 127.0.0.53:53 by default; splitwan's own addresses when
   * systemd-resolved holds that one (daemon/host-resolved.ts).
   */
  hostListen: readonly ListenAddress[] = [HOST_LISTEN];
  /** `breakout.dns: auto` read from systemd-resolved's per-link servers; null: from resolv.conf. */
  breakoutOverride: readonly string[] | null = null;
  private serial: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: DnsListenerDeps) {}

  /** (Re)binds when the addresses changed; one call at a time, so two rebinds never race. */
  serve(c: Config): Promise<void> {
    const p = this.serial.then(() => this.serveNow(c));
    this.serial = p.catch(() => undefined);
    return p;
  }

  /** What the data plane and the ACL depend on, to tell whether an address event changed anything. */
  key(): string {
    return JSON.stringify([this.listen, this.acl.subnets, this.dnsPort, this.localDns]);
  }

  async close(): Promise<void> {
    this.listen = [];
    await this.d.server.close();
  }

  private async serveNow(c: Config): Promise<void> {
    const links = c.mode === 'router' || c.dns.listen === 'auto' ? await this.d.links() : [];
    const candidates = c.mode === 'host' && c.dns.listen === 'auto' ? this.hostListen : null;
    // Host mode, auto: the address it holds stays while it is still a candidate.
    const want = candidates ? (candidates.some((a) => sameListen([a], this.listen)) ? this.listen : candidates.slice(0, 1)) : listenAddresses(c, links);
    const acl = new ClientAcl(lanSubnets(c, links));
    if (want.length === 0) throw new Error(`no address to serve DNS on: the LAN interfaces ${c.lan.join(', ')} have no address; set dns.listen`);
    if (!sameListen(want, this.listen)) {
      await this.d.server.close();
      this.listen = []; // a failed bind below is retried by the next reload, not taken for done
      this.listen = candidates ? await this.bindFirstFree(candidates) : await this.d.server.listen(want);
      this.d.logger.info({ listen: this.listen.map(formatListen), answers: acl.subnets, udp: this.d.server.udpTransport }, 'resolver listening');
    }
    this.acl = acl;
    this.dnsPort = redirectPort(c, this.listen, links);
    this.localDns = localDnsTargets(c, this.listen);
    this.breakoutDns = c.breakout.dns !== 'auto' ? c.breakout.dns : this.breakoutOverride !== null ? resolvedUpstreams(this.breakoutOverride) : systemResolvers(await this.d.resolvConfTexts(), this.listen);
    if (this.breakoutDns.length === 0) this.d.logger.error({}, 'breakout.dns is auto but the system has no resolver besides stubs: breakout names will fail; set breakout.dns');
  }

  /** The first candidate nobody else holds (another local resolver may sit on one). */
  private async bindFirstFree(candidates: readonly ListenAddress[]): Promise<ListenAddress[]> {
    let last: unknown = null;
    for (const a of candidates) {
      try {
        return await this.d.server.listen([a]);
      } catch (e) {
        last = e;
        if (!/EADDRINUSE|EADDRNOTAVAIL/.test((e as Error).message)) throw e;
        this.d.logger.warn({ listen: formatListen(a), err: (e as Error).message }, 'address taken by another program: trying the next');
      }
    }
    throw last ?? new Error('no address to serve DNS on');
  }
}
