// The one wiring module: builds the daemon from its parts and runs it until
// SIGTERM/SIGINT. Everything OS-facing is created here and nowhere else.
//
// Start: remove what a crashed run left (stateless), bring every gateway's
// tunnel up, render and apply the data plane, then follow config reloads and
// the default route. Stop: tunnels down, table/rules/routes removed, so the
// machine is as it was.
import { randomInt } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { EventEmitter } from 'node:events';
import { compilePolicy, type ListContent, type Policy } from '../config/policy.js';
import { BUILTIN_DOH_LIST, builtinDohList } from '../config/lists/doh-endpoints.js';
import { missingRuntimeSettings } from './runtime-settings.js';
import { parseUpstream } from '../config/upstream.js';
import type { Config, Upstream } from '../config/types.js';
import { ClientAcl } from '../dns/acl.js';
import { DnsCache } from '../dns/cache.js';
import { Forwarder, readQuestion } from '../dns/forwarder.js';
import { responseInfo } from '../dns/wire.js';
import { newResolverStats, Resolver as DnsResolver } from '../dns/resolver.js';
import { DnsServer, type ListenAddress } from '../dns/server.js';
import type { LoadedConfig } from '../config/load.js';
import { systemClock, type Logger } from '../lib/logger.js';
import { ConfigStore } from '../config/store.js';
import type { GatewayConfig } from '../config/types.js';
import { ListRefresher } from '../config/lists/refresher.js';
import { linuxRunner, type Runner } from './exec-linux.js';
import { Dataplane } from './dataplane/dataplane.js';
import { LinuxDamageWatch } from './dataplane/damage-watch-linux.js';
import { openNft } from './dataplane/libnft-linux.js';
import { removeStaleHomes } from './dataplane/nft-session-linux.js';
import { gatewayMark, MARK_BLOCK, MARK_BREAKOUT, MARK_MASK, MARK_PROXIED, MARK_TUNNEL, pickTarget, planDataplane, tagSetNames, type DataplanePlan } from './dataplane/plan.js';
import { assertNoOtherDaemon, ControlServer, type ControlHandlers } from './control/server.js';
import { diffConfigs } from './control/config-diff.js';
import type { FailoverRecord, StatusReport } from './control/protocol.js';
import { explain, withTag } from './explain.js';
import { linuxTagLookup } from './tag-lookup-linux.js';
import { Metrics } from './metrics.js';
import { formatIssue } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { formatIp, parseIp } from '../lib/ip.js';
import { normalizeDomain } from '../config/domain.js';
import { HealthMonitor, type MonitoredGateway } from './health/monitor.js';
import { linuxPing } from './health/ping-linux.js';
import { Prober } from './health/probes.js';
import type { TunnelStatus } from './tunnel/types.js';
import { EndpointRefresher } from './tunnel/endpoint-refresh.js';
import { LinuxRouter } from './dataplane/router-linux.js';
import { IpMonitor } from './dataplane/ip-monitor-linux.js';
import { WanWatcher } from './dataplane/wan-watch-linux.js';
import { NftTagger } from './dataplane/tagger.js';
import { parseIpAddrs, type IpAddrLink } from './os-parse.js';
import { MarkedDialer } from './path-dialer.js';
import { lanSubnets, listenAddresses, pathState, localDnsTargets, redirectPort, RuleTagger } from './resolver-paths.js';
import { RESOLV_CONF_FILES, upstreamNameservers } from './resolv-conf.js';
import { linuxPathSockets, originalDst } from './sockets-linux.js';
import { TransparentProxy } from '../proxy/server.js';
import { cleanupTunnels } from './tunnel/orphans-linux.js';
import { createLinuxTunnels } from './tunnel/tunnels-linux.js';
import type { TunnelSpec } from './tunnel/types.js';

export const DEFAULT_MTU = 1420;

/** Looks a name up: its A records, else AAAA (a resolver as the daemon itself uses one). */
export type NameLookup = (name: string) => Promise<string>;

/**
 * Gateway endpoints are looked up through the breakout resolvers on the
 * breakout path (marked sockets): the system resolver may be splitwan itself
 * (host mode) or route through a tunnel that is not up yet.
 */
