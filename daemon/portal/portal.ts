// Captive portals (issue 16): when to probe, and the window `splitwan portal`
// opens. With the kill switch on, a hotel's login page can never be reached;
// this lets through only what the portal needs, for a bounded time:
//
// - Probes (probe.ts) run at start, after a change of network, and while no
//   gateway is up (the usual symptom: the portal drops the tunnel's UDP until
//   login), every `portal.interval`; while a window is open, every few seconds,
//   so a login (the probe gets its 204 again) closes the window at once.
// - A window (window.ts) is elements of the portal sets (portal-rules.ts) with
//   the kernel's own timeouts, so it closes even if splitwan is gone; a timer
//   here closes it on time too (status, the resolver's names). While it is
//   open the resolver answers the portal's names from the breakout's resolvers
//   (detour), and their answers' addresses join the window for what is left of it.
//
// Nothing here touches the system but through the nft session it is given.
import { isIP } from 'node:net';
import type { PortalConfig, Upstream } from '../../config/types.js';
import type { Clock, Logger } from '../../lib/logger.js';
import type { PortalReport } from '../control/protocol.js';
import { renderPortalAdd, renderPortalFlush, type PortalElement } from '../dataplane/portal-rules.js';
import type { ProbeResult } from './probe.js';
import { hostElements, planPortalWindow, PORTAL_PORTS, type PortalHost } from './window.js';

/** How often an open window's portal is probed: the user is at the login page, waiting. */
export const OPEN_PROBE_MS = 3000;
/** After a change of network, the probe waits this long for the new network's DHCP and resolvers to settle. */
export const SETTLE_MS = 1000;
/** A probe result this recent is good enough for `splitwan portal` (else it probes first). */
const FRESH_MS = 10_000;

export const DEFAULT_PORTAL: PortalConfig = { enabled: true, probeUrl: 'http://connectivitycheck.gstatic.com/generate_204', openForMs: 300_000, intervalMs: 30_000 };

export interface PortalDeps {
  clock: Clock;
  logger: Logger;
  config(): PortalConfig;
  /** One probe through the breakout (probePortal over the daemon's dialer). */
  probe(url: string): Promise<ProbeResult>;
  /** Every address of a name through the breakout's resolvers. */
  lookupAll(name: string): Promise<string[]>;
  breakoutDns(): readonly Upstream[];
  /** The nft session: portal set elements. */
  nft: { exec(line: string): Promise<void> };
  /** Whether any gateway carries the tunnel now. */
  tunnelUp(): boolean;
  /** A window opened or closed: what the resolver remembered about those names is stale. */
  onChange?(): void;
}

interface Window {
  openedAt: number;
  /** Monotonic deadline (the kernel's timeouts are monotonic too). */
  untilMono: number;
  hosts: PortalHost[];
  dns: string[];
  /** Names the resolver answers from the breakout while open. */
  names: Set<string>;
  /** Elements in the sets: `address . proto . port`. */
  installed: Set<string>;
}

const key = (e: PortalElement): string => `${e.address} ${e.proto} ${e.port}`;

export class CaptivePortal {
  private last: ProbeResult | null = null;
  private window: Window | null = null;
  private probeTimer: unknown = null;
  private closeTimer: unknown = null;
  private inFlight: Promise<ProbeResult> | null = null;
  private stopped = false;
  private warnedUrl: string | null = null;
  readonly counts = { opens: 0, probes: { online: 0, portal: 0, failed: 0 } };

  constructor(private readonly d: PortalDeps) {}

  private get cfg(): PortalConfig {
    return this.d.config();
  }

  /** At start: the first probe (when enabled). */
  start(): void {
    if (this.cfg.enabled) this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    this.d.clock.clearTimeout(this.probeTimer);
    this.d.clock.clearTimeout(this.closeTimer);
  }

  /** Another network: an open window's addresses were that network's portal; probe the new one once it settles. */
  networkChanged(): void {
    if (this.window) void this.close('the network changed').catch((e: unknown) => this.d.logger.warn({ err: e }, 'closing the captive portal window failed'));
    this.last = null;
    this.warnedUrl = null;
    if (this.cfg.enabled) this.schedule(SETTLE_MS);
  }

