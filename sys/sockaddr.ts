// sockaddr_in / sockaddr_in6 as the kernel reads and writes them, for the
// raw-fd modules (resolver UDP, proxy accept and dial, SO_ORIGINAL_DST).
// sa_family is a host-order u16 (written in this machine's byte order, so
// big-endian s390x and MIPS get it right); port and address are network order.
import { endianness } from 'node:os';
import { formatIp, parseIp } from '../lib/ip.js';
import { AF_INET, AF_INET6 } from './linux-abi.js';

/** sizeof(struct sockaddr_in), sizeof(struct sockaddr_in6): the same on every Linux ABI. */
export const SOCKADDR_IN_LEN = 16;
export const SOCKADDR_IN6_LEN = 28;

const LE = endianness() === 'LE';

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
  b.writeUInt16BE(port, at + 2);
  if (!six) {
    if (ip.family !== 4) return 0;
    b.writeUInt32BE(ip.w[3], at + 4);
    return SOCKADDR_IN_LEN;
  }
  const w = ip.family === 4 ? [0, 0, 0xffff, ip.w[3]] : ip.w;
  for (let i = 0; i < 4; i++) b.writeUInt32BE(w[i]!, at + 8 + 4 * i);
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
  const port = b.readUInt16BE(at + 2);
  if (af === AF_INET) return { address: `${b[at + 4]}.${b[at + 5]}.${b[at + 6]}.${b[at + 7]}`, port };
  if (af !== AF_INET6) return null;
  const w: [number, number, number, number] = [b.readUInt32BE(at + 8), b.readUInt32BE(at + 12), b.readUInt32BE(at + 16), b.readUInt32BE(at + 20)];
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return { address: formatIp({ family: 4, w: [0, 0, 0, w[3]] }), port };
  return { address: formatIp({ family: 6, w }), port };
}
