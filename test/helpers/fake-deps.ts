// DaemonDeps over fakes: the whole composition root runs in a unit test,
// without root and without touching the machine. The kernel is FakeRouter
// (rendered ruleset, rules, routes, the active map), tunnels are FakeTunnels,
// path sockets are real loopback sockets (FakePathSockets), probes are
// `icmp` answered by a fake ping per mark. Every OS call can be held at a
// gate, so a test can stop the daemon in the middle of any step.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock, Logger } from '../../lib/logger.js';
import { systemClock } from '../../lib/logger.js';
import type { DaemonDeps, WanState } from '../../daemon/deps.js';
import { FakeRouter } from '../../daemon/dataplane/router-fake.js';
import { FakeNftSession } from '../../daemon/dataplane/nft-fake.js';
import { FakeDamageWatch } from '../../daemon/dataplane/damage-watch.js';
import type { DataplanePlan } from '../../daemon/dataplane/plan.js';
import { FakePathSockets } from '../../daemon/sockets.js';
import { FakeTunnels } from '../../daemon/tunnel/tunnels-fake.js';
import { cleanupResolved } from '../../daemon/host-resolved.js';
import { FakeDnsLink, type FakeResolved } from '../../daemon/resolved-fake.js';
import { FakeCgroups } from '../../daemon/apps/cgroups-fake.js';
import type { TunnelSpec } from '../../daemon/tunnel/types.js';
import { freePort } from './dns.js';

/** A logger that keeps what was logged. */
export function recordingLogger(): Logger & { lines: { level: string; msg: string; obj: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const mk = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg: msg ?? '', obj: obj as Record<string, unknown> });
  const l = { lines, trace: mk('trace'), debug: mk('debug'), info: mk('info'), warn: mk('warn'), error: mk('error'), child: () => l };
  return l;
}