  /** The tunnel's health changed: with no gateway up, a portal is the usual reason, so probe now (and every interval while it lasts). */
  tunnelChanged(): void {
    if (this.stopped || !this.cfg.enabled) return;
    if (!this.d.tunnelUp()) this.schedule(0);
  }

  /** A reload: the probe URL or the interval may have changed. */
  reconfigure(): void {
    if (this.stopped) return;
    if (!this.cfg.enabled && !this.window) {
      this.d.clock.clearTimeout(this.probeTimer);
      this.probeTimer = null;
    } else this.schedule(0);
  }

  /** The resolver's detour: `breakout` for the portal's names while a window is open. */
  pathOf(name: string): 'breakout' | null {
    return this.window?.names.has(name) ? 'breakout' : null;
  }

  /** An answer for a portal name: its addresses join the window (web ports) for what is left of it. null: nothing to wait for. */
  admit(name: string, addresses: readonly string[]): Promise<void> | null {
    const w = this.window;
    if (!w || addresses.length === 0) return null;
    const fresh = hostElements([{ name, addresses: [...addresses] }]).filter((e) => !w.installed.has(key(e)));
    if (fresh.length === 0) return null;
    const host = w.hosts.find((h) => h.name === name);
    if (host) host.addresses = [...new Set([...host.addresses, ...addresses])];
    else w.hosts.push({ name, addresses: [...addresses] });
    return this.install(w, fresh);
  }

