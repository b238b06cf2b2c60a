// Batched UDP for the resolver on Linux: recvmmsg/sendmmsg through koffi.
//
// Why: Node's dgram makes one libuv read, one JS callback, one rinfo object
// and one send (with its own request object) per datagram. With no DNS logic
// at all that costs ~12 µs of CPU per answer here (`bench dns`, node-echo),
// more than dnsmasq spends on a whole cache hit (7.6 µs). The resolver's own
// hit path costs ~1.7 µs, so the socket shell was most of the bill.
//
// How:
// - Sockets are made with libc (socket, bind, SO_RCVBUF/SO_SNDBUF; the
//   FORCE variants first, as root may exceed rmem_max), non-blocking.
// - Each listener's fd is watched by a libuv poll handle on Node's own loop
//   (config/fd-watch-linux.ts): readable wakes the main thread directly, as
//   Node's sockets do. (A poll(2) on libuv's thread pool came first: the
//   hand-off between the pool thread and the main thread cost about half of
//   the CPU of a cache hit.)
// - When a fd is readable the main thread reads up to 64 datagrams per
//   recvmmsg (MSG_DONTWAIT) into native buffers and offers each, where it
//   lies, to the in-place handler (the resolver's cache hits: the answer is
//   written straight into a native send slot, nothing allocated); the others
//   go to the handler as a copy (the resolver keeps query bytes across
//   awaits), and its synchronous replies are copied into send slots. Each
//   slot's header points at the sender's sockaddr as received; one sendmmsg
//   sends them all.
//   Up to 4 batches per wakeup, then back to the loop (the poll is level
//   triggered: a fd with more waiting wakes again), so timers and other
//   sockets get their turn under a flood.
// - A reply that comes later (a Promise: a miss) is sent with sendto(2) to a
//   copy of the sender's sockaddr taken when the handler returned.
// - Closing closes the poll handle; the fd is closed once libuv has let go
//   of it, and `close()` resolves then (the port is free).
//
// Memory layout of a listener's native block (struct sizes and offsets for
// the running ABI from sys/c-abi.ts, checked against koffi's at load; LP64
// sizes shown, ILP32 (armhf, mips) in brackets):
//   64 × mmsghdr (64 B [32]) for receiving, 64 × iovec (16 B [8]), 64 ×
//   sockaddr (28 B, enough for sockaddr_in6), 64 × 4096 B receive slots; then
//   64 × mmsghdr, 64 × iovec and 64 × 2048 B send slots. Replies over UDP are
//   at most 1232 B (EDNS_UDP_SIZE); a bigger one goes by sendto. Integers
//   the kernel reads are in the machine's byte order.
import { koffi } from '../sys/koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from '../sys/libc-linux.js';
import { sockaddr } from '../sys/sockaddr.js';
import { cAbi, cInt, iovecLayout, mmsghdrLayout, msghdrLayout, wordWriter, IOVEC, MMSGHDR, MSGHDR, type CAbi } from '../sys/c-abi.js';
import { koffiLayoutProblem } from '../sys/koffi-linux.js';
import { errnoName } from '../sys/errno.js';
import { READABLE, fdWatchProblem, watchFd, type FdWatch } from '../sys/fd-watch-linux.js';
import { fastPathOr, type FallbackReport } from '../sys/native-fallback.js';
import { formatIp } from '../lib/ip.js';
import { dgramTransport, type DatagramListener, type UdpListenOptions, type UdpPeer, type UdpTransport } from './udp.js';
import { AF_INET, AF_INET6, IPV6_V6ONLY, MSG_DONTWAIT, MSG_TRUNC, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOL_IPV6, SOL_SOCKET, SO_RCVBUF, SO_RCVBUFFORCE, SO_SNDBUF, SO_SNDBUFFORCE } from '../sys/linux-abi.js';


