// Per-app split (issue 16) in the ruleset: sockets of programs in a pinned
// cgroup v2 take that cgroup's path, ahead of the rules, and their DNS goes
// to the path's own resolver. Pure: plan.ts calls these; daemon/apps/ knows
// the cgroups.
//
// How nft names a cgroup: `socket cgroupv2 level N "PATH"` is parsed by
// stat("/sys/fs/cgroup/" + PATH) when the rule is loaded (nftables
// src/datatype.c, cgroupv2_type_parse; a number is not accepted, 1.0.6), and
// the kernel compares the inode (the cgroup's id) with the id of the socket's
// cgroup's ancestor at level N (the root is level 0). So PATH is the cgroup's
// directory relative to /sys/fs/cgroup: `splitwan.slice/via-gw1` where
// /sys/fs/cgroup is the cgroup2 mount (unified layout),
// `unified/splitwan.slice/via-gw1` on a hybrid layout; N counts levels from
// the cgroup2 root. A cgroup made again has a new id: the ruleset is
// rendered and loaded again after it exists (the id is part of the input).
import type { PathName } from '../../config/types.js';
import type { PlannedGateway, PlannedLink } from './plan.js';

/** A pinned cgroup as daemon/apps/ knows it. */
export interface AppCgroupInput {
  path: PathName;
  /** The cgroup's directory relative to /sys/fs/cgroup (what nft stats). */
  nftPath: string;
  /** Its depth below the cgroup2 root (1 for `splitwan.slice`). */
  level: number;
  /** The inode (cgroup id) it had when found: a new one means the cgroup was made again and the rules must be loaded again. */
  id: number;
  /** Ports of the path's own resolver on 127.0.0.1 and ::1; null: none on that family (that family's DNS is refused). */
  dns4: number | null;
  dns6: number | null;
}

/** One pinned cgroup in the plan. */
export interface PlannedAppPin extends AppCgroupInput {
  /** The path's mark; null: refused now (the pinned gateway or link is down). */
  mark: number | null;
}

/** The marks of the pins, given health: a gateway or link that is down refuses (it never leaks, never falls back). */
export function planAppPins(apps: readonly AppCgroupInput[], marks: { breakout: number; tunnel: number; gateways: readonly PlannedGateway[]; links: readonly PlannedLink[] }, healthy: (name: string) => boolean): PlannedAppPin[] {
  return apps.map((a) => {
    let mark: number | null = null;
    if (a.path === 'breakout') mark = marks.breakout;
    else if (a.path === 'tunnel') mark = marks.tunnel; // the `active` map: failovers, the kill switch
    else if (a.path.startsWith('gw:')) {
      const name = a.path.slice(3);
      const g = marks.gateways.find((x) => x.name === name);
      mark = g && healthy(name) ? g.mark : null;
    } else if (a.path.startsWith('link:')) {
      const name = a.path.slice(5);
      const l = marks.links.find((x) => x.name === name);
      mark = l && healthy(name) ? l.mark : null;
    }
    return { ...a, mark };
  });
}

const hex = (n: number): string => `0x${n.toString(16)}`;
/** nft's quoted string has no escapes: daemon/apps/ leaves out cgroups whose names need them. */
export const NFT_SAFE_CGROUP = /^[A-Za-z0-9_.@:+,=~-]+(\/[A-Za-z0-9_.@:+,=~-]+)*$/;
const match = (p: PlannedAppPin): string => `socket cgroupv2 level ${p.level} "${p.nftPath}"`;

/**
 * The `apps` chain, jumped to for a new flow's first packet of this machine's
 * own traffic before the rules: a pinned socket's flow gets its path's mark
 * (saved in conntrack after, like a rule's), or is refused. DNS is left to
 * the nat chain below (a path mark would have the kill switch refuse it
 * before it reaches the path's resolver).
 */
export function appMarkChain(pins: readonly PlannedAppPin[]): string[] {
  const L = [`\tchain apps {`, `\t\tmeta l4proto { tcp, udp } th dport 53 return`];
  for (const p of pins) {
    L.push(`\t\t# ${p.path}${p.mark === null ? ' (down: refused)' : ''}`);
    L.push(p.mark === null ? `\t\t${match(p)} jump reject_flow` : `\t\t${match(p)} meta mark set ${hex(p.mark)} return`);
  }
  L.push(`\t}`);
  return L;
}

/**
 * `apps_dns`: a pinned program's DNS (to any server, the local stub too)
 * goes to its path's resolver, ahead of host mode's redirect (dns_out, -100).
 * A family without a listener is refused in the route chain (`apps_dns_guard` lines).
 */
export function appDnsChain(pins: readonly PlannedAppPin[]): string[] {
  const L = [`\tchain apps_dns {`, `\t\ttype nat hook output priority -110; policy accept;`];
  for (const p of pins) {
    if (p.dns4 !== null) L.push(`\t\t${match(p)} meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 dnat ip to 127.0.0.1:${p.dns4}`);
    if (p.dns6 !== null) L.push(`\t\t${match(p)} meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 dnat ip6 to [::1]:${p.dns6}`);
  }
  L.push(`\t}`);
  return L;
}

/**
 * Lines of the `out` chain (route hook) before anything returns DNS or
 * loopback traffic: a pinned program's DNS of a family its path's resolver
 * does not listen on is refused (it would otherwise get the rules' answers).
 */
export function appDnsGuardLines(pins: readonly PlannedAppPin[]): string[] {
  const L: string[] = [];
  for (const p of pins) {
    if (p.dns4 === null) L.push(`\t\t${match(p)} meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 jump reject_flow`);
    if (p.dns6 === null) L.push(`\t\t${match(p)} meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 jump reject_flow`);
  }
  return L;
}

/** The chains these add (rulesetObjects). */
export function appChains(pins: readonly PlannedAppPin[] | undefined): string[] {
  return pins?.length ? ['apps', 'apps_dns'] : [];
}
