// A kernel WireGuard link's state over generic netlink, as `wg show IF dump`
// reads it (wireguard-tools' ipc-linux.h): WG_CMD_GET_DEVICE, a dump, asked
// by interface name; the answer is a device's attributes and its peers,
// nested, per include/uapi/linux/wireguard.h. Pure: the request's bytes and
// the answer's decoding; the socket is wg-netlink-linux.ts.
//
// A device with more peers (or allowed IPs) than one message holds comes as
// several messages: later ones carry WGDEVICE_A_IFNAME and WGDEVICE_A_PEERS
// only, and a peer cut between two repeats its public key with the rest of
// its allowed IPs; adjacent peers of one key are joined here, as wg does.
//
// Tested against byte fixtures built per the header (test/unit/wg-netlink.test.ts),
// not against a live kernel link: the machine it was written on has no
// WireGuard module. The private key (WGDEVICE_A_PRIVATE_KEY, sent to
// CAP_NET_ADMIN) and the preshared keys are never kept or quoted.
import { HOST_LE, hostAbi, structLayout, type Members } from '../../sys/c-abi.js';
import { exact, genlAnswers, nulString, type GenlMessage } from '../../sys/genetlink.js';
import { AF_INET, AF_INET6 } from '../../sys/linux-abi.js';
import { NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, NetlinkWriter, ints, nlAttrs, type NlAttr } from '../../sys/netlink.js';
import { formatIp } from '../../lib/ip.js';
import type { WgEndpoint, WgPeerInfo } from '../os-parse.js';

export const WG_GENL_NAME = 'wireguard';
export const WG_GENL_VERSION = 1;
export const WG_KEY_LEN = 32;
export const WG_CMD_GET_DEVICE = 0;
export const WGDEVICE_A_IFINDEX = 1;
export const WGDEVICE_A_IFNAME = 2;
export const WGDEVICE_A_PRIVATE_KEY = 3;
export const WGDEVICE_A_PUBLIC_KEY = 4;
export const WGDEVICE_A_FLAGS = 5;
export const WGDEVICE_A_LISTEN_PORT = 6;
export const WGDEVICE_A_FWMARK = 7;
export const WGDEVICE_A_PEERS = 8;
export const WGPEER_A_PUBLIC_KEY = 1;
export const WGPEER_A_PRESHARED_KEY = 2;
export const WGPEER_A_FLAGS = 3;
export const WGPEER_A_ENDPOINT = 4;
export const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5;
export const WGPEER_A_LAST_HANDSHAKE_TIME = 6;
export const WGPEER_A_RX_BYTES = 7;
export const WGPEER_A_TX_BYTES = 8;
export const WGPEER_A_ALLOWEDIPS = 9;
export const WGPEER_A_PROTOCOL_VERSION = 10;
export const WGALLOWEDIP_A_FAMILY = 1;
export const WGALLOWEDIP_A_IPADDR = 2;
export const WGALLOWEDIP_A_CIDR_MASK = 3;
/** IFNAMSIZ - 1 */
const IFNAME_MAX = 15;

const ABI = hostAbi();
/** <linux/in.h>, <linux/in6.h>: family in host order, port and address in network order. */
export const SOCKADDR_IN = [
  ['family', 'uint16'],
  ['port', 'uint16'],
  ['addr', 'in_addr'],
  ['zero', 'uint64'],
] as const satisfies Members;
export const SOCKADDR_IN6 = [
  ['family', 'uint16'],
  ['port', 'uint16'],
  ['flowinfo', 'uint32'],
  ['addr', 'in6_addr'],
  ['scopeId', 'uint32'],
] as const satisfies Members;
/** <linux/time_types.h>: 64-bit seconds and nanoseconds on every ABI. */
export const KERNEL_TIMESPEC = [
  ['sec', 'uint64'],
  ['nsec', 'uint64'],
] as const satisfies Members;
// sockaddr_in's 8 bytes of sin_zero are laid out as one u64 only for their size:
// its alignment must not pad the struct, so the layout is computed packed (it has none).
const SIN = structLayout(SOCKADDR_IN, ABI, true);
const SIN6 = structLayout(SOCKADDR_IN6, ABI);
const TS = structLayout(KERNEL_TIMESPEC, ABI);

/** A WireGuard device as its dump describes it (no private key). */
export interface WgDevice {
  ifname: string;
  ifindex: number | null;
  publicKey: string | null;
  listenPort: number;
  fwmark: number;
  peers: WgPeerInfo[];
}