  /** Probes now (one at a time: a second caller shares the probe in flight). */
  probeNow(): Promise<ProbeResult> {
    this.inFlight ??= this.runProbe().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /**
   * `splitwan portal`: probes (unless a recent probe saw the portal), then opens
   * the portal's hosts, the probe's and the breakout's resolvers for
   * `portal.openFor`. Opening again while open starts the time again.
   */
  async open(): Promise<PortalReport> {
    const now = this.d.clock.now();
    let r = this.last;
    if (r === null || r.kind !== 'portal' || now - r.at > FRESH_MS) r = await this.probeNow();
    if (r.kind === 'online' && !this.window) return { ...this.status(), message: `no captive portal on this network: ${this.cfg.probeUrl} answers 204 through the breakout; nothing opened` };
    const names = r.kind === 'portal' ? r.hosts : [new URL(this.cfg.probeUrl).hostname.toLowerCase()];
    const hosts = await Promise.all(names.map(async (name): Promise<PortalHost> => ({ name, addresses: isAddress(name) ? [name] : await this.d.lookupAll(name).catch(() => []) })));
    const plan = planPortalWindow(hosts, this.d.breakoutDns());
    const openFor = this.cfg.openForMs;
    const line = renderPortalAdd(plan.elements, openFor);
    // One transaction: emptied and filled again, so opening again restarts every element's time (re-adding keeps an element's expiry before Linux 6.12).
    await this.d.nft.exec(line === null ? renderPortalFlush() : `${renderPortalFlush()}; ${line}`);
    const w: Window = {
      openedAt: this.d.clock.wall(),
      untilMono: this.d.clock.now() + openFor,
      hosts,
      dns: plan.dns,
      names: new Set(names.filter((n) => !isAddress(n))),
      installed: new Set(plan.elements.map(key)),
    };
    this.window = w;
    this.counts.opens++;
    this.d.clock.clearTimeout(this.closeTimer);
    this.closeTimer = this.d.clock.setTimeout(() => void this.close(`its ${Math.round(openFor / 1000)} s are up`).catch((e: unknown) => this.d.logger.warn({ err: e }, 'closing the captive portal window failed')), openFor);
    this.d.onChange?.();
    const report = this.status();
    const why = r.kind === 'portal' ? `portal ${r.url}` : `no portal seen yet (${r.kind === 'failed' ? r.error : 'probe answered 204'}): the probe's host only`;
    this.d.logger.warn({ until: new Date(report.window!.until).toISOString(), hosts, dns: plan.dns, ports: PORTAL_PORTS }, `captive portal window open: ${why}; these hosts (TCP 80/443) and the breakout's resolvers go bare via the breakout until then, everything else keeps its path`);
    this.schedule(OPEN_PROBE_MS);
    return { ...report, message: `opened for ${Math.round(openFor / 1000)} s` };
  }

  /** Closes the window now (`splitwan portal --close`, a login, its time); false when none was open. */
  async close(why: string): Promise<boolean> {
    const w = this.window;
    if (!w) return false;
    this.window = null;
    this.d.clock.clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.d.onChange?.();
    this.d.logger.warn({ hosts: w.hosts.map((h) => h.name) }, `captive portal window closed: ${why}`);
    this.schedule(this.nextProbeDelay() ?? -1);
    if (!this.stopped) await this.d.nft.exec(renderPortalFlush());
    return true;
  }

  status(): PortalReport {
    const c = this.cfg;
    const w = this.window;
    const last = this.last;
    const state: PortalReport['state'] = w ? 'open' : last?.kind === 'portal' ? 'suspected' : last?.kind === 'online' ? 'none' : c.enabled ? 'unknown' : 'off';
    return {
      state,
      url: last?.kind === 'portal' ? last.url : null,
      probeUrl: c.probeUrl,
      lastProbe: last === null ? null : { at: this.d.clock.wall() - (this.d.clock.now() - last.at), result: last.kind, ...(last.kind === 'failed' ? { error: last.error } : {}) },
      window: w ? { openedAt: w.openedAt, until: this.d.clock.wall() + (w.untilMono - this.d.clock.now()), hosts: w.hosts.map((h) => ({ name: h.name, addresses: [...h.addresses] })), ports: [...PORTAL_PORTS], dns: [...w.dns] } : null,
    };
  }

  private async install(w: Window, elements: PortalElement[]): Promise<void> {
    const left = w.untilMono - this.d.clock.now();
    const line = left > 0 ? renderPortalAdd(elements, left) : null;
    if (line === null) return;
    for (const e of elements) w.installed.add(key(e));
    await this.d.nft.exec(line);
  }

  private async runProbe(): Promise<ProbeResult> {
    const c = this.cfg;
    const r = await this.d.probe(c.probeUrl).catch((e: unknown): ProbeResult => ({ kind: 'failed', at: this.d.clock.now(), error: (e as Error).message }));
    const before = this.last;
    this.last = r;
    this.counts.probes[r.kind]++;
    const log = this.d.logger;
    if (r.kind === 'online') {
      if (this.window) await this.close(`${c.probeUrl} answers 204 again (logged in)`);
      else if (before?.kind === 'portal') log.info({}, `no captive portal now: ${c.probeUrl} answers 204`);
    } else if (r.kind === 'portal') {
      const w = this.window;
      if (w) {
        // The portal led somewhere new (another login step): that host joins the window.
        const fresh = r.hosts.filter((h) => !w.hosts.some((x) => x.name === h));
        for (const name of fresh) {
          const addresses = isAddress(name) ? [name] : await this.d.lookupAll(name).catch(() => []);
          if (!isAddress(name)) w.names.add(name);
          w.hosts.push({ name, addresses });
          await this.install(w, hostElements([{ name, addresses }]));
        }
      } else if (this.warnedUrl !== r.url) {
        this.warnedUrl = r.url;
        log.warn({ url: r.url, hosts: r.hosts, status: r.status }, `captive portal suspected: ${c.probeUrl} led to ${r.url}; "splitwan portal" opens it for ${Math.round(c.openForMs / 1000)} s`);
      }
    } else log.debug({ error: r.error }, 'captive portal probe: no answer');
    return r;
  }

  /** When the next probe is due: soon while open, every interval while no gateway is up, else none. */
  private nextProbeDelay(): number | null {
    if (this.window) return OPEN_PROBE_MS;
    if (this.cfg.enabled && !this.d.tunnelUp()) return this.cfg.intervalMs;
    return null;
  }

  /** The next probe in `ms` (replacing one planned); negative: none. */
  private schedule(ms: number): void {
    if (this.stopped) return;
    this.d.clock.clearTimeout(this.probeTimer);
    this.probeTimer = null;
    if (ms < 0) return;
    this.probeTimer = this.d.clock.setTimeout(() => {
      this.probeTimer = null;
      void this.probeNow()
        .catch((e: unknown) => this.d.logger.warn({ err: e }, 'captive portal probe failed'))
        .finally(() => {
          if (this.probeTimer === null) this.schedule(this.nextProbeDelay() ?? -1);
        });
    }, ms);
  }
}

function isAddress(s: string): boolean {
  return isIP(s) !== 0;
}