const BATCH = 64;
const BATCHES_PER_WAKEUP = 4;
const NAME = 28; // sockaddr_in6
const RECV_SLOT = 4096;
const SEND_SLOT = 2048;

/** Where everything lies in a listener's block, for one ABI (pure: tested for every ABI on any machine). */
export function mmsgBlockLayout(abi: CAbi) {
  const h = msghdrLayout(abi);
  const m = mmsghdrLayout(abi);
  const iov = iovecLayout(abi);
  const HDR = m.size;
  const IOV = iov.size;
  const RECV_HDRS = 0;
  const RECV_IOVS = RECV_HDRS + BATCH * HDR;
  const NAMES = RECV_IOVS + BATCH * IOV;
  const RECV_BUFS = NAMES + BATCH * NAME;
  const SEND_HDRS = RECV_BUFS + BATCH * RECV_SLOT;
  const SEND_IOVS = SEND_HDRS + BATCH * HDR;
  const SEND_BUFS = SEND_IOVS + BATCH * IOV;
  const hdr = m.offset.hdr;
  return {
    HDR,
    IOV,
    H_NAME: hdr + h.offset.name,
    H_NAMELEN: hdr + h.offset.namelen,
    H_IOV: hdr + h.offset.iov,
    H_IOVLEN: hdr + h.offset.iovlen,
    H_FLAGS: hdr + h.offset.flags,
    H_LEN: m.offset.len,
    IOV_BASE: iov.offset.base,
    IOV_LEN: iov.offset.len,
    RECV_HDRS,
    RECV_IOVS,
    NAMES,
    RECV_BUFS,
    SEND_HDRS,
    SEND_IOVS,
    SEND_BUFS,
    BLOCK: SEND_BUFS + BATCH * SEND_SLOT,
  };
}

/** The layout in use: set by lib() for this process's ABI, before any listener exists. */
let L: ReturnType<typeof mmsgBlockLayout>;
/** Writes a pointer or size_t of this ABI. */
let setWord: (dv: DataView, at: number, value: number) => void;
let LE = true;

/** This process's layout, or throws why the fast path cannot run (an unknown ABI, koffi disagreeing). */
function useLayout(): void {
  const abi = cAbi();
  for (const [name, members, computed] of [
    ['msghdr', MSGHDR, msghdrLayout(abi)],
    ['mmsghdr', MMSGHDR, mmsghdrLayout(abi)],
    ['iovec', IOVEC, iovecLayout(abi)],
  ] as const) {
    const problem = koffiLayoutProblem(name, members, computed);
    if (problem !== null) throw Object.assign(new Error(problem), { code: 'SPLITWAN_NATIVE_ABI' });
  }
  L = mmsgBlockLayout(abi);
  setWord = wordWriter(abi);
  LE = abi.littleEndian;
}

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  getsockname(fd: number, addr: Buffer, len: number[]): number;
  recvmmsg(fd: number, vec: number, vlen: number, flags: number, timeout: number): number;
  sendmmsg(fd: number, vec: number, vlen: number, flags: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number): number;
  close(fd: number): number;
}

let libc: Libc | null = null;

function lib(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux') throw new Error(`udp-mmsg-linux: needs Linux (this is ${process.platform})`);
  const l = loadLibc();
  useLayout();
  // Pointers into our own native blocks are passed as integers (uintptr_t):
  // koffi then neither copies nor pins anything.
  libc = {
    socket: l.func('int socket(int, int, int)') as Libc['socket'],
    setsockopt: l.func('int setsockopt(int, int, int, const void *, uint32_t)') as Libc['setsockopt'],
    bind: l.func('int bind(int, const void *, uint32_t)') as Libc['bind'],
    getsockname: l.func('int getsockname(int, _Out_ uint8_t *, _Inout_ uint32_t *)') as Libc['getsockname'],
    recvmmsg: l.func('int recvmmsg(int, uintptr_t, unsigned int, int, uintptr_t)') as Libc['recvmmsg'],
    sendmmsg: l.func('int sendmmsg(int, uintptr_t, unsigned int, int)') as Libc['sendmmsg'],
    sendto: l.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)') as Libc['sendto'],
    close: l.func('int close(int)') as Libc['close'],
  };
  return libc;
}

