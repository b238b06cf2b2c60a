// The footprint of a router (issue 17): what splitwan costs while it sits on
// a home router for years, beside dnsmasq (+ nftset) doing the DNS part of
// the same work in the same run.
//
//  [client] ── lan0 [router] ══ WireGuard ══ [gw1] (dnsmasq; +gw3: a second wireguard-go and dnsmasq)
//   50 q/s to each      │     ══ WireGuard ══ [gw2] (dnsmasq; +gw4 likewise)
//                       ├─ splitwan run: 4 gateways, a 100k-domain list → breakout, proxy on,
//                       │  health every second (dns + handshake probes)
//                       └─ peer: dnsmasq --nftset with the same 100k domains into an nft set,
//                          forwarding to the same ISP resolver (127.0.0.1:5300)
//
// Phases (FP_IDLE_S, FP_LOAD_S, default 120 s each): idle, then a household's
// load (FP_QPS, default 50 DNS queries a second from the client to each).
// Every 5 s: RSS, CPU (the process and the commands it ran and waited for),
// context switches (every thread: the wake-ups). Figures per phase: RSS at
// the end and its growth per hour (least squares over the phase's samples),
// CPU % of one core, wake-ups a second, and apart the RSS and CPU of the
// long-lived helpers it runs (nft/ip monitor; not wireguard-go); start-up: spawn to the first answer
// to a client. Goals: RSS < 80 MB, < 2 % of a core at the household load,
// no growth, start-up < 3 s.
//
// FP_NODE=/path/to/node runs the daemon with that Node, e.g. the armhf
// build `npm run test:arch` caches (~/.cache/splitwan-arch/armhf-node20.11.0/bin/node,
// through binfmt): memory figures of 32-bit ARM; its times and CPU mean
// nothing (emulated), and the output says so.
// FP_NODE_FLAGS adds Node flags to the daemon's (e.g. `--cpu-prof
// --cpu-prof-dir=/tmp/prof` for a profile of its whole run, written at its
// stop), FP_ENV="K=V ..." variables to its environment (both to try a
// setting before the service gets it); FP_LOG=FILE keeps the daemon's whole log there (its timestamps say
// where start-up goes).
// Everything started is stopped by pid; the lab, the peer's nft table and the
// temp dir are removed in `finally`. Last line: one JSON object.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, type Lab } from '../lab/lab.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../daemon/runtime-settings.js';
import { Proc, procs, rssMb, sleep } from './proc.js';

const IDLE_S = Number(process.env.FP_IDLE_S ?? 120);
const LOAD_S = Number(process.env.FP_LOAD_S ?? 120);
const QPS = Number(process.env.FP_QPS ?? 50);
const DOMAINS = Number(process.env.FP_DOMAINS ?? 100_000);
const NODE = process.env.FP_NODE ?? process.execPath;
const EMULATED = NODE !== process.execPath;
const EXTRA_FLAGS = (process.env.FP_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
const EXTRA_ENV = Object.fromEntries((process.env.FP_ENV ?? '').split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const LOG = process.env.FP_LOG;
const SAMPLE_MS = 5000;
const T = process.pid % 1000;
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'splitwan');
const FLOOD = join(import.meta.dirname, 'dns-flood-child.js');
const PEER_PORT = 5300;

const say = (s: string): void => void process.stdout.write(s + '\n');
const inNs = (n: string, argv: readonly string[]): string[] => ['ip', 'netns', 'exec', n, ...argv];
const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;

/** utime+stime of the process and of the children it waited for (the ip/wg/nft it ran), ms. */
function cpuWithChildrenMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10;
}

/** Context switches of every thread (voluntary + not): each is a wake-up or a preemption. */
function switches(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0);
    } catch {
      // a thread that ended between readdir and read
    }
  }
  return n;
}

/**
 * The long-lived helpers a process runs (splitwan: `nft monitor`, `ip
 * monitor`), not counted in its own RSS and CPU (they are not waited for);
 * wireguard-go is left out: it is the tunnel (the kernel's WireGuard on most
 * routers), not the resolver's work.
 */
