// The forwarder's pool of upstream UDP sockets (dns/udp-pool.ts), with real
// sockets on 127.0.0.1: what an upstream sees of our IDs and source ports,
// spoofed answers, a socket that stops working, and a route that changes.
//
//   Forwarder ──(pool sockets, random ports)──▶ small UDP upstream on 127.0.0.1
//                 ▲                                  │ records (port, ID) of each query
//                 └── spoofer on another port ◀──────┘ (answers with the query's ID)
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { parseUpstream } from '../../config/upstream.js';
import type { PathName, Upstream } from '../../config/types.js';
import { Forwarder, readQuestion, type PathDialer } from '../../dns/forwarder.js';
import { nativeSendDatagram } from '../../sys/udp-sendto-linux.js';

const query = (name: string, id = 4242): Buffer => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name, class: 'IN' }] });

function answerFor(q: Buffer, address: string, id?: number): Buffer {
  const d = dnsPacket.decode(q);
  const qq = d.questions![0]!;
  return dnsPacket.encode({ type: 'response', id: id ?? d.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE, questions: [qq], answers: [{ type: 'A', name: qq.name, class: 'IN', ttl: 300, data: address }] });
}

const ips = (resp: Buffer): string[] => (dnsPacket.decode(resp).answers ?? []).map((a) => String((a as { data: unknown }).data));
const up = (text: string): Upstream => {
  const u = parseUpstream(text);
  if ('error' in u) throw new Error(u.error);
  return u;
};

interface Seen {
  port: number;
  id: number;
  name: string;
}

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function bound(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  closers.push(() => {
    try {
      s.close();
    } catch {
      // closed by the test
    }
  });
  return s;
}

/** An upstream that records who asked what, and answers (or lets `onQuery` do it). */
async function upstream(onQuery?: (msg: Buffer, from: dgram.RemoteInfo, reply: (b: Buffer) => void) => void): Promise<{ port: number; seen: Seen[] }> {
  const s = await bound();
  const seen: Seen[] = [];
  s.on('message', (msg, rinfo) => {
    seen.push({ port: rinfo.port, id: msg.readUInt16BE(0), name: dnsPacket.decode(msg).questions![0]!.name });
    const reply = (b: Buffer): void => void s.send(b, rinfo.port, rinfo.address);
    if (onQuery) onQuery(msg, rinfo, reply);
    else reply(answerFor(msg, '192.0.2.1'));
  });
  return { port: s.address().port, seen };
}

/** Plain loopback sockets, counted; `routeOf` as the daemon's dialer has it (the path's mark). */
class CountingDialer implements PathDialer {
  readonly sockets: dgram.Socket[] = [];
  route = 'mark:1';
  async udp(_path: PathName, family: 4 | 6): Promise<dgram.Socket> {
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    await new Promise<void>((r) => s.bind(0, r));
    this.sockets.push(s);
    closers.push(() => {
      try {
        s.close();
      } catch {
        // the pool closed it
      }
    });
    return s;
  }
  tcp(): never {
    throw new Error('UDP only here');
  }
  routeOf(): string {
    return this.route;
  }
}

