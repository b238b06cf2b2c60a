// The forwarder against real upstreams on 127.0.0.1: dnsmasq started by the
// test, and small servers that misbehave on purpose (silent, spoofing,
// truncating), plus DoT and DoH servers with a certificate made at test time.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { parseUpstream } from '../../config/upstream.js';
import type { Upstream } from '../../config/types.js';
import { Forwarder, readQuestion, UpstreamError } from '../../dns/forwarder.js';
import { LoopbackDialer } from '../helpers/dns.js';

const haveDnsmasq = spawnSync('dnsmasq', ['--version']).status === 0;
const haveOpenssl = spawnSync('openssl', ['version']).status === 0;

function query(name: string, type: 'A' | 'AAAA' | 'TXT' = 'A', id = 4242): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

function answerFor(q: Buffer, address: string, opts: { id?: number; tc?: boolean } = {}): Buffer {
  const d = dnsPacket.decode(q);
  const qq = d.questions![0]!;
  return dnsPacket.encode({
    type: 'response',
    id: opts.id ?? d.id ?? 0,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (opts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0),
    questions: [qq],
    answers: opts.tc ? [] : [{ type: 'A', name: qq.name, class: 'IN', ttl: 300, data: address }],
  });
}

const ips = (resp: Buffer): string[] => (dnsPacket.decode(resp).answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data: unknown }).data));
const up = (text: string): Upstream => {
  const u = parseUpstream(text);
  if ('error' in u) throw new Error(u.error);
  return u;
};

