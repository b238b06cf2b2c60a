// What the resolver needs from the data plane, computed from the config and
// the plan in force: which resolvers a path has now, whether it carries
// IPv6, where it listens and whom it answers, and the tagger keyed by rule.
// Pure apart from the NftTagger it is given; daemon.ts (createDaemon) wires it.
import type { Config, GatewayConfig, PathName, Target, UnmanagedGatewayConfig, Upstream } from '../config/types.js';
import { parseCidr } from '../lib/ip.js';
import type { PathState, RouteTagger } from '../dns/resolver.js';
import type { ListenAddress } from '../dns/server.js';
import type { IpAddrLink } from './os-parse.js';
import { pickTarget, tagSetNames, type DataplanePlan, type LocalDns, type PlannedRule } from './dataplane/plan.js';
import type { NftTagger, TagSets } from './dataplane/tagger.js';

/** The host-mode default: the address systemd-resolved's stub made familiar. */
export const HOST_LISTEN: ListenAddress = { host: '127.0.0.53', port: 53 };

function gatewayOf(config: Config, plan: Pick<DataplanePlan, 'active'>, path: PathName): GatewayConfig | undefined {
  const name = path === 'tunnel' ? plan.active : path.slice(3);
  return config.tunnel.gateways.find((g) => g.name === name);
}

/** A gateway another program made (interface or table), by path. */
function unmanagedOf(config: Config, plan: Pick<DataplanePlan, 'active'>, path: PathName): UnmanagedGatewayConfig | undefined {
  const name = path === 'tunnel' ? plan.active : path.slice(3);
  return config.tunnel.unmanaged?.find((g) => g.name === name);
}

/** A WAN link's resolvers: its own, or the breakout's (dns: auto). */
function linkUpstreams(config: Config, path: PathName, breakout: readonly Upstream[]): readonly Upstream[] {
  const l = config.breakout.links?.find((x) => x.path === path);
  return l === undefined || l.dns === 'auto' ? breakout : l.dns;
}

/**
 * The paths as the resolver sees them. `plan()` is read at every call, so a
 * failover or reload is seen by the next query. Tunnel names never get the
 * breakout's resolvers: with no active gateway the tunnel has none (SERVFAIL).
 */
export function pathState(o: {
  config: () => Config;
  plan: () => Pick<DataplanePlan, 'active'>;
  breakout: () => readonly Upstream[];
  healthy: (gateway: string) => boolean;
}): PathState {
  return {
    pick: (via: readonly Target[]) => pickTarget(via, o.healthy),
    upstreams: (path: PathName) =>
      path === 'breakout' ? o.breakout() : path.startsWith('link:') ? linkUpstreams(o.config(), path, o.breakout()) : (gatewayOf(o.config(), o.plan(), path)?.dns ?? unmanagedOf(o.config(), o.plan(), path)?.dns ?? []),
    ipv6: (path: PathName) => {
      // The breakout's IPv6 is the ISP's business (a link's too): AAAA answers go through as they are.
      if (path === 'breakout' || path.startsWith('link:')) return true;
      // Another program's tunnel: whether it carries IPv6 is its business.
      if (unmanagedOf(o.config(), o.plan(), path) !== undefined) return true;
      const g = gatewayOf(o.config(), o.plan(), path);
      return g !== undefined && g.wireguard.addresses.some((a) => a.includes(':'));
    },
  };
}

/** Tags into the plan's sets for a config rule; rules that match no names tag nothing. */
export class RuleTagger implements RouteTagger {
  /** The rules `setsByRule` was made from (a plan's rules are not changed once it is in force). */
  private rules: readonly PlannedRule[] | null = null;
  /**
   * Each tagged rule's sets by rule index, made once per plan: every cache
   * hit of a tagged name asks (a scan of the rules and two new strings a
   * hit, before), and the tagger's shadow then holds one copy of each name.
   */
  private setsByRule = new Map<number, TagSets>();

  constructor(
    private readonly nft: Pick<NftTagger, 'pending' | 'tag'>,
    private readonly plan: () => Pick<DataplanePlan, 'rules'> | null,
  ) {}

