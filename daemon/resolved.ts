// Host mode beside systemd-resolved (issue 16): splitwan does not fight
// resolved for 127.0.0.53. It listens on an address of its own and tells
// resolved to send every query there, the way VPN clients do: on a link
// splitwan owns, DNS = splitwan's address, routing domain `~.`, default
// route yes. Design and the lab's evidence: docs/design/laptop-resolved.md.
//
// This file is the logic: what is set, how a stale takeover is recognised,
// which servers the breakout gets, and the controller that applies the
// takeover, keeps it (resolved restarts, NetworkManager) and undoes it. The
// operating system is behind two small interfaces: ResolvedApi (resolved's
// and NetworkManager's D-Bus API; resolved-linux.ts, resolved-fake.ts) and
// DnsLink (the link splitwan owns: a TUN device the daemon holds open, or
// without native code a link made with ip; resolved-link-linux.ts).
import { isIP } from 'node:net';
import type { Clock, Logger } from '../lib/logger.js';

/**
 * splitwan's resolver address when resolved runs. 127.0.0.53 and 127.0.0.54
 * are resolved's stubs (and resolved refuses them as servers); 127.0.0.1 is
 * where dnsmasq and other local resolvers usually sit; 127.0.1.1 is Debian's
 * hostname address. 127.0.0.153 is splitwan's, and so also the marker by
 * which a stale takeover is found after a crash.
 */
export const RESOLVED_MODE_LISTEN = Object.freeze({ host: '127.0.0.153', port: 53 });

/** The link splitwan owns for the takeover (IFNAMSIZ: at most 15 characters). */
export const DNS_LINK_NAME = 'splitwan-dns';

/**
 * The address the link carries. resolved uses a link for unicast DNS only
 * when it is up, has carrier and holds an address of scope below `link`
 * (resolved-link.c, link_relevant()). 192.0.0.8 is the IPv4 dummy address
 * (RFC 7600), meant for an interface that needs an address but has no
 * meaningful one; scope `site` keeps the kernel from ever choosing it as the
 * source of routed traffic (only global-scope addresses are chosen for
 * routes through a gateway).
 */
export const DNS_LINK_ADDRESS = '192.0.0.8';

export interface ResolvedServer {
  family: 4 | 6;
  address: string;
  /** 0: the default (53, or 853 with DNS-over-TLS). */
  port: number;
  /** DNS-over-TLS server name; '' when none. */
  serverName: string;
  /** The link it belongs to; 0 for a global server. */
  ifindex: number;
}

export interface LinkDomain {
  domain: string;
  /** `~domain`: a routing domain only, not a search domain. */
  routingOnly: boolean;
}

/** One link as resolved sees it (org.freedesktop.resolve1.Link). */
export interface ResolvedLink {
  ifindex: number;
  /** The kernel's name for it; '' when the link is gone. */
  ifname: string;
  dns: ResolvedServer[];
  domains: LinkDomain[];
  defaultRoute: boolean;
  llmnr: string;
  mdns: string;
}

