// Rules by port, by device and by schedule (issue 21), with `splitwan run`
// in the namespace lab (lab/lab.ts), router mode:
//
//  [client] c0 (MAC m) ── lan0 [router: splitwan run] wan0 ── [isp] web 10.99.9.9 :80 and :8080
//                                  (echo servers: the source address they see)
//                            swg-<t>a ══ WireGuard ══ [gw1] ── isp   (seen as 10.99.3.2)
//                            swg-<t>b ══ WireGuard ══ [gw2] ── isp   (seen as 10.99.4.2)
//                            (breakout: seen as 10.99.2.2)
//
// The default path is the tunnel (gw1). What the far server saw says which
// path each request took:
// - a port rule (tcp 8080 via breakout) moves :8080 and leaves :80 alone;
// - a device rule by MAC, then by the host name a DHCP lease gives, sends
//   the client via gw2, and keeps doing so after the client's address changes;
// - a schedule whose window opens a minute ahead: new connections move at
//   the boundary (no reload), a connection open across it keeps its path,
//   and one under a `reroute: true` rule does not.
// Needs root: CI runs as root.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, type Lab } from '../../lab/lab.js';
import { labConfig, slow, startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ALT_PORT = 8080;

const STREAM_PORT = 8081;
/** A second stream server, for a rule with reroute: true. */
const REROUTE_PORT = 8082;
/** A TCP server that answers every line with the source address it sees (one connection = one flow). */
const STREAM_SERVER = `
import net from 'node:net';
const [addr, port] = process.argv.slice(2);
const server = net.createServer((s) => {
  s.on('data', () => s.write(JSON.stringify({ remote: s.remoteAddress.replace(/^::ffff:/, '') }) + '\\n'));
  s.on('error', () => undefined);
});
server.listen(Number(port), addr, () => process.stdout.write('ready\\n'));
process.on('SIGTERM', () => process.exit(0));
`;
/** A client that keeps one TCP connection open, asking every 500 ms until untilMs (epoch), and prints every answer. */
const STREAM_CLIENT = `
import net from 'node:net';
const [addr, port, untilMs] = process.argv.slice(2);
const seen = [];
const s = net.connect(Number(port), addr);
let buf = '';
s.setEncoding('utf8');
s.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\n')) >= 0; buf = buf.slice(i + 1)) seen.push({ ...JSON.parse(buf.slice(0, i)), port: s.localPort, at: Date.now() });
});
s.on('error', (e) => seen.push({ error: String(e), at: Date.now() }));
await new Promise((r) => s.once('connect', r));
while (Date.now() < Number(untilMs) && !s.destroyed) {
  s.write('?\\n');
  await new Promise((r) => setTimeout(r, 500));
}
s.destroy();
process.stdout.write(JSON.stringify(seen) + '\\n');
`;

describe.skipIf(!support.ok && !process.env.CI)('rules by port, device and schedule in the lab', () => {
  const tag = `r${process.pid % 10000}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  let lab: Lab;
  let dir: string;
  let cfg: string;
  let daemon: Daemon | null = null;
  let altEcho: ChildProcess | null = null;
  let stream: ChildProcess | null = null;
  let stream2: ChildProcess | null = null;
  let clientMac = '';
  let reloads = 0;

  const writeConfig = (lines: string[]): void => {
    writeFileSync(cfg, labConfig({ dir, ispResolver: lab.addr.ispResolver.v4, names: GW, mode: 'router', lines: [`devices: { files: [${join(dir, 'dhcp.leases')}] }`, 'rules:', ...lines] }), { mode: 0o600 });
  };
  /** Writes the config and waits until the daemon has applied it. */
  const apply = async (lines: string[]): Promise<void> => {
    const before = daemon!.output.filter((l) => l.includes('config reloaded')).length;
    writeConfig(lines);
    await until(() => daemon!.output.filter((l) => l.includes('config reloaded')).length > before, 10_000, 'the reload');
    reloads++;
  };
  const seen = async (url: string): Promise<string> => {
    const r = await lab.curlEcho(lab.ns.client, url, { timeoutMs: 3000 });
    return 'error' in r ? `error: ${r.error}` : r.remote;
  };
  const web = (): string => `http://${lab.addr.web.v4}/`;
  const webAlt = (): string => `http://${lab.addr.web.v4}:${ALT_PORT}/`;

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false });
    dir = mkdtempSync(join(tmpdir(), 'splitwan-e2e-rules-'));
    cfg = join(dir, 'config.yaml');
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'dhcp.leases'), '');
    // A second echo server on another port, in the isp namespace (our child, stopped by pid).
    altEcho = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, join(ROOT, 'lab', 'echo-server.mjs'), lab.addr.web.v4], { env: { ...process.env, ECHO_PORT: String(ALT_PORT) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let ready = false;
    altEcho.stdout!.on('data', (d: Buffer) => (ready ||= d.toString().includes('ready')));
    await until(() => ready, 10_000, 'the second echo server');
    writeFileSync(join(dir, 'stream-server.mjs'), STREAM_SERVER);
    stream = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, join(dir, 'stream-server.mjs'), lab.addr.web.v4, String(STREAM_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let streamReady = false;
    stream.stdout!.on('data', (d: Buffer) => (streamReady ||= d.toString().includes('ready')));
    await until(() => streamReady, 10_000, 'the stream server');
    stream2 = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, join(dir, 'stream-server.mjs'), lab.addr.web.v4, String(REROUTE_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stream2Ready = false;
    stream2.stdout!.on('data', (d: Buffer) => (stream2Ready ||= d.toString().includes('ready')));
    await until(() => stream2Ready, 10_000, 'the second stream server');
    const link = await lab.exec(lab.ns.client, ['ip', '-j', 'link', 'show', 'c0']);
    clientMac = (JSON.parse(link.stdout) as { address: string }[])[0]!.address;
    writeConfig(['  - cidrs: [198.51.100.0/24]', '    via: breakout']);
    daemon = await startDaemon(lab.ns.router, cfg);
    await until(async () => (await seen(web())) === lab.gateways[0].uplink.v4, 10_000, 'the default path (gw1)');
  }, slow(90_000));

  afterAll(async () => {
    await teardown({
      daemon,
      lab,
      dir,
      beforeDestroy: async () => {
        for (const p of [altEcho, stream, stream2]) {
          if (p && p.exitCode === null) {
            p.kill('SIGTERM');
            await new Promise((r) => p.once('exit', r));
          }
        }
      },
    });
  }, 60_000);

  it('a port rule: tcp 8080 via the breakout, port 80 stays on the tunnel', async () => {
    await apply(['  - ports: [8080]', '    protocol: tcp', '    via: breakout']);
    await until(async () => (await seen(webAlt())) === lab.addr.routerWan.v4, 8000, ':8080 via the breakout');
    expect(await seen(web())).toBe(lab.gateways[0].uplink.v4);
    // A range that does not hold 8080, and udp only: the rule no longer takes it.
    await apply(['  - ports: ["8081-9000"]', '    protocol: tcp', '    via: breakout', '  - ports: [8080]', '    protocol: udp', '    via: breakout']);
    await until(async () => (await seen(webAlt())) === lab.gateways[0].uplink.v4, 8000, ':8080 back on the tunnel');
  }, slow(40_000));

  it('a device rule by MAC, then by a DHCP lease\'s host name, follows the client across an address change', async () => {
    await apply(['  - devices: [' + clientMac.toUpperCase() + ']', `    via: ${GW[1]}`]);
    await until(async () => (await seen(web())) === lab.gateways[1].uplink.v4, 8000, 'the device via gw2');
    // By name: no lease yet, so the rule matches nothing (the default path), then the lease appears.
    await apply(['  - devices: [kids-tablet]', `    via: ${GW[1]}`]);
    await until(async () => (await seen(web())) === lab.gateways[0].uplink.v4, 8000, 'no device known: the default path');
    writeFileSync(join(dir, 'dhcp.leases'), `${Math.floor(Date.now() / 1000) + 3600} ${clientMac} ${lab.addr.client.v4} kids-tablet *\n`);
    await until(async () => (await seen(web())) === lab.gateways[1].uplink.v4, 20_000, 'the lease read: the device via gw2');
    // The client takes another address; matched by MAC, it stays on gw2.
    const c = lab.ns.client;
    // (Deleting a primary address takes its secondaries along: the old one goes first.)
    await lab.exec(c, ['ip', 'addr', 'del', `${lab.addr.client.v4}/24`, 'dev', 'c0']);
    await lab.exec(c, ['ip', 'addr', 'add', '10.99.1.77/24', 'dev', 'c0']);
    await lab.exec(c, ['ip', 'route', 'replace', 'default', 'via', lab.addr.routerLan.v4]);
    try {
      const r = await lab.curlEcho(c, web(), { timeoutMs: 3000 });
      expect('error' in r ? r.error : r.remote).toBe(lab.gateways[1].uplink.v4);
    } finally {
      await lab.exec(c, ['ip', 'addr', 'del', '10.99.1.77/24', 'dev', 'c0']);
      await lab.exec(c, ['ip', 'addr', 'add', `${lab.addr.client.v4}/24`, 'dev', 'c0']);
      await lab.exec(c, ['ip', 'route', 'replace', 'default', 'via', lab.addr.routerLan.v4]);
    }
  }, slow(60_000));

  it('a schedule: new connections move at the boundary without a reload; an open connection keeps its path', async () => {
    // The window opens at the next minute that is at least 25 s away (UTC), for two minutes.
    const now = Date.now();
    let start = Math.ceil(now / 60_000) * 60_000;
    if (start - now < 25_000) start += 60_000;
    const hhmm = (t: number): string => new Date(t).toISOString().slice(11, 16);
    const when = `    when: { time: "${hhmm(start)}-${hhmm(start + 120_000)}", timezone: UTC }`;
    await apply([
      `  - cidrs: ["${lab.addr.web.v4}/32"]`,
      `    ports: [${REROUTE_PORT}]`,
      when,
      '    reroute: true',
      '    via: breakout',
      `  - cidrs: ["${lab.addr.web.v4}/32"]`,
      when,
      '    via: breakout',
    ]);
    const reloadsBefore = daemon!.output.filter((l) => l.includes('config reloaded')).length;
    expect(await seen(web())).toBe(lab.gateways[0].uplink.v4);
    // One connection kept open across the boundary.
    const script = join(dir, 'stream-client.mjs');
    writeFileSync(script, STREAM_CLIENT);
    const ka = lab.exec(lab.ns.client, [process.execPath, script, lab.addr.web.v4, String(STREAM_PORT), String(start + 6_000)], { timeoutMs: start + 20_000 - Date.now() });
    // And one under the reroute rule.
    const kr = lab.exec(lab.ns.client, [process.execPath, script, lab.addr.web.v4, String(REROUTE_PORT), String(start + 6_000)], { timeoutMs: start + 20_000 - Date.now() });
    await new Promise((r) => setTimeout(r, Math.max(0, start - 3_000 - Date.now())));
    expect(await seen(web())).toBe(lab.gateways[0].uplink.v4); // just before: still the tunnel
    await until(async () => Date.now() >= start && (await seen(web())) === lab.addr.routerWan.v4, 10_000, 'new connections via the breakout after the boundary');
    const moved = Date.now();
    expect(moved - start).toBeLessThan(slow(5_000));
    const out = await ka;
    const answers = JSON.parse(out.stdout) as { remote?: string; port?: number; at: number; error?: string }[];
    expect(answers.filter((a) => a.error)).toEqual([]);
    expect(answers.some((a) => a.at > start + 2_000)).toBe(true);
    // Same connection (one local port) before and after the boundary, and the same path: gw1.
    expect(new Set(answers.map((a) => a.port)).size).toBe(1);
    expect(new Set(answers.map((a) => a.remote))).toEqual(new Set([lab.gateways[0].uplink.v4]));
    // reroute: true: the open connection does not stay on its path. It was on gw1 before the
    // boundary; after it its packets take the breakout, where the tunnel's NAT binding does not
    // hold (the kernel drops them), so it gets no answer there: the application reconnects.
    const rerouted = JSON.parse((await kr).stdout) as { remote?: string; port?: number; at: number; error?: string }[];
    expect(rerouted.filter((a) => a.at < start - 1_000).map((a) => a.remote)).toContain(lab.gateways[0].uplink.v4);
    expect(rerouted.filter((a) => a.at > start + 1_500 && a.remote === lab.gateways[0].uplink.v4)).toEqual([]);
    // A new connection to that port takes the breakout.
    const fresh = await lab.exec(lab.ns.client, [process.execPath, script, lab.addr.web.v4, String(REROUTE_PORT), String(Date.now() + 800)], { timeoutMs: 10_000 });
    expect((JSON.parse(fresh.stdout) as { remote?: string }[])[0]?.remote).toBe(lab.addr.routerWan.v4);
    // No reload happened: the kernel's rule was switched by the scheduler.
    expect(daemon!.output.filter((l) => l.includes('config reloaded')).length).toBe(reloadsBefore);
    expect(reloads).toBeGreaterThan(0);
  }, slow(150_000));
});

it.skipIf(support.ok || !!process.env.CI)('rules by port, device and schedule in the lab: SKIPPED', () => {
  console.warn(`SKIPPED e2e test (rules): ${support.ok ? '' : support.why}. CI runs it as root.`);
});
