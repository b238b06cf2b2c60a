// The systemd-resolved takeover's logic (daemon/resolved.ts) against the
// state model in daemon/resolved-fake.ts: what resolved holds per link after
// start, stop, a crash, a resolved restart, a NetworkManager push or sleep,
// and which servers the breakout gets. The real resolved: test/lab/resolved.test.ts.
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { FakeDnsLink, FakeResolved } from '../../daemon/resolved-fake.js';
import { addressBytes, addressText, parseDomains, parseServers } from '../../daemon/resolved-linux.js';
import {
  breakoutServers,
  cleanupTakeover,
  hasSettings,
  isStaleTakeover,
  RESOLVED_MODE_LISTEN,
  ResolvedTakeover,
  takeoverSettings,
  type ResolvedLink,
  type ResolvedServer,
} from '../../daemon/resolved.js';
import { ManualClock, settle } from '../helpers/clock.js';

const TAKEN = { dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true, llmnr: 'no', mdns: 'no' };
const REVERTED = { dns: [], domains: [], defaultRoute: null, llmnr: 'yes', mdns: 'no' };

function setup(o: { running?: boolean; nm?: boolean; kind?: 'tun' | 'ip' } = {}) {
  const r = new FakeResolved();
  r.isRunning = o.running ?? true;
  if (o.nm) r.nmRunning = true;
  const wan = r.addLink('wlan0', { dns: [srv('192.168.1.1', 0)], domains: [{ domain: 'home.lan', routingOnly: false }], defaultRoute: true });
  wan.dns = [srv('192.168.1.1', wan.ifindex)];
  const link = new FakeDnsLink(r, 'splitwan-dns', o.kind ?? 'tun');
  const clock = new ManualClock();
  const t = new ResolvedTakeover({ api: r, link, listen: [RESOLVED_MODE_LISTEN], clock, logger: silentLogger, guardIntervalMs: 10_000 });
  return { r, wan, link, clock, t };
}

function srv(address: string, ifindex: number, port = 0): ResolvedServer {
  return { family: address.includes(':') ? 6 : 4, address, port, serverName: '', ifindex };
}