async function udpServer(onQuery: (msg: Buffer, reply: (b: Buffer) => void) => void): Promise<{ port: number; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => onQuery(msg, (b) => s.send(b, rinfo.port, rinfo.address)));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => s.close() };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('Forwarder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'splitwan-fwd-'));
  const closers: (() => void)[] = [];
  let dnsmasq: ChildProcess | undefined;
  let dnsmasqPort = 0;
  const log = join(dir, 'dnsmasq.log');

  beforeAll(async () => {
    if (!haveDnsmasq) {
      if (process.env.CI) throw new Error('dnsmasq is missing: .ci/run installs dnsmasq-base');
      return;
    }
    dnsmasqPort = await freePort();
    dnsmasq = spawn('dnsmasq', ['-k', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${dnsmasqPort}`, '--user=root', '--pid-file=', '--log-queries', `--log-facility=${log}`, '--address=/a.test/192.0.2.1', '--address=/b.test/192.0.2.2'], { stdio: 'ignore' });
    const end = Date.now() + 5000;
    while (Date.now() < end) {
      const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 200 });
      const ok = await f.forward(query('a.test'), readQuestion(query('a.test'))!, [up(`127.0.0.1:${dnsmasqPort}`)], 'breakout').then(() => true, () => false);
      if (ok) break;
    }
  });
  afterAll(() => {
    for (const c of closers) c();
    if (dnsmasq?.pid) dnsmasq.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!haveDnsmasq && !process.env.CI)('answers from a real resolver, with the client\'s ID, through the asked path', async () => {
    const dialer = new LoopbackDialer();
    const f = new Forwarder({ dialer, logger: silentLogger, timeoutMs: 1000 });
    const q = query('A.Test', 'A', 777);
    const resp = await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${dnsmasqPort}`)], 'gw:gw1');
    expect(resp.readUInt16BE(0)).toBe(777);
    expect(ips(resp)).toEqual(['192.0.2.1']);
    expect(dialer.paths).toEqual(['gw:gw1']);
    expect(readFileSync(log, 'utf8')).toMatch(/query\[A\] A\.Test from 127\.0\.0\.1/i);
  });

  it.skipIf(!haveDnsmasq && !process.env.CI)('a silent upstream times out and the next one answers', async () => {
    const silent = await udpServer(() => {});
    closers.push(silent.close);
    const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 300 });
    const t0 = Date.now();
    const q = query('b.test');
    const resp = await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${silent.port}`), up(`127.0.0.1:${dnsmasqPort}`)], 'breakout');
    expect(ips(resp)).toEqual(['192.0.2.2']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
  });

  it('setTimeoutMs (a reload of dns.timeout): the next query gives up after the new timeout', async () => {
    const silent = await udpServer(() => {});
    closers.push(silent.close);
    const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 2000 });
    f.setTimeoutMs(150);
    const q = query('slow.test');
    const t0 = Date.now();
    await expect(f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${silent.port}`)], 'breakout')).rejects.toThrow(/no answer in 150 ms/);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(1500);
  });

  it('ignores answers with the wrong ID or question (anti-spoofing) and takes the real one', async () => {
    const spoofer = await udpServer((msg, reply) => {
      reply(answerFor(msg, '203.0.113.66', { id: (msg.readUInt16BE(0) + 1) & 0xffff }));
      reply(answerFor(query('other.test', 'A', msg.readUInt16BE(0)), '203.0.113.67'));
      setTimeout(() => reply(answerFor(msg, '192.0.2.9')), 20);
    });
    closers.push(spoofer.close);
    const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 1000 });
    const q = query('c.test');
    const resp = await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${spoofer.port}`)], 'breakout');
    expect(ips(resp)).toEqual(['192.0.2.9']);
  });

  it('retries over TCP when the UDP answer is truncated', async () => {
    const port = await freePort();
    const udp = dgram.createSocket('udp4');
    udp.on('message', (msg, r) => udp.send(answerFor(msg, '', { tc: true }), r.port, r.address));
    await new Promise<void>((r) => udp.bind(port, '127.0.0.1', r));
    const tcp = net.createServer((c) => {
      c.once('data', (d) => {
        const msg = d.subarray(2, 2 + d.readUInt16BE(0));
        const a = answerFor(msg, '192.0.2.77');
        const len = Buffer.alloc(2);
        len.writeUInt16BE(a.length);
        c.end(Buffer.concat([len, a]));
      });
    });
    await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', r));
    closers.push(() => udp.close(), () => tcp.close());
    const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 1000 });
    const q = query('big.test');
    expect(ips(await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${port}`)], 'breakout'))).toEqual(['192.0.2.77']);
  });

  it('every upstream failing is one error naming each', async () => {
    const silent = await udpServer(() => {});
    closers.push(silent.close);
    const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 100 });
    const q = query('d.test');
    const err = await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${silent.port}`), up(`127.0.0.1:${silent.port}`)], 'gw:gw2').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).message).toContain(`127.0.0.1:${silent.port}: no answer in 100 ms`);
    expect((err as UpstreamError).code).toBe('SPLITWAN_DNS_UPSTREAM');
  });

  it('observe: each exchange with its time and result; SERVFAIL, REFUSED, FORMERR and NOTIMP answers are results of their own, not ok', async () => {
    const rcodeServer = async (rcode: number): Promise<{ port: number; close(): void }> =>
      udpServer((msg, reply) => {
        const d = dnsPacket.decode(msg);
        reply(dnsPacket.encode({ type: 'response', id: d.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE | rcode, questions: d.questions ?? [] }));
      });
    const servers = await Promise.all([rcodeServer(2), rcodeServer(5), udpServer(() => {}), rcodeServer(1)]);
    const notimp = await rcodeServer(4);
    const ok = await udpServer((msg, reply) => reply(answerFor(msg, '192.0.2.5')));
    for (const s of [...servers, notimp, ok]) closers.push(s.close);
    const seen: { upstream: string; path: string; result: string; seconds: number }[] = [];
    const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 200, observe: (o) => seen.push(o) });
    const q = query('e.test');
    // SERVFAIL and REFUSED: the next is tried; silence: the next; FORMERR: an answer, passed on.
    const resp = await f.forward(q, readQuestion(q)!, servers.map((s) => up(`127.0.0.1:${s.port}`)), 'gw:gw1');
    expect(resp[3]! & 0xf).toBe(1);
    await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${notimp.port}`)], 'breakout');
    await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${ok.port}`)], 'breakout');
    expect(seen.map((o) => [o.upstream, o.path, o.result])).toEqual([
      [`127.0.0.1:${servers[0]!.port}`, 'gw:gw1', 'servfail'],
      [`127.0.0.1:${servers[1]!.port}`, 'gw:gw1', 'refused'],
      [`127.0.0.1:${servers[2]!.port}`, 'gw:gw1', 'failed'],
      [`127.0.0.1:${servers[3]!.port}`, 'gw:gw1', 'formerr'],
      [`127.0.0.1:${notimp.port}`, 'breakout', 'notimp'],
      [`127.0.0.1:${ok.port}`, 'breakout', 'ok'],
    ]);
    expect(seen[2]!.seconds).toBeGreaterThanOrEqual(0.18); // the silent one: its timeout
  });

  describe.skipIf(!haveOpenssl && !process.env.CI)('encrypted upstreams', () => {
    let key: Buffer;
    let cert: Buffer;
    beforeAll(() => {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=DNS:dns.test,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      key = readFileSync(join(dir, 'key.pem'));
      cert = readFileSync(join(dir, 'cert.pem'));
    });

    it('DoT: length-prefixed over TLS, certificate checked against the server name', async () => {
      const srv = tls.createServer({ key, cert }, (c) => {
        c.once('data', (d) => {
          const a = answerFor(d.subarray(2, 2 + d.readUInt16BE(0)), '192.0.2.53');
          const len = Buffer.alloc(2);
          len.writeUInt16BE(a.length);
          c.end(Buffer.concat([len, a]));
        });
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      closers.push(() => srv.close());
      const port = (srv.address() as net.AddressInfo).port;
      const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 1000, tls: { ca: cert } });
      const q = query('e.test');
      expect(ips(await f.forward(q, readQuestion(q)!, [up(`tls://127.0.0.1:${port}#dns.test`)], 'breakout'))).toEqual(['192.0.2.53']);
      // A certificate for another name is refused.
      const err = await f.forward(q, readQuestion(q)!, [up(`tls://127.0.0.1:${port}#wrong.test`)], 'breakout').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UpstreamError);
    });

    it('DoH: POST application/dns-message', async () => {
      const seen: string[] = [];
      const srv = https.createServer({ key, cert }, (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          seen.push(`${req.method} ${req.headers['content-type']}`);
          res.writeHead(200, { 'content-type': 'application/dns-message' });
          res.end(answerFor(Buffer.concat(chunks), '192.0.2.43'));
        });
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      closers.push(() => srv.close());
      const port = (srv.address() as net.AddressInfo).port;
      const f = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 2000, tls: { ca: cert } });
      const q = query('f.test', 'A', 999);
      const resp = await f.forward(q, readQuestion(q)!, [up(`https://127.0.0.1:${port}/dns-query`)], 'breakout');
      expect(resp.readUInt16BE(0)).toBe(999);
      expect(ips(resp)).toEqual(['192.0.2.43']);
      expect(seen).toEqual(['POST application/dns-message']);
      f.close();
    });
  });
});
