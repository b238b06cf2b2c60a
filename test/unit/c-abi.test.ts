// Struct layouts and byte order for every ABI splitwan may run on
// (sys/c-abi.ts), computed here on any machine: the values the kernel's
// headers give (LP64: x86-64, arm64, s390x, mips64; ILP32: armhf, i386, mips),
// and, for this machine, the same answer as koffi's own struct layout.
import { describe, expect, it } from 'vitest';
import { cAbi, epollEventLayout, iovecLayout, mmsghdrLayout, msghdrLayout, readLong, structLayout, wordWriter, EPOLL_EVENT, IOVEC, KERNEL_TIMESPEC, LIBC_TIMESPEC, MMSGHDR, MSGHDR } from '../../sys/c-abi.js';
import { socketAbi } from '../../sys/linux-abi.js';
import { mmsgBlockLayout } from '../../dns/udp-mmsg-linux.js';

describe('C ABI of each architecture', () => {
  it('LP64 (x64, arm64, s390x): msghdr 56, mmsghdr 64 (msg_len at 56), iovec 16', () => {
    for (const arch of ['x64', 'arm64', 's390x', 'mips64el']) {
      const abi = cAbi(arch, arch !== 's390x');
      expect(msghdrLayout(abi)).toEqual({ size: 56, align: 8, offset: { name: 0, namelen: 8, iov: 16, iovlen: 24, control: 32, controllen: 40, flags: 48 } });
      expect(mmsghdrLayout(abi)).toMatchObject({ size: 64, offset: { hdr: 0, len: 56 } });
      expect(iovecLayout(abi)).toMatchObject({ size: 16, offset: { base: 0, len: 8 } });
    }
  });

  it('ILP32 (armhf, i386, mips): msghdr 28, mmsghdr 32 (msg_len at 28), iovec 8', () => {
    for (const arch of ['arm', 'ia32', 'mips', 'mipsel']) {
      const abi = cAbi(arch);
      expect(msghdrLayout(abi)).toEqual({ size: 28, align: 4, offset: { name: 0, namelen: 4, iov: 8, iovlen: 12, control: 16, controllen: 20, flags: 24 } });
      expect(mmsghdrLayout(abi)).toMatchObject({ size: 32, offset: { hdr: 0, len: 28 } });
      expect(iovecLayout(abi)).toMatchObject({ size: 8, offset: { base: 0, len: 4 } });
    }
  });

  it('epoll_event: packed on x86-64 (12, data at 4), 16 with data at 8 on arm/arm64/s390x/mips, 12 on i386', () => {
    expect(epollEventLayout(cAbi('x64'))).toMatchObject({ size: 12, offset: { events: 0, data: 4 } });
    for (const arch of ['arm64', 'arm', 's390x', 'mips']) expect(epollEventLayout(cAbi(arch)), arch).toMatchObject({ size: 16, offset: { events: 0, data: 8 } });
    expect(epollEventLayout(cAbi('ia32'))).toMatchObject({ size: 12, offset: { data: 4 } });
  });

  it('the resolver\'s block: every header field at the ABI\'s offset', () => {
    const arm = mmsgBlockLayout(cAbi('arm'));
    expect([arm.HDR, arm.IOV, arm.H_NAME, arm.H_NAMELEN, arm.H_IOV, arm.H_IOVLEN, arm.H_FLAGS, arm.H_LEN, arm.IOV_LEN]).toEqual([32, 8, 0, 4, 8, 12, 24, 28, 4]);
    const x64 = mmsgBlockLayout(cAbi('x64'));
    expect([x64.HDR, x64.IOV, x64.H_NAME, x64.H_NAMELEN, x64.H_IOV, x64.H_IOVLEN, x64.H_FLAGS, x64.H_LEN, x64.IOV_LEN]).toEqual([64, 16, 0, 8, 16, 24, 48, 56, 8]);
    expect(arm.BLOCK).toBeLessThan(x64.BLOCK);
  });

  it('an architecture with no known ABI is refused with a code', () => {
    expect(() => cAbi('sparc64')).toThrow(expect.objectContaining({ code: 'SPLITWAN_NATIVE_ABI' }));
  });

  it('pointers and sizes are written in the ABI\'s width and byte order', () => {
    const dv = new DataView(new ArrayBuffer(8));
    const bytes = (): string => Buffer.from(dv.buffer).toString('hex');
    wordWriter(cAbi('x64', true))(dv, 0, 0x7f12_3456_789a);
    expect(bytes()).toBe('9a785634127f0000');
    wordWriter(cAbi('s390x', false))(dv, 0, 0x7f12_3456_789a);
    expect(bytes()).toBe('00007f123456789a');
    dv.setBigUint64(0, 0n);
    wordWriter(cAbi('arm', true))(dv, 0, 0xb6f0_1234);
    expect(bytes()).toBe('3412f0b600000000');
    wordWriter(cAbi('mips', false))(dv, 4, 0xb6f0_1234);
    expect(bytes()).toBe('3412f0b6b6f01234');
  });

  it('timespecs: the kernel\'s 16 bytes everywhere; the C library\'s clock_gettime 8 on ILP32 (32-bit time_t), 16 on LP64; read as longs of the ABI', () => {
    for (const arch of ['x64', 'arm64', 's390x', 'arm', 'mips', 'ia32']) {
      const abi = cAbi(arch, arch !== 's390x' && arch !== 'mips');
      expect(structLayout(KERNEL_TIMESPEC, abi)).toMatchObject({ size: 16, offset: { sec: 0, nsec: 8 } });
      const four = abi.pointerSize === 4;
      expect(structLayout(LIBC_TIMESPEC, abi)).toMatchObject({ size: four ? 8 : 16, offset: { sec: 0, nsec: four ? 4 : 8 } });
    }
    const b = Buffer.from('fffffffe00000003', 'hex');
    expect(readLong(b, 0, cAbi('mips', false))).toBe(-2n);
    expect(readLong(b, 4, cAbi('arm', false))).toBe(3n);
    expect(readLong(Buffer.from('feffffffffffffff', 'hex'), 0, cAbi('x64', true))).toBe(-2n);
  });

  it('MIPS has its own socket numbers; the others the generic ones', () => {
    expect(socketAbi('mipsel')).toMatchObject({ SOL_SOCKET: 0xffff, SO_REUSEADDR: 4, SO_ERROR: 0x1007, SO_SNDBUF: 0x1001, SO_RCVBUF: 0x1002, SO_LINGER: 0x80, SO_SNDBUFFORCE: 31, SO_RCVBUFFORCE: 33, SO_MARK: 36, SOCK_STREAM: 2, SOCK_DGRAM: 1, SOCK_NONBLOCK: 0x80, O_NONBLOCK: 0x80, TUNSETIFF: 0x800454ca });
    for (const arch of ['x64', 'arm', 'arm64', 's390x']) expect(socketAbi(arch), arch).toMatchObject({ SOL_SOCKET: 1, SO_MARK: 36, SOCK_STREAM: 1, SOCK_DGRAM: 2, SOCK_NONBLOCK: 0o4000, TUNSETIFF: 0x400454ca });
  });
});

