// The real operating system behind DaemonDeps: ip, nft, wg, conntrack,
// wireguard-go, marked sockets. Everything that changes the kernel's state
// comes from here; createDaemon only calls these.
import { readFile } from 'node:fs/promises';
import type { Clock, Logger } from '../lib/logger.js';
import { fastPathOr, nativeTurnedOff } from '../sys/native-fallback.js';
import { trimResident } from '../sys/resident-trim-linux.js';
import { nativeSendDatagram, type SendDatagram } from '../sys/udp-sendto-linux.js';
import { groupIdOf } from './control/group.js';
import { assertNoOtherDaemon } from './control/server.js';
import type { DaemonDeps } from './deps.js';
import { linuxRunner, type Runner } from './exec-linux.js';
import { LinuxDamageWatch } from './dataplane/damage-watch-linux.js';
import { IpMonitor } from './dataplane/ip-monitor-linux.js';
import { openNft } from './dataplane/libnft-linux.js';
import { removeStaleHomes } from './dataplane/nft-session-linux.js';
import { LinuxRouter } from './dataplane/router-linux.js';
import { WanWatcher } from './dataplane/wan-watch-linux.js';
import { linuxPing } from './health/ping-linux.js';
import { cleanupResolved, type ResolvedParts } from './host-resolved.js';
import { parseIpAddrs, parseIpRoutes } from './os-parse.js';
import { RESOLV_CONF_FILES } from './resolv-conf.js';
import { dnsLinkFor } from './resolved-link-linux.js';
import { LinuxResolvedApi } from './resolved-linux.js';
import { watchSleep } from './sleep-watch-linux.js';
import { LinuxCgroups } from './apps/cgroups-linux.js';
import { originalDstFor, pathSocketsFor } from './sockets-linux.js';
import { linuxTagLookup } from './tag-lookup-linux.js';
import { cleanupTunnels } from './tunnel/orphans-linux.js';
import { createLinuxTunnels } from './tunnel/tunnels-linux.js';

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
  // A systemd-resolved takeover a killed run left (a TUN link goes with the process; the link made with ip
  // without native code, and one an older layout put on another link, do not). Silent about which link kind.
  await cleanupResolved(resolvedParts(run, logger, false), logger);
}

/**
 * The D-Bus client of systemd-resolved (and NetworkManager) and splitwan's DNS link: a TUN device, or a link
 * made with ip without native code (daemon/resolved-link-linux.ts; `sayWhich`: the log says once why).
 */
function resolvedParts(run: Runner, logger: Logger, sayWhich = true): ResolvedParts {
  const log = logger.child({ module: 'resolved' });
  return { api: new LinuxResolvedApi({ logger: log }), link: dnsLinkFor({ runner: run, logger: log, report: sayWhich ? { logger: log } : {} }) };
}

/** sendto(2) for upstream and probe datagrams; without koffi or with SPLITWAN_NATIVE=off, dgram's send (said once). */
function sendDatagramFor(logger: Logger): { sendDatagram?: SendDatagram } {
  const send = fastPathOr({ what: 'upstream datagrams: sendto on the socket', instead: "dgram's send", report: { logger }, turnedOff: null }, nativeSendDatagram, null);
  return send === null ? {} : { sendDatagram: send };
}

export function linuxDeps(o: { logger: Logger; clock: Clock; runner?: Runner; setLogLevel?: (level: string) => void; version?: string }): DaemonDeps {
  const run = o.runner ?? linuxRunner;
  const log = o.logger;
  return {
    clock: o.clock,
    logger: log,
    ...(o.setLogLevel ? { setLogLevel: o.setLogLevel } : {}),
    ...(o.version !== undefined ? { version: o.version } : {}),
    assertNoOtherDaemon,
    cleanup: () => cleanupAll(run, log.child({ module: 'cleanup' })),
    openNft: () => openNft(log.child({ module: 'nft' })),
    router: (nft) => new LinuxRouter(run, nft, log.child({ module: 'router' })),
    damageWatch: () => new LinuxDamageWatch(log.child({ module: 'dataplane' }), o.clock),
    tunnels: () => createLinuxTunnels({ runner: run, logger: log, clock: o.clock }),
    // The path sockets say once (through this logger) when they read the dgram fd the deprecated way,
    // or that they are source-port paths (no native code: SPLITWAN_NATIVE=off, no koffi build).
    pathSockets: pathSocketsFor({ logger: log.child({ module: 'sockets' }) }),
    originalDst: originalDstFor(run, { logger: log.child({ module: 'proxy' }) }),
    ping: linuxPing(run),
    links: async () => parseIpAddrs((await run.run(['ip', '-j', 'addr', 'show'])).stdout),
    resolvConfTexts: () => Promise.all(RESOLV_CONF_FILES.map((f) => readFile(f, 'utf8').catch(() => null))),
    defaultRoutes: async () => {
      const [r4, r6] = await Promise.all([4, 6].map((f) => run.run(['ip', '-j', `-${f}`, 'route', 'show', 'table', 'main', 'default'], { allowFail: true })));
      return [
        ...parseIpRoutes(r4!.stdout || '[]').map((r) => ({ ...r, family: 4 as const })),
        ...parseIpRoutes(r6!.stdout || '[]').map((r) => ({ ...r, family: 6 as const })),
      ];
    },
    readDeviceFiles: (paths) => Promise.all(paths.map((f) => readFile(f, 'utf8').catch(() => null))),
    dropFlows: async (mark, mask) => {
      await run.run(['conntrack', '-D', '--mark', `0x${mark.toString(16)}/0x${mask.toString(16)}`], { allowFail: true }).catch(() => undefined);
    },
    tagLookup: linuxTagLookup(run),
    watchWan: async (onChange) => {
      const w = new WanWatcher(run, log.child({ module: 'wan' }), o.clock, onChange);
      return { state: await w.start(), watcher: w };
    },
    watchAddresses: (onChange) => {
      const m = new IpMonitor(['address'], log.child({ module: 'lan' }), o.clock, onChange);
      m.start();
      return m;
    },
    resolved: () => resolvedParts(run, log),
    groupId: async (group) => groupIdOf((await readFile('/etc/group', 'utf8').catch(() => '')), group),
    watchSleep: (onChange) => watchSleep({ logger: log.child({ module: 'sleep' }), clock: o.clock }, onChange),
    // Per-app split (issue 16); SPLITWAN_CGROUP_ROOT: another parent for its cgroups (the tests' per-pid one).
    cgroups: new LinuxCgroups(),
    ...(process.env.SPLITWAN_CGROUP_ROOT ? { cgroupRoot: process.env.SPLITWAN_CGROUP_ROOT } : {}),
    // madvise through koffi: not with SPLITWAN_NATIVE=off (the daemon then keeps start-up's pages resident).
    ...(nativeTurnedOff() === null ? { trimResident } : {}),
    ...sendDatagramFor(log.child({ module: 'dns' })),
  };
}
