// The one wiring module: builds the daemon from its parts and runs it until
// SIGTERM/SIGINT. Everything OS-facing is created here and nowhere else.
//
// Start: remove what a crashed run left (stateless), bring every gateway's
// tunnel up, render and apply the data plane, then follow config reloads and
// the default route. Stop: tunnels down, table/rules/routes removed, so the
// machine is as it was.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { EventEmitter } from 'node:events';
import type { LoadedConfig } from '../config/load.js';
import { systemClock, type Logger } from '../config/logger.js';
import { ConfigStore } from '../config/store.js';
import type { GatewayConfig } from '../config/types.js';
import { ListRefresher } from '../config/lists/refresher.js';
import { linuxRunner, type Runner } from './exec-linux.js';
import { Dataplane } from './dataplane/dataplane.js';
import { NftSession } from './dataplane/nft-session-linux.js';
import { MARK_BREAKOUT, planDataplane } from './dataplane/plan.js';
import { LinuxRouter } from './dataplane/router-linux.js';
import { WanWatcher } from './dataplane/wan-watch-linux.js';
import { cleanupTunnels } from './tunnel/orphans-linux.js';
import { createLinuxTunnels } from './tunnel/tunnels-linux.js';
import type { TunnelSpec } from './tunnel/types.js';

export const DEFAULT_MTU = 1420;

/** Resolves an endpoint host name through the breakout resolvers (plain ones), else the system's. */
async function resolveEndpoint(host: string, config: LoadedConfig['config']): Promise<string> {
  if (isIP(host)) return host;
  const r = new Resolver({ timeout: config.dns.timeoutMs, tries: 2 });
  if (config.breakout.dns !== 'auto') {
    const plain = config.breakout.dns.filter((u) => u.kind === 'plain');
    if (plain.length) r.setServers(plain.map((u) => (u.kind === 'plain' ? (isIP(u.host) === 6 ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`) : '')));
  }
  const v4 = await r.resolve4(host).catch(() => [] as string[]);
  if (v4[0]) return v4[0];
  const v6 = await r.resolve6(host).catch(() => [] as string[]);
  if (v6[0]) return v6[0];
  throw new Error(`cannot resolve gateway endpoint ${host}`);
}

export async function tunnelSpec(g: GatewayConfig, config: LoadedConfig['config']): Promise<TunnelSpec> {
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
      endpoint: { host: await resolveEndpoint(peer.endpoint!.host, config), port: peer.endpoint!.port },
      allowedIPs: peer.allowedIPs,
      ...(peer.persistentKeepalive !== undefined ? { persistentKeepalive: peer.persistentKeepalive } : {}),
    },
  };
}

/**
 * Until the health monitor exists, the active gateway is the preferred one
 * (lowest priority value, then config order).
 */
export function preferredGateway(config: LoadedConfig['config']): string | null {
  const gws = [...config.tunnel.gateways].sort((a, b) => a.priority - b.priority);
  return gws[0]?.name ?? null;
}

export interface RunOptions {
  configPath: string;
  logger: Logger;
  signals: Pick<EventEmitter, 'on' | 'off' | 'once'>;
  runner?: Runner;
}

/** Removes everything splitwan installs; safe to run any time (`splitwan cleanup`, start, stop). */
export async function cleanupAll(run: Runner, logger: Logger): Promise<void> {
  const session = new NftSession(logger);
  try {
    await new LinuxRouter(run, session, logger).cleanup();
  } finally {
    session.close();
  }
  await cleanupTunnels(run, logger);
}

/** Runs the daemon; resolves when it has stopped cleanly. */
export async function runDaemon(o: RunOptions): Promise<void> {
  const log = o.logger;
  const run = o.runner ?? linuxRunner;
  const clock = systemClock;
  const store = await ConfigStore.open({ file: o.configPath, logger: log.child({ module: 'config' }), signals: o.signals });
  await cleanupAll(run, log.child({ module: 'cleanup' }));

  const session = new NftSession(log.child({ module: 'nft' }));
  const router = new LinuxRouter(run, session, log.child({ module: 'router' }));
  const tunnels = createLinuxTunnels({ runner: run, logger: log, clock });
  const dataplane = new Dataplane({ router, clock, logger: log.child({ module: 'dataplane' }) });
  const lists = new ListRefresher(store, log.child({ module: 'lists' }));
  let specs: TunnelSpec[] = [];
  let wan: string | null = null;
  let wanWatcher: WanWatcher | null = null;

  const plan = (loaded: LoadedConfig) =>
    planDataplane({
      config: loaded.config,
      listCidrs: new Map([...loaded.lists].map(([n, l]) => [n, l.cidrs.map((c) => c.cidr)])),
      // No default route yet (auto mode, cable out): nothing can leave via the
      // breakout anyway; 'lo' keeps the ruleset valid until the watcher reports one.
      wan: wan ?? 'lo',
      active: preferredGateway(loaded.config),
      healthy: () => true,
      dnsPort: null,
    });

  const applyAll = async (loaded: LoadedConfig): Promise<void> => {
    const c = loaded.config;
    if (c.breakout.interface !== 'auto') wan = c.breakout.interface;
    specs = await Promise.all(c.tunnel.gateways.map((g) => tunnelSpec(g, c)));
    await tunnels.set(specs);
    await dataplane.apply(plan(loaded));
  };

  let stopping = false;
  let tick: NodeJS.Timeout | null = null;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      void (async () => {
        if (tick) clearInterval(tick);
        store.close();
        lists.stop();
        wanWatcher?.stop();
        dataplane.stop();
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
        void dataplane.apply(plan(store.current)).catch((e: unknown) => log.error({ err: e }, 'following the default route failed'));
      });
      wan = (await wanWatcher.start()).ifname;
    }
    await applyAll(store.current);
    log.info({ mode: c.mode, wan, gateways: c.tunnel.gateways.map((g) => g.name), active: preferredGateway(c) }, 'splitwan running');
  } catch (e) {
    log.error({ err: e }, 'start failed; removing what was installed');
    await tunnels.close().catch(() => {});
    await router.cleanup().catch(() => {});
    session.close();
    store.close();
    throw e;
  }

  store.subscribe(async (_prev, next) => {
    await applyAll(next);
  });
  store.start();
  dataplane.start();
  void lists.start().catch((e: unknown) => log.warn({ err: e }, 'list refresh failed'));
  // Tunnels repair what status() sees broken (a deleted link, a roamed endpoint).
  tick = setInterval(() => {
    void tunnels
      .status()
      .then(() => tunnels.set(specs))
      .catch((e: unknown) => log.warn({ err: e }, 'tunnel repair failed'));
  }, 3000);
  await stopped;
}
