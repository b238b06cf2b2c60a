// What the daemon needs from the operating system, as one object: the
// composition root (createDaemon) gets it, `linuxDeps()` makes the real one,
// and unit tests pass fakes (FakeRouter, FakeTunnels, FakePathSockets, a
// FakeNft) to run the whole wiring without root.
import type net from 'node:net';
import type { LoadDeps } from '../config/load.js';
import type { Clock, Logger } from '../lib/logger.js';
import type { DamageWatch } from './dataplane/damage-watch.js';
import type { NftExec } from './dataplane/nft-session-linux.js';
import type { Router } from './dataplane/router-linux.js';
import type { ResolvedParts } from './host-resolved.js';
import type { CgroupOps } from './apps/cgroups.js';
import type { IpAddrLink } from './os-parse.js';
import type { PathSockets } from './sockets.js';
import type { TagLookup } from './tag-lookup-linux.js';
import type { TunnelBackend } from './tunnel/types.js';

import type { WanState } from './dataplane/wan-watch-linux.js';
import type { ResidentTrim } from '../sys/resident-trim-linux.js';
import type { SendDatagram } from '../sys/udp-sendto-linux.js';

export type { WanState };

export interface Watcher {
  stop(): void;
}

export interface DaemonDeps {
  clock: Clock;
  logger: Logger;
  /** Changes the logger's level (its children's too): `log.level` on reload. */
  setLogLevel?: (level: string) => void;
  /** For status: the package version. */
  version?: string;
  /** Reads the config and its files (tests: the real file system is fine). */
  loadDeps?: LoadDeps;

  /** Refuses to start when another daemon answers on the control socket. */
  assertNoOtherDaemon(socket: string): Promise<void>;
  /** Removes everything a splitwan left installed (a crash): table, rules, routes, tunnels, temp files. */
  cleanup(): Promise<void>;
  /** The nftables session (ruleset, map flips, tag elements); closed at stop. */
  openNft(): NftExec & { close(): void };
  router(nft: NftExec): Router;
  /** Tells the data plane when another program changed its kernel state (nft/ip monitor), so the repair follows at once. */
  damageWatch(): DamageWatch;
  tunnels(): TunnelBackend;
  /** Sockets on a path (SO_MARK). */
  pathSockets: PathSockets;
  /** The destination a redirected connection was meant for (the proxy). */
  originalDst(socket: net.Socket): { address: string; port: number } | null | Promise<{ address: string; port: number } | null>;
  /** One ICMP echo through a path's mark: the RTT in ms, or throws. */
  ping(target: string, mark: number, timeoutMs: number): Promise<number>;
  /** `ip -j addr`: the interfaces and their addresses. */
  links(): Promise<IpAddrLink[]>;
  /** The system's resolv.conf files (null: missing), for `breakout.dns: auto`. */
  resolvConfTexts(): Promise<(string | null)[]>;
  /** main's default routes (both families): a WAN link's own next hop (breakout.links without gateway:). Unset: none known. */
  defaultRoutes?(): Promise<{ family: 4 | 6; dev?: string; gateway?: string }[]>;
  /** Device-name files (DHCP leases, /etc/ethers) for rules' devices:; null for a file that cannot be read. */
  readDeviceFiles(paths: readonly string[]): Promise<(string | null)[]>;
  /** Drops the conntrack entries whose mark & mask is `mark` (flows of a path that went away). */
  dropFlows(mark: number, mask: number): Promise<void>;
  /** The kernel's tag on an address (explain). */
  tagLookup: TagLookup;
  /** Follows the default route: the state now, then every change. */
  watchWan(onChange: (s: WanState) => void): Promise<{ state: WanState; watcher: Watcher }>;
  /** Calls `onChange` when any interface's addresses change. */
  watchAddresses(onChange: () => void): Watcher;
  /**
   * systemd-resolved's D-Bus API and the link splitwan owns for the takeover
   * (host mode on a laptop, daemon/host-resolved.ts): a new pair each call.
   * Absent: nothing to take over (host mode listens on 127.0.0.53).
   */
  resolved?: () => ResolvedParts;
  /** control.group's gid (/etc/group); null: no such group. Absent: no read-only control socket. */
  groupId?: (group: string) => Promise<number | null>;
  /** logind's PrepareForSleep: `true` before a suspend, `false` after the resume. Absent: no bus to listen on. */
  watchSleep?: (onChange: (sleeping: boolean) => void) => Watcher;
  /** cgroup v2 and /proc for per-app split (issue 16: daemon/apps/). Absent: no per-app split. */
  cgroups?: CgroupOps;
  /**
   * Drops the resident pages of read-only file mappings (sys/resident-trim-linux.ts; issue 17: a router's
   * RSS); throws when it cannot. Absent: nothing trimmed (tests; no native code).
   */
  trimResident?: () => ResidentTrim;
  /** Upstream and probe datagrams sent with sendto(2) on the socket's fd (sys/udp-sendto-linux.ts). Absent: dgram's send. */
  sendDatagram?: SendDatagram;
  /** Where per-app split makes its cgroups, under the cgroup2 root (default splitwan.slice). */
  cgroupRoot?: string;
}
