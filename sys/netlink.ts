// Netlink messages and attributes (<linux/netlink.h>), written and read in
// memory: the one encoder and decoder of the modules that talk to the kernel
// over AF_NETLINK (nfnetlink element batches: daemon/dataplane/libnft-linux.ts;
// generic netlink: sys/genetlink.ts, WireGuard's state:
// daemon/tunnel/wg-netlink.ts). Pure: the sockets are in *-linux.ts modules.
//
// Byte order: nlmsghdr, nlattr and genlmsghdr fields, and the NLA_U16/U32/U64
// attributes, are in the machine's order (the kernel reads and writes them
// so); a family's own payloads may be big-endian (nfgenmsg's res_id, nftables'
// data, a sockaddr's port). `le` picks the order (tests read and write both).
// Offsets come from the structs' members (sys/c-abi.ts), never literals.
//
// The reader trusts nothing: every length is checked against what holds it,
// every step moves forward by at least a header, so a truncated or hostile
// message is refused (NetlinkError), never read past its end or looped on.
import { HOST_LE, hostAbi, structLayout, type Members } from './c-abi.js';

const ABI = hostAbi();

export const NLMSGHDR = [
  ['len', 'uint32'],
  ['type', 'uint16'],
  ['flags', 'uint16'],
  ['seq', 'uint32'],
  ['pid', 'uint32'],
] as const satisfies Members;
export const NLATTR = [
  ['len', 'uint16'],
  ['type', 'uint16'],
] as const satisfies Members;
/** <linux/genetlink.h> */
export const GENLMSGHDR = [
  ['cmd', 'uint8'],
  ['version', 'uint8'],
  ['reserved', 'uint16'],
] as const satisfies Members;
/** <linux/netfilter/nfnetlink.h>: res_id is big-endian. */
export const NFGENMSG = [
  ['family', 'uint8'],
  ['version', 'uint8'],
  ['resId', 'uint16'],
] as const satisfies Members;
/** struct nlmsgerr: the error, then the request's header. */
export const NLMSGERR = [
  ['error', 'int'],
  ['msg', NLMSGHDR],
] as const satisfies Members;

export const NLH = structLayout(NLMSGHDR, ABI);
export const NLA = structLayout(NLATTR, ABI);
export const GENLH = structLayout(GENLMSGHDR, ABI);
export const NFGENH = structLayout(NFGENMSG, ABI);
export const NLERR = structLayout(NLMSGERR, ABI);
/** NLMSG_ALIGNTO = NLA_ALIGNTO */
export const NL_ALIGN = 4;

export const nlAlign = (n: number): number => Math.ceil(n / NL_ALIGN) * NL_ALIGN;

// <linux/netlink.h>
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
/** Set on a dump's messages when what was dumped changed under it: the dump is inconsistent. */
export const NLM_F_DUMP_INTR = 0x10;
/** NLM_F_ROOT | NLM_F_MATCH */
export const NLM_F_DUMP = 0x300;
export const NLM_F_CREATE = 0x400;
export const NLM_F_ACK_TLVS = 0x200;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;
export const NLMSGERR_ATTR_MSG = 1;
export const NETLINK_GENERIC = 16;
export const NETLINK_NETFILTER = 12;
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;

/** A netlink message or attribute that is not what the kernel sends, refused. */
export class NetlinkError extends Error {
  readonly code = 'SPLITWAN_NETLINK';
  constructor(
    message: string,
    /** The errno the kernel answered with (positive); undefined for a refused message or a socket error. */
    readonly errno?: number,
  ) {
    super(`netlink: ${message}`);
    this.name = 'NetlinkError';
  }
}

/** Host-order (or `le`) integers of a Buffer. */
export interface Ints {
  u16(b: Buffer, at: number): number;
  u32(b: Buffer, at: number): number;
  i32(b: Buffer, at: number): number;
  u64(b: Buffer, at: number): bigint;
  i64(b: Buffer, at: number): bigint;
}

