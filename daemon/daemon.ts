// The composition root: builds the daemon from its parts over the operating
// system it is given (DaemonDeps: linuxDeps() in production, fakes in unit
// tests), and runs start, reload and stop in a known order.
//
// Start: load the config, refuse a second daemon, remove what a crashed run
// left (stateless), then bring up the resolver, the tunnels, the data plane,
// the proxy, metrics and the control socket; each part pushes its undo onto
// one teardown stack the moment it exists. Stop (at any time: during start,
// during a reload, while running) waits for work in flight, then unwinds the
// stack, so the machine is as it was.
//
// The mutable state lives in one object (DaemonState); status, control
// handlers, failover bookkeeping and the listeners are modules of their own.
import { compilePolicy, type ListContent, type Policy } from '../config/policy.js';
import { BUILTIN_DOH_LIST, builtinDohList } from '../config/lists/doh-endpoints.js';
import type { Config } from '../config/types.js';
import type { LoadedConfig } from '../config/load.js';
import { ConfigStore } from '../config/store.js';
import { ListRefresher } from '../config/lists/refresher.js';
import { RuleScheduler } from './rule-scheduler.js';
import { DEFAULT_DEVICE_FILES, DeviceDirectory } from './devices.js';
import { DnsCache } from '../dns/cache.js';
import { Forwarder } from '../dns/forwarder.js';
import { newResolverStats, Resolver as DnsResolver } from '../dns/resolver.js';
import { DnsServer } from '../dns/server.js';
import { ClientLimiter } from '../dns/client-limit.js';
import { TransparentProxy } from '../proxy/server.js';
import { ControlServer, readSocketPath, type ControlHandlers } from './control/server.js';
import type { StatusReport } from './control/protocol.js';
import { controlHandlers } from './control-handlers.js';
import { Dataplane } from './dataplane/dataplane.js';
import { assignGatewaySlots, assignLinkSlots, gatewayMark, linkMark, MARK_BREAKOUT, MARK_MASK, MARK_PROXIED, MARK_TUNNEL, pickTarget, planDataplane, tagSetNames, type DataplanePlan } from './dataplane/plan.js';
import { monitoredLinks, monitoredUnmanaged, nextHopsByInterface } from './links.js';
import { NftTagger } from './dataplane/tagger.js';
import type { DaemonDeps, Watcher } from './deps.js';
import { FailoverLog } from './failovers.js';
import { HealthMonitor, type MonitoredGateway } from './health/monitor.js';
import { HostResolved } from './host-resolved.js';
import { localNets, type LocalNets } from './local-nets.js';
import { DNS_LINK_NAME } from './resolved.js';
import { Prober } from './health/probes.js';
import { ProbeExchange } from './health/probe-exchange.js';
import { DnsListener, formatListen } from './listeners/dns-listener.js';
import { MetricsListener } from './listeners/metrics-listener.js';
import { ProxyListener, proxyOptions } from './listeners/proxy-listener.js';
import { Metrics } from './metrics.js';
import { MarkedDialer } from './path-dialer.js';
import { pathState, RuleTagger } from './resolver-paths.js';
import { missingRuntimeSettings } from './runtime-settings.js';
import { ruleHits, statusReport, taggedByPath } from './status.js';
import { TeardownStack } from './teardown.js';
import { QueryLogService } from './query-log-service.js'; // issue 20: the query log
import { rulesReport } from './rules-report.js'; // issue 20: the dashboard's rules page
import { WebListener } from './web/web-listener.js'; // issue 20: the dashboard
import { breakoutLookup, tunnelSpec } from './tunnel/gateway-spec.js';
import { EndpointRefresher } from './tunnel/endpoint-refresh.js';
import { CaptivePortal, DEFAULT_PORTAL } from './portal/portal.js'; // issue 16: captive portals
import { breakoutAddresses } from './portal/lookup.js';
import { probePortal } from './portal/probe.js';
import type { TunnelSpec, TunnelStatus } from './tunnel/types.js';
import { AppPins } from './apps/app-pins.js'; // issue 16: per-app split
import { pathDown, startPathDns } from './apps/path-dns.js';

export type DaemonPhase = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export interface Daemon {
  /** Resolves once running; rejects when start failed or a stop came first (everything installed is undone either way). */
  start(): Promise<void>;
  /** Stops at any time (also during start or a reload); resolves when everything is undone. Idempotent. */
  stop(reason: string): Promise<void>;
  readonly phase: DaemonPhase;
  /** The running config store (null before start loaded it). */
  readonly store: ConfigStore | null;
  /** What the control socket answers. */
  readonly handlers: ControlHandlers;
  /** The data plane's plan in force (null before the first apply). */
  readonly plan: DataplanePlan | null;
}

/** Thrown by a start that a stop interrupted: nothing is left installed. */
export class StoppedDuringStartError extends Error {
  readonly code = 'SPLITWAN_STOPPED';
  constructor(reason: string) {
    super(`stopped during start (${reason})`);
  }
}

/**
 * blockEncryptedDns: the DoH endpoints (dns.dohLists, or the built-in list
 * when it names none) as a name matcher for the resolver and CIDRs for the
 * data plane. null when off.
 */
export function dohEndpoints(loaded: LoadedConfig): { names: Policy; cidrs: string[] } | null {
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
    cidrs: names.flatMap((n) => Array.from(lists.get(n)?.cidrs ?? [], (x) => x.cidr)),
  };
}

/** Everything that changes while the daemon runs, in one place. */
interface DaemonState {
  phase: DaemonPhase;
  stopReason: string | null;
  store: ConfigStore | null;
  /**
   * The config whose plan is applied (with `policy`): health and route events
   * re-plan from it, never from a reload still in progress or one that failed,
   * whose rule numbers may not match the policy answering queries.
   */
  applied: LoadedConfig | null;
  policy: Policy | null;
  /** The plan in force. */
  plan: DataplanePlan | null;
  specs: TunnelSpec[];
  /** The breakout's interface: configured, or the default route's (auto). */
  wan: string | null;
  doh: { names: Policy; cidrs: string[] } | null;
  /** Each gateway's slot (mark, table): kept across reloads (assignGatewaySlots). */
  slots: Map<string, number>;
  /** breakout.links: each link's slot (assignLinkSlots), and main's default routes by interface (a link's own next hop). */
  linkSlots: Map<string, number>;
  nextHops: Map<string, { v4?: string; v6?: string }>;
  cache: DnsCache | null;
  resolver: DnsResolver | null;
  failovers: FailoverLog | null;
  startedAt: number;
  /** Allow-LAN (host mode): the networks this machine is on; null when off. */
  localNets: LocalNets | null;
}

