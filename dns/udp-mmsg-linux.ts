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
// - One `Poller` per process waits in poll(2) on every listener's fd and an
//   eventfd, on libuv's thread pool (koffi `.async`): one pool thread, however
//   many listen addresses. The poll has a 500 ms timeout so a pending poll
//   never holds the process at exit (libuv joins its pool threads) for long.
// - When a fd is readable the main thread reads up to 64 datagrams per
//   recvmmsg (MSG_DONTWAIT) into native buffers, hands each (copied: the
//   resolver keeps query bytes across awaits) to the handler, copies the
//   synchronous replies (cache hits) into native send slots pointing at the
//   sender's sockaddr as received, and sends them all with one sendmmsg.
//   Up to 4 batches per wakeup, then the poll is re-armed, so timers and
//   other sockets get their turn under a flood.
// - A reply that comes later (a Promise: a miss) is sent with sendto(2) to a
//   copy of the sender's sockaddr taken when the handler returned.
// - Closing removes the fd from the poller and wakes it; the fd is closed
//   once no poll(2) holds it, and `close()` resolves then (the port is free).
//
// Memory layout of a listener's native block (x86-64 and arm64, LP64):
//   64 × mmsghdr (64 B) for receiving, 64 × iovec (16 B), 64 × sockaddr
//   (28 B, enough for sockaddr_in6), 64 × 4096 B receive slots; then
//   64 × mmsghdr, 64 × iovec and 64 × 2048 B send slots. Replies over UDP are
//   at most 1232 B (EDNS_UDP_SIZE); a bigger one goes by sendto.
import { constants } from 'node:os';
import koffi from 'koffi';
import { formatIp, parseIp } from '../config/ip.js';
import { dgramTransport, type DatagramListener, type UdpListenOptions, type UdpPeer, type UdpTransport } from './udp.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const POLLIN = 0x1;
const POLLERR = 0x8;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLL_TIMEOUT_MS = 500;

const BATCH = 64;
const BATCHES_PER_WAKEUP = 4;
const HDR = 64; // struct mmsghdr: msghdr (56) + msg_len (4) + padding
const IOV = 16;
const NAME = 28; // sockaddr_in6
const RECV_SLOT = 4096;
const SEND_SLOT = 2048;
// Offsets inside struct msghdr / mmsghdr.
const H_NAME = 0;
const H_NAMELEN = 8;
const H_IOV = 16;
const H_IOVLEN = 24;
const H_FLAGS = 48;
const H_LEN = 56;

const RECV_HDRS = 0;
const RECV_IOVS = RECV_HDRS + BATCH * HDR;
const NAMES = RECV_IOVS + BATCH * IOV;
const RECV_BUFS = NAMES + BATCH * NAME;
const SEND_HDRS = RECV_BUFS + BATCH * RECV_SLOT;
const SEND_IOVS = SEND_HDRS + BATCH * HDR;
const SEND_BUFS = SEND_IOVS + BATCH * IOV;
const BLOCK = SEND_BUFS + BATCH * SEND_SLOT;

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  getsockname(fd: number, addr: Buffer, len: number[]): number;
  recvmmsg(fd: number, vec: number, vlen: number, flags: number, timeout: number): number;
  sendmmsg(fd: number, vec: number, vlen: number, flags: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number): number;
  poll: ((fds: number, nfds: number, timeout: number) => number) & {
    async: (fds: number, nfds: number, timeout: number, cb: (err: unknown, res: number) => void) => void;
  };
  eventfd(initval: number, flags: number): number;
  write(fd: number, buf: Buffer, len: number): number;
  read(fd: number, buf: Buffer, len: number): number;
  close(fd: number): number;
}

let libc: Libc | null = null;

