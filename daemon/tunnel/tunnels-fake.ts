// A TunnelBackend that models the system instead of touching it: links,
// their WireGuard config, the wireguard-go processes, handshakes and endpoints.
// For unit tests of the modules that drive tunnels (wiring, health monitor):
// they compare the modelled state, never command strings.
//
// The model follows what tunnels-linux.ts does on a real system:
// - set() creates a link (up, new pid) per new spec, reconfigures in place on a
//   change (an endpoint-only change keeps the pid), removes what is gone, and
//   repairs what a fault broke (a deleted link, a crashed process, a roamed
//   endpoint seen by status(), a link set down). Same specs twice: no change.
// - A crashed process is restarted by the supervisor (`autoRestart`, default
//   true, after restartDelayMs on the injected clock) with a new pid.
// - Handshakes: a link whose peer is reachable (default) shakes hands when it
//   comes up and on handshake(); unreachable peers keep the last handshake.
// Secrets never leave: state() shows specs with their keys hidden.
import { systemClock, type Clock } from '../../lib/logger.js';
import { cloneSpec, diffSpec, formatEndpoint, isNoop, redactSpec, validateSpecs } from './spec.js';
import type { TunnelBackend, TunnelSpec, TunnelStatus } from './types.js';

export interface FakeLink {
  ifname: string;
  /** Administratively up. */
  up: boolean;
  mtu: number;
  addresses: string[];
  /** The applied config, keys hidden. */
  config: TunnelSpec;
  /** The peer endpoint in use (roams). */
  endpoint: string;
  /** The process serving it; null while it is dead. */
  pid: number | null;
  latestHandshake: number | null;
  rxBytes: number;
  txBytes: number;
  /** How many times the link was (re)created. */
  incarnation: number;
  /** How many times the supervisor restarted its process. */
  restarts: number;
}

export interface FakeTunnelsState {
  links: FakeLink[];
  /** Pids of the processes that run now. */
  processes: number[];
  /** Completed set() calls that changed something / that changed nothing. */
  changes: number;
  noops: number;
  closed: boolean;
}

export interface FakeTunnelsOptions {
  clock?: Clock;
  /** Restart crashed processes by themselves (the supervisor). Default true. */
  autoRestart?: boolean;
  restartDelayMs?: number;
  firstPid?: number;
}

interface Model {
  desired: TunnelSpec;
  /** null: the link is gone. */
  link: Omit<FakeLink, 'config' | 'incarnation' | 'restarts'> & { spec: TunnelSpec } | null;
  incarnation: number;
  restarts: number;
  reachable: boolean;
  /** What the last status() reported, as tunnels-linux remembers it. */
  seenEndpoint?: string | null;
  seenDown?: boolean;
  restartTimer: unknown;
}

export class FakeTunnels implements TunnelBackend {
  private readonly clock: Clock;
  private readonly autoRestart: boolean;
  private readonly restartDelayMs: number;
  private nextPid: number;
  private readonly models = new Map<string, Model>();
  private order: string[] = [];
  private changes = 0;
  private noops = 0;
  private closed = false;
  /** set() rejects with this (once per ifname) when armed by failNextSet(). */
  private readonly failures = new Map<string, Error>();

  constructor(opts: FakeTunnelsOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.autoRestart = opts.autoRestart ?? true;
    this.restartDelayMs = opts.restartDelayMs ?? 250;
    this.nextPid = opts.firstPid ?? 40_000;
  }

  // ------------------------------------------------------------------ TunnelBackend

  /** How many times rebind() ran (a network change). */
  rebinds = 0;

  async rebind(): Promise<void> {
    this.rebinds++;
  }

