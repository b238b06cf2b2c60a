// systemd-resolved, NetworkManager and splitwan's DNS link as a state model,
// for unit tests of the takeover (daemon/resolved.ts): they compare what
// resolved would hold per link, never method strings.
//
// The model follows what the lab showed of the real ones
// (test/lab/resolved.test.ts, docs/design/laptop-resolved.md):
// - resolved keeps per-link settings set over the bus; RevertLink drops them;
//   a link that goes away takes its settings with it.
// - A restart drops them unless `keepOnRestart` (the real one reloads what it
//   saved under /run/systemd/resolve/netif when /run survives).
// - A link counts for resolved's routing only while it is up with an
//   address (`relevant`); settings stay on a link that is not.
// - NetworkManager deconfigures the devices it manages or has assumed on
//   sleep / `networking off` (their addresses go), unless marked unmanaged.
import type { DnsLink, LinkDomain, ResolvedApi, ResolvedLink, ResolvedServer, ResolvedState, TakeoverSettings, Watcher } from './resolved.js';

export interface FakeLinkState {
  ifindex: number;
  ifname: string;
  /** Up with an address: resolved routes queries over it. */
  relevant: boolean;
  dns: ResolvedServer[];
  domains: LinkDomain[];
  /** null: not set (resolved reports false). */
  defaultRoute: boolean | null;
  llmnr: string;
  mdns: string;
}

const blank = (ifindex: number, ifname: string): FakeLinkState => ({ ifindex, ifname, relevant: true, dns: [], domains: [], defaultRoute: null, llmnr: 'yes', mdns: 'no' });

export class FakeResolved implements ResolvedApi {
  isRunning = true;
  nmRunning = false;
  /** Keep link settings across restart() (the real resolved does when /run survives). */
  keepOnRestart = false;
  readonly links = new Map<number, FakeLinkState>();
  global: ResolvedServer[] = [];
  fallback: ResolvedServer[] = [];
  /** Devices NetworkManager was told to leave alone. */
  readonly unmanaged = new Set<string>();
  /** Devices NetworkManager knows (unmanage() on another: 'pending'). null: it knows every device at once. */
  nmKnows: Set<string> | null = null;
  /** Every mutating call, in order: `apply 7`, `revert 7`, `unmanage splitwan-dns`. */
  readonly calls: string[] = [];
  /** Makes the next call of that method fail with this message. */
  readonly failNext = new Map<'apply' | 'revert' | 'running' | 'state' | 'link' | 'unmanage', string>();
  closed = 0;
  private readonly resolvedWatchers = new Set<(r: boolean) => void>();
  private readonly nmWatchers = new Set<(r: boolean) => void>();
  private nextIndex = 2;
  /** Called when NetworkManager deconfigures a device (FakeDnsLink listens). */
  readonly onDeconfigure = new Set<(ifname: string) => void>();

  /** A kernel link resolved sees (the WAN, a VPN's), with what DHCP or NetworkManager set. */
  addLink(ifname: string, s: Partial<Omit<FakeLinkState, 'ifindex' | 'ifname'>> = {}): FakeLinkState {
    const l = { ...blank(this.nextIndex++, ifname), ...s };
    this.links.set(l.ifindex, l);
    return l;
  }

  removeLink(ifindex: number): void {
    this.links.delete(ifindex);
  }

  byName(ifname: string): FakeLinkState | undefined {
    return [...this.links.values()].find((l) => l.ifname === ifname);
  }

  /** What a NetworkManager push does to a link (SetLinkDNS/SetLinkDomains/SetLinkDefaultRoute). */
  push(ifindex: number, s: { dns?: string[]; domains?: LinkDomain[]; defaultRoute?: boolean }): void {
    const l = this.mustLink(ifindex);
    if (s.dns) l.dns = s.dns.map((a) => server(a, ifindex));
    if (s.domains) l.domains = s.domains.map((d) => ({ ...d }));
    if (s.defaultRoute !== undefined) l.defaultRoute = s.defaultRoute;
  }

  /** resolved stops and starts again (systemctl restart). */
  restart(): void {
    this.stopResolved();
    this.startResolved();
  }