const LE_INTS: Ints = {
  u16: (b, at) => b.readUInt16LE(at),
  u32: (b, at) => b.readUInt32LE(at),
  i32: (b, at) => b.readInt32LE(at),
  u64: (b, at) => b.readBigUInt64LE(at),
  i64: (b, at) => b.readBigInt64LE(at),
};
const BE_INTS: Ints = {
  u16: (b, at) => b.readUInt16BE(at),
  u32: (b, at) => b.readUInt32BE(at),
  i32: (b, at) => b.readInt32BE(at),
  u64: (b, at) => b.readBigUInt64BE(at),
  i64: (b, at) => b.readBigInt64BE(at),
};
/** The readers of byte order `le`. */
export const ints = (le: boolean = HOST_LE): Ints => (le ? LE_INTS : BE_INTS);

/**
 * A growing buffer of netlink messages and attributes, in byte order `le`
 * (default: this machine's). header() starts a message, end() writes its
 * length; a family's header follows header() (genl(), nfgen()).
 */
export class NetlinkWriter {
  buf = Buffer.alloc(4096);
  len = 0;
  constructor(readonly le: boolean = HOST_LE) {}
  protected u32(v: number, at: number): void {
    if (this.le) this.buf.writeUInt32LE(v >>> 0, at);
    else this.buf.writeUInt32BE(v >>> 0, at);
  }
  protected u16(v: number, at: number): void {
    if (this.le) this.buf.writeUInt16LE(v, at);
    else this.buf.writeUInt16BE(v, at);
  }
  protected ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }
  private pad(): void {
    const p = nlAlign(this.len) - this.len;
    this.ensure(p);
    this.buf.fill(0, this.len, this.len + p);
    this.len += p;
  }
  /** Starts a message (nlmsghdr, pid 0: the kernel's); returns its offset, for end(). */
  header(type: number, flags: number, seq: number): number {
    this.ensure(NLH.size);
    const at = this.len;
    this.buf.fill(0, at, at + NLH.size);
    this.u16(type, at + NLH.offset.type);
    this.u16(flags, at + NLH.offset.flags);
    this.u32(seq, at + NLH.offset.seq);
    this.len += NLH.size;
    return at;
  }
  /** genlmsghdr. */
  genl(cmd: number, version: number): void {
    this.ensure(GENLH.size);
    const at = this.len;
    this.buf.fill(0, at, at + GENLH.size);
    this.buf.writeUInt8(cmd, at + GENLH.offset.cmd);
    this.buf.writeUInt8(version, at + GENLH.offset.version);
    this.len += GENLH.size;
  }
  /** nfgenmsg (NFNETLINK_V0); res_id in network order. */
  nfgen(family: number, resId: number): void {
    this.ensure(NFGENH.size);
    const at = this.len;
    this.buf.fill(0, at, at + NFGENH.size);
    this.buf.writeUInt8(family, at + NFGENH.offset.family);
    this.buf.writeUInt16BE(resId, at + NFGENH.offset.resId);
    this.len += NFGENH.size;
  }
  /** Writes the length of the message started at `at`. */
  end(at: number): void {
    this.u32(this.len - at, at + NLH.offset.len);
  }
  attr(type: number, data: Buffer): void {
    this.ensure(NLA.size + data.length + NL_ALIGN);
    this.u16(NLA.size + data.length, this.len + NLA.offset.len);
    this.u16(type, this.len + NLA.offset.type);
    data.copy(this.buf, this.len + NLA.size);
    this.len += NLA.size + data.length;
    this.pad();
  }
  /** NLA_NUL_STRING */
  string(type: number, s: string): void {
    this.attr(type, Buffer.from(`${s}\0`));
  }
  /** NLA_U32, in the writer's order. */
  u32attr(type: number, v: number): void {
    const b = Buffer.alloc(4);
    if (this.le) b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    this.attr(type, b);
  }
  /** A big-endian 64-bit value (nftables' timeouts). */
  be64(type: number, n: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    this.attr(type, b);
  }
  /** Starts a nested attribute; returns its offset, for nestEnd(). */
  nest(type: number): number {
    this.ensure(NLA.size);
    const at = this.len;
    this.u16(type | NLA_F_NESTED, at + NLA.offset.type);
    this.len += NLA.size;
    return at;
  }
  nestEnd(at: number): void {
    this.u16(this.len - at, at + NLA.offset.len);
  }
  /** The messages written so far (a view: valid until the next write). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/** One message of a buffer: its header's fields and where its payload is. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** The payload: after the header, up to the message's length. */
  payload: Buffer;
}

