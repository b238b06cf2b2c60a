// `splitwan run` in host mode on a "laptop" that runs a real systemd-resolved
// (Debian's package, unpacked; lab/resolved-lab.ts) and, when its packages
// can be had, a real NetworkManager: the daemon takes resolved over instead
// of fighting it for 127.0.0.53, and gives it back exactly on stop.
//
//  [router = the laptop: its netns + a mount ns of the resolved lab (/run, the bus)]
//     lo        resolved's stub 127.0.0.53 (/etc/resolv.conf names it); splitwan 127.0.0.153:53
//     splitwan-dns  the daemon's TUN (SPLITWAN_NATIVE=off: an ifb made with ip): DNS 127.0.0.153, ~., default route
//     wan0 10.99.2.2 ──── [isp] resolver 10.99.9.53 (where.lab.test → 192.0.2.1, query log)
//                               resolver 10.99.9.54 ("the next network's": → 192.0.2.54, query log)
//                               web 10.99.9.9 (echoes the source it sees)
//     swg-* ══ WireGuard ══ [gw1] resolver (→ 192.0.2.11)  [gw2] resolver (→ 192.0.2.12)
//     nmwan (DHCP, NetworkManager) ──── [sl<pid>-nm] dnsmasq: DHCP 10.97.0.50-99, DNS 10.97.0.1 (then .2)
//
// An answer of 192.0.2.11 through resolved's stub can only have come through
// splitwan (only it sends names to gw1's resolver); the query logs say who was
// not asked. Without NetworkManager's packages its case prints SKIPPED and the
// WAN's DNS change is pushed with resolvectl (the same bus calls).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Message, sessionBus, type MessageBus } from '@jellybrick/dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, must, run, Supervised, type Lab } from '../../lab/lab.js';
import { ensurePackages, resolvectlLink, resolvedLabSupported, startResolvedLab, type ResolvedLab } from '../../lab/resolved-lab.js';
import { daemonNode, until } from '../helpers/daemon.js';
import { daemonNativeUnavailable } from '../helpers/native.js';

const support = labSupported();
const rsupport = resolvedLabSupported();
const inCi = Boolean(process.env.CI);
if (!support.ok) console.warn(`[test/e2e/laptop-resolved] SKIPPED: the lab cannot run here: ${support.why}`);
else if (!rsupport.ok) console.warn(`[test/e2e/laptop-resolved] SKIPPED: the resolved lab cannot run here: ${rsupport.why}`);

const root = join(import.meta.dirname, '..', '..');
const tag = process.pid % 10000;
const NMNET = `sl${tag}-nm`;
const NEXT_RESOLVER = '10.99.9.54';
/** The takeover's link: the TUN device where native code runs; with SPLITWAN_NATIVE=off one made with ip, which outlives a crash. */
const LINK: 'tun' | 'ip' = daemonNativeUnavailable() === null ? 'tun' : 'ip';
const NM_CONNECTION = `[connection]
id=labnm
uuid=7a2e3c2f-9b68-4b9f-8a64-${String(tag).padStart(12, '0')}
type=ethernet
interface-name=nmwan
[ethernet]
[ipv4]
method=auto
never-default=true
[ipv6]
method=disabled
`;