describe('takeover of systemd-resolved', () => {
  it('points resolved at splitwan on a link of its own: DNS 127.0.0.153, ~., default route; other links untouched', async () => {
    const { r, t } = setup();
    const wanBefore = r.describe('wlan0');
    expect(await t.start()).toBe(true);
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    expect(r.describe('wlan0')).toEqual(wanBefore);
    expect(t.status()).toMatchObject({ active: true, resolvedRunning: true, ifname: 'splitwan-dns', reapplied: 0 });
    await t.stop();
  });

  it('without resolved does nothing (host mode as before) and takes over when resolved starts later', async () => {
    const { r, link, t } = setup({ running: false });
    expect(await t.start()).toBe(false);
    expect(link.opened).toBe(0);
    expect(r.calls).toEqual([]);
    r.startResolved();
    await settle();
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    expect(t.status().active).toBe(true);
    await t.stop();
  });

  it('stop undoes exactly that: RevertLink on its link, the link goes, the WAN link keeps what it had', async () => {
    const { r, link, t } = setup();
    const wanBefore = r.describe('wlan0');
    await t.start();
    const ifindex = link.held!.ifindex;
    await t.stop();
    expect(r.calls.filter((c) => c.startsWith('revert'))).toEqual([`revert ${ifindex}`]);
    expect(r.describe('splitwan-dns')).toBeNull();
    expect(r.describe('wlan0')).toEqual(wanBefore);
    expect(r.closed).toBe(1);
    await t.stop(); // idempotent
    expect(r.calls.filter((c) => c.startsWith('revert'))).toHaveLength(1);
  });

  it('stop still removes the link when RevertLink fails (resolved forgets a link that is gone)', async () => {
    const { r, link, t } = setup();
    await t.start();
    r.failNext.set('revert', 'org.freedesktop.DBus.Error.NoReply');
    await t.stop();
    expect(link.held).toBeNull();
    expect(r.describe('splitwan-dns')).toBeNull();
  });

  it('a resolved restart that lost the settings is followed: applied again at once', async () => {
    const { r, t } = setup();
    await t.start();
    r.restart();
    expect(r.describe('splitwan-dns')).toEqual(REVERTED);
    await settle();
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    expect(t.status().reapplied).toBe(1);
    await t.stop();
  });

  it('a resolved restart that kept the settings (saved under /run) changes nothing', async () => {
    const { r, t } = setup();
    r.keepOnRestart = true;
    await t.start();
    const applies = r.calls.filter((c) => c.startsWith('apply')).length;
    r.restart();
    await settle();
    expect(r.calls.filter((c) => c.startsWith('apply')).length).toBe(applies);
    expect(t.status().reapplied).toBe(0);
    await t.stop();
  });

  it('settings another program reset on its link are found by the periodic check and applied again', async () => {
    const { r, link, clock, t } = setup();
    await t.start();
    r.push(link.held!.ifindex, { dns: [], domains: [], defaultRoute: false });
    await clock.advance(9_999);
    expect(r.describe('splitwan-dns')!.dns).toEqual([]);
    await clock.advance(1);
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    expect(t.status().reapplied).toBe(1);
    await t.stop();
  });

  it('a NetworkManager push for the WAN link (a network change) leaves splitwan\'s link as it is', async () => {
    const { r, wan, clock, t } = setup({ nm: true });
    await t.start();
    r.push(wan.ifindex, { dns: ['10.0.0.1', '10.0.0.2'], domains: [{ domain: 'corp.example', routingOnly: false }], defaultRoute: true });
    await clock.advance(30_000);
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    expect(r.describe('wlan0')!.dns).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(r.calls.filter((c) => c.startsWith('apply'))).toHaveLength(1);
    await t.stop();
  });

  it('tells NetworkManager to leave the link alone, so its sleep does not take the link\'s address', async () => {
    const { r, link, t } = setup({ nm: true });
    await t.start();
    expect(r.unmanaged.has('splitwan-dns')).toBe(true);
    r.networkManagerSleep();
    expect(link.held!.relevant).toBe(true);
    await t.stop();
  });

  it('asks NetworkManager again when it has not seen the link yet, and after NetworkManager restarts', async () => {
    const { r, clock, t } = setup({ nm: true });
    r.nmKnows = new Set();
    await t.start();
    expect(r.unmanaged.size).toBe(0);
    r.nmKnows.add('splitwan-dns');
    await clock.advance(500);
    expect(r.unmanaged.has('splitwan-dns')).toBe(true);
    r.startNetworkManager(); // a new NetworkManager forgot runtime settings
    expect(r.unmanaged.size).toBe(0);
    await settle();
    expect(r.unmanaged.has('splitwan-dns')).toBe(true);
    await t.stop();
  });

  it('a link that lost its address (NetworkManager without the unmanage, someone) is repaired by the periodic check', async () => {
    const { r, link, clock, t } = setup();
    await t.start();
    r.nmRunning = true; // a NetworkManager that was not there at start and so was not told
    r.networkManagerSleep();
    expect(link.held!.relevant).toBe(false);
    await clock.advance(10_000);
    expect(link.held!.relevant).toBe(true);
    expect(link.repaired).toBe(1);
    await t.stop();
  });

  it('a link made with ip that someone deleted while the daemon runs is made again by the periodic check: settings on the new ifindex, NetworkManager told again', async () => {
    const { r, link, clock, t } = setup({ kind: 'ip', nm: true });
    await t.start();
    const first = link.held!.ifindex;
    r.removeLink(first); // `ip link delete splitwan-dns` (splitwan cleanup while it runs)
    r.unmanaged.clear(); // NetworkManager's setting went with the device
    expect(r.describe('splitwan-dns')).toBeNull();
    await clock.advance(10_000);
    expect(link.held!.ifindex).not.toBe(first);
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    expect(r.unmanaged.has('splitwan-dns')).toBe(true);
    expect(t.status()).toMatchObject({ active: true, ifindex: link.held!.ifindex });
    await t.stop();
    expect(r.describe('splitwan-dns')).toBeNull();
  });

  it('a failed apply is logged, leaves start false and is retried soon', async () => {
    const { r, clock, t } = setup();
    r.failNext.set('apply', 'org.freedesktop.resolve1.NoSuchLink: a resolved that just started');
    expect(await t.start()).toBe(false);
    expect(t.status().lastError).toMatch(/NoSuchLink/);
    await clock.advance(499);
    expect(t.status().active).toBe(false);
    await clock.advance(1);
    expect(t.status()).toMatchObject({ active: true, lastError: null });
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    await t.stop();
  });

  it('a link that cannot be made (no /dev/net/tun) is reported, retried with a doubling delay up to the periodic interval, nothing set', async () => {
    const { r, link, clock, t } = setup();
    link.failOpen = 'splitwan-dns: open /dev/net/tun: ENOENT';
    expect(await t.start()).toBe(false);
    expect(t.status().lastError).toMatch(/ENOENT/);
    const attemptsAt: number[] = [];
    let seen = link.openAttempts;
    for (let ms = 0; ms <= 40_000; ms += 250) {
      await clock.advance(250);
      if (link.openAttempts !== seen) {
        seen = link.openAttempts;
        attemptsAt.push(ms + 250);
      }
    }
    // retries after 0.5, 1, 2, 4, 8 s, then every 10 s (the periodic interval): one timer, never two
    expect(attemptsAt).toEqual([500, 1500, 3500, 7500, 15_500, 25_500, 35_500]);
    expect(r.calls.filter((c) => c.startsWith('apply'))).toEqual([]);
    link.failOpen = null;
    await clock.advance(10_000);
    expect(t.status().active).toBe(true);
    await t.stop();
  });

  it('resolved leaving the bus makes the takeover inactive until it is back', async () => {
    const { r, t } = setup();
    await t.start();
    r.stopResolved();
    await settle();
    expect(t.status()).toMatchObject({ active: false, resolvedRunning: false });
    r.startResolved();
    await settle();
    expect(t.status()).toMatchObject({ active: true, resolvedRunning: true });
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    await t.stop();
  });

  it('after stop, bus signals and timers do nothing', async () => {
    const { r, clock, t } = setup();
    await t.start();
    await t.stop();
    const n = r.calls.length;
    r.restart();
    await clock.advance(60_000);
    expect(r.calls.length).toBe(n);
  });
});