  tag(rule: number, addresses: readonly string[], ttlMs: number): Promise<void> | null {
    const sets = rule < 0 ? undefined : this.setsOf(rule);
    if (sets === undefined) return null;
    const todo = this.nft.pending(sets, addresses, ttlMs);
    return todo.length === 0 ? null : this.nft.tag(sets, todo, ttlMs);
  }

  private setsOf(rule: number): TagSets | undefined {
    const rules = this.plan()?.rules ?? null;
    if (rules !== this.rules) {
      this.rules = rules;
      this.setsByRule = new Map((rules ?? []).filter((r) => r.tagged).map((r) => [r.index, tagSetNames(r)]));
    }
    return this.setsByRule.get(rule);
  }
}

/**
 * Where the resolver listens: `dns.listen`, or by default 127.0.0.53:53 in
 * host mode and port 53 on every LAN interface address in router mode
 * (link-local addresses need a zone, so they are left out).
 */
export function listenAddresses(config: Config, links: readonly IpAddrLink[]): ListenAddress[] {
  if (config.dns.listen !== 'auto') return [...config.dns.listen];
  if (config.mode === 'host') return [HOST_LISTEN];
  const out: ListenAddress[] = [];
  for (const l of links) {
    if (!config.lan.includes(l.ifname)) continue;
    for (const a of l.addresses) if (a.scope !== 'link') out.push({ host: a.local, port: 53 });
  }
  return out;
}

/** The subnets whose clients the resolver answers besides loopback: the LAN interfaces' prefixes (router mode), link-local left out. */
export function lanSubnets(config: Config, links: readonly IpAddrLink[]): string[] {
  if (config.mode !== 'router') return [];
  const out: string[] = [];
  for (const l of links) {
    if (!config.lan.includes(l.ifname)) continue;
    for (const a of l.addresses) {
      // fe80::/64 is on every link, the WAN's too: it would admit the ISP's side.
      if (a.scope === 'link') continue;
      const c = parseCidr(a.cidr);
      if (!('error' in c) && !out.includes(c.text)) out.push(c.text);
    }
  }
  return out;
}

/**
 * Host mode: where this machine's own DNS to other servers is redirected —
 * per family, a loopback address the resolver listens on (a wildcard counts
 * as its family's loopback). null in router mode or with nothing bound.
 */
export function localDnsTargets(config: Config, listen: readonly ListenAddress[]): DataplanePlan['localDns'] {
  if (config.mode !== 'host' || listen.length === 0) return null;
  const pick = (family: 4 | 6): LocalDns | null => {
    for (const a of listen) {
      const v6 = a.host.includes(':');
      if ((family === 6) !== v6) continue;
      if (a.host === '0.0.0.0') return { host: '127.0.0.1', port: a.port };
      if (a.host === '::') return { host: '::1', port: a.port };
      if (family === 4 ? a.host.startsWith('127.') : a.host === '::1') return { host: a.host, port: a.port };
    }
    return null;
  };
  const v4 = pick(4);
  const v6 = pick(6);
  return v4 || v6 ? { v4, v6 } : null;
}

/**
 * The port LAN DNS is redirected to (router mode): the resolver's, when it
 * listens on every LAN address with one port; null otherwise (no redirect,
 * rather than redirecting clients to a port nobody serves).
 */
export function redirectPort(config: Config, listen: readonly ListenAddress[], links: readonly IpAddrLink[]): number | null {
  if (config.mode !== 'router' || listen.length === 0) return null;
  const port = listen[0]!.port;
  if (!listen.every((a) => a.port === port)) return null;
  const wildcard = listen.some((a) => a.host === '0.0.0.0' || a.host === '::');
  const lanV4 = links.filter((l) => config.lan.includes(l.ifname)).flatMap((l) => l.addresses.filter((a) => a.family === 4).map((a) => a.local));
  // nft's redirect goes to the incoming interface's primary IPv4 address.
  return wildcard || lanV4.every((a) => listen.some((x) => x.host === a)) ? port : null;
}
