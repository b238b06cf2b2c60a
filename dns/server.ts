// The resolver's socket shell: UDP and TCP on every listen address, an ACL
// in front, bytes handed to the handler (resolver.ts) and its bytes sent
// back. Nothing here parses DNS beyond the 12-byte header needed to refuse
// or drop.
//
// Limits (RFC 7766 for TCP): idle connections close after `tcpIdleMs`; at most
// `tcpMaxConnections` at once; per connection at most `tcpMaxPipelined`
// queries in flight (reading pauses, it does not fail); a client that stops
// reading its answers is disconnected once `tcpMaxUnread` bytes wait. UDP
// queries in flight upstream are bounded by `maxInflight`; beyond it new
// queries are dropped (the client retries) rather than queued without bound.
import net from 'node:net';
import type { Logger } from '../lib/logger.js';
import { RCODE, buildError, parseQuery, questionBytes } from './wire.js';
import type { Client } from './resolver.js';
import type { DatagramListener, UdpPeer, UdpTransport } from './udp.js';
import { defaultUdpTransport } from './udp-mmsg-linux.js';

export interface DnsHandler {
  handle(msg: Buffer, client: Client): Buffer | null | Promise<Buffer | null>;
  /**
   * Optional: a UDP query answered where it lies (the resolver's cache hits,
   * Resolver.answerHit): the answer's length written at out[at], or -1 for
   * handle(). Only for clients the ACL admits.
   */
  answerHit?(buf: Uint8Array, off: number, len: number, out: Uint8Array, at: number, room: number): number;
}

export interface DnsServerOptions {
  handler: DnsHandler;
  /** Whether a client address may ask (others get REFUSED). */
  allows: (address: string) => boolean;
  logger: Logger;
  tcpIdleMs?: number;
  tcpMaxConnections?: number;
  tcpMaxPipelined?: number;
  tcpMaxUnread?: number;
  maxInflight?: number;
  /** How datagrams are read and written (udp.ts); default: batched on Linux. */
  udp?: UdpTransport;
}

export interface ListenAddress {
  host: string;
  port: number;
}

export class ListenError extends Error {
  readonly code = 'SPLITWAN_DNS_LISTEN';
  constructor(message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

export interface DnsServerStats {
  udpQueries: number;
  tcpQueries: number;
  refused: number;
  dropped: number;
  /** Queries dropped because `maxInflight` were pending. */
  overload: number;
  tcpConnections: number;
  errors: number;
}

const QR = 0x80;

export class DnsServer {
  private readonly udp: DatagramListener[] = [];
  private readonly transport: UdpTransport;
  private readonly tcp: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();
  private inflight = 0;
  private readonly idleMs: number;
  private readonly maxConns: number;
  private readonly maxPipelined: number;
  private readonly maxUnread: number;
  private readonly maxInflight: number;
  readonly stats: DnsServerStats = { udpQueries: 0, tcpQueries: 0, refused: 0, dropped: 0, overload: 0, tcpConnections: 0, errors: 0 };

  constructor(private readonly o: DnsServerOptions) {
    this.idleMs = o.tcpIdleMs ?? 10_000;
    this.maxConns = o.tcpMaxConnections ?? 256;
    this.maxPipelined = o.tcpMaxPipelined ?? 32;
    this.maxUnread = o.tcpMaxUnread ?? 1 << 20;
    this.maxInflight = o.maxInflight ?? 4096;
    this.transport = o.udp ?? defaultUdpTransport();
  }

  /** The UDP transport in use ('recvmmsg' or 'dgram'): the startup log says which. */
  get udpTransport(): string {
    return this.transport.name;
  }

  /** Binds UDP and TCP on each address; resolves with the bound addresses (port 0 → the chosen one, same for both). */
  async listen(addresses: readonly ListenAddress[]): Promise<ListenAddress[]> {
    const bound: ListenAddress[] = [];
    try {
      for (const a of addresses) bound.push(await this.listenOne(a));
    } catch (e) {
      await this.close();
      throw e;
    }
    return bound;
  }

  async close(): Promise<void> {
    const udp = this.udp.splice(0).map((s) => s.close());
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await Promise.all([...udp, ...this.tcp.splice(0).map((s) => new Promise<void>((r) => s.close(() => r())))]);
  }

  private async listenOne(a: ListenAddress): Promise<ListenAddress> {
    // Port 0: the port TCP got may already be someone's UDP port; another pick is as good.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.listenPair(a);
      } catch (e) {
        if (a.port !== 0 || attempt >= 5 || !(e instanceof ListenError) || !e.message.includes('/udp: EADDRINUSE')) throw e;
      }
    }
  }

