// WireGuard tunnels on Linux: a kernel `wireguard` link when the kernel has the
// module, else wireguard-go, supervised. Desired state: set(specs) compares
// each spec with the one it applied last and runs only what changed.
//
// Bring-up (docs/design/dataplane-notes.md §1):
//   wireguard-go -f IF (env WG_PROCESS_FOREGROUND=1)  or  ip link add IF type wireguard
//   wait for /var/run/wireguard/IF.sock to accept a connection (wireguard-go)
//   wg setconf IF FILE        FILE: 0600 in a 0700 temp dir, deleted right after; holds the key
//   ip link set IF mtu M up
//   ip addr replace A dev IF  (after `up`: a down/up drops static IPv6 addresses)
//
// Why a file: Node's stdio pipes are socketpairs and wg(8) fopen()s its config
// path, so `wg setconf IF /dev/stdin` fails with ENXIO. The key never goes on
// argv, into a log or into an error (stderr is redacted: wg echoes a bad key).
//
// Liveness without commands: set() with unchanged specs runs nothing. A
// wireguard-go whose link is deleted exits (~20 ms), which the supervisor sees;
// status() reads each link's flags from sysfs and, for wireguard-go, asks its
// UAPI socket (`get=1`, uapi.ts): no process spawned, although the handshake
// probe asks every second (issue 17: `ip` and `wg` spawned each second were a
// third of the daemon's CPU on a router). A kernel link is read over generic
// netlink in process (wg-netlink-linux.ts); where that cannot be had (no
// native code, SPLITWAN_NATIVE=off, no "wireguard" family, the socket
// refused: said once in the log) with `wg show IF dump`. What status() sees
// (a missing or down link, a roamed endpoint) is repaired by the next set().
import { spawn as nodeSpawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock, silentLogger, type Clock, type Logger } from '../../lib/logger.js';
import { CommandError, linuxRunner, type CommandResult, type RunOptions, type Runner } from '../exec-linux.js';
import { parseIpLinks, parseWgDump, type IpLink, type WgPeerInfo } from '../os-parse.js';
import { parseUapiGet } from './uapi.js';
import { UapiConnection } from './uapi-conn-linux.js';
import {
  cloneSpec,
  diffSpec,
  formatEndpoint,
  isNoop,
  redactSecrets,
  renderWgConfig,
  secretsOf,
  validateSpecs,
} from './spec.js';
import type { TunnelBackend, TunnelSpec, TunnelStatus } from './types.js';
import { keyDirPrefix } from './key-dirs-linux.js';
import { WgNetlink, type KernelWgReader } from './wg-netlink-linux.js';
import { NetlinkError } from '../../sys/netlink.js';
import { fastPathOr, type FallbackNotes } from '../../sys/native-fallback.js';

/** The kernel links' netlink reader, as the log names it when it is off. */
export const WG_NETLINK_PATH = 'kernel WireGuard state: generic netlink';
const WG_NETLINK_INSTEAD = '`wg show IF dump` (a process per kernel tunnel and probe)';

export const WG_SOCKET_DIR = '/var/run/wireguard';

/** Starts a long-running process from argv (never a shell). Tests wrap it to record argv. */
export type SpawnFn = (argv: readonly string[], env: NodeJS.ProcessEnv) => ChildProcess;

export const defaultSpawn: SpawnFn = (argv, env) => {
  const [cmd, ...args] = argv;
  if (!cmd) throw new TypeError('empty argv');
  return nodeSpawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
};

