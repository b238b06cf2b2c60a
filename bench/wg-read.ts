// What reading a WireGuard link's state costs the daemon, per read (the
// handshake probe reads each tunnel about once a second), side by side in
// one run:
//
//   `wg show IF dump` spawned through the daemon's runner (the fallback, and
//      what a kernel link cost before): CPU of this process + the child's
//   a generic netlink round trip on the daemon's socket (GenlSocket: send,
//      recv MSG_DONTWAIT) + decoding a WG_CMD_GET_DEVICE answer of the same
//      device (one peer, two allowed IPs) built per linux/wireguard.h
//
// This machine's kernel has no WireGuard module, so no kernel link can be
// read here: the round trip is CTRL_CMD_GETFAMILY (the same socket calls, a
// one-message answer of a similar size, answered by the kernel), and `wg`
// reads a wireguard-go link (over its UAPI socket; on a kernel link it would
// use netlink itself: the process's start-up is the cost either way).
//
//   [sw-wr<pid>]  node (child) ──spawn──▶ wg show swr0 dump ──UAPI──▶ wireguard-go swr0
//                              └─NETLINK_GENERIC──▶ kernel (nlctrl)
//
// Needs root (a namespace, created and removed here). Bounded: WR_N (200)
// spawns, 20 × WR_N netlink reads.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const N = Number(process.env.WR_N ?? 200);
const NS = `sw-wr${process.pid}`;
const IF = 'swr0';
const dist = (p: string): string => pathToFileURL(join(import.meta.dirname, '..', p)).href;

/** The child's measuring script: figures as one JSON line. */
const child = `
  const { readFileSync } = await import('node:fs');
  const { linuxRunner } = await import(${JSON.stringify(dist('daemon/exec-linux.js'))});
  const { parseWgDump } = await import(${JSON.stringify(dist('daemon/os-parse.js'))});
  const { GenlSocket } = await import(${JSON.stringify(dist('sys/genetlink-linux.js'))});
  const { NetlinkWriter } = await import(${JSON.stringify(dist('sys/netlink.js'))});
  const { decodeGetDevice } = await import(${JSON.stringify(dist('daemon/tunnel/wg-netlink.js'))});
  // utime+stime of this process and of its waited-for children, ms (USER_HZ 100).
  const cpu = () => {
    const s = readFileSync('/proc/self/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { self: (+f[11] + +f[12]) * 10, children: (+f[13] + +f[14]) * 10 };
  };
  const N = ${N};
  // 1. the spawn
  let c0 = cpu(); let t0 = performance.now(); let peers = 0;
  for (let i = 0; i < N; i++) peers += parseWgDump((await linuxRunner.run(['wg', 'show', '${IF}', 'dump'])).stdout).peers.length;
  let c1 = cpu();
  const spawnRes = { reads: N, selfUs: (c1.self - c0.self) * 1000 / N, childUs: (c1.children - c0.children) * 1000 / N, wallUs: (performance.now() - t0) * 1000 / N, peers: peers / N };
  // 2. netlink: a round trip answered by the kernel, and decoding a device's answer
  const w = new NetlinkWriter();
  const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
  const nla = (t, d) => { const b = Buffer.alloc((4 + d.length + 3) & ~3); b.writeUInt16LE(4 + d.length); b.writeUInt16LE(t, 2); d.copy(b, 4); return b; };
  const nest = (t, ...m) => { const d = Buffer.concat(m); const h = Buffer.alloc(4); h.writeUInt16LE(4 + d.length); h.writeUInt16LE(t | 0x8000, 2); return Buffer.concat([h, d]); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; };
  const msg = (type, flags, p) => { const h = Buffer.alloc(16); h.writeUInt32LE(16 + p.length); h.writeUInt16LE(type, 4); h.writeUInt16LE(flags, 6); h.writeUInt32LE(7, 8); return Buffer.concat([h, p]); };
  const sin = Buffer.concat([u16(2), Buffer.from([0xca, 0x6c, 10, 0, 0, 1]), Buffer.alloc(8)]);
  const allowed = (fam, ip, cidr) => nest(0, nla(1, u16(fam)), nla(2, Buffer.from(ip)), nla(3, Buffer.from([cidr])));
  const peer = nest(0, nla(1, Buffer.alloc(32, 1)), nla(2, Buffer.alloc(32)), nla(4, sin), nla(5, u16(25)), nla(6, Buffer.concat([u64(1765000000n), u64(5n)])), nla(7, u64(1000n)), nla(8, u64(2000n)), nest(9, allowed(2, [0, 0, 0, 0], 0), allowed(10, Array(16).fill(0), 0)), nla(10, Buffer.alloc(4)));
  const answer = Buffer.concat([msg(0x1b, 2, Buffer.concat([Buffer.from([0, 1, 0, 0]), nla(1, Buffer.alloc(4)), nla(2, Buffer.from('swr0\\0')), nla(3, Buffer.alloc(32, 9)), nla(4, Buffer.alloc(32, 8)), nla(6, u16(51820)), nla(7, Buffer.alloc(4)), nest(8, peer)])), msg(3, 2, Buffer.alloc(4))]);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('this bench builds little-endian fixtures');
  const s = GenlSocket.open();
  const M = N * 20;
  c0 = cpu(); t0 = performance.now(); let ok = 0;
  for (let i = 0; i < M; i++) {
    if (s.family('nlctrl')) ok++;
    ok += decodeGetDevice([answer], 7, 0x1b).peers.length - 1;
  }
  c1 = cpu();
  s.close();
  const nlRes = { reads: M, selfUs: (c1.self - c0.self) * 1000 / M, childUs: 0, wallUs: (performance.now() - t0) * 1000 / M, ok: ok === M };
  console.log(JSON.stringify({ spawn: spawnRes, netlink: nlRes }));
`;