/** What splitwan sets on its link: nothing else of the link, nothing of other links. */
export interface TakeoverSettings {
  servers: { family: 4 | 6; address: string; port: number }[];
  domains: LinkDomain[];
  defaultRoute: boolean;
  /** No LLMNR/mDNS on a link nobody can answer on. */
  llmnr: 'no';
  mdns: 'no';
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** The settings for splitwan's link: its loopback listen addresses, `~.`, default route. */
export function takeoverSettings(listen: readonly ListenAddress[]): TakeoverSettings {
  const servers = listen
    .filter((a) => isLoopback(a.host))
    .map((a) => ({ family: (isIP(a.host) === 6 ? 6 : 4) as 4 | 6, address: a.host, port: a.port }));
  if (servers.length === 0) throw new Error(`no loopback address among ${listen.map((a) => `${a.host}:${a.port}`).join(', ') || 'no addresses'}: systemd-resolved cannot be pointed at splitwan`);
  return { servers, domains: [{ domain: '.', routingOnly: true }], defaultRoute: true, llmnr: 'no', mdns: 'no' };
}

/** Whether the link has exactly these settings (port 0 and 53 are the same server). */
export function hasSettings(link: ResolvedLink, s: TakeoverSettings): boolean {
  const key = (x: { address: string; port: number }) => `${x.address}#${x.port === 0 ? 53 : x.port}`;
  const have = link.dns.map(key).sort();
  const want = s.servers.map(key).sort();
  const dom = (d: LinkDomain) => `${d.routingOnly ? '~' : ''}${d.domain}`;
  return (
    have.join() === want.join() &&
    link.domains.map(dom).sort().join() === s.domains.map(dom).sort().join() &&
    link.defaultRoute === s.defaultRoute &&
    link.llmnr === s.llmnr &&
    link.mdns === s.mdns
  );
}

/**
 * A takeover splitwan left (a crash, an older layout): the link named ours,
 * or any link whose only servers are splitwan's addresses and that routes
 * `~.`. Stateless: it needs nothing but what resolved reports.
 */
export function isStaleTakeover(link: ResolvedLink, ownHosts: readonly string[], linkName: string = DNS_LINK_NAME): boolean {
  if (link.ifname === linkName) return true;
  return (
    link.dns.length > 0 &&
    link.dns.every((d) => ownHosts.includes(d.address)) &&
    link.domains.some((d) => d.domain === '.' && d.routingOnly)
  );
}

export interface ResolvedState {
  links: ResolvedLink[];
  /** Manager.DNS entries with ifindex 0 (resolved.conf DNS=). */
  global: ResolvedServer[];
  /** Manager.FallbackDNS: what resolved asks when nothing else is configured. */
  fallback: ResolvedServer[];
}

/**
 * `breakout.dns: auto` when resolved runs: the servers resolved has for the
 * WAN link (DHCP, NetworkManager), never the stub and never splitwan's own
 * link, so splitwan's upstream queries cannot loop back through resolved.
 * Order: the WAN link's, then resolved's global ones; when neither has any,
 * the other links that take default-route queries, then resolved's fallback
 * servers (what resolved itself would ask). As `host`, `host:port`,
 * `[v6%zone]:port` strings for parseUpstream.
 */
export function breakoutServers(state: ResolvedState, o: { wanIfname?: string | null; ownHosts: readonly string[]; linkName?: string }): string[] {
  const linkName = o.linkName ?? DNS_LINK_NAME;
  const usable = (s: ResolvedServer) => !isLoopback(s.address) && !o.ownHosts.includes(s.address);
  const names = new Map(state.links.map((l) => [l.ifindex, l.ifname]));
  const fmt = (s: ResolvedServer): string | null => {
    const zone = s.family === 6 && /^fe80:/i.test(s.address) ? names.get(s.ifindex) : undefined;
    if (s.family === 6 && /^fe80:/i.test(s.address) && !zone) return null; // a link-local server without its link is unreachable
    const port = s.port === 0 ? 53 : s.port;
    if (s.family === 4) return port === 53 ? s.address : `${s.address}:${port}`;
    const host = zone ? `${s.address}%${zone}` : s.address;
    return port === 53 ? host : `[${host}]:${port}`;
  };
  const out: string[] = [];
  const add = (list: readonly ResolvedServer[]) => {
    for (const s of list) {
      if (!usable(s)) continue;
      const t = fmt(s);
      if (t !== null && !out.includes(t)) out.push(t);
    }
  };
  const others = state.links.filter((l) => l.ifname !== linkName && !isStaleTakeover(l, o.ownHosts, linkName));
  const wan = o.wanIfname ? others.find((l) => l.ifname === o.wanIfname) : undefined;
  if (wan) add(wan.dns);
  add(state.global);
  if (out.length === 0) for (const l of others) if (l.defaultRoute) add(l.dns);
  if (out.length === 0) add(state.fallback);
  return out;
}

function isLoopback(a: string): boolean {
  return a.startsWith('127.') || a === '::1';
}

// ---------------------------------------------------------------------------
// The OS behind the controller

export interface Watcher {
  stop(): void;
}

/** systemd-resolved's (and NetworkManager's) D-Bus API, as far as the takeover needs it. */
export interface ResolvedApi {
  /** Whether org.freedesktop.resolve1 has an owner on the system bus. */
  running(): Promise<boolean>;
  /** The link as resolved sees it; null when resolved does not know it. */
  link(ifindex: number): Promise<ResolvedLink | null>;
  /** Every link resolved knows, the global and the fallback servers. */
  state(): Promise<ResolvedState>;
  /** SetLinkDNS(Ex), SetLinkDomains, SetLinkDefaultRoute, SetLinkLLMNR, SetLinkMulticastDNS. */
  apply(ifindex: number, s: TakeoverSettings): Promise<void>;
  /** RevertLink: the link's bus-set configuration is dropped, as if never set. */
  revert(ifindex: number): Promise<void>;
  /** FlushCaches: resolved forgets every answer it cached (those of the network the laptop left). */
  flushCaches(): Promise<void>;
  /** Calls back when resolved appears on or leaves the bus (NameOwnerChanged). */
  watchResolved(onChange: (running: boolean) => void): Watcher;
  /**
   * NetworkManager, when it runs, "assumes" a device it did not create and
   * deconfigures it on sleep or `networking off` (the address goes, so
   * resolved drops the link). Marks the device unmanaged (Device.Managed =
   * false, a runtime setting). 'absent' when NetworkManager does not run,
   * 'pending' when it has not seen the device yet.
   */
  unmanage(ifname: string): Promise<'unmanaged' | 'absent' | 'pending'>;
  /** Calls back when NetworkManager appears on or leaves the bus. */
  watchNetworkManager(onChange: (running: boolean) => void): Watcher;
  close(): void;
}

/**
 * The link splitwan owns: exists while the daemon holds it. A crash removes a
 * TUN link; the link made with ip (no native code) stays until cleanup.
 */
export interface DnsLink {
  readonly ifname: string;
  /** Creates the link (or returns the one this process holds), up, with its address. */
  open(): Promise<{ ifindex: number }>;
  /**
   * Whether the link this process holds is up with its address; repairs it
   * when not (true: it had to; a link made again has a new ifindex, which
   * open() then returns).
   */
  repair(): Promise<boolean>;
  /** Removes the link this process holds. Idempotent. */
  close(): Promise<void>;
  /** Stateless cleanup: deletes a link of this name this process does not hold (a leftover). */
  removeStale(): Promise<void>;
}

const SOON_MS = 500;

export interface TakeoverStatus {
  /** resolved runs and the takeover is in place. */
  active: boolean;
  resolvedRunning: boolean;
  ifname: string;
  ifindex: number | null;
  /** How many times the settings had to be applied again (resolved restarted, someone reset them). */
  reapplied: number;
  lastError: string | null;
}

export interface TakeoverOptions {
  api: ResolvedApi;
  link: DnsLink;
  listen: readonly ListenAddress[];
  clock: Clock;
  logger: Logger;
  /** How often the takeover is checked besides the bus signals (default 10 s). */
  guardIntervalMs?: number;
  /** The WAN link now (the breakout's interface), for onBreakoutServers. */
  wanIfname?: () => string | null;
  /**
   * Called at each check when the breakout's servers read from resolved
   * changed (a network change: DHCP, NetworkManager): `breakout.dns: auto`
   * follows the network. null: resolved does not run (use resolv.conf).
   */
  onBreakoutServers?: (servers: string[] | null) => void;
}

/**
 * Applies the takeover and keeps it: at start (when resolved runs), when
 * resolved (re)appears on the bus, when NetworkManager (re)appears, and on a
 * timer that finds settings someone reset. Undoes it at stop. One operation
 * at a time.
 */
export class ResolvedTakeover {
  private readonly settings: TakeoverSettings;
  private ifindex: number | null = null;
  private resolvedRunning = false;
  private active = false;
  private reapplied = 0;
  private lastError: string | null = null;
  private applied = false;
  private nmDone = false;
  private stopped = false;
  /** The one pending check: the periodic one, or sooner after a failure. */
  private timer: unknown = null;
  private backoffMs = SOON_MS;
  private watchers: Watcher[] = [];
  private serial: Promise<unknown> = Promise.resolve();
  private readonly guardMs: number;
  /** What onBreakoutServers was last called with ('' before the first call). */
  private lastServers = '';