export interface LinuxTunnelOptions {
  /** Runs ip and wg. Default: linuxRunner. Tests prefix argv with `ip netns exec NS`. */
  runner?: Runner;
  /** Put in front of the wireguard-go argv (tests: ['ip', 'netns', 'exec', NS]). */
  spawnPrefix?: readonly string[];
  spawn?: SpawnFn;
  logger?: Logger;
  clock?: Clock;
  /**
   * Where status() reads link flags: sysfs (default: /sys/class/net is this
   * process's namespace), or `ip -j link show` through the runner (the
   * default when spawnPrefix is set: tests drive a namespace from outside).
   */
  linkState?: 'sysfs' | 'ip';
  /**
   * Where status() reads a kernel link's peers: generic netlink in this
   * process (default: its namespace is the links'), or `wg show IF dump`
   * through the runner (the default when spawnPrefix is set, and the fallback).
   */
  wgState?: 'netlink' | 'wg';
  /** Opens the netlink reader (tests: a fake, or one that throws). Default WgNetlink.open. */
  openWgNetlink?: () => KernelWgReader;
  /** Where the netlink reader's fallback is said once (default: the process's notes). */
  notes?: FallbackNotes;
  /** How long a UAPI `get` may take before status() says the tunnel unreadable. Default 2000 ms. */
  uapiTimeoutMs?: number;
  /** auto (default): the kernel link type when `ip link add IF type wireguard` works, else wireguard-go. */
  mode?: 'auto' | 'kernel' | 'userspace';
  /** The wireguard-go binary. */
  wireguardGo?: string;
  socketDir?: string;
  /** Where the 0700 temp dir for configs is made (and swept: key-dirs-linux.ts). Default os.tmpdir(). */
  tmpParent?: string;
  /** Supervisor: first restart delay, doubled up to max; reset after the process ran stableMs. */
  restartBackoffMs?: { initial: number; max: number };
  stableMs?: number;
  /** How long wireguard-go has to open its control socket. */
  startTimeoutMs?: number;
  /** SIGTERM, then SIGKILL after this. */
  stopGraceMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const TAIL_MAX = 8 * 1024;

/** A wireguard-go we started. */
class WgProcess {
  readonly pid: number;
  readonly startedAt: number;
  tail = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  /** Set before we signal it: its exit is expected, not a crash. */
  stopping = false;
  readonly exited: Promise<void>;

