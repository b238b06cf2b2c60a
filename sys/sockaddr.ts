// sockaddr_in / sockaddr_in6 as the kernel reads and writes them, for the
// raw-fd modules (resolver UDP, proxy accept and dial, SO_ORIGINAL_DST).
// sa_family is a host-order u16 (written in this machine's byte order, so
// big-endian s390x and MIPS get it right); port and address are network order.
import { formatIp, parseIp } from '../lib/ip.js';
import { hostAbi, structLayout, type Members } from './c-abi.js';
import { AF_INET, AF_INET6 } from './linux-abi.js';

/** <linux/in.h>, <linux/in6.h>: family in host order, port and address in network order. */
export const SOCKADDR_IN = [
  ['family', 'uint16'],
  ['port', 'uint16'],
  ['addr', 'in_addr'],
  ['zero0', 'uint32'],
  ['zero1', 'uint32'],
] as const satisfies Members;
export const SOCKADDR_IN6 = [
  ['family', 'uint16'],
  ['port', 'uint16'],
  ['flowinfo', 'uint32'],
  ['addr', 'in6_addr'],
  ['scopeId', 'uint32'],
] as const satisfies Members;

const ABI = hostAbi();
const SIN = structLayout(SOCKADDR_IN, ABI);
const SIN6 = structLayout(SOCKADDR_IN6, ABI);
/** sizeof(struct sockaddr_in) (16), sizeof(struct sockaddr_in6) (28): the same on every Linux ABI. */
export const SOCKADDR_IN_LEN = SIN.size;
export const SOCKADDR_IN6_LEN = SIN6.size;

const LE = ABI.littleEndian;

function writeFamily(b: Buffer, at: number, af: number): void {
  if (LE) b.writeUInt16LE(af, at);
  else b.writeUInt16BE(af, at);
}

function readFamily(b: Buffer, at: number): number {
  return LE ? b.readUInt16LE(at) : b.readUInt16BE(at);
}

/**
 * Writes the sockaddr for host:port at `at` (room for SOCKADDR_IN6_LEN bytes);
 * returns its length, or 0 when `host` is not an IP literal or has a %scope.
 * `v6` forces sockaddr_in6 (an IPv4 address then goes as ::ffff:a.b.c.d).
 */
export function writeSockaddr(b: Buffer, at: number, host: string, port: number, v6?: boolean): number {
  const ip = host.includes('%') ? null : parseIp(host);
  if (ip === null) return 0;
  const six = v6 ?? ip.family === 6;
  b.fill(0, at, at + (six ? SOCKADDR_IN6_LEN : SOCKADDR_IN_LEN));
  writeFamily(b, at, six ? AF_INET6 : AF_INET);
  // sin_port and sin6_port share the offset; both in network order.
  b.writeUInt16BE(port, at + SIN.offset.port);
  if (!six) {
    if (ip.family !== 4) return 0;
    b.writeUInt32BE(ip.w[3], at + SIN.offset.addr);
    return SOCKADDR_IN_LEN;
  }
  const w = ip.family === 4 ? [0, 0, 0xffff, ip.w[3]] : ip.w;
  for (let i = 0; i < 4; i++) b.writeUInt32BE(w[i]!, at + SIN6.offset.addr + 4 * i);
  return SOCKADDR_IN6_LEN;
}

/** A new Buffer holding the sockaddr for host:port; null when `host` is not an IP literal (or has a %scope). */
export function sockaddr(host: string, port: number): Buffer | null {
  const b = Buffer.alloc(SOCKADDR_IN6_LEN);
  const n = writeSockaddr(b, 0, host, port);
  return n === 0 ? null : b.subarray(0, n);
}

/**
 * Reads a sockaddr_in / sockaddr_in6 at `at`; null for another family.
 * An IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) reads as IPv4.
 */
export function readSockaddr(b: Buffer, at: number): { address: string; port: number } | null {
  const af = readFamily(b, at);
  const port = b.readUInt16BE(at + SIN.offset.port);
  if (af === AF_INET) {
    const a = at + SIN.offset.addr;
    return { address: `${b[a]}.${b[a + 1]}.${b[a + 2]}.${b[a + 3]}`, port };
  }
  if (af !== AF_INET6) return null;
  const a = at + SIN6.offset.addr;
  const w: [number, number, number, number] = [b.readUInt32BE(a), b.readUInt32BE(a + 4), b.readUInt32BE(a + 8), b.readUInt32BE(a + 12)];
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return { address: formatIp({ family: 4, w: [0, 0, 0, w[3]] }), port };
  return { address: formatIp({ family: 6, w }), port };
}