  async set(specs: TunnelSpec[]): Promise<void> {
    if (this.closed) throw new Error('tunnels: set() after close()');
    validateSpecs(specs);
    let changed = false;
    const wanted = new Set(specs.map((s) => s.ifname));
    for (const [name, m] of this.models) {
      if (wanted.has(name)) continue;
      this.clearTimer(m);
      this.models.delete(name);
      changed = true;
    }
    const errors: Error[] = [];
    for (const raw of specs) {
      const spec = cloneSpec(raw);
      let m = this.models.get(spec.ifname);
      if (!m) {
        m = { desired: spec, link: null, incarnation: 0, restarts: 0, reachable: true, restartTimer: null };
        this.models.set(spec.ifname, m);
      }
      m.desired = spec;
      const failure = this.failures.get(spec.ifname);
      if (failure) {
        this.failures.delete(spec.ifname);
        errors.push(failure);
        continue;
      }
      if (this.reconcile(m)) changed = true;
    }
    this.order = specs.map((s) => s.ifname);
    if (changed) this.changes++;
    else this.noops++;
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'tunnels: several tunnels failed');
  }

  async status(): Promise<TunnelStatus[]> {
    return this.order.flatMap((name) => {
      const m = this.models.get(name);
      if (!m) return [];
      const l = m.link;
      if (l) {
        m.seenEndpoint = l.endpoint;
        m.seenDown = !l.up;
      }
      return [
        {
          ifname: name,
          up: l !== null && l.up && l.pid !== null,
          pid: l?.pid ?? null,
          latestHandshake: l?.latestHandshake ?? null,
          rxBytes: l?.rxBytes ?? 0,
          txBytes: l?.txBytes ?? 0,
          endpoint: l ? l.endpoint : null,
        },
      ];
    });
  }

  async close(): Promise<void> {
    for (const m of this.models.values()) this.clearTimer(m);
    this.models.clear();
    this.order = [];
    this.closed = true;
  }

  // ------------------------------------------------------------------ the model

  /** A snapshot of everything modelled (keys hidden). */
  state(): FakeTunnelsState {
    const links: FakeLink[] = [];
    for (const name of this.order) {
      const m = this.models.get(name);
      if (!m?.link) continue;
      const { spec, ...l } = m.link;
      links.push({ ...l, addresses: [...l.addresses], config: redactSpec(spec), incarnation: m.incarnation, restarts: m.restarts });
    }
    return { links, processes: links.flatMap((l) => (l.pid === null ? [] : [l.pid])), changes: this.changes, noops: this.noops, closed: this.closed };
  }

  link(ifname: string): FakeLink | undefined {
    return this.state().links.find((l) => l.ifname === ifname);
  }

  // ------------------------------------------------------------------ faults and events

  /** Someone ran `ip link del`: the link and its process are gone (the supervisor restarts it). */
  deleteLink(ifname: string): void {
    const m = this.must(ifname);
    if (!m.link) return;
    m.link = null;
    this.scheduleRestart(m);
  }

  /** wireguard-go died (kill -9): the link goes with it; the supervisor restarts it. */
  crash(ifname: string): void {
    this.deleteLink(ifname);
  }

  /** Someone ran `ip link set IF down` (IPv6 addresses are dropped). */
  setDown(ifname: string): void {
    const l = this.must(ifname).link;
    if (!l) return;
    l.up = false;
    l.addresses = l.addresses.filter((a) => !a.includes(':'));
  }

  /** The peer's packets came from another address: WireGuard adopts it. */
  roam(ifname: string, endpoint: string): void {
    const l = this.must(ifname).link;
    if (l) l.endpoint = endpoint;
  }

  /** Whether the peer answers: an unreachable one gets no more handshakes. */
  setReachable(ifname: string, reachable: boolean): void {
    this.must(ifname).reachable = reachable;
  }

  /** A handshake attempt now (keepalive, traffic); succeeds when reachable and the link is up. */
  handshake(ifname: string): boolean {
    const m = this.must(ifname);
    if (!m.link || !m.link.up || !m.reachable) return false;
    m.link.latestHandshake = this.clock.wall(); // unix ms, as `wg show` reports it
    return true;
  }

  traffic(ifname: string, rx: number, tx: number): void {
    const l = this.must(ifname).link;
    if (!l) return;
    l.rxBytes += rx;
    l.txBytes += tx;
  }

  /** The next set() fails for this tunnel (and leaves it as it is). */
  failNextSet(ifname: string, err: Error = new Error(`fake: ${ifname} failed`)): void {
    this.failures.set(ifname, err);
  }

  // ------------------------------------------------------------------ internals

  private must(ifname: string): Model {
    const m = this.models.get(ifname);
    if (!m) throw new Error(`fake tunnels: no tunnel ${ifname}`);
    return m;
  }

  /** Returns whether anything changed. */
  private reconcile(m: Model): boolean {
    const spec = m.desired;
    const wantEp = formatEndpoint(spec.peer.endpoint);
    if (!m.link) {
      this.clearTimer(m);
      this.bringUp(m);
      return true;
    }
    const l = m.link;
    const d = diffSpec(l.spec, spec);
    const roamed = m.seenEndpoint !== undefined && m.seenEndpoint !== wantEp;
    const down = m.seenDown === true;
    m.seenEndpoint = undefined;
    m.seenDown = undefined;
    if (isNoop(d) && !roamed && !down) return false;
    if (d.wgConfig || d.endpoint || roamed) l.endpoint = wantEp;
    l.mtu = spec.mtu;
    l.up = true;
    l.addresses = [...spec.addresses];
    l.spec = spec;
    if (d.wgConfig) this.handshake(spec.ifname);
    return true;
  }

  private bringUp(m: Model): void {
    const spec = m.desired;
    m.incarnation++;
    m.seenEndpoint = undefined;
    m.seenDown = undefined;
    m.link = {
      ifname: spec.ifname,
      up: true,
      mtu: spec.mtu,
      addresses: [...spec.addresses],
      spec,
      endpoint: formatEndpoint(spec.peer.endpoint),
      pid: this.nextPid++,
      latestHandshake: null,
      rxBytes: 0,
      txBytes: 0,
    };
    this.handshake(spec.ifname);
  }

  private scheduleRestart(m: Model): void {
    if (!this.autoRestart || this.closed || m.restartTimer !== null) return;
    m.restartTimer = this.clock.setTimeout(() => {
      m.restartTimer = null;
      if (this.closed || this.models.get(m.desired.ifname) !== m || m.link) return;
      this.bringUp(m);
      m.restarts++;
    }, this.restartDelayMs);
  }

  private clearTimer(m: Model): void {
    if (m.restartTimer !== null) this.clock.clearTimeout(m.restartTimer);
    m.restartTimer = null;
  }
}
