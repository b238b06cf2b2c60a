// The leak counter of the leak benchmarks: nftables in the lab's isp
// namespace counts every packet that arrives from the router's WAN for a
// tunnel destination (any protocol: SYN, data, FIN, RST, UDP, ICMP), before
// anything else the isp does with it. Counted by kind, so a leak says what it
// was (a client's new connection, or a reset the router made).
import type { Lab } from '../lab/lab.js';
import { sleep } from './proc.js';

const TABLE = 'bench_wan_leak';
const KINDS = ['all', 'tcp_syn', 'tcp_rst', 'tcp_other', 'udp', 'icmp', 'other'] as const;
export type LeakCounts = Record<(typeof KINDS)[number], number>;

/** Installs the counter for packets from the router's WAN (`iifs`: the isp's ends of its links) to `dsts` (addresses of either family). */
export async function installWanLeakCounter(lab: Lab, dsts: readonly string[], iifs: readonly string[] = [lab.ifaces.isp.router]): Promise<void> {
  const v4 = dsts.filter((d) => !d.includes(':'));
  const v6 = dsts.filter((d) => d.includes(':'));
  const match = [v4.length ? `ip daddr { ${v4.join(', ')} }` : null, v6.length ? `ip6 daddr { ${v6.join(', ')} }` : null].filter((x): x is string => x !== null);
  const rules: string[] = [];
  for (const m of match) {
    const base = `iifname { ${iifs.map((i) => `"${i}"`).join(', ')} } ${m}`;
    rules.push(
      `${base} counter comment "all"`,
      `${base} tcp flags & (syn | ack) == syn counter comment "tcp_syn"`,
      `${base} tcp flags & rst == rst counter comment "tcp_rst"`,
      `${base} tcp flags & (syn | rst) == 0 counter comment "tcp_other"`,
      `${base} meta l4proto udp counter comment "udp"`,
      `${base} meta l4proto { icmp, ipv6-icmp } counter comment "icmp"`,
      `${base} meta l4proto != { tcp, udp, icmp, ipv6-icmp } counter comment "other"`,
    );
  }
  const text = [`table inet ${TABLE}`, `delete table inet ${TABLE}`, `table inet ${TABLE} {`, '\tchain c {', '\t\ttype filter hook prerouting priority -300; policy accept;', ...rules.map((r) => `\t\t${r}`), '\t}', '}', ''].join('\n');
  const r = await lab.exec(lab.ns.isp, ['nft', '-f', '-'], { input: text });
  if (r.code !== 0) throw new Error(`the WAN leak counter: ${r.stderr.trim()}`);
}

/** The counts so far, by kind. */
export async function readWanLeaks(lab: Lab): Promise<LeakCounts> {
  const r = await lab.exec(lab.ns.isp, ['nft', 'list', 'chain', 'inet', TABLE, 'c']);
  if (r.code !== 0) throw new Error(`reading the WAN leak counter: ${r.stderr.trim()}`);
  const out = Object.fromEntries(KINDS.map((k) => [k, 0])) as LeakCounts;
  for (const m of r.stdout.matchAll(/counter packets (\d+) bytes \d+ comment "(\w+)"/g)) out[m[2] as keyof LeakCounts] += Number(m[1]);
  return out;
}

export function leakDelta(a: LeakCounts, b: LeakCounts): LeakCounts {
  return Object.fromEntries(KINDS.map((k) => [k, b[k] - a[k]])) as LeakCounts;
}

/** "0", or "5 (3 TCP resets, 2 new TCP connections)". */
export function describeLeaks(c: LeakCounts): string {
  if (c.all === 0) return '0';
  const parts = [
    [c.tcp_syn, 'new TCP connection'],
    [c.tcp_rst, 'TCP reset'],
    [c.tcp_other, 'other TCP'],
    [c.udp, 'UDP'],
    [c.icmp, 'ICMP'],
    [c.other, 'other'],
  ].filter(([n]) => (n as number) > 0).map(([n, w]) => `${n} ${w}${n === 1 ? '' : 's'}`);
  return `${c.all} (${parts.join(', ')})`;
}

/** Kills what TCP sockets to the web server `ns` still has (ss -K) and waits until only TIME-WAIT ones are left (at most 5 s). */
export async function quiesce(L: Lab, ns: string): Promise<void> {
  const dst = `dst ${L.addr.web.v4}`;
  await L.exec(ns, ['ss', '-K', '-t', dst]);
  const end = Date.now() + 5000;
  while (Date.now() < end) {
    const r = await L.exec(ns, ['ss', '-H', '-t', '-n', 'state', 'connected', 'exclude', 'time-wait', dst]);
    if (r.stdout.trim() === '') return;
    await sleep(100);
  }
}