/** A point an OS call waits at while the gate is closed. */
export class Gate {
  private waiters: (() => void)[] = [];
  private open = true;
  /** Resolves when a call reached the closed gate. */
  private reached: (() => void) | null = null;
  close(): Promise<void> {
    this.open = false;
    return new Promise((r) => (this.reached = r));
  }
  release(): void {
    this.open = true;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  async pass(): Promise<void> {
    if (this.open) return;
    this.reached?.();
    this.reached = null;
    await new Promise<void>((r) => this.waiters.push(r));
  }
}

export type Step = 'cleanup' | 'tunnels' | 'router' | 'links';

export interface FakeOs {
  deps: DaemonDeps;
  router: FakeRouter | null;
  tunnels: FakeTunnels | null;
  nft: FakeNftSession | null;
  damage: FakeDamageWatch;
  logger: ReturnType<typeof recordingLogger>;
  /** Gates for the OS calls of each step. */
  gates: Record<Step, Gate>;
  /** Marks whose probe fails (the gateway is dark). */
  dark: Set<number>;
  /** Flow drops asked for: `mark/mask`. */
  dropped: string[];
  /** Plans whose set() throws (to fail an apply). */
  failSet: ((p: DataplanePlan) => Error | null) | null;
  failTunnels: ((specs: TunnelSpec[]) => Error | null) | null;
  /** Calls in the order they happened (what ran, not how: for orderings). */
  events: string[];
  /** Device-name files (leases, ethers) by path, for rules' devices:. */
  deviceFiles: Map<string, string>;
  cleanups: number;
  wan: { set(s: WanState): void };
  /** The resolved model given to fakeOs (null: deps.resolved is absent, as without resolved). */
  resolved: FakeResolved | null;
  /** Each DNS link the daemon was handed (deps.resolved()), in order. */
  dnsLinks: FakeDnsLink[];
  /** logind's PrepareForSleep, as the daemon would get it; `watching` while it listens. */
  sleep: { emit(sleeping: boolean): void; watching: boolean };
  /** cgroup v2 and /proc as per-app split sees them. */
  cgroups: FakeCgroups;
}

export function fakeOs(o: { clock?: Clock; logger?: ReturnType<typeof recordingLogger>; resolved?: FakeResolved } = {}): FakeOs {
  const clock = o.clock ?? systemClock;
  const logger = o.logger ?? recordingLogger();
  const gates: Record<Step, Gate> = { cleanup: new Gate(), tunnels: new Gate(), router: new Gate(), links: new Gate() };
  let wanCb: ((s: WanState) => void) | null = null;
  let sleepCb: ((sleeping: boolean) => void) | null = null;
  const os: FakeOs = {
    deviceFiles: new Map(),
    router: null,
    tunnels: null,
    nft: null,
    damage: new FakeDamageWatch(),
    logger,
    gates,
    dark: new Set(),
    dropped: [],
    failSet: null,
    failTunnels: null,
    events: [],
    cleanups: 0,
    wan: { set: (s) => wanCb?.(s) },
    resolved: o.resolved ?? null,
    dnsLinks: [],
    sleep: { emit: (b) => sleepCb?.(b), watching: false },
    cgroups: new FakeCgroups(),
    deps: undefined as unknown as DaemonDeps, // set below
  };
  os.deps = {
    clock,
    logger,
    version: 'test',
    assertNoOtherDaemon: async () => {
      os.events.push('assertNoOtherDaemon');
    },
    cleanup: async () => {
      os.events.push('cleanup');
      await gates.cleanup.pass();
      // As cleanupAll does: a stale takeover of systemd-resolved is reverted.
      if (o.resolved) await cleanupResolved({ api: o.resolved, link: new FakeDnsLink(o.resolved) }, logger);
      os.cleanups++;
    },
    openNft: () => {
      os.nft = new FakeNftSession(clock);
      return os.nft;
    },
    router: () => {
      const r = new FakeRouter();
      os.router = r;
      const set = r.set.bind(r);
      r.set = async (p) => {
        os.events.push('router.set');
        await gates.router.pass();
        const e = os.failSet?.(p);
        if (e) throw e;
        return set(p);
      };
      const cleanup = r.cleanup.bind(r);
      r.cleanup = async () => {
        os.events.push('router.cleanup');
        await cleanup();
      };
      return r;
    },
    damageWatch: () => os.damage,
    tunnels: () => {
      const t = new FakeTunnels({ clock });
      os.tunnels = t;
      const set = t.set.bind(t);
      t.set = async (specs) => {
        os.events.push('tunnels.set');
        await gates.tunnels.pass();
        const e = os.failTunnels?.(specs);
        if (e) throw e;
        return set(specs);
      };
      const close = t.close.bind(t);
      t.close = async () => {
        os.events.push('tunnels.close');
        await close();
      };
      return t;
    },
    pathSockets: new FakePathSockets(),
    originalDst: () => null,
    ping: async (_target, mark) => {
      if (os.dark.has(mark)) throw new Error(`icmp: no reply (mark 0x${mark.toString(16)} is dark)`);
      return 1;
    },
    links: async () => {
      await gates.links.pass();
      return [];
    },
    resolvConfTexts: async () => [null, null],
    readDeviceFiles: async (paths) => paths.map((p) => os.deviceFiles.get(p) ?? null),
    dropFlows: async (mark, mask) => {
      os.dropped.push(`0x${mark.toString(16)}/0x${mask.toString(16)}`);
    },
    tagLookup: async () => null,
    watchWan: async (onChange) => {
      wanCb = onChange;
      return { state: { ifname: 'wan0', gateway: null, ifname6: null }, watcher: { stop: () => (wanCb = null) } };
    },
    watchAddresses: () => ({ stop: () => undefined }),
    cgroups: undefined as unknown as FakeCgroups, // set below
    watchSleep: (onChange) => {
      sleepCb = onChange;
      os.sleep.watching = true;
      return {
        stop: () => {
          sleepCb = null;
          os.sleep.watching = false;
        },
      };
    },
    ...(o.resolved
      ? {
          resolved: () => {
            const link = new FakeDnsLink(o.resolved!);
            os.dnsLinks.push(link);
            return { api: o.resolved!, link };
          },
        }
      : {}),
  };
  os.deps.cgroups = os.cgroups;
  return os;
}

const key = (): string => randomBytes(32).toString('base64');

export interface ConfigDir {
  dir: string;
  file: string;
  socket: string;
  dnsPort: number;
  /** Writes config.yaml with these gateway names (a wg-quick file each) and extra YAML. */
  write(o?: { gateways?: string[]; extra?: string; rules?: string }): void;
  remove(): void;
}

/**
 * A host-mode config in a temp dir: the resolver on 127.0.0.1 (a free port),
 * the breakout's resolver on loopback (nothing answers: only loopback is
 * ever asked), gateways probed by icmp through the fake ping.
 */
export async function configDir(): Promise<ConfigDir> {
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-daemon-'));
  const dnsPort = await freePort();
  const deadPort = await freePort();
  const cd: ConfigDir = {
    dir,
    file: join(dir, 'config.yaml'),
    socket: join(dir, 'c.sock'),
    dnsPort,
    write(w = {}) {
      const gws = w.gateways ?? ['gw1', 'gw2'];
      for (const g of gws) {
        writeFileSync(join(dir, `${g}.conf`), `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.${10 + gws.indexOf(g)}:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
      }
      writeFileSync(
        cd.file,
        [
          'mode: host',
          'breakout:',
          '  interface: wan0',
          `  dns: [127.0.0.1:${deadPort}]`,
          'dns:',
          `  listen: [127.0.0.1:${dnsPort}]`,
          'control:',
          `  socket: ${cd.socket}`,
          'health:',
          '  interval: 100ms',
          '  timeout: 100ms',
          '  failAfter: 2',
          '  recoverAfter: 2',
          '  failbackHold: 200ms',
          '  probe: [{ kind: icmp, target: 10.64.0.1 }]',
          'tunnel:',
          '  gateways:',
          ...gws.map((g) => `    - { name: ${g}, config: ${g}.conf }`),
          w.rules ?? 'rules:\n  - domains: [stream.test]\n    via: breakout',
          w.extra ?? '',
          '',
        ].join('\n'),
      );
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  cd.write();
  return cd;
}
