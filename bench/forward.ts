// Forwarding benchmark: is the daemon off the data path? iperf3 (TCP, 1 stream,
// 4 s, 3 rounds; the ratio is the median of the rounds' own ratios) from a LAN client to a server at the isp, through the
// breakout and through one WireGuard gateway, once with hand-written ip/wg/nft
// state on the router (the peer) and once with `splitwan run`; rounds alternate
// which goes first so machine noise hits both. Needs root; everything lives in
// namespaces named with this pid (the same design as test/lab/lab.ts, which is
// not compiled into dist, so the few parts needed are repeated here).
//
//  [c] c0 10.99.1.2 ── lan0 10.99.1.1 [r] wan0 10.99.2.2 ── r0 10.99.2.1 [i] lo 10.99.9.9  (iperf3 -s: breakout target)
//                      (peer state or splitwan)                           lo 10.99.9.10 (iperf3 -s: gateway target)
//                      <tunnel> 10.64.0.2/32                             g0 10.99.3.1
//                         ╚══ WireGuard ══ [g] gwf<tag> 10.64.0.1/24, up0 10.99.3.2 ─┘ (masquerade)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpuMs, procs, Proc, sleep } from './proc.js';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = Number(process.env.BF_RUNS ?? 3); // more rounds on a noisy machine: BF_RUNS=5 npm run bench -- forward
const SECONDS = 4;
const GOAL = 0.95;
const T = process.pid % 100000;
const NS = { c: `sw-bf${process.pid}-c`, r: `sw-bf${process.pid}-r`, i: `sw-bf${process.pid}-i`, g: `sw-bf${process.pid}-g` };
const GW_NAME = `f${T}`; // splitwan's interface: swg-f<tag>
const IF = { gw: `gwf${T}`, peer: `hwf${T}`, daemon: `swg-${GW_NAME}` };
const BREAKOUT_DST = '10.99.9.9';
const GATEWAY_DST = '10.99.9.10';
const PEER_TABLE = '200';
const PEER_PREF = '1000';

interface Result { code: number; stdout: string; stderr: string }
const inNs = (n: string, argv: readonly string[]) => ['ip', 'netns', 'exec', n, ...argv];

