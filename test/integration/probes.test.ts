// Probe rounds against real sockets on 127.0.0.1 (a loopback dialer stands in
// for the per-path sockets) and a fake tunnel status: what a round reports
// when each kind of probe succeeds or fails.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../config/types.js';
import { silentLogger } from '../../lib/logger.js';
import { Forwarder } from '../../dns/forwarder.js';
import { HANDSHAKE_STALE_MS, Prober, RX_STALL_MS, type ProbeTarget } from '../../daemon/health/probes.js';
import { parsePingRtt } from '../../daemon/health/ping-linux.js';
import type { TunnelStatus } from '../../daemon/tunnel/types.js';
import { LoopbackDialer, upstream } from '../helpers/dns.js';
import { startTinyUpstream } from '../helpers/dns-upstream.js';
import { ManualClock } from '../helpers/clock.js';
import { budget } from '../helpers/emulation.js';

/** The probes' timeout: stretched in an emulated Node, whose first http probe imports undici (seconds there). */
const TIMEOUT = budget(300);

describe('Prober', () => {
  const clock = new ManualClock();
  let tunnel: TunnelStatus | null;
  let web: http.Server;
  let webPort = 0;
  let closedPort = 0;
  let dnsPort = 0;
  let stopDns: () => Promise<void> = async () => {};
  const dialer = new LoopbackDialer();
  const forwarder = new Forwarder({ dialer, logger: silentLogger, timeoutMs: TIMEOUT });
  const prober = new Prober({
    dialer,
    exchange: (q, qq, u, p, x) => forwarder.exchange(q, qq, u, p, x),
    tunnel: async () => tunnel,
    ping: async () => 12.5,
    clock,
    timeoutMs: TIMEOUT,
  });
  const target = (probes: ProbeSpec[], dns = [upstream(`127.0.0.1:${dnsPort}`)]): ProbeTarget => ({ name: 'gw1', path: 'gw:gw1', ifname: 'swg-gw1', dns, mark: 0x1100, probes });

  beforeAll(async () => {
    const up = await startTinyUpstream({});
    dnsPort = up.port;
    stopDns = up.close;
    web = http.createServer((req, res) => {
      res.statusCode = req.url === '/generate_204' ? 204 : 500;
      res.end();
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    webPort = (web.address() as net.AddressInfo).port;
    const s = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => s.once('listening', r));
    closedPort = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
  });
  afterAll(async () => {
    prober.close();
    forwarder.close();
    await stopDns();
    await new Promise((r) => web.close(r));
  });

  it('dns: an answer through the path, with its RTT; every resolver at once, the first answer wins', async () => {
    const r = await prober.round(target([{ kind: 'dns' }], [upstream('127.0.0.1:1'), upstream(`127.0.0.1:${dnsPort}`)]));
    expect(r.ok).toBe(true);
    expect(r.rttMs).toBeGreaterThan(0);
    expect(r.rttMs).toBeLessThan(TIMEOUT); // not after the dead one's timeout
    expect(dialer.paths).toContain('gw:gw1');
  });

  it('dns: no answer from any resolver fails the round with why', async () => {
    const r = await prober.round(target([{ kind: 'dns' }], [upstream('127.0.0.1:1')]));
    expect(r).toMatchObject({ ok: false, rttMs: null });
    expect(r.error).toMatch(/^dns: /);
  });

  it('http: the expected status passes, another fails; tcp: a connect', async () => {
    expect((await prober.round(target([{ kind: 'http', url: `http://127.0.0.1:${webPort}/generate_204`, expect: 204 }]))).ok).toBe(true);
    const bad = await prober.round(target([{ kind: 'http', url: `http://127.0.0.1:${webPort}/other` }]));
    expect(bad).toMatchObject({ ok: false, error: 'http: status 500' });
    expect((await prober.round(target([{ kind: 'tcp', target: `127.0.0.1:${webPort}` }]))).ok).toBe(true);
    expect((await prober.round(target([{ kind: 'tcp', target: `127.0.0.1:${closedPort}` }]))).ok).toBe(false);
  });

  it('setTimeoutMs (a reload of health.timeout): an http probe of a server that never answers fails after the new timeout', async () => {
    const hang = http.createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const port = (hang.address() as net.AddressInfo).port;
    const p = new Prober({ dialer, exchange: (q, qq, u, pa, x) => forwarder.exchange(q, qq, u, pa, x), tunnel: async () => tunnel, ping: async () => 1, clock, timeoutMs: 5000 });
    try {
      p.setTimeoutMs(150);
      const t0 = Date.now();
      const r = await p.round(target([{ kind: 'http', url: `http://127.0.0.1:${port}/generate_204` }]));
      expect(r.ok).toBe(false);
      expect(r.error).toMatch(/150 ms/);
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      p.close();
      hang.closeAllConnections();
      await new Promise((r) => hang.close(r));
    }
  });

  it('handshake: fresh and receiving passes; none, stale, or nothing received for 35 s fails', async () => {
    const hs = (over: Partial<TunnelStatus>): TunnelStatus => ({ ifname: 'swg-gw1', up: true, pid: 1, latestHandshake: clock.now() - 5000, rxBytes: 100, txBytes: 100, endpoint: null, ...over });
    tunnel = hs({});
    expect((await prober.round(target([{ kind: 'handshake' }]))).ok).toBe(true);
    tunnel = hs({ latestHandshake: null });
    expect((await prober.round(target([{ kind: 'handshake' }]))).error).toBe('handshake: none yet');
    tunnel = hs({ latestHandshake: clock.now() - HANDSHAKE_STALE_MS - 1000 });
    expect((await prober.round(target([{ kind: 'handshake' }]))).error).toMatch(/handshake: the latest is 181 s old/);
    tunnel = hs({ up: false });
    expect((await prober.round(target([{ kind: 'handshake' }]))).ok).toBe(false);
    tunnel = hs({ rxBytes: 500 });
    expect((await prober.round(target([{ kind: 'handshake' }]))).ok).toBe(true);
    await clock.advance(RX_STALL_MS + 1000);
    tunnel = hs({ rxBytes: 500 });
    expect((await prober.round(target([{ kind: 'handshake' }]))).error).toMatch(/nothing received for 36 s/);
    tunnel = hs({ rxBytes: 900 });
    expect((await prober.round(target([{ kind: 'handshake' }]))).ok).toBe(true);
  });

  it('handshake age: a wall-clock step (NTP\'s first sync) does not make a fresh handshake stale; monotonic time does', async () => {
    const own = new ManualClock();
    const p = new Prober({ dialer, exchange: (q, qq, u, pa, x) => forwarder.exchange(q, qq, u, pa, x), tunnel: async () => tunnel, ping: async () => 1, clock: own, timeoutMs: 300 });
    const at = own.wall() - 5000;
    tunnel = { ifname: 'swg-ntp', up: true, pid: 1, latestHandshake: at, rxBytes: 1, txBytes: 1, endpoint: null };
    const t = { ...target([{ kind: 'handshake' }]), ifname: 'swg-ntp' };
    expect((await p.round(t)).ok).toBe(true);
    own.stepWall(3_600_000); // the same handshake now looks an hour old on the wall clock
    tunnel = { ...tunnel, rxBytes: 2 };
    expect((await p.round(t)).ok).toBe(true);
    await own.advance(HANDSHAKE_STALE_MS);
    tunnel = { ...tunnel, rxBytes: 3 };
    expect((await p.round(t)).error).toMatch(/handshake: the latest is 185 s old/);
    p.close();
  });

  it('a round is good only when every probe is; its RTT is the smallest measured', async () => {
    tunnel = { ifname: 'swg-gw1', up: true, pid: 1, latestHandshake: clock.now(), rxBytes: 1000, txBytes: 1, endpoint: null };
    const r = await prober.round(target([{ kind: 'dns' }, { kind: 'handshake' }, { kind: 'icmp', target: '10.64.0.1' }]));
    expect(r.ok).toBe(true);
    expect(r.rttMs).toBeLessThanOrEqual(12.5);
    const bad = await prober.round(target([{ kind: 'dns' }, { kind: 'icmp', target: 'not-an-ip' }]));
    expect(bad).toMatchObject({ ok: false, error: 'icmp: not-an-ip is not an IP address' });
  });

  it('ping output', () => {
    expect(parsePingRtt('64 bytes from 10.64.0.1: icmp_seq=1 ttl=64 time=0.123 ms')).toBe(0.123);
    expect(parsePingRtt('1 packets transmitted, 0 received, 100% packet loss')).toBeNull();
  });
});
