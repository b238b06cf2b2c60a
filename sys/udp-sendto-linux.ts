// One datagram out of a dgram socket's own fd with sendto(2) (issue 17: a
// router's CPU). dgram's send looks the address up (an IP literal too:
// dns.lookup, then a tick), makes a SendWrap, sends, and calls back on
// another tick; the upstream pool and the probes send ~30 datagrams a second
// at a household's load. The socket stays dgram's: receiving, errors and
// close are Node's, and anything this does not do (a scoped address, a
// closed socket, a full send buffer) goes through dgram as before.
import type dgram from 'node:dgram';
import { koffi } from './koffi-linux.js';
import { loadLibc } from './libc-linux.js';
import { errnoName } from './errno.js';
import { MSG_DONTWAIT } from './linux-abi.js';
import { dgramFd } from './socket-fd.js';
import { sockaddr } from './sockaddr.js';

/**
 * Sends `msg` to host:port on the socket's fd: true when the kernel took it;
 * false when it is left to dgram (no fd, not an IP literal, EAGAIN: dgram
 * queues until the socket is writable). Throws the kernel's refusal (an Error
 * with its errno name as `code`: ENETUNREACH, EPERM...) as dgram's send
 * callback would report it.
 */
export type SendDatagram = (sock: dgram.Socket, msg: Buffer, port: number, host: string) => boolean;

type SendTo = (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number) => number;

/** The sender through libc; throws where there is no koffi or C library (the caller then sends with dgram). */
export function nativeSendDatagram(): SendDatagram {
  const sendto = loadLibc().func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)') as SendTo;
  // Upstreams and probe targets: a handful of addresses, asked again and again.
  const addrs = new Map<string, Buffer | null>();
  return (sock, msg, port, host) => {
    const key = `${host}|${port}`;
    let addr = addrs.get(key);
    if (addr === undefined) {
      if (addrs.size >= 1024) addrs.clear();
      addr = sockaddr(host, port);
      addrs.set(key, addr);
    }
    if (addr === null) return false;
    const fd = dgramFd(sock);
    if (fd < 0) return false;
    if (sendto(fd, msg, msg.length, MSG_DONTWAIT, addr, addr.length) >= 0) return true;
    const code = errnoName(koffi.errno());
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') return false;
    throw Object.assign(new Error(`send ${code} ${host}:${port}`), { code, syscall: 'send', address: host, port });
  };
}