describe('the breakout follows the network through resolved', () => {
  it('calls back with the WAN link\'s servers at start and when a network change gives it others; null when resolved goes', async () => {
    const r = new FakeResolved();
    const wan = r.addLink('wlan0', { defaultRoute: true });
    r.push(wan.ifindex, { dns: ['192.168.1.1'] });
    r.addLink('tun0', { defaultRoute: false }).dns = [srv('10.8.0.1', 9)];
    const seen: (string[] | null)[] = [];
    const clock = new ManualClock();
    const t = new ResolvedTakeover({ api: r, link: new FakeDnsLink(r), listen: [RESOLVED_MODE_LISTEN], clock, logger: silentLogger, wanIfname: () => 'wlan0', onBreakoutServers: (s) => seen.push(s) });
    await t.start();
    expect(seen).toEqual([['192.168.1.1']]);
    await clock.advance(10_000); // unchanged: no call
    expect(seen).toHaveLength(1);
    r.push(wan.ifindex, { dns: ['10.0.0.1', '10.0.0.2'] }); // DHCP on another network
    await clock.advance(10_000);
    expect(seen.at(-1)).toEqual(['10.0.0.1', '10.0.0.2']);
    r.stopResolved();
    await settle();
    expect(seen.at(-1)).toBeNull();
    await t.stop();
  });
});

