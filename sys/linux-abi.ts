// Linux socket ABI numbers the raw-fd modules (dns/udp-mmsg-linux.ts,
// proxy/accept-linux.ts, proxy/splice-linux.ts, daemon/sockets-linux.ts,
// daemon/dataplane/libnft-linux.ts) pass to libc through koffi, in one place.
// The asm-generic values (x86_64, arm64, arm, riscv, s390x) unless the
// architecture has its own: MIPS numbers SOL_SOCKET, most SO_* options, the
// socket types and O_NONBLOCK otherwise (arch/mips/include/uapi/asm/socket.h,
// sock_types.h, fcntl.h); socketAbi() picks them by process.arch.
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;

/** The numbers that differ between architectures. */
export interface SocketAbi {
  SOCK_STREAM: number;
  SOCK_DGRAM: number;
  SOCK_RAW: number;
  /** = O_NONBLOCK */
  SOCK_NONBLOCK: number;
  /** = O_CLOEXEC = EPOLL_CLOEXEC */
  SOCK_CLOEXEC: number;
  SOL_SOCKET: number;
  SO_REUSEADDR: number;
  SO_ERROR: number;
  SO_SNDBUF: number;
  SO_RCVBUF: number;
  SO_LINGER: number;
  SO_SNDBUFFORCE: number;
  SO_RCVBUFFORCE: number;
  SO_MARK: number;
  O_NONBLOCK: number;
  /** _IOW('T', 202, int) with this architecture's _IOC direction bits. */
  TUNSETIFF: number;
  TUNSETPERSIST: number;
  /** _IOR(0x89, 0x07, long long[2]) likewise. */
  SIOCGSTAMPNS_NEW: number;
}

const GENERIC: SocketAbi = {
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  SOCK_RAW: 3,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  SO_REUSEADDR: 2,
  SO_ERROR: 4,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_LINGER: 13,
  SO_SNDBUFFORCE: 32,
  SO_RCVBUFFORCE: 33,
  SO_MARK: 36,
  O_NONBLOCK: 0o4000,
  TUNSETIFF: 0x400454ca,
  TUNSETPERSIST: 0x400454cb,
  SIOCGSTAMPNS_NEW: 0x80108907,
};

/**
 * MIPS (o32 and n64 alike). _IOC there: 3 direction bits at 29, _IOC_WRITE
 * 4, _IOC_READ 2 (asm/ioctl.h): _IOW → 0x8..., _IOR → 0x4....
 */
const MIPS: SocketAbi = {
  ...GENERIC,
  SOCK_STREAM: 2,
  SOCK_DGRAM: 1,
  SOCK_NONBLOCK: 0x80,
  SOL_SOCKET: 0xffff,
  SO_REUSEADDR: 0x0004,
  SO_ERROR: 0x1007,
  SO_SNDBUF: 0x1001,
  SO_RCVBUF: 0x1002,
  SO_LINGER: 0x0080,
  SO_SNDBUFFORCE: 31,
  O_NONBLOCK: 0x80,
  TUNSETIFF: 0x800454ca,
  TUNSETPERSIST: 0x800454cb,
  SIOCGSTAMPNS_NEW: 0x40108907,
};

/** The socket numbers of a Node architecture name (process.arch). */
export function socketAbi(arch: string = process.arch): SocketAbi {
  return arch.startsWith('mips') ? MIPS : GENERIC;
}

export const {
  SOCK_STREAM,
  SOCK_DGRAM,
  SOCK_RAW,
  SOCK_NONBLOCK,
  SOCK_CLOEXEC,
  SOL_SOCKET,
  SO_REUSEADDR,
  SO_ERROR,
  SO_SNDBUF,
  SO_RCVBUF,
  SO_LINGER,
  SO_SNDBUFFORCE,
  SO_RCVBUFFORCE,
  SO_MARK,
  O_NONBLOCK,
  TUNSETIFF,
  TUNSETPERSIST,
  SIOCGSTAMPNS_NEW,
} = socketAbi();
/** = O_CLOEXEC on every architecture. */
export const EPOLL_CLOEXEC = 0o2000000;
export const SOL_IP = 0;
/** = IPPROTO_IPV6 */
export const SOL_IPV6 = 41;
export const IPV6_V6ONLY = 26;
/** = IP6T_SO_ORIGINAL_DST */
export const SO_ORIGINAL_DST = 80;
export const MSG_PEEK = 0x2;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
// The TUN device splitwan holds for systemd-resolved (daemon/resolved-linux.ts):
// <linux/if_tun.h>, <linux/if.h>, <asm-generic/fcntl.h>. The ioctl numbers are
// _IOW('T', 202/203, int): see socketAbi() (PowerPC and SPARC, not targets,
// would differ too).
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
/** struct ifreq: IFNAMSIZ name, then a union whose `short ifr_flags` is first. */
export const IFNAMSIZ = 16;
export const IFREQ_SIZE = 40;
export const IFF_UP = 0x1;
export const CLOCK_REALTIME = 0;
