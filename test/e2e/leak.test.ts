// Nothing for a tunnel destination leaves by the WAN (issue 15), in the
// namespace lab (lab/lab.ts), with a capture on the ISP side of the WAN:
//
//  [client] ── lan0 [router: splitwan run] wan0 ──▶ r0 [isp] ◀── counted here: any packet to the web server
//                    swg-<t>a ══ WireGuard ══ [gw1] ── isp     web 10.99.9.9, fd99:9::9
//                    swg-<t>b ══ WireGuard ══ [gw2] ── isp     (a stream server on :8000 writes every 100 ms)
//
// Everything to the web server here takes the tunnel (default: tunnel, no
// rules), so a single packet to it arriving from the router's WAN is a leak:
// it tells the ISP who the client talks to. The cases are the ones where the
// kernel, not a client, makes the packet, and where another program removes
// splitwan's firewall:
//  - a tunnel flow whose conntrack entry is dropped (as on failover) while the
//    server keeps sending: the router's stack answers with resets from the
//    tunnel address;
//  - packets conntrack calls invalid (a SYN-ACK for no connection) and a
//    datagram for no socket, arriving through the tunnel (made with a raw
//    socket in gw1's namespace): a reset and an ICMP port unreachable;
//  - `nft flush ruleset` and our ip rules deleted while connections are made;
//  - IPv6 while the tunnels have none: refused at once, not black-holed.
// Each case also checks the packets it is about were made (seen on the
// router's tunnel interface), so a case that leaks nothing because nothing
// happened fails. Every test runs in both modes. Needs root: CI runs it as root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, type Lab } from '../../lab/lab.js';
import { labConfig, startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
const havePython = spawnSync('python3', ['-c', 'import socket'], { stdio: 'ignore' }).status === 0;
const RAW_SEND = join(import.meta.dirname, '..', 'helpers', 'raw-send.py');
const MODES = ['router', 'host'] as const;
type Mode = (typeof MODES)[number];
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A tcpdump in a namespace; `text` grows as packets are seen. */
class Capture {
  text = '';
  private readonly child: ChildProcess;
  constructor(ns: string, iface: string, filter: string) {
    this.child = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-l', '-n', '-i', iface, filter], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.text += d));
  }
  /** tcpdump says "listening on" once it captures. */
  async ready(): Promise<void> {
    let err = '';
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    await until(() => err.includes('listening on'), 5000, 'tcpdump to listen');
  }
  stop(): void {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}

describe.skipIf(!support.ok && !process.env.CI).each(MODES)('no leak by the WAN (%s mode)', (mode: Mode) => {
  const tag = `k${process.pid % 10000}${mode[0]}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  const from = mode === 'router' ? 'client' : 'router';
  let lab: Lab;
  let dir: string;
  let daemon: Daemon | null = null;
  let stream: ChildProcess | null = null;
  const children: ChildProcess[] = [];

  /** Packets from the router's WAN to the web server (both families), counted by nft in the isp. */
  const leaked = async (): Promise<number> => {
    const r = await lab.exec(lab.ns.isp, ['nft', 'list', 'chain', 'inet', 'leakwatch', 'c']);
    return [...r.stdout.matchAll(/counter packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  };
  const wanCapture = (): Capture => new Capture(lab.ns.isp, lab.ifaces.isp.router, `host ${lab.addr.web.v4} or host ${lab.addr.web.v6}`);
  const tunnelCapture = (): Capture => new Capture(lab.ns.router, `swg-${GW[0]}`, `host ${lab.addr.web.v4}`);
  const tableBack = async (): Promise<boolean> => (await lab.exec(lab.ns.router, ['nft', 'list', 'chain', 'inet', 'splitwan', 'pre'])).code === 0;
  /** Runs `body` with captures on the ISP side of the WAN and on gw1's tunnel; after it, nothing may have reached the ISP. */
  const watched = async (body: (c: { wan: Capture; tun: Capture }) => Promise<void>): Promise<void> => {
    const before = await leaked();
    const wan = wanCapture();
    const tun = tunnelCapture();
    try {
      await Promise.all([wan.ready(), tun.ready()]);
      await body({ wan, tun });
      expect(wan.text, 'packets for the web server on the ISP side of the WAN').toBe('');
      expect((await leaked()) - before).toBe(0);
    } finally {
      wan.stop();
      tun.stop();
    }
  };

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-leak-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    writeFileSync(
      join(dir, 'config.yaml'),
      labConfig({ dir, ispResolver: lab.addr.ispResolver.v4, names: GW, mode, lines: ['health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 3 }', 'rules: []', 'default: tunnel'] }),
      { mode: 0o600 },
    );
    const watch = await lab.exec(lab.ns.isp, ['nft', '-f', '-'], {
      input: `table inet leakwatch {\n\tchain c {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\tiifname "${lab.ifaces.isp.router}" ip daddr ${lab.addr.web.v4} counter\n\t\tiifname "${lab.ifaces.isp.router}" ip6 daddr ${lab.addr.web.v6} counter\n\t}\n}\n`,
    });
    if (watch.code !== 0) throw new Error(`nft in the isp: ${watch.stderr}`);
    // A server that writes to each connection every 100 ms, on the web server's address.
    stream = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, '-e', `require('net').createServer((s)=>{s.on('error',()=>{});const t=setInterval(()=>s.write('x\\n'),100);s.on('close',()=>clearInterval(t));}).listen(8000,'${lab.addr.web.v4}',()=>console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let ready = '';
    stream.stdout!.setEncoding('utf8').on('data', (d: string) => (ready += d));
    await until(() => ready.includes('ready'), 5000, 'the stream server');
    daemon = await startDaemon(lab.ns.router, join(dir, 'config.yaml'));
    await until(async () => {
      const r = await lab.curlEcho(lab.ns[from], `http://${lab.addr.web.v4}/`, { timeoutMs: 1000 });
      return !('error' in r) && r.remote === lab.gateways[0].uplink.v4;
    }, 20_000, 'traffic through gw1');
    expect(await leaked()).toBe(0);
  }, 90_000);

  afterAll(async () => {
    for (const c of [...children, stream]) if (c && c.exitCode === null) c.kill('SIGTERM');
    await teardown({ daemon, lab, dir });
  }, 60_000);

  it('a tunnel flow whose conntrack entry is dropped while the server keeps sending: nothing leaves by the WAN', async () => {
    await watched(async ({ tun }) => {
      const client = spawn('ip', ['netns', 'exec', lab.ns[from], process.execPath, '-e', `const s=require('net').connect(8000,'${lab.addr.web.v4}');let n=0;s.on('data',(d)=>{n+=d.length;console.log(n)});s.on('error',()=>{})`], { stdio: ['ignore', 'pipe', 'ignore'] });
      children.push(client);
      let got = 0;
      client.stdout!.setEncoding('utf8').on('data', (d: string) => (got = Number(d.trim().split('\n').at(-1))));
      await until(() => got >= 20, 10_000, 'the stream to flow');
      const del = await lab.exec(lab.ns.router, ['conntrack', '-D', '-p', 'tcp', '--orig-dst', lab.addr.web.v4, '--orig-port-dst', '8000']);
      expect(del.stderr).toMatch(/[1-9]\d* flow entries have been deleted/);
      const gotAtDelete = got;
      await sleep(2500); // the server's next writes and retransmissions (200, 400, 800 ms...)
      client.kill('SIGTERM');
      if (mode === 'router') {
        // The router's NAT for the flow went with the entry: the server's packets came back through the
        // tunnel to the tunnel address, and the router reset the flow it no longer knew: into the tunnel.
        expect(tun.text).toMatch(/10\.64\.0\.2\.\d+ > 10\.99\.9\.9\.8000: Flags \[R/);
      } else {
        // This machine's socket has the tunnel address itself (its connect was routed into the tunnel):
        // no NAT to lose, the stream goes on through the tunnel.
        expect(got).toBeGreaterThan(gotAtDelete + 20);
        expect(tun.text).toMatch(/10\.99\.9\.9\.8000 > 10\.64\.0\.2\.\d+/);
      }
    });
  }, 30_000);

  it.skipIf(!havePython)('a SYN-ACK for no connection and a datagram for no socket arrive through the tunnel: the reset and the ICMP error stay in it', async () => {
    await watched(async ({ wan, tun }) => {
      const gw = lab.gateways[0].ns;
      for (const argv of [
        ['tcp', lab.addr.web.v4, '8000', lab.addr.tunnelRouter.v4, '40001', 'SA'],
        ['udp', lab.addr.web.v4, '5353', lab.addr.tunnelRouter.v4, '40002', 'hello'],
      ]) {
        const r = await lab.exec(gw, ['python3', RAW_SEND, ...argv]);
        expect(r.code, r.stderr).toBe(0);
      }
      await until(() => /Flags \[R/.test(tun.text) && /ICMP .*port 40002 unreachable/.test(tun.text), 5000, 'the router\'s reset and ICMP error on the tunnel').catch((e: unknown) => {
        throw new Error(`${(e as Error).message}; tunnel saw:\n${tun.text}\nWAN saw:\n${wan.text}`);
      });
      await sleep(500);
    });
  }, 30_000);

  for (const damage of ['nft flush ruleset', 'our ip rules deleted'] as const) {
    it(`${damage} while connections are made: nothing reaches the ISP, and splitwan repairs it`, async () => {
      await watched(async () => {
        const conns = spawn('ip', ['netns', 'exec', lab.ns[from], process.execPath, '-e', `const net=require('net');setInterval(()=>{const s=net.connect(80,'${lab.addr.web.v4}');s.setTimeout(500,()=>s.destroy());s.on('connect',()=>{console.log('ok');s.destroy()});s.on('error',()=>{})},20)`], { stdio: ['ignore', 'pipe', 'ignore'] });
        children.push(conns);
        let ok = 0;
        conns.stdout!.setEncoding('utf8').on('data', (d: string) => (ok += d.split('\n').filter((l) => l === 'ok').length));
        await until(() => ok > 5, 5000, 'connections through the tunnel');
        if (damage === 'nft flush ruleset') {
          const r = await lab.exec(lab.ns.router, ['nft', 'flush', 'ruleset']);
          expect(r.code, r.stderr).toBe(0);
        } else {
          // Every rule at splitwan's priorities, both families (-force: most priorities are unused).
          // Twice: with source-port paths (SPLITWAN_NATIVE=off) a mark's rule has a twin at its priority.
          const dels = Array.from({ length: 200 }, (_, i) => `rule del pref ${5000 + (i % 100)}`).join('\n') + '\n';
          for (const f of ['-4', '-6']) await lab.exec(lab.ns.router, ['ip', f, '-force', '-batch', '-'], { input: dels });
          expect((await lab.exec(lab.ns.router, ['ip', 'rule'])).stdout).not.toMatch(/^50\d\d:/m);
        }
        await until(async () => (await tableBack()) && /^5099:/m.test((await lab.exec(lab.ns.router, ['ip', 'rule'])).stdout), 10_000, 'the repair');
        const okAtRepair = ok;
        await until(() => ok > okAtRepair + 5, 5000, 'connections after the repair');
        conns.kill('SIGTERM');
        await sleep(500);
        expect(daemon!.output.join('\n')).toMatch(/repaired routing state someone removed/);
      });
    }, 40_000);
  }

  it('IPv6 while the tunnels have none (IPv4-only wg-quick files): refused at once, nothing on the WAN', async () => {
    const v4only = (text: string): string =>
      text
        .replace(/^Address = .*$/m, `Address = ${lab.addr.tunnelRouter.v4}/32`)
        .replace(/^DNS = .*$/m, `DNS = ${lab.addr.tunnelGateway.v4}`)
        .replace(/^AllowedIPs = .*$/m, 'AllowedIPs = 0.0.0.0/0');
    writeFileSync(join(dir, 'gw1.conf'), v4only(lab.gateways[0].configText), { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), v4only(lab.gateways[1].configText), { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8') + '# v4-only tunnels\n', { mode: 0o600 });
    await until(async () => !(await lab.exec(lab.ns.router, ['ip', '-6', 'addr', 'show', 'dev', `swg-${GW[0]}`])).stdout.includes('fd64::2'), 15_000, 'the reload to drop the tunnels\' IPv6');
    await until(async () => (await lab.exec(lab.ns.router, ['nft', 'list', 'chain', 'inet', 'splitwan', 'resolve'])).stdout.includes('meta nfproto ipv6'), 15_000, 'the IPv6 refusal');
    await watched(async () => {
      const t = Date.now();
      const r = await lab.curlEcho(lab.ns[from], `http://[${lab.addr.web.v6}]/`, { timeoutMs: 5000 });
      const took = Date.now() - t;
      expect('error' in r ? r.error : `answered: ${JSON.stringify(r)}`).toMatch(/curl exit 7/); // "Couldn't connect", not 28 (timeout)
      expect(took).toBeLessThan(1500); // refused, not left to time out (a black hole takes the whole 5 s)
      // IPv4 still goes through the tunnel.
      const v4 = await lab.curlEcho(lab.ns[from], `http://${lab.addr.web.v4}/`, { timeoutMs: 3000 });
      expect('error' in v4 ? v4.error : v4.remote).toBe(lab.gateways[0].uplink.v4);
      await sleep(300);
    });
  }, 60_000);
});

it.skipIf(support.ok || !!process.env.CI)('no leak by the WAN: SKIPPED', () => {
  console.warn(`SKIPPED e2e test (leak): ${support.ok ? '' : support.why}. CI runs it as root.`);
});

it.skipIf(havePython || !support.ok)('no leak by the WAN, hand-made packets: SKIPPED', () => {
  console.warn('SKIPPED e2e test (leak: a SYN-ACK and a datagram for nothing, made with a raw socket): needs python3. CI has it.');
});
