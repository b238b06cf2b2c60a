// The resolver's UDP transports (dns/udp.ts: Node dgram; dns/udp-mmsg-linux.ts:
// recvmmsg/sendmmsg batches) with real sockets on 127.0.0.1 and ::1: what a
// client sees — its own replies, on its own port, from a burst of many
// clients; late replies; nothing for null; a port freed by close().
//
//   test clients (dgram, 127.0.0.1 / ::1) ──udp──▶ transport.listen(handler)
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { FallbackNotes } from '../../sys/native-fallback.js';
import { dgramTransport, type DatagramHandler, type DatagramListener, type UdpTransport } from '../../dns/udp.js';
import { MmsgTransport, defaultUdpTransport, sockaddr } from '../../dns/udp-mmsg-linux.js';
import { budget } from '../helpers/emulation.js';
import { skipNative } from '../helpers/native.js';

/** Why recvmmsg cannot run here by design (no koffi build, SPLITWAN_NATIVE=off): said once; dgram's tests run anyway. */
const noNative = process.platform === 'linux' ? skipNative('test/integration/dns-udp-transport.test.ts: the recvmmsg transport') : 'not Linux';

const open: DatagramListener[] = [];
const clients: dgram.Socket[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(open.splice(0).map((l) => l.close()));
});

async function listen(t: UdpTransport, handler: DatagramHandler, host = '127.0.0.1', port = 0, errors: Error[] = []): Promise<DatagramListener> {
  const l = await t.listen({ host, port, handler, onError: (e) => errors.push(e), bufferBytes: 1 << 20 });
  open.push(l);
  return l;
}

async function client(family: 4 | 6 = 4): Promise<dgram.Socket> {
  const c = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  clients.push(c);
  await new Promise<void>((r) => c.bind(0, family === 6 ? '::1' : '127.0.0.1', () => r()));
  return c;
}

/** Collects what a client receives until `count` arrived or `ms` passed (stretched in an emulated Node: 900 echoes there outlasted 3 s). */
function collect(c: dgram.Socket, count: number, ms = budget(3000)): Promise<Buffer[]> {
  const got: Buffer[] = [];
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(), ms);
    const onMsg = (m: Buffer): void => {
      got.push(m);
      if (got.length >= count) done();
    };
    const done = (): void => {
      clearTimeout(timer);
      c.off('message', onMsg);
      resolve(got);
    };
    c.on('message', onMsg);
  });
}

/** Echo with a marker: the reply is "<peer address>:<peer port>|" + the message. */
const echo: DatagramHandler = (msg, peer) => Buffer.concat([Buffer.from(`${peer.address}:${peer.port}|`), msg]);

const transports: [string, UdpTransport][] = [...(noNative === null ? [['recvmmsg', new MmsgTransport()] as [string, UdpTransport]] : []), ['dgram', dgramTransport]];