  private async listenPair(a: ListenAddress): Promise<ListenAddress> {
    const v6 = a.host.includes(':');
    const label = v6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
    // TCP first: with port 0 the kernel picks a port TCP has free, and UDP takes the same one.
    // Half-open: a client may send its queries and FIN; its answers still go out (RFC 7766 §6.2.3).
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (c) => this.onConnection(c));
    server.maxConnections = this.maxConns;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new ListenError(`cannot listen on ${label}/tcp: ${e.code ?? e.message}`)));
      server.listen({ host: a.host, port: a.port, ipv6Only: v6, exclusive: true }, () => resolve());
    });
    server.on('error', (e) => this.o.logger.error({ err: e, address: label }, 'DNS TCP listener failed'));
    this.tcp.push(server);
    const port = (server.address() as net.AddressInfo).port;
    let listener: DatagramListener;
    try {
      listener = await this.transport.listen({
        host: a.host,
        port,
        bufferBytes: 4 << 20,
        handler: (msg, peer) => this.onDatagram(msg, peer),
        inPlace: (buf, off, len, address, out, at, room) => this.onDatagramInPlace(buf, off, len, address, out, at, room),
        onError: (e) => {
          this.stats.errors++;
          this.o.logger.warn({ err: e, address: label }, 'DNS UDP socket error');
        },
      });
    } catch (e) {
      // The TCP half goes too: a retry (port 0) or the caller's error leaves nothing bound.
      this.tcp.splice(this.tcp.indexOf(server), 1);
      server.close();
      const err = e as NodeJS.ErrnoException;
      throw new ListenError(`cannot listen on ${a.host}:${port}/udp: ${err.code ?? err.message}`);
    }
    this.udp.push(listener);
    return { host: a.host, port };
  }

  /**
   * A message every client may get: null to drop it (no header, or a
   * response: answering responses could loop between two resolvers), a
   * REFUSED answer for outsiders, or the handler's answer.
   */
  private answer(msg: Buffer, client: { address: string; tcp: boolean }): Buffer | null | Promise<Buffer | null> {
    if (msg.length < 12 || (msg[2]! & QR) !== 0) {
      this.stats.dropped++;
      return null;
    }
    if (!this.o.allows(client.address)) {
      this.stats.refused++;
      return refused(msg);
    }
    try {
      return this.o.handler.handle(msg, client);
    } catch (e) {
      // The handler promises not to throw; if it does, the client still gets an answer.
      this.stats.errors++;
      this.o.logger.error({ err: e }, 'DNS handler threw');
      return buildError({ id: msg.readUInt16BE(0), rd: (msg[2]! & 1) !== 0 }, RCODE.SERVFAIL);
    }
  }

  private onDatagramInPlace(buf: Buffer, off: number, len: number, address: string, out: Buffer, at: number, room: number): number {
    const h = this.o.handler;
    // Outsiders, responses and the rest get their answer (or none) from the full path.
    if (h.answerHit === undefined || !this.o.allows(address)) return -1;
    const n = h.answerHit(buf, off, len, out, at, room);
    if (n >= 0) this.stats.udpQueries++;
    return n;
  }

  private onDatagram(msg: Buffer, peer: UdpPeer): Buffer | null | Promise<Buffer | null> {
    this.stats.udpQueries++;
    if (this.inflight >= this.maxInflight) {
      this.stats.overload++;
      return null;
    }
    const out = this.answer(msg, { address: peer.address, tcp: false });
    if (!(out instanceof Promise)) return out;
    this.inflight++;
    return out.then(
      (b) => {
        this.inflight--;
        return b;
      },
      (e: unknown) => {
        this.inflight--;
        this.stats.errors++;
        this.o.logger.error({ err: e }, 'DNS handler rejected');
        return null;
      },
    );
  }

  private onConnection(c: net.Socket): void {
    this.stats.tcpConnections++;
    this.conns.add(c);
    const address = (c.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    let ended = false;
    // Idle means nothing in flight either: a slow upstream is not the client's idleness.
    c.setTimeout(this.idleMs, () => {
      if (pending === 0) c.destroy();
    });
    c.on('error', () => c.destroy());
    c.on('close', () => this.conns.delete(c));
    c.on('end', () => {
      ended = true;
      if (pending === 0) c.end();
    });
    /** An answer went out (or failed): take more queries; after the client's FIN, close once all are answered. */
    const settled = (): void => {
      pending--;
      pump();
      if (ended && pending === 0) c.end();
      else if (pending < this.maxPipelined && c.isPaused()) c.resume();
    };
    const send = (b: Buffer): void => {
      if (c.destroyed) return;
      const len = Buffer.allocUnsafe(2);
      len.writeUInt16BE(b.length);
      c.write(Buffer.concat([len, b]));
      // A client that never reads its answers does not get to fill our memory.
      if (c.writableLength > this.maxUnread) c.destroy();
    };
    const pump = (): void => {
      while (buf.length >= 2 && pending < this.maxPipelined) {
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) break;
        const msg = Buffer.from(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
        this.stats.tcpQueries++;
        const out = this.answer(msg, { address, tcp: true });
        if (out === null) continue;
        if (!(out instanceof Promise)) {
          send(out);
          continue;
        }
        pending++;
        void out.then(
          (b) => {
            if (b !== null) send(b);
            settled();
          },
          () => {
            this.stats.errors++;
            settled();
          },
        );
      }
      // Pipelining beyond the limit: stop reading until answers go out.
      if (pending >= this.maxPipelined) c.pause();
    };
    c.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      pump();
    });
  }
}

/** REFUSED with the question echoed when it parses, else the bare header. */
function refused(msg: Buffer): Buffer {
  const q = parseQuery(msg);
  if ('error' in q) return buildError({ id: msg.readUInt16BE(0), rd: (msg[2]! & 1) !== 0 }, RCODE.REFUSED);
  return buildError({ id: q.id, rd: q.rd, question: questionBytes(msg, q) }, RCODE.REFUSED, q.edns ? { do: q.edns.do } : null);
}