export function breakoutLookup(forwarder: Pick<Forwarder, 'forward'>, upstreams: () => readonly Upstream[]): NameLookup {
  return async (name) => {
    for (const type of ['A', 'AAAA'] as const) {
      const query = dnsPacket.encode({ type: 'query', id: randomInt(0, 0x10000), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
      const q = readQuestion(query);
      if (q === null) throw new Error(`not a name: ${name}`);
      const resp = await forwarder.forward(query, q, upstreams(), 'breakout').catch(() => null);
      const info = resp === null ? null : responseInfo(resp);
      const found = info?.answers.find((a) => a.type === (type === 'A' ? 1 : 28))?.data;
      if (found !== undefined) return found;
    }
    throw new Error(`cannot resolve gateway endpoint ${name} through the breakout resolvers (${upstreams().map((u) => u.text).join(', ') || 'none'})`);
  };
}

export async function tunnelSpec(g: GatewayConfig, lookup: NameLookup): Promise<TunnelSpec> {
  const wg = g.wireguard;
  const peer = wg.peers[0]!;
  return {
    name: g.name,
    ifname: g.ifname,
    privateKey: wg.privateKey,
    addresses: wg.addresses,
    mtu: wg.mtu ?? DEFAULT_MTU,
    fwmark: MARK_BREAKOUT,
    peer: {
      publicKey: peer.publicKey,
      ...(peer.presharedKey !== undefined ? { presharedKey: peer.presharedKey } : {}),
      endpoint: { host: isIP(peer.endpoint!.host) ? peer.endpoint!.host : await lookup(peer.endpoint!.host), port: peer.endpoint!.port },
      allowedIPs: peer.allowedIPs,
      ...(peer.persistentKeepalive !== undefined ? { persistentKeepalive: peer.persistentKeepalive } : {}),
    },
  };
}

export interface RunOptions {
  configPath: string;
  /** For status: the package version. */
  version?: string;
  logger: Logger;
  /** Changes the logger's level (its children's too): `log.level` on reload. */
  setLogLevel?: (level: string) => void;
  signals: Pick<EventEmitter, 'on' | 'off' | 'once'>;
  runner?: Runner;
}

/** Removes everything splitwan installs; safe to run any time (`splitwan cleanup`, start, stop). */
export async function cleanupAll(run: Runner, logger: Logger): Promise<void> {
  const session = openNft(logger);
  try {
    await new LinuxRouter(run, session, logger).cleanup();
  } finally {
    session.close();
  }
  await cleanupTunnels(run, logger);
  // The nft -i fallback's private HOMEs left by a crashed run hold tagged destinations in their history.
  removeStaleHomes();
}

/** `ip -j addr`: the addresses the LAN interfaces have (router mode's listen addresses and ACL). */
async function readLinks(run: Runner): Promise<IpAddrLink[]> {
  return parseIpAddrs((await run.run(['ip', '-j', 'addr', 'show'])).stdout);
}

/** `breakout.dns: auto`: the system's resolvers, minus stubs and splitwan's own addresses. */
async function systemResolvers(own: readonly ListenAddress[]): Promise<Upstream[]> {
  const texts = await Promise.all(RESOLV_CONF_FILES.map((f) => readFile(f, 'utf8').catch(() => null)));
  return upstreamNameservers(texts, own.map((a) => a.host)).flatMap((a) => {
    const u = parseUpstream(a.includes(':') ? `[${a}]:53` : a);
    return 'error' in u ? [] : [u];
  });
}

/**
 * blockEncryptedDns: the DoH endpoints (dns.dohLists, or the built-in list
 * when it names none) as a name matcher for the resolver and CIDRs for the
 * data plane. null when off.
 */
function dohEndpoints(loaded: LoadedConfig): { names: Policy; cidrs: string[] } | null {
  const c = loaded.config;
  if (!c.dns.blockEncryptedDns) return null;
  const lists = new Map<string, ListContent>(loaded.lists);
  let names = [...c.dns.dohLists];
  if (names.length === 0) {
    const b = builtinDohList();
    lists.set(BUILTIN_DOH_LIST, { name: BUILTIN_DOH_LIST, file: BUILTIN_DOH_LIST, domains: b.domains, cidrs: b.cidrs });
    names = [BUILTIN_DOH_LIST];
  }
  const rule = { index: 0, domains: [], cidrs: [], sources: [], lists: names, via: ['block' as const], label: 'doh', pos: { file: c.file, line: 1, col: 1 } };
  return {
    names: compilePolicy({ rules: [rule], default: ['breakout'] }, lists),
    cidrs: names.flatMap((n) => lists.get(n)?.cidrs.map((x) => x.cidr) ?? []),
  };
}

/** Host mode: local clients are redirected to loopback; router mode: LAN clients to the router's own addresses. */
export function proxyListenAddresses(c: Config): ListenAddress[] {
  const port = c.proxy.listenPort;
  return c.mode === 'host' ? [{ host: '127.0.0.1', port }, { host: '::1', port }] : [{ host: '0.0.0.0', port }, { host: '::', port }];
}

const proxyOptions = (c: Config) => ({ peekTimeoutMs: c.proxy.peekTimeoutMs, idleTimeoutMs: c.proxy.idleTimeoutMs });

const sameListen = (a: readonly ListenAddress[], b: readonly ListenAddress[]): boolean =>
  a.length === b.length && a.every((x, i) => x.host === b[i]!.host && x.port === b[i]!.port);

/** Runs the daemon; resolves when it has stopped cleanly. */
export async function runDaemon(o: RunOptions): Promise<void> {
  const log = o.logger;
  const run = o.runner ?? linuxRunner;
  const clock = systemClock;
  const store = await ConfigStore.open({ file: o.configPath, logger: log.child({ module: 'config' }), signals: o.signals });
  await assertNoOtherDaemon(store.current.config.control.socket).catch((e: unknown) => {
    store.close();
    throw e;
  });
  await cleanupAll(run, log.child({ module: 'cleanup' }));

  const session = openNft(log.child({ module: 'nft' }));
  const router = new LinuxRouter(run, session, log.child({ module: 'router' }));
  const tunnels = createLinuxTunnels({ runner: run, logger: log, clock });
  const nftTagger = new NftTagger(session, clock);
  // Repairs follow nft/ip monitor events (another program flushing the ruleset), not only a timer.
  const dataplaneLog = log.child({ module: 'dataplane' });
  const dataplane = new Dataplane({ router, clock, logger: dataplaneLog, watch: new LinuxDamageWatch(dataplaneLog, clock), onTagsLost: () => nftTagger.reset() });
  const lists = new ListRefresher(store, log.child({ module: 'lists' }));
  const dnsLog = log.child({ module: 'dns' });
  let specs: TunnelSpec[] = [];
  let wan: string | null = null;
  let wanWatcher: WanWatcher | null = null;
  /** `ip monitor address`: the resolver follows the LAN's addresses (router mode, or dns.listen auto). */
  let addrWatcher: IpMonitor | null = null;
  let current: DataplanePlan | null = null;
  let listen: ListenAddress[] = [];
  let dnsPort: number | null = null;
  let localDns: DataplanePlan['localDns'] = null;
  let breakoutDns: readonly Upstream[] = [];
  let doh: { names: Policy; cidrs: string[] } | null = null;
  let acl = new ClientAcl([]);
  let policy = store.current.policy;
  /**
   * The config whose plan is applied (with `policy`): health and route events
   * re-plan from it, never from a reload still in progress or one that failed,
   * whose rule numbers may not match the policy answering queries.
   */
  let applied: LoadedConfig = store.current;
  let stopping = false;
  /** Work started by events (switches, re-plans) that a stop waits for before cleaning up. */
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };
  let monitor: HealthMonitor | null = null;
  const failovers: FailoverRecord[] = [];
  /** The gateway the last carried-out switch went to (the failover history's "from"). */
  let lastSwitchedTo: string | null = null;
  const startedAt = clock.now();
  const healthy = (g: string): boolean => monitor?.healthy(g) ?? true;

  // The resolver: its sockets leave through the path they serve (SO_MARK).
  const dialer = new MarkedDialer(linuxPathSockets, () => ({ gateways: current?.gateways ?? [], active: current?.active ?? null }));
  // Counters outlive a reload's new resolver: metrics are monotonic, status counts since start.
  const dnsStats = newResolverStats();
  let metrics: Metrics | null = null;
  const forwarder = new Forwarder({ dialer, logger: dnsLog, timeoutMs: store.current.config.dns.timeoutMs, observe: (o) => metrics?.upstream(o) });
  const cacheOf = (c: Config): DnsCache => new DnsCache(c.dns.cache, clock);
  let cache = cacheOf(store.current.config);
  const makeResolver = (c: Config): DnsResolver =>
    new DnsResolver({
      // The policy in force is the one whose plan (rule numbers → tag sets) is applied.
      policy: () => policy,
      paths: pathState({ config: () => store.current.config, plan: () => ({ active: current?.active ?? null }), breakout: () => breakoutDns, healthy }),
      upstreams: forwarder,
      tagger: new RuleTagger(nftTagger, () => current),
      cache,
      clock,
      logger: dnsLog,
      stats: dnsStats,
      options: {
        tagTtlMs: c.dns.tagTtlMs,
        blockAnswer: c.dns.blockAnswer,
        refuseName: (name) => doh !== null && doh.names.ruleForName(name) >= 0,
        minTtl: c.dns.cache.minTtl,
        maxTtl: c.dns.cache.maxTtl,
        negativeTtl: c.dns.cache.negativeTtl,
      },
    });
  let resolver = makeResolver(store.current.config);
  const lookup = breakoutLookup(forwarder, () => breakoutDns);
  // The server asks `handler` each time, so a reload can swap the resolver under it.
  const server = new DnsServer({
    handler: { handle: (m, c) => resolver.handle(m, c), answerHit: (b, off, len, out, at, room) => resolver.answerHit(b, off, len, out, at, room) },
    allows: (a) => acl.allows(a),
    logger: dnsLog,
  });

  // The transparent proxy (proxy.enabled): same policy, same path choice, dials on marked sockets.
  const proxyLog = log.child({ module: 'proxy' });
  let proxy: TransparentProxy | null = null;
  let proxyListen: ListenAddress[] = [];
  const serveProxy = async (c: Config): Promise<void> => {
    const want = c.proxy.enabled ? proxyListenAddresses(c) : [];
    if (proxy && sameListen(want, proxyListen)) {
      proxy.configure(proxyOptions(c));
      return;
    }
    await proxy?.close();
    proxy = null;
    proxyListen = [];
    if (want.length === 0) return;
    const p = new TransparentProxy({ policy: () => policy, pick: (via) => pickTarget(via, healthy), dialer, originalDst, logger: proxyLog }, proxyOptions(c));
    const bound: ListenAddress[] = [];
    for (const a of want) {
      try {
        await p.listen([a]);
        bound.push(a);
      } catch (e) {
        // A host without IPv6 (no ::1) still proxies IPv4; anything else is fatal.
        const cause = (e as Error).cause as NodeJS.ErrnoException | undefined;
        if (a.host.includes(':') && cause?.code === 'EADDRNOTAVAIL') {
          proxyLog.warn({ listen: `[${a.host}]:${a.port}` }, 'no IPv6 here: the proxy serves IPv4 only');
          continue;
        }
        await p.close();
        throw e;
      }
    }
    proxy = p;
    proxyListen = want;
    proxyLog.info({ listen: bound.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)), ports: c.proxy.ports, accept: p.acceptName, splicer: p.splicerName }, 'proxy listening');
  };

  const plan = (loaded: LoadedConfig) =>
    planDataplane({
      config: loaded.config,
      listCidrs: new Map([...loaded.lists].map(([n, l]) => [n, l.cidrs.map((c) => c.cidr)])),
      // No default route yet (auto mode, cable out): nothing can leave via the
      // breakout anyway; 'lo' keeps the ruleset valid until the watcher reports one.
      wan: wan ?? 'lo',
      // The health monitor's choice (before any probe: the preferred gateway).
      active: monitor?.active ?? null,
      healthy,
      dnsPort,
      localDns,
      ...(doh ? { dohCidrs: doh.cidrs } : {}),
    });

  const applyPlan = async (p: DataplanePlan): Promise<void> => {
    // After a stop began, nothing may re-install what the cleanup removes.
    if (stopping) return;
    // Rules that are gone took their sets along: forget what the tagger had there.
    const kept = new Set(p.rules.filter((r) => r.tagged).flatMap((r) => Object.values(tagSetNames(r))));
    for (const r of current?.rules ?? []) for (const set of Object.values(tagSetNames(r))) if (!kept.has(set)) nftTagger.forgetSet(set);
    await dataplane.apply(p);
    current = p;
  };

  /** (Re)binds the resolver when its addresses changed; clients are answered by the new sockets at once. */
  const serveDns = async (c: Config): Promise<void> => {
    const links = c.mode === 'router' || c.dns.listen === 'auto' ? await readLinks(run) : [];
    const want = listenAddresses(c, links);
    acl = new ClientAcl(lanSubnets(c, links));
    if (want.length === 0) throw new Error(`no address to serve DNS on: the LAN interfaces ${c.lan.join(', ')} have no address; set dns.listen`);
    if (!sameListen(want, listen)) {
      await server.close();
      listen = []; // a failed bind below is retried by the next reload, not taken for done
      listen = await server.listen(want);
      dnsLog.info({ listen: listen.map((a) => `${a.host}:${a.port}`), answers: acl.subnets, udp: server.udpTransport }, 'resolver listening');
    }
    dnsPort = redirectPort(c, listen, links);
    localDns = localDnsTargets(c, listen);
    breakoutDns = c.breakout.dns === 'auto' ? await systemResolvers(listen) : c.breakout.dns;
    if (breakoutDns.length === 0) dnsLog.error({}, 'breakout.dns is auto but the system has no resolver besides stubs: breakout names will fail; set breakout.dns');
  };

  // serveDns runs for a reload and for an address change: one at a time, so two rebinds never race.
  let dnsSerial: Promise<unknown> = Promise.resolve();
  const serveDnsSerially = (c: Config): Promise<void> => {
    const p = dnsSerial.then(() => serveDns(c));
    dnsSerial = p.catch(() => undefined);
    return p;
  };

  /** Runs `ip monitor address` while the config's resolver addresses come from the interfaces (router mode, dns.listen auto). */
  const watchAddresses = (c: Config): void => {
    const wanted = c.mode === 'router' || c.dns.listen === 'auto';
    if (!wanted) {
      addrWatcher?.stop();
      addrWatcher = null;
      return;
    }
    if (addrWatcher !== null || stopping) return;
    addrWatcher = new IpMonitor(['address'], log.child({ module: 'lan' }), clock, () => {
      void track(followAddresses()).catch((e: unknown) => dnsLog.error({ err: e }, 'following the LAN addresses failed'));
    });
    addrWatcher.start();
  };

  /**
   * The LAN's addresses changed (a new delegated IPv6 prefix, a DHCP lease,
   * an address added by hand): the resolver's sockets, its ACL and the DNS
   * redirect follow, as a reload would make them. Nothing happens when what
   * the resolver uses did not change (most address events are other links').
   */
  const followAddresses = async (): Promise<void> => {
    const c = store.current.config;
    if (stopping || !(c.mode === 'router' || c.dns.listen === 'auto')) return;
    const key = (): string => JSON.stringify([listen, acl.subnets, dnsPort, localDns]);
    const before = key();
    await serveDnsSerially(c);
    if (key() === before) return;
    dnsLog.info({ listen: listen.map((a) => `${a.host}:${a.port}`), answers: acl.subnets }, 'addresses changed: the resolver follows');
    await applyPlan(plan(applied));
  };

  // Health: every gateway probed through its own tunnel; the monitor picks the active one.
  const healthForwarder = new Forwarder({ dialer, logger: log.child({ module: 'health' }), timeoutMs: store.current.config.health.timeoutMs });
  let tunnelStatus: { at: number; list: Promise<TunnelStatus[]> } | null = null;
  const prober = new Prober({
    dialer,
    forward: (q, qq, u, p) => healthForwarder.forward(q, qq, u, p),
    // One status read (ip link + wg show per tunnel) serves every gateway's handshake
    // probe within most of an interval: the rounds of different gateways are not aligned.
    tunnel: async (ifname) => {
      if (!tunnelStatus || clock.now() - tunnelStatus.at > store.current.config.health.intervalMs * 0.9) tunnelStatus = { at: clock.now(), list: tunnels.status() };
      return (await tunnelStatus.list).find((s) => s.ifname === ifname) ?? null;
    },
    ping: linuxPing(run),
    clock,
    timeoutMs: store.current.config.health.timeoutMs,
  });
  const healthLog = log.child({ module: 'health' });
  /** Drops the flows whose saved path is one of `marks`; the proxy resets its connections on `paths`. */
  const dropMarks = async (marks: readonly number[], paths: readonly string[]): Promise<void> => {
    // Not the flows redirected to the proxy (their client side is local): the proxy resets its own.
    const mask = MARK_MASK | MARK_PROXIED;
    for (const m of marks) await run.run(['conntrack', '-D', '--mark', `0x${m.toString(16)}/0x${mask.toString(16)}`], { allowFail: true }).catch(() => undefined);
    proxy?.resetPaths(paths);
  };
  /** Flows of a dead gateway are dropped so clients reconnect at once instead of hanging. */
  const dropFlows = async (gateway: string): Promise<void> => {
    const i = store.current.config.tunnel.gateways.findIndex((g) => g.name === gateway);
    await dropMarks([MARK_TUNNEL, ...(i >= 0 ? [gatewayMark(i)] : [])], ['tunnel', `gw:${gateway}`]);
  };
  monitor = new HealthMonitor({
    ...store.current.config.health,
    prober,
    clock,
    logger: healthLog,
    onSwitch: (s) =>
      track(
        (async () => {
          if (stopping) return;
          // The monitor's choice now: a queued switch may have been overtaken by another.
          const to = monitor!.active;
          // History as switches were carried out: a queued switch overtaken by another may be a no-op now.
          const from = lastSwitchedTo;
          if (from !== to) {
            lastSwitchedTo = to;
            failovers.unshift({ at: clock.now(), from, to, reason: s.reason });
            failovers.length = Math.min(failovers.length, 20);
            metrics?.failover(from, to);
          }
          try {
            await dataplane.setActive(to);
            if (current) current = { ...current, active: to };
          } catch (e) {
            // The re-plan below flips the map too, and the repair loop retries it.
            healthLog.error({ err: e, to }, 'flipping the default path failed');
          }
          // Tunnel names were answered by the old gateway's resolver.
          resolver.flushPath('tunnel');
          if (s.fromDown && s.from !== null) await dropFlows(s.from);
          await applyPlan(plan(applied));
        })(),
      ),
    onHealthChange: (_gw, state) => {
      void track(applyPlan(plan(applied))).catch((e: unknown) => healthLog.error({ err: e }, 'following a gateway state failed'));
      // A gateway just went down: it may have moved (its endpoint is looked up again).
      if (state === 'down') void endpoints.check().catch(() => undefined);
    },
  });
  const endpoints = new EndpointRefresher({
    gateways: () => store.current.config.tunnel.gateways,
    isDown: (n) => !(monitor?.healthy(n) ?? true),
    lookup,
    current: (n) => specs.find((s) => s.name === n)?.peer.endpoint.host ?? null,
    apply: async (n, address) => {
      specs = specs.map((s) => (s.name === n ? { ...s, peer: { ...s.peer, endpoint: { ...s.peer.endpoint, host: address } } } : s));
      await tunnels.set(specs);
    },
    clock,
    logger: healthLog,
  });
  const monitored = (c: Config): MonitoredGateway[] =>
    c.tunnel.gateways.map((g, i) => ({ name: g.name, priority: g.priority, path: g.path, ifname: g.ifname, dns: g.dns, mark: gatewayMark(i), probes: g.probe ?? c.health.probe }));

  const applyAll = async (loaded: LoadedConfig): Promise<void> => {
    const c = loaded.config;
    if (c.breakout.interface !== 'auto') wan = c.breakout.interface;
    // DNS first: the breakout resolvers are needed to find the gateways.
    await serveDnsSerially(c);
    specs = await Promise.all(c.tunnel.gateways.map((g) => tunnelSpec(g, lookup)));
    await tunnels.set(specs);
    monitor!.configure(c.health);
    monitor!.setGateways(monitored(c));
    // The WAN is watched too (its resolvers through the breakout), so a dead WAN shows in the log.
    monitor!.setBreakout(breakoutDns.length ? { name: 'breakout', path: 'breakout', ifname: wan ?? 'lo', dns: breakoutDns, mark: MARK_BREAKOUT, probes: [{ kind: 'dns' }] } : null);
    doh = dohEndpoints(loaded);
    resolver.forgetFastHits(); // refuseName changed under it
    // Listening before the redirect is installed, so no redirected flow meets a closed port.
    await serveProxy(c);
    await serveMetrics(c);
    await applyPlan(plan(loaded));
    policy = loaded.policy;
    applied = loaded;
  };


  // ---- observability: control socket (status, reload, select, explain, lists, flush) and metrics ----
  const pathOfMark = (mark: number): string => {
    if (mark === MARK_BREAKOUT) return 'breakout';
    if (mark === MARK_TUNNEL) return 'tunnel';
    if (mark === MARK_BLOCK) return 'block';
    const g = current?.gateways.find((x) => x.mark === mark);
    return g ? `gw:${g.name}` : `mark 0x${mark.toString(16)}`;
  };
  const taggedByPath = (): Record<string, number> => {
    const bySet = nftTagger.countsBySet();
    const out: Record<string, number> = {};
    for (const r of current?.rules ?? []) {
      if (!r.tagged) continue;
      const sets = tagSetNames(r);
      const n = (bySet.get(sets.v4) ?? 0) + (bySet.get(sets.v6) ?? 0);
      const path = pathOfMark(r.mark);
      out[path] = (out[path] ?? 0) + n;
    }
    return out;
  };
  const ruleHits = (): { rule: number; label: string; count: number }[] =>
    dnsStats.byRule.flatMap((count, i) => {
      const rule = i - 1;
      return count ? [{ rule, label: rule < 0 ? 'default' : (applied.config.rules[rule]?.label ?? `#${rule}`).slice(0, 40), count }] : [];
    });
  const statusReport = async (): Promise<StatusReport> => {
    const c = applied.config;
    const tun = await tunnels.status().catch(() => []);
    const health = monitor!.status();
    const gw = (name: string) => health.find((h) => h.name === name);
    const br = gw('breakout');
    const d = dnsStats;
    return {
      version: o.version ?? 'unknown',
      pid: process.pid,
      startedAt,
      mode: c.mode,
      config: { file: c.file, digest: c.digest.slice(0, 12), version: store.version, loadedAt: store.loadedAt, lastReload: store.lastReload },
      active: monitor!.active,
      pinned: monitor!.pinnedGateway,
      killSwitch: { enabled: c.tunnel.killSwitch, engaged: monitor!.active === null },
      gateways: c.tunnel.gateways.map((g) => {
        const h = gw(g.name);
        const t = tun.find((x) => x.ifname === g.ifname);
        return {
          name: g.name,
          ifname: g.ifname,
          priority: g.priority,
          state: h?.state ?? 'unknown',
          active: monitor!.active === g.name,
          rttMs: h?.rttMs === null || h?.rttMs === undefined ? null : Math.round(h.rttMs * 10) / 10,
          loss: h?.loss ?? 0,
          lastHandshake: t?.latestHandshake ?? null,
          rxBytes: t?.rxBytes ?? 0,
          txBytes: t?.txBytes ?? 0,
          endpoint: t?.endpoint ?? null,
          lastError: h?.lastError ?? null,
          changedAt: h?.changedAt ?? startedAt,
        };
      }),
      breakout: { interface: wan, state: br?.state ?? 'unknown', rttMs: br?.rttMs ?? null, dns: breakoutDns.map((u) => u.text) },
      tagged: taggedByPath(),
      dns: {
        listen: listen.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)),
        queries: d.queries,
        hits: d.hits,
        misses: d.misses,
        hitRatio: d.hits + d.misses ? d.hits / (d.hits + d.misses) : null,
        servfail: d.servfail,
        blocked: d.blocked,
        cacheEntries: cache.size,
      },
      proxy: proxy ? { listen: proxy.addresses().map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)), paths: proxy.traffic() } : null,
      failovers: [...failovers],
    };
  };
  const kernelTags = linuxTagLookup(run);
  const handlers: ControlHandlers = {
    status: statusReport,
    reload: async (dryRun, file) => {
      if (!dryRun) {
        const r = await store.reload('control');
        return { status: r.status, issues: r.issues.map(formatIssue) };
      }
      try {
        const next = await loadConfig(file ?? store.current.config.file);
        return { status: 'dry-run', issues: next.warnings.map(formatIssue), changes: diffConfigs(store.current, next) };
      } catch (e) {
        const issues = (e as { issues?: Parameters<typeof formatIssue>[0][] }).issues;
        if (!issues) throw e;
        return { status: 'rejected', issues: issues.map(formatIssue) };
      }
    },
    select: (gateway) => {
      try {
        monitor!.pin(gateway);
      } catch (e) {
        throw Object.assign(new Error((e as Error).message), { code: 'SPLITWAN_CONTROL_SELECT' });
      }
      log.info({ pinned: gateway }, gateway === null ? 'gateway selection: automatic' : `gateway pinned: ${gateway}`);
      return { active: monitor!.active, pinned: monitor!.pinnedGateway };
    },
    explain: async (target, source) => {
      let r;
      try {
        r = explain(policy, target, source);
      } catch (e) {
        throw Object.assign(new Error((e as Error).message), { code: 'SPLITWAN_USAGE' });
      }
      if (r.kind === 'ip') return withTag(r, applied.config.rules, await kernelTags(formatIp(parseIp(r.input)!)));
      const n = normalizeDomain(r.input);
      const addrs = 'error' in n ? [] : resolver.cachedAddresses(n.name);
      const addresses = [];
      for (const address of addrs) {
        const t = withTag({ ...r, kind: 'ip' }, applied.config.rules, await kernelTags(address)).tagged;
        addresses.push({ address, tagged: t === undefined || t === null ? null : typeof t === 'string' ? t : { rule: t.rule, via: t.via, expiresInSeconds: t.expiresInSeconds } });
      }
      return { ...r, addresses };
    },
    refreshLists: async () => {
      const results = await lists.refreshAll();
      return {
        lists: [...results].map(([name, x]) => ({
          name,
          ok: x.status !== 'failed',
          changed: x.status === 'updated',
          ...(x.entry ? { entries: store.current.lists.get(name) ? store.current.lists.get(name)!.domains.length + store.current.lists.get(name)!.cidrs.length : 0 } : {}),
          ...(x.error ? { error: x.error } : {}),
        })),
      };
    },
    flushDns: () => {
      const flushed = cache.flush();
      log.info({ flushed }, 'DNS cache flushed (control)');
      return { flushed };
    },
  };
  const control = new ControlServer(handlers, (e) => log.warn({ err: e }, 'control socket error'));
  metrics = new Metrics({
    dns: () => dnsStats,
    // The breakout's own health shows as gateway="breakout" (watched for status, never selected).
    gateways: () => monitor!.status(),
    tagged: taggedByPath,
    proxy: () => proxy?.traffic() ?? null,
    ruleHits,
  });
  store.onReload = (r) => metrics?.reload(r.status);
  lists.onResult = (name, r) => metrics?.listRefresh(name, r.status);
  let metricsAt: string | null = null;
  async function serveMetrics(c: Config): Promise<void> {
    const want = c.metrics.listen ? `${c.metrics.listen.host}:${c.metrics.listen.port}` : null;
    if (want === metricsAt) return;
    await metrics!.close();
    metricsAt = null;
    if (!c.metrics.listen) return;
    await metrics!.listen(c.metrics.listen.host, c.metrics.listen.port);
    metricsAt = want;
    log.info({ listen: want }, 'metrics listening');
  }

  let tick: NodeJS.Timeout | null = null;
  let sweep: NodeJS.Timeout | null = null;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      void (async () => {
        if (tick) clearInterval(tick);
        monitor?.stop();
        endpoints.stop();
        prober.close();
        healthForwarder.close();
        if (sweep) clearInterval(sweep);
        store.close();
        lists.stop();
        wanWatcher?.stop();
        addrWatcher?.stop();
        dataplane.stop();
        // Switches and re-plans already under way finish before the cleanup (they do nothing new now).
        await Promise.allSettled([monitor?.settled(), ...inFlight]);
        await control.close().catch(() => undefined);
        await metrics?.close().catch(() => undefined);
        await server.close().catch((e: unknown) => log.error({ err: e }, 'closing the resolver failed'));
        await proxy?.close().catch((e: unknown) => log.error({ err: e }, 'closing the proxy failed'));
        forwarder.close();
        await tunnels.close().catch((e: unknown) => log.error({ err: e }, 'stopping tunnels failed'));
        await router.cleanup().catch((e: unknown) => log.error({ err: e }, 'removing routing state failed'));
        session.close();
        log.info({}, 'stopped; routing is as it was before splitwan');
        resolve();
      })();
    };
    o.signals.once('SIGTERM', () => stop('SIGTERM'));
    o.signals.once('SIGINT', () => stop('SIGINT'));
  });

  try {
    const c = store.current.config;
    if (c.breakout.interface === 'auto') {
      wanWatcher = new WanWatcher(run, log.child({ module: 'wan' }), clock, (s) => {
        wan = s.ifname;
        void track(applyPlan(plan(applied))).catch((e: unknown) => log.error({ err: e }, 'following the default route failed'));
      });
      wan = (await wanWatcher.start()).ifname;
    }
    await applyAll(store.current);
    watchAddresses(c);
    lastSwitchedTo = monitor.active;
    await control.listen(c.control.socket);
    // Without the service files' memory settings (started by hand) it works the same, with more RSS: said, not warned.
    const missing = missingRuntimeSettings();
    log.info({ mode: c.mode, wan, gateways: c.tunnel.gateways.map((g) => g.name), active: monitor.active, ...(missing.length > 0 ? { withoutMemorySettings: missing } : {}) }, 'splitwan running');
  } catch (e) {
    log.error({ err: e }, 'start failed; removing what was installed');
    monitor.stop();
    wanWatcher?.stop();
    (addrWatcher as IpMonitor | null)?.stop(); // (TS narrows it to null here: it is assigned inside watchAddresses)
    prober.close();
    healthForwarder.close();
    await control.close().catch(() => {});
    await metrics.close().catch(() => {});
    await server.close().catch(() => {});
    // (TS narrows `proxy` to null here: it is only assigned inside serveProxy.)
    await (proxy as TransparentProxy | null)?.close().catch(() => {});
    forwarder.close();
    await tunnels.close().catch(() => {});
    await router.cleanup().catch(() => {});
    session.close();
    store.close();
    throw e;
  }

  /**
   * After a reload changed the gateways. A gateway's mark is its index, so a
   * removed or reordered gateway leaves flows whose saved mark now means
   * another gateway, or none (no ip rule: the main table, the WAN). Those
   * flows are dropped so their next packet is classified afresh. A change of
   * the active gateway is recorded like a failover, and when the old one is
   * gone its tunnel flows are dropped as after a failure.
   */
  const followGatewayChanges = async (p: Config, n: Config, activeBefore: string | null): Promise<void> => {
    const stale = p.tunnel.gateways.flatMap((g, i) => (n.tunnel.gateways[i]?.name === g.name ? [] : [{ mark: gatewayMark(i), path: `gw:${g.name}` }]));
    const to = monitor!.active;
    const activeGone = activeBefore !== null && !n.tunnel.gateways.some((g) => g.name === activeBefore);
    if (activeBefore !== to) {
      lastSwitchedTo = to;
      failovers.unshift({ at: clock.now(), from: activeBefore, to, reason: activeGone ? 'removed by a reload' : 'reload' });
      failovers.length = Math.min(failovers.length, 20);
      metrics?.failover(activeBefore, to);
      healthLog.warn({ from: activeBefore, to }, `active gateway: ${to ?? 'none'} (config reload)`);
    }
    const marks = [...stale.map((x) => x.mark), ...(activeGone ? [MARK_TUNNEL] : [])];
    if (marks.length > 0) await dropMarks(marks, [...stale.map((x) => x.path), ...(activeGone ? ['tunnel'] : [])]);
  };

  store.subscribe(async (prev, next) => {
    const p = prev.config;
    const n = next.config;
    // Rule numbers and resolvers may have changed: cached answers (keyed by rule) start over.
    if (JSON.stringify(p.dns) !== JSON.stringify(n.dns)) cache = cacheOf(n);
    else cache.flush();
    // Hits are counted by rule index: when the rules change, the old counts belong to other rules.
    if (JSON.stringify(p.rules.map((r) => r.label)) !== JSON.stringify(n.rules.map((r) => r.label))) dnsStats.byRule.length = 0;
    resolver = makeResolver(n);
    // Settings read once at start before: a reload applies them too.
    forwarder.setTimeoutMs(n.dns.timeoutMs);
    healthForwarder.setTimeoutMs(n.health.timeoutMs);
    prober.setTimeoutMs(n.health.timeoutMs);
    if (n.log.level !== p.log.level) {
      o.setLogLevel?.(n.log.level);
      log.info({ level: n.log.level }, 'log level changed');
    }
    const activeBefore = monitor!.active;
    await applyAll(next);
    watchAddresses(n);
    await followGatewayChanges(p, n, activeBefore);
  });
  store.start();
  dataplane.start();
  monitor.start();
  endpoints.start();
  void lists.start().catch((e: unknown) => log.warn({ err: e }, 'list refresh failed'));
  // Tunnels repair what status() sees broken (a deleted link, a roamed endpoint).
  tick = setInterval(() => {
    void tunnels
      .status()
      .then(() => tunnels.set(specs))
      .catch((e: unknown) => log.warn({ err: e }, 'tunnel repair failed'));
  }, 3000);
  sweep = setInterval(() => cache.sweep(), 60_000);
  await stopped;
}
