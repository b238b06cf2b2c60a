// A kernel WireGuard link's state over generic netlink (daemon/tunnel/wg-netlink.ts,
// sys/genetlink.ts, sys/netlink.ts), decoded from byte fixtures built here per
// include/uapi/linux/wireguard.h and <linux/genetlink.h>, in both byte orders
// (the host-order fields are the kernel's order; a sockaddr's port and address
// are network order whatever the machine). Not against a live kernel link:
// this machine's kernel has no WireGuard module. The generic netlink socket
// itself is tested against the kernel in test/lab/genetlink.test.ts.
//
// The fixtures are written by the small encoder below, not by the code under
// test, so a layout mistake in one is not repeated in the other.
import { describe, expect, it } from 'vitest';
import { KERNEL_TIMESPEC, SOCKADDR_IN, SOCKADDR_IN6, decodeGetDevice, encodeGetDevice } from '../../daemon/tunnel/wg-netlink.js';
import { cAbi, structLayout } from '../../sys/c-abi.js';
import { koffiLayoutProblem } from '../../sys/koffi-linux.js';
import { skipNative } from '../helpers/native.js';
import { encodeGetFamily, genlAnswers, parseFamilies } from '../../sys/genetlink.js';
import { GENLMSGHDR, NLATTR, NLMSGERR, NLMSGHDR, NetlinkError, NetlinkWriter, nlAttrs, nlMessages } from '../../sys/netlink.js';
import { LinuxTunnels, WG_NETLINK_PATH } from '../../daemon/tunnel/tunnels-linux.js';
import type { KernelWgReader } from '../../daemon/tunnel/wg-netlink-linux.js';
import { FallbackNotes } from '../../sys/native-fallback.js';
import type { Runner } from '../../daemon/exec-linux.js';
import type { Logger } from '../../lib/logger.js';
import type { TunnelSpec } from '../../daemon/tunnel/types.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// ---- an independent encoder of the kernel's messages -------------------------------------
const FAMILY = 0x1b; // what "wireguard" resolves to is the kernel's choice; any number of 0x10 and up
const SEQ = 4242;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_MULTI = 2;
const NLM_F_DUMP_INTR = 0x10;
const NESTED = 0x8000;

type Part = Buffer;
const cat = (...b: Buffer[]): Buffer => Buffer.concat(b);
const pad4 = (b: Buffer): Buffer => cat(b, Buffer.alloc((4 - (b.length % 4)) % 4));

function enc(le: boolean) {
  const u16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    if (le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  };
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    if (le) b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    return b;
  };
  const i32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    if (le) b.writeInt32LE(v);
    else b.writeInt32BE(v);
    return b;
  };
  const u64 = (v: bigint): Buffer => {
    const b = Buffer.alloc(8);
    if (le) b.writeBigUInt64LE(v);
    else b.writeBigUInt64BE(v);
    return b;
  };
  // struct nlattr { __u16 nla_len; __u16 nla_type; } then the data, padded to 4
  const attr = (type: number, data: Buffer): Part => pad4(cat(u16(4 + data.length), u16(type), data));
  const nest = (type: number, ...members: Part[]): Part => {
    const body = cat(...members);
    return cat(u16(4 + body.length), u16(type | NESTED), body);
  };
  // struct nlmsghdr { __u32 len; __u16 type; __u16 flags; __u32 seq; __u32 pid; }
  const msg = (type: number, flags: number, payload: Buffer, seq = SEQ): Part => pad4(cat(u32(16 + payload.length), u16(type), u16(flags), u32(seq), u32(0), payload));
  // struct genlmsghdr { __u8 cmd; __u8 version; __u16 reserved; }
  const genl = (cmd: number, ...attrs: Part[]): Buffer => cat(Buffer.from([cmd, 1, 0, 0]), ...attrs);
  const done = (error = 0, seq = SEQ): Part => msg(NLMSG_DONE, NLM_F_MULTI, i32(error), seq);
  // struct nlmsgerr { int error; struct nlmsghdr msg; } (NETLINK_CAP_ACK: no payload of the request)
  const error = (errno: number, seq = SEQ): Part => msg(NLMSG_ERROR, 0, cat(i32(-errno), u32(36), u16(FAMILY), u16(0x301), u32(seq), u32(0)), seq);
  const str = (type: number, s: string): Part => attr(type, Buffer.from(`${s}\0`));
  // sockaddr_in: family (host order), port (network), address (network), 8 zero bytes
  const sin = (ip: number[], port: number): Buffer => cat(u16(2), Buffer.from([port >> 8, port & 255]), Buffer.from(ip), Buffer.alloc(8));
  // sockaddr_in6: family, port, flowinfo, 16 address bytes, scope id (host order)
  const sin6 = (ip: number[], port: number, scope = 0): Buffer => cat(u16(10), Buffer.from([port >> 8, port & 255]), u32(0), Buffer.from(ip), u32(scope));
  // struct __kernel_timespec { __s64 tv_sec; long long tv_nsec; }
  const ts = (sec: bigint, nsec: bigint): Buffer => cat(u64(sec), u64(nsec));
  const allowed = (family: 2 | 10, ip: number[], cidr: number): Part => nest(0, attr(1, u16(family)), attr(2, Buffer.from(ip)), attr(3, Buffer.from([cidr])));
  return { u16, u32, u64, attr, nest, msg, genl, done, error, str, sin, sin6, ts, allowed };
}

