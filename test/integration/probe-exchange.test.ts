// DNS probes over one long-lived socket per path and family (issue 17), on
// real sockets on 127.0.0.1: a resolver this test scripts (how long it waits
// before each answer, what it answers) and the FakePathSockets, which count
// the sockets made and remember each one's mark.
import dgram from 'node:dgram';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as dnsPacket from 'dns-packet';
import { FakePathSockets } from '../../daemon/sockets.js';
import { ProbeExchange } from '../../daemon/health/probe-exchange.js';
import { readQuestion, type PathDialer } from '../../dns/forwarder.js';
import { TimeoutError } from '../../lib/deadline.js';
import { upstream } from '../helpers/dns.js';
import { nativeSendDatagram, type SendDatagram } from '../../sys/udp-sendto-linux.js';

/** Each query answered after the delay the script gives it, with the address it gives (null: never answered). */
let script: (n: number) => { delayMs: number; address: string } | null = () => ({ delayMs: 0, address: '10.0.0.1' });
let server: dgram.Socket;
let port = 0;
let received = 0;

function answerTo(query: Buffer, address: string): Buffer {
  const q = dnsPacket.decode(query);
  return dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: address }] });
}

beforeAll(async () => {
  server = dgram.createSocket('udp4');
  server.on('message', (msg, rinfo) => {
    const s = script(received++);
    if (s === null) return;
    setTimeout(() => server.send(answerTo(msg, s.address), rinfo.port, rinfo.address), s.delayMs);
  });
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
  port = server.address().port;
});
afterAll(() => server.close());
beforeEach(() => {
  received = 0;
  script = () => ({ delayMs: 0, address: '10.0.0.1' });
});

const query = dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'probe.test', class: 'IN' }] });
const q = readQuestion(query)!;
const addressOf = (resp: Buffer): string => (dnsPacket.decode(resp).answers![0] as { data: string }).data;

function setup(o: { timeoutMs?: number; mark?: () => number } = {}) {
  const sockets = new FakePathSockets();
  const marks: Record<string, number> = { 'gw:gw1': 0x1100, 'gw:gw2': 0x1200 };
  const markOf = (p: string): number => o.mark?.() ?? marks[p]!;
  const dialer: PathDialer = { udp: (p, f) => sockets.udp(f, markOf(p)), tcp: () => Promise.reject(new Error('no tcp here')) };
  const fallbacks: string[] = [];
  const x = new ProbeExchange({
    dialer,
    markOf,
    fallback: async (_q, _qq, u) => {
      fallbacks.push(u.text);
      throw new Error('fallback');
    },
    timeoutMs: () => o.timeoutMs ?? 500,
    ...(sender ? { send: sender } : {}),
  });
  return { x, sockets, fallbacks };
}

/** The describe block's sender (below): dgram's send, or sendto(2) on the fd as the daemon sends. */
let sender: SendDatagram | undefined;

describe.each([
  ['dgram send', undefined],
  ['sendto on the fd', nativeSendDatagram()],
] as const)('ProbeExchange (%s)', (_name, send) => {
  beforeAll(() => {
    sender = send;
  });

  it('every round of a path goes through one socket with the path\'s mark; another path has its own', async () => {
    const { x, sockets } = setup();
    const u = upstream(`127.0.0.1:${port}`);
    for (let i = 0; i < 5; i++) {
      const r = await x.exchange(query, q, u, 'gw:gw1');
      expect(addressOf(r.resp)).toBe('10.0.0.1');
      expect(r.rttMs).toBeGreaterThanOrEqual(0);
    }
    await x.exchange(query, q, u, 'gw:gw2');
    expect(sockets.opened.map((s) => s.mark)).toEqual([0x1100, 0x1200]);
    x.close();
  });

  it('an answer to a round that timed out cannot count for a newer round on the same socket', async () => {
    const { x, sockets } = setup({ timeoutMs: 300 });
    const u = upstream(`127.0.0.1:${port}`);
    // The first query's answer comes 450 ms late (after its timeout, while the second waits); the second's 350 ms after it was sent.
    script = (n) => (n === 0 ? { delayMs: 450, address: '10.0.0.1' } : { delayMs: 250, address: '10.0.0.2' });
    await expect(x.exchange(query, q, u, 'gw:gw1')).rejects.toBeInstanceOf(TimeoutError);
    const second = await x.exchange(query, q, u, 'gw:gw1');
    expect(addressOf(second.resp)).toBe('10.0.0.2');
    expect(sockets.opened).toHaveLength(1);
    x.close();
  });

  it('hedged rounds in flight at once on one socket each get their own answer', async () => {
    const { x, sockets } = setup();
    const u = upstream(`127.0.0.1:${port}`);
    script = (n) => ({ delayMs: n === 0 ? 200 : 0, address: `10.0.0.${n + 1}` });
    const first = x.exchange(query, q, u, 'gw:gw1');
    await new Promise((r) => setTimeout(r, 50));
    const second = await x.exchange(query, q, u, 'gw:gw1');
    expect(addressOf(second.resp)).toBe('10.0.0.2');
    expect(addressOf((await first).resp)).toBe('10.0.0.1');
    expect(sockets.opened).toHaveLength(1);
    x.close();
  });

  it('an answer from another port (stray or spoofed) is not taken', async () => {
    const { x } = setup({ timeoutMs: 300 });
    const u = upstream(`127.0.0.1:${port}`);
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', r));
    script = () => null;
    server.once('message', (msg, rinfo) => spoofer.send(answerTo(msg, '6.6.6.6'), rinfo.port, rinfo.address));
    await expect(x.exchange(query, q, u, 'gw:gw1')).rejects.toBeInstanceOf(TimeoutError);
    spoofer.close();
    x.close();
  });

  it('a socket that breaks is replaced at the next round; a path whose mark changed gets a new socket', async () => {
    let mark = 0x1100;
    const { x, sockets } = setup({ mark: () => mark });
    const u = upstream(`127.0.0.1:${port}`);
    await x.exchange(query, q, u, 'gw:gw1');
    sockets.closeAll(); // as when its interface went away under it
    expect(addressOf((await x.exchange(query, q, u, 'gw:gw1')).resp)).toBe('10.0.0.1');
    expect(sockets.opened).toHaveLength(2);
    mark = 0x1300; // a reload gave the gateway another slot
    await x.exchange(query, q, u, 'gw:gw1');
    expect(sockets.opened.map((s) => s.mark)).toEqual([0x1100, 0x1100, 0x1300]);
    x.close();
  });

  it('a send that fails rejects its round and the next round starts on a new socket', async () => {
    const { x, sockets } = setup();
    // A broadcast address without SO_BROADCAST: the kernel refuses the send (EACCES, as under a prohibit route).
    await expect(x.exchange(query, q, upstream('255.255.255.255:53'), 'gw:gw1')).rejects.toThrow(/EACCES/);
    await x.exchange(query, q, upstream(`127.0.0.1:${port}`), 'gw:gw1');
    expect(sockets.opened).toHaveLength(2);
    x.close();
  });

  it('DoT and DoH go to the fallback', async () => {
    const { x, fallbacks } = setup();
    await expect(x.exchange(query, q, upstream('tls://127.0.0.1:853'), 'gw:gw1')).rejects.toThrow('fallback');
    expect(fallbacks).toHaveLength(1);
    x.close();
  });
});