describe('cleanup after a crash (stateless)', () => {
  it('the crashed process\'s link went with it; a marker left on another link is reverted; the WAN link is untouched', async () => {
    const { r, link, t } = setup();
    await t.start();
    link.crash(); // kill -9: the kernel removes the TUN, resolved forgets it
    expect(r.describe('splitwan-dns')).toBeNull();
    // An older layout's takeover on a tunnel link, still in resolved:
    const tun = r.addLink('swg-home');
    await r.apply(tun.ifindex, takeoverSettings([RESOLVED_MODE_LISTEN]));
    const wanBefore = r.describe('wlan0');
    const fresh = new FakeDnsLink(r);
    expect(await cleanupTakeover(r, fresh)).toEqual(['swg-home']);
    expect(r.describe('swg-home')).toEqual(REVERTED);
    expect(r.describe('wlan0')).toEqual(wanBefore);
  });

  it('reverts a link of splitwan\'s name and removes a leftover device nobody holds', async () => {
    const r = new FakeResolved();
    const link = new FakeDnsLink(r);
    link.leftover = r.addLink('splitwan-dns', { dns: [srv('127.0.0.153', 0)], domains: [{ domain: '.', routingOnly: true }] });
    expect(await cleanupTakeover(r, link)).toEqual(['splitwan-dns']);
    expect(link.staleRemoved).toBe(1);
    expect(r.byName('splitwan-dns')).toBeUndefined();
  });

  it('a link made with ip (no native code) outlives a kill -9 with resolved still pointing at splitwan; cleanup reverts and removes it; then the next run takes over', async () => {
    const { r, link, t } = setup({ kind: 'ip' });
    await t.start();
    link.crash();
    expect(r.describe('splitwan-dns')).toEqual(TAKEN); // every query goes to a dead address until cleanup
    const fresh = new FakeDnsLink(r, 'splitwan-dns', 'ip');
    fresh.leftover = link.leftover;
    await expect(fresh.open()).rejects.toThrow(/File exists/); // not taken over blindly: cleanup first
    expect(await cleanupTakeover(r, fresh)).toEqual(['splitwan-dns']);
    expect(fresh.staleRemoved).toBe(1);
    expect(r.describe('splitwan-dns')).toBeNull();
    const next = new ResolvedTakeover({ api: r, link: fresh, listen: [RESOLVED_MODE_LISTEN], clock: new ManualClock(), logger: silentLogger });
    expect(await next.start()).toBe(true);
    expect(r.describe('splitwan-dns')).toEqual(TAKEN);
    await next.stop();
    expect(r.describe('splitwan-dns')).toBeNull();
  });

  it('without resolved only the leftover link is looked for', async () => {
    const r = new FakeResolved();
    r.isRunning = false;
    const link = new FakeDnsLink(r);
    expect(await cleanupTakeover(r, link)).toEqual([]);
    expect(r.calls).toEqual([]);
  });

  it('isStaleTakeover: splitwan\'s address with ~., or splitwan\'s link name; nothing else', () => {
    const l = (o: Partial<ResolvedLink>): ResolvedLink => ({ ifindex: 5, ifname: 'wg0', dns: [], domains: [], defaultRoute: true, llmnr: 'yes', mdns: 'no', ...o });
    const own = ['127.0.0.153'];
    expect(isStaleTakeover(l({ dns: [srv('127.0.0.153', 5)], domains: [{ domain: '.', routingOnly: true }] }), own)).toBe(true);
    expect(isStaleTakeover(l({ ifname: 'splitwan-dns' }), own)).toBe(true);
    // a VPN's own ~. with its own server, splitwan's address without ~., another local resolver: not ours
    expect(isStaleTakeover(l({ dns: [srv('10.8.0.1', 5)], domains: [{ domain: '.', routingOnly: true }] }), own)).toBe(false);
    expect(isStaleTakeover(l({ dns: [srv('127.0.0.153', 5)], domains: [] }), own)).toBe(false);
    expect(isStaleTakeover(l({ dns: [srv('127.0.0.1', 5)], domains: [{ domain: '.', routingOnly: true }] }), own)).toBe(false);
  });
});

describe('settings', () => {
  it('takeoverSettings: the loopback listen addresses only; none is an error', () => {
    expect(takeoverSettings([{ host: '127.0.0.153', port: 53 }, { host: '10.0.0.1', port: 53 }, { host: '::1', port: 5353 }]).servers).toEqual([
      { family: 4, address: '127.0.0.153', port: 53 },
      { family: 6, address: '::1', port: 5353 },
    ]);
    expect(() => takeoverSettings([{ host: '0.0.0.0', port: 53 }])).toThrow(/no loopback address/);
  });

  it('hasSettings: port 0 and 53 are the same server; any other difference counts', () => {
    const s = takeoverSettings([RESOLVED_MODE_LISTEN]);
    const base: ResolvedLink = { ifindex: 9, ifname: 'splitwan-dns', dns: [srv('127.0.0.153', 9)], domains: [{ domain: '.', routingOnly: true }], defaultRoute: true, llmnr: 'no', mdns: 'no' };
    expect(hasSettings(base, s)).toBe(true);
    expect(hasSettings({ ...base, dns: [srv('127.0.0.153', 9, 53)] }, s)).toBe(true);
    expect(hasSettings({ ...base, dns: [srv('127.0.0.153', 9, 5353)] }, s)).toBe(false);
    expect(hasSettings({ ...base, domains: [{ domain: '.', routingOnly: false }] }, s)).toBe(false);
    expect(hasSettings({ ...base, defaultRoute: false }, s)).toBe(false);
    expect(hasSettings({ ...base, llmnr: 'yes' }, s)).toBe(false);
    expect(hasSettings({ ...base, dns: [...base.dns, srv('10.0.0.1', 9)] }, s)).toBe(false);
  });
});