/** The errno of the last libc call as Node names it (EADDRINUSE...). */
function lastErrno(): string {
  return errnoName(koffi.errno());
}

function sysError(op: string): Error & { code: string } {
  const code = lastErrno();
  return Object.assign(new Error(`${op}: ${code}`), { code });
}

/** A sockaddr for bind(2) (sys/sockaddr.ts); null when `host` is not an IP literal (or has a %scope: left to dgram). */
export { sockaddr };

class MmsgListener implements DatagramListener {
  private open = true;
  /** Set right after construction; closed before the fd. */
  watch: FdWatch | null = null;
  private readonly mem: ReturnType<typeof koffi.alloc>;
  private readonly base: number;
  private readonly u8: Buffer;
  private readonly dv: DataView;
  /** IPv4 senders' text, by address: formatting one per datagram would cost as much as the lookup. */
  private readonly v4Names = new Map<number, string>();
  private lastV6Key = '';
  private lastV6Name = '';
  /** The address of receive slot i's sockaddr. */
  private readonly nameAddr: number[] = [];

  constructor(
    private readonly fd: number,
    readonly port: number,
    private readonly o: UdpListenOptions,
  ) {
    const { BLOCK, RECV_HDRS, HDR, H_NAME, H_NAMELEN, H_IOV, H_IOVLEN, RECV_IOVS, IOV, IOV_BASE, IOV_LEN, NAMES, RECV_BUFS, SEND_HDRS, SEND_IOVS, SEND_BUFS } = L;
    this.mem = koffi.alloc('uint8', BLOCK);
    this.base = Number(koffi.address(this.mem));
    const ab = koffi.view(this.mem, BLOCK);
    this.u8 = Buffer.from(ab);
    this.dv = new DataView(ab);
    this.u8.fill(0);
    const dv = this.dv;
    const ptr = (off: number): number => this.base + off;
    for (let i = 0; i < BATCH; i++) {
      const h = RECV_HDRS + i * HDR;
      setWord(dv, h + H_NAME, ptr(NAMES + i * NAME));
      dv.setUint32(h + H_NAMELEN, NAME, LE);
      setWord(dv, h + H_IOV, ptr(RECV_IOVS + i * IOV));
      setWord(dv, h + H_IOVLEN, 1);
      setWord(dv, RECV_IOVS + i * IOV + IOV_BASE, ptr(RECV_BUFS + i * RECV_SLOT));
      setWord(dv, RECV_IOVS + i * IOV + IOV_LEN, RECV_SLOT);
      const s = SEND_HDRS + i * HDR;
      setWord(dv, s + H_IOV, ptr(SEND_IOVS + i * IOV));
      setWord(dv, s + H_IOVLEN, 1);
      setWord(dv, SEND_IOVS + i * IOV + IOV_BASE, ptr(SEND_BUFS + i * SEND_SLOT));
      this.nameAddr.push(ptr(NAMES + i * NAME));
    }
  }

  /** Readable: read and answer up to BATCHES_PER_WAKEUP batches. */
  drain(): void {
    const c = lib();
    for (let round = 0; round < BATCHES_PER_WAKEUP && this.open; round++) {
      const n = c.recvmmsg(this.fd, this.base + L.RECV_HDRS, BATCH, MSG_DONTWAIT, 0);
      if (n < 0) {
        const code = lastErrno();
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') this.o.onError(Object.assign(new Error(`recvmmsg: ${code}`), { code }));
        return;
      }
      this.answer(n);
      if (n < BATCH) return;
    }
  }

