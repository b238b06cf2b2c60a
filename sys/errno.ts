// errno numbers as Node names them (`11` → `EAGAIN`), for errors from libc
// calls made through koffi (the resolver's UDP, the proxy's raw sockets, the
// daemon's marked sockets): one table, the first name of a number winning
// (EAGAIN rather than EWOULDBLOCK, as strerror and Node say it).
import { constants } from 'node:os';

const names = new Map<number, string>();
for (const [name, n] of Object.entries(constants.errno)) if (!names.has(n)) names.set(n, name);

/** `1` → `EPERM`; a name stays as it is; unknown numbers → `errno 123`. */
export function errnoName(errno: string | number): string {
  if (typeof errno === 'string') return errno;
  return names.get(errno) ?? `errno ${errno}`;
}