const shortLived = new Set<ChildProcess>(); // commands in flight (iperf3 -c...): killed by pid on cleanup
function sh(argv: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    shortLived.add(c);
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), o.timeoutMs ?? 10_000);
    c.on('error', (e) => (stderr += e.message));
    c.on('close', (code) => (clearTimeout(timer), shortLived.delete(c), resolve({ code: code ?? 128, stdout, stderr })));
    c.stdin.on('error', () => undefined);
    c.stdin.end(o.input ?? '');
  });
}
async function must(argv: readonly string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  const r = await sh(argv, o);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 400)}`);
  return r;
}
const batch = (n: string, lines: readonly string[]) => must(['ip', '-n', n, '-batch', '-'], { input: lines.join('\n') + '\n' });


function keyPair(): { priv: string; pub: string } {
  const k = generateKeyPairSync('x25519');
  const b = (s: string | undefined) => Buffer.from(s!, 'base64url').toString('base64');
  return { priv: b(k.privateKey.export({ format: 'jwk' }).d), pub: b(k.publicKey.export({ format: 'jwk' }).x) };
}

/** wireguard-go processes serving our interface names (the daemon's own, if it was killed): pid list. */
function ourWireguardGo(): number[] {
  const names = new Set(Object.values(IF));
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let argv: string[] = [];
    try { argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').filter(Boolean); } catch { continue; }
    if (argv[0]?.split('/').pop() === 'wireguard-go' && names.has(argv[argv.length - 1]!)) out.push(Number(p));
  }
  return out;
}

export async function run(): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) throw new Error('the forward benchmark needs root (it creates network namespaces)');
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-bench-forward-')); // 0700
  const created: string[] = [];
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of shortLived) c.kill('SIGKILL');
      await Promise.all([...procs].map((p) => p.stop(3000)));
      for (const pid of ourWireguardGo()) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      for (const n of created.reverse()) spawnSync('ip', ['netns', 'del', n]);
      for (const i of Object.values(IF)) if (existsSync(`/var/run/wireguard/${i}.sock`)) unlinkSync(`/var/run/wireguard/${i}.sock`);
      rmSync(dir, { recursive: true, force: true });
    })());
  const onSignal = (sig: NodeJS.Signals) => void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  let seq = 0;
  const setconf = async (n: string, ifName: string, text: string) => {
    const f = join(dir, `wg-${seq++}.conf`);
    writeFileSync(f, text, { mode: 0o600, flag: 'wx' });
    try { await must(inNs(n, ['wg', 'setconf', ifName, f])); } finally { rmSync(f, { force: true }); }
  };
  const startWgGo = async (n: string, ifName: string) => {
    const p = new Proc(`wireguard-go ${ifName}`, inNs(n, ['wireguard-go', '-f', ifName]), { env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
    await p.until('its control socket', () => existsSync(`/var/run/wireguard/${ifName}.sock`), 5000);
    return p;
  };
  const handshake = async (ifName: string) => {
    const end = Date.now() + 10_000;
    while (!/\t[1-9]\d*$/m.test((await sh(inNs(NS.r, ['wg', 'show', ifName, 'latest-handshakes']))).stdout)) {
      if (Date.now() > end) throw new Error(`no WireGuard handshake on ${ifName} within 10 s`);
      await sleep(20);
    }
  };
  const gwRxBytes = async () => (JSON.parse((await must(['ip', '-n', NS.g, '-j', '-s', 'link', 'show', IF.gw])).stdout) as { stats64: { rx: { bytes: number } } }[])[0]!.stats64.rx.bytes;
  /** One iperf3 run; the gateway's tunnel counter says which path it really took. */
  const iperf = async (dst: string, viaGateway: boolean): Promise<number> => {
    const before = await gwRxBytes();
    const r = await sh(inNs(NS.c, ['iperf3', '-c', dst, '-t', String(SECONDS), '-J']), { timeoutMs: (SECONDS + 15) * 1000 });
    if (r.code !== 0) throw new Error(`iperf3 to ${dst} failed (exit ${r.code}): ${(r.stdout + r.stderr).trim().slice(-400)}`);
    const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second: number; bytes: number } } };
    const through = (await gwRxBytes()) - before;
    const s = j.end?.sum_received;
    // iperf3 -J can exit 0 with only an error in its JSON.
    if (!s) throw new Error(`iperf3 to ${dst} gave no result: ${j.error ?? r.stdout.slice(-400)}`);
    if (viaGateway ? through < s.bytes / 2 : through > 1_000_000) throw new Error(`iperf3 to ${dst}: ${through} bytes crossed the gateway for ${s.bytes} received: wrong path`);
    return s.bits_per_second / 1e6;
  };

  try {
    const k = { gw: keyPair(), r: keyPair() };
    for (const n of Object.values(NS)) {
      await must(['ip', 'netns', 'add', n]);
      created.push(n);
    }
    const gwGo = startWgGo(NS.g, IF.gw);
    await Promise.all([
      batch(NS.c, ['link set lo up', `link add c0 type veth peer name lan0 netns ${NS.r}`]),
      batch(NS.r, ['link set lo up', `link add wan0 type veth peer name r0 netns ${NS.i}`]),
      batch(NS.g, ['link set lo up', `link add up0 type veth peer name g0 netns ${NS.i}`]),
      ...[NS.r, NS.i, NS.g].map((n) => must(inNs(n, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']))),
      must(inNs(NS.g, ['nft', '-f', '-']), { input: 'table ip bench_gw {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname "up0" masquerade\n\t}\n}\n' }),
      gwGo,
    ]);
    await Promise.all([
      batch(NS.c, ['link set c0 up', 'addr add 10.99.1.2/24 dev c0', 'route add default via 10.99.1.1']),
      batch(NS.r, ['link set lan0 up', 'link set wan0 up', 'addr add 10.99.1.1/24 dev lan0', 'addr add 10.99.2.2/24 dev wan0', 'route add default via 10.99.2.1']),
      batch(NS.i, ['link set lo up', 'link set r0 up', 'link set g0 up', 'addr add 10.99.2.1/24 dev r0', 'addr add 10.99.3.1/24 dev g0', `addr add ${BREAKOUT_DST}/32 dev lo`, `addr add ${GATEWAY_DST}/32 dev lo`]),
      (async () => {
        await batch(NS.g, ['link set up0 up', 'addr add 10.99.3.2/24 dev up0', 'route add default via 10.99.3.1']);
        await setconf(NS.g, IF.gw, `[Interface]\nPrivateKey = ${k.gw.priv}\nListenPort = 51820\n\n[Peer]\nPublicKey = ${k.r.pub}\nAllowedIPs = 10.64.0.2/32\n`);
        await batch(NS.g, [`link set ${IF.gw} mtu 1420 up`, `addr add 10.64.0.1/24 dev ${IF.gw}`]);
      })(),
    ]);
    for (const dst of [BREAKOUT_DST, GATEWAY_DST]) {
      const s = new Proc(`iperf3 -s ${dst}`, inNs(NS.i, ['iperf3', '-s', '-B', dst, '--forceflush']));
      await s.until('iperf3 to listen', () => /Server listening/.test(s.tail), 5000);
    }
    // The peer uses the WireGuard the daemon would pick: the kernel's if it has it, else wireguard-go.
    const kernelWg = (await sh(['ip', '-n', NS.r, 'link', 'add', 'bfprobe0', 'type', 'wireguard'])).code === 0;
    if (kernelWg) await must(['ip', '-n', NS.r, 'link', 'del', 'bfprobe0']);
    const routerWgText = `[Interface]\nPrivateKey = ${k.r.priv}\n\n[Peer]\nPublicKey = ${k.gw.pub}\nEndpoint = 10.99.3.2:51820\nAllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 25\n`;
    const quick = `[Interface]\nPrivateKey = ${k.r.priv}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\nMTU = 1420\n\n[Peer]\nPublicKey = ${k.gw.pub}\nAllowedIPs = 0.0.0.0/0\nEndpoint = 10.99.3.2:51820\nPersistentKeepalive = 25\n`;
    writeFileSync(join(dir, 'gw.conf'), quick, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, ['mode: router', 'lan: [lan0]', 'breakout: { interface: wan0, dns: [10.99.2.1] }', 'tunnel:', '  gateways:', `    - { name: ${GW_NAME}, config: gw.conf, priority: 1 }`,
      // The gateway here runs no resolver: the default dns probe would fail and the kill switch reject the traffic.
      'health: { probe: [handshake] }',
      `stateDir: ${join(dir, 'state')}`, `control: { socket: ${join(dir, 'control.sock')} }`, 'rules:', `  - cidrs: [${BREAKOUT_DST}/32]`, '    via: breakout', ''].join('\n'), { mode: 0o600 });

    const res = { peer: { breakout: [] as number[], gateway: [] as number[] }, splitwan: { breakout: [] as number[], gateway: [] as number[] } };
    const starts: number[] = [];
    const daemonCpu: number[] = []; // the daemon's own CPU time while both iperf3 runs went on
    let exitsOk = 0;
    let leftovers = 0;
    const measure = async (into: { breakout: number[]; gateway: number[] }) => {
      into.breakout.push(await iperf(BREAKOUT_DST, false));
      into.gateway.push(await iperf(GATEWAY_DST, true));
    };
    const peerRound = async () => {
      // Hand-written router: forward, masquerade out of the WAN and the tunnel, clamp MSS, policy-route to the tunnel.
      const wgGo = kernelWg ? null : await startWgGo(NS.r, IF.peer);
      if (kernelWg) await must(['ip', '-n', NS.r, 'link', 'add', IF.peer, 'type', 'wireguard']);
      await setconf(NS.r, IF.peer, routerWgText);
      await batch(NS.r, [`link set ${IF.peer} mtu 1420 up`, `addr add 10.64.0.2/32 dev ${IF.peer}`, `route add default dev ${IF.peer} table ${PEER_TABLE}`,
        `rule add from 10.99.1.0/24 to ${GATEWAY_DST}/32 lookup ${PEER_TABLE} pref ${PEER_PREF}`]);
      await must(inNs(NS.r, ['nft', '-f', '-']), { input: `table ip bench_peer {\n\tchain mss {\n\t\ttype filter hook postrouting priority mangle; policy accept;\n\t\toifname "${IF.peer}" tcp flags syn tcp option maxseg size set rt mtu\n\t}\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname { "wan0", "${IF.peer}" } masquerade\n\t}\n}\n` });
      await handshake(IF.peer);
      await measure(res.peer);
      await must(['ip', '-n', NS.r, 'rule', 'del', 'pref', PEER_PREF]);
      await must(inNs(NS.r, ['nft', 'delete', 'table', 'ip', 'bench_peer']));
      if (wgGo) await wgGo.stop();
      await sh(['ip', '-n', NS.r, 'link', 'del', IF.peer]); // gone with wireguard-go already; the route too
    };
    const splitwanRound = async () => {
      const t0 = performance.now();
      const d = new Proc('splitwan', inNs(NS.r, [process.execPath, join(import.meta.dirname, '..', '..', 'bin', 'splitwan'), 'run', '--config', cfg]));
      await d.until('"splitwan running"', () => d.tail.includes('splitwan running'), 20_000);
      starts.push(performance.now() - t0);
      await handshake(IF.daemon);
      const cpu0 = cpuMs(d.child.pid!);
      await measure(res.splitwan);
      daemonCpu.push(cpuMs(d.child.pid!) - cpu0);
      const code = await d.stop(10_000);
      if (code !== 0) throw new Error(`splitwan exited ${code} on SIGTERM: ${d.tail.trim().slice(-800)}`);
      exitsOk++;
      const links = (await must(['ip', '-n', NS.r, '-o', 'link', 'show'])).stdout;
      if (links.includes('swg-') || (await sh(inNs(NS.r, ['nft', 'list', 'table', 'inet', 'splitwan']))).code === 0) leftovers++;
    };
    for (let i = 0; i < RUNS; i++) {
      const order = i % 2 === 0 ? [peerRound, splitwanRound] : [splitwanRound, peerRound];
      for (const f of order) await f();
    }

    const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    const r1 = (x: number) => +x.toFixed(1);
    const bp = med(res.peer.breakout), bs = med(res.splitwan.breakout), gp = med(res.peer.gateway), gs = med(res.splitwan.gateway);
    const out = {
      runs: RUNS,
      seconds: SECONDS,
      wireguard: kernelWg ? 'kernel' : 'wireguard-go',
      breakout_peer_mbps: r1(bp),
      breakout_splitwan_mbps: r1(bs),
      gateway_peer_mbps: r1(gp),
      gateway_splitwan_mbps: r1(gs),
      // The ratio is the median of each round's own ratio: the two sides of a
      // round run back to back, so a machine whose load drifts over the minutes
      // of a run moves both (a ratio of medians mixed rounds of different load).
      ratio_breakout: +med(res.splitwan.breakout.map((x, i) => x / res.peer.breakout[i]!)).toFixed(3),
      ratio_gateway: +med(res.splitwan.gateway.map((x, i) => x / res.peer.gateway[i]!)).toFixed(3),
      ratio_of_medians: { breakout: +(bs / bp).toFixed(3), gateway: +(gs / gp).toFixed(3) },
      samples_mbps: { peer: { breakout: res.peer.breakout.map(r1), gateway: res.peer.gateway.map(r1) }, splitwan: { breakout: res.splitwan.breakout.map(r1), gateway: res.splitwan.gateway.map(r1) } },
      daemon_start_ms: Math.round(med(starts)),
      daemon_cpu_ms_during_runs: Math.round(med(daemonCpu)),
      daemon_sigterm_exit0: exitsOk,
      daemon_leftovers: leftovers,
      goal_ratio: GOAL,
    };
    process.stdout.write(
      [
        `iperf3 TCP, 1 stream, ${SECONDS} s, median of ${RUNS}; client → router → isp; gateway tunnel: ${out.wireguard}`,
        `breakout: hand-made ${out.breakout_peer_mbps} Mbit/s, splitwan ${out.breakout_splitwan_mbps} Mbit/s (medians); ratio ${out.ratio_breakout}, the median of the rounds' own ratios (goal >= ${GOAL})`,
        `gateway:  hand-made ${out.gateway_peer_mbps} Mbit/s, splitwan ${out.gateway_splitwan_mbps} Mbit/s (medians); ratio ${out.ratio_gateway}, the median of the rounds' own ratios (goal >= ${GOAL})`,
        `daemon: "splitwan running" after ${out.daemon_start_ms} ms (median), ${out.daemon_cpu_ms_during_runs} ms of its CPU during the ${2 * SECONDS} s of iperf3; SIGTERM exit 0 in ${exitsOk}/${RUNS}; left state behind ${leftovers} time(s)`,
        JSON.stringify(out),
      ].join('\n') + '\n',
    );
    return out;
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
  }
}