/** WG_CMD_GET_DEVICE for `ifname`, a dump, in family `familyId`. */
export function encodeGetDevice(familyId: number, ifname: string, seq: number, w: NetlinkWriter = new NetlinkWriter()): Buffer {
  if (ifname.length === 0 || Buffer.byteLength(ifname) > IFNAME_MAX) throw new NetlinkError(`"${ifname}" is not an interface name`);
  w.len = 0;
  const m = w.header(familyId, NLM_F_REQUEST | NLM_F_DUMP, seq);
  w.genl(WG_CMD_GET_DEVICE, WG_GENL_VERSION);
  w.string(WGDEVICE_A_IFNAME, ifname);
  w.end(m);
  return w.bytes();
}

/**
 * The device in the answers to encodeGetDevice's request `seq` (`chunks`:
 * what each recv() returned). Throws NetlinkError when the kernel said an
 * error (ENODEV: no such link; EOPNOTSUPP: not a WireGuard link), when the
 * answer is incomplete, or when a message or attribute is malformed.
 */
export function decodeGetDevice(chunks: readonly Buffer[], seq: number, familyId: number, le: boolean = HOST_LE): WgDevice {
  const { messages, complete } = genlAnswers(chunks, seq, { dump: true, le });
  if (!complete) throw new NetlinkError('the device dump ended before NLMSG_DONE');
  if (messages.length === 0) throw new NetlinkError('the device dump held no device');
  return deviceOf(messages, familyId, le);
}

function deviceOf(messages: readonly GenlMessage[], familyId: number, le: boolean): WgDevice {
  const r = ints(le);
  const dev: WgDevice = { ifname: '', ifindex: null, publicKey: null, listenPort: 0, fwmark: 0, peers: [] };
  messages.forEach((m, i) => {
    if (m.type !== familyId) throw new NetlinkError(`message ${i + 1} is of family ${m.type}, not ${familyId}`);
    let ifname: string | null = null;
    for (const a of m.attrs) {
      switch (a.type) {
        case WGDEVICE_A_IFNAME:
          ifname = nulString(a.data, 'WGDEVICE_A_IFNAME');
          break;
        case WGDEVICE_A_IFINDEX:
          dev.ifindex = exact(a.data, 4, 'WGDEVICE_A_IFINDEX') && r.u32(a.data, 0);
          break;
        case WGDEVICE_A_PUBLIC_KEY:
          dev.publicKey = key(a.data, 'WGDEVICE_A_PUBLIC_KEY');
          break;
        case WGDEVICE_A_LISTEN_PORT:
          dev.listenPort = exact(a.data, 2, 'WGDEVICE_A_LISTEN_PORT') && r.u16(a.data, 0);
          break;
        case WGDEVICE_A_FWMARK:
          dev.fwmark = exact(a.data, 4, 'WGDEVICE_A_FWMARK') && r.u32(a.data, 0);
          break;
        case WGDEVICE_A_PEERS:
          for (const p of nlAttrs(a.data, le, 'WGDEVICE_A_PEERS')) addPeer(dev.peers, peerOf(p, le));
          break;
        // WGDEVICE_A_PRIVATE_KEY: never read. Unknown attributes: a newer kernel's, skipped.
      }
    }
    if (ifname === null) throw new NetlinkError(`message ${i + 1} names no device`);
    if (i === 0) dev.ifname = ifname;
    else if (ifname !== dev.ifname) throw new NetlinkError(`message ${i + 1} is of device "${ifname}", not "${dev.ifname}"`);
  });
  return dev;
}

/** Appends `p`, or joins its allowed IPs to the last peer's when the dump cut that peer in two. */
function addPeer(peers: WgPeerInfo[], p: WgPeerInfo): void {
  const last = peers.at(-1);
  if (last && last.publicKey === p.publicKey) last.allowedIps.push(...p.allowedIps);
  else peers.push(p);
}

function peerOf(a: NlAttr, le: boolean): WgPeerInfo {
  const r = ints(le);
  const peer: WgPeerInfo = { publicKey: '', hasPresharedKey: false, endpoint: null, allowedIps: [], latestHandshake: null, rxBytes: 0, txBytes: 0, keepalive: null };
  let hasKey = false;
  for (const x of nlAttrs(a.data, le, 'a peer')) {
    switch (x.type) {
      case WGPEER_A_PUBLIC_KEY:
        peer.publicKey = key(x.data, 'WGPEER_A_PUBLIC_KEY');
        hasKey = true;
        break;
      case WGPEER_A_PRESHARED_KEY:
        exact(x.data, WG_KEY_LEN, 'WGPEER_A_PRESHARED_KEY');
        peer.hasPresharedKey = x.data.some((b) => b !== 0);
        break;
      case WGPEER_A_ENDPOINT:
        peer.endpoint = endpointOf(x.data, le);
        break;
      case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: {
        const k = exact(x.data, 2, 'WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL') && r.u16(x.data, 0);
        peer.keepalive = k === 0 ? null : k;
        break;
      }
      case WGPEER_A_LAST_HANDSHAKE_TIME:
        peer.latestHandshake = handshakeOf(x.data, le);
        break;
      case WGPEER_A_RX_BYTES:
        peer.rxBytes = exact(x.data, 8, 'WGPEER_A_RX_BYTES') && Number(r.u64(x.data, 0));
        break;
      case WGPEER_A_TX_BYTES:
        peer.txBytes = exact(x.data, 8, 'WGPEER_A_TX_BYTES') && Number(r.u64(x.data, 0));
        break;
      case WGPEER_A_ALLOWEDIPS:
        for (const ip of nlAttrs(x.data, le, 'WGPEER_A_ALLOWEDIPS')) peer.allowedIps.push(allowedIpOf(ip, le));
        break;
    }
  }
  if (!hasKey) throw new NetlinkError('a peer without WGPEER_A_PUBLIC_KEY');
  return peer;
}