describe.skipIf((!support.ok || !rsupport.ok) && !inCi)('splitwan run (host mode) beside a real systemd-resolved', () => {
  let lab: Lab | undefined;
  let rl: ResolvedLab | undefined;
  let dir = '';
  let cfg = '';
  let daemon: Supervised | null = null;
  let nm = false;
  let nmnet = false;
  let dhcp: Supervised | null = null;
  const extra: Supervised[] = [];
  let seq = 0;
  const unique = (under: string) => `u${tag}-${seq++}.${under}`;

  const R = (): ResolvedLab => {
    if (!rl) throw new Error('the resolved lab was not built');
    return rl;
  };
  const dig = async (name: string): Promise<string[]> => {
    const r = await R().exec(['dig', '+short', '+time=3', '+tries=2', '@127.0.0.53', name, 'A']);
    return r.stdout.split('\n').map((s) => s.trim()).filter((s) => /^\d+\.\d+\.\d+\.\d+$/.test(s));
  };
  const asked = (log: string): string[] => {
    try {
      return [...readFileSync(log, 'utf8').matchAll(/query\[\w+\] (\S+) from/g)].map((m) => m[1]!);
    } catch {
      return [];
    }
  };
  const linkView = (ifname: string) => resolvectlLink(R(), ifname);
  /**
   * Every link's section of `resolvectl status` but splitwan's own (its DNS
   * link, its tunnels swg-*, which come and go with it); the Global section
   * lists a loopback server of any link: left out.
   */
  const othersView = async (): Promise<string> =>
    (await R().resolvectl('status')).stdout
      .split(/\n(?=Link \d+ )/)
      .filter((s) => /^Link \d+ /.test(s) && !/^Link \d+ \((splitwan-dns|swg-[^)]*)\)/.test(s))
      .map((s) => s.replace(/^\s*Current DNS Server:.*\n/gm, ''))
      .join('\n');
  const status = async (): Promise<{ dns: { listen: string[] }; breakout: { dns: string[] }; resolved: { active: boolean } | null }> => {
    const r = await run([...daemonNode(), join(root, 'bin', 'splitwan'), 'status', '--json', '--config', cfg], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`splitwan status: ${r.stderr}`);
    return JSON.parse(r.stdout) as { dns: { listen: string[] }; breakout: { dns: string[] }; resolved: { active: boolean } | null };
  };
  /** What `ip -d link` says splitwan's link is: its ifindex and kind (tun, ifb, dummy), null when there is none. */
  const dnsLink = async (): Promise<{ ifindex: number; kind: string } | null> => {
    const r = await R().exec(['ip', '-j', '-d', 'link', 'show', 'dev', 'splitwan-dns']);
    if (r.code !== 0) return null;
    const [l] = JSON.parse(r.stdout) as { ifindex: number; linkinfo?: { info_kind?: string } }[];
    return { ifindex: l!.ifindex, kind: l!.linkinfo?.info_kind ?? '' };
  };
  const startDaemon = async (): Promise<Supervised> => {
    const d = R().spawn('splitwan', [...daemonNode(), join(root, 'bin', 'splitwan'), 'run', '--config', cfg]);
    await d.waitUntil('splitwan running', () => d.tail.includes('splitwan running'), 60_000);
    return d;
  };
  const curlRemote = async (url: string): Promise<string> => {
    const r = await R().exec(['curl', '-4', '-sS', '--noproxy', '*', '--max-time', '5', url], { timeoutMs: 10_000 });
    if (r.code !== 0) return `error: ${r.stderr.trim()}`;
    return (JSON.parse(r.stdout) as { remote: string }).remote;
  };
  const startDhcp = (dns: string): Promise<void> => {
    const p = new Supervised('dnsmasq nm dhcp', 'dnsmasq', ['ip', 'netns', 'exec', NMNET, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--port=0', '--bind-interfaces', '--interface=net0', '--dhcp-range=10.97.0.50,10.97.0.99,255.255.255.0,1h', `--dhcp-option=option:dns-server,${dns}`, `--dhcp-leasefile=${join(dir, 'leases')}`], process.env);
    extra.push(p);
    dhcp = p;
    return p.waitUntil('dnsmasq dhcp', () => /started, version/.test(p.tail), 10_000);
  };

  beforeAll(async () => {
    expect(rsupport, 'the resolved lab must run in CI').toEqual({ ok: true });
    if (!existsSync(join(root, 'dist', 'daemon', 'resolved-linux.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
    try {
      await ensurePackages({ networkManager: true });
      nm = true;
    } catch (e) {
      console.warn(`[test/e2e/laptop-resolved] SKIPPED: the NetworkManager case: its packages could not be had: ${(e as Error).message}`);
    }
    // Answers that may be cached (300 s): a network change must not leave the old network's in splitwan's or resolved's cache.
    lab = await createLab({ routerTunnels: false, resolverTtl: 300 });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-laptop-${process.pid}-`));
    // "The next network's" resolver, beside the ISP's.
    await must(['ip', '-n', lab.ns.isp, 'addr', 'add', `${NEXT_RESOLVER}/32`, 'dev', 'lo']);
    const next = new Supervised('dnsmasq next', 'dnsmasq', ['ip', 'netns', 'exec', lab.ns.isp, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${NEXT_RESOLVER}`, '--port=53', '--log-queries', '--local-ttl=300', `--log-facility=${join(dir, 'next.log')}`, '--address=/where.lab.test/192.0.2.54'], process.env);
    extra.push(next);
    await next.waitUntil('dnsmasq next', () => /started, version/.test(next.tail), 10_000);
    if (nm) {
      await must(['ip', 'netns', 'add', NMNET]);
      nmnet = true;
      await must(['ip', '-n', lab.ns.router, 'link', 'add', 'nmwan', 'type', 'veth', 'peer', 'name', 'net0', 'netns', NMNET]);
      await must(['ip', '-n', NMNET, '-batch', '-'], { input: 'link set lo up\nlink set net0 up\naddr add 10.97.0.1/24 dev net0\n' });
      await startDhcp('10.97.0.1');
    }
    // NetworkManager manages its own link only: the lab's links, the tunnels and splitwan's are not its.
    rl = await startResolvedLab({
      netns: lab.ns.router,
      networkManager: nm ? { connections: { 'labnm.nmconnection': NM_CONNECTION }, conf: { keyfile: { 'unmanaged-devices': 'except:interface-name:nmwan' } } } : false,
      timeoutMs: 30_000,
      // The test stands in for logind (its PrepareForSleep signal).
      busOwners: ['org.freedesktop.login1'],
    });
    // The WAN as DHCP and NetworkManager would leave it in resolved.
    for (const a of [['dns', 'wan0', lab.addr.ispResolver.v4], ['default-route', 'wan0', 'yes']]) expect((await rl.resolvectl(...a)).code).toBe(0);
    await until(async () => (await dig(unique('where.lab.test'))).includes('192.0.2.1'), 15_000, 'resolved to answer from the ISP');
    if (nm) await until(async () => (await linkView('nmwan'))?.dns.includes('10.97.0.1') ?? false, 45_000, 'NetworkManager to push nmwan\'s DHCP DNS');

    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    cfg = join(dir, 'config.yaml');
    writeFileSync(
      cfg,
      [
        'mode: host',
        // dns.listen and breakout.dns left at auto: what a laptop install has.
        'breakout: { interface: wan0 }',
        'tunnel:',
        '  gateways:',
        '    - { name: g1, config: gw1.conf, priority: 1 }',
        '    - { name: g2, config: gw2.conf, priority: 2 }',
        `stateDir: ${join(dir, 'state')}`,
        `control: { socket: ${join(dir, 'control.sock')} }`,
        'rules:',
        '  - domains: [out.where.lab.test]',
        '    via: breakout',
        'default: tunnel',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
  }, 240_000);

  afterAll(async () => {
    const errors: unknown[] = [];
    if (daemon?.running) await daemon.stop(20_000);
    await rl?.stop().catch((e: unknown) => errors.push(e));
    await Promise.all(extra.map((p) => p.stop(2000)));
    if (nmnet) await run(['ip', 'netns', 'del', NMNET]);
    await lab?.destroy().catch((e: unknown) => errors.push(e));
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
  }, 90_000);

  let before = '';

  it('queries to resolved\'s stub reach splitwan (on 127.0.0.153), and splitwan\'s own go to the WAN\'s servers, not back through resolved', async () => {
    before = await othersView();
    daemon = await startDaemon();
    expect((await dnsLink())?.kind).toMatch(LINK === 'tun' ? /^tun$/ : /^(ifb|dummy)$/);
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    const s = await status();
    expect(s.dns.listen).toEqual(['127.0.0.153:53']);
    expect(s.resolved).toMatchObject({ active: true, ifname: 'splitwan-dns' });
    // breakout.dns auto: resolved's server for wan0, never its stub 127.0.0.53.
    expect(s.breakout.dns).toEqual([lab!.addr.ispResolver.v4]);
    // A tunnel name: only splitwan sends it to gw1's resolver.
    const inName = unique('in.where.lab.test');
    expect(await dig(inName)).toEqual(['192.0.2.11']);
    expect(asked(lab!.gwResolverLogs[0])).toContain(inName);
    expect(asked(lab!.ispResolverLog)).not.toContain(inName);
    // A breakout name: splitwan asks the ISP's resolver itself (resolved would have too, but then gw1 above could not answer).
    const outName = unique('out.where.lab.test');
    expect(await dig(outName)).toEqual(['192.0.2.1']);
    expect(asked(lab!.ispResolverLog)).toContain(outName);
    // A program on the laptop (curl, through /etc/resolv.conf → resolved → splitwan) gets the tunnel: gw1's address is the source the web server saw.
    let seen = '';
    await until(async () => (seen = await curlRemote('http://web.lab.test/')) === lab!.gateways[0].uplink.v4, 15_000, 'curl web.lab.test through the tunnel').catch((e: Error) => {
      throw new Error(`${e.message}: last ${seen}`);
    });
    // No other link was touched.
    expect(await othersView()).toBe(before);
  }, 120_000);

  it('a DNS change pushed for a network (NetworkManager, DHCP) does not undo it; the breakout follows the WAN\'s new server, nothing cached of the old one is served', async (ctx) => {
    if (!daemon?.running) ctx.skip();
    const cached = unique('out.where.lab.test');
    expect(await dig(cached)).toEqual(['192.0.2.1']);
    if (nm) {
      await dhcp!.stop(2000);
      await startDhcp('10.97.0.2');
      const up = await R().nmcli('connection', 'up', 'labnm');
      expect(up.code, up.stderr).toBe(0);
      await until(async () => (await linkView('nmwan'))?.dns.join() === '10.97.0.2', 30_000, 'NetworkManager to push 10.97.0.2 for nmwan');
      expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
      const n = unique('in.where.lab.test');
      expect(await dig(n)).toEqual(['192.0.2.11']);
    } else {
      console.warn('[test/e2e/laptop-resolved] SKIPPED: the NetworkManager DHCP change: no NetworkManager packages (the resolvectl push below still runs)');
    }
    // The WAN moves to another network: its DHCP server (here: the same bus calls NetworkManager makes) names another resolver.
    for (const a of [['dns', 'wan0', NEXT_RESOLVER], ['default-route', 'wan0', 'yes']]) expect((await R().resolvectl(...a)).code).toBe(0);
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    // The takeover's periodic check (10 s) reads it.
    await until(async () => (await status()).breakout.dns.join() === NEXT_RESOLVER, 25_000, 'the breakout to follow the WAN\'s new server');
    const outName = unique('out.where.lab.test');
    expect(await dig(outName)).toEqual(['192.0.2.54']);
    expect(asked(join(dir, 'next.log'))).toContain(outName);
    expect(asked(lab!.ispResolverLog)).not.toContain(outName);
    // Asked before the change with a 300 s TTL: neither splitwan nor resolved serves the old network's answer.
    expect(await dig(cached)).toEqual(['192.0.2.54']);
    expect(await dig(unique('in.where.lab.test'))).toEqual(['192.0.2.11']);
  }, 120_000);

  it('logind\'s resume signal reaches the daemon (probes at once); the same signal from any other sender is ignored', async (ctx) => {
    if (!daemon?.running) ctx.skip();
    const resumed = () => (daemon!.tail.match(/the machine resumed \(logind\)/g) ?? []).length;
    const signal = (b: MessageBus) => b.send(Message.newSignal('/org/freedesktop/login1', 'org.freedesktop.login1.Manager', 'PrepareForSleep', 'b', [false]));
    const connect = () => {
      const b = sessionBus({ busAddress: R().busAddress });
      (b as unknown as NodeJS.EventEmitter).on('error', () => undefined);
      return b;
    };
    const impostor = connect();
    const logind = connect();
    try {
      const n = resumed();
      // Not logind: an ordinary client's signal of that name (the daemon's match rule names the sender).
      await impostor.call(new Message({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'GetId' }));
      signal(impostor);
      await new Promise((r) => setTimeout(r, 1500));
      expect(resumed()).toBe(n);
      expect(await logind.requestName('org.freedesktop.login1', 0)).toBe(1); // primary owner
      signal(logind);
      await until(() => resumed() > n, 5000, 'the daemon to note the resume');
    } finally {
      impostor.disconnect();
      logind.disconnect();
    }
  }, 30_000);

  it('kill -9, then a restart (systemd\'s Restart=on-failure) leaves one working takeover: a TUN goes with the process, the link made with ip is removed by the start\'s cleanup', async (ctx) => {
    if (!daemon?.running) ctx.skip();
    const before = await dnsLink();
    daemon!.signal('SIGKILL');
    await daemon!.exited;
    if (LINK === 'tun') {
      await until(async () => (await dnsLink()) === null, 10_000, 'the kernel to remove the TUN');
    } else {
      // Nobody holds it: it stays, with resolved pointing at a dead address, until the next start.
      expect(await dnsLink()).toEqual(before);
      expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    }
    daemon = await startDaemon();
    const after = await dnsLink();
    expect(after?.kind).toBe(before?.kind);
    if (LINK === 'ip') expect(after?.ifindex).not.toBe(before?.ifindex); // the leftover was removed, this one is the new run's
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    const n = unique('in.where.lab.test');
    expect(await dig(n)).toEqual(['192.0.2.11']);
    expect(asked(lab!.gwResolverLogs[0])).toContain(n);
  }, 120_000);

  it('stop undoes exactly the takeover: splitwan\'s link and settings are gone, every other link is as it was, the stub answers from the network', async (ctx) => {
    if (!daemon?.running) ctx.skip();
    const now = await othersView();
    daemon!.signal('SIGTERM');
    await Promise.race([daemon!.exited, new Promise((r) => setTimeout(r, 20_000))]);
    expect(daemon!.running, daemon!.tail.slice(-1500)).toBe(false);
    expect(daemon!.exit?.code).toBe(0);
    expect((await R().exec(['ip', 'link', 'show', 'splitwan-dns'])).code).not.toBe(0);
    expect((await R().resolvectl('status')).stdout).not.toContain('127.0.0.153');
    expect(await othersView()).toBe(now);
    const n = unique('in.where.lab.test');
    expect(await dig(n)).toEqual(['192.0.2.54']); // wan0's server answers now, not gw1's through splitwan
    expect(asked(lab!.gwResolverLogs[0])).not.toContain(n);
  }, 60_000);
});
