// Host mode beside systemd-resolved, as the composition root uses it (issue
// 16; docs/design/laptop-resolved.md). Three moments:
//
// - before the resolver binds (start, each reload): when resolved runs,
//   `dns.listen: auto` means splitwan's own addresses (127.0.0.153, or the
//   next free one) instead of resolved's 127.0.0.53, and `breakout.dns: auto`
//   means the servers resolved has for the WAN link (never its stub: splitwan's
//   own upstream queries cannot loop through resolved);
// - after it is bound: the takeover (daemon/resolved.ts) tells resolved to send
//   every query there, and keeps it (resolved restarts, NetworkManager);
// - before it closes: the takeover is undone (RevertLink, the link goes).
//
// Without resolved (a router, a server, a laptop without it) none of this does
// anything: host mode listens on 127.0.0.53 as before.
import type { Config } from '../config/types.js';
import type { ListenAddress } from '../dns/server.js';
import type { Clock, Logger } from '../lib/logger.js';
import { breakoutServers, cleanupTakeover, ResolvedTakeover, type DnsLink, type ResolvedApi, type TakeoverStatus } from './resolved.js';
import { HOST_LISTEN } from './resolver-paths.js';

/**
 * Where host mode listens when resolved runs, in order: the first nobody else
 * holds. 127.0.0.153 is the documented one (RESOLVED_MODE_LISTEN); the others
 * are for a machine where another local resolver sits on it. All of them are
 * also the marker by which cleanup finds a stale takeover.
 */
export const RESOLVED_LISTEN_CANDIDATES: readonly ListenAddress[] = Object.freeze(['127.0.0.153', '127.0.0.154', '127.0.0.155', '127.0.0.156'].map((host) => Object.freeze({ host, port: 53 })));
export const RESOLVED_OWN_HOSTS: readonly string[] = RESOLVED_LISTEN_CANDIDATES.map((a) => a.host);

/** resolved's stubs: it refuses them as servers (and would ask itself). */
const STUBS = new Set(['127.0.0.53', '127.0.0.54']);

export interface ResolvedParts {
  api: ResolvedApi;
  link: DnsLink;
}

/** What the resolver's listener takes from here (DnsListener). */
export interface ListenerKnobs {
  hostListen: readonly ListenAddress[];
  breakoutOverride: readonly string[] | null;
}

export interface HostResolvedOptions {
  /** Makes the D-Bus client and the link (linuxDeps); undefined where there is no resolved to talk to. */
  make: (() => ResolvedParts) | undefined;
  clock: Clock;
  logger: Logger;
  /** The breakout's interface now (the WAN link whose servers the breakout uses). */
  wanIfname: () => string | null;
  /**
   * The breakout's servers changed (a network change): the listener's
   * breakoutOverride is already set. When it resolves (splitwan's own cache
   * flushed), resolved's cache is flushed too: it sits in front of splitwan
   * and holds the old network's answers as well.
   */
  onBreakoutChange: () => Promise<void>;
  /** The periodic check of the takeover (default 10 s). */
  guardIntervalMs?: number;
}

/** The addresses resolved can be pointed at: loopback, not its own stubs. */
export function takeoverListen(listen: readonly ListenAddress[]): ListenAddress[] {
  return listen.filter((a) => (a.host.startsWith('127.') || a.host === '::1') && !STUBS.has(a.host));
}

export class HostResolved {
  private parts: ResolvedParts | null = null;
  private takeover: ResolvedTakeover | null = null;
  /** The listen addresses the takeover points resolved at ('' when none). */
  private takeoverKey = '';
  private knobs: ListenerKnobs | null = null;
  /** The config of the last beforeServe: a reload can turn `breakout.dns: auto` off. */
  private config: Config | null = null;
  private stopped = false;
  /**
   * Whether resolved ran at the first beforeServe. One that starts later finds
   * 127.0.0.53 taken by splitwan and runs without its stub (it does not try
   * again): splitwan keeps that address, which resolv.conf names, and does not
   * take resolved over, on every reload until it is restarted.
   */
  private resolvedAtStart: boolean | null = null;

  constructor(private readonly o: HostResolvedOptions) {}

