// Several WAN links and an unmanaged gateway in the namespace lab (lab/lab.ts
// with secondWan and handTunnel), with real probes through each link and
// each tunnel:
//
//  [client] ── lan0 [router: splitwan run] wan0 10.99.2.2 ── r0 [isp] web 10.99.9.9, fd99:9::9
//                                          wan1 10.99.5.2 ── r1 [isp]   (echoes the source it sees)
//                    swg-<t>a ══ WireGuard (splitwan's) ══ [gw1] ── isp   (seen as 10.99.3.2, fd99:3::2)
//                    awg<id>  ══ WireGuard (by hand)    ══ [gw2] ── isp   (seen as 10.99.4.2, fd99:4::2)
//                    (table 52: `default dev awg<id>`, filled and emptied by hand for the table gateway)
//
// IPv4 to the web server is a breakout rule (the source says which link:
// 10.99.2.2 fiber, 10.99.5.2 lte); IPv6 to it goes by the tunnel (the source
// says which gateway). A capture on both WANs runs from the first test to the
// last: nothing bound for the tunnel destination (fd99:9::9) may leave by
// either. Links fail by a drop on the isp's side (the interface stays up).
// Every test runs in both modes. Needs root: CI runs it as root.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, type Lab } from '../../lab/lab.js';
import { startDaemon, stopDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
const root = join(import.meta.dirname, '..', '..');
const MODES = ['router', 'host'] as const;
type Mode = (typeof MODES)[number];

describe.skipIf(!support.ok && !process.env.CI).each(MODES)('WAN links and an unmanaged gateway (%s mode)', (mode: Mode) => {
  const tag = `l${process.pid % 10000}${mode[0]}`;
  const GW = `${tag}a`;
  const AWG = `${tag}b`;
  const from = mode === 'router' ? 'client' : 'router';
  let lab: Lab;
  let dir: string;
  let daemon: Daemon | null = null;
  const caps: { proc: ChildProcess; seen: string }[] = [];

  const get = async (url: string, timeoutMs = 2000): Promise<string> => {
    const r = await lab.curlEcho(lab.ns[from], url, { timeoutMs });
    return 'error' in r ? `error: ${r.error}` : r.remote;
  };
  const v4 = (t?: number): Promise<string> => get(`http://${lab.addr.web.v4}/`, t);
  const v6 = (t?: number): Promise<string> => get(`http://[${lab.addr.web.v6}]/`, t);
  const FIBER = (): string => lab.addr.routerWan.v4;
  const LTE = (): string => lab.addr.routerWan2.v4;

  const config = (o: { links?: string[]; balance?: boolean; rules?: string[]; second?: string } = {}): string =>
    [
      `mode: ${mode}`,
      ...(mode === 'router' ? ['lan: [lan0]'] : []),
      'breakout:',
      `  balance: ${o.balance ?? false}`,
      '  links:',
      ...(o.links ?? [
        `    - { name: fiber, interface: wan0, gateway: [${lab.addr.ispToRouter.v4}, "${lab.addr.ispToRouter.v6}"], dns: [${lab.addr.ispResolver.v4}], priority: 1 }`,
        `    - { name: lte, interface: wan1, gateway: [${lab.addr.ispToRouter2.v4}, "${lab.addr.ispToRouter2.v6}"], dns: [${lab.addr.ispResolver.v4}], priority: 2 }`,
      ]),
      'tunnel:',
      '  gateways:',
      `    - { name: ${GW}, config: gw1.conf, priority: 1 }`,
      `    - ${o.second ?? `{ name: ${AWG}, interface: ${lab.handTunnelIf}, dns: [${lab.addr.tunnelGateway.v4}], priority: 2 }`}`,
      'health: { interval: 1s, timeout: 800ms, failAfter: 3, recoverAfter: 3, failbackHold: 2s }',
      'metrics: { listen: "127.0.0.1:9464" }',
      `stateDir: ${join(dir, 'state')}`,
      `control: { socket: ${join(dir, 'control.sock')} }`,
      'rules:',
      ...(o.rules ?? [`  - cidrs: [${lab.addr.web.v4}/32]`, '    via: breakout']),
      'default: tunnel',
      '',
    ].join('\n');
  const reload = async (text: string): Promise<void> => {
    const before = daemon!.output.filter((l) => l.includes('config reloaded')).length;
    writeFileSync(join(dir, 'config.yaml'), text, { mode: 0o600 });
    await until(() => daemon!.output.filter((l) => l.includes('config reloaded')).length > before, 15_000, 'the reload');
  };

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false, secondWan: true, handTunnel: 1 });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-links-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'config.yaml'), config(), { mode: 0o600 });
    // Capture on both WANs for the whole file: tunnel-bound IPv6 must never be there.
    for (const wan of ['wan0', 'wan1']) {
      const proc = spawn('ip', ['netns', 'exec', lab.ns.router, 'tcpdump', '-l', '-n', '-i', wan, `ip6 host ${lab.addr.web.v6}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      const c = { proc, seen: '' };
      proc.stdout!.setEncoding('utf8').on('data', (d: string) => (c.seen += d));
      caps.push(c);
    }
    // Strict reverse-path filtering, as many distributions set it: a reply that comes in on a link
    // other than main's default route is dropped unless splitwan makes it loose on its links.
    await lab.exec(lab.ns.router, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.wan0.rp_filter=1', 'net.ipv4.conf.wan1.rp_filter=1']);
    daemon = await startDaemon(lab.ns.router, join(dir, 'config.yaml'));
  }, 90_000);

  afterAll(
    () =>
      teardown({
        daemon,
        lab,
        dir,
        beforeDestroy: async () => {
          for (const c of caps) c.proc.kill();
          await lab?.blackholeWan(0, false);
          await lab?.blackholeGateway(0, false);
        },
      }),
    60_000,
  );

  it('breakout leaves by the preferred link; the tunnel by the preferred gateway', async () => {
    await until(async () => (await v4()) === FIBER(), 15_000, 'breakout by fiber');
    await until(async () => (await v6()) === lab.gateways[0].uplink.v6, 15_000, 'tunnel by gw1');
  }, 40_000);

  it('a rule pinned to a link takes it while the preferred one is up', async () => {
    await reload(config({ rules: [`  - cidrs: [${lab.addr.web.v4}/32]`, '    via: lte'] }));
    await until(async () => (await v4()) === LTE(), 10_000, 'pinned to lte');
    await reload(config());
    await until(async () => (await v4()) === FIBER(), 10_000, 'breakout by fiber again');
  }, 60_000);

  it('a metered link is never used by unpinned traffic while another is up, even preferred and with balance', async () => {
    const links = [
      `    - { name: fiber, interface: wan0, gateway: ${lab.addr.ispToRouter.v4}, dns: [${lab.addr.ispResolver.v4}], priority: 2 }`,
      `    - { name: lte, interface: wan1, gateway: ${lab.addr.ispToRouter2.v4}, dns: [${lab.addr.ispResolver.v4}], priority: 1, metered: true }`,
    ];
    await reload(config({ links, balance: true }));
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await v4());
    expect([...seen]).toEqual([FIBER()]);
    await reload(config());
  }, 60_000);

  it('balance: new flows spread by weight 2:1, and each flow keeps its link', async () => {
    const links = [
      `    - { name: fiber, interface: wan0, gateway: ${lab.addr.ispToRouter.v4}, dns: [${lab.addr.ispResolver.v4}], priority: 1, weight: 2 }`,
      `    - { name: lte, interface: wan1, gateway: ${lab.addr.ispToRouter2.v4}, dns: [${lab.addr.ispResolver.v4}], priority: 2, weight: 1 }`,
    ];
    await reload(config({ links, balance: true }));
    // A TCP server that answers each line with the source it sees; 90 flows of 4 round trips each.
    const child = join(root, 'dist', 'bench', 'balance-child.js');
    const server = spawn('ip', ['netns', 'exec', lab.ns.isp, process.execPath, child, 'server', lab.addr.web.v4, '8100'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      server.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      await until(() => out.includes('ready'), 5000, 'the flow server');
      const FLOWS = 90;
      const r = await lab.exec(lab.ns[from], [process.execPath, child, 'client', lab.addr.web.v4, '8100', String(FLOWS), '4', '10'], { timeoutMs: 60_000 });
      const res = JSON.parse(r.stdout.trim()) as { bySource: Record<string, number>; changed: number; failed: number };
      const fiber = res.bySource[FIBER()] ?? 0;
      const lte = res.bySource[LTE()] ?? 0;
      console.log(`balance over ${FLOWS} flows: fiber ${fiber}, lte ${lte} (weights 2:1), changed link ${res.changed}, failed ${res.failed}`);
      expect(res.failed).toBe(0);
      expect(fiber + lte).toBe(FLOWS);
      expect(res.changed).toBe(0);
      // 60 ± 15 is over 3 standard deviations of a fair 2:1 draw (sd 4.5).
      expect(fiber).toBeGreaterThanOrEqual(45);
      expect(fiber).toBeLessThanOrEqual(75);
    } finally {
      server.kill();
    }
    await reload(config());
  }, 90_000);

  it('the preferred link fails: breakout moves to the other, the tunnel recovers over it; failback after the hold', async () => {
    if (!readFileSync(join(dir, 'config.yaml'), 'utf8').includes('balance: false')) await reload(config());
    await until(async () => (await v4()) === FIBER(), 10_000, 'breakout by fiber');
    // The managed tunnel's WireGuard UDP (to gw1's endpoint) on the other WAN: none before the fault, then its traffic.
    const [epHost, epPort] = lab.gateways[0].endpoint.split(':') as [string, string];
    const wg = spawn('ip', ['netns', 'exec', lab.ns.router, 'tcpdump', '-l', '-n', '-i', 'wan1', `udp and host ${epHost} and port ${epPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let wgSeen = '';
    let wgErr = '';
    wg.stdout!.setEncoding('utf8').on('data', (d: string) => (wgSeen += d));
    wg.stderr!.setEncoding('utf8').on('data', (d: string) => (wgErr += d));
    try {
      await until(() => wgErr.includes('listening on'), 5000, 'tcpdump on wan1');
      expect(await v6()).toBe(lab.gateways[0].uplink.v6);
      expect(wgSeen).toBe('');
      const t0 = Date.now();
      await lab.blackholeWan(0, true);
      await until(async () => (await v4(700)) === LTE(), 15_000, 'breakout by lte');
      const breakoutMs = Date.now() - t0;
      await until(async () => (await v6(700)) === lab.gateways[0].uplink.v6, 20_000, 'tunnel through gw1 over lte');
      const tunnelMs = Date.now() - t0;
      console.log(`link failover: breakout on lte after ${breakoutMs} ms, tunnel traffic through gw1 again after ${tunnelMs} ms`);
      // Within the link failover's detection (failAfter 3: 1.6 s after the first unanswered probe, which
      // comes within an interval) and one handshake (5 s), with room for a busy machine.
      expect(tunnelMs).toBeLessThan(12_000);
      // Its packets to gw1 left by wan1, from lte's address.
      await until(() => wgSeen.includes(`${LTE()}.`) && wgSeen.includes(`> ${epHost}.${epPort}`), 5000, 'WireGuard UDP on wan1');
    } finally {
      wg.kill();
    }
    expect(daemon!.output.join('\n')).toMatch(/breakout link: lte \(fiber is down\)/);
    // The link failover is counted apart from the gateways'.
    const m = await lab.exec(lab.ns.router, ['curl', '-s', '--max-time', '3', 'http://127.0.0.1:9464/metrics']);
    expect(m.stdout).toMatch(/^splitwan_link_failovers_total\{from="fiber",to="lte"\} 1$/m);
    expect(m.stdout).not.toMatch(/^splitwan_failovers_total\{[^}]*"(fiber|lte)"/m);
    const back = Date.now();
    await lab.blackholeWan(0, false);
    await until(async () => (await v4(700)) === FIBER(), 30_000, 'breakout back on fiber');
    // recoverAfter (3 rounds) and the hold (2 s) first.
    expect(Date.now() - back).toBeGreaterThanOrEqual(2000);
    await until(async () => (await v6(700)) === lab.gateways[0].uplink.v6, 20_000, 'tunnel after failback');
  }, 90_000);

  it('an unmanaged gateway: the tunnel fails over to it and back; its interface gone is down, back is probed again', async () => {
    await lab.blackholeGateway(0, true);
    await until(async () => (await v6(700)) === lab.gateways[1].uplink.v6, 20_000, 'tunnel through the hand-made gateway');
    await lab.blackholeGateway(0, false);
    await until(async () => (await v6(700)) === lab.gateways[0].uplink.v6, 40_000, 'tunnel back through gw1');
    const downs = (): number => daemon!.output.filter((l) => l.includes(`gateway ${AWG} is down`)).length;
    const downBefore = downs();
    await lab.handTunnel(false);
    await until(() => downs() > downBefore, 15_000, 'the hand-made gateway down');
    await lab.handTunnel(true);
    const ups = (): number => daemon!.output.filter((l) => l.includes(`gateway ${AWG} is up`)).length;
    const before = ups();
    await until(() => ups() > before, 30_000, 'the hand-made gateway up again').catch((e: unknown) => {
      console.log(daemon!.output.slice(-40).join('\n'));
      throw e;
    });
    // Its route came back with it: the tunnel can fail over to it again.
    await lab.blackholeGateway(0, true);
    await until(async () => (await v6(700)) === lab.gateways[1].uplink.v6, 20_000, 'tunnel through the remade gateway');
    await lab.blackholeGateway(0, false);
  }, 150_000);

  it('an unmanaged table gateway (a routing table another program fills): traffic through it, failover to and from it; its table emptied is down, filled again is probed up', async () => {
    // As tailscale does with its table 52: a default route into the hand-made interface, made by "another program".
    const TABLE = '52';
    const TBL = `${tag}t`;
    const fill = async (): Promise<void> => {
      for (const f of ['-4', '-6']) {
        const r = await lab.exec(lab.ns.router, ['ip', f, 'route', 'replace', 'default', 'dev', lab.handTunnelIf!, 'table', TABLE]);
        expect(r.stderr).toBe('');
      }
    };
    const empty = async (): Promise<void> => {
      for (const f of ['-4', '-6']) await lab.exec(lab.ns.router, ['ip', f, 'route', 'flush', 'table', TABLE]);
    };
    const lines = (what: string): number => daemon!.output.filter((l) => l.includes(`gateway ${TBL} is ${what}`)).length;
    await fill();
    try {
      await reload(config({ second: `{ name: ${TBL}, table: ${TABLE}, dns: [${lab.addr.tunnelGateway.v4}], priority: 2 }` }));
      await until(() => lines('up') > 0, 15_000, 'the table gateway up');
      await until(async () => (await v6(700)) === lab.gateways[0].uplink.v6, 15_000, 'tunnel through gw1');
      // gw1 dead: the tunnel fails over into table 52 (seen as gw2, which the hand-made interface reaches).
      await lab.blackholeGateway(0, true);
      await until(async () => (await v6(700)) === lab.gateways[1].uplink.v6, 20_000, 'tunnel through the table gateway');
      expect(daemon!.output.join('\n')).toMatch(new RegExp(`active gateway: ${TBL} \\(${GW} is down\\)`));
      await lab.blackholeGateway(0, false);
      await until(async () => (await v6(700)) === lab.gateways[0].uplink.v6, 40_000, 'tunnel back through gw1');
      // The other program empties its table: the gateway is down (and nothing splitwan routes to it leaves by main).
      const downs = lines('down');
      await empty();
      await until(() => lines('down') > downs, 15_000, 'the table gateway down');
      // It fills it again: probed again, up.
      const ups = lines('up');
      await fill();
      await until(() => lines('up') > ups, 30_000, 'the table gateway up again');
      // And carries the tunnel again when gw1 fails.
      await lab.blackholeGateway(0, true);
      await until(async () => (await v6(700)) === lab.gateways[1].uplink.v6, 20_000, 'tunnel through the refilled table gateway');
    } finally {
      await lab.blackholeGateway(0, false);
      await reload(config());
      await empty();
    }
    await until(async () => (await v6(700)) === lab.gateways[0].uplink.v6, 40_000, 'tunnel back through gw1');
  }, 180_000);

  it('a connection from outside that comes in on lte is answered by lte (strict rp_filter made loose)', async () => {
    // A server on the router's lte address; the isp connects from the web server's address (not on the link).
    const child = join(root, 'dist', 'bench', 'balance-child.js');
    const server = spawn('ip', ['netns', 'exec', lab.ns.router, process.execPath, child, 'server', lab.addr.routerWan2.v4, '8200'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      server.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      await until(() => out.includes('ready'), 5000, 'the server on the router');
      const script = `const s=require('net').connect({host:'${lab.addr.routerWan2.v4}',port:8200,localAddress:'${lab.addr.web.v4}'});s.on('connect',()=>s.write('x\\n'));s.setEncoding('utf8').on('data',(d)=>{process.stdout.write(d);s.end()});s.on('error',(e)=>{console.error(e.message);process.exit(1)});setTimeout(()=>{console.error('timeout');process.exit(1)},3000).unref()`;
      const r = await lab.exec(lab.ns.isp, [process.execPath, '-e', script], { timeoutMs: 6000 });
      if (r.stderr.trim() && process.env.SPLITWAN_LINKS_DEBUG) {
        for (const argv of [['conntrack', '-L', '-p', 'tcp', '--dport', '8200'], ['ip', 'route', 'get', lab.addr.web.v4, 'mark', '0x2100'], ['ip', 'route', 'get', lab.addr.web.v4, 'from', lab.addr.routerWan2.v4, 'iif', 'wan1'], ['nft', 'list', 'chain', 'inet', 'splitwan', 'wan_guard'], ['sysctl', 'net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.wan1.rp_filter']]) {
          const d = await lab.exec(lab.ns.router, argv);
          console.log(`$ ${argv.join(' ')}\n${d.stdout}${d.stderr}`);
        }
      }
      expect(r.stderr.trim()).toBe('');
      expect(r.stdout.trim()).toBe(lab.addr.web.v4);
      const rp = await lab.exec(lab.ns.router, ['sysctl', '-n', 'net.ipv4.conf.wan1.rp_filter']);
      expect(rp.stdout.trim()).toBe('2');
    } finally {
      server.kill();
    }
  }, 20_000);

  it('nothing bound for the tunnel destination left by either WAN', async () => {
    await new Promise((r) => setTimeout(r, 500));
    expect(caps.map((c) => c.seen.trim())).toEqual(['', '']);
  });

  it('at stop the links\' reverse-path filtering is as it was', async () => {
    await stopDaemon(daemon!);
    daemon = null;
    const rp = await lab.exec(lab.ns.router, ['sysctl', '-n', 'net.ipv4.conf.wan0.rp_filter', 'net.ipv4.conf.wan1.rp_filter']);
    expect(rp.stdout.trim().split('\n')).toEqual(['1', '1']);
  }, 30_000);
});

it.skipIf(support.ok || !!process.env.CI)('WAN links in the lab: SKIPPED', () => {
  console.warn(`SKIPPED e2e test (links): ${support.ok ? '' : support.why}. CI runs it as root.`);
});
