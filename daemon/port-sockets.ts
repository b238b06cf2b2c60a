// Path sockets without native code: the path is the source port
// (dataplane/port-paths.ts has the ranges and the ip rules and nft lines that
// route them). Used where SO_MARK cannot be set (SPLITWAN_NATIVE=off, no
// koffi build for the platform); plain node:dgram and node:net.
//
// - UDP: bound to a free port of the mark's range before the first send.
// - TCP: connected from a port of the range (Node binds it before connect(),
//   with SO_REUSEADDR as libuv always sets it, so several connections to
//   different peers may share a port); a port whose 4-tuple is taken
//   (EADDRINUSE, EADDRNOTAVAIL) is retried from another one.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { portRangeOfMark, type PortRange } from './dataplane/port-paths.js';
import { checkMark, checkTcp, connectWithTimeout, fromNodeError, SocketError, type PathSockets, type TcpConnectOptions } from './sockets.js';

/** Ports tried per TCP connect before giving up (each a fresh random one). */
const TCP_TRIES = 8;

function rangeOf(mark: number, kind: 'udp' | 'tcp', family: 4 | 6): PortRange {
  checkMark(mark, kind, family);
  const r = portRangeOfMark(mark);
  if (r === null) throw new SocketError({ op: 'bind', errno: 'EINVAL', kind, family, mark, detail: 'not a path mark: no source-port range' });
  return r;
}

export class PortPathSockets implements PathSockets {
  /** Says to the daemon that the data plane must route by source port (DataplanePlan.portPaths). */
  readonly byPort = true;

  async udp(family: 4 | 6, mark: number): Promise<dgram.Socket> {
    const r = rangeOf(mark, 'udp', family);
    const size = r.last - r.first + 1;
    const start = randomInt(size);
    let last: unknown;
    // Every port of the range once, from a random one: a busy range fails only when it is full.
    for (let i = 0; i < size; i++) {
      const port = r.first + ((start + i) % size);
      // v6-only: the IPv4 socket on the same port is another path's business.
      const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
      try {
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind({ port, exclusive: true }, () => {
            sock.removeListener('error', reject);
            resolve();
          });
        });
        return sock;
      } catch (e) {
        last = e;
        try {
          sock.close();
        } catch {
          // never bound
        }
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
      }
    }
    throw fromNodeError(last, { op: 'bind', kind: 'udp', family, mark });
  }

  async tcpConnect(opts: TcpConnectOptions): Promise<net.Socket> {
    const family = checkTcp(opts);
    const r = rangeOf(opts.mark, 'tcp', family);
    for (let i = 1; ; i++) {
      const port = r.first + randomInt(r.last - r.first + 1);
      try {
        return await connectWithTimeout(new net.Socket(), opts, family, port);
      } catch (e) {
        const errno = e instanceof SocketError ? e.errno : '';
        if (i >= TCP_TRIES || (errno !== 'EADDRINUSE' && errno !== 'EADDRNOTAVAIL')) throw e;
      }
    }
  }
}
