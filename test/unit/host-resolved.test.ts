// Host mode beside systemd-resolved, wired into the composition root
// (daemon/host-resolved.ts, createDaemon): the daemon over fake OS adapters
// and the resolved model (FakeResolved: what resolved holds per link). What
// is asserted is what resolved would hold and answer from, what the listener
// bound, and when: never call strings alone.
//
// The breakout's servers from resolved are asserted on HostResolved and the
// listener, not through the whole daemon: the daemon would probe them, and a
// unit test sends nothing but to loopback (resolved's servers never are).
import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load.js';
import type { Config } from '../../config/types.js';
import type { ListenAddress } from '../../dns/server.js';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { cleanupResolved, HostResolved, RESOLVED_LISTEN_CANDIDATES, takeoverListen, type ListenerKnobs } from '../../daemon/host-resolved.js';
import { DnsListener } from '../../daemon/listeners/dns-listener.js';
import { FakeDnsLink, FakeResolved } from '../../daemon/resolved-fake.js';
import { HOST_LISTEN } from '../../daemon/resolver-paths.js';
import { systemClock } from '../../lib/logger.js';
import { until } from '../helpers/daemon.js';
import { configDir, fakeOs, recordingLogger, type ConfigDir, type FakeOs } from '../helpers/fake-deps.js';

/** Whether something still holds 127.0.0.153:port (UDP): binding it fails then. */
async function portHeld(host: string, port: number): Promise<boolean> {
  const sock = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => sock.once('error', reject).bind(port, host, () => resolve()));
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') return true;
    throw e;
  } finally {
    try {
      sock.close();
    } catch {
      // not bound
    }
  }
}

describe('createDaemon beside systemd-resolved', () => {
  let cd: ConfigDir;
  let os: FakeOs;
  let d: Daemon;
  let r: FakeResolved;
  const listenOn = (host: string, port: number) => writeFileSync(cd.file, readFileSync(cd.file, 'utf8').replace(/^ {2}listen: .*$/m, `  listen: [${host}:${port}]`));

  beforeEach(async () => {
    cd = await configDir();
    r = new FakeResolved();
    // The WAN as NetworkManager left it: DHCP's server, default route.
    r.addLink('wan0', { dns: [{ family: 4, address: '10.97.0.1', port: 0, serverName: '', ifindex: 2 }], defaultRoute: true });
    os = fakeOs({ resolved: r });
    listenOn('127.0.0.153', cd.dnsPort);
    d = createDaemon(os.deps, { configPath: cd.file });
  });
  afterEach(async () => {
    await d.stop('test end');
    cd.remove();
  });

  it('start: resolved sends every query to the address splitwan listens on, on splitwan\'s link only', async () => {
    const wanBefore = r.describe('wan0');
    await d.start();
    expect(r.describe('splitwan-dns')).toEqual({ dns: [`127.0.0.153:${cd.dnsPort}`], domains: ['~.'], defaultRoute: true, llmnr: 'no', mdns: 'no' });
    expect(await portHeld('127.0.0.153', cd.dnsPort)).toBe(true);
    expect(r.describe('wan0')).toEqual(wanBefore);
    expect(os.resolved!.links.size).toBe(2);
    expect((await d.handlers.status()).resolved).toMatchObject({ active: true, resolvedRunning: true, ifname: 'splitwan-dns', reapplied: 0, lastError: null });
  });

  it('stop: the takeover is undone while the resolver still listens, then the link goes; every other link as it was', async () => {
    await d.start();
    const wanBefore = r.describe('wan0');
    const link = r.byName('splitwan-dns')!.ifindex;
    let heldAtRevert: boolean | null = null;
    const revert = r.revert.bind(r);
    r.revert = async (i) => {
      heldAtRevert = await portHeld('127.0.0.153', cd.dnsPort);
      return revert(i);
    };
    await d.stop('SIGTERM');
    expect(r.calls).toContain(`revert ${link}`);
    expect(heldAtRevert).toBe(true);
    expect(r.byName('splitwan-dns')).toBeUndefined();
    expect(r.describe('wan0')).toEqual(wanBefore);
    expect(await portHeld('127.0.0.153', cd.dnsPort)).toBe(false);
  });

  it('without resolved: nothing is set in it and no link is made (host mode as before)', async () => {
    r.isRunning = false;
    await d.start();
    expect(r.calls.filter((c) => c.startsWith('apply'))).toEqual([]);
    expect(r.byName('splitwan-dns')).toBeUndefined();
    expect(os.dnsLinks.every((l) => l.opened === 0)).toBe(true);
    expect((await d.handlers.status()).resolved).toBeNull();
    expect((await d.handlers.status()).dns.listen).toEqual([`127.0.0.153:${cd.dnsPort}`]);
  });

  it('a dns.listen resolved cannot be pointed at (not loopback, or its own stub): no takeover', () => {
    expect(takeoverListen([{ host: '127.0.0.53', port: 53 }, { host: '10.0.0.1', port: 53 }])).toEqual([]);
    expect(takeoverListen([{ host: '127.0.0.153', port: 53 }, { host: '::1', port: 5353 }])).toEqual([{ host: '127.0.0.153', port: 53 }, { host: '::1', port: 5353 }]);
  });

  it('a crashed run\'s takeover on another link (an older layout) is reverted at start; splitwan cleanup does the same', async () => {
    const stale = r.addLink('tun0', { dns: [{ family: 4, address: '127.0.0.154', port: 0, serverName: '', ifindex: 0 }], domains: [{ domain: '.', routingOnly: true }], defaultRoute: true });
    await d.start();
    expect(r.describe('tun0')).toMatchObject({ dns: [], domains: [] });
    expect(r.calls.indexOf(`revert ${stale.ifindex}`)).toBeLessThan(r.calls.findIndex((c) => c.startsWith('apply')));
    await d.stop('SIGTERM');
    // `splitwan cleanup` (cleanupAll): the same, stateless.
    r.push(stale.ifindex, { dns: ['127.0.0.153'], domains: [{ domain: '.', routingOnly: true }] });
    await cleanupResolved({ api: r, link: new FakeDnsLink(r) }, recordingLogger());
    expect(r.describe('tun0')).toMatchObject({ dns: [], domains: [] });
  });

  it('resolved restarts without its saved state: the takeover is applied again on the bus signal', async () => {
    await d.start();
    r.restart();
    expect(r.describe('splitwan-dns')?.dns).toEqual([]);
    await until(() => r.describe('splitwan-dns')?.dns.join() === `127.0.0.153:${cd.dnsPort}`, 5000, 'the takeover again');
  });

  it('NetworkManager pushes another DNS server for the WAN: splitwan\'s link keeps ~.', async () => {
    await d.start();
    r.push(r.byName('wan0')!.ifindex, { dns: ['10.97.0.2'], domains: [{ domain: 'corp.test', routingOnly: false }], defaultRoute: true });
    expect(r.describe('splitwan-dns')).toMatchObject({ dns: [`127.0.0.153:${cd.dnsPort}`], domains: ['~.'], defaultRoute: true });
  });

  it('a reload that moves the resolver moves the takeover: resolved points at the new address, never at a closed one', async () => {
    await d.start();
    listenOn('127.0.0.155', cd.dnsPort);
    expect((await d.handlers.reload(false)).status).toBe('applied');
    expect(r.describe('splitwan-dns')?.dns).toEqual([`127.0.0.155:${cd.dnsPort}`]);
    expect(await portHeld('127.0.0.155', cd.dnsPort)).toBe(true);
  });
});