// Both senders: dgram's send, and sendto(2) on the socket's fd (sys/udp-sendto-linux.ts: what the daemon uses).
describe.each([
  ['dgram send', undefined],
  ['sendto on the fd', nativeSendDatagram()],
] as const)('upstream UDP socket pool (%s)', (_sender, send) => {
  const sendOpt = send === undefined ? {} : { send };
  it('every query gets a random ID, from sockets on several ports, none carrying more than maxUses queries', async () => {
    const u = await upstream();
    const dialer = new CountingDialer();
    const f = new Forwarder({ dialer, logger: silentLogger, timeoutMs: 2000, pool: { slots: 8, maxUses: 16, ...sendOpt } });
    closers.push(() => f.close());
    const n = 200;
    for (let i = 0; i < n; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, k) => query(`q${i + k}.test`, 4242)).map((q) => f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`)], 'breakout')));
    }
    expect(u.seen).toHaveLength(n);
    // IDs: none is the client's, nearly all distinct (200 draws from 65536: a few repeats at most), no sequence.
    const ids = u.seen.map((s) => s.id);
    expect(ids.filter((id) => id === 4242).length).toBeLessThanOrEqual(1);
    expect(new Set(ids).size).toBeGreaterThanOrEqual(n - 5);
    const steps = new Set(ids.slice(1).map((id, i) => (id - ids[i]! + 65536) % 65536));
    expect(steps.size).toBeGreaterThan(n / 2);
    // Ports: at least n / maxUses sockets, each used at most maxUses times.
    const perPort = new Map<number, number>();
    for (const s of u.seen) perPort.set(s.port, (perPort.get(s.port) ?? 0) + 1);
    expect(perPort.size).toBeGreaterThanOrEqual(n / 16);
    expect(Math.max(...perPort.values())).toBeLessThanOrEqual(16);
    expect(dialer.sockets.length).toBe(perPort.size);
    // Sockets shared, not made per query: far fewer than queries.
    expect(f.pool.stats.opened).toBeLessThan(n / 4);
  });

  it('answers from the wrong port, or with the wrong ID, are ignored and counted; the real one is taken', async () => {
    const spoofer = await bound();
    const u = await upstream((msg, from, reply) => {
      const id = msg.readUInt16BE(0);
      // The right ID and question, from another port of the upstream's address.
      spoofer.send(answerFor(msg, '203.0.113.66'), from.port, from.address);
      // The right port, a wrong ID.
      reply(answerFor(msg, '203.0.113.67', (id + 1) & 0xffff));
      setTimeout(() => reply(answerFor(msg, '192.0.2.9')), 30);
    });
    const f = new Forwarder({ dialer: new CountingDialer(), logger: silentLogger, timeoutMs: 2000, pool: { slots: 1, ...sendOpt } });
    closers.push(() => f.close());
    const q = query('c.test');
    const resp = await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`)], 'breakout');
    expect(ips(resp)).toEqual(['192.0.2.9']);
    expect(resp.readUInt16BE(0)).toBe(4242);
    expect(f.pool.stats.stray).toBe(2);
  });

  it('a late answer to a query that timed out is not taken by the next query on the same socket', async () => {
    let first = true;
    const u = await upstream((msg, _from, reply) => {
      if (first) {
        first = false;
        setTimeout(() => reply(answerFor(msg, '203.0.113.1')), 250); // after the timeout
      } else setTimeout(() => reply(answerFor(msg, '192.0.2.2')), 400);
    });
    const f = new Forwarder({ dialer: new CountingDialer(), logger: silentLogger, timeoutMs: 200, pool: { slots: 1, ...sendOpt } });
    closers.push(() => f.close());
    const q1 = query('slow.test');
    await expect(f.forward(q1, readQuestion(q1)!, [up(`127.0.0.1:${u.port}`)], 'breakout')).rejects.toThrow(/no answer in 200 ms/);
    f.setTimeoutMs(2000);
    const q2 = query('slow.test');
    const resp = await f.forward(q2, readQuestion(q2)!, [up(`127.0.0.1:${u.port}`)], 'breakout');
    expect(ips(resp)).toEqual(['192.0.2.2']);
    expect(u.seen[0]!.port).toBe(u.seen[1]!.port);
    expect(f.pool.stats.stray).toBe(1);
  });

  it('a socket that stops working (closed under the pool, as a path torn down) fails over to the next upstream and is replaced', async () => {
    const u = await upstream();
    const dialer = new CountingDialer();
    const f = new Forwarder({ dialer, logger: silentLogger, timeoutMs: 2000, pool: { slots: 1, ...sendOpt } });
    closers.push(() => f.close());
    const ask = (name: string) => {
      const q = query(name);
      return f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`), up(`127.0.0.1:${u.port}`)], 'gw:gw1');
    };
    expect(ips(await ask('one.test'))).toEqual(['192.0.2.1']);
    expect(dialer.sockets).toHaveLength(1);
    dialer.sockets[0]!.close();
    expect(ips(await ask('two.test'))).toEqual(['192.0.2.1']);
    expect(f.pool.stats.broken).toBe(1);
    expect(dialer.sockets).toHaveLength(2);
    expect(u.seen.map((s) => s.name)).toEqual(['one.test', 'two.test']);
    expect(u.seen[1]!.port).not.toBe(u.seen[0]!.port);
    // And it stays replaced.
    expect(ips(await ask('three.test'))).toEqual(['192.0.2.1']);
    expect(u.seen[2]!.port).toBe(u.seen[1]!.port);
  });

  it('sockets are shared per route: after a failover (another mark) queries get a socket of their own', async () => {
    const u = await upstream();
    const dialer = new CountingDialer();
    const f = new Forwarder({ dialer, logger: silentLogger, timeoutMs: 2000, pool: { slots: 1, ...sendOpt } });
    closers.push(() => f.close());
    const ask = () => {
      const q = query('t.test');
      return f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`)], 'tunnel');
    };
    await ask();
    await ask();
    expect(dialer.sockets).toHaveLength(1);
    dialer.route = 'mark:2';
    await ask();
    expect(dialer.sockets).toHaveLength(2);
    expect(u.seen[2]!.port).not.toBe(u.seen[1]!.port);
  });

  it('idle sockets are closed, and close() leaves none open', async () => {
    const u = await upstream();
    const f = new Forwarder({ dialer: new CountingDialer(), logger: silentLogger, timeoutMs: 2000, pool: { slots: 4, idleMs: 50, ...sendOpt } });
    const q = query('i.test');
    await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`)], 'breakout');
    expect(f.pool.size).toBe(1);
    f.pool.sweep(performance.now() + 60);
    expect(f.pool.size).toBe(0);
    await f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`)], 'breakout');
    f.close();
    expect(f.pool.size).toBe(0);
    await expect(f.forward(q, readQuestion(q)!, [up(`127.0.0.1:${u.port}`)], 'breakout')).rejects.toThrow(/closed/);
  });
});