const key = (n: number): Buffer => Buffer.alloc(32, n);
const b64 = (n: number): string => key(n).toString('base64');
const v6 = (...tail: number[]): number[] => [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...tail].slice(0, 16);

// WGDEVICE_A_*: IFINDEX 1, IFNAME 2, PRIVATE_KEY 3, PUBLIC_KEY 4, LISTEN_PORT 6, FWMARK 7, PEERS 8
// WGPEER_A_*: PUBLIC_KEY 1, PRESHARED_KEY 2, ENDPOINT 4, KEEPALIVE 5, LAST_HANDSHAKE_TIME 6, RX 7, TX 8, ALLOWEDIPS 9, PROTOCOL_VERSION 10
function fixtures(le: boolean) {
  const e = enc(le);
  const peerA = e.nest(
    0,
    e.attr(1, key(0xa1)),
    e.attr(2, Buffer.alloc(32)),
    e.attr(4, e.sin([192, 0, 2, 7], 51820)),
    e.attr(5, e.u16(25)),
    e.attr(6, e.ts(1_765_000_000n, 123_456_789n)),
    e.attr(7, e.u64(123_456_789_012n)),
    e.attr(8, e.u64(42n)),
    e.nest(9, e.allowed(2, [0, 0, 0, 0], 0), e.allowed(10, Array(16).fill(0), 0)),
    e.attr(10, e.u32(1)),
  );
  const peerB = e.nest(
    0,
    e.attr(1, key(0xb2)),
    e.attr(2, key(0x55)),
    e.attr(4, e.sin6(v6(0, 1), 443, 3)),
    e.attr(5, e.u16(0)),
    e.attr(6, e.ts(0n, 0n)),
    e.attr(7, e.u64(0n)),
    e.attr(8, e.u64(0n)),
    e.nest(9, e.allowed(2, [10, 64, 0, 0], 16)),
  );
  const device = (...peers: Part[]): Part =>
    e.msg(FAMILY, NLM_F_MULTI, e.genl(0, e.attr(1, e.u32(7)), e.str(2, 'swg-a'), e.attr(3, key(0x77)), e.attr(4, key(0x99)), e.attr(6, e.u16(51821)), e.attr(7, e.u32(0x100)), e.nest(8, ...peers)));
  const more = (...peers: Part[]): Part => e.msg(FAMILY, NLM_F_MULTI, e.genl(0, e.str(2, 'swg-a'), e.nest(8, ...peers)));
  return { e, peerA, peerB, device, more };
}

const expectedA = { publicKey: b64(0xa1), hasPresharedKey: false, endpoint: { host: '192.0.2.7', port: 51820 }, allowedIps: ['0.0.0.0/0', '::/0'], latestHandshake: 1_765_000_000_123, rxBytes: 123_456_789_012, txBytes: 42, keepalive: 25 };
const expectedB = { publicKey: b64(0xb2), hasPresharedKey: true, endpoint: { host: 'fd00::1%3', port: 443 }, allowedIps: ['10.64.0.0/16'], latestHandshake: null, rxBytes: 0, txBytes: 0, keepalive: null };

