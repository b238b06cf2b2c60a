// Transparent proxy benchmark: splitwan's proxy side by side with haproxy
// (`mode tcp`) and sniproxy, and with the least a Node proxy can do, in the
// same run. Two network namespaces this script creates and removes: the
// clients in sw-bpc-<pid>, LAN hosts behind a router; the proxies and the
// backends in sw-bp-<pid>, the router (its "internet": addresses on its
// loopback). A veth pair joins them. Needs root.
//
//  sw-bpc-<pid> (clients)                          sw-bp-<pid> (proxies, backends)
//  wrk           from bpc0 10.77.1.2/24 ─┐
//  idle client   from bpc0 10.77.1.3/24  ├─══veth══ bpl0 10.77.1.1/24
//  iperf3 -c     from bpc0 10.77.1.4/24 ─┘
//  default via 10.77.1.1 (the idle client's and iperf3's source: rules by destination port)
//   ──▶ 10.77.9.2:{5201,8080,9000} ─nft prerouting redirect─▶ splitwan (proxy-child: TransparentProxy, 0.0.0.0:15001) ─┐ SO_MARK 0x1000
//   ──▶ 10.77.1.1:15005/15006/15007 node pipe (proxy-pipe-child: the floor) ─────────────────────────────────────────────┤ dials 10.77.9.2
//   ──▶ 10.77.1.1:15002/15012/15022 haproxy mode tcp, nbthread 1 ───────────────────────────────────────────────────────┤ (splitwan) or
//   ──▶ 10.77.1.1:15004/15014/15024 haproxy mode tcp, its default threads ──────────────────────────────────────────────┤ 10.77.9.3
//   ──▶ 10.77.1.1:15003 sniproxy (proto http: Host bench.example → :8080, fallback → :5201) ─────────────────────────────┤ (the others)
//   ──▶ 10.77.9.3:{5201,8080} (direct: no proxy, the ceiling; routed to the router's own address) ─────────────────────┴─▶ backends
//  backends (in sw-bp-<pid>, 10.77.9.2/32 and 10.77.9.3/32 on its lo): iperf3 -s :5201 (every address),
//  haproxy mode http on 10.77.9.2/.3:8080 answering 200 "ok" itself, proxy-hold-child on 10.77.9.2/.3:9000
//  (accepts and keeps connections).
//
// splitwan is reached the way the daemon is in router mode: the client dials
// the real destination, 10.77.9.2, and the router namespace's nft table
// redirects what arrives on the LAN veth (`iifname "bpl0" meta mark 0 ip
// daddr 10.77.9.2 tcp dport {5201,8080,9000} redirect to :15001`, to
// 10.77.1.1:15001); the proxy, listening on 0.0.0.0:15001 as in router mode,
// reads SO_ORIGINAL_DST, peeks, decides by policy, and dials 10.77.9.2 on a
// socket marked 0x1000 (the breakout, with the daemon's MarkedDialer): a
// local dial, which the prerouting rule never sees (and its mark would skip
// anyway). The others cannot mark their dials, so they (and "direct") use
// 10.77.9.3, where the same backends listen without a redirect. Every side
// crosses the same veth, and the nat table puts every flow in the router
// namespace through conntrack: all sides alike (the client namespace has
// no rules, so no conntrack, for any side). No forwarding: the backends'
// addresses are the router's own.
//
// Why two namespaces: with clients and proxies on one loopback, wrk and
// splitwan's dials both connected from 127.0.0.1 to 127.0.0.2:8080, so their
// 4-tuples (and conntrack entries) collided among tens of thousands of
// TIME_WAIT sockets: SYNs rejected by PAWS (TcpExtPAWSTimewait), each a 1 s
// retransmit for wrk, and conn/s swinging by 40 % from run to run. On a real
// router the client's address is never the router's dial source.
// Why one client address per kind of client: `redirect` maps every
// redirected flow from a client's port X, whatever its destination, to one
// socket 4-tuple (10.77.1.1:15001, client:X). Linux gives each 4-tuple its
// own random TCP timestamp offset, and conntrack keeps a closed flow's
// tuple 120 s: when one address reaches two redirected destinations from
// the same ports (the idle test's :9000, then wrk's :8080), NAT remaps
// ports on the clashes and SYNs meet proxy-side TIME_WAIT sockets holding
// another flow's timestamps: PAWS drops hundreds of wrk's SYNs a run (each
// a 1 s retransmit), for splitwan only. A router in front of real clients would see it only when a client
// reuses a port for another proxied destination within those 2 minutes;
// here wrk cycles 50 000 ports in seconds, so the bench keeps each kind of
// client on its own address (chosen by routing rules on the destination
// port).
// The conn/s table shows, per side, the SYN retransmits and PAWS-rejected
// SYNs both namespaces counted during its wrk runs (TcpExtTCPSynRetrans,
// TcpExtPAWSTimewait): they should stay 0.
//
// Figures:
//  1. idle memory, first (fresh processes): N connections (10 000, or what
//     the fd limit allows: a proxied connection is 2 fds in the proxy) opened
//     through splitwan, the node pipe and haproxy (nbthread 1), 200 at a time,
//     each sending an HTTP request head (so the proxy decides and dials) and
//     then idle; VmRSS of the proxy process before and with them, and how
//     long opening them took;
//  2. throughput: iperf3 -t 5, -P 1 and -P 4, sum_received; and the CPU the
//     proxy process spent per GB (from /proc: less noisy than the rate);
//  3. new connections/s: wrk -t1 -c32 -d5s, `Connection: close`, one request
//     per connection; and the proxy's CPU per connection.
// 2 and 3: each side in turn in the same round, the order reversed in the
// second round, the median (of 2: the mean) kept.
// Goals: throughput >= 0.95 x haproxy, connections/s >= 0.7 x haproxy. Node
// is one thread, so the peer for the goals is haproxy with `nbthread 1`;
// haproxy with its default threads is shown beside it. The node pipe (bare
// net + pipe(), no SO_MARK, no SO_ORIGINAL_DST, no policy, no timers) shows
// how much of the gap is Node's own.
//
// Nothing is pinned by default (2 shared cores: a proxy that needs less CPU
// leaves more to the client and server, which is part of what it is worth);
// splitwan's byte path is splice(2) (proxy/splice-linux.ts) unless the
// environment says SPLITWAN_PROXY_SPLICE=pipe (Node's pipe(), to compare),
// and it accepts and dials on raw fds (proxy/accept-linux.ts) unless it says
// SPLITWAN_PROXY_ACCEPT=node (Node's net.Server and sockets); the run says which.
// BP_PIN=1 pins the proxies to the last CPU and everything else to the
// others. BP_PROF=DIR writes a CPU profile of splitwan's proxy (the whole
// run: its figures then do not count). BP_SECONDS (5) per measurement.
// About 3 minutes; everything it starts is stopped by pid, the namespaces
// (and with them the veth) and the temporary directory are removed in
// `finally`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuMs, procs, Proc, rssMb, sleep } from './proc.js';