describe('on this machine, koffi lays the structs out the same way', async () => {
  const k = await import('../../sys/koffi-linux.js');
  let koffiMissing: string | null = null;
  try {
    k.loadKoffi();
  } catch (e) {
    koffiMissing = (e as Error).message;
  }
  if (koffiMissing !== null) console.warn(`SKIPPED koffi layout comparison: ${koffiMissing}`);
  it.skipIf(koffiMissing !== null)('msghdr, mmsghdr, iovec, epoll_event agree with koffi.struct/koffi.pack', () => {
    const abi = cAbi();
    expect(k.koffiLayoutProblem('msghdr', MSGHDR, msghdrLayout(abi))).toBeNull();
    expect(k.koffiLayoutProblem('mmsghdr', MMSGHDR, mmsghdrLayout(abi))).toBeNull();
    expect(k.koffiLayoutProblem('iovec', IOVEC, iovecLayout(abi))).toBeNull();
    expect(k.koffiLayoutProblem('epoll_event', EPOLL_EVENT, epollEventLayout(abi), abi.epollPacked)).toBeNull();
    // And it notices a wrong one (what the old literal LP64 layout is on armhf).
    expect(k.koffiLayoutProblem('iovec', IOVEC, { size: abi.pointerSize === 8 ? 8 : 16, offset: { base: 0, len: 8 } })).toMatch(/koffi says size/);
  });
});