  stopResolved(): void {
    this.isRunning = false;
    if (!this.keepOnRestart) for (const l of this.links.values()) Object.assign(l, { dns: [], domains: [], defaultRoute: null, llmnr: 'yes', mdns: 'no' });
    for (const w of this.resolvedWatchers) w(false);
  }

  startResolved(): void {
    this.isRunning = true;
    for (const w of this.resolvedWatchers) w(true);
  }

  /** NetworkManager starts (again): it knows nothing of earlier runtime settings. */
  startNetworkManager(): void {
    this.nmRunning = true;
    this.unmanaged.clear();
    for (const w of this.nmWatchers) w(true);
  }

  /** Suspend or `nmcli networking off`: devices not marked unmanaged lose their addresses. */
  networkManagerSleep(): void {
    if (!this.nmRunning) return;
    for (const l of this.links.values()) {
      if (this.unmanaged.has(l.ifname)) continue;
      for (const f of this.onDeconfigure) f(l.ifname);
    }
  }

  // --- ResolvedApi

  async running(): Promise<boolean> {
    this.maybeFail('running');
    return this.isRunning;
  }

  async link(ifindex: number): Promise<ResolvedLink | null> {
    this.maybeFail('link');
    this.mustRun();
    const l = this.links.get(ifindex);
    return l ? view(l) : null;
  }

  async state(): Promise<ResolvedState> {
    this.maybeFail('state');
    this.mustRun();
    return { links: [...this.links.values()].map(view), global: this.global.map((s) => ({ ...s })), fallback: this.fallback.map((s) => ({ ...s })) };
  }

  async apply(ifindex: number, s: TakeoverSettings): Promise<void> {
    this.calls.push(`apply ${ifindex}`);
    this.maybeFail('apply');
    this.mustRun();
    const l = this.mustLink(ifindex);
    l.dns = s.servers.map((x) => ({ family: x.family, address: x.address, port: x.port === 53 ? 0 : x.port, serverName: '', ifindex }));
    l.domains = s.domains.map((d) => ({ ...d }));
    l.defaultRoute = s.defaultRoute;
    l.llmnr = s.llmnr;
    l.mdns = s.mdns;
  }

  async revert(ifindex: number): Promise<void> {
    this.calls.push(`revert ${ifindex}`);
    this.maybeFail('revert');
    this.mustRun();
    const l = this.mustLink(ifindex);
    Object.assign(l, { dns: [], domains: [], defaultRoute: null, llmnr: 'yes', mdns: 'no' });
  }

  async flushCaches(): Promise<void> {
    this.calls.push('flushCaches');
    this.mustRun();
  }

  watchResolved(onChange: (running: boolean) => void): Watcher {
    this.resolvedWatchers.add(onChange);
    return { stop: () => this.resolvedWatchers.delete(onChange) };
  }

  async unmanage(ifname: string): Promise<'unmanaged' | 'absent' | 'pending'> {
    this.calls.push(`unmanage ${ifname}`);
    this.maybeFail('unmanage');
    if (!this.nmRunning) return 'absent';
    if (this.nmKnows && !this.nmKnows.has(ifname)) return 'pending';
    this.unmanaged.add(ifname);
    return 'unmanaged';
  }

  watchNetworkManager(onChange: (running: boolean) => void): Watcher {
    this.nmWatchers.add(onChange);
    return { stop: () => this.nmWatchers.delete(onChange) };
  }

  close(): void {
    this.closed++;
  }

  /** The link's settings in resolvectl's terms, for assertions. */
  describe(ifname: string): { dns: string[]; domains: string[]; defaultRoute: boolean | null; llmnr: string; mdns: string } | null {
    const l = this.byName(ifname);
    if (!l) return null;
    return { dns: l.dns.map((d) => (d.port ? `${d.address}:${d.port}` : d.address)), domains: l.domains.map((d) => `${d.routingOnly ? '~' : ''}${d.domain}`), defaultRoute: l.defaultRoute, llmnr: l.llmnr, mdns: l.mdns };
  }

  private mustRun(): void {
    if (!this.isRunning) throw Object.assign(new Error('org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.resolve1 was not provided by any .service files'), { code: 'SPLITWAN_RESOLVED_BUS' });
  }