function helpers(pid: number): { rss: number; cpu: number } {
  let rss = 0;
  let cpu = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    let kids: string[] = [];
    try {
      kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      continue;
    }
    for (const k of kids) {
      try {
        if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'wireguard-go') continue;
        rss += rssMb(Number(k));
        const f = readFileSync(`/proc/${k}/stat`, 'utf8');
        const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
        cpu += (Number(x[11]) + Number(x[12])) * 10;
      } catch {
        // a child that ended meanwhile (a short command)
      }
    }
  }
  return { rss, cpu };
}

interface Sample {
  t: number;
  rss: number;
  /** RssAnon: what the process itself holds (the heap, V8's spaces); the rest of RSS is files' pages, which the kernel can take back. */
  anon: number;
  cpu: number;
  sw: number;
  /** helpers(): RSS MB and CPU ms. */
  hRss: number;
  hCpu: number;
}

function sample(pid: number): Sample {
  const h = helpers(pid);
  const anon = Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
  return { t: Date.now(), rss: rssMb(pid), anon, cpu: cpuWithChildrenMs(pid), sw: switches(pid), hRss: h.rss, hCpu: h.cpu };
}

/** Least-squares slope of RSS over time, MB per hour. */
function growthPerHour(xs: readonly Sample[]): number {
  const n = xs.length;
  if (n < 3) return NaN;
  const mt = xs.reduce((a, s) => a + s.t, 0) / n;
  const mr = xs.reduce((a, s) => a + s.rss, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of xs) {
    num += (s.t - mt) * (s.rss - mr);
    den += (s.t - mt) ** 2;
  }
  return (num / den) * 3_600_000;
}

/** The phase cut in minutes (the last may be shorter): each piece's first and last sample. */
function byMinute(xs: readonly Sample[]): [Sample, Sample][] {
  const out: [Sample, Sample][] = [];
  let from = xs[0]!;
  for (const x of xs.slice(1)) {
    if (x.t - from.t >= 59_000) {
      out.push([from, x]);
      from = x;
    }
  }
  if (from !== xs.at(-1) && xs.at(-1)!.t - from.t >= 10_000) out.push([from, xs.at(-1)!]);
  return out;
}

function figures(xs: readonly Sample[]) {
  const a = xs[0]!;
  const b = xs.at(-1)!;
  const s = (b.t - a.t) / 1000;
  return {
    seconds: Math.round(s),
    rssMb: r1(b.rss),
    rssMaxMb: r1(Math.max(...xs.map((x) => x.rss))),
    anonMb: r1(b.anon),
    growthMbPerHour: r1(growthPerHour(xs)),
    // The phase's second half alone: the first holds the heap's fill towards its first major
    // collection (a short phase's slope is that fill, not a trend); a leak shows in both.
    growthLateMbPerHour: r1(growthPerHour(xs.slice(Math.floor(xs.length / 2)))),
    cpuPctOfCore: r2(((b.cpu - a.cpu) / 1000 / s) * 100),
    // Minute by minute: the JIT's warm-up shows (hot code is optimized after enough runs of it).
    cpuPctByMinute: byMinute(xs).map(([x, y]) => r2(((y.cpu - x.cpu) / 1000 / ((y.t - x.t) / 1000)) * 100)),
    wakeupsPerS: r1((b.sw - a.sw) / s),
    // A helper restarted meanwhile starts its count over: never below 0.
    helpers: { rssMb: r1(b.hRss), cpuPctOfCore: r2((Math.max(0, b.hCpu - a.hCpu) / 1000 / s) * 100) },
  };
}

async function measure(pids: Record<string, number>, seconds: number): Promise<Record<string, Sample[]>> {
  const out: Record<string, Sample[]> = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, [sample(p)]]));
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await sleep(Math.min(SAMPLE_MS, end - Date.now()));
    for (const [k, p] of Object.entries(pids)) out[k]!.push(sample(p));
  }
  return out;
}