function lib(): Libc {
  if (libc) return libc;
  if (process.platform !== 'linux') throw new Error(`udp-mmsg-linux: needs Linux (this is ${process.platform})`);
  const l = koffi.load('libc.so.6');
  // Pointers into our own native blocks are passed as integers (uintptr_t):
  // koffi then neither copies nor pins anything, and poll(2) may run on
  // another thread while JS code runs.
  libc = {
    socket: l.func('int socket(int, int, int)') as Libc['socket'],
    setsockopt: l.func('int setsockopt(int, int, int, const void *, uint32_t)') as Libc['setsockopt'],
    bind: l.func('int bind(int, const void *, uint32_t)') as Libc['bind'],
    getsockname: l.func('int getsockname(int, _Out_ uint8_t *, _Inout_ uint32_t *)') as Libc['getsockname'],
    recvmmsg: l.func('int recvmmsg(int, uintptr_t, unsigned int, int, uintptr_t)') as Libc['recvmmsg'],
    sendmmsg: l.func('int sendmmsg(int, uintptr_t, unsigned int, int)') as Libc['sendmmsg'],
    sendto: l.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)') as Libc['sendto'],
    poll: l.func('int poll(uintptr_t, unsigned long, int)') as Libc['poll'],
    eventfd: l.func('int eventfd(unsigned int, int)') as Libc['eventfd'],
    write: l.func('intptr_t write(int, const void *, size_t)') as Libc['write'],
    read: l.func('intptr_t read(int, _Out_ uint8_t *, size_t)') as Libc['read'],
    close: l.func('int close(int)') as Libc['close'],
  };
  return libc;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));
/** The errno of the last libc call as Node names it (EADDRINUSE...). */
function lastErrno(): string {
  const n = koffi.errno();
  return errnoNames.get(n) ?? `errno ${n}`;
}

function sysError(op: string): Error & { code: string } {
  const code = lastErrno();
  return Object.assign(new Error(`${op}: ${code}`), { code });
}

/** A sockaddr for bind(2); null when `host` is not an IP literal (or has a %scope: left to dgram). */
export function sockaddr(host: string, port: number): Buffer | null {
  const ip = host.includes('%') ? null : parseIp(host);
  if (ip === null) return null;
  if (ip.family === 4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    b.writeUInt32BE(ip.w[3], 4);
    return b;
  }
  const b = Buffer.alloc(NAME);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  for (let i = 0; i < 4; i++) b.writeUInt32BE(ip.w[i]!, 8 + 4 * i);
  return b;
}

/** Waits for readable fds on one pool thread; see the header. */
class Poller {
  private readonly listeners = new Map<number, () => void>();
  private readonly closing: { fd: number; done: () => void }[] = [];
  private armed = false;
  private wakeFd = -1;
  private fds: ReturnType<typeof koffi.alloc> | null = null;
  private fdsAddr = 0;
  private fdsView: DataView | null = null;
  private capacity = 0;
  private readonly one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
  private readonly sink = Buffer.alloc(8);

  add(fd: number, onReadable: () => void): void {
    const c = lib();
    if (this.wakeFd < 0) {
      this.wakeFd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (this.wakeFd < 0) throw sysError('eventfd');
    }
    this.listeners.set(fd, onReadable);
    if (this.armed) this.wake(); // the poll in flight does not watch the new fd yet
    else this.arm();
  }

  /** Stops watching `fd` and closes it once no poll(2) holds it. */
  remove(fd: number): Promise<void> {
    this.listeners.delete(fd);
    if (!this.armed) {
      lib().close(fd);
      return Promise.resolve();
    }
    return new Promise((done) => {
      this.closing.push({ fd, done });
      this.wake();
    });
  }

  private wake(): void {
    lib().write(this.wakeFd, this.one, 8);
  }

  private arm(): void {
    if (this.armed || this.listeners.size === 0) return;
    const n = this.listeners.size + 1;
    if (n > this.capacity) {
      if (this.fds !== null) koffi.free(this.fds);
      this.capacity = Math.max(16, n * 2);
      this.fds = koffi.alloc('uint8', this.capacity * 8);
      this.fdsAddr = Number(koffi.address(this.fds));
      this.fdsView = new DataView(koffi.view(this.fds, this.capacity * 8));
    }
    const v = this.fdsView!;
    let i = 0;
    for (const fd of [this.wakeFd, ...this.listeners.keys()]) {
      v.setInt32(i * 8, fd, true);
      v.setInt16(i * 8 + 4, POLLIN, true);
      v.setInt16(i * 8 + 6, 0, true);
      i++;
    }
    this.armed = true;
    lib().poll.async(this.fdsAddr, n, POLL_TIMEOUT_MS, () => this.onPoll(n));
  }

