// The resolver's sockets and what follows from their addresses: whom it
// answers (the ACL), the port LAN DNS is redirected to (router mode), where
// this machine's own DNS is sent (host mode), and the breakout's resolvers
// (`breakout.dns: auto` reads the system's, minus splitwan's own addresses).
// A reload and a change of the LAN's addresses both come here, one at a time.
import type { Config, Upstream } from '../../config/types.js';
import { parseUpstream } from '../../config/upstream.js';
import type { Logger } from '../../lib/logger.js';
import { ClientAcl } from '../../dns/acl.js';
import type { DnsServer, ListenAddress } from '../../dns/server.js';
import type { DataplanePlan } from '../dataplane/plan.js';
import type { IpAddrLink } from '../os-parse.js';
import { upstreamNameservers } from '../resolv-conf.js';
import { lanSubnets, listenAddresses, localDnsTargets, redirectPort } from '../resolver-paths.js';

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
    const want = listenAddresses(c, links);
    const acl = new ClientAcl(lanSubnets(c, links));
    if (want.length === 0) throw new Error(`no address to serve DNS on: the LAN interfaces ${c.lan.join(', ')} have no address; set dns.listen`);
    if (!sameListen(want, this.listen)) {
      await this.d.server.close();
      this.listen = []; // a failed bind below is retried by the next reload, not taken for done
      this.listen = await this.d.server.listen(want);
      this.d.logger.info({ listen: this.listen.map(formatListen), answers: acl.subnets, udp: this.d.server.udpTransport }, 'resolver listening');
    }
    this.acl = acl;
    this.dnsPort = redirectPort(c, this.listen, links);
    this.localDns = localDnsTargets(c, this.listen);
    this.breakoutDns = c.breakout.dns === 'auto' ? systemResolvers(await this.d.resolvConfTexts(), this.listen) : c.breakout.dns;
    if (this.breakoutDns.length === 0) this.d.logger.error({}, 'breakout.dns is auto but the system has no resolver besides stubs: breakout names will fail; set breakout.dns');
  }
}