/** Two more gateways on gw1's and gw2's namespaces: a second wireguard-go and a dnsmasq on 10.65.i.1. */
async function extraGateways(lab: Lab, dir: string): Promise<string[]> {
  const confs: string[] = [];
  for (const i of [0, 1] as const) {
    const g = lab.gateways[i];
    const ifname = `fpg${T}x${i}`;
    const key = (): { priv: string; pub: string } => {
      const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
      return { priv, pub: execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim() };
    };
    const gk = key();
    const rk = key();
    const wgp = new Proc(`wireguard-go ${ifname}`, inNs(g.ns, ['wireguard-go', '-f', ifname]), { env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
    await wgp.until(`${ifname} socket`, () => {
      try {
        return readdirSync('/var/run/wireguard').includes(`${ifname}.sock`);
      } catch {
        return false;
      }
    }, 10_000);
    const keyFile = join(dir, `gk${i}`);
    writeFileSync(keyFile, gk.priv + '\n', { mode: 0o600 });
    const sub = `10.65.${i}`;
    for (const argv of [
      ['wg', 'set', ifname, 'private-key', keyFile, 'listen-port', '51830', 'peer', rk.pub, 'allowed-ips', `${sub}.2/32`],
      ['ip', 'addr', 'add', `${sub}.1/24`, 'dev', ifname],
      ['ip', 'link', 'set', ifname, 'up'],
    ]) {
      const r = await lab.exec(g.ns, argv);
      if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${g.ns}: ${r.stderr}`);
    }
    rmSync(keyFile);
    const dm = new Proc(`dnsmasq ${sub}.1`, inNs(g.ns, ['dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${sub}.1`, '--address=/#/10.99.9.9']));
    await dm.until('dnsmasq to start', () => /started, version/.test(dm.tail), 5000);
    const conf = `gw${i + 3}.conf`;
    writeFileSync(
      join(dir, conf),
      ['[Interface]', `PrivateKey = ${rk.priv}`, `Address = ${sub}.2/32`, `DNS = ${sub}.1`, 'MTU = 1420', '', '[Peer]', `PublicKey = ${gk.pub}`, 'AllowedIPs = 0.0.0.0/0', `Endpoint = ${g.uplink.v4}:51830`, 'PersistentKeepalive = 25', ''].join('\n'),
      { mode: 0o600 },
    );
    confs.push(conf);
  }
  return confs;
}

function domains(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `site${i}.example${i % 97}.test`);
}