  private answer(n: number): void {
    const { u8, dv } = this;
    const { RECV_HDRS, HDR, H_LEN, H_FLAGS, H_NAMELEN, RECV_BUFS, NAMES, SEND_BUFS } = L;
    let replies = 0;
    for (let i = 0; i < n && this.open; i++) {
      const h = RECV_HDRS + i * HDR;
      const len = dv.getUint32(h + H_LEN, LE);
      const flags = dv.getInt32(h + H_FLAGS, LE);
      const nameLen = dv.getUint32(h + H_NAMELEN, LE);
      dv.setUint32(h + H_NAMELEN, NAME, LE); // recvmmsg wrote the sender's length: room for the next
      if ((flags & MSG_TRUNC) !== 0) continue; // over 4 KB: no DNS query is; dropped like other garbage
      const start = RECV_BUFS + i * RECV_SLOT;
      const nameAt = NAMES + i * NAME;
      const address = this.addressAt(nameAt);
      if (address === null) continue;
      if (this.o.inPlace !== undefined) {
        let w = -1;
        try {
          w = this.o.inPlace(u8, start, len, address, u8, SEND_BUFS + replies * SEND_SLOT, SEND_SLOT);
        } catch (e) {
          this.o.onError(e as Error); // then the handler has a go at it
        }
        if (w >= 0) {
          this.queue(replies++, i, nameLen, w);
          continue;
        }
      }
      const msg = Buffer.allocUnsafe(len);
      msg.set(u8.subarray(start, start + len));
      const peer: UdpPeer = { address, port: (u8[nameAt + 2]! << 8) | u8[nameAt + 3]! };
      let out;
      try {
        out = this.o.handler(msg, peer);
      } catch (e) {
        this.o.onError(e as Error);
        continue;
      }
      if (out === null) continue;
      if (out instanceof Promise) {
        const to = Buffer.from(u8.subarray(nameAt, nameAt + nameLen));
        out.then(
          (b) => {
            if (b !== null && this.open) this.sendTo(b, to);
          },
          (e: unknown) => this.o.onError(e as Error),
        );
        continue;
      }
      if (out.length > SEND_SLOT) {
        this.sendTo(out, u8.subarray(nameAt, nameAt + nameLen));
        continue;
      }
      u8.set(out, SEND_BUFS + replies * SEND_SLOT);
      this.queue(replies++, i, nameLen, out.length);
    }
    if (replies > 0 && this.open) this.flush(replies);
  }

  /** Send slot `slot` holds `length` bytes for the sender of receive slot `from`. */
  private queue(slot: number, from: number, nameLen: number, length: number): void {
    const dv = this.dv;
    const s = L.SEND_HDRS + slot * L.HDR;
    setWord(dv, L.SEND_IOVS + slot * L.IOV + L.IOV_LEN, length);
    setWord(dv, s + L.H_NAME, this.nameAddr[from]!);
    dv.setUint32(s + L.H_NAMELEN, nameLen, LE);
  }

  /** Sends the batch's replies; one that fails (EPERM from a firewall, ENETUNREACH...) is reported and skipped. */
  private flush(count: number): void {
    const c = lib();
    let sent = 0;
    while (sent < count) {
      const r = c.sendmmsg(this.fd, this.base + L.SEND_HDRS + sent * L.HDR, count - sent, MSG_DONTWAIT);
      if (r > 0) {
        sent += r;
        continue;
      }
      const code = lastErrno();
      if (code === 'EINTR') continue;
      // A full send buffer drops the rest, as the kernel would drop a datagram; clients retry.
      this.o.onError(Object.assign(new Error(`sendmmsg: ${code}`), { code }));
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return;
      sent++;
    }
  }

  private sendTo(b: Buffer, to: Uint8Array): void {
    const addr = Buffer.isBuffer(to) ? to : Buffer.from(to);
    if (lib().sendto(this.fd, b, b.length, MSG_DONTWAIT, addr, addr.length) < 0) {
      const code = lastErrno();
      this.o.onError(Object.assign(new Error(`sendto: ${code}`), { code }));
    }
  }