const SECONDS = Number(process.env.BP_SECONDS ?? 5);
const ROUNDS = 2;
const WRK_CONNECTIONS = 32;
const IDLE_WANTED = 10_000;
const GOAL_THROUGHPUT = 0.95;
const GOAL_CONN = 0.7;
const PROXY_PORT = 15001;
const PORTS = { iperf: 5201, http: 8080, hold: 9000 } as const;
const REDIRECTED = '10.77.9.2'; // the "internet" address clients dial; redirected to splitwan
const PLAIN = '10.77.9.3'; // the same backends, not redirected: direct, and the peers' upstream
const LAN = '10.77.1.0/24'; // the veth's subnet
const ROUTER = '10.77.1.1'; // the proxy namespace's LAN address (bpl0): where the peers listen, the clients' gateway
/** The client namespace's addresses (bpc0), one LAN host per kind of client: see the header (PAWS). */
const CLIENT = { wrk: '10.77.1.2', idle: '10.77.1.3', iperf: '10.77.1.4' } as const;
const LAN_IF = 'bpl0'; // the veth end in the proxy namespace
const CLIENT_IF = 'bpc0'; // the veth end in the client namespace
const HOST = 'bench.example';
const IDLE_REQUEST = 'GET / HTTP/1.1\r\nHost: idle.example\r\n\r\n';

type Side = 'direct' | 'splitwan' | 'node-pipe' | 'haproxy' | 'haproxy-mt' | 'sniproxy';
type Kind = keyof typeof PORTS;
const LABEL: Record<Side, string> = { direct: 'direct', splitwan: 'splitwan', 'node-pipe': 'node pipe (floor)', haproxy: 'haproxy nbthread 1', 'haproxy-mt': 'haproxy default threads', sniproxy: 'sniproxy' };

/** host:port each side is reached at, per backend kind. */
const ENDPOINT: Record<Side, Partial<Record<Kind, [string, number]>>> = {
  direct: { iperf: [PLAIN, PORTS.iperf], http: [PLAIN, PORTS.http] },
  splitwan: { iperf: [REDIRECTED, PORTS.iperf], http: [REDIRECTED, PORTS.http], hold: [REDIRECTED, PORTS.hold] },
  'node-pipe': { iperf: [ROUTER, 15005], http: [ROUTER, 15006], hold: [ROUTER, 15007] },
  haproxy: { iperf: [ROUTER, 15002], http: [ROUTER, 15012], hold: [ROUTER, 15022] },
  'haproxy-mt': { iperf: [ROUTER, 15004], http: [ROUTER, 15014], hold: [ROUTER, 15024] },
  sniproxy: { iperf: [ROUTER, 15003], http: [ROUTER, 15003] },
};

interface Result { code: number; stdout: string; stderr: string }