async function firstAnswer(lab: Lab, server: string, port: number, t0: number, ms: number, p: Proc): Promise<number> {
  const end = t0 + ms;
  while (Date.now() < end) {
    const r = await lab.exec(lab.ns.client, ['dig', '+short', '+time=1', '+tries=1', '-p', String(port), `@${server}`, 'web.lab.test']);
    if (r.code === 0 && /^\d+\.\d+\.\d+\.\d+$/m.test(r.stdout)) return Date.now() - t0;
    await sleep(50);
  }
  throw new Error(`no answer from ${server}:${port} within ${ms} ms; ${p.name} said: ${p.tail.trim().slice(-1500)}`);
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-footprint-'));
  let lab: Lab | undefined;
  const peerTable = `fpdm${T}`;
  try {
    say(`footprint: ${DOMAINS} domains, 4 gateways, proxy on; idle ${IDLE_S} s, then ${QPS} q/s for ${LOAD_S} s${EMULATED ? ` (daemon on ${NODE}: emulated, only memory means anything)` : ''}`);
    // No tunnels of the lab's own on the router: the daemon makes its own with the same keys, and two
    // router-side peers with one key make the gateway's wireguard-go roam its endpoint between them
    // (answers to the daemon's probes and queries then go to the lab's tunnel: false downs, lost queries).
    lab = await createLab({ routerTunnels: false });
    for (const i of [0, 1] as const) writeFileSync(join(dir, `gw${i + 1}.conf`), lab.gateways[i].configText, { mode: 0o600 });
    const extra = await extraGateways(lab, dir);
    const list = domains(DOMAINS);
    writeFileSync(join(dir, 'big.txt'), list.join('\n') + '\n');
    const cfg = join(dir, 'config.yaml');
    writeFileSync(
      cfg,
      [
        'mode: router',
        'lan: [lan0]',
        `breakout: { interface: wan0, dns: [${lab.addr.ispResolver.v4}] }`,
        'tunnel:',
        '  gateways:',
        // Named by this run (tunnels swg-gN-T): wireguard-go's sockets in /var/run/wireguard are shared by
        // every namespace, so a lab test or another bench with gw1..gw4 running meanwhile would collide.
        `    - { name: g1-${T}, config: gw1.conf, priority: 1 }`,
        `    - { name: g2-${T}, config: gw2.conf, priority: 2 }`,
        `    - { name: g3-${T}, config: ${extra[0]}, priority: 3 }`,
        `    - { name: g4-${T}, config: ${extra[1]}, priority: 4 }`,
        'health: { interval: 1s }',
        'proxy: { enabled: true }',
        `stateDir: ${join(dir, 'state')}`,
        `control: { socket: ${join(dir, 'control.sock')} }`,
        'lists:',
        '  big: { file: big.txt }',
        'rules:',
        '  - list: big',
        '    via: breakout',
        'default: tunnel',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );

    // The peer: dnsmasq tagging the same names into an nft set (the DNS part of splitwan's work).
    // 30 names a line: dnsmasq refuses a config line over about 1 KB.
    const nft = await lab.exec(lab.ns.router, ['nft', '-f', '-'], { input: `table inet ${peerTable} {\n set s4 {\n  type ipv4_addr; flags timeout; timeout 1h\n }\n set s6 {\n  type ipv6_addr; flags timeout; timeout 1h\n }\n}\n` });
    if (nft.code !== 0) throw new Error(`nft: ${nft.stderr}`);
    const lines: string[] = [];
    for (let k = 0; k < list.length; k += 30) lines.push(`nftset=/${list.slice(k, k + 30).join('/')}/4#inet#${peerTable}#s4,6#inet#${peerTable}#s6`);
    writeFileSync(join(dir, 'dnsmasq.conf'), lines.join('\n') + '\n');

    // Start both; start-up to the first answer a client gets.
    const flags = [...(EMULATED ? [] : DAEMON_NODE_FLAGS), ...EXTRA_FLAGS];
    const t0 = Date.now();
    const daemon = new Proc('splitwan', inNs(lab.ns.router, [NODE, ...flags, BIN, 'run', '--config', cfg]), { env: { ...process.env, ...DAEMON_ENV, ...EXTRA_ENV } });
    if (LOG) {
      writeFileSync(LOG, '');
      for (const st of [daemon.child.stdout!, daemon.child.stderr!]) st.on('data', (d: string) => appendFileSync(LOG, d));
    }
    const ourStart = await firstAnswer(lab, lab.addr.routerLan.v4, 53, t0, EMULATED ? 600_000 : 60_000, daemon);
    // The CPU it took (with the commands it ran): on a busy machine the wall time is mostly waiting for a core.
    const ourStartCpu = cpuWithChildrenMs(daemon.pid);
    await daemon.until('"splitwan running"', () => daemon.tail.includes('splitwan running'), EMULATED ? 600_000 : 60_000);
    const t1 = Date.now();
    const peer = new Proc('dnsmasq (peer)', inNs(lab.ns.router, ['dnsmasq', '--no-daemon', `--conf-file=${join(dir, 'dnsmasq.conf')}`, '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${lab.addr.routerLan.v4}`, `--port=${PEER_PORT}`, `--server=${lab.addr.ispResolver.v4}`, '--cache-size=1000']));
    const peerStart = await firstAnswer(lab, lab.addr.routerLan.v4, PEER_PORT, t1, 60_000, peer);
    const peerStartCpu = cpuWithChildrenMs(peer.pid);
    say(`start-up to the first answer: splitwan ${ourStart} ms (${ourStartCpu} ms of CPU), dnsmasq ${peerStart} ms (${peerStartCpu} ms of CPU)`);
    // The proxy's listener and the health rounds settle first.
    await sleep(10_000);
    const pids = { splitwan: daemon.pid, dnsmasq: peer.pid };

    say(`idle for ${IDLE_S} s...`);
    const idle = await measure(pids, IDLE_S);
    say(`household load: ${QPS} q/s to each for ${LOAD_S} s...`);
    const loads = [PEER_PORT, 53].map(
      (port) => new Proc(`load :${port}`, inNs(lab!.ns.client, [process.execPath, FLOOD, lab!.addr.routerLan.v4, String(port), 'valid', String(QPS), String(QPS * (LOAD_S + 30)), String(LOAD_S + 5)])),
    );
    const load = await measure(pids, LOAD_S);
    for (const l of loads) await l.stop();
    const answered = loads.map((l) => {
      const last = l.tail.trim().split('\n').pop() ?? '{}';
      try {
        return JSON.parse(last) as { sent: number; answered: number };
      } catch {
        return { sent: 0, answered: 0 };
      }
    });

    const result = {
      bench: 'footprint',
      node: EMULATED ? NODE : process.version,
      emulated: EMULATED,
      // What the daemon ran with: the service's settings (daemon/runtime-settings.ts) and FP_NODE_FLAGS/FP_ENV.
      nodeFlags: flags,
      env: { ...DAEMON_ENV, ...EXTRA_ENV },
      domains: DOMAINS,
      gateways: 4,
      qps: QPS,
      startupMs: { splitwan: ourStart, dnsmasq: peerStart },
      startupCpuMs: { splitwan: ourStartCpu, dnsmasq: peerStartCpu },
      idle: { splitwan: figures(idle.splitwan!), dnsmasq: figures(idle.dnsmasq!) },
      load: { splitwan: figures(load.splitwan!), dnsmasq: figures(load.dnsmasq!), answered: { splitwan: answered[1], dnsmasq: answered[0] } },
      ratios: {
        rss: r1(load.splitwan!.at(-1)!.rss / load.dnsmasq!.at(-1)!.rss),
        cpuLoad: r1(figures(load.splitwan!).cpuPctOfCore / Math.max(0.01, figures(load.dnsmasq!).cpuPctOfCore)),
      },
      goals: EMULATED
        ? { rssUnder80Mb: Math.max(...load.splitwan!.map((x) => x.rss)) < 80, note: 'emulated: time, CPU and wake-ups are the emulator\'s, not the program\'s' }
        : { rssUnder80Mb: Math.max(...load.splitwan!.map((x) => x.rss)) < 80, cpuUnder2Pct: figures(load.splitwan!).cpuPctOfCore < 2, startupUnder3s: ourStart < 3000 },
    };
    for (const [phase, f] of [['idle', result.idle], ['load', result.load]] as const) {
      say(`${phase}: splitwan RSS ${f.splitwan.rssMb} MB (highest ${f.splitwan.rssMaxMb}, anonymous ${f.splitwan.anonMb}; growth ${f.splitwan.growthMbPerHour} MB/h, second half ${f.splitwan.growthLateMbPerHour}), CPU ${f.splitwan.cpuPctOfCore} % of a core (by minute: ${f.splitwan.cpuPctByMinute.join(', ')}), ${f.splitwan.wakeupsPerS} wake-ups/s, its monitors (nft/ip monitor) ${f.splitwan.helpers.rssMb} MB, ${f.splitwan.helpers.cpuPctOfCore} % | dnsmasq RSS ${f.dnsmasq.rssMb} MB (anonymous ${f.dnsmasq.anonMb}; growth ${f.dnsmasq.growthMbPerHour} MB/h), CPU ${f.dnsmasq.cpuPctOfCore} %, ${f.dnsmasq.wakeupsPerS} wake-ups/s`);
    }
    // A profile (FP_NODE_FLAGS) is written at the stop: more than the default grace.
    await daemon.stop(EXTRA_FLAGS.length > 0 ? 30_000 : undefined);
    await peer.stop();
    say(JSON.stringify(result));
  } finally {
    for (const p of [...procs]) await p.stop().catch(() => undefined);
    if (lab) {
      await lab.exec(lab.ns.router, ['nft', 'delete', 'table', 'inet', peerTable]).catch(() => undefined);
      await lab.destroy();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
