// The C ABI of the running process, for the structs splitwan lays out in
// native memory itself (recvmmsg's mmsghdr/iovec, epoll_event): pointer size,
// byte order, and offsets computed by C's layout rules for that ABI. Nothing
// here is a literal offset: a struct is a list of its members' C types, and
// the offsets follow from the ABI (natural alignment, the struct padded to
// its largest member), so one definition is right on LP64 (x86-64, arm64,
// s390x, mips64) and ILP32 (armhf, i386, mips), little- and big-endian.
//
// The fast paths also check these layouts against koffi's own struct
// definitions where koffi loads (udp-mmsg-linux.ts, epoll-linux.ts): two
// independent computations that must agree, or the fast path is refused.
import { endianness } from 'node:os';

export type CType = 'ptr' | 'size_t' | 'int' | 'uint32' | 'uint64' | 'uint16' | 'uint8' | 'in_addr' | 'in6_addr';

export interface CAbi {
  /** process.arch this describes. */
  arch: string;
  /** sizeof(void *) = sizeof(size_t) = sizeof(long) on Linux. */
  pointerSize: 4 | 8;
  /** The alignment of a uint64_t inside a struct: 4 on i386's System V ABI, 8 elsewhere. */
  u64Align: 4 | 8;
  littleEndian: boolean;
  /** struct epoll_event is __attribute__((packed)) on x86-64 only (<sys/epoll.h>: __EPOLL_PACKED). */
  epollPacked: boolean;
}

/** Pointer size per Node architecture name (process.arch). An architecture not here has no fast path. */
const POINTER_SIZE: Readonly<Record<string, 4 | 8>> = {
  x64: 8,
  arm64: 8,
  s390x: 8,
  ppc64: 8,
  riscv64: 8,
  loong64: 8,
  mips64el: 8,
  mips64: 8,
  arm: 4,
  ia32: 4,
  mips: 4,
  mipsel: 4,
  ppc: 4,
  s390: 4,
};

/**
 * The ABI to lay out structs of fixed-width members with (netlink's headers,
 * sockaddr_in): this process's, or where its architecture is not known here,
 * LP64's rules in this byte order, so that a module of pure parsers loads on
 * any machine (such structs hold no pointer; only a u64's alignment differs).
 */
export function hostAbi(): CAbi {
  try {
    return cAbi();
  } catch {
    return { arch: process.arch, pointerSize: 8, u64Align: 8, littleEndian: endianness() === 'LE', epollPacked: false };
  }
}

/** The ABI of `arch` (default: this process); throws for an architecture whose ABI is not known here. */
export function cAbi(arch: string = process.arch, littleEndian: boolean = endianness() === 'LE'): CAbi {
  const pointerSize = POINTER_SIZE[arch];
  if (pointerSize === undefined) throw Object.assign(new Error(`no C ABI known for ${arch}`), { code: 'SPLITWAN_NATIVE_ABI' });
  return { arch, pointerSize, u64Align: arch === 'ia32' ? 4 : 8, littleEndian, epollPacked: arch === 'x64' };
}

function sizeAlign(t: CType, abi: CAbi): [number, number] {
  switch (t) {
    case 'ptr':
    case 'size_t':
      return [abi.pointerSize, abi.pointerSize];
    case 'uint64':
      return [8, abi.u64Align];
    case 'uint16':
      return [2, 2];
    case 'uint8':
      return [1, 1];
    // <linux/in6.h>: a union whose widest member is __be32[4]
    case 'in6_addr':
      return [16, 4];
    default:
      return [4, 4];
  }
}

export interface StructLayout<K extends string> {
  size: number;
  align: number;
  offset: Readonly<Record<K, number>>;
}

/** A struct's members in order: a C type, or a nested struct's members. */
export type Members = readonly (readonly [string, CType | Members])[];

/**
 * Offsets and size of a struct with these members, in order, by C's rules:
 * each member at the next multiple of its alignment, the size rounded up to
 * the largest alignment. `packed`: no padding at all.
 */