const shortLived = new Set<ChildProcess>(); // iperf3 clients, wrk, nft in flight: killed by pid on cleanup
function sh(argv: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result & { timedOut: boolean }> {
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    shortLived.add(c);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => ((timedOut = true), c.kill('SIGKILL')), o.timeoutMs ?? 10_000);
    c.on('error', (e) => (stderr += e.message));
    c.on('close', (code) => (clearTimeout(timer), shortLived.delete(c), resolve({ code: code ?? 128, stdout, stderr, timedOut })));
    c.stdin.on('error', () => undefined);
    c.stdin.end(o.input ?? '');
  });
}
async function must(argv: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  const r = await sh(argv, o);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${(r.stderr || r.stdout).trim().slice(0, 600)}`);
  return r;
}

/** An executable of that name on PATH or in the sbin directories (haproxy and sniproxy live in /usr/sbin). */
function onPath(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    try {
      accessSync(join(d, name), fsConstants.X_OK);
      return join(d, name);
    } catch {
      // not here
    }
  }
  return null;
}

/** This process's hard RLIMIT_NOFILE (children get it as soft and hard through prlimit). */
function hardNofile(): number {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] === 'unlimited' ? 1 << 20 : Number(m?.[1] ?? 1024);
}

/** The TcpExt counters (/proc/net/netstat) of the network namespace process `pid` is in. */
function tcpExt(pid: number): Record<string, number> {
  const [names, values] = readFileSync(`/proc/${pid}/net/netstat`, 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:')).map((l) => l.split(/\s+/));
  return Object.fromEntries((names ?? []).slice(1).map((n, i) => [n, Number(values?.[i + 1] ?? 0)]));
}

const median = (a: readonly number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};
const r0 = (x: number) => Math.round(x);
const r1 = (x: number) => +x.toFixed(1);
const r2 = (x: number) => +x.toFixed(2);
const r3 = (x: number) => +x.toFixed(3);
const ratio = (a: number | null, b: number | null) => (a === null || b === null || !(b > 0) ? null : r3(a / b));

/** SYN retransmits and SYNs PAWS rejected at a TIME_WAIT socket, both namespaces summed, during a sample. */
interface Syns { retrans: number; paws: number }
interface Sample { value: number; cpuMs: number | null; units: number; errors: string | null; syns?: Syns }
interface ChildStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  proxy: { accepted: number; refused: number; blocked: number; dialFailed: number; peekTimeouts: number; ends: Record<string, number>; paths: Record<string, { connections: number; active: number }> };
}

function haproxyConfig(o: { threads: 1 | null; maxconn: number; ports: [number, number, number]; upstream: string }): string {
  const [pi, ph, pd] = o.ports;
  const pair = (name: string, port: number, to: number) => `frontend f_${name}\n\tbind ${ROUTER}:${port}\n\tdefault_backend b_${name}\nbackend b_${name}\n\tserver s ${o.upstream}:${to}\n`;
  return [
    'global',
    ...(o.threads ? [`\tnbthread ${o.threads}`] : []),
    `\tmaxconn ${o.maxconn}`,
    'defaults',
    '\tmode tcp',
    `\tmaxconn ${o.maxconn}`,
    '\ttimeout connect 5s',
    '\ttimeout client 300s',
    '\ttimeout server 300s',
    pair('iperf', pi, PORTS.iperf),
    pair('http', ph, PORTS.http),
    pair('hold', pd, PORTS.hold),
  ].join('\n');
}

export async function run(): Promise<Record<string, unknown>> {
  const say = (l: string) => void process.stdout.write(l + '\n');

  // Preflight: root, the namespace tools, and every peer; nothing is skipped silently.
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (it creates a network namespace with an nft redirect)');
  const tools: Record<string, string> = { ip: 'iproute2', nft: 'nftables', iperf3: 'iperf3', haproxy: 'haproxy', wrk: 'wrk', sniproxy: 'sniproxy', prlimit: 'util-linux', taskset: 'util-linux', ss: 'iproute2', sysctl: 'procps' };
  const missing = Object.keys(tools).filter((t) => onPath(t) === null);
  if (missing.length > 0) problems.push(`missing: ${missing.join(', ')} (apt-get install -y --no-install-recommends ${[...new Set(missing.map((t) => tools[t]))].join(' ')})`);
  if (problems.length > 0) {
    process.stderr.write(`bench proxy cannot run: ${problems.join('; ')}\n`);
    process.exit(1);
  }

  const ns = `sw-bp-${process.pid}`; // the router: proxies and backends
  const cns = `sw-bpc-${process.pid}`; // the LAN client: iperf3 -c, wrk, the idle client
  const inNs = (argv: readonly string[]) => ['ip', 'netns', 'exec', ns, ...argv];
  const inClientNs = (argv: readonly string[]) => ['ip', 'netns', 'exec', cns, ...argv];
  const batch = (n: string, lines: readonly string[]) => must(['ip', '-n', n, '-batch', '-'], { input: lines.join('\n') + '\n' });
  const nofile = hardNofile();
  const withFds = (argv: readonly string[]) => ['prlimit', `--nofile=${nofile}:${nofile}`, ...argv];
  const nCpu = cpus().length;
  const pin = process.env.BP_PIN === '1' && nCpu >= 2;
  const proxyCpu = String(nCpu - 1);
  const otherCpus = nCpu > 2 ? `0-${nCpu - 2}` : '0';
  const onProxyCpu = (argv: readonly string[]) => (pin ? ['taskset', '-c', proxyCpu, ...argv] : [...argv]);
  const onOtherCpus = (argv: readonly string[]) => (pin ? ['taskset', '-c', otherCpus, ...argv] : [...argv]);
  const profileDir = process.env.BP_PROF;
  // A proxied connection holds 2 fds in the proxy; keep 100 for everything else.
  const idleN = Math.min(IDLE_WANTED, Math.floor((nofile - 100) / 200) * 100);
  const idleLimited = idleN < IDLE_WANTED;

  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-proxy-'));
  const created: string[] = []; // namespaces, in order
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of shortLived) c.kill('SIGKILL');
      await Promise.all([...procs].map((p) => p.stop(3000)));
      // Deleting a namespace deletes its veth end, and the pair with it.
      for (const n of created.reverse()) spawnSync('ip', ['netns', 'del', n]);
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (sig: NodeJS.Signals) => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const t0 = Date.now();

  try {
    for (const n of [ns, cns]) {
      await must(['ip', 'netns', 'add', n]);
      created.push(n);
    }
    // The veth is born in the proxy namespace with its peer in the client's: it never exists in the root namespace.
    await batch(ns, ['link set lo up', `link add ${LAN_IF} type veth peer name ${CLIENT_IF} netns ${cns}`, `addr add ${ROUTER}/24 dev ${LAN_IF}`, `link set ${LAN_IF} up`,
      `addr add ${REDIRECTED}/32 dev lo`, `addr add ${PLAIN}/32 dev lo`]);
    // wrk's address first: the primary one, the default source. The idle client and iperf3 get theirs by their
    // destination port (a rule per port, a table per address), not by bind(): a bind to port 0 takes a port no
    // other socket holds, TIME_WAIT included, and searching for one among ~20 000 slows the idle test down.
    const byPort = (kind: Kind, not: Kind) => [...new Set(Object.values(ENDPOINT).map((e) => e[kind]?.[1]))].filter((p): p is number => p !== undefined && !Object.values(ENDPOINT).some((e) => e[not]?.[1] === p));
    const ruled = [{ src: CLIENT.idle, table: 101, ports: byPort('hold', 'http') }, { src: CLIENT.iperf, table: 102, ports: byPort('iperf', 'http') }];
    await batch(cns, ['link set lo up', ...[CLIENT.wrk, CLIENT.idle, CLIENT.iperf].map((a) => `addr add ${a}/24 dev ${CLIENT_IF}`), `link set ${CLIENT_IF} up`, `route add default via ${ROUTER}`,
      ...ruled.flatMap((r) => [`route add ${LAN} dev ${CLIENT_IF} src ${r.src} table ${r.table}`, `route add default via ${ROUTER} src ${r.src} table ${r.table}`,
        ...r.ports.map((p) => `rule add ipproto tcp dport ${p} lookup ${r.table} pref ${r.table}`)])]);
    // Namespace-local: enough ephemeral ports for ~100k short connections per side and round, TIME_WAIT reuse.
    for (const inN of [inNs, inClientNs]) await must(inN(['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=16000 65000', 'net.ipv4.tcp_tw_reuse=1']));
    // Router mode's redirect: what arrives from the LAN for the redirected address goes to the proxy.
    await must(inNs(['nft', '-f', '-']), {
      input: `table ip swbench {\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n` +
        `\t\tiifname "${LAN_IF}" meta mark 0 ip daddr ${REDIRECTED} tcp dport { ${PORTS.iperf}, ${PORTS.http}, ${PORTS.hold} } redirect to :${PROXY_PORT}\n\t}\n}\n`,
    });

    const maxconn = Math.floor((nofile - 50) / 2);
    writeFileSync(join(dir, 'haproxy-1.cfg'), haproxyConfig({ threads: 1, maxconn, ports: [15002, 15012, 15022], upstream: PLAIN }));
    writeFileSync(join(dir, 'haproxy-mt.cfg'), haproxyConfig({ threads: null, maxconn, ports: [15004, 15014, 15024], upstream: PLAIN }));
    writeFileSync(join(dir, 'backend.cfg'), [
      'global', `\tmaxconn ${maxconn}`, 'defaults', '\tmode http', `\tmaxconn ${maxconn}`, '\ttimeout connect 5s', '\ttimeout client 30s', '\ttimeout server 30s',
      'frontend web', `\tbind ${REDIRECTED}:${PORTS.http}`, `\tbind ${PLAIN}:${PORTS.http}`, '\thttp-request return status 200 content-type text/plain string ok', '',
    ].join('\n'));
    writeFileSync(join(dir, 'sniproxy.conf'), [
      'user root', `pidfile ${join(dir, 'sniproxy.pid')}`, 'error_log {', `\tfilename ${join(dir, 'sniproxy.log')}`, '\tpriority notice', '}',
      `listener ${ROUTER}:15003 {`, '\tprotocol http', '\ttable bench', `\tfallback ${PLAIN}:${PORTS.iperf}`, '}',
      'table bench {', `\t${HOST} ${PLAIN}:${PORTS.http}`, '}', '',
    ].join('\n'));

    const node = (file: string, arg: string, flags: readonly string[] = []) => [process.execPath, ...flags, join(import.meta.dirname, file), arg];
    let swWay = '';
    const ipcReady = (p: Proc) =>
      new Promise<void>((resolve, reject) => {
        p.child.on('message', (m: { type?: string; accept?: string; splicer?: string }) => {
          if (m.type !== 'ready') return;
          if (m.accept !== undefined) swWay = `accept ${m.accept}, bytes by ${m.splicer}`;
          resolve();
        });
        void p.exited.then(() => reject(new Error(`${p.name} exited (${p.exitCode}): ${p.tail.trim().slice(-800)}`)));
      });
    // Backends: never the bottleneck (haproxy answers HTTP itself; its default threads).
    const iperfServer = new Proc('iperf3 server', inNs(onOtherCpus(['iperf3', '-s', '-p', String(PORTS.iperf)])));
    const backend = new Proc('haproxy http backend', inNs(withFds(onOtherCpus(['haproxy', '-db', '-f', join(dir, 'backend.cfg')]))));
    const holdAt = JSON.stringify([REDIRECTED, PLAIN].map((host) => ({ host, port: PORTS.hold })));
    const hold = new Proc('holding server', inNs(withFds(onOtherCpus(node('proxy-hold-child.js', holdAt)))), { ipc: true });
    // The contenders.
    const profFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
    const sw = new Proc('splitwan proxy', inNs(withFds(onProxyCpu(node('proxy-child.js', JSON.stringify({ host: '0.0.0.0', port: PROXY_PORT }), ['--expose-gc', ...profFlags])))), { ipc: true });
    const h1 = new Proc('haproxy nbthread 1', inNs(withFds(onProxyCpu(['haproxy', '-db', '-f', join(dir, 'haproxy-1.cfg')]))));
    const hmt = new Proc('haproxy default threads', inNs(withFds(['haproxy', '-db', '-f', join(dir, 'haproxy-mt.cfg')])));
    const floor = new Proc('node pipe', inNs(withFds(onProxyCpu(node('proxy-pipe-child.js', JSON.stringify({ host: ROUTER, port: 15005,
      upstream: [PORTS.iperf, PORTS.http, PORTS.hold].map((port) => ({ host: PLAIN, port })) }), ['--expose-gc'])))), { ipc: true });
    const sni = new Proc('sniproxy', inNs(withFds(onProxyCpu(['sniproxy', '-f', '-c', join(dir, 'sniproxy.conf')]))));
    const client = new Proc('idle client', inClientNs(withFds(onOtherCpus(node('proxy-idle-client-child.js', '')))), { ipc: true });
    await Promise.all([ipcReady(sw), ipcReady(floor), ipcReady(hold), ipcReady(client)]);

    // Every listener up (read from the namespace's socket table: a test connection would start an iperf3 test).
    const want = [`*:${PORTS.iperf}`, `${REDIRECTED}:${PORTS.http}`, `${PLAIN}:${PORTS.http}`, `${REDIRECTED}:${PORTS.hold}`, `${PLAIN}:${PORTS.hold}`, `*:${PROXY_PORT}`,
      ...[15002, 15012, 15022, 15004, 15014, 15024, 15003, 15005, 15006, 15007].map((p) => `${ROUTER}:${p}`)];
    const servers = [iperfServer, backend, hold, sw, floor, h1, hmt, sni];
    const end = Date.now() + 15_000;
    for (;;) {
      const listening = (await must(inNs(['ss', '-ltnH']))).stdout;
      const local = new Set(listening.split('\n').map((l) => l.trim().split(/\s+/)[3]).filter(Boolean).map((a) => a!.replace(/^(\[::\]|0\.0\.0\.0):/, '*:')));
      const absent = want.filter((w) => !local.has(w));
      if (absent.length === 0) break;
      const dead = servers.find((p) => !p.running);
      if (dead) throw new Error(`${dead.name} exited (${dead.exitCode}): ${dead.tail.trim().slice(-800)}`);
      if (Date.now() > end) throw new Error(`not listening after 15 s: ${absent.join(', ')}`);
      await sleep(50);
    }
    const pidOf: Record<Side, number | null> = { direct: null, splitwan: sw.pid, 'node-pipe': floor.pid, haproxy: h1.pid, 'haproxy-mt': hmt.pid, sniproxy: sni.pid };
    const hmtThreads = readdirSync(`/proc/${hmt.pid}/task`).length;
    say(`proxies and backends in netns ${ns}, the clients in ${cns} behind a veth (wrk ${CLIENT.wrk}, idle client ${CLIENT.idle}, iperf3 ${CLIENT.iperf} → ${ROUTER}); ${nCpu} CPUs, ` + (pin ? `proxies pinned to CPU ${proxyCpu}, clients and backends to ${otherCpus}` : 'nothing pinned (BP_PIN=1 pins)') +
      `; Node is one thread, so the peer for the goals is haproxy with nbthread 1 (haproxy's default here: ${hmtThreads} threads, shown too); splitwan: ${swWay}`);
    if (profileDir) say(`!!! PROFILING splitwan's proxy into ${profileDir}: its figures do not count !!!`);

    const stats = () => sw.ask<ChildStats>('stats', 'stats');
    /** SYN retransmits and PAWS-rejected SYNs so far, both namespaces (read through a process in each). */
    const synCounters = (): Syns => {
      const a = tcpExt(sw.pid);
      const b = tcpExt(client.pid);
      return { retrans: (a.TCPSynRetrans ?? 0) + (b.TCPSynRetrans ?? 0), paws: (a.PAWSTimewait ?? 0) + (b.PAWSTimewait ?? 0) };
    };
    const measure = async (side: Side, argv: readonly string[], timeoutMs: number) => {
      const pid = pidOf[side];
      const c0 = pid ? cpuMs(pid) : 0;
      const s0 = synCounters();
      const r = await sh(argv, { timeoutMs });
      const cpu = pid ? cpuMs(pid) - c0 : null;
      const s1 = synCounters();
      return { r, cpu, syns: { retrans: s1.retrans - s0.retrans, paws: s1.paws - s0.paws } };
    };
    const iperf = async (side: Side, streams: number, seconds = SECONDS, timeoutMs = (seconds + 20) * 1000): Promise<Sample> => {
      const [host, port] = ENDPOINT[side].iperf!;
      const { r, cpu } = await measure(side, inClientNs(onOtherCpus(['iperf3', '-c', host, '-p', String(port), '-t', String(seconds), '-P', String(streams), '-J'])), timeoutMs);
      if (r.timedOut) return { value: NaN, cpuMs: cpu, units: 0, errors: `iperf3 did not finish in ${timeoutMs / 1000} s` };
      let j: { error?: string; end?: { sum_received?: { bits_per_second?: number; bytes?: number } } };
      try {
        j = JSON.parse(r.stdout) as typeof j;
      } catch {
        return { value: NaN, cpuMs: cpu, units: 0, errors: `iperf3 exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}` };
      }
      const bps = j.end?.sum_received?.bits_per_second;
      if (j.error || bps === undefined) return { value: NaN, cpuMs: cpu, units: 0, errors: `iperf3: ${j.error ?? 'no sum_received'}` };
      return { value: bps / 1e9, cpuMs: cpu, units: j.end!.sum_received!.bytes ?? 0, errors: null };
    };
    const wrk = async (side: Side, seconds = SECONDS): Promise<Sample> => {
      const [host, port] = ENDPOINT[side].http!;
      const { r, cpu, syns } = await measure(side, inClientNs(onOtherCpus(['wrk', '-t1', `-c${WRK_CONNECTIONS}`, `-d${seconds}s`, '-H', 'Connection: close', '-H', `Host: ${HOST}`, `http://${host}:${port}/`])), (seconds + 20) * 1000);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
      if (r.code !== 0 || !rps) return { value: NaN, cpuMs: cpu, units: 0, errors: `wrk exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`, syns };
      const total = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
      const sock = /Socket errors: (.*)/.exec(r.stdout)?.[1];
      const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1];
      const errors = [sock ? `socket errors: ${sock}` : '', non2xx ? `${non2xx} non-2xx` : ''].filter(Boolean).join(', ');
      return { value: Number(rps[1]), cpuMs: cpu, units: total, errors: errors || null, syns };
    };

    // sniproxy and iperf3: iperf3 has no host name, so only the listener's fallback can carry it. Try it once.
    const probe = await iperf('sniproxy', 1, 1, 5000);
    const sniIperf: string | null = probe.errors === null ? null
      : `sniproxy does not forward iperf3 (${probe.errors}): its http listener waits for a complete request head before using even the fallback, and iperf3's control connection sends a 37-byte cookie and waits for the server`;
    if (sniIperf) say(`sniproxy throughput: not applicable: ${sniIperf}`);

    // 1, first (fresh processes): idle connections' memory.
    /** SYNs the namespace's kernel dropped because a listener's accept queue was full (each costs the client a 1 s retransmit). */
    const listenDrops = () => tcpExt(sw.pid).ListenOverflows ?? 0;
    const holdCount = () => hold.ask<{ accepted: number; open: number }>('count', 'count');
    const idle = async (side: 'splitwan' | 'node-pipe' | 'haproxy') => {
      const pid = pidOf[side]!;
      const nodeProc = side === 'splitwan' ? sw : side === 'node-pipe' ? floor : null;
      await nodeProc?.ask('gc', 'stats');
      await sleep(300);
      const before = rssMb(pid);
      const [host, port] = ENDPOINT[side].hold!;
      const drops0 = listenDrops();
      const syns0 = synCounters();
      const started = Date.now();
      const opened = await client.ask<{ ok: number; failed: number; errors: string[] }>('open', 'opened', 120_000, { host, port, n: idleN, payload: IDLE_REQUEST, concurrency: 200 });
      let held = await holdCount();
      const until = Date.now() + 60_000;
      while (held.open < idleN && Date.now() < until) {
        await sleep(100);
        held = await holdCount();
      }
      const openSeconds = (Date.now() - started) / 1000;
      const drops = listenDrops() - drops0;
      const synRetrans = synCounters().retrans - syns0.retrans;
      await sleep(1000);
      const after = rssMb(pid);
      const swStats = nodeProc ? await nodeProc.ask<ChildStats>('gc', 'stats') : null;
      const afterGc = nodeProc ? rssMb(pid) : null;
      const closed = await client.ask<{ lingering: number }>('close', 'closed', 30_000);
      const drainEnd = Date.now() + 15_000;
      while ((await holdCount()).open > 0 && Date.now() < drainEnd) await sleep(100);
      return { before, after, afterGc, held: held.open, opened, openSeconds, drops, synRetrans, swStats, lingering: closed.lingering };
    };
    const idleSw = await idle('splitwan');
    const idleFloor = await idle('node-pipe');
    const idleH = await idle('haproxy');
    const perConn = (x: { before: number; after: number; held: number }) => (x.held > 0 ? ((x.after - x.before) * 2 ** 20) / x.held : NaN);
    say(`idle memory: ${idleN} connections${idleLimited ? ` (not ${IDLE_WANTED}: the hard fd limit here is ${nofile} and a proxied connection takes 2 fds in the proxy)` : ''}, ` +
      `each sent one HTTP request head and then idled; VmRSS of the proxy process:`);
    for (const [side, x] of [['splitwan', idleSw], ['node pipe (floor)', idleFloor], ['haproxy nbthread 1', idleH]] as const) {
      say(`  ${side.padEnd(24)}${r1(x.after).toString().padStart(6)} MB with them, ${r1(x.before)} MB before: +${r1(x.after - x.before)} MB, ${r0(perConn(x))} bytes/connection` +
        `${x.afterGc !== null ? `; ${r1(x.afterGc)} MB after a full GC` : ''}; ${x.held} held by the server (opened in ${r1(x.openSeconds)} s, ${x.drops} SYNs dropped at a full accept queue, ${x.synRetrans} SYN retransmits${x.opened.failed ? `, ${x.opened.failed} failed: ${x.opened.errors.join('; ')}` : ''})` +
        (x.lingering ? `; ${x.lingering} did not close cleanly` : ''));
    }
    for (const [side, x] of [['splitwan', idleSw], ['node pipe', idleFloor]] as const) {
      const m = x.swStats!;
      say(`  ${side}'s heap with them (after GC): used ${r1(m.heapUsed / 2 ** 20)} of ${r1(m.heapTotal / 2 ** 20)} MB, external ${r1(m.external / 2 ** 20)} MB, array buffers ${r1(m.arrayBuffers / 2 ** 20)} MB`);
    }

    // Warm-up of Node's JIT, not counted (the idle test above already ran each Node side's accept and dial path 9900 times).
    for (const side of ['splitwan', 'node-pipe'] as const) await wrk(side, 1);

    const tests = [
      { key: 'throughput_1', run: (s: Side) => iperf(s, 1), sides: ['direct', 'splitwan', 'node-pipe', 'haproxy', ...(sniIperf ? [] : ['sniproxy'])] as Side[] },
      { key: 'throughput_4', run: (s: Side) => iperf(s, 4), sides: ['direct', 'splitwan', 'haproxy', 'haproxy-mt', ...(sniIperf ? [] : ['sniproxy'])] as Side[] },
      { key: 'conn_per_s', run: (s: Side) => wrk(s), sides: ['direct', 'splitwan', 'node-pipe', 'haproxy', 'haproxy-mt', 'sniproxy'] as Side[] },
    ] as const;
    const samples: Record<string, Partial<Record<Side, Sample[]>>> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of tests) {
        const order = round % 2 === 0 ? t.sides : [...t.sides].reverse();
        for (const side of order) ((samples[t.key] ??= {})[side] ??= []).push(await t.run(side));
      }
    }
    const swAfterRounds = await stats();

    const fig = (key: string, side: Side) => {
      const s = samples[key]?.[side];
      if (!s) return null;
      const ok = s.filter((x) => x.errors === null || key === 'conn_per_s').filter((x) => Number.isFinite(x.value));
      return ok.length === 0 ? NaN : median(ok.map((x) => x.value));
    };
    const errorsOf = (key: string, side: Side) => [...new Set((samples[key]?.[side] ?? []).map((x) => x.errors).filter((e): e is string => e !== null))];
    /** CPU per unit over the rounds: ms per GB for throughput, µs per connection for wrk. */
    const cpuPer = (key: string, side: Side) => {
      const s = samples[key]?.[side] ?? [];
      const cpu = s.reduce((n, x) => n + (x.cpuMs ?? 0), 0);
      const units = s.reduce((n, x) => n + x.units, 0);
      if (pidOf[side] === null || units === 0) return null;
      return key === 'conn_per_s' ? r1((cpu * 1000) / units) : r1(cpu / (units / 1e9));
    };

    const table = (key: string, title: string, unit: string, fmt: (x: number) => string, cpuUnit: string) => {
      say(title);
      const all: Side[] = ['direct', 'splitwan', 'node-pipe', 'haproxy', 'haproxy-mt', 'sniproxy'];
      for (const side of all) {
        const v = fig(key, side);
        const cpu = cpuPer(key, side);
        const errs = errorsOf(key, side);
        const row = `  ${LABEL[side].padEnd(24)}`;
        if (v === null) {
          say(row + (side === 'sniproxy' && sniIperf ? 'n/a (see above)' : side === 'haproxy-mt' ? 'not run (-P 4 and wrk only)' : side === 'node-pipe' ? 'not run (-P 1 and wrk only)' : 'not run'));
          continue;
        }
        const s = (samples[key]![side] ?? []).map((x) => fmt(x.value)).join(', ');
        const vsH = (side === 'direct' || side === 'haproxy' ? '' : `  x${(v / fig(key, 'haproxy')!).toFixed(2)} of haproxy nbthread 1`) +
          (side === 'splitwan' && fig(key, 'node-pipe') !== null ? `, x${(v / fig(key, 'node-pipe')!).toFixed(2)} of node pipe` : '');
        const syns = (samples[key]![side] ?? []).map((x) => x.syns).filter((x): x is Syns => x !== undefined);
        const synNote = syns.length ? `  SYN retransmits [${syns.map((x) => x.retrans).join(', ')}], PAWS-rejected [${syns.map((x) => x.paws).join(', ')}]` : '';
        say(row + `${fmt(v).padStart(8)} ${unit} [${s}]` + (cpu === null ? '' : `  proxy CPU ${cpu} ${cpuUnit}`) + vsH + synNote + (errs.length ? `  (${errs.join('; ')})` : ''));
      }
    };
    table('throughput_1', `throughput, iperf3 -P 1 -t ${SECONDS}, median of ${ROUNDS} rounds (order reversed in the second):`, 'Gbit/s', (x) => x.toFixed(2), 'ms/GB');
    table('throughput_4', `throughput, iperf3 -P 4 -t ${SECONDS}:`, 'Gbit/s', (x) => x.toFixed(2), 'ms/GB');
    table('conn_per_s', `new connections, wrk -t1 -c${WRK_CONNECTIONS} -d${SECONDS}s, Connection: close (one request per connection):`, 'conn/s', (x) => String(r0(x)), 'µs/conn');
    const p = swAfterRounds.proxy;
    say(`  splitwan's proxy: ${p.accepted} accepted, ${p.refused} refused, ${p.dialFailed} dials failed, ${p.peekTimeouts} peek timeouts; ends ${JSON.stringify(p.ends)}`);

    // Ratios and goals.
    const tp1 = { s: fig('throughput_1', 'splitwan')!, h: fig('throughput_1', 'haproxy')! };
    const tp4 = { s: fig('throughput_4', 'splitwan')!, h: fig('throughput_4', 'haproxy')! };
    const cps = { s: fig('conn_per_s', 'splitwan')!, h: fig('conn_per_s', 'haproxy')! };
    const goals = {
      throughput_1: { goal: GOAL_THROUGHPUT, ratio: ratio(tp1.s, tp1.h), met: tp1.s / tp1.h >= GOAL_THROUGHPUT },
      throughput_4: { goal: GOAL_THROUGHPUT, ratio: ratio(tp4.s, tp4.h), met: tp4.s / tp4.h >= GOAL_THROUGHPUT },
      conn_per_s: { goal: GOAL_CONN, ratio: ratio(cps.s, cps.h), met: cps.s / cps.h >= GOAL_CONN },
    };
    const yes = (b: boolean) => (b ? 'MET' : 'NOT MET');
    say(`goals vs haproxy nbthread 1: throughput -P 1 x${goals.throughput_1.ratio} (>= ${GOAL_THROUGHPUT}) ${yes(goals.throughput_1.met)}; ` +
      `-P 4 x${goals.throughput_4.ratio} (>= ${GOAL_THROUGHPUT}) ${yes(goals.throughput_4.met)}; connections/s x${goals.conn_per_s.ratio} (>= ${GOAL_CONN}) ${yes(goals.conn_per_s.met)}; ` +
      `idle RSS x${r2((idleSw.after - idleSw.before) / (idleH.after - idleH.before))} of haproxy's; ${r0((Date.now() - t0) / 1000)} s`);

    const gbps = (key: string, side: Side) => {
      const v = fig(key, side);
      return v === null || !Number.isFinite(v) ? null : r3(v);
    };
    const tpOut = (key: string) => ({
      splitwan_gbps: gbps(key, 'splitwan'),
      node_pipe_gbps: gbps(key, 'node-pipe'),
      haproxy_gbps: gbps(key, 'haproxy'),
      ...(key === 'throughput_4' ? { haproxy_mt_gbps: gbps(key, 'haproxy-mt') } : {}),
      sniproxy_gbps: gbps(key, 'sniproxy'),
      ...(sniIperf ? { sniproxy_na: sniIperf } : {}),
      direct_gbps: gbps(key, 'direct'),
      ratio_vs_haproxy: ratio(fig(key, 'splitwan'), fig(key, 'haproxy')),
      ratio_vs_node_pipe: ratio(fig(key, 'splitwan'), fig(key, 'node-pipe')),
      node_pipe_vs_haproxy: ratio(fig(key, 'node-pipe'), fig(key, 'haproxy')),
      ...(key === 'throughput_4' ? { ratio_vs_haproxy_mt: ratio(fig(key, 'splitwan'), fig(key, 'haproxy-mt')) } : {}),
      splitwan_cpu_ms_per_gb: cpuPer(key, 'splitwan'),
      node_pipe_cpu_ms_per_gb: cpuPer(key, 'node-pipe'),
      haproxy_cpu_ms_per_gb: cpuPer(key, 'haproxy'),
      samples: Object.fromEntries(Object.entries(samples[key]!).map(([s, v]) => [s, v.map((x) => (Number.isFinite(x.value) ? r3(x.value) : null))])),
    });
    const cpsOut = (side: Side) => {
      const v = fig('conn_per_s', side);
      return v === null || !Number.isFinite(v) ? null : r0(v);
    };
    const out = {
      bench: 'proxy',
      pinned: pin,
      cpus: nCpu,
      haproxy_default_threads: hmtThreads,
      seconds_per_run: SECONDS,
      rounds: ROUNDS,
      throughput_1: tpOut('throughput_1'),
      throughput_4: tpOut('throughput_4'),
      conn_per_s: {
        splitwan: cpsOut('splitwan'),
        node_pipe: cpsOut('node-pipe'),
        haproxy: cpsOut('haproxy'),
        haproxy_mt: cpsOut('haproxy-mt'),
        sniproxy: cpsOut('sniproxy'),
        direct: cpsOut('direct'),
        ratio_vs_haproxy: ratio(fig('conn_per_s', 'splitwan'), fig('conn_per_s', 'haproxy')),
        ratio_vs_haproxy_mt: ratio(fig('conn_per_s', 'splitwan'), fig('conn_per_s', 'haproxy-mt')),
        ratio_vs_node_pipe: ratio(fig('conn_per_s', 'splitwan'), fig('conn_per_s', 'node-pipe')),
        node_pipe_vs_haproxy: ratio(fig('conn_per_s', 'node-pipe'), fig('conn_per_s', 'haproxy')),
        splitwan_cpu_us_per_conn: cpuPer('conn_per_s', 'splitwan'),
        node_pipe_cpu_us_per_conn: cpuPer('conn_per_s', 'node-pipe'),
        haproxy_cpu_us_per_conn: cpuPer('conn_per_s', 'haproxy'),
        sniproxy_cpu_us_per_conn: cpuPer('conn_per_s', 'sniproxy'),
        errors: Object.fromEntries((['direct', 'splitwan', 'node-pipe', 'haproxy', 'haproxy-mt', 'sniproxy'] as Side[]).map((s) => [s, errorsOf('conn_per_s', s)]).filter(([, e]) => e!.length > 0)),
        samples: Object.fromEntries(Object.entries(samples.conn_per_s!).map(([s, v]) => [s, v.map((x) => (Number.isFinite(x.value) ? r0(x.value) : null))])),
        syn_retrans: Object.fromEntries(Object.entries(samples.conn_per_s!).map(([s, v]) => [s, v.map((x) => x.syns?.retrans ?? null)])),
        paws_timewait: Object.fromEntries(Object.entries(samples.conn_per_s!).map(([s, v]) => [s, v.map((x) => x.syns?.paws ?? null)])),
      },
      idle: {
        connections: idleN,
        limited_by_fds: idleLimited ? nofile : null,
        splitwan_held: idleSw.held,
        splitwan_open_s: r1(idleSw.openSeconds),
        node_pipe_open_s: r1(idleFloor.openSeconds),
        haproxy_open_s: r1(idleH.openSeconds),
        splitwan_listen_drops: idleSw.drops,
        node_pipe_listen_drops: idleFloor.drops,
        haproxy_listen_drops: idleH.drops,
        splitwan_syn_retrans: idleSw.synRetrans,
        node_pipe_syn_retrans: idleFloor.synRetrans,
        haproxy_syn_retrans: idleH.synRetrans,
        haproxy_held: idleH.held,
        splitwan_rss_mb: r1(idleSw.after),
        splitwan_rss_before_mb: r1(idleSw.before),
        splitwan_rss_after_gc_mb: idleSw.afterGc === null ? null : r1(idleSw.afterGc),
        splitwan_added_mb: r1(idleSw.after - idleSw.before),
        splitwan_bytes_per_conn: r0(perConn(idleSw)),
        node_pipe_rss_mb: r1(idleFloor.after),
        node_pipe_rss_before_mb: r1(idleFloor.before),
        node_pipe_bytes_per_conn: r0(perConn(idleFloor)),
        node_pipe_heap_used_mb: idleFloor.swStats ? r1(idleFloor.swStats.heapUsed / 2 ** 20) : null,
        haproxy_rss_mb: r1(idleH.after),
        haproxy_rss_before_mb: r1(idleH.before),
        haproxy_added_mb: r1(idleH.after - idleH.before),
        haproxy_bytes_per_conn: r0(perConn(idleH)),
        ratio_added_vs_haproxy: r2((idleSw.after - idleSw.before) / (idleH.after - idleH.before)),
        splitwan_heap_used_mb: idleSw.swStats ? r1(idleSw.swStats.heapUsed / 2 ** 20) : null,
      },
      splitwan_proxy: { accepted: p.accepted, refused: p.refused, dial_failed: p.dialFailed, peek_timeouts: p.peekTimeouts, ends: p.ends },
      goals,
      seconds: r0((Date.now() - t0) / 1000),
      ...(profileDir ? { profiled: profileDir } : {}),
    };
    say(JSON.stringify(out));
    return out;
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}

// `node dist/bench/proxy.js` runs it on its own (bench/run.ts is the usual way).
if (process.argv[1] === new URL(import.meta.url).pathname) await run();
