// Allow-LAN in host mode (issue 16): with every gateway dead and the kill
// switch engaged, the laptop still reaches the networks it is directly on
// (a printer on its LAN, a portal's gateway on its Wi-Fi), and nothing else
// leaves bare, in the namespace lab (lab/lab.ts):
//
//  [client: "the printer"] c0 10.99.1.2 :80 (echo) ── lan0 10.99.1.1 [router: the laptop, splitwan run, host mode]
//                                                     wan0 10.99.2.2 ──▶ 10.99.2.1 [isp: "the portal's gateway"]
//                                                                        web 10.99.9.9 (a tunnel destination)
//                                                     swg-* ══ WireGuard ══ [gw1] [gw2]  (both black-holed)
//
// A capture on the ISP side of wan0 counts packets to the web server: with
// the kill switch engaged there must be none. `tunnel.allowLan: false`
// (a reload) takes the LAN away again: the same checks then fail, so they
// can fail. Needs root: CI runs it as root.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, run, Supervised, type Lab } from '../../lab/lab.js';
import { daemonNode, labConfig, startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
if (!support.ok) console.warn(`[test/e2e/laptop-lan] SKIPPED: the lab cannot run here: ${support.why}`);
const root = join(import.meta.dirname, '..', '..');
const PRINTER = '10.99.1.2';
const PORTAL_GW = '10.99.2.1';

describe.skipIf(!support.ok && !process.env.CI)('allow-LAN in host mode', () => {
  const tag = `a${process.pid % 10000}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  let lab: Lab;
  let dir = '';
  let cfg = '';
  let daemon: Daemon | null = null;
  const servers: Supervised[] = [];
  let capture: ChildProcess | null = null;
  let captured = '';

  const config = (allowLan: boolean) =>
    labConfig({
      dir,
      ispResolver: lab.addr.ispResolver.v4,
      names: GW,
      mode: 'host',
      lines: ['health: { interval: 500ms, timeout: 400ms, failAfter: 2, recoverAfter: 2 }', ...(allowLan ? [] : ['# allow-LAN off']), 'rules: []', 'default: tunnel'],
    }).replace(/^tunnel:$/m, `tunnel:\n  allowLan: ${allowLan}`);
  const splitwan = (...args: string[]) => run([...daemonNode(), join(root, 'bin', 'splitwan'), ...args, '--config', cfg], { timeoutMs: 20_000 });
  const curl = async (url: string): Promise<string> => {
    const r = await lab.curlEcho(lab.ns.router, url, { timeoutMs: 3000 });
    return 'error' in r ? `error: ${r.error}` : r.remote;
  };

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-lan-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, config(true), { mode: 0o600 });
    // Web pages on the printer and on the Wi-Fi's gateway (where a portal would answer).
    for (const [ns, addr] of [[lab.ns.client, PRINTER], [lab.ns.isp, PORTAL_GW]] as const) {
      const p = new Supervised(`echo ${addr}`, 'echo', ['ip', 'netns', 'exec', ns, process.execPath, join(root, 'lab', 'echo-server.mjs'), addr], process.env);
      servers.push(p);
      await p.waitUntil(`the web server on ${addr}`, () => /ready/.test(p.tail), 10_000);
    }
    daemon = await startDaemon(lab.ns.router, cfg);
  }, 90_000);

  afterAll(async () => {
    if (capture?.exitCode === null) capture.kill('SIGTERM');
    await Promise.all(servers.map((p) => p.stop(2000)));
    await teardown({ daemon, lab, dir });
  }, 60_000);

  it('kill switch engaged: the printer on the LAN and the gateway on the Wi-Fi answer; the tunnel destination is refused and nothing for it reaches the ISP', async () => {
    await until(async () => (await curl(`http://${lab.addr.web.v4}/`)) === lab.gateways[0].uplink.v4, 15_000, 'traffic through gw1');
    // Healthy: the gateway on the WAN's own subnet is reached directly too (a tunnel mark there would meet the WAN guard).
    expect(await curl(`http://${PORTAL_GW}/`)).toBe(lab.addr.routerWan.v4);
    await lab.blackholeGateway(0, true);
    await lab.blackholeGateway(1, true);
    await until(async () => JSON.parse((await splitwan('status', '--json')).stdout || '{}')?.killSwitch?.engaged === true, 30_000, 'the kill switch to engage');
    capture = spawn('ip', ['netns', 'exec', lab.ns.isp, 'tcpdump', '-l', '-n', '-i', lab.ifaces.isp.router, `host ${lab.addr.web.v4} or host ${lab.addr.web.v6}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    capture.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    capture.stdout!.setEncoding('utf8').on('data', (d: string) => (captured += d));
    await until(() => err.includes('listening on'), 5000, 'tcpdump to listen');

    // The printer's web page: the source it saw is the laptop's LAN address, not a tunnel's.
    expect(await curl(`http://${PRINTER}/`)).toBe(lab.addr.routerLan.v4);
    // The Wi-Fi's gateway (where a captive portal answers).
    expect(await curl(`http://${PORTAL_GW}/`)).toBe(lab.addr.routerWan.v4);
    // A tunnel destination: refused at once (admin-prohibited), never sent bare.
    expect(await curl(`http://${lab.addr.web.v4}/`)).toMatch(/^error: /);
    await new Promise((r) => setTimeout(r, 500));
    expect(captured).toBe('');
  }, 90_000);

  it('tunnel.allowLan: false (reload): the kill switch cuts the LAN too', async () => {
    writeFileSync(cfg, config(false), { mode: 0o600 });
    const r = await splitwan('reload');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await curl(`http://${PRINTER}/`)).toMatch(/^error: /);
    expect(await curl(`http://${PORTAL_GW}/`)).toMatch(/^error: /);
    // And back on: the LAN answers again at once.
    writeFileSync(cfg, config(true), { mode: 0o600 });
    expect((await splitwan('reload')).code).toBe(0);
    expect(await curl(`http://${PRINTER}/`)).toBe(lab.addr.routerLan.v4);
    expect(captured).toBe('');
  }, 60_000);
});