  /**
   * Before the listener binds: where host mode's `dns.listen: auto` goes and
   * the breakout's servers from resolved. Once a takeover was made, its
   * addresses stay the candidates even while resolved is away (it is taken
   * over again when it is back).
   */
  async beforeServe(c: Config, knobs: ListenerKnobs): Promise<void> {
    this.knobs = knobs;
    this.config = c;
    if (c.mode !== 'host' || !this.o.make || this.stopped) {
      knobs.hostListen = [HOST_LISTEN];
      knobs.breakoutOverride = null;
      return;
    }
    this.parts ??= this.o.make();
    const running = await this.parts.api.running().catch(() => false);
    this.resolvedAtStart ??= running;
    knobs.hostListen = (running && this.resolvedAtStart) || this.takeover ? RESOLVED_LISTEN_CANDIDATES : [HOST_LISTEN];
    knobs.breakoutOverride = null;
    if (running && c.breakout.dns === 'auto') {
      try {
        knobs.breakoutOverride = breakoutServers(await this.parts.api.state(), { wanIfname: this.o.wanIfname(), ownHosts: RESOLVED_OWN_HOSTS, linkName: this.parts.link.ifname });
      } catch (e) {
        this.o.logger.warn({ err: (e as Error).message }, 'could not read the breakout resolvers from systemd-resolved: resolv.conf instead');
      }
    }
  }

  /**
   * After the listener is bound (start, each reload): takes over when
   * resolved runs and splitwan listens on an address resolved can send to;
   * a change of those addresses moves the takeover (undone, made again).
   * Never throws: a failed step is logged and retried by the takeover.
   */
  async afterServe(c: Config, listen: readonly ListenAddress[]): Promise<void> {
    if (this.stopped) return;
    const targets = c.mode === 'host' && this.o.make ? takeoverListen(listen) : [];
    const key = JSON.stringify(targets);
    if (key === this.takeoverKey) return;
    await this.stopTakeover();
    if (targets.length === 0) return;
    this.parts ??= this.o.make!();
    if (!this.takeover && (this.resolvedAtStart === false || !(await this.parts.api.running().catch(() => false)))) {
      // Not there at start: nothing changes (host mode as before); a later resolved is not followed (resolvedAtStart; the unit orders splitwan after it).
      this.parts.api.close();
      this.parts = null;
      return;
    }
    const parts = this.parts;
    this.takeover = new ResolvedTakeover({
      api: parts.api,
      link: parts.link,
      listen: targets,
      clock: this.o.clock,
      logger: this.o.logger,
      ...(this.o.guardIntervalMs !== undefined ? { guardIntervalMs: this.o.guardIntervalMs } : {}),
      wanIfname: this.o.wanIfname,
      onBreakoutServers: (servers) => this.breakoutChanged(servers),
    });
    this.takeoverKey = key;
    await this.takeover.start();
  }

  /** Reads resolved again now (the WAN changed): a new network's servers are used at once. */
  ensure(): void {
    void this.takeover?.ensure().catch(() => undefined);
  }

  /** Undoes the takeover; before the listener closes. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopTakeover();
    this.parts?.api.close();
    this.parts = null;
  }

  status(): TakeoverStatus | null {
    return this.takeover?.status() ?? null;
  }

  private async stopTakeover(): Promise<void> {
    const t = this.takeover;
    this.takeover = null;
    this.takeoverKey = '';
    if (!t) return;
    // The takeover's stop closes its client; a next takeover gets a new one.
    await t.stop();
    this.parts = null;
  }

  private breakoutChanged(servers: string[] | null): void {
    if (!this.knobs || this.config?.breakout.dns !== 'auto' || this.stopped) return;
    if (JSON.stringify(servers) === JSON.stringify(this.knobs.breakoutOverride)) return;
    this.knobs.breakoutOverride = servers;
    const api = this.parts?.api;
    void this.o
      .onBreakoutChange()
      .then(() => (servers !== null && !this.stopped ? api?.flushCaches() : undefined))
      .catch((e: unknown) => this.o.logger.warn({ err: (e as Error).message }, 'systemd-resolved: FlushCaches failed; its cached answers of the old network expire by their TTL'));
  }
}

/** `splitwan cleanup` and the start after a crash: a stale takeover of any of splitwan's addresses is reverted. */
export async function cleanupResolved(parts: ResolvedParts, logger: Logger): Promise<void> {
  try {
    const done = await cleanupTakeover(parts.api, parts.link, RESOLVED_OWN_HOSTS);
    if (done.length) logger.warn({ links: done }, 'systemd-resolved: reverted a takeover a previous run left');
  } catch (e) {
    logger.warn({ err: (e as Error).message }, 'systemd-resolved: could not check for a stale takeover');
  } finally {
    parts.api.close();
  }
}