  constructor(private readonly o: TakeoverOptions) {
    this.settings = takeoverSettings(o.listen);
    this.guardMs = o.guardIntervalMs ?? 10_000;
  }

  /**
   * Takes over when resolved runs (true), else leaves everything as it is
   * (false: host mode as before). Either way it then follows resolved: one
   * that starts later is taken over then.
   */
  async start(): Promise<boolean> {
    this.watchers.push(
      this.o.api.watchResolved((running) => {
        this.o.logger.info({ running }, running ? 'systemd-resolved appeared on the bus' : 'systemd-resolved left the bus');
        void this.ensure().catch(() => undefined);
      }),
      this.o.api.watchNetworkManager((running) => {
        this.nmDone = false;
        if (running) void this.ensure().catch(() => undefined);
      }),
    );
    // A failure is logged and retried: meanwhile resolved asks the WAN's
    // servers, which host mode's DNS redirect sends to splitwan.
    await this.ensure().catch(() => undefined);
    return this.active;
  }

  /**
   * Checks the takeover and restores what is missing; what the timer and the
   * bus signals run. Then the next check is due: after the periodic interval,
   * or sooner when NetworkManager has not seen the link yet or a step failed
   * (a resolved that just started may not know the link yet; failures back
   * off, doubling up to the interval).
   */
  ensure(): Promise<void> {
    return this.run(async () => {
      let next = this.guardMs;
      try {
        const nmPending = await this.ensureNow();
        this.backoffMs = SOON_MS;
        if (nmPending) next = SOON_MS;
        await this.followServers();
      } catch (e) {
        next = this.backoffMs;
        this.backoffMs = Math.min(this.backoffMs * 2, this.guardMs);
        throw e;
      } finally {
        this.reschedule(next);
      }
    });
  }