const TUNNEL_REPAIR_MS = 3000;
const CACHE_SWEEP_MS = 60_000;
/** Read-only file pages out of RSS (sys/resident-trim.ts): once start-up settled, then hourly. */
const RESIDENT_TRIM_FIRST_MS = 30_000;
const RESIDENT_TRIM_EVERY_MS = 3_600_000;
const PORTAL_PROBE_TIMEOUT_MS = 5000;

export function createDaemon(deps: DaemonDeps, o: { configPath: string; /** The file as the CLI just loaded it: not loaded twice (issue 17). */ loaded?: LoadedConfig }): Daemon {
  const { clock } = deps;
  const log = deps.logger;
  const dnsLog = log.child({ module: 'dns' });
  const healthLog = log.child({ module: 'health' });
  const s: DaemonState = { phase: 'new', stopReason: null, store: null, applied: null, policy: null, plan: null, specs: [], wan: null, doh: null, slots: new Map(), linkSlots: new Map(), nextHops: new Map(), cache: null, resolver: null, failovers: null, startedAt: clock.wall(), localNets: null };
  const teardown = new TeardownStack(log);
  /** Work started by events (switches, re-plans, address changes, reloads) that a stop waits for. */
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };
  const stopping = (): boolean => s.phase === 'stopping' || s.phase === 'stopped';
  /** Between the steps of start: a stop that came in meanwhile ends the start here. */
  const checkpoint = (): void => {
    if (stopping()) throw new StoppedDuringStartError(s.stopReason ?? 'stop');
  };
  const store = (): ConfigStore => s.store!;
  const config = (): Config => store().current.config;
  const applied = (): LoadedConfig => s.applied ?? store().current;

  let monitor: HealthMonitor | null = null;
  /** WAN links (breakout.links): probed like gateways; its choice is the link breakout takes. */
  let linkMonitor: HealthMonitor | null = null;
  /** breakout.links: the link breakout takes, switch by switch (status, the dashboard). */
  const linkFailovers = new FailoverLog(clock, null, (from, to) => metrics?.linkFailover(from, to));
  const healthy = (g: string): boolean => (linkMonitor?.has(g) ? linkMonitor.healthy(g) : (monitor?.healthy(g) ?? true));

  // ---- parts that live as long as the process; created in start, undone by the teardown stack
  let nft: ReturnType<DaemonDeps['openNft']> | null = null;
  let dataplane: Dataplane | null = null;
  let tagger: NftTagger | null = null;
  let tunnels: ReturnType<DaemonDeps['tunnels']> | null = null;
  let lists: ListRefresher | null = null;
  let endpoints: EndpointRefresher | null = null;
  let wanWatcher: Watcher | null = null;
  let damage: ReturnType<DaemonDeps['damageWatch']> | null = null;
  /** `ip monitor address`: the resolver follows the LAN's addresses (router mode, or dns.listen auto). */
  let addrWatcher: Watcher | null = null;
  // Rules' when: and devices: (issue 21): a boundary or a device's new MAC re-renders the ruleset.
  const scheduler = new RuleScheduler(clock, () => replan('following a rule schedule'));
  const devices = new DeviceDirectory((p) => deps.readDeviceFiles(p), clock, log.child({ module: 'devices' }), () => replan('following device names'));

  // The resolver: its sockets leave through the path they serve (SO_MARK).
  const dialer = new MarkedDialer(deps.pathSockets, () => ({ gateways: s.plan?.gateways ?? [], active: s.plan?.active ?? null, links: s.plan?.links ?? [] }));
  // Counters outlive a reload's new resolver: metrics are monotonic, status counts since start.
  const dnsStats = newResolverStats();
  const limiter = new ClientLimiter(clock);
  // Query log (issue 20): one ring for every resolver a reload makes, configured by applyAll.
  const qlog = new QueryLogService({ clock, logger: dnsLog });
  let metrics: Metrics | null = null;
  let forwarder: Forwarder | null = null;
  let healthForwarder: Forwarder | null = null;
  const server: DnsServer = new DnsServer({
    // The server asks each time, so a reload can swap the resolver under it.
    handler: { handle: (m, c) => s.resolver!.handle(m, c), answerHit: (b, off, len, out, at, room, client) => s.resolver!.answerHit(b, off, len, out, at, room, client) },
    allows: (a): boolean => dns.acl.allows(a),
    logger: dnsLog,
  });
  const dns = new DnsListener({ server, links: () => deps.links(), resolvConfTexts: () => deps.resolvConfTexts(), logger: dnsLog });
  // Host mode beside systemd-resolved (issue 16): where host mode listens, the breakout's servers from
  // resolved, and the takeover that sends resolved's queries to splitwan (daemon/host-resolved.ts).
  const hostResolved = new HostResolved({
    make: deps.resolved,
    clock,
    logger: log.child({ module: 'resolved' }),
    wanIfname: () => s.wan,
    onBreakoutChange: () => track(followBreakoutDns()).catch((e: unknown) => dnsLog.error({ err: e }, 'following the network\'s resolvers failed')),
  });
  // Captive portals (issue 16, daemon/portal/): probes through the breakout, and the window `splitwan portal` opens.
  const portalLookup = breakoutAddresses(() => forwarder!, () => dns.breakoutDns);
  const portal = new CaptivePortal({
    clock,
    logger: log.child({ module: 'portal' }),
    config: () => (s.store ? (config().portal ?? DEFAULT_PORTAL) : DEFAULT_PORTAL),
    probe: (url) => probePortal(url, { lookup: portalLookup, dial: (a, p, t) => dialer.tcp('breakout', a, p, t), timeoutMs: PORTAL_PROBE_TIMEOUT_MS, now: () => clock.now() }),
    lookupAll: portalLookup,
    breakoutDns: () => dns.breakoutDns,
    nft: { exec: (line) => nft!.exec(line) },
    tunnelUp: () => (monitor?.active ?? null) !== null,
    onChange: () => s.resolver?.forgetFastHits(),
  });
  const proxyLog = log.child({ module: 'proxy' });
  const proxies = new ProxyListener(
    (c) => new TransparentProxy({ policy: () => s.policy!, pick: (via) => pickTarget(via, healthy), dialer, originalDst: deps.originalDst, logger: proxyLog }, proxyOptions(c)),
    proxyLog,
  );

  // Per-app split (issue 16): cgroups pinned to one path, each path with its own resolver (daemon/apps/).
  const appPins = deps.cgroups
    ? new AppPins({
        cgroups: deps.cgroups,
        clock,
        logger: log.child({ module: 'apps' }),
        config: () => config(),
        ...(deps.cgroupRoot ? { root: deps.cgroupRoot } : {}),
        apply: () => applyPlan(plan(applied())),
        dns: (path) => startPathDns({ path, config, paths: pathState({ config, plan: () => ({ active: s.plan?.active ?? null }), breakout: () => dns.breakoutDns, healthy }), healthy, upstreams: forwarder!, clock, logger: dnsLog, queryLog: qlog.log }),
      })
    : null;

  const makeResolver = (c: Config): DnsResolver =>
    new DnsResolver({
      // The policy in force is the one whose plan (rule numbers → tag sets) is applied.
      policy: () => s.policy!,
      paths: pathState({ config: () => config(), plan: () => ({ active: s.plan?.active ?? null }), breakout: () => dns.breakoutDns, healthy }),
      upstreams: forwarder!,
      tagger: new RuleTagger(tagger!, () => s.plan),
      cache: s.cache!,
      clock,
      logger: dnsLog,
      stats: dnsStats,
      // One limiter for every resolver a reload makes: a client's limits do not start over.
      limiter,
      queryLog: qlog.log, // issue 20
      detour: portal, // issue 16: a captive portal's names, from the breakout while its window is open
      options: {
        tagTtlMs: c.dns.tagTtlMs,
        blockAnswer: c.dns.blockAnswer,
        refuseName: (name) => s.doh !== null && s.doh.names.ruleForName(name) >= 0,
        minTtl: c.dns.cache.minTtl,
        maxTtl: c.dns.cache.maxTtl,
        negativeTtl: c.dns.cache.negativeTtl,
      },
    });

  const plan = (loaded: LoadedConfig): DataplanePlan =>
    planDataplane({
      config: loaded.config,
      listCidrs: new Map([...loaded.lists].map(([n, l]) => [n, Array.from(l.cidrs, (c) => c.cidr)])),
      // No default route yet (auto mode, cable out): nothing can leave via the
      // breakout anyway; 'lo' keeps the ruleset valid until the watcher reports one.
      wan: s.wan ?? 'lo',
      // The health monitor's choice (before any probe: the preferred gateway).
      active: monitor?.active ?? null,
      healthy,
      dnsPort: dns.dnsPort,
      localDns: dns.localDns,
      ...(s.doh ? { dohCidrs: s.doh.cidrs } : {}),
      slots: s.slots,
      // Links: the link monitor's choice (before any probe: the preferred link).
      links: { slots: s.linkSlots, active: linkMonitor?.active ?? null, nextHops: s.nextHops },
      // Own sockets routed by source port where they cannot be marked (issue 17: daemon/port-sockets.ts).
      portPaths: deps.pathSockets.byPort === true,
      ...(s.localNets ? { localNets: s.localNets } : {}),
      match: { active: (r) => scheduler.active(r), macsOf: (n) => devices.macsOf(n) }, // when: and devices: (issue 21)
      ...(appPins ? { apps: appPins.inputs() } : {}), // issue 16: per-app split
    });

  const applyPlan = async (p: DataplanePlan): Promise<void> => {
    // After a stop began, nothing may re-install what the teardown removes.
    if (stopping()) return;
    // Rules that are gone took their sets along: forget what the tagger had there.
    const kept = new Set(p.rules.filter((r) => r.tagged).flatMap((r) => Object.values(tagSetNames(r))));
    for (const r of s.plan?.rules ?? []) for (const set of Object.values(tagSetNames(r))) if (!kept.has(set)) tagger!.forgetSet(set);
    await dataplane!.apply(p);
    s.plan = p;
  };
  const replan = (why: string): void => {
    void track(applyPlan(plan(applied()))).catch((e: unknown) => log.error({ err: e }, `${why} failed`));
  };

  const slotMark = (name: string): number => gatewayMark(s.slots.get(name)!);
  const monitored = (c: Config): MonitoredGateway[] => [
    // Ours reach their endpoints by the breakout's link (ridesLink: its failure is not theirs).
    ...c.tunnel.gateways.map((g) => ({ name: g.name, priority: g.priority, path: g.path, ifname: g.ifname, dns: g.dns, mark: slotMark(g.name), probes: g.probe ?? c.health.probe, ridesLink: true })),
    // Gateways another program made: probed through their mark like ours.
    ...monitoredUnmanaged(c, slotMark),
  ];
  /** Every gateway's name: ours and other programs'. */
  const gatewayNames = (c: Config): string[] => [...c.tunnel.gateways, ...(c.tunnel.unmanaged ?? [])].map((g) => g.name);
  /** breakout.links: a link without a configured next hop uses its own default route in main. */
  const readNextHops = async (c: Config): Promise<void> => {
    if (!c.breakout.links?.length || !deps.defaultRoutes) return;
    s.nextHops = nextHopsByInterface(await deps.defaultRoutes().catch(() => []));
  };
  const lookup = breakoutLookup({ forward: (...a) => forwarder!.forward(...a) }, () => dns.breakoutDns);

  /** Makes everything match `loaded`; throws when a part could not take it (a reload then puts the previous one back). */
  const applyAll = async (loaded: LoadedConfig): Promise<void> => {
    const c = loaded.config;
    s.slots = assignGatewaySlots(gatewayNames(c), s.slots);
    s.linkSlots = assignLinkSlots((c.breakout.links ?? []).map((l) => l.name), s.linkSlots);
    if (c.breakout.interface !== 'auto') s.wan = c.breakout.interface;
    qlog.configure(c); // issue 20: privacy, ring size, file
    // DNS first: the breakout resolvers are needed to find the gateways.
    await hostResolved.beforeServe(c, dns);
    await dns.serve(c);
    s.specs = await Promise.all(c.tunnel.gateways.map((g) => tunnelSpec(g, lookup)));
    await tunnels!.set(s.specs);
    monitor!.configure(c.health);
    monitor!.setGateways(monitored(c));
    // The WAN is watched too (its resolvers through the breakout), so a dead WAN shows in the log.
    const links = c.breakout.links ?? [];
    monitor!.setBreakout(links.length === 0 ? breakoutWatch() : null);
    linkMonitor!.configure(c.health);
    linkMonitor!.setGateways(monitoredLinks(c, s.linkSlots, dns.breakoutDns));
    await readNextHops(c);
    // A route through another program's interface comes back with the interface: its events start a repair.
    damage!.watchLinks?.([...(c.tunnel.unmanaged ?? []).map((g) => g.ifname).filter((i) => i !== ''), ...links.map((l) => l.interface)]);
    s.doh = dohEndpoints(loaded);
    s.resolver!.forgetFastHits(); // refuseName changed under it
    // Listening before the redirect is installed, so no redirected flow meets a closed port.
    await proxies.serve(c);
    await metricsListener!.serve(c);
    await refreshLocalNets(c);
    await web.serve(c); // issue 20: the dashboard (refuses an address of the breakout interface)
    // Schedules and device names of the rules about to be planned (issue 21).
    scheduler.configure(c.rules);
    await devices.configure(c.deviceFiles ?? DEFAULT_DEVICE_FILES, c.rules.some((r) => r.devices?.some((d) => d.mac === null)));
    await applyPlan(plan(loaded));
    s.policy = loaded.policy;
    s.applied = loaded;
    // The resolver is bound and the data plane in place: systemd-resolved may send it every query now.
    await hostResolved.afterServe(c, dns.listen);
  };

  // With several links each is watched on its own (the link monitor), not the breakout as a whole.
  const breakoutWatch = () => (dns.breakoutDns.length && !config().breakout.links?.length ? { name: 'breakout', path: 'breakout' as const, ifname: s.wan ?? 'lo', dns: dns.breakoutDns, mark: MARK_BREAKOUT, probes: [{ kind: 'dns' as const }] } : null);

  /** A new network's resolvers (systemd-resolved's per-link DNS): the breakout asks them, and answers from the old network are not served. */
  const followBreakoutDns = async (): Promise<void> => {
    if (stopping()) return;
    await dns.serve(config());
    s.resolver!.flushPath('breakout');
    monitor!.setBreakout(breakoutWatch());
    dnsLog.info({ breakoutDns: dns.breakoutDns.map((u) => u.text) }, 'the network changed: breakout names go to its resolvers');
  };

  /** Allow-LAN (host mode): reads the networks this machine is on; true when they changed. */
  const refreshLocalNets = async (c: Config): Promise<boolean> => {
    const before = JSON.stringify(s.localNets);
    s.localNets = c.mode === 'host' && c.tunnel.allowLan ? localNets(await deps.links(), [...c.tunnel.gateways.map((g) => g.ifname), DNS_LINK_NAME]) : null;
    return JSON.stringify(s.localNets) !== before;
  };
  /** Whether something follows the interfaces' addresses: the resolver's (router mode, dns.listen auto), allow-LAN's networks. */
  const followsAddresses = (c: Config): boolean => c.mode === 'router' || c.dns.listen === 'auto' || (c.mode === 'host' && c.tunnel.allowLan);

  /** Runs `ip monitor address` while the config's resolver addresses or allow-LAN's networks come from the interfaces. */
  const watchAddresses = (c: Config): void => {
    const wanted = followsAddresses(c);
    if (!wanted) {
      addrWatcher?.stop();
      addrWatcher = null;
      return;
    }
    if (addrWatcher !== null || stopping()) return;
    addrWatcher = deps.watchAddresses(() => void track(followAddresses()).catch((e: unknown) => dnsLog.error({ err: e }, 'following the LAN addresses failed')));
  };

  /**
   * The LAN's addresses changed (a new delegated IPv6 prefix, a DHCP lease,
   * an address added by hand): the resolver's sockets, its ACL and the DNS
   * redirect follow, as a reload would make them. Nothing happens when what
   * the resolver uses did not change (most address events are other links').
   */
  const followAddresses = async (): Promise<void> => {
    const c = config();
    if (stopping() || !followsAddresses(c)) return;
    const before = dns.key();
    await dns.serve(c);
    const lanChanged = await refreshLocalNets(c);
    if (dns.key() === before && !lanChanged) return;
    dnsLog.info({ listen: dns.listen.map(formatListen), answers: dns.acl.subnets, allowLan: s.localNets }, 'addresses changed: the resolver and allow-LAN follow');
    await applyPlan(plan(applied()));
  };

  /** Drops the flows whose saved path is one of `marks`; the proxy resets its connections on `paths`. */
  const dropMarks = async (marks: readonly number[], paths: readonly string[]): Promise<void> => {
    // Not the flows redirected to the proxy (their client side is local): the proxy resets its own.
    for (const m of marks) await deps.dropFlows(m, MARK_MASK | MARK_PROXIED);
    proxies.proxy?.resetPaths(paths);
  };
  /** Flows of a dead gateway are dropped so clients reconnect at once instead of hanging. */
  const dropGatewayFlows = async (gateway: string): Promise<void> => {
    const slot = s.slots.get(gateway);
    await dropMarks([MARK_TUNNEL, ...(slot !== undefined ? [gatewayMark(slot)] : [])], ['tunnel', `gw:${gateway}`]);
  };

  /**
   * After a reload changed the gateways. A removed gateway leaves flows whose
   * saved mark names no path now (its ip rule is gone: they would meet the
   * fail-closed rules), so they are dropped and their next packet is
   * classified afresh; a gateway that stays keeps its slot, so its flows go
   * on. A change of the active gateway is recorded like a failover, and when
   * the old one is gone its tunnel flows are dropped as after a failure.
   */
  const followGatewayChanges = async (p: Config, n: Config, activeBefore: string | null, slotsBefore: ReadonlyMap<string, number>): Promise<void> => {
    const stale = gatewayNames(p).flatMap((g) => (gatewayNames(n).includes(g) ? [] : [{ mark: gatewayMark(slotsBefore.get(g)!), path: `gw:${g}` }]));
    const to = monitor!.active;
    const activeGone = activeBefore !== null && !gatewayNames(n).includes(activeBefore);
    if (activeBefore !== to && s.failovers!.record(to, activeGone ? 'removed by a reload' : 'reload')) {
      healthLog.warn({ from: activeBefore, to }, `active gateway: ${to ?? 'none'} (config reload)`);
    }
    const marks = [...stale.map((x) => x.mark), ...(activeGone ? [MARK_TUNNEL] : [])];
    if (marks.length > 0) await dropMarks(marks, [...stale.map((x) => x.path), ...(activeGone ? ['tunnel'] : [])]);
  };

  /** A reload (or a restore of the previous config after a failed one): applies `next` whole, or throws. */
  const applyReload = async (prev: LoadedConfig, next: LoadedConfig): Promise<void> => {
    if (stopping()) {
      // The teardown removes everything anyway; a restore of what runs is nothing to do.
      if (next === s.applied) return;
      throw new Error('the daemon is stopping');
    }
    const p = prev.config;
    const n = next.config;
    // Rule numbers and resolvers may have changed: cached answers (keyed by rule) start over.
    if (JSON.stringify(p.dns) !== JSON.stringify(n.dns)) s.cache = new DnsCache(n.dns.cache, clock);
    else s.cache!.flush();
    // Hits are counted by rule index: when the rules change, the old counts belong to other rules.
    if (JSON.stringify(p.rules.map((r) => r.label)) !== JSON.stringify(n.rules.map((r) => r.label))) dnsStats.byRule.length = 0;
    s.resolver = makeResolver(n);
    forwarder!.setTimeoutMs(n.dns.timeoutMs);
    healthForwarder!.setTimeoutMs(n.health.timeoutMs);
    prober!.setTimeoutMs(n.health.timeoutMs);
    if (n.log.level !== p.log.level) {
      deps.setLogLevel?.(n.log.level);
      log.info({ level: n.log.level }, 'log level changed');
    }
    const activeBefore = monitor!.active;
    const slotsBefore = new Map(s.slots);
    await applyAll(next);
    portal.reconfigure(); // issue 16: the probe URL or interval may have changed
    watchAddresses(n);
    await followGatewayChanges(p, n, activeBefore, slotsBefore);
  };

  let prober: Prober | null = null;
  let metricsListener: MetricsListener | null = null;
  let control: ControlServer | null = null;

  const status = async (): Promise<StatusReport> =>
    statusReport({
      version: deps.version ?? 'unknown',
      pid: process.pid,
      startedAt: s.startedAt,
      applied: applied(),
      store: store(),
      active: monitor!.active,
      pinned: monitor!.pinnedGateway,
      health: monitor!.status(),
      links: { health: linkMonitor!.status(), active: s.plan?.activeLink ?? null },
      tunnels: await tunnels!.status().catch(() => []),
      wan: s.wan,
      breakoutDns: dns.breakoutDns.map((u) => u.text),
      tagged: taggedByPath(s.plan, tagger!.countsBySet()),
      dnsListen: dns.listen.map(formatListen),
      dns: dnsStats,
      cacheEntries: s.cache!.size,
      proxy: proxies.proxy ? { listen: proxies.proxy.addresses().map(formatListen), paths: proxies.proxy.traffic() } : null,
      failovers: s.failovers!.list(),
      linkFailovers: linkFailovers.list(),
      resolved: hostResolved.status(), // issue 16: the systemd-resolved takeover
      portal: portal.status(), // issue 16: captive portals
    });
  /** Status with per-app split's pins (issue 16). */
  const statusWithApps = async (): Promise<StatusReport> => {
    const r = await status();
    return appPins && appPins.inputs().length ? { ...r, apps: appPins.status((p) => pathDown(p, healthy) || (p === 'tunnel' && monitor!.active === null && config().tunnel.killSwitch)) } : r;
  };

  const handlers = controlHandlers({
    status: statusWithApps,
    store: { reload: (r) => store().reload(r), get current() { return store().current; } },
    ...(deps.loadDeps ? { loadDeps: deps.loadDeps } : {}),
    applied,
    policy: () => s.policy!,
    pin: (gateway) => {
      monitor!.pin(gateway);
      return { active: monitor!.active, pinned: monitor!.pinnedGateway };
    },
    cachedAddresses: (name) => s.resolver!.cachedAddresses(name),
    tagLookup: deps.tagLookup,
    lists: { refreshAll: () => lists!.refreshAll() },
    flushCache: () => s.cache!.flush(),
    // issue 20: the query log and the rules page
    queryLog: qlog.log,
    clientName: qlog.clientName,
    rules: () => rulesReport(applied(), dnsStats, qlog.refreshes),
    portal, // issue 16: `splitwan portal`
    logger: log,
  });

  if (appPins) {
    // issue 16: splitwan exec (the control socket only); explain names the pinned cgroups, the exceptions to every rule.
    handlers.appExec = (via, pid) => appPins.exec(via, pid);
    const explainRules = handlers.explain.bind(handlers);
    handlers.explain = async (target, source) => {
      const r = await explainRules(target, source);
      const apps = appPins.status(() => false).map((a) => ({ path: a.path, cgroup: a.cgroup }));
      return apps.length ? { ...r, apps } : r;
    };
  }

  // issue 20: the dashboard, over the same handlers as the control socket.
  const web = new WebListener({ handlers, status, links: () => deps.links(), wan: () => s.wan, clock, logger: log.child({ module: 'web' }) });

  async function startSteps(): Promise<void> {
    s.phase = 'starting';
    s.store = await ConfigStore.open({ file: o.configPath, logger: log.child({ module: 'config' }), ...(deps.loadDeps ? { deps: deps.loadDeps } : {}), ...(o.loaded ? { initial: o.loaded } : {}) });
    teardown.push('watching the config', () => store().close());
    const c0 = config();
    checkpoint();
    await deps.assertNoOtherDaemon(c0.control.socket);
    checkpoint();
    await deps.cleanup();
    checkpoint();

    nft = deps.openNft();
    teardown.push('closing the nftables session', () => nft!.close());
    const router = deps.router(nft);
    // Pushed before anything can install state: routing goes last of all.
    teardown.push('removing the routing state', () => router.cleanup());
    tunnels = deps.tunnels();
    teardown.push('stopping the tunnels', () => tunnels!.close());
    tagger = new NftTagger(nft, clock, { logger: log.child({ module: 'dataplane' }) });
    teardown.push('stopping the captive portal probes', () => portal.stop()); // issue 16
    // Repairs follow nft/ip monitor events (another program flushing the ruleset), not only a timer.
    damage = deps.damageWatch();
    dataplane = new Dataplane({ router, clock, logger: log.child({ module: 'dataplane' }), watch: damage, onTagsLost: () => tagger!.reset() });
    teardown.push('stopping the data plane repair', () => dataplane!.stop());
    lists = new ListRefresher(store(), log.child({ module: 'lists' }));
    teardown.push('stopping list refreshes', () => lists!.stop());
    teardown.push('stopping rule schedules and device names', () => (scheduler.stop(), devices.stop()));
    // issue 17: upstream datagrams by sendto on the socket's fd where there is native code (not dgram's send path).
    const pool = deps.sendDatagram ? { send: deps.sendDatagram } : {};
    forwarder = new Forwarder({ dialer, logger: dnsLog, timeoutMs: c0.dns.timeoutMs, observe: (x) => metrics?.upstream(x), pool });
    teardown.push('closing the upstream sockets', () => forwarder!.close());
    s.cache = new DnsCache(c0.dns.cache, clock);
    s.resolver = makeResolver(c0);
    teardown.push('closing the resolver', () => dns.close());
    // Unwound before the resolver closes: resolved never points at a closed port.
    teardown.push('undoing the systemd-resolved takeover', () => hostResolved.stop());
    teardown.push('closing the query log file', () => qlog.close()); // issue 20
    teardown.push('closing the proxy', () => proxies.close());

    // Health: every gateway probed through its own tunnel; the monitor picks the active one.
    healthForwarder = new Forwarder({ dialer, logger: healthLog, timeoutMs: c0.health.timeoutMs, pool });
    teardown.push('closing the health sockets', () => healthForwarder!.close());
    let tunnelStatus: { at: number; list: Promise<TunnelStatus[]> } | null = null;
    // The tunnel repair below reads the same status (issue 17: not a read of its own every 3 s).
    const recentTunnelStatus = (): Promise<TunnelStatus[]> => {
      if (!tunnelStatus || clock.now() - tunnelStatus.at > config().health.intervalMs * 0.9) tunnelStatus = { at: clock.now(), list: tunnels!.status() };
      return tunnelStatus.list;
    };
    // issue 17: dns probes on one long-lived socket per path and family (a fresh one per probe was most of the idle CPU).
    const probeExchange = new ProbeExchange({ dialer, markOf: (p) => dialer.markOf(p), fallback: (q, qq, u, p, x) => healthForwarder!.exchange(q, qq, u, p, x), timeoutMs: () => config().health.timeoutMs, ...(deps.sendDatagram ? { send: deps.sendDatagram } : {}) });
    teardown.push('closing the probe sockets', () => probeExchange.close());
    prober = new Prober({
      dialer,
      exchange: probeExchange.exchange,
      // One status read (ip link + wg show per tunnel) serves every gateway's handshake
      // probe within most of an interval: the rounds of different gateways are not aligned.
      tunnel: async (ifname) => (await recentTunnelStatus()).find((t) => t.ifname === ifname) ?? null,
      ping: deps.ping,
      clock,
      timeoutMs: c0.health.timeoutMs,
    });
    teardown.push('closing the probes', () => prober!.close());
    monitor = new HealthMonitor({
      ...c0.health,
      prober,
      clock,
      logger: healthLog,
      // breakout.links: while the link our tunnels ride is failing, their failed rounds are the link's.
      underlay: () => {
        const l = linkMonitor?.active ?? null;
        return l !== null && linkMonitor!.suspect(l) ? `the WAN link ${l} it is reached by is failing` : null;
      },
      onSwitch: (sw) =>
        track(
          (async () => {
            if (stopping()) return;
            // The monitor's choice now: a queued switch may have been overtaken by another.
            const to = monitor!.active;
            s.failovers!.record(to, sw.reason);
            portal.tunnelChanged(); // issue 16: no gateway up is a portal's usual symptom
            try {
              await dataplane!.setActive(to);
              if (s.plan) s.plan = { ...s.plan, active: to };
            } catch (e) {
              // The re-plan below flips the map too, and the repair loop retries it.
              healthLog.error({ err: e, to }, 'flipping the default path failed');
            }
            // Tunnel names were answered by the old gateway's resolver.
            s.resolver!.flushPath('tunnel');
            if (sw.fromDown && sw.from !== null) await dropGatewayFlows(sw.from);
            await applyPlan(plan(applied()));
          })(),
        ),
      onHealthChange: (_gw, state) => {
        replan('following a gateway state');
        // A gateway just went down: it may have moved (its endpoint is looked up again).
        if (state === 'down') void endpoints!.check().catch(() => undefined);
      },
    });
    teardown.push('stopping the health monitor', async () => {
      monitor!.stop();
      await monitor!.settled();
    });
    // breakout.links: each link probed through itself; a change of the best link re-plans (table 1200,
    // new flows' pick); a dead link's flows are dropped so their next packet takes the new one.
    linkMonitor = new HealthMonitor({
      ...c0.health,
      kind: 'link',
      prober,
      clock,
      logger: healthLog,
      onSwitch: (sw) =>
        track(
          (async () => {
            if (stopping()) return;
            // The monitor's choice now (a queued switch may have been overtaken), as for gateways.
            // (Its reason for none says the kill switch holds: that is the gateways' case, not breakout's.)
            linkFailovers.record(linkMonitor!.active, linkMonitor!.active === null ? 'no WAN link is up' : sw.reason);
            // The flip first (pick_link, table 1200: one nft line, one ip batch), then the whole plan.
            const next = plan(applied());
            await dataplane!.setLinks(next).catch((e: unknown) => healthLog.error({ err: e }, 'moving breakout to another link failed'));
            // WireGuard's UDP follows table 1200, but wireguard-go keeps sending from the old link's
            // address (its sticky source: the old masquerade entry drops the first packet, or the address
            // is gone); its endpoint set again clears that, before the gateways are rechecked below.
            if (sw.to !== null) await (tunnels!.rebind?.() ?? Promise.resolve()).catch((e: unknown) => healthLog.warn({ err: e }, 'rebinding the tunnels to the new link failed'));
            // The gateways' endpoints are reached by the new link now: what failed did so on the old one
            // (before the whole plan: a busy machine takes hundreds of ms over it).
            if (sw.fromDown) monitor!.recheckGateways();
            await applyPlan(next);
            // The proxy's breakout dials went by the dead link (its flows are dropped on the state change).
            if (sw.fromDown) proxies.proxy?.resetPaths(['breakout']);
          })(),
        ),
      onHealthChange: (link, state) => {
        // Rules pinned to a link, and the balance, follow its health; a dead link's flows move.
        void track(
          (async () => {
            await readNextHops(config());
            await applyPlan(plan(applied()));
            const slot = s.linkSlots.get(link);
            if (state === 'down' && slot !== undefined) await dropMarks([linkMark(slot)], [`link:${link}`]);
          })(),
        ).catch((e: unknown) => log.error({ err: e }, 'following a link state failed'));
      },
    });
    teardown.push('stopping the link monitor', async () => {
      linkMonitor!.stop();
      await linkMonitor!.settled();
    });
    endpoints = new EndpointRefresher({
      gateways: () => config().tunnel.gateways,
      isDown: (n) => !healthy(n),
      lookup,
      current: (n) => s.specs.find((x) => x.name === n)?.peer.endpoint.host ?? null,
      apply: async (n, address) => {
        s.specs = s.specs.map((x) => (x.name === n ? { ...x, peer: { ...x.peer, endpoint: { ...x.peer.endpoint, host: address } } } : x));
        await tunnels!.set(s.specs);
      },
      clock,
      logger: healthLog,
    });
    teardown.push('stopping endpoint lookups', () => endpoints!.stop());

    // Made when an endpoint is configured (issue 17: no prom-client on a router without one).
    const makeMetrics = (): Metrics => (metrics ??= new Metrics({
      dns: () => dnsStats,
      // The breakout's own health shows as gateway="breakout" (watched for status, never selected).
      // WAN links show as gateways too (gateway="fiber"); `active` there is the tunnel's, never a link's.
      gateways: () => [...monitor!.status(), ...(linkMonitor?.status() ?? []).map((l) => ({ ...l, active: false }))],
      tagged: () => taggedByPath(s.plan, tagger!.countsBySet()),
      proxy: () => proxies.proxy?.traffic() ?? null,
      proxyRefused: () => proxies.proxy?.stats.refusedBy ?? null,
      tagSetFull: () => tagger!.refusedFull,
      ruleHits: () => ruleHits(dnsStats, applied().config),
      portal: () => ({ state: portal.status().state, ...portal.counts }), // issue 16
    }));
    metricsListener = new MetricsListener(makeMetrics, log);
    teardown.push('closing the metrics endpoint', () => metricsListener!.close());
    teardown.push('closing the dashboard', () => web.close()); // issue 20
    store().onReload = (r) => metrics?.reload(r.status);
    lists.onResult = (name, r) => {
      metrics?.listRefresh(name, r.status);
      qlog.refreshes.note(name, clock.wall(), r); // issue 20: the rules page's last refresh
    };
    s.failovers = new FailoverLog(clock, null, (from, to) => metrics?.failover(from, to));
    checkpoint();

    if (c0.breakout.interface === 'auto') {
      let network = '';
      const w = await deps.watchWan((st) => {
        s.wan = st.ifname;
        replan('following the default route');
        // Another network (link or router): breakout answers of the old one (a portal's, a CDN's for there) are not served.
        const now = `${st.ifname} ${st.gateway}`;
        if (now !== network) {
          s.resolver?.flushPath('breakout');
          portal.networkChanged(); // issue 16: the new network may have a portal; an open window was the old one's
        }
        network = now;
        hostResolved.ensure(); // the new network's resolvers at once
        // Roaming: the tunnels send from the new network's address at once (wireguard-go would wait for its 15 s timeout).
        if (!stopping()) void track(tunnels!.rebind?.() ?? Promise.resolve()).catch((e: unknown) => log.warn({ err: e }, 'rebinding the tunnels after a network change failed'));
      });
      wanWatcher = w.watcher;
      teardown.push('stopping the default-route watcher', () => wanWatcher?.stop());
      s.wan = w.state.ifname;
      network = `${w.state.ifname} ${w.state.gateway}`;
      checkpoint();
    }
    await applyAll(store().current);
    checkpoint();
    if (appPins) {
      // issue 16: per-app split. Cgroups a crashed run left pinned (programs still in them) get their rules again.
      teardown.push('stopping per-app split', () => appPins.stop());
      await appPins.start();
      if (appPins.inputs().length) await applyPlan(plan(applied()));
      checkpoint();
    }
    teardown.push('stopping the address watcher', () => addrWatcher?.stop());
    watchAddresses(c0);
    // Switches while starting are not history: it starts from the gateway the start ended on.
    s.failovers.baseline(monitor.active);
    linkFailovers.baseline(linkMonitor.active);
    control = new ControlServer(handlers, (e) => log.warn({ err: e }, 'control socket error'));
    teardown.push('closing the control socket', () => control!.close());
    await control.listen(c0.control.socket);
    checkpoint();
    // Issue 16: status/explain/rules for control.group's members, on a socket that serves nothing else.
    const readGid = c0.control.group === null ? null : ((await deps.groupId?.(c0.control.group)) ?? null);
    if (readGid !== null) {
      const reader = new ControlServer(handlers, (e) => log.warn({ err: e }, 'read-only control socket error'), { readOnly: true });
      teardown.push('closing the read-only control socket', () => reader.close());
      await reader.listen(readSocketPath(c0.control.socket), { group: readGid });
      checkpoint();
    } else if (c0.control.group !== null) log.info({ group: c0.control.group }, `no group ${c0.control.group}: status and explain are for root only`);

    store().subscribe((prev, next) => track(applyReload(prev, next)));
    store().start();
    dataplane.start();
    monitor.start();
    linkMonitor.start();
    // logind's resume (issue 16): every gateway probed at once, failures while the network comes back set aside; resolved read again.
    const sleepWatch = deps.watchSleep?.((sleeping) => {
      if (sleeping) return healthLog.info({}, 'the machine is going to sleep (logind)');
      monitor!.noteResume();
      hostResolved.ensure();
    });
    if (sleepWatch) teardown.push('stopping the sleep watch', () => sleepWatch.stop());
    endpoints.start();
    portal.start(); // issue 16: the first captive portal probe
    void lists.start().catch((e: unknown) => log.warn({ err: e }, 'list refresh failed'));
    // Tunnels repair what status() sees broken (a deleted link, a roamed endpoint).
    const tick = clock.setTimeout(function repair() {
      void recentTunnelStatus()
        .then(() => tunnels!.set(s.specs))
        .catch((e: unknown) => log.warn({ err: e }, 'tunnel repair failed'))
        .finally(() => {
          if (!stopping()) tickTimer = clock.setTimeout(repair, TUNNEL_REPAIR_MS);
        });
    }, TUNNEL_REPAIR_MS);
    let tickTimer: unknown = tick;
    teardown.push('stopping the tunnel repair', () => clock.clearTimeout(tickTimer));
    let sweepTimer: unknown = clock.setTimeout(function sweep() {
      s.cache?.sweep();
      if (!stopping()) sweepTimer = clock.setTimeout(sweep, CACHE_SWEEP_MS);
    }, CACHE_SWEEP_MS);
    teardown.push('stopping the cache sweep', () => clock.clearTimeout(sweepTimer));
    // issue 17: start-up's pages of the node binary (snapshot, parsers, ICU) out of RSS once the
    // daemon settled, then now and then (a reload's or a list refresh's parsers touched them again).
    const trim = deps.trimResident;
    let trimTimer: unknown = null;
    if (trim !== undefined) {
      let first = true;
      trimTimer = clock.setTimeout(function trimPages() {
        try {
          const t = trim();
          const mb = (kb: number): number => Math.round(kb / 102.4) / 10;
          log[first ? 'info' : 'debug']({ mappings: t.mappings, trimmedMb: mb(t.trimmedKb), rssMb: { before: mb(t.rssBeforeKb), after: mb(t.rssAfterKb) } }, 'pages of read-only file mappings (the node binary, libraries) left memory: they come back from the page cache when used');
        } catch (e) {
          // Without koffi or the C library: nothing trimmed, said once; the daemon runs the same.
          log.info({ err: (e as Error).message }, 'start-up pages stay resident: they cannot be trimmed here');
          return;
        }
        first = false;
        if (!stopping()) trimTimer = clock.setTimeout(trimPages, RESIDENT_TRIM_EVERY_MS);
      }, RESIDENT_TRIM_FIRST_MS);
    }
    teardown.push('stopping the page trim', () => trimTimer !== null && clock.clearTimeout(trimTimer));

    s.phase = 'running';
    // Without the service files' memory settings (started by hand) it works the same, with more RSS: said, not warned.
    const missing = missingRuntimeSettings();
    log.info({ mode: c0.mode, wan: s.wan, gateways: c0.tunnel.gateways.map((g) => g.name), active: monitor.active, ...(missing.length > 0 ? { withoutMemorySettings: missing } : {}) }, 'splitwan running');
  }

  let started: Promise<void> | null = null;
  let stopped: Promise<void> | null = null;

  const daemon: Daemon = {
    get phase() {
      return s.phase;
    },
    get store() {
      return s.store;
    },
    get plan() {
      return s.plan;
    },
    handlers,
    start(): Promise<void> {
      if (started) return started;
      started = (async () => {
        try {
          await startSteps();
        } catch (e) {
          if (!(e instanceof StoppedDuringStartError)) log.error({ err: e }, 'start failed; removing what was installed');
          const wasStopping = stopping();
          s.phase = 'stopping';
          // Work the partial start set going (a switch, a re-plan) finishes before the teardown.
          await Promise.allSettled([...inFlight]);
          await teardown.unwind();
          s.phase = 'stopped';
          if (wasStopping) log.info({}, 'stopped during start; routing is as it was before splitwan');
          throw e;
        }
      })();
      return started;
    },
    stop(reason: string): Promise<void> {
      if (stopped) return stopped;
      stopped = (async () => {
        if (s.phase === 'new') {
          s.phase = 'stopped';
          return;
        }
        s.stopReason = reason;
        const wasStarting = s.phase === 'starting';
        s.phase = 'stopping';
        log.info({ reason }, 'stopping');
        if (wasStarting) {
          // The start sees the stop at its next step and unwinds what it did.
          await started?.catch(() => undefined);
          return;
        }
        s.store?.close();
        addrWatcher?.stop();
        monitor?.stop();
        linkMonitor?.stop();
        dataplane?.stop();
        // Switches, re-plans and a reload already under way finish before the cleanup (they install nothing new now).
        await s.store?.idle();
        await Promise.allSettled([monitor?.settled(), linkMonitor?.settled(), ...inFlight]);
        await teardown.unwind();
        s.phase = 'stopped';
        log.info({}, 'stopped; routing is as it was before splitwan');
      })();
      return stopped;
    },
  };
  return daemon;
}