  /** The sender's address as text, from the sockaddr at `at`; null for a family we do not serve. */
  private addressAt(at: number): string | null {
    const dv = this.dv;
    const family = dv.getUint16(at, LE);
    if (family === AF_INET) {
      const a = dv.getUint32(at + 4, false);
      let name = this.v4Names.get(a);
      if (name === undefined) {
        if (this.v4Names.size >= 4096) this.v4Names.clear();
        name = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
        this.v4Names.set(a, name);
      }
      return name;
    }
    if (family !== AF_INET6) return null;
    const w: [number, number, number, number] = [dv.getUint32(at + 8, false), dv.getUint32(at + 12, false), dv.getUint32(at + 16, false), dv.getUint32(at + 20, false)];
    const scope = dv.getUint32(at + 24, LE);
    const key = `${w[0]},${w[1]},${w[2]},${w[3]},${scope}`;
    if (key !== this.lastV6Key) {
      this.lastV6Key = key;
      this.lastV6Name = formatIp({ family: 6, w }) + (scope !== 0 ? `%${scope}` : '');
    }
    return this.lastV6Name;
  }

  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    await this.watch?.close();
    lib().close(this.fd);
    koffi.free(this.mem);
  }
}

function setBuffer(fd: number, force: number, plain: number, bytes: number): void {
  const v = cInt(bytes);
  // Best effort, as dgram's recvBufferSize: the kernel's default still works.
  if (lib().setsockopt(fd, SOL_SOCKET, force, v, 4) !== 0) lib().setsockopt(fd, SOL_SOCKET, plain, v, 4);
}

export class MmsgTransport implements UdpTransport {
  readonly name = 'recvmmsg';

  async listen(o: UdpListenOptions): Promise<DatagramListener> {
    const addr = sockaddr(o.host, o.port);
    if (addr === null) return dgramTransport.listen(o);
    const c = lib();
    const v6 = addr.length === NAME;
    const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw sysError('socket');
    try {
      if (v6) {
        const one = cInt(1);
        if (c.setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, one, 4) !== 0) throw sysError('setsockopt(IPV6_V6ONLY)');
      }
      setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, o.bufferBytes);
      setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, o.bufferBytes);
      if (c.bind(fd, addr, addr.length) !== 0) throw sysError('bind');
      const got = Buffer.alloc(NAME);
      if (c.getsockname(fd, got, [NAME]) !== 0) throw sysError('getsockname');
      const port = got.readUInt16BE(2);
      const listener = new MmsgListener(fd, port, o);
      listener.watch = watchFd(
        fd,
        READABLE,
        (status) => {
          if (status < 0) o.onError(Object.assign(new Error(`poll: libuv error ${status}`), { code: 'EPOLL' }));
          else listener.drain();
        },
        o.onError,
      );
      return listener;
    } catch (e) {
      c.close(fd);
      throw e;
    }
  }
}

/**
 * The transport the resolver uses: batched on Linux, dgram elsewhere, where
 * libc cannot be loaded, or with SPLITWAN_DNS_UDP=dgram (a way out should a
 * kernel or libc misbehave). When it is dgram, `report` hears why, once.
 */
export function defaultUdpTransport(env: NodeJS.ProcessEnv = process.env, report: FallbackReport = {}): UdpTransport {
  const turnedOff = env.SPLITWAN_DNS_UDP === 'dgram' ? 'SPLITWAN_DNS_UDP=dgram' : null;
  return fastPathOr<UdpTransport>(
    { what: 'resolver UDP: recvmmsg', instead: 'node:dgram', report, turnedOff },
    () => {
      lib();
      const watch = fdWatchProblem();
      if (watch !== null) throw new Error(watch);
      return new MmsgTransport();
    },
    dgramTransport,
  );
}
