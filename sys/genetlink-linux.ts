// A generic netlink socket (AF_NETLINK, NETLINK_GENERIC) through libc, for
// reading kernel state without spawning a tool: families are found by name
// through the controller (sys/genetlink.ts), requests are answered in the
// socket's network namespace, that of the process when it was opened.
//
// Calls are synchronous, on the main thread: the kernel builds a request's
// answer inside send(), and each next part of a dump inside the recv() that
// takes the previous one, so every recv() here is MSG_DONTWAIT and finds its
// data (microseconds for a device with a few peers). An answer that stops
// short (EAGAIN before its end) is an error, never a wait.
import { koffi, type KoffiFunction } from './koffi-linux.js';
import { constants } from 'node:os';
import { loadLibc } from './libc-linux.js';
import { AF_NETLINK, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_RAW } from './linux-abi.js';
import { encodeGetFamily, errnoText, genlAnswers, parseFamilies, type GenlFamily, type GenlMessage } from './genetlink.js';
import { NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GENERIC, NLMSG_DONE, NLMSG_ERROR, NetlinkError, NetlinkWriter, SOL_NETLINK, nlMessages } from './netlink.js';
import { HOST_LE } from './c-abi.js';

/** The libc calls a netlink socket needs (this module's, and the tagger's nfnetlink one: daemon/dataplane/libnft-linux.ts). */
export interface NetlinkLibc {
  socket: KoffiFunction;
  setsockopt: KoffiFunction;
  send: KoffiFunction;
  recv: KoffiFunction;
  close: KoffiFunction;
  strerror: KoffiFunction;
}

let libcFns: NetlinkLibc | null = null;

/** libc's socket calls, declared once; throws (koffi or the C library missing: SPLITWAN_NATIVE_KOFFI, SPLITWAN_NATIVE_LIBC) where they cannot be had. */
export function netlinkLibc(): NetlinkLibc {
  if (libcFns) return libcFns;
  const c = loadLibc();
  libcFns = {
    socket: c.func('int socket(int domain, int type, int protocol)'),
    setsockopt: c.func('int setsockopt(int fd, int level, int name, int *value, uint32_t len)'),
    send: c.func('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
    recv: c.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
    close: c.func('int close(int fd)'),
    strerror: c.func('const char *strerror(int errnum)'),
  };
  return libcFns;
}

const { EAGAIN, EINTR } = constants.errno;
/** Larger than the biggest part of a dump the kernel builds (32 KiB). */
const RECV_BUFFER = 64 * 1024;
/** An answer larger than this is refused: no device of ours comes near (a peer is ~200 bytes). */
const MAX_ANSWER = 8 * 1024 * 1024;

export class GenlSocket {
  private readonly w = new NetlinkWriter();
  private readonly rbuf = Buffer.alloc(RECV_BUFFER);
  private seq = Math.floor(Date.now() / 1000) % 0x7fffffff || 1;
  private closed = false;
  /** A request failed half-way (its answer may be partly unread): the socket is not to be used again. */
  broken = false;

  private constructor(
    private readonly c: NetlinkLibc,
    private readonly fd: number,
  ) {}

  /** A socket in this process's network namespace; throws NetlinkError (or libc's loading error) when none can be had. */
  static open(): GenlSocket {
    const c = netlinkLibc();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC) as number;
    if (fd < 0) {
      const errno = koffi.errno();
      throw new NetlinkError(`socket(AF_NETLINK, NETLINK_GENERIC): ${errnoText(errno)}`);
    }
    // Errors without a copy of the request, with the kernel's message when it has one.
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, [1], 4);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, [1], 4);
    return new GenlSocket(c, fd);
  }

  /**
   * Sends the request `build(seq)` returns and reads its whole answer: what
   * each recv() returned, copied, up to the answer's last message (NLMSG_DONE
   * or NLMSG_ERROR for a dump, the first message of `seq` otherwise). `wipe`:
   * the receive buffer is zeroed after each copy (an answer holding a key).
   */
  request(build: (seq: number, w: NetlinkWriter) => Buffer, o: { dump: boolean; wipe?: boolean }): { chunks: Buffer[]; seq: number } {
    if (this.closed) throw new NetlinkError('socket closed');
    if (this.broken) throw new NetlinkError('an earlier answer was left half-read: open another socket');
    this.broken = true;
    const seq = this.seq;
    this.seq = (this.seq % 0x7fffffff) + 1;
    const bytes = build(seq, this.w);
    const sent = this.c.send(this.fd, bytes, bytes.length, 0) as number;
    if (sent !== bytes.length) {
      const errno = sent < 0 ? koffi.errno() : 0;
      throw new NetlinkError(`send: ${sent < 0 ? errnoText(errno) : `${sent} of ${bytes.length} bytes`}`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for (let interrupted = 0; ; ) {
      const n = this.c.recv(this.fd, this.rbuf, this.rbuf.length, MSG_DONTWAIT) as number;
      if (n < 0) {
        const errno = koffi.errno();
        if (errno === EINTR && ++interrupted < 100) continue;
        throw new NetlinkError(errno === EAGAIN ? `the answer stopped after ${total} bytes` : `recv: ${errnoText(errno)}`);
      }
      if (n === 0) throw new NetlinkError(`the answer stopped after ${total} bytes`);
      total += n;
      if (total > MAX_ANSWER) throw new NetlinkError(`an answer over ${MAX_ANSWER} bytes`);
      const chunk = Buffer.from(this.rbuf.subarray(0, n));
      if (o.wipe) this.rbuf.fill(0, 0, n);
      chunks.push(chunk);
      // Ours (a straggler of an earlier request has another seq) and the last of it?
      const last = nlMessages(chunk, HOST_LE).some((m) => m.seq === seq && (!o.dump || m.type === NLMSG_DONE || m.type === NLMSG_ERROR));
      if (last) {
        this.broken = false;
        return { chunks, seq };
      }
    }
  }

  /** The family named `name`; null when the kernel has none of that name (ENOENT). */
  family(name: string): GenlFamily | null {
    let messages: GenlMessage[];
    try {
      const { chunks, seq } = this.request((s, w) => encodeGetFamily(s, name, w), { dump: false });
      messages = genlAnswers(chunks, seq, { dump: false }).messages;
    } catch (e) {
      if (e instanceof NetlinkError && e.errno === constants.errno.ENOENT) return null;
      throw e;
    }
    const f = parseFamilies(messages)[0];
    if (!f || f.name !== name) throw new NetlinkError(`asked for family "${name}", answered ${f ? `"${f.name}"` : 'nothing'}`);
    return f;
  }

  /** Every family the kernel has (a dump: several messages, often several recv()s). */
  families(): GenlFamily[] {
    const { chunks, seq } = this.request((s, w) => encodeGetFamily(s, null, w), { dump: true });
    const { messages, complete } = genlAnswers(chunks, seq, { dump: true });
    if (!complete) throw new NetlinkError('the family dump ended before NLMSG_DONE');
    return parseFamilies(messages);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.c.close(this.fd);
  }
}