  private mustLink(ifindex: number): FakeLinkState {
    const l = this.links.get(ifindex);
    if (!l) throw Object.assign(new Error(`org.freedesktop.resolve1.NoSuchLink: Link ${ifindex} not known`), { code: 'SPLITWAN_RESOLVED_BUS' });
    return l;
  }

  private maybeFail(m: 'apply' | 'revert' | 'running' | 'state' | 'link' | 'unmanage'): void {
    const msg = this.failNext.get(m);
    if (msg === undefined) return;
    this.failNext.delete(m);
    throw Object.assign(new Error(msg), { code: 'SPLITWAN_RESOLVED_BUS' });
  }
}

function view(l: FakeLinkState): ResolvedLink {
  return { ifindex: l.ifindex, ifname: l.ifname, dns: l.dns.map((d) => ({ ...d })), domains: l.domains.map((d) => ({ ...d })), defaultRoute: l.defaultRoute ?? false, llmnr: l.llmnr, mdns: l.mdns };
}

function server(a: string, ifindex: number): ResolvedServer {
  return { family: a.includes(':') ? 6 : 4, address: a, port: 0, serverName: '', ifindex };
}

/**
 * splitwan's link in the model. `tun` (the default): it exists while "the
 * process" holds it, and a crash removes it. `ip` (the link made with ip, no
 * native code): a crash leaves it, with resolved's settings, until cleanup;
 * someone can delete it under the daemon, and repair() makes it again (a new
 * ifindex).
 */
export class FakeDnsLink implements DnsLink {
  held: FakeLinkState | null = null;
  opened = 0;
  openAttempts = 0;
  repaired = 0;
  staleRemoved = 0;
  /** A leftover link of our name nobody holds (a persistent TUN someone made, a killed run's ip link). */
  leftover: FakeLinkState | null = null;
  failOpen: string | null = null;

  constructor(
    private readonly r: FakeResolved,
    readonly ifname = 'splitwan-dns',
    readonly kind: 'tun' | 'ip' = 'tun',
  ) {
    r.onDeconfigure.add((name) => {
      if (this.held && name === this.ifname) this.held.relevant = false;
    });
  }

  async open(): Promise<{ ifindex: number }> {
    // A TUN cannot go while held; a link made with ip can (deleted by someone): then it is made again.
    if (this.held && (this.kind === 'tun' || this.r.links.has(this.held.ifindex))) return { ifindex: this.held.ifindex };
    this.held = null;
    this.openAttempts++;
    if (this.failOpen) throw Object.assign(new Error(this.failOpen), { code: 'SPLITWAN_RESOLVED_LINK' });
    if (this.leftover) throw Object.assign(new Error(this.kind === 'tun' ? `${this.ifname}: TUNSETIFF: EBUSY` : `${this.ifname}: ip link add type ifb: RTNETLINK answers: File exists`), { code: 'SPLITWAN_RESOLVED_LINK' });
    this.held = this.r.addLink(this.ifname);
    this.opened++;
    return { ifindex: this.held.ifindex };
  }

  async repair(): Promise<boolean> {
    if (!this.held) return false;
    if (this.kind === 'ip' && !this.r.links.has(this.held.ifindex)) {
      await this.open();
      this.repaired++;
      return true;
    }
    if (this.held.relevant) return false;
    this.held.relevant = true;
    this.repaired++;
    return true;
  }

  async close(): Promise<void> {
    if (!this.held) return;
    this.r.removeLink(this.held.ifindex); // the kernel removes the device (or ip deletes it), resolved forgets it
    this.held = null;
  }

  /** The process died (SIGKILL): the kernel removes the TUN with its last fd; a link made with ip stays. */
  crash(): void {
    if (this.held && this.kind === 'tun') this.r.removeLink(this.held.ifindex);
    else if (this.held) this.leftover = this.held;
    this.held = null;
  }

  async removeStale(): Promise<void> {
    if (this.held || !this.leftover) return;
    this.r.removeLink(this.leftover.ifindex);
    this.leftover = null;
    this.staleRemoved++;
  }
}
