// sys/sockaddr.ts against the bytes the kernel reads and writes: family in
// host order, port and address in network order, at offsets from the struct's
// members (the same on every Linux ABI; checked for both byte orders).
import { endianness } from 'node:os';
import { describe, expect, it } from 'vitest';
import { cAbi, structLayout } from '../../sys/c-abi.js';
import { AF_INET, AF_INET6 } from '../../sys/linux-abi.js';
import { readSockaddr, sockaddr, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_IN6_LEN, SOCKADDR_IN_LEN } from '../../sys/sockaddr.js';

const family = (af: number): string => {
  const b = Buffer.alloc(2);
  if (endianness() === 'LE') b.writeUInt16LE(af);
  else b.writeUInt16BE(af);
  return b.toString('hex');
};

describe('sockaddr', () => {
  it('sockaddr_in is 16 bytes and sockaddr_in6 28 on every ABI, with <linux/in.h>\'s offsets', () => {
    for (const arch of ['x64', 'arm', 'arm64', 's390x', 'mips', 'ia32']) {
      for (const le of [true, false]) {
        const abi = cAbi(arch, le);
        expect(structLayout(SOCKADDR_IN, abi)).toMatchObject({ size: 16, offset: { family: 0, port: 2, addr: 4 } });
        expect(structLayout(SOCKADDR_IN6, abi)).toMatchObject({ size: 28, offset: { family: 0, port: 2, flowinfo: 4, addr: 8, scopeId: 24 } });
      }
    }
    expect([SOCKADDR_IN_LEN, SOCKADDR_IN6_LEN]).toEqual([16, 28]);
  });

  it('writes IPv4 and IPv6 as the kernel expects them, and reads them back', () => {
    const v4 = sockaddr('192.0.2.7', 53)!;
    expect(v4.toString('hex')).toBe(`${family(AF_INET)}0035c000020700000000` + '00000000');
    expect(readSockaddr(v4, 0)).toEqual({ address: '192.0.2.7', port: 53 });
    const v6 = sockaddr('2001:db8::1', 443)!;
    expect(v6.toString('hex')).toBe(`${family(AF_INET6)}01bb00000000` + '20010db8000000000000000000000001' + '00000000');
    expect(readSockaddr(v6, 0)).toEqual({ address: '2001:db8::1', port: 443 });
  });

  it('an IPv4-mapped IPv6 peer reads as IPv4; a scoped or non-literal host, or another family, is refused', () => {
    const b = Buffer.alloc(SOCKADDR_IN6_LEN);
    b.write(family(AF_INET6), 0, 'hex');
    b.writeUInt16BE(8080, 2);
    b.write('00000000000000000000ffffc0000209', 8, 'hex');
    expect(readSockaddr(b, 0)).toEqual({ address: '192.0.2.9', port: 8080 });
    expect(sockaddr('fe80::1%eth0', 1)).toBeNull();
    expect(sockaddr('example.com', 1)).toBeNull();
    expect(readSockaddr(Buffer.alloc(SOCKADDR_IN6_LEN), 0)).toBeNull();
  });
});