/**
 * The messages of `buf` (what one recv() returned), in byte order `le`.
 * Throws NetlinkError for a length shorter than a header or past the end;
 * `upToBad`: returns the messages before it instead.
 */
export function nlMessages(buf: Buffer, le: boolean = HOST_LE, o: { upToBad?: boolean } = {}): NlMessage[] {
  const r = ints(le);
  const out: NlMessage[] = [];
  let at = 0;
  const bad = (why: string): NlMessage[] => {
    if (o.upToBad) return out;
    throw new NetlinkError(why);
  };
  while (at < buf.length) {
    if (buf.length - at < NLH.size) return bad(`${buf.length - at} trailing bytes, less than a message header`);
    const len = r.u32(buf, at + NLH.offset.len);
    if (len < NLH.size || len > buf.length - at) return bad(`a message of length ${len} at byte ${at} of ${buf.length}`);
    out.push({
      type: r.u16(buf, at + NLH.offset.type),
      flags: r.u16(buf, at + NLH.offset.flags),
      seq: r.u32(buf, at + NLH.offset.seq),
      pid: r.u32(buf, at + NLH.offset.pid),
      payload: buf.subarray(at + NLH.size, at + len),
    });
    at += nlAlign(len);
  }
  return out;
}

export interface NlAttr {
  /** Without NLA_F_NESTED and NLA_F_NET_BYTEORDER. */
  type: number;
  nested: boolean;
  data: Buffer;
}

/**
 * The attributes of `b` (a payload after its fixed header, or a nested
 * attribute's data). Throws NetlinkError for a length shorter than an
 * attribute header or past the end. `what` names the place in errors.
 */
export function nlAttrs(b: Buffer, le: boolean = HOST_LE, what = 'attributes'): NlAttr[] {
  const r = ints(le);
  const out: NlAttr[] = [];
  let at = 0;
  while (at < b.length) {
    if (b.length - at < NLA.size) throw new NetlinkError(`${what}: ${b.length - at} trailing bytes, less than an attribute header`);
    const len = r.u16(b, at + NLA.offset.len);
    if (len < NLA.size || len > b.length - at) throw new NetlinkError(`${what}: an attribute of length ${len} at byte ${at} of ${b.length}`);
    const t = r.u16(b, at + NLA.offset.type);
    out.push({ type: t & NLA_TYPE_MASK, nested: (t & NLA_F_NESTED) !== 0, data: b.subarray(at + NLA.size, at + len) });
    at += nlAlign(len);
  }
  return out;
}

/**
 * The error of an NLMSG_ERROR or NLMSG_DONE message's payload: 0, or a
 * positive errno (the kernel sends it negated). NLMSG_DONE of a request
 * without a dump may have no payload: 0.
 */
export function nlErrno(m: NlMessage, le: boolean = HOST_LE): number {
  if (m.payload.length < 4) {
    if (m.type === NLMSG_DONE) return 0;
    throw new NetlinkError(`an error message of ${m.payload.length} bytes`);
  }
  return -ints(le).i32(m.payload, NLERR.offset.error);
}

/** The kernel's own words in an NLMSG_ERROR (NETLINK_EXT_ACK's NLMSGERR_ATTR_MSG), if it sent some. */
export function nlErrorText(m: NlMessage, le: boolean = HOST_LE): string | null {
  if (m.type !== NLMSG_ERROR || !(m.flags & NLM_F_ACK_TLVS) || m.payload.length < NLERR.size) return null;
  try {
    // NETLINK_CAP_ACK: the request's header only, its payload left out.
    const a = nlAttrs(m.payload.subarray(NLERR.size), le).find((x) => x.type === NLMSGERR_ATTR_MSG);
    return a ? a.data.toString('utf8').replace(/\0.*$/s, '') : null;
  } catch {
    return null;
  }
}

/** The request header inside an NLMSG_ERROR (the acknowledged message's seq is its). */
export function nlErrorRequest(m: NlMessage, le: boolean = HOST_LE): { seq: number } | null {
  if (m.payload.length < NLERR.size) return null;
  return { seq: ints(le).u32(m.payload, NLERR.offset.msg + NLH.offset.seq) };
}
