// Generic netlink against the real kernel (sys/genetlink-linux.ts), and the
// choice LinuxTunnels makes from what it finds (daemon/tunnel/wg-netlink-linux.ts).
// A socket acts in the namespace of the process that opens it, so the calls
// run in a child Node process started inside a namespace this test creates,
// using the built modules (dist/, made by `npm test` before vitest):
//
//   [sw-gn-<pid>]  node: GenlSocket → nlctrl (by name, and a dump of every family)
//                        WgNetlink   → "wireguard" (absent here: the fallback)
//                        LinuxTunnels (mode kernel, a canned runner) → `wg show dump`, said once
//
// What the answers are compared with: iproute2's `genl ctrl` in the same
// namespace. Where the kernel has WireGuard (CI's may), a kernel link is made
// in the namespace and read both ways (netlink, `wg show dump`); this
// machine's kernel has none, so that part says SKIPPED.
//
// Needs root.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWgDump } from '../../daemon/os-parse.js';

const NS = `sw-gn-${process.pid}`;
const root = join(import.meta.dirname, '..', '..');
const dist = (p: string): string => pathToFileURL(join(root, 'dist', p)).href;
const supported = process.getuid?.() === 0 && spawnSync('genl', ['help']).error === undefined;
const why = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : 'iproute2 `genl` is not installed';

/** Runs an ES module body in a Node process inside the namespace; its last stdout line, parsed. */
function inNs<T>(body: string, env: NodeJS.ProcessEnv = {}): T {
  const out = execFileSync('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', body], { encoding: 'utf8', env: { ...process.env, ...env } });
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}

/** `genl ctrl list` / `genl ctrl get name X`: name → id, in the namespace. */
function genlCtrl(...args: string[]): Map<string, number> {
  const r = spawnSync('ip', ['netns', 'exec', NS, 'genl', 'ctrl', ...args], { encoding: 'utf8' });
  const out = new Map<string, number>();
  for (const m of r.stdout.matchAll(/Name: (\S+)\s*\n\s*ID: (0x[0-9a-f]+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

const kernelHasWireGuard = (): boolean => {
  const probe = `swgp${process.pid % 10000}`;
  const r = spawnSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'add', probe, 'type', 'wireguard']);
  if (r.status !== 0) return false;
  spawnSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'del', probe]);
  return true;
};

/** Under `npm run test:arch` the child Node is emulated: qemu-user refuses every netlink protocol but route, uevent and audit. */
const emulated = process.env.SPLITWAN_ARCH_POOL === 'emulated';