describe('HostResolved: where host mode listens and the breakout\'s servers', () => {
  const config = async (breakoutDns: string, mode = 'host'): Promise<Config> => {
    const cd = await configDir();
    try {
      writeFileSync(cd.file, readFileSync(cd.file, 'utf8').replace(/^ {2}dns: \[.*$/m, `  dns: ${breakoutDns}`).replace(/^mode: host$/m, `mode: ${mode}`).replace(/^ {2}listen: .*$/m, '  blockEncryptedDns: false') + (mode === 'router' ? 'lan: [lan0]\n' : ''));
      return (await loadConfig(cd.file)).config;
    } finally {
      cd.remove();
    }
  };
  let r: FakeResolved;
  let wan: number;
  const knobs = (): ListenerKnobs => ({ hostListen: [HOST_LISTEN], breakoutOverride: null });
  const host = (onChange: () => void = () => undefined) =>
    new HostResolved({ make: () => ({ api: r, link: new FakeDnsLink(r) }), clock: systemClock, logger: recordingLogger(), wanIfname: () => 'wan0', onBreakoutChange: async () => onChange(), guardIntervalMs: 60_000 });
  beforeEach(() => {
    r = new FakeResolved();
    wan = r.addLink('wan0', { dns: [{ family: 4, address: '10.97.0.1', port: 0, serverName: '', ifindex: 2 }], defaultRoute: true }).ifindex;
    r.addLink('wlan1', { dns: [{ family: 4, address: '10.98.0.1', port: 0, serverName: '', ifindex: 3 }], defaultRoute: true });
  });

  it('resolved runs: splitwan\'s own addresses, the WAN link\'s servers (never the stub, never another link\'s)', async () => {
    const k = knobs();
    await host().beforeServe(await config('auto'), k);
    expect(k.hostListen).toEqual(RESOLVED_LISTEN_CANDIDATES);
    expect(k.hostListen[0]).toEqual({ host: '127.0.0.153', port: 53 });
    expect(k.breakoutOverride).toEqual(['10.97.0.1']);
  });

  it('no resolved, router mode, or no resolved API: 127.0.0.53 and resolv.conf, as before', async () => {
    r.isRunning = false;
    for (const [h, c] of [[host(), await config('auto')], [host(), await config('auto', 'router')], [new HostResolved({ make: undefined, clock: systemClock, logger: recordingLogger(), wanIfname: () => null, onBreakoutChange: async () => undefined }), await config('auto')]] as const) {
      const k = knobs();
      k.breakoutOverride = ['stale'];
      await h.beforeServe(c, k);
      expect(k.hostListen).toEqual([HOST_LISTEN]);
      expect(k.breakoutOverride).toBeNull();
    }
  });

  it('resolved started after splitwan (its stub found 127.0.0.53 taken): a reload keeps 127.0.0.53 and takes nothing over', async () => {
    r.isRunning = false;
    const h = host();
    const c = await config('auto');
    const k = knobs();
    await h.beforeServe(c, k);
    await h.afterServe(c, [HOST_LISTEN]);
    r.isRunning = true;
    await h.beforeServe(c, k);
    expect(k.hostListen).toEqual([HOST_LISTEN]);
    await h.afterServe(c, [HOST_LISTEN]);
    expect(h.status()).toBeNull();
    expect(r.calls.filter((x) => x.startsWith('apply'))).toEqual([]);
    await h.stop();
  });

  it('breakout.dns given in the config: resolved\'s servers are not used', async () => {
    const k = knobs();
    await host().beforeServe(await config('[127.0.0.1:5353]'), k);
    expect(k.hostListen).toEqual(RESOLVED_LISTEN_CANDIDATES);
    expect(k.breakoutOverride).toBeNull();
  });

  it('a network change (NetworkManager pushes the new network\'s server): the breakout follows at the next check, and resolved\'s cache is flushed after splitwan\'s', async () => {
    const k = knobs();
    let changes = 0;
    const h = host(() => changes++);
    const c = await config('auto');
    await h.beforeServe(c, k);
    await h.afterServe(c, [{ host: '127.0.0.153', port: 53 }]);
    expect(changes).toBe(0); // the first read is what beforeServe found
    r.push(wan, { dns: ['10.97.0.77'] });
    expect(r.calls).not.toContain('flushCaches');
    h.ensure(); // the WAN watcher's nudge; the periodic check does the same
    await until(() => changes === 1, 5000, 'the change');
    expect(k.breakoutOverride).toEqual(['10.97.0.77']);
    await until(() => r.calls.includes('flushCaches'), 5000, 'resolved\'s cache flushed');
    await h.stop();
    expect(r.byName('splitwan-dns')).toBeUndefined();
  });
});

describe('DnsListener: host mode\'s candidates and resolved\'s servers', () => {
  const cfg = async (): Promise<Config> => {
    const cd = await configDir();
    try {
      writeFileSync(cd.file, readFileSync(cd.file, 'utf8').replace(/^ {2}dns: \[.*$/m, '  dns: auto').replace(/^ {2}listen: .*$/m, '  blockEncryptedDns: false'));
      return (await loadConfig(cd.file)).config;
    } finally {
      cd.remove();
    }
  };
  const fakeServer = (taken: string[]) => {
    const tried: string[] = [];
    return {
      tried,
      server: {
        udpTransport: 'fake',
        close: async () => undefined,
        listen: async (a: readonly ListenAddress[]) => {
          tried.push(a.map((x) => x.host).join());
          if (a.some((x) => taken.includes(x.host))) throw new Error(`cannot listen on ${a[0]!.host}:53/udp: EADDRINUSE`);
          return [...a];
        },
      },
    };
  };

  it('127.0.0.153 held by another resolver: the next candidate; resolved\'s servers are the breakout\'s', async () => {
    const f = fakeServer(['127.0.0.153']);
    const l = new DnsListener({ server: f.server, links: async () => [], resolvConfTexts: async () => ['nameserver 127.0.0.53\n', 'nameserver 10.0.0.9\n'], logger: recordingLogger() });
    l.hostListen = RESOLVED_LISTEN_CANDIDATES;
    l.breakoutOverride = ['10.97.0.1', 'fe80::1%wan0', '10.97.0.2:5353'];
    const c = await cfg();
    await l.serve(c);
    expect(l.listen).toEqual([{ host: '127.0.0.154', port: 53 }]);
    expect(l.localDns?.v4).toEqual({ host: '127.0.0.154', port: 53 });
    expect(l.breakoutDns.map((u) => u.text)).toEqual(['10.97.0.1', '[fe80::1%wan0]:53', '10.97.0.2:5353']);
    // A second serve (a reload, an address event) keeps the address it holds.
    await l.serve(c);
    expect(f.tried).toEqual(['127.0.0.153', '127.0.0.154']);
    // resolved gone: resolv.conf again, its stub left out.
    l.breakoutOverride = null;
    await l.serve(c);
    expect(l.breakoutDns.map((u) => u.text)).toEqual(['10.0.0.9']);
  });
});