  constructor(
    readonly argv: readonly string[],
    child: ChildProcess,
    now: number,
  ) {
    if (child.pid === undefined) {
      child.on('error', () => undefined);
      throw new CommandError(argv, 127, `could not start ${argv.join(' ')}`);
    }
    this.pid = child.pid;
    this.startedAt = now;
    const append = (d: string) => {
      this.tail = (this.tail + d).slice(-TAIL_MAX);
    };
    child.stdout?.setEncoding('utf8').on('data', append);
    child.stderr?.setEncoding('utf8').on('data', append);
    this.exited = new Promise((resolve) => {
      child.on('error', (e) => append(`\n${e.message}`));
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.exit === null;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  exitError(): CommandError {
    const how = this.exit?.signal ? `signal ${this.exit.signal}` : `exit ${this.exit?.code}`;
    // wireguard-go prints a banner and its errors; no key ever reaches it.
    const out = this.tail.replace(/┌[\s\S]*?┘\n?/g, '').trim().slice(-600);
    return new CommandError(this.argv, this.exit?.code ?? 128, `${how}: ${out || 'no output'}`);
  }
}

interface Tunnel {
  ifname: string;
  /** What set() asked for last. */
  desired: TunnelSpec;
  /** What is on the system; null: needs a full bring-up. */
  applied: TunnelSpec | null;
  kind: 'kernel' | 'userspace' | null;
  proc: WgProcess | null;
  /** What the last status() saw; cleared by every change. */
  observed: { linkPresent?: boolean; up?: boolean; endpoint?: string | null };
  /** Bumped by every change, so a status() that raced with it records nothing. */
  generation: number;
  restartTimer: unknown;
  backoffMs: number;
  restarts: number;
}

export class LinuxTunnels implements TunnelBackend {
  private readonly runner: Runner;
  private readonly spawnPrefix: readonly string[];
  private readonly spawnFn: SpawnFn;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly mode: 'auto' | 'kernel' | 'userspace';
  private readonly wireguardGo: string;
  private readonly socketDir: string;
  private readonly tmpParent: string;
  private readonly backoff: { initial: number; max: number };
  private readonly stableMs: number;
  private readonly startTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly linkState: 'sysfs' | 'ip';
  private readonly uapiTimeoutMs: number;
  private readonly wgState: 'netlink' | 'wg';
  private readonly openWgNetlink: () => KernelWgReader;
  private readonly notes: FallbackNotes | undefined;
  /** undefined: not opened yet (on the first kernel link's status); null: `wg show dump` instead. */
  private wgReader: KernelWgReader | null | undefined;

  private readonly tunnels = new Map<string, Tunnel>();
  /** wireguard-go's UAPI connections, per interface (status reads). */
  private readonly uapi = new Map<string, UapiConnection>();
  private order: string[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private kernelAvailable: boolean | null = null;
  private tmpDir: string | null = null;
  private confSeq = 0;

  constructor(opts: LinuxTunnelOptions = {}) {
    this.runner = opts.runner ?? linuxRunner;
    this.spawnPrefix = opts.spawnPrefix ?? [];
    this.spawnFn = opts.spawn ?? defaultSpawn;
    this.log = (opts.logger ?? silentLogger).child({ module: 'tunnel' });
    this.clock = opts.clock ?? systemClock;
    this.mode = opts.mode ?? 'auto';
    if (this.mode === 'kernel') this.kernelAvailable = true;
    if (this.mode === 'userspace') this.kernelAvailable = false;
    this.wireguardGo = opts.wireguardGo ?? 'wireguard-go';
    this.socketDir = opts.socketDir ?? WG_SOCKET_DIR;
    this.tmpParent = opts.tmpParent ?? tmpdir();
    this.backoff = opts.restartBackoffMs ?? { initial: 250, max: 30_000 };
    this.stableMs = opts.stableMs ?? 10_000;
    this.startTimeoutMs = opts.startTimeoutMs ?? 5000;
    this.stopGraceMs = opts.stopGraceMs ?? 2000;
    this.linkState = opts.linkState ?? (this.spawnPrefix.length ? 'ip' : 'sysfs');
    this.uapiTimeoutMs = opts.uapiTimeoutMs ?? 2000;
    this.wgState = opts.wgState ?? (this.spawnPrefix.length ? 'wg' : 'netlink');
    this.openWgNetlink = opts.openWgNetlink ?? (() => WgNetlink.open());
    this.notes = opts.notes;
  }

  /** The pids of the wireguard-go processes running now (ours only). */
  pids(): number[] {
    return [...this.tunnels.values()].flatMap((t) => (t.proc?.running ? [t.proc.pid] : []));
  }

  /** How often the supervisor restarted each tunnel. */
  restartCounts(): Record<string, number> {
    return Object.fromEntries([...this.tunnels.values()].map((t) => [t.ifname, t.restarts]));
  }

  socketPath(ifname: string): string {
    return join(this.socketDir, `${ifname}.sock`);
  }

  // ------------------------------------------------------------------ public API

  set(specs: TunnelSpec[]): Promise<void> {
    validateSpecs(specs);
    const copies = specs.map(cloneSpec);
    return this.locked(async () => {
      if (this.closed) throw new Error('tunnels: set() after close()');
      const wanted = new Map(copies.map((s) => [s.ifname, s]));
      const errors: unknown[] = [];
      // Removed first: a renamed tunnel may reuse the old one's addresses.
      await Promise.all(
        [...this.tunnels.values()]
          .filter((t) => !wanted.has(t.ifname))
          .map(async (t) => {
            this.cancelRestart(t);
            try {
              await this.teardown(t);
              this.tunnels.delete(t.ifname);
              this.log.info({ ifname: t.ifname }, 'tunnel removed');
            } catch (e) {
              errors.push(e);
            }
          }),
      );
      await Promise.all(
        copies.map(async (spec) => {
          let t = this.tunnels.get(spec.ifname);
          if (!t) {
            t = { ifname: spec.ifname, desired: spec, applied: null, kind: null, proc: null, observed: {}, generation: 0, restartTimer: null, backoffMs: this.backoff.initial, restarts: 0 };
            this.tunnels.set(spec.ifname, t);
          }
          t.desired = spec;
          try {
            await this.reconcile(t);
          } catch (e) {
            errors.push(e);
            // The supervisor keeps trying; the next set() tries at once.
            this.scheduleRestart(t, 'bring-up failed');
          }
        }),
      );
      this.order = copies.map((s) => s.ifname);
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, `tunnels: ${errors.length} tunnels failed: ${errors.map((e) => (e as Error).message).join('; ')}`);
    });
  }

  async status(): Promise<TunnelStatus[]> {
    const list = this.order.map((n) => this.tunnels.get(n)).filter((t): t is Tunnel => t !== undefined);
    if (list.length === 0) return [];
    const gens = new Map(list.map((t) => [t, t.generation]));
    const linksP = this.links(list);
    const peersP = Promise.all(list.map((t) => this.peers(t)));
    const links = await linksP;
    const peers = await peersP;
    return list.map((t, i): TunnelStatus => {
      const link = links?.get(t.ifname);
      const got = peers[i]!;
      let latestHandshake: number | null = null;
      let rxBytes = 0;
      let txBytes = 0;
      let endpoint: string | null = null;
      if (got !== null) {
        const peer = got.find((p) => p.publicKey === t.desired.peer.publicKey) ?? got[0];
        if (peer) {
          latestHandshake = peer.latestHandshake;
          rxBytes = peer.rxBytes;
          txBytes = peer.txBytes;
          endpoint = peer.endpoint ? formatEndpoint(peer.endpoint) : null;
        }
      }
      const procOk = t.kind !== 'userspace' || (t.proc?.running ?? false);
      const up = link !== undefined && link.up && procOk;
      if (links !== null && gens.get(t) === t.generation && t.applied !== null) {
        t.observed = { linkPresent: link !== undefined, up: link?.up ?? false };
        if (got !== null) t.observed.endpoint = endpoint;
      }
      return { ifname: t.ifname, up, pid: t.proc?.running ? t.proc.pid : null, latestHandshake, rxBytes, txBytes, endpoint };
    });
  }

  /** Each tunnel's link (absent: no such link); null when they could not be read. */
  private async links(list: readonly Tunnel[]): Promise<Map<string, { up: boolean }> | null> {
    if (this.linkState === 'ip') {
      const r = await this.exec(['ip', '-j', 'link', 'show'], { allowFail: true });
      if (r.code !== 0) return null;
      return new Map(parseIpLinks(r.stdout).map((l: IpLink) => [l.ifname, { up: l.up }]));
    }
    const out = new Map<string, { up: boolean }>();
    for (const t of list) {
      // IFF_UP (0x1), as `ip link` shows UP; ENOENT: no such link. Read at once: a sysfs attribute
      // never blocks, and fs/promises made each read four thread-pool jobs (open, stat, read,
      // close), each waking a worker and the loop, for every tunnel every second (issue 17).
      let flags: string | null = null;
      try {
        flags = readFileSync(`/sys/class/net/${t.ifname}/flags`, 'utf8');
      } catch {
        // no such link
      }
      if (flags !== null) out.set(t.ifname, { up: (parseInt(flags, 16) & 0x1) !== 0 });
    }
    return out;
  }

  /** The tunnel's peers as WireGuard reports them; null when it could not be read (logged, unless the kernel said why). */
  private async peers(t: Tunnel): Promise<WgPeerInfo[] | null> {
    try {
      if (t.kind === 'userspace') return parseUapiGet(await this.uapiGet(t.ifname));
      const reader = this.kernelReader();
      if (reader !== null) return await reader.peers(t.ifname);
      const r = await this.exec(['wg', 'show', t.ifname, 'dump'], { allowFail: true });
      return r.code === 0 ? parseWgDump(r.stdout).peers : null;
    } catch (e) {
      // The kernel's own answer (ENODEV: the link is gone) is what `wg show` exiting non-zero was: no warning.
      if (e instanceof NetlinkError && e.errno !== undefined) this.log.debug({ ifname: t.ifname, err: e.message }, 'wireguard state unreadable');
      else this.log.warn({ ifname: t.ifname, err: (e as Error).message }, 'wireguard state unreadable');
      return null;
    }
  }

  /** The netlink reader, opened once; null (said once in the log) when `wg show dump` must do. */
  private kernelReader(): KernelWgReader | null {
    if (this.wgReader === undefined) {
      this.wgReader =
        this.wgState === 'wg' ? null : fastPathOr({ what: WG_NETLINK_PATH, instead: WG_NETLINK_INSTEAD, report: { logger: this.log, ...(this.notes ? { notes: this.notes } : {}) }, turnedOff: null }, this.openWgNetlink, null);
    }
    return this.wgReader;
  }

  /**
   * `get=1` on wireguard-go's UAPI socket, over a connection kept open per
   * tunnel (uapi-conn-linux.ts). It holds the private key: never logged.
   */
  private uapiGet(ifname: string): Promise<string> {
    let c = this.uapi.get(ifname);
    if (!c) {
      c = new UapiConnection(this.socketPath(ifname), this.uapiTimeoutMs);
      this.uapi.set(ifname, c);
    }
    return c.get();
  }

  rebind(): Promise<void> {
    return this.locked(async () => {
      if (this.closed) return;
      await Promise.all(
        [...this.tunnels.values()].map(async (t) => {
          const spec = t.applied;
          if (spec === null) return; // being (re)built: it starts from no remembered address anyway
          await this.exec(['wg', 'set', spec.ifname, 'peer', spec.peer.publicKey, 'endpoint', formatEndpoint(spec.peer.endpoint)], { allowFail: true });
        }),
      );
    });
  }

  close(): Promise<void> {
    return this.locked(async () => {
      this.closed = true;
      const errors: unknown[] = [];
      await Promise.all(
        [...this.tunnels.values()].map(async (t) => {
          this.cancelRestart(t);
          try {
            await this.teardown(t);
          } catch (e) {
            errors.push(e);
          }
        }),
      );
      this.tunnels.clear();
      this.order = [];
      this.wgReader?.close();
      this.wgReader = undefined;
      if (this.tmpDir) rmSync(this.tmpDir, { recursive: true, force: true });
      this.tmpDir = null;
      if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, 'tunnels: close had problems');
    });
  }

  // ------------------------------------------------------------------ reconcile

  private alive(t: Tunnel): boolean {
    if (t.applied === null) return false;
    if (t.observed.linkPresent === false) return false;
    if (t.kind === 'userspace') return (t.proc?.running ?? false) && existsSync(this.socketPath(t.ifname));
    return true;
  }

  private async reconcile(t: Tunnel): Promise<void> {
    const spec = t.desired;
    if (!this.alive(t)) {
      this.cancelRestart(t);
      if (t.applied !== null || t.proc) this.log.warn({ ifname: t.ifname }, 'tunnel broken: recreating');
      await this.teardown(t);
      await this.bringUp(t, spec);
      return;
    }
    const old = t.applied!;
    const d = diffSpec(old, spec);
    const wantEp = formatEndpoint(spec.peer.endpoint);
    const roamed = !d.wgConfig && 'endpoint' in t.observed && t.observed.endpoint !== wantEp;
    const down = t.observed.up === false;
    if (isNoop(d) && !roamed && !down) return;
    t.generation++;
    t.applied = null; // a failure half-way leaves it for a full bring-up
    if (d.wgConfig) await this.setconf(spec);
    else if (d.endpoint || roamed) {
      if (roamed && !d.endpoint) this.log.info({ ifname: t.ifname, seen: t.observed.endpoint, configured: wantEp }, 'endpoint roamed: restoring');
      await this.exec(['wg', 'set', spec.ifname, 'peer', spec.peer.publicKey, 'endpoint', wantEp]);
    }
    for (const a of d.removeAddresses) await this.exec(['ip', 'addr', 'del', a, 'dev', spec.ifname], { allowFail: true });
    if (d.mtu || down) {
      await this.exec(['ip', 'link', 'set', spec.ifname, 'mtu', String(spec.mtu), 'up']);
      await this.addAddresses(spec, spec.addresses); // a down/up dropped the IPv6 ones
    } else {
      await this.addAddresses(spec, d.addAddresses);
    }
    t.observed = {};
    t.applied = spec;
  }

  private async bringUp(t: Tunnel, spec: TunnelSpec): Promise<void> {
    const t0 = performance.now();
    t.generation++;
    t.observed = {};
    t.applied = null;
    try {
      t.kind = await this.createLink(t);
      await this.setconf(spec);
      await this.exec(['ip', 'link', 'set', spec.ifname, 'mtu', String(spec.mtu), 'up']);
      await this.addAddresses(spec, spec.addresses);
    } catch (e) {
      await this.teardown(t).catch(() => undefined);
      throw e;
    }
    t.applied = spec;
    this.log.info({ ifname: t.ifname, kind: t.kind, pid: t.proc?.pid ?? null, ms: Math.round(performance.now() - t0) }, 'tunnel up');
  }

  private async addAddresses(spec: TunnelSpec, addrs: readonly string[]): Promise<void> {
    for (const a of addrs) {
      const v6 = a.includes(':');
      await this.exec(['ip', ...(v6 ? ['-6'] : []), 'addr', 'replace', a, 'dev', spec.ifname, ...(v6 ? ['nodad'] : [])]);
    }
  }

  /** Creates the link: a kernel one if possible, else a supervised wireguard-go. */
  private async createLink(t: Tunnel): Promise<'kernel' | 'userspace'> {
    if (this.kernelAvailable !== false) {
      const argv = ['ip', 'link', 'add', t.ifname, 'type', 'wireguard'];
      const r = await this.exec(argv, { allowFail: this.mode === 'auto' });
      if (r.code === 0) {
        this.kernelAvailable = true;
        return 'kernel';
      }
      if (this.mode === 'kernel' || /exists/i.test(r.stderr)) throw new CommandError(argv, r.code, r.stderr);
      this.kernelAvailable = false;
      this.log.info({ stderr: r.stderr.trim() }, 'no kernel WireGuard: using wireguard-go');
    }
    await this.startProcess(t);
    return 'userspace';
  }

  private async startProcess(t: Tunnel): Promise<void> {
    const sock = this.socketPath(t.ifname);
    if (existsSync(sock) && (await canConnect(sock))) {
      throw new CommandError([this.wireguardGo, '-f', t.ifname], 1, `${sock} is in use by another process: not ours, left alone`);
    }
    const argv = [...this.spawnPrefix, this.wireguardGo, '-f', t.ifname];
    const proc = new WgProcess(argv, this.spawnFn(argv, { ...process.env, WG_PROCESS_FOREGROUND: '1' }), this.clock.now());
    t.proc = proc;
    void proc.exited.then(() => this.onExit(t, proc));
    const deadline = performance.now() + this.startTimeoutMs;
    // The socket file may be a stale one (after a SIGKILL): wait until it answers.
    for (;;) {
      if (!proc.running) throw proc.exitError();
      if (existsSync(sock) && (await canConnect(sock))) break;
      if (performance.now() > deadline) {
        throw new CommandError(argv, 124, `no control socket ${sock} after ${this.startTimeoutMs} ms: ${proc.tail.trim().slice(-300)}`);
      }
      await sleep(5);
    }
    this.log.debug({ ifname: t.ifname, pid: proc.pid }, 'wireguard-go listening');
  }

  private async setconf(spec: TunnelSpec): Promise<void> {
    // A 0700 directory per call, removed at once. A daemon killed with -9 in between leaves it:
    // the pid in its name tells the next start's sweep (key-dirs-linux.ts) its maker is gone.
    const dir = mkdtempSync(join(this.tmpParent, keyDirPrefix()));
    const file = join(dir, `${spec.ifname}-${this.confSeq++}.conf`);
    try {
      writeFileSync(file, renderWgConfig(spec), { mode: 0o600, flag: 'wx' });
      await this.exec(['wg', 'setconf', spec.ifname, file]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // ------------------------------------------------------------------ teardown and supervision

  /** Stops the process / deletes the link, whatever is there. Leaves the record. */
  private async teardown(t: Tunnel): Promise<void> {
    this.uapi.get(t.ifname)?.close();
    this.uapi.delete(t.ifname);
    t.generation++;
    t.applied = null;
    t.observed = {};
    const proc = t.proc;
    if (proc) {
      await this.stopProcess(proc);
      t.proc = null;
      if (proc.running) throw new CommandError(proc.argv, 137, `pid ${proc.pid} survived SIGKILL`);
      await this.removeStaleSocket(t.ifname);
    }
    if (t.kind === 'kernel') await this.exec(['ip', 'link', 'del', t.ifname], { allowFail: true });
  }

  private async stopProcess(proc: WgProcess): Promise<void> {
    proc.stopping = true;
    if (!proc.running) return;
    proc.signal('SIGTERM');
    const r = await Promise.race([proc.exited.then(() => 'exited'), sleep(this.stopGraceMs).then(() => 'timeout')]);
    if (r === 'timeout' && proc.running) {
      this.log.warn({ pid: proc.pid }, 'wireguard-go ignored SIGTERM: SIGKILL');
      proc.signal('SIGKILL');
      await Promise.race([proc.exited, sleep(5000)]);
    }
  }

  /** After our process died by SIGKILL its socket stays; remove it unless something answers on it. */
  private async removeStaleSocket(ifname: string): Promise<void> {
    const sock = this.socketPath(ifname);
    if (existsSync(sock) && !(await canConnect(sock))) {
      try {
        unlinkSync(sock);
      } catch {
        // gone meanwhile
      }
    }
  }

  private onExit(t: Tunnel, proc: WgProcess): void {
    if (proc.stopping || this.closed || t.proc !== proc || this.tunnels.get(t.ifname) !== t) return;
    const err = proc.exitError();
    this.log.warn({ ifname: t.ifname, pid: proc.pid, err: err.message }, 'wireguard-go exited unexpectedly');
    t.proc = null;
    t.applied = null;
    t.generation++;
    void this.removeStaleSocket(t.ifname);
    if (this.clock.now() - proc.startedAt >= this.stableMs) t.backoffMs = this.backoff.initial;
    this.scheduleRestart(t, 'process exited');
  }

  private scheduleRestart(t: Tunnel, why: string): void {
    if (this.closed || t.restartTimer !== null) return;
    const delay = t.backoffMs;
    t.backoffMs = Math.min(t.backoffMs * 2, this.backoff.max);
    this.log.info({ ifname: t.ifname, delayMs: delay, why }, 'tunnel restart scheduled');
    t.restartTimer = this.clock.setTimeout(() => {
      t.restartTimer = null;
      void this.locked(async () => {
        if (this.closed || this.tunnels.get(t.ifname) !== t || this.alive(t)) return;
        try {
          await this.teardown(t);
          await this.bringUp(t, t.desired);
          t.restarts++;
        } catch (e) {
          this.log.warn({ ifname: t.ifname, err: (e as Error).message }, 'tunnel restart failed');
          this.scheduleRestart(t, 'restart failed');
        }
      }).catch(() => undefined);
    }, delay);
  }

  private cancelRestart(t: Tunnel): void {
    if (t.restartTimer !== null) this.clock.clearTimeout(t.restartTimer);
    t.restartTimer = null;
  }

  // ------------------------------------------------------------------ helpers

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Runs argv; a failure's message and stderr have every key we know replaced. */
  private async exec(argv: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    try {
      return await this.runner.run(argv, opts);
    } catch (e) {
      const secrets = secretsOf([...this.tunnels.values()].flatMap((t) => [t.desired, t.applied]));
      if (e instanceof CommandError) {
        throw new CommandError(
          e.argv.map((a) => redactSecrets(a, secrets)),
          e.exitCode,
          redactSecrets(e.stderr, secrets),
        );
      }
      throw new Error(redactSecrets(String((e as Error)?.message ?? e), secrets));
    }
  }
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      s.destroy();
      resolve(false);
    });
  });
}

export function createLinuxTunnels(opts: LinuxTunnelOptions = {}): LinuxTunnels {
  return new LinuxTunnels(opts);
}