export function structLayout<K extends string>(members: readonly (readonly [K, CType | Members])[], abi: CAbi, packed = false): StructLayout<K> {
  let at = 0;
  let align = 1;
  const offset = {} as Record<K, number>;
  for (const [name, t] of members) {
    let size: number;
    let a: number;
    if (typeof t === 'string') [size, a] = sizeAlign(t, abi);
    else ({ size, align: a } = structLayout(t, abi));
    if (packed) a = 1;
    at = Math.ceil(at / a) * a;
    offset[name] = at;
    at += size;
    align = Math.max(align, a);
  }
  return { size: Math.ceil(at / align) * align, align, offset };
}

// <bits/socket.h> (glibc) / <sys/socket.h> (musl): musl declares msg_iovlen
// and msg_controllen as int plus padding placed by byte order, so that the
// struct is the kernel's (size_t-sized fields) on 64-bit: the same offsets.
export const MSGHDR = [
  ['name', 'ptr'],
  ['namelen', 'uint32'],
  ['iov', 'ptr'],
  ['iovlen', 'size_t'],
  ['control', 'ptr'],
  ['controllen', 'size_t'],
  ['flags', 'int'],
] as const satisfies Members;
export const MMSGHDR = [
  ['hdr', MSGHDR],
  ['len', 'uint32'],
] as const satisfies Members;
export const IOVEC = [
  ['base', 'ptr'],
  ['len', 'size_t'],
] as const satisfies Members;
export const EPOLL_EVENT = [
  ['events', 'uint32'],
  ['data', 'uint64'],
] as const satisfies Members;

export const msghdrLayout = (abi: CAbi) => structLayout(MSGHDR, abi);
export const mmsghdrLayout = (abi: CAbi) => structLayout(MMSGHDR, abi);
export const iovecLayout = (abi: CAbi) => structLayout(IOVEC, abi);
export const epollEventLayout = (abi: CAbi) => structLayout(EPOLL_EVENT, abi, abi.epollPacked);

/**
 * Writes pointer-sized (void *, size_t) values in the ABI's width and byte
 * order through a DataView. `value` is a JS number (an address below 2^53).
 */
export function wordWriter(abi: CAbi): (dv: DataView, at: number, value: number) => void {
  const le = abi.littleEndian;
  if (abi.pointerSize === 4) return (dv, at, value) => dv.setUint32(at, value, le);
  // Two 32-bit stores: a BigInt per write would cost more than the rest of a hot loop.
  const loAt = le ? 0 : 4;
  const hiAt = le ? 4 : 0;
  return (dv, at, value) => {
    dv.setUint32(at + loAt, value % 0x1_0000_0000, le);
    dv.setUint32(at + hiAt, Math.floor(value / 0x1_0000_0000), le);
  };
}

/** This process's byte order. */
export const HOST_LE = endianness() === 'LE';

/** Host-order 32-bit integers in a Buffer (what setsockopt's int, socklen_t, nlmsghdr fields are). */
export function writeU32(b: Buffer, v: number, at: number): void {
  if (HOST_LE) b.writeUInt32LE(v >>> 0, at);
  else b.writeUInt32BE(v >>> 0, at);
}
export function writeI32(b: Buffer, v: number, at: number): void {
  if (HOST_LE) b.writeInt32LE(v, at);
  else b.writeInt32BE(v, at);
}
export function readU32(b: Buffer, at: number): number {
  return HOST_LE ? b.readUInt32LE(at) : b.readUInt32BE(at);
}
export function readI32(b: Buffer, at: number): number {
  return HOST_LE ? b.readInt32LE(at) : b.readInt32BE(at);
}
export function writeU16(b: Buffer, v: number, at: number): void {
  if (HOST_LE) b.writeUInt16LE(v, at);
  else b.writeUInt16BE(v, at);
}
export function readU16(b: Buffer, at: number): number {
  return HOST_LE ? b.readUInt16LE(at) : b.readUInt16BE(at);
}
/** A 4-byte C int in host order, for setsockopt(). */
export function cInt(v: number): Buffer {
  const b = Buffer.alloc(4);
  writeI32(b, v, 0);
  return b;
}
