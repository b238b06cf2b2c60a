// The resolver's UDP listeners, behind one small interface so the server
// (server.ts) does not care how datagrams are read and written:
//
// - `dgramTransport`: Node's dgram. Portable, one JS callback and one send
//   per datagram: about 12 µs of CPU per answer here even with no DNS logic
//   at all (`bench dns`'s node-echo), below dnsmasq's 7.6 µs.
// - `MmsgTransport` (udp-mmsg-linux.ts): batches of up to 64 datagrams per
//   recvmmsg/sendmmsg through koffi; the default on Linux.
//
// A handler answers a datagram by returning the reply (sent by the
// transport), null (nothing is sent), or a Promise of either (sent when it
// settles, if the listener is still open).
import dgram from 'node:dgram';

export interface UdpPeer {
  /** The client's address as text (IPv6 link-local with `%scope`). */
  readonly address: string;
  readonly port: number;
}

export type DatagramReply = Buffer | null | Promise<Buffer | null>;
export type DatagramHandler = (msg: Buffer, peer: UdpPeer) => DatagramReply;
/**
 * A transport that reads into buffers of its own may first offer a datagram
 * where it lies, buf[off, off+len), with room for the reply at out[at,
 * at+room): the reply's length when it was written there, or -1 to have the
 * datagram go to the handler as a Buffer of its own. (The resolver's cache
 * hits: nothing copied or allocated per datagram.)
 */
export type InPlaceHandler = (buf: Buffer, off: number, len: number, address: string, out: Buffer, at: number, room: number) => number;

export interface UdpListenOptions {
  host: string;
  /** 0: the kernel picks. */
  port: number;
  handler: DatagramHandler;
  /** Tried first by transports with buffers of their own (recvmmsg); dgram does not. */
  inPlace?: InPlaceHandler;
  /** A socket error that did not stop the listener (logged by the caller). */
  onError: (e: Error) => void;
  /** SO_RCVBUF / SO_SNDBUF: bursts of queries wait here while the process works. */
  bufferBytes: number;
}

export interface DatagramListener {
  readonly port: number;
  /** Stops reading; resolves once the port is free again. */
  close(): Promise<void>;
}

export interface UdpTransport {
  readonly name: string;
  /** Rejects with an Error whose `code` is the errno name (EADDRINUSE...). */
  listen(o: UdpListenOptions): Promise<DatagramListener>;
}

/** Node's dgram: the portable transport (and the fallback where koffi cannot load libc). */
export const dgramTransport: UdpTransport = {
  name: 'dgram',
  async listen(o: UdpListenOptions): Promise<DatagramListener> {
    const v6 = o.host.includes(':');
    const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, recvBufferSize: o.bufferBytes, sendBufferSize: o.bufferBytes });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', (e) => {
        sock.close();
        reject(e);
      });
      sock.bind({ address: o.host, port: o.port, exclusive: true }, () => resolve());
    });
    sock.removeAllListeners('error');
    sock.on('error', (e) => o.onError(e));
    let open = true;
    sock.on('message', (msg, rinfo) => {
      let out;
      try {
        out = o.handler(msg, rinfo);
      } catch (e) {
        o.onError(e as Error); // one bad datagram must not take the resolver down
        return;
      }
      if (out === null) return;
      if (!(out instanceof Promise)) {
        sock.send(out, rinfo.port, rinfo.address);
        return;
      }
      // The listener may have closed meanwhile (stop, rebind): send() would throw.
      out.then(
        (b) => {
          if (b !== null && open) sock.send(b, rinfo.port, rinfo.address, () => {});
        },
        (e: unknown) => o.onError(e as Error),
      );
    });
    return {
      port: sock.address().port,
      close: () =>
        new Promise<void>((resolve) => {
          if (!open) return resolve();
          open = false;
          sock.close(() => resolve());
        }),
    };
  },
};