describe.skipIf(!supported && !process.env.CI)('generic netlink in a namespace (real kernel)', () => {
  let wireguard = false;
  /** Why the socket cannot be had here (only acceptable emulated: qemu refuses it, or koffi has no build), or null. */
  let refused: string | null = null;
  let refusedCode = '';
  /** A loud skip when the emulator refuses the socket; natively a refusal fails the test where it shows. */
  const skipRefused = (what: string): boolean => {
    if (refused === null) return false;
    console.warn(`genetlink lab: SKIPPED ${what}: ${refused} (emulated: qemu-user refuses NETLINK_GENERIC sockets, or koffi has no build for the architecture)`);
    return true;
  };

  beforeAll(() => {
    if (!supported) throw new Error(`lab test cannot run: ${why}`);
    if (!existsSync(join(root, 'dist', 'sys', 'genetlink-linux.js'))) throw new Error('dist/ is missing: run npm run build (npm test does)');
    execFileSync('ip', ['netns', 'add', NS]);
    wireguard = kernelHasWireGuard();
    if (emulated) {
      const probe = inNs<{ error: string | null; code: string }>(`
        const { GenlSocket } = await import(${JSON.stringify(dist('sys/genetlink-linux.js'))});
        try { GenlSocket.open().close(); console.log(JSON.stringify({ error: null, code: '' })); } catch (e) { console.log(JSON.stringify({ error: e.message, code: e.code })); }`);
      refused = probe.error;
      refusedCode = probe.code;
    }
  });

  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NS]);
  });

  it('resolves families by name as `genl ctrl get` does, and dumps every one as `genl ctrl list` lists them', () => {
    if (skipRefused('family lookups')) return;
    const got = inNs<{ nlctrl: unknown; ethtool: unknown; missing: unknown; all: { name: string; id: number }[] }>(`
      const { GenlSocket } = await import(${JSON.stringify(dist('sys/genetlink-linux.js'))});
      const s = GenlSocket.open();
      const out = { nlctrl: s.family('nlctrl'), ethtool: s.family('ethtool'), missing: s.family('nosuch${process.pid % 100000}'), all: s.families() };
      s.close();
      console.log(JSON.stringify(out));`);
    expect(got.nlctrl).toEqual({ name: 'nlctrl', id: 0x10, version: expect.any(Number) });
    const ethtool = genlCtrl('get', 'name', 'ethtool').get('ethtool');
    if (ethtool === undefined) console.warn('genetlink lab: SKIPPED the ethtool comparison: this kernel has no ethtool family');
    else expect(got.ethtool).toMatchObject({ name: 'ethtool', id: ethtool });
    expect(got.missing).toBeNull();
    const listed = genlCtrl('list');
    expect(listed.size).toBeGreaterThan(3);
    expect(new Map(got.all.map((f) => [f.name, f.id]))).toEqual(listed);
  });

  it('a dump over several recv()s (CTRL_CMD_GETPOLICY of nlctrl: several messages, then NLMSG_DONE) is read to its end', () => {
    if (skipRefused('a dump over several reads')) return;
    const got = inNs<{ chunks: number; messages: number; complete: boolean; cmds: number[] }>(`
      const { GenlSocket } = await import(${JSON.stringify(dist('sys/genetlink-linux.js'))});
      const { genlAnswers, GENL_ID_CTRL } = await import(${JSON.stringify(dist('sys/genetlink.js'))});
      const s = GenlSocket.open();
      // CTRL_CMD_GETPOLICY (10) of a family by name: one message per policy attribute.
      const { chunks, seq } = s.request((q, w) => { w.len = 0; const m = w.header(GENL_ID_CTRL, 0x301, q); w.genl(10, 1); w.string(2, 'nlctrl'); w.end(m); return w.bytes(); }, { dump: true });
      const a = genlAnswers(chunks, seq, { dump: true });
      // The next request on the same socket still gets its own answer.
      const again = s.family('nlctrl');
      s.close();
      console.log(JSON.stringify({ chunks: chunks.length, messages: a.messages.length, complete: a.complete && again.id === 0x10, cmds: [...new Set(a.messages.map((m) => m.cmd))] }));`);
    expect(got.chunks).toBeGreaterThanOrEqual(2);
    expect(got.messages).toBeGreaterThan(1);
    expect(got.complete).toBe(true);
    expect(got.cmds).toEqual([10]);
  });

  it('"wireguard": absent → LinuxTunnels reads kernel links with `wg show dump`, saying why once; present → resolved', () => {
    const got = inNs<{ open: string; lines: { level: string; msg: string; reason?: string }[]; calls: string[][]; status: unknown }>(`
      const { WgNetlink } = await import(${JSON.stringify(dist('daemon/tunnel/wg-netlink-linux.js'))});
      const { LinuxTunnels, WG_NETLINK_PATH } = await import(${JSON.stringify(dist('daemon/tunnel/tunnels-linux.js'))});
      let open;
      try { WgNetlink.open().close(); open = 'opened'; } catch (e) { open = e.code + ': ' + e.message; }
      const lines = [];
      const rec = (level) => (obj, msg) => lines.push({ level, msg, ...obj });
      const log = { trace() {}, debug() {}, info: rec('info'), warn: rec('warn'), error: rec('error'), child() { return log; } };
      const calls = [];
      const key = Buffer.alloc(32, 7).toString('base64');
      const runner = { run: async (argv) => { calls.push(argv); return { code: 0, stderr: '', stdout: argv[1] === 'show' ? key + '\\t' + key + '\\t51820\\toff\\n' + key + '\\t(none)\\t192.0.2.1:51820\\t0.0.0.0/0\\t1700000000\\t5\\t6\\toff\\n' : '' }; } };
      // The real default reader (no openWgNetlink given): in this namespace, through the kernel.
      const t = new LinuxTunnels({ runner, mode: 'kernel', logger: log, linkState: 'sysfs' });
      await t.set([{ name: 'a', ifname: 'swg-gn', privateKey: key, addresses: ['10.9.0.2/32'], mtu: 1420, fwmark: 0, peer: { publicKey: key, endpoint: { host: '192.0.2.1', port: 51820 }, allowedIPs: ['0.0.0.0/0'] } }]);
      calls.length = 0;
      const status = (await t.status())[0];
      await t.status();
      await t.close();
      console.log(JSON.stringify({ open, lines: lines.filter((l) => l.msg?.includes(WG_NETLINK_PATH)), calls: calls.filter((c) => c[0] === 'wg'), status }));`);
    if (wireguard) {
      // The canned runner made no link: the kernel says ENODEV, read as "unreadable" (no process).
      expect(got.open).toBe('opened');
      expect(got.lines).toEqual([]);
      expect(got.calls).toEqual([]);
      return;
    }
    // Emulated, the socket itself is refused: the same fallback, for that reason.
    const reason = refused ?? 'netlink: the kernel has no generic netlink family "wireguard" (no WireGuard module loaded)';
    expect(got.open).toBe(`${refused === null ? 'SPLITWAN_NETLINK' : refusedCode}: ${reason}`);
    expect(got.lines).toEqual([expect.objectContaining({ level: 'warn', reason })]);
    expect(got.calls).toEqual([
      ['wg', 'show', 'swg-gn', 'dump'],
      ['wg', 'show', 'swg-gn', 'dump'],
    ]);
    expect(got.status).toMatchObject({ latestHandshake: 1_700_000_000_000, rxBytes: 5, txBytes: 6, endpoint: '192.0.2.1:51820' });
  });

  it('SPLITWAN_NATIVE=off: the socket is never opened, the fallback said as chosen', () => {
    const got = inNs<{ open: string }>(`
      const { WgNetlink } = await import(${JSON.stringify(dist('daemon/tunnel/wg-netlink-linux.js'))});
      let open;
      try { WgNetlink.open().close(); open = 'opened'; } catch (e) { open = e.code + ': ' + e.message; }
      console.log(JSON.stringify({ open }));`, { SPLITWAN_NATIVE: 'off' });
    expect(got.open).toBe('SPLITWAN_NATIVE_KOFFI: native code is off (SPLITWAN_NATIVE=off)');
  });

  it('a kernel WireGuard link read over netlink says what `wg show dump` says', () => {
    if (skipRefused('reading a live kernel WireGuard link')) return;
    if (!wireguard) {
      console.warn('genetlink lab: SKIPPED reading a live kernel WireGuard link: this kernel has no WireGuard module (`ip link add type wireguard` fails); its decoding is tested against fixtures (test/unit/wg-netlink.test.ts)');
      return;
    }
    const ns = (argv: string[]): string => execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8' });
    const link = `swgk${process.pid % 10000}`;
    ns(['ip', 'link', 'add', link, 'type', 'wireguard']);
    try {
      const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
      const peers = [1, 2, 3].map(() => execFileSync('wg', ['pubkey'], { input: execFileSync('wg', ['genkey']), encoding: 'utf8' }).trim());
      // The private key through a 0600 file, never argv (wg cannot read a socketpair's /dev/stdin).
      const dir = mkdtempSync(join(tmpdir(), 'sw-gn-'));
      try {
        writeFileSync(join(dir, 'key'), priv, { mode: 0o600 });
        ns(['wg', 'set', link, 'private-key', join(dir, 'key'), 'listen-port', '51999']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      ns(['wg', 'set', link, 'peer', peers[0]!, 'endpoint', '192.0.2.1:51820', 'allowed-ips', '10.1.0.0/16,fd01::/64', 'persistent-keepalive', '25']);
      ns(['wg', 'set', link, 'peer', peers[1]!, 'endpoint', '[2001:db8::1]:443', 'allowed-ips', '10.2.0.0/16']);
      ns(['wg', 'set', link, 'peer', peers[2]!, 'allowed-ips', '10.3.0.1/32']);
      const viaWg = parseWgDump(ns(['wg', 'show', link, 'dump'])).peers;
      const viaNl = inNs<unknown[]>(`
        const { WgNetlink } = await import(${JSON.stringify(dist('daemon/tunnel/wg-netlink-linux.js'))});
        const r = WgNetlink.open();
        console.log(JSON.stringify(await r.peers(${JSON.stringify(link)})));
        r.close();`);
      expect(viaNl).toEqual(viaWg);
    } finally {
      spawnSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'del', link]);
    }
  });
});