  private onPoll(n: number): void {
    this.armed = false;
    const c = lib();
    for (const { fd, done } of this.closing.splice(0)) {
      c.close(fd);
      done();
    }
    const v = this.fdsView!;
    if ((v.getInt16(6, true) & POLLIN) !== 0) c.read(this.wakeFd, this.sink, 8);
    for (let i = 1; i < n; i++) {
      const revents = v.getInt16(i * 8 + 6, true);
      if ((revents & (POLLIN | POLLERR)) === 0) continue;
      // A listener removed meanwhile is not in the map any more; its fd may even be another's now.
      this.listeners.get(v.getInt32(i * 8, true))?.();
    }
    this.arm();
  }
}

let poller: Poller | null = null;

class MmsgListener implements DatagramListener {
  private open = true;
  private readonly mem: ReturnType<typeof koffi.alloc>;
  private readonly base: number;
  private readonly u8: Uint8Array;
  private readonly dv: DataView;
  /** IPv4 senders' text, by address: formatting one per datagram would cost as much as the lookup. */
  private readonly v4Names = new Map<number, string>();
  private lastV6Key = '';
  private lastV6Name = '';
  /** The address of receive slot i's sockaddr, in 32-bit halves. */
  private readonly nameLo: number[] = [];
  private readonly nameHi: number[] = [];

  constructor(
    private readonly fd: number,
    readonly port: number,
    private readonly o: UdpListenOptions,
  ) {
    this.mem = koffi.alloc('uint8', BLOCK);
    this.base = Number(koffi.address(this.mem));
    const ab = koffi.view(this.mem, BLOCK);
    this.u8 = new Uint8Array(ab);
    this.dv = new DataView(ab);
    this.u8.fill(0);
    const dv = this.dv;
    const ptr = (off: number): bigint => BigInt(this.base + off);
    for (let i = 0; i < BATCH; i++) {
      const h = RECV_HDRS + i * HDR;
      dv.setBigUint64(h + H_NAME, ptr(NAMES + i * NAME), true);
      dv.setUint32(h + H_NAMELEN, NAME, true);
      dv.setBigUint64(h + H_IOV, ptr(RECV_IOVS + i * IOV), true);
      dv.setBigUint64(h + H_IOVLEN, 1n, true);
      dv.setBigUint64(RECV_IOVS + i * IOV, ptr(RECV_BUFS + i * RECV_SLOT), true);
      dv.setBigUint64(RECV_IOVS + i * IOV + 8, BigInt(RECV_SLOT), true);
      const s = SEND_HDRS + i * HDR;
      dv.setBigUint64(s + H_IOV, ptr(SEND_IOVS + i * IOV), true);
      dv.setBigUint64(s + H_IOVLEN, 1n, true);
      dv.setBigUint64(SEND_IOVS + i * IOV, ptr(SEND_BUFS + i * SEND_SLOT), true);
      const name = this.base + NAMES + i * NAME;
      this.nameLo.push(name % 2 ** 32);
      this.nameHi.push(Math.floor(name / 2 ** 32));
    }
  }