/** Every outcome a hostile input may have: a device, or a NetlinkError; anything else fails the test. */
function decodeOrRefuse(chunks: Buffer[], le: boolean): 'ok' | 'refused' {
  try {
    decodeGetDevice(chunks, SEQ, FAMILY, le);
    return 'ok';
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(NetlinkError);
    return 'refused';
  }
}

for (const le of [true, false]) {
  describe(`WG_CMD_GET_DEVICE answers, ${le ? 'little' : 'big'}-endian host`, () => {
    const { e, peerA, peerB, device, more } = fixtures(le);

    it('one message: the device and its peers, as `wg show dump` reads them; the keys never kept', () => {
      const dev = decodeGetDevice([cat(device(peerA, peerB), e.done())], SEQ, FAMILY, le);
      expect(dev).toEqual({ ifname: 'swg-a', ifindex: 7, publicKey: b64(0x99), listenPort: 51821, fwmark: 0x100, peers: [expectedA, expectedB] });
      const text = JSON.stringify(dev);
      expect(text).not.toContain(b64(0x77)); // the private key
      expect(text).not.toContain(b64(0x55)); // the preshared key
    });

    it('a dump over several messages and recv()s: later messages add peers, a peer cut in two is joined', () => {
      const bRest = e.nest(0, e.attr(1, key(0xb2)), e.nest(9, e.allowed(10, v6(0x64, 0), 64), e.allowed(2, [10, 65, 0, 0], 16)));
      const c = e.nest(0, e.attr(1, key(0xc3)), e.attr(4, e.sin([198, 51, 100, 1], 1)));
      const d = e.nest(0, e.attr(1, key(0xd4)));
      const chunks = [device(peerA, peerB), cat(more(bRest, c), more(d)), e.done()];
      const dev = decodeGetDevice(chunks, SEQ, FAMILY, le);
      expect(dev.peers.map((p) => p.publicKey)).toEqual([b64(0xa1), b64(0xb2), b64(0xc3), b64(0xd4)]);
      expect(dev.peers[1]!.allowedIps).toEqual(['10.64.0.0/16', 'fd00::6400/64', '10.65.0.0/16']);
      expect(dev.peers[1]!.endpoint).toEqual(expectedB.endpoint);
      expect(dev.peers[2]!.endpoint).toEqual({ host: '198.51.100.1', port: 1 });
      expect(dev.listenPort).toBe(51821);
    });

    it('many peers, a few per message, in order', () => {
      const peer = (i: number): Part => e.nest(0, e.attr(1, key(i)), e.attr(7, e.u64(BigInt(i))));
      const msgs: Buffer[] = [device(peer(0), peer(1))];
      for (let i = 2; i < 250; i += 3) msgs.push(more(...[i, i + 1, i + 2].filter((n) => n < 250).map(peer)));
      const dev = decodeGetDevice([cat(...msgs), e.done()], SEQ, FAMILY, le);
      expect(dev.peers).toHaveLength(250);
      expect(dev.peers.map((p) => p.rxBytes)).toEqual([...Array(250).keys()]);
    });

    it('messages of another request (a straggler) are skipped', () => {
      const other = e.msg(FAMILY, NLM_F_MULTI, e.genl(0, e.str(2, 'swg-zz'), e.nest(8, e.nest(0, e.attr(1, key(1))))), SEQ - 1);
      const dev = decodeGetDevice([cat(other, e.done(0, SEQ - 1)), cat(device(peerA), e.done())], SEQ, FAMILY, le);
      expect(dev.ifname).toBe('swg-a');
      expect(dev.peers).toEqual([expectedA]);
    });

    it('the kernel\'s errors: no such link, not a WireGuard link, a dump that changed under it', () => {
      const errnoOf = (chunks: Buffer[]): number | undefined => {
        try {
          decodeGetDevice(chunks, SEQ, FAMILY, le);
        } catch (err) {
          expect(err).toBeInstanceOf(NetlinkError);
          return (err as NetlinkError).errno;
        }
        throw new Error('decoded');
      };
      expect(errnoOf([e.error(19)])).toBe(19); // ENODEV
      expect(errnoOf([cat(device(peerA), e.done(-95))])).toBe(95); // EOPNOTSUPP in NLMSG_DONE
      const intr = e.msg(FAMILY, NLM_F_MULTI | NLM_F_DUMP_INTR, e.genl(0, e.str(2, 'swg-a')));
      expect(errnoOf([cat(intr, e.done())])).toBe(4); // EINTR: ask again
      expect(() => decodeGetDevice([e.error(19)], SEQ, FAMILY, le)).toThrow(/ENODEV/);
    });

    it('refuses an incomplete or inconsistent answer', () => {
      expect(() => decodeGetDevice([device(peerA)], SEQ, FAMILY, le)).toThrow(/before NLMSG_DONE/);
      expect(() => decodeGetDevice([e.done()], SEQ, FAMILY, le)).toThrow(/no device/);
      expect(() => decodeGetDevice([cat(device(peerA), e.done())], SEQ, FAMILY + 1, le)).toThrow(/family/);
      const otherDev = e.msg(FAMILY, NLM_F_MULTI, e.genl(0, e.str(2, 'swg-b'), e.nest(8)));
      expect(() => decodeGetDevice([cat(device(peerA), otherDev, e.done())], SEQ, FAMILY, le)).toThrow(/"swg-b"/);
      expect(() => decodeGetDevice([cat(device(peerA), e.done(), device(peerB))], SEQ, FAMILY, le)).toThrow(/after the end/);
    });

    it('refuses malformed attributes, naming them', () => {
      const bad = (...peerAttrs: Part[]): Buffer[] => [cat(device(e.nest(0, e.attr(1, key(1)), ...peerAttrs)), e.done())];
      expect(() => decodeGetDevice(bad(e.attr(6, e.u64(1n))), SEQ, FAMILY, le)).toThrow(/LAST_HANDSHAKE_TIME is 8 bytes/);
      expect(() => decodeGetDevice(bad(e.attr(6, e.ts(1n, 1_000_000_000n))), SEQ, FAMILY, le)).toThrow(/not a time/);
      expect(() => decodeGetDevice(bad(e.attr(7, e.u32(1))), SEQ, FAMILY, le)).toThrow(/RX_BYTES is 4 bytes/);
      expect(() => decodeGetDevice(bad(e.attr(4, e.sin([1, 2, 3, 4], 1).subarray(0, 12))), SEQ, FAMILY, le)).toThrow(/ENDPOINT/);
      expect(() => decodeGetDevice(bad(e.attr(4, cat(e.u16(99), Buffer.alloc(14)))), SEQ, FAMILY, le)).toThrow(/family 99/);
      expect(() => decodeGetDevice(bad(e.nest(9, e.allowed(2, [10, 0, 0, 0], 33))), SEQ, FAMILY, le)).toThrow(/mask 33/);
      expect(() => decodeGetDevice(bad(e.nest(9, e.allowed(10, [10, 0, 0, 0], 8))), SEQ, FAMILY, le)).toThrow(/allowed IP/);
      expect(() => decodeGetDevice([cat(device(e.nest(0, e.attr(1, key(1)).subarray(0, 20))), e.done())], SEQ, FAMILY, le)).toThrow(NetlinkError);
      expect(() => decodeGetDevice([cat(device(e.nest(0, e.attr(2, key(1)))), e.done())], SEQ, FAMILY, le)).toThrow(/without WGPEER_A_PUBLIC_KEY/);
      expect(() => decodeGetDevice([cat(device(e.nest(0, e.attr(1, key(1).subarray(0, 31)))), e.done())], SEQ, FAMILY, le)).toThrow(/PUBLIC_KEY is 31 bytes/);
    });

    it('a hostile message is refused, never read past its end or looped on', () => {
      // Lengths of zero would make a careless reader stand still: a message, an attribute.
      const zeroMsg = Buffer.from(device(peerA));
      zeroMsg.fill(0, 0, 4);
      expect(decodeOrRefuse([zeroMsg], le)).toBe('refused');
      const zeroAttr = cat(e.msg(FAMILY, NLM_F_MULTI, e.genl(0, e.str(2, 'swg-a'), Buffer.alloc(8))), e.done());
      expect(decodeOrRefuse([zeroAttr], le)).toBe('refused');
      // A message, an attribute, longer than what holds it.
      const long = Buffer.from(device(peerA));
      long.writeUInt8(0xff, le ? 1 : 2);
      expect(decodeOrRefuse([long, e.done()], le)).toBe('refused');
      // Every truncation of a valid answer, and 3000 seeded random corruptions of it.
      const whole = cat(device(peerA, peerB), more(peerA), e.done());
      for (let n = 0; n < whole.length; n++) expect(decodeOrRefuse([whole.subarray(0, n)], le)).toBe('refused');
      let seed = 17;
      const rnd = (m: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % m;
      };
      const outcomes = { ok: 0, refused: 0 };
      for (let i = 0; i < 3000; i++) {
        const b = Buffer.from(whole);
        for (let k = 1 + rnd(4); k > 0; k--) b[rnd(b.length)] = rnd(256);
        outcomes[decodeOrRefuse([b], le)]++;
      }
      expect(outcomes.refused).toBeGreaterThan(0);
      expect(outcomes.ok + outcomes.refused).toBe(3000);
    });

    it('the request: nlmsghdr (REQUEST|DUMP), genlmsghdr (GET_DEVICE, version 1), WGDEVICE_A_IFNAME', () => {
      const req = encodeGetDevice(FAMILY, 'swg-a', SEQ, new NetlinkWriter(le));
      const expected = e.msg(FAMILY, 0x1 | 0x300, e.genl(0, e.str(2, 'swg-a')));
      expect(req.toString('hex')).toBe(expected.toString('hex'));
      expect(() => encodeGetDevice(FAMILY, 'a-name-too-long!', SEQ)).toThrow(NetlinkError);
      expect(() => encodeGetDevice(FAMILY, '', SEQ)).toThrow(NetlinkError);
    });
  });

  describe(`nlctrl (generic netlink's controller), ${le ? 'little' : 'big'}-endian host`, () => {
    const e = enc(le);
    // CTRL_CMD_NEWFAMILY (1) answers: FAMILY_ID (u16), FAMILY_NAME, VERSION (u32), HDRSIZE, MAXATTR, OPS (nested)
    const family = (id: number, name: string, seq = SEQ): Part =>
      e.msg(0x10, 0, e.genl(1, e.attr(1, e.u16(id)), e.str(2, name), e.attr(3, e.u32(1)), e.attr(4, e.u32(0)), e.attr(5, e.u32(8)), e.nest(6, e.nest(1, e.attr(1, e.u32(0)), e.attr(2, e.u32(0x1e))))), seq);

    it('CTRL_CMD_GETFAMILY by name: the request, and its answer', () => {
      const req = encodeGetFamily(SEQ, 'wireguard', new NetlinkWriter(le));
      expect(req.toString('hex')).toBe(e.msg(0x10, 0x1, e.genl(3, e.str(2, 'wireguard'))).toString('hex'));
      const { messages, complete } = genlAnswers([family(0x1b, 'wireguard')], SEQ, { dump: false, le });
      expect(complete).toBe(true);
      expect(parseFamilies(messages, le)).toEqual([{ name: 'wireguard', id: 0x1b, version: 1 }]);
    });

    it('an absent family is ENOENT; a dump of every family reads them all', () => {
      expect(() => genlAnswers([e.error(2)], SEQ, { dump: false, le })).toThrow(expect.objectContaining({ errno: 2 }));
      const dump = [cat(family(0x10, 'nlctrl'), family(0x14, 'ethtool')), cat(family(0x20, 'devlink'), e.done())];
      const { messages, complete } = genlAnswers(dump, SEQ, { dump: true, le });
      expect(complete).toBe(true);
      expect(parseFamilies(messages, le).map((f) => `${f.name}=${f.id}`)).toEqual(['nlctrl=16', 'ethtool=20', 'devlink=32']);
      expect(encodeGetFamily(SEQ, null, new NetlinkWriter(le)).toString('hex')).toBe(e.msg(0x10, 0x301, e.genl(3)).toString('hex'));
    });
  });
}

