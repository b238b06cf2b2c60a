// sendto(2) on a dgram socket's fd (sys/udp-sendto-linux.ts), on loopback: the datagram leaves from that
// very socket (the receiver sees its port, and the answer comes back to dgram's receive path), what it
// cannot do is left to dgram, and what the kernel refuses is thrown with its errno name.
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeSendDatagram } from '../../sys/udp-sendto-linux.js';
import { budget } from '../helpers/emulation.js';

const sockets: dgram.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) {
    try {
      s.close();
    } catch {
      // closed by the test
    }
  }
});

async function bound(type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  sockets.push(s);
  await new Promise<void>((resolve) => s.bind(0, host, resolve));
  return s;
}

function next(s: dgram.Socket): Promise<{ msg: Buffer; port: number; address: string }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no datagram')), budget(3000));
    s.once('message', (msg, r) => {
      clearTimeout(t);
      resolve({ msg, port: r.port, address: r.address });
    });
  });
}

describe('nativeSendDatagram', () => {
  const send = nativeSendDatagram();

  for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
    it(`${type}: the datagram leaves from the socket's own port, and the answer comes back through dgram`, async () => {
      const server = await bound(type, host);
      const client = await bound(type, host);
      const port = (server.address() as AddressInfo).port;
      const got = next(server);
      expect(send(client, Buffer.from('query one'), port, host)).toBe(true);
      const d = await got;
      expect(d.msg.toString()).toBe('query one');
      expect(d.port).toBe((client.address() as AddressInfo).port);
      const back = next(client);
      server.send(Buffer.from('answer'), d.port, d.address);
      expect((await back).msg.toString()).toBe('answer');
    });
  }

  it('leaves to dgram what it cannot do: a scoped address, a closed socket', async () => {
    const s = await bound('udp6', '::1');
    expect(send(s, Buffer.from('x'), 53, 'fe80::1%lo')).toBe(false);
    s.close();
    expect(send(s, Buffer.from('x'), 53, '::1')).toBe(false);
  });

  it("throws the kernel's refusal with its errno name (an IPv4 address on an IPv6-only socket)", async () => {
    const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
    sockets.push(s);
    await new Promise<void>((resolve) => s.bind(0, '::1', resolve));
    let err: (Error & { code?: string }) | null = null;
    try {
      send(s, Buffer.from('x'), 9, '127.0.0.1');
    } catch (e) {
      err = e as Error & { code?: string };
    }
    // Linux: ENETUNREACH (the address family the socket refuses); other kernels' wording may differ.
    expect(err?.code).toMatch(/^(ENETUNREACH|EAFNOSUPPORT|EINVAL)$/);
    expect(err?.message).toContain('127.0.0.1:9');
  });
});