export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench wg-read needs root (a network namespace)');
  const dir = mkdtempSync(join(tmpdir(), 'sw-wr-'));
  let wgGo: ReturnType<typeof spawn> | null = null;
  execFileSync('ip', ['netns', 'add', NS]);
  try {
    const inNs = (argv: string[]): string => execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8' });
    inNs(['ip', 'link', 'set', 'lo', 'up']);
    wgGo = spawn('ip', ['netns', 'exec', NS, 'wireguard-go', '-f', IF], { env: { ...process.env, WG_PROCESS_FOREGROUND: '1' }, stdio: 'ignore' });
    for (let i = 0; i < 200 && spawnSync('ip', ['netns', 'exec', NS, 'wg', 'show', IF]).status !== 0; i++) await new Promise((r) => setTimeout(r, 25));
    // A key (through a 0600 file) and one peer, so the dump is a configured tunnel's.
    writeFileSync(join(dir, 'key'), execFileSync('wg', ['genkey'], { encoding: 'utf8' }), { mode: 0o600 });
    const peer = execFileSync('wg', ['pubkey'], { input: execFileSync('wg', ['genkey']), encoding: 'utf8' }).trim();
    inNs(['wg', 'set', IF, 'private-key', join(dir, 'key'), 'peer', peer, 'allowed-ips', '0.0.0.0/0,::/0', 'endpoint', '10.0.0.1:51820', 'persistent-keepalive', '25']);
    const out = execFileSync('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', child], { encoding: 'utf8', maxBuffer: 1 << 20 });
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as { spawn: { selfUs: number; childUs: number; wallUs: number; peers: number }; netlink: { selfUs: number; wallUs: number; ok: boolean } };
    if (r.spawn.peers !== 1 || !r.netlink.ok) throw new Error(`a read did not see the device: ${out}`);
    const spawnCpu = r.spawn.selfUs + r.spawn.childUs;
    const nlCpu = r.netlink.selfUs;
    console.log(`wg show dump (spawned): ${spawnCpu.toFixed(0)} us of CPU a read (${r.spawn.selfUs.toFixed(0)} in the daemon, ${r.spawn.childUs.toFixed(0)} in wg), wall ${r.spawn.wallUs.toFixed(0)} us`);
    console.log(`generic netlink round trip + decoding a device's answer: ${nlCpu.toFixed(1)} us of CPU a read, wall ${r.netlink.wallUs.toFixed(1)} us`);
    console.log(`ratio: ${(spawnCpu / nlCpu).toFixed(0)}x the CPU for the spawn; at 4 kernel tunnels read once a second: ${((4 * spawnCpu) / 1e4).toFixed(2)} % of a core against ${((4 * nlCpu) / 1e4).toFixed(3)} %`);
    console.log(JSON.stringify({ bench: 'wg-read', node: process.version, reads: { spawn: N, netlink: N * 20 }, cpuUsPerRead: { wgShowDump: Math.round(spawnCpu), wgShowDumpInDaemon: Math.round(r.spawn.selfUs), netlink: Number(nlCpu.toFixed(1)) }, wallUsPerRead: { wgShowDump: Math.round(r.spawn.wallUs), netlink: Number(r.netlink.wallUs.toFixed(1)) }, ratio: Number((spawnCpu / nlCpu).toFixed(1)), note: 'netlink side: CTRL_CMD_GETFAMILY round trip + decoding a fixture device answer (no WireGuard module in this kernel)' }));
  } finally {
    if (wgGo?.pid && wgGo.exitCode === null) {
      const exited = new Promise((r) => wgGo!.once('exit', r));
      process.kill(wgGo.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    }
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(dir, { recursive: true, force: true });
  }
}