describe('layouts from the structs\' members, on every ABI', () => {
  it('nlmsghdr 16, nlattr 4, genlmsghdr 4, nlmsgerr 20; sockaddr_in 16, sockaddr_in6 28, __kernel_timespec 16 (also on i386 and armhf)', () => {
    for (const arch of ['x64', 'arm64', 's390x', 'arm', 'ia32', 'mips']) {
      const abi = cAbi(arch);
      expect(structLayout(NLMSGHDR, abi), arch).toMatchObject({ size: 16, offset: { len: 0, type: 4, flags: 6, seq: 8, pid: 12 } });
      expect(structLayout(NLATTR, abi)).toMatchObject({ size: 4, offset: { len: 0, type: 2 } });
      expect(structLayout(GENLMSGHDR, abi)).toMatchObject({ size: 4, offset: { cmd: 0, version: 1, reserved: 2 } });
      expect(structLayout(NLMSGERR, abi)).toMatchObject({ size: 20, offset: { error: 0, msg: 4 } });
      expect(structLayout(SOCKADDR_IN, abi, true)).toMatchObject({ size: 16, offset: { family: 0, port: 2, addr: 4 } });
      expect(structLayout(SOCKADDR_IN6, abi)).toMatchObject({ size: 28, offset: { family: 0, port: 2, flowinfo: 4, addr: 8, scopeId: 24 } });
      expect(structLayout(KERNEL_TIMESPEC, abi)).toMatchObject({ size: 16, offset: { sec: 0, nsec: 8 } });
    }
  });

  it.skipIf(skipNative('the netlink structs\' koffi layout check') !== null)('koffi lays out the fixed-width ones the same on this machine', () => {
    for (const [name, members] of [['nlmsghdr', NLMSGHDR], ['genlmsghdr', GENLMSGHDR], ['__kernel_timespec', KERNEL_TIMESPEC]] as const) {
      expect(koffiLayoutProblem(name, members, structLayout(members, cAbi()))).toBeNull();
    }
  });
});