  /** Undoes exactly what start did: RevertLink on splitwan's link, then the link goes. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.watchers.splice(0)) w.stop();
    await this.run(async () => {
      try {
        if (this.ifindex !== null && this.applied && (await this.o.api.running())) await this.o.api.revert(this.ifindex);
      } catch (e) {
        // The link goes below anyway, and resolved forgets a link that is gone.
        this.o.logger.warn({ err: (e as Error).message }, 'systemd-resolved: RevertLink failed; removing the link drops the settings anyway');
      } finally {
        this.applied = false;
        this.active = false;
        this.ifindex = null;
        await this.o.link.close();
        this.o.api.close();
      }
    });
  }

  status(): TakeoverStatus {
    return { active: this.active, resolvedRunning: this.resolvedRunning, ifname: this.o.link.ifname, ifindex: this.ifindex, reapplied: this.reapplied, lastError: this.lastError };
  }

  /** The breakout's servers from resolved (`breakout.dns: auto`); null when resolved does not run. */
  async breakoutServers(wanIfname: string | null): Promise<string[] | null> {
    if (!(await this.o.api.running())) return null;
    return breakoutServers(await this.o.api.state(), { wanIfname, ownHosts: this.settings.servers.map((s) => s.address), linkName: this.o.link.ifname });
  }

  private run<T>(f: () => Promise<T>): Promise<T> {
    const p = this.serial.then(f);
    this.serial = p.catch(() => undefined);
    return p;
  }