describe('breakout.dns auto from resolved', () => {
  const link = (ifindex: number, ifname: string, dns: ResolvedServer[], o: Partial<ResolvedLink> = {}): ResolvedLink => ({ ifindex, ifname, dns, domains: [], defaultRoute: true, llmnr: 'yes', mdns: 'no', ...o });
  const own = ['127.0.0.153'];

  it('the WAN link\'s servers first, then the global ones; never splitwan\'s link, the stub or loopback', () => {
    const state = {
      links: [
        link(2, 'wlan0', [srv('192.168.1.1', 2), srv('fe80::1', 2), srv('127.0.0.53', 2)]),
        link(3, 'splitwan-dns', [srv('127.0.0.153', 3)], { domains: [{ domain: '.', routingOnly: true }] }),
        link(4, 'tun0', [srv('10.8.0.1', 4)]),
      ],
      global: [srv('9.9.9.9', 0, 5353)],
      fallback: [srv('1.1.1.1', 0)],
    };
    expect(breakoutServers(state, { wanIfname: 'wlan0', ownHosts: own })).toEqual(['192.168.1.1', 'fe80::1%wlan0', '9.9.9.9:5353']);
  });

  it('without a WAN link known: the global servers, else the default-route links, else resolved\'s fallback', () => {
    const links = [link(2, 'eth0', [srv('192.168.1.1', 2)]), link(4, 'tun0', [srv('10.8.0.1', 4)], { defaultRoute: false })];
    expect(breakoutServers({ links, global: [srv('9.9.9.9', 0)], fallback: [] }, { wanIfname: null, ownHosts: own })).toEqual(['9.9.9.9']);
    expect(breakoutServers({ links, global: [], fallback: [srv('1.1.1.1', 0)] }, { wanIfname: null, ownHosts: own })).toEqual(['192.168.1.1']);
    expect(breakoutServers({ links: [], global: [], fallback: [srv('1.1.1.1', 0), srv('2606:4700:4700::1111', 0, 853)] }, { wanIfname: 'eth0', ownHosts: own })).toEqual(['1.1.1.1', '[2606:4700:4700::1111]:853']);
  });

  it('a stale takeover on another link is not an upstream either', () => {
    const links = [link(2, 'eth0', []), link(7, 'swg-old', [srv('127.0.0.153', 7)], { domains: [{ domain: '.', routingOnly: true }] })];
    expect(breakoutServers({ links, global: [], fallback: [] }, { wanIfname: 'eth0', ownHosts: own })).toEqual([]);
  });
});

describe('D-Bus values', () => {
  it('addresses: bytes ↔ text (RFC 5952: the first longest zero run is ::)', () => {
    expect(addressText(2, Uint8Array.from([127, 0, 0, 153]))).toBe('127.0.0.153');
    const six = (s: string) => addressText(10, addressBytes(s).bytes);
    expect(six('::1')).toBe('::1');
    expect(six('fe80::1')).toBe('fe80::1');
    expect(six('2001:db8::')).toBe('2001:db8::');
    expect(six('1:0:0:1:0:0:0:1')).toBe('1:0:0:1::1');
    expect(six('1:0:0:1:0:0:1:1')).toBe('1::1:0:0:1:1');
    expect(six('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2:3:4:5:6');
    expect(addressBytes('10.0.0.1')).toEqual({ family: 2, bytes: Buffer.from([10, 0, 0, 1]) });
    expect(addressText(2, Uint8Array.from([1, 2, 3]))).toBeNull();
  });

  it('DNSEx and Domains as resolved 252 sends them (captured from the lab through dbus-next)', () => {
    // Link.DNSEx a(iayqs) and Manager.DNSEx a(iiayqs), values as dbus-next decodes them
    expect(parseServers([[2, Buffer.from([127, 0, 0, 153]), 0, '']], false, 5)).toEqual([{ family: 4, address: '127.0.0.153', port: 0, serverName: '', ifindex: 5 }]);
    expect(parseServers([[3, 2, Buffer.from([10, 99, 9, 53]), 53, 'dns.example']], true)).toEqual([{ family: 4, address: '10.99.9.53', port: 53, serverName: 'dns.example', ifindex: 3 }]);
    expect(parseServers([[2, Buffer.from([1, 2])]], false, 1)).toEqual([]);
    expect(parseDomains([['.', true], ['lab.test', false]], false).map((d) => d.domain)).toEqual([
      { domain: '.', routingOnly: true },
      { domain: 'lab.test', routingOnly: false },
    ]);
    expect(parseDomains([[4, 'corp.test', false]], true)).toEqual([{ ifindex: 4, domain: { domain: 'corp.test', routingOnly: false } }]);
  });
});