  /** Readable: read and answer up to BATCHES_PER_WAKEUP batches. */
  drain(): void {
    const c = lib();
    for (let round = 0; round < BATCHES_PER_WAKEUP && this.open; round++) {
      const n = c.recvmmsg(this.fd, this.base + RECV_HDRS, BATCH, MSG_DONTWAIT, 0);
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
    let replies = 0;
    for (let i = 0; i < n && this.open; i++) {
      const h = RECV_HDRS + i * HDR;
      const len = dv.getUint32(h + H_LEN, true);
      const flags = dv.getInt32(h + H_FLAGS, true);
      const nameLen = dv.getUint32(h + H_NAMELEN, true);
      dv.setUint32(h + H_NAMELEN, NAME, true); // recvmmsg wrote the sender's length: room for the next
      if ((flags & MSG_TRUNC) !== 0) continue; // over 4 KB: no DNS query is; dropped like other garbage
      const start = RECV_BUFS + i * RECV_SLOT;
      const msg = Buffer.allocUnsafe(len);
      msg.set(u8.subarray(start, start + len));
      const nameAt = NAMES + i * NAME;
      const peer = this.peer(nameAt);
      if (peer === null) continue;
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
      const s = SEND_HDRS + replies * HDR;
      u8.set(out, SEND_BUFS + replies * SEND_SLOT);
      // Plain 32-bit stores: a BigInt per reply costs more than the rest of
      // this loop. The iov length's high half is 0 from the start; the
      // pointer's halves were computed once.
      dv.setUint32(SEND_IOVS + replies * IOV + 8, out.length, true);
      dv.setUint32(s + H_NAME, this.nameLo[i]!, true);
      dv.setUint32(s + H_NAME + 4, this.nameHi[i]!, true);
      dv.setUint32(s + H_NAMELEN, nameLen, true);
      replies++;
    }
    if (replies > 0 && this.open) this.flush(replies);
  }

  /** Sends the batch's replies; one that fails (EPERM from a firewall, ENETUNREACH...) is reported and skipped. */
  private flush(count: number): void {
    const c = lib();
    let sent = 0;
    while (sent < count) {
      const r = c.sendmmsg(this.fd, this.base + SEND_HDRS + sent * HDR, count - sent, MSG_DONTWAIT);
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

  private peer(at: number): UdpPeer | null {
    const { u8, dv } = this;
    const family = dv.getUint16(at, true);
    const port = (u8[at + 2]! << 8) | u8[at + 3]!;
    if (family === AF_INET) {
      const a = dv.getUint32(at + 4, false);
      let name = this.v4Names.get(a);
      if (name === undefined) {
        if (this.v4Names.size >= 4096) this.v4Names.clear();
        name = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
        this.v4Names.set(a, name);
      }
      return { address: name, port };
    }
    if (family !== AF_INET6) return null;
    const w: [number, number, number, number] = [dv.getUint32(at + 8, false), dv.getUint32(at + 12, false), dv.getUint32(at + 16, false), dv.getUint32(at + 20, false)];
    const scope = dv.getUint32(at + 24, true);
    const key = `${w[0]},${w[1]},${w[2]},${w[3]},${scope}`;
    if (key !== this.lastV6Key) {
      this.lastV6Key = key;
      this.lastV6Name = formatIp({ family: 6, w }) + (scope !== 0 ? `%${scope}` : '');
    }
    return { address: this.lastV6Name, port };
  }

  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    await poller!.remove(this.fd);
    koffi.free(this.mem);
  }
}

function setBuffer(fd: number, force: number, plain: number, bytes: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(bytes);
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
        const one = Buffer.alloc(4);
        one.writeInt32LE(1);
        if (c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, one, 4) !== 0) throw sysError('setsockopt(IPV6_V6ONLY)');
      }
      setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, o.bufferBytes);
      setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, o.bufferBytes);
      if (c.bind(fd, addr, addr.length) !== 0) throw sysError('bind');
      const got = Buffer.alloc(NAME);
      if (c.getsockname(fd, got, [NAME]) !== 0) throw sysError('getsockname');
      const port = got.readUInt16BE(2);
      const listener = new MmsgListener(fd, port, o);
      (poller ??= new Poller()).add(fd, () => listener.drain());
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
 * kernel or libc misbehave).
 */
export function defaultUdpTransport(env: NodeJS.ProcessEnv = process.env): UdpTransport {
  if (env.SPLITWAN_DNS_UDP === 'dgram' || process.platform !== 'linux') return dgramTransport;
  try {
    lib();
    return new MmsgTransport();
  } catch {
    return dgramTransport;
  }
}
