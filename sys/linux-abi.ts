// Linux socket ABI numbers the raw-fd modules (dns/udp-mmsg-linux.ts,
// proxy/accept-linux.ts, proxy/splice-linux.ts, daemon/sockets-linux.ts,
// daemon/dataplane/libnft-linux.ts) pass to libc through koffi, in one place.
// These are the asm-generic values (x86_64, arm64, arm, riscv); an
// architecture with its own (MIPS: SOL_SOCKET 0xffff, other SO_* and
// SOCK_* numbers) is one edit here.
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_LINGER = 13;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_MARK = 36;
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
// asm-generic _IOW('T', 202/203, int); MIPS, PowerPC and SPARC encode the
// direction bits differently (0x800454ca).
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const TUNSETIFF = 0x400454ca;
export const TUNSETPERSIST = 0x400454cb;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
/** struct ifreq: IFNAMSIZ name, then a union whose `short ifr_flags` is first. */
export const IFNAMSIZ = 16;
export const IFREQ_SIZE = 40;
export const IFF_UP = 0x1;
/**
 * SIOCGSTAMPNS_NEW = _IOR(0x89, 0x07, long long[2]) with the asm-generic
 * _IOC layout: the receive time of the last datagram read, as a 16-byte
 * __kernel_timespec on every architecture (Linux 5.1+). MIPS, PowerPC and
 * SPARC lay _IOC out otherwise (one edit here).
 */
export const SIOCGSTAMPNS_NEW = 0x80108907;
export const CLOCK_REALTIME = 0;