describe.each(transports)('UDP transport %s', (_name, t) => {
  it('a burst from many clients: each gets exactly its own replies, addressed to its port, with its address seen', async () => {
    const l = await listen(t, echo);
    const cs = await Promise.all(Array.from({ length: 6 }, () => client()));
    const per = 150; // 900 datagrams at once: several batches of 64
    const waits = cs.map((c) => collect(c, per));
    for (const c of cs) for (let i = 0; i < per; i++) c.send(Buffer.from(`q${i}`), l.port, '127.0.0.1');
    const got = await Promise.all(waits);
    for (const [k, c] of cs.entries()) {
      const me = `127.0.0.1:${c.address().port}|`;
      const texts = got[k]!.map((b) => b.toString());
      expect(texts.length).toBe(per);
      expect(texts.every((s) => s.startsWith(me))).toBe(true);
      expect(new Set(texts.map((s) => s.slice(me.length))).size).toBe(per);
    }
  });

  it('a late reply (a Promise) reaches the client that asked; null sends nothing', async () => {
    const l = await listen(t, (msg, peer) => {
      if (msg.toString() === 'none') return null;
      return new Promise((r) => setTimeout(() => r(Buffer.from(`late ${peer.port} ${msg.toString()}`)), 50));
    });
    const a = await client();
    const b = await client();
    const wa = collect(a, 2, 1000);
    const wb = collect(b, 1, 1000);
    a.send('none', l.port, '127.0.0.1');
    a.send('x', l.port, '127.0.0.1');
    b.send('y', l.port, '127.0.0.1');
    expect((await wa).map(String)).toEqual([`late ${a.address().port} x`]);
    expect((await wb).map(String)).toEqual([`late ${b.address().port} y`]);
  });

  it('a handler that throws is reported, and the listener keeps answering', async () => {
    const errors: Error[] = [];
    const l = await listen(t, (msg, peer) => {
      if (msg.toString() === 'boom') throw new Error('boom');
      return echo(msg, peer);
    }, '127.0.0.1', 0, errors);
    const c = await client();
    const w = collect(c, 1, 1000);
    c.send('boom', l.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 50));
    c.send('ok', l.port, '127.0.0.1');
    expect((await w).map(String)).toEqual([`127.0.0.1:${c.address().port}|ok`]);
    expect(errors.map((e) => e.message)).toEqual(['boom']);
  });

  it('IPv6 on ::1: the peer is ::1 and the reply comes back', async () => {
    const l = await listen(t, echo, '::1');
    const c = await client(6);
    const w = collect(c, 1);
    c.send('six', l.port, '::1');
    expect((await w).map(String)).toEqual([`::1:${c.address().port}|six`]);
  });

  it('close() frees the port at once (the same port binds again), and a reply due after close is not sent', async () => {
    let release: ((b: Buffer) => void) | null = null;
    const l = await listen(t, () => new Promise<Buffer>((r) => (release = r)));
    const c = await client();
    const w = collect(c, 1, 300);
    c.send('q', l.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 50));
    await l.close();
    release!(Buffer.from('too late'));
    expect(await w).toEqual([]);
    const again = await listen(t, echo, '127.0.0.1', l.port);
    expect(again.port).toBe(l.port);
    const w2 = collect(c, 1);
    c.send('again', l.port, '127.0.0.1');
    expect((await w2).map(String)).toEqual([`127.0.0.1:${c.address().port}|again`]);
  });

  it('a port in use is an error with the errno name', async () => {
    const l = await listen(t, echo);
    await expect(t.listen({ host: '127.0.0.1', port: l.port, handler: echo, onError: () => {}, bufferBytes: 1 << 16 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });

  it('a reply larger than a send slot (3000 bytes) arrives whole', async () => {
    const big = Buffer.alloc(3000, 7);
    const l = await listen(t, () => big);
    const c = await client();
    const w = collect(c, 1);
    c.send('big', l.port, '127.0.0.1');
    const [got] = await w;
    expect(got?.equals(big)).toBe(true);
  });
});

describe.skipIf(noNative !== null)('recvmmsg transport specifics', () => {
  it('a datagram over 4 KB is dropped (no DNS query is that long); the next one is answered', async () => {
    const l = await listen(new MmsgTransport(), echo);
    const c = await client();
    const w = collect(c, 2, 500);
    c.send(Buffer.alloc(5000, 1), l.port, '127.0.0.1');
    c.send('small', l.port, '127.0.0.1');
    expect((await w).map(String)).toEqual([`127.0.0.1:${c.address().port}|small`]);
  });

  it('several listeners on one event loop: each answers on its own port', async () => {
    const t = new MmsgTransport();
    const ls = await Promise.all([0, 1, 2].map(() => listen(t, (msg, peer) => Buffer.from(`${msg.toString()}@${peer.port}`))));
    const c = await client();
    const w = collect(c, 3);
    for (const [i, l] of ls.entries()) c.send(`l${i}`, l.port, '127.0.0.1');
    expect((await w).map(String).sort()).toEqual([0, 1, 2].map((i) => `l${i}@${c.address().port}`));
  });

  it('the in-place handler answers where it can (written into the send slot), the handler gets the rest; a throw falls through to the handler', async () => {
    const t = new MmsgTransport();
    const errors: Error[] = [];
    const seen: string[] = [];
    const l = await t.listen({
      host: '127.0.0.1',
      port: 0,
      bufferBytes: 1 << 20,
      onError: (e) => errors.push(e),
      handler: (msg, peer) => Buffer.from(`slow ${msg.toString()} ${peer.port}`),
      inPlace: (buf, off, len, address, out, at, room) => {
        const text = buf.toString('latin1', off, off + len);
        seen.push(`${address} ${room}`);
        if (text === 'boom') throw new Error('in-place handler failed');
        if (!text.startsWith('fast')) return -1;
        return out.write(`in place ${text}`, at, 'latin1');
      },
    });
    open.push(l);
    const c = await client();
    const w = collect(c, 3 * 20);
    for (let i = 0; i < 20; i++) for (const m of [`fast${i}`, `other${i}`, 'boom']) c.send(m, l.port, '127.0.0.1');
    const got = (await w).map(String);
    const port = c.address().port;
    for (let i = 0; i < 20; i++) {
      expect(got).toContain(`in place fast${i}`);
      expect(got).toContain(`slow other${i} ${port}`);
    }
    expect(got.filter((g) => g === `slow boom ${port}`)).toHaveLength(20);
    expect(errors.map((e) => e.message)).toEqual(Array(20).fill('in-place handler failed'));
    expect(new Set(seen)).toEqual(new Set(['127.0.0.1 2048']));
  });

  it('sockaddr: IP literals only (a name or a %scope is left to dgram)', () => {
    expect(sockaddr('127.0.0.1', 53)?.toString('hex')).toBe('020000357f0000010000000000000000');
    expect(sockaddr('::1', 53)?.subarray(0, 4).toString('hex')).toBe('0a000035');
    expect(sockaddr('::1', 53)?.readUInt8(23)).toBe(1);
    expect(sockaddr('localhost', 53)).toBeNull();
    expect(sockaddr('fe80::1%eth0', 53)).toBeNull();
  });

  it('the default is recvmmsg on Linux; SPLITWAN_DNS_UDP=dgram chooses dgram', () => {
    expect(defaultUdpTransport({}).name).toBe('recvmmsg');
    expect(defaultUdpTransport({ SPLITWAN_DNS_UDP: 'dgram' }).name).toBe('dgram');
  });
});

describe.skipIf(noNative === null)('without native code (no koffi build, SPLITWAN_NATIVE=off)', () => {
  it('the default is dgram, and the reason is said once', () => {
    const said: string[] = [];
    const say = (_o: object, msg?: string): void => void said.push(msg ?? '');
    expect(defaultUdpTransport({}, { logger: { info: say, warn: say }, notes: new FallbackNotes() }).name).toBe('dgram');
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/^resolver UDP: recvmmsg fast path off \((SPLITWAN_NATIVE=off|koffi does not load on .+)\): using node:dgram$/);
  });
});
