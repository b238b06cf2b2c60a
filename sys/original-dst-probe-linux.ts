// Whether this kernel (or emulator) answers getsockopt(SO_ORIGINAL_DST), asked
// once at start by the proxy's two readers of it: the raw accept path
// (proxy/accept-linux.ts) and the socket-based one (daemon/sockets-linux.ts).
// A kernel answers ENOENT for a socket with no conntrack entry; qemu-user
// does not know the option (ENOPROTOOPT), and a proxy that reads it there
// fails every connection: the caller takes its fallback instead (conntrack,
// Node's accept), said once.
import { constants } from 'node:os';
import { loadKoffi } from './koffi-linux.js';
import { loadLibc } from './libc-linux.js';
import { errnoName } from './errno.js';
import { AF_INET, SOCK_CLOEXEC, SOCK_STREAM, SOL_IP, SO_ORIGINAL_DST } from './linux-abi.js';

let answer: string | null | undefined;

/** Why SO_ORIGINAL_DST cannot be read here, or null when it can. Throws when the C library does not load. */
export function originalDstProblem(): string | null {
  if (answer !== undefined) return answer;
  const koffi = loadKoffi();
  const l = loadLibc();
  const socket = l.func('int socket(int, int, int)') as (d: number, t: number, p: number) => number;
  const getsockopt = l.func('int getsockopt(int, int, int, _Out_ uint8_t *val, _Inout_ uint32_t *len)') as (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;
  const close = l.func('int close(int)') as (fd: number) => number;
  const fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return `socket: ${errnoName(koffi.errno())}`; // not kept: the next start may do better
  const errno = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, Buffer.alloc(28), [28]) === 0 ? 0 : koffi.errno();
  close(fd);
  answer = errno === constants.errno.ENOPROTOOPT ? `getsockopt(SO_ORIGINAL_DST): ${errnoName(errno)}` : null;
  return answer;
}