describe('netlink reader', () => {
  it('reads its own writer\'s messages in both byte orders', () => {
    for (const le of [true, false]) {
      const w = new NetlinkWriter(le);
      const m = w.header(0x1234, 0x301, 99);
      w.genl(7, 1);
      const n = w.nest(5);
      w.u32attr(1, 0xdeadbeef);
      w.string(2, 'x');
      w.nestEnd(n);
      w.end(m);
      const [msg] = nlMessages(w.bytes(), le);
      expect(msg).toMatchObject({ type: 0x1234, flags: 0x301, seq: 99 });
      const [outer] = nlAttrs(msg!.payload.subarray(4), le);
      expect(outer).toMatchObject({ type: 5, nested: true });
      const inner = nlAttrs(outer!.data, le);
      expect(inner.map((a) => a.type)).toEqual([1, 2]);
      expect(le ? inner[0]!.data.readUInt32LE() : inner[0]!.data.readUInt32BE()).toBe(0xdeadbeef);
    }
  });
});

// ---- LinuxTunnels: which reader a kernel link's status uses ------------------------------
function recordingLogger(lines: string[]): Logger {
  const rec = (level: string) => (obj: object, msg?: string) => void lines.push(JSON.stringify({ level, ...obj, msg }));
  const l: Logger = { trace: rec('trace'), debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error'), child: () => l };
  return l;
}

describe('LinuxTunnels reads kernel links over netlink, else `wg show dump` (said once)', () => {
  const spec: TunnelSpec = {
    name: 'a',
    ifname: 'swg-a',
    privateKey: key(0x77).toString('base64'),
    addresses: ['10.64.0.2/32'],
    mtu: 1420,
    fwmark: 0x100,
    peer: { publicKey: b64(0xa1), endpoint: { host: '192.0.2.7', port: 51820 }, allowedIPs: ['0.0.0.0/0'] },
  };
  const dumpLine = `${b64(0x99)}\t${b64(0x99)}\t51821\toff\n${b64(0xa1)}\t(none)\t192.0.2.9:51820\t0.0.0.0/0\t1765000001\t10\t20\t25\n`;

  /** A kernel-mode LinuxTunnels with one tunnel set, a canned runner, and SPLITWAN_NATIVE as `native` says (unset: whatever the run has is cleared). */
  async function withTunnels(o: { openWgNetlink: () => KernelWgReader; native?: string }, f: (t: LinuxTunnels, calls: string[][], lines: string[], notes: FallbackNotes) => Promise<void>): Promise<void> {
    const before = process.env.SPLITWAN_NATIVE;
    if (o.native === undefined) delete process.env.SPLITWAN_NATIVE;
    else process.env.SPLITWAN_NATIVE = o.native;
    const calls: string[][] = [];
    const lines: string[] = [];
    const notes = new FallbackNotes();
    const runner: Runner = {
      run: async (argv) => {
        calls.push([...argv]);
        return { code: 0, stdout: argv[1] === 'show' ? dumpLine : '', stderr: '' };
      },
    };
    const tmp = mkdtempSync(join(tmpdir(), 'sw-wgnl-'));
    const t = new LinuxTunnels({ runner, mode: 'kernel', logger: recordingLogger(lines), notes, tmpParent: tmp, openWgNetlink: o.openWgNetlink });
    try {
      await t.set([spec]);
      calls.length = 0;
      await f(t, calls, lines, notes);
    } finally {
      await t.close();
      rmSync(tmp, { recursive: true, force: true });
      if (before === undefined) delete process.env.SPLITWAN_NATIVE;
      else process.env.SPLITWAN_NATIVE = before;
    }
  }

  it('netlink: the peer\'s handshake, bytes and endpoint, and no process spawned', async () => {
    let closed = 0;
    const reader: KernelWgReader = {
      peers: async (ifname) => (ifname === 'swg-a' ? [{ ...expectedA }] : []),
      close: () => void closed++,
    };
    await withTunnels({ openWgNetlink: () => reader }, async (t, calls) => {
      const [s] = await t.status();
      expect(s).toMatchObject({ ifname: 'swg-a', latestHandshake: 1_765_000_000_123, rxBytes: 123_456_789_012, txBytes: 42, endpoint: '192.0.2.7:51820' });
      await t.status();
      expect(calls).toEqual([]);
    });
    expect(closed).toBe(1);
  });

  it('no "wireguard" family (or no socket): `wg show dump`, and the reason logged once', async () => {
    let opened = 0;
    const open = (): KernelWgReader => {
      opened++;
      throw new NetlinkError('the kernel has no generic netlink family "wireguard" (no WireGuard module loaded)');
    };
    await withTunnels({ openWgNetlink: open }, async (t, calls, lines) => {
      for (let i = 0; i < 3; i++) expect((await t.status())[0]).toMatchObject({ latestHandshake: 1_765_000_001_000, rxBytes: 10, endpoint: '192.0.2.9:51820' });
      expect(calls).toEqual(Array(3).fill(['wg', 'show', 'swg-a', 'dump']));
      const said = lines.filter((l) => l.includes(WG_NETLINK_PATH));
      expect(said).toHaveLength(1);
      expect(JSON.parse(said[0]!)).toMatchObject({ level: 'warn', msg: expect.stringMatching(/no generic netlink family "wireguard".*using `wg show IF dump`/) });
    });
    expect(opened).toBe(1);
  });

  it('SPLITWAN_NATIVE=off: `wg show dump`, said once as chosen, the socket never tried', async () => {
    await withTunnels({ openWgNetlink: () => expect.unreachable('opened') as never, native: 'off' }, async (t, calls, lines) => {
      await t.status();
      await t.status();
      expect(calls).toEqual(Array(2).fill(['wg', 'show', 'swg-a', 'dump']));
      const said = lines.filter((l) => l.includes(WG_NETLINK_PATH)).map((l) => JSON.parse(l) as { level: string; reason: string });
      expect(said).toEqual([expect.objectContaining({ level: 'info', reason: 'SPLITWAN_NATIVE=off' })]);
    });
  });

  it('a link the kernel says is gone reads as unreadable without a warning; a refused answer warns', async () => {
    let fail: Error = new NetlinkError('swg-a: ENODEV (errno 19)', 19);
    const reader: KernelWgReader = { peers: () => Promise.reject(fail), close: () => undefined };
    await withTunnels({ openWgNetlink: () => reader }, async (t, calls, lines) => {
      expect((await t.status())[0]).toMatchObject({ latestHandshake: null, endpoint: null });
      expect(lines.filter((l) => l.includes('"warn"'))).toEqual([]);
      fail = new NetlinkError('swg-a: a message of length 3 at byte 0 of 40');
      await t.status();
      expect(lines.filter((l) => l.includes('"warn"') && l.includes('wireguard state unreadable'))).toHaveLength(1);
      expect(calls).toEqual([]);
    });
  });
});