function key(b: Buffer, what: string): string {
  exact(b, WG_KEY_LEN, what);
  return b.toString('base64');
}

/** sockaddr_in or sockaddr_in6, by its family and length; `[fe80::1%3]` keeps a scope as its index. */
function endpointOf(b: Buffer, le: boolean): WgEndpoint | null {
  const r = ints(le);
  // The family is what precedes the port in both structs.
  if (b.length < SIN.offset.port) throw new NetlinkError(`WGPEER_A_ENDPOINT is ${b.length} bytes`);
  const family = r.u16(b, SIN.offset.family);
  if (family === AF_INET && b.length === SIN.size) {
    const port = b.readUInt16BE(SIN.offset.port);
    return { host: formatIp({ family: 4, w: [0, 0, 0, b.readUInt32BE(SIN.offset.addr)] }), port };
  }
  if (family === AF_INET6 && b.length === SIN6.size) {
    const at = SIN6.offset.addr;
    const w: [number, number, number, number] = [b.readUInt32BE(at), b.readUInt32BE(at + 4), b.readUInt32BE(at + 8), b.readUInt32BE(at + 12)];
    const scope = r.u32(b, SIN6.offset.scopeId);
    return { host: `${formatIp({ family: 6, w })}${scope ? `%${scope}` : ''}`, port: b.readUInt16BE(SIN6.offset.port) };
  }
  // The kernel sends no endpoint attribute for a peer without one; a zeroed one reads as none.
  if (family === 0) return null;
  throw new NetlinkError(`WGPEER_A_ENDPOINT: family ${family} in ${b.length} bytes`);
}

/** __kernel_timespec → ms since the epoch; 0/0 (never) → null. */
function handshakeOf(b: Buffer, le: boolean): number | null {
  exact(b, TS.size, 'WGPEER_A_LAST_HANDSHAKE_TIME');
  const r = ints(le);
  const sec = r.i64(b, TS.offset.sec);
  const nsec = r.i64(b, TS.offset.nsec);
  if (sec < 0n || nsec < 0n || nsec >= 1_000_000_000n || sec > BigInt(Number.MAX_SAFE_INTEGER) / 1000n) {
    throw new NetlinkError('WGPEER_A_LAST_HANDSHAKE_TIME is not a time');
  }
  if (sec === 0n && nsec === 0n) return null;
  return Number(sec) * 1000 + Math.floor(Number(nsec) / 1e6);
}

function allowedIpOf(a: NlAttr, le: boolean): string {
  const r = ints(le);
  let family: number | null = null;
  let addr: Buffer | null = null;
  let cidr: number | null = null;
  for (const x of nlAttrs(a.data, le, 'an allowed IP')) {
    if (x.type === WGALLOWEDIP_A_FAMILY) family = exact(x.data, 2, 'WGALLOWEDIP_A_FAMILY') && r.u16(x.data, 0);
    else if (x.type === WGALLOWEDIP_A_IPADDR) addr = x.data;
    else if (x.type === WGALLOWEDIP_A_CIDR_MASK) cidr = exact(x.data, 1, 'WGALLOWEDIP_A_CIDR_MASK') && x.data.readUInt8(0);
  }
  const bits = family === AF_INET ? 32 : family === AF_INET6 ? 128 : 0;
  if (bits === 0 || addr === null || addr.length !== bits / 8 || cidr === null || cidr > bits) {
    throw new NetlinkError(`an allowed IP of family ${family ?? 'none'} with ${addr?.length ?? 'no'} address bytes and mask ${cidr ?? 'none'}`);
  }
  const w: [number, number, number, number] = bits === 32 ? [0, 0, 0, addr.readUInt32BE(0)] : [addr.readUInt32BE(0), addr.readUInt32BE(4), addr.readUInt32BE(8), addr.readUInt32BE(12)];
  return `${formatIp({ family: bits === 32 ? 4 : 6, w })}/${cidr}`;
}