  private reschedule(ms: number): void {
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      void this.ensure().catch(() => undefined);
    }, ms);
  }

  private async followServers(): Promise<void> {
    if (!this.o.onBreakoutServers || this.stopped) return;
    try {
      const servers = this.resolvedRunning ? await this.breakoutServers(this.o.wanIfname?.() ?? null) : null;
      const key = JSON.stringify(servers);
      if (key === this.lastServers) return;
      this.lastServers = key;
      this.o.logger.info({ servers }, servers ? 'breakout resolvers from systemd-resolved' : 'systemd-resolved is gone: breakout resolvers from resolv.conf');
      this.o.onBreakoutServers(servers);
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'could not read the breakout resolvers from systemd-resolved; kept the last ones');
    }
  }

  /** One check; true when NetworkManager should be asked again soon. */
  private async ensureNow(): Promise<boolean> {
    if (this.stopped) return false;
    let nmPending = false;
    try {
      this.resolvedRunning = await this.o.api.running();
      if (!this.resolvedRunning) {
        if (this.active) this.o.logger.warn({}, 'systemd-resolved is gone: its stub answers nothing now; the takeover is applied again when it is back');
        this.active = false;
        return false;
      }
      if (this.ifindex === null) {
        this.ifindex = (await this.o.link.open()).ifindex;
      } else if (await this.o.link.repair()) {
        this.o.logger.warn({ ifname: this.o.link.ifname }, 'splitwan-dns link had lost its address or was down (NetworkManager?): restored');
        // A link made with ip (no native code) that someone deleted is made again: a new link to resolved and NetworkManager.
        const now = (await this.o.link.open()).ifindex;
        if (now !== this.ifindex) {
          this.ifindex = now;
          this.nmDone = false;
        }
      }
      if (!this.nmDone) {
        const nm = await this.o.api.unmanage(this.o.link.ifname);
        this.nmDone = nm !== 'pending';
        if (nm === 'unmanaged') this.o.logger.info({ ifname: this.o.link.ifname }, 'NetworkManager told to leave the link alone (unmanaged)');
        nmPending = nm === 'pending';
      }
      const now = await this.o.api.link(this.ifindex);
      if (now === null || !hasSettings(now, this.settings)) {
        await this.o.api.apply(this.ifindex, this.settings);
        if (this.applied) {
          this.reapplied++;
          this.o.logger.warn({ ifname: this.o.link.ifname, had: now && summary(now) }, 'systemd-resolved had lost splitwan\'s settings (restarted, or reset by another program): applied again');
        } else {
          this.o.logger.info({ ifname: this.o.link.ifname, ifindex: this.ifindex, dns: this.settings.servers.map((s) => `${s.address}:${s.port}`), domains: '~.' }, 'systemd-resolved sends every query to splitwan');
        }
        this.applied = true;
      }
      this.active = true;
      this.lastError = null;
      return nmPending;
    } catch (e) {
      const err = e as Error;
      this.lastError = err.message;
      this.active = false;
      this.o.logger.error({ err: err.message, code: (err as { code?: string }).code ?? 'SPLITWAN_RESOLVED' }, 'systemd-resolved takeover failed; retried shortly');
      throw Object.assign(new Error(`systemd-resolved takeover: ${err.message}`), { code: 'SPLITWAN_RESOLVED', cause: err });
    }
  }
}

function summary(l: ResolvedLink): object {
  return { dns: l.dns.map((d) => d.address), domains: l.domains.map((d) => `${d.routingOnly ? '~' : ''}${d.domain}`), defaultRoute: l.defaultRoute };
}

/**
 * `splitwan cleanup` and the start after a crash: reverts every stale
 * takeover resolved still holds and removes a leftover link. Needs no state.
 * Returns the links it reverted (ifname or ifindex), for the log.
 */
export async function cleanupTakeover(api: ResolvedApi, link: Pick<DnsLink, 'ifname' | 'removeStale'>, ownHosts: readonly string[] = [RESOLVED_MODE_LISTEN.host]): Promise<string[]> {
  const done: string[] = [];
  if (await api.running()) {
    for (const l of (await api.state()).links) {
      if (!isStaleTakeover(l, ownHosts, link.ifname)) continue;
      await api.revert(l.ifindex);
      done.push(l.ifname || String(l.ifindex));
    }
  }
  await link.removeStale();
  return done;
}
