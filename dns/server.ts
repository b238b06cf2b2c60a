// The resolver's socket shell: UDP and TCP on every listen address, an ACL
// in front, bytes handed to the handler (resolver.ts) and its bytes sent
// back. Nothing here parses DNS beyond the 12-byte header needed to refuse
// or drop.
//
// Limits (RFC 7766 for TCP): idle connections close after `tcpIdleMs`; at most
// `tcpMaxConnections` at once; per connection at most `tcpMaxPipelined`
// queries in flight (reading pauses, it does not fail); a client that stops
// reading its answers is disconnected once `tcpMaxUnread` bytes wait. Queries
// in flight upstream, UDP and TCP together, are bounded by `maxInflight`;
// beyond it new UDP queries are dropped (the client retries) and TCP
// connections stop being read until one settles, rather than anything being
// queued without bound. The ACL is checked when a TCP connection is accepted:
// an outsider's is reset at once and holds no slot.
import net from 'node:net';
import type { Logger } from '../lib/logger.js';
import { RCODE, errorAnswer } from './wire.js';
import type { Client } from './resolver.js';
import type { DatagramListener, UdpPeer, UdpTransport } from './udp.js';
import { defaultUdpTransport } from './udp-mmsg-linux.js';

export interface DnsHandler {
  handle(msg: Buffer, client: Client): Buffer | null | Promise<Buffer | null>;
  /**
   * Optional: a UDP query answered where it lies (the resolver's cache hits,
   * Resolver.answerHit): the answer's length written at out[at], or -1 for
   * handle(). Only for clients the ACL admits; `client` is its address (for the query log).
   */
  answerHit?(buf: Uint8Array, off: number, len: number, out: Uint8Array, at: number, room: number, client: string): number;
}

export interface DnsServerOptions {
  handler: DnsHandler;
  /** Whether a client address may ask (others get REFUSED over UDP; their TCP connections are reset). */
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
  /** UDP queries dropped because `maxInflight` were pending. */
  overload: number;
  /** Times a TCP connection stopped being read because `maxInflight` were pending. */
  tcpWaits: number;
  tcpConnections: number;
  /** TCP connections from addresses the ACL excludes, reset when accepted. */
  tcpRefused: number;
  errors: number;
}

const QR = 0x80;

export class DnsServer {
  private readonly udp: DatagramListener[] = [];
  private readonly transport: UdpTransport;
  private readonly tcp: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();
  /** Queries whose answer is pending (UDP and TCP): at most maxInflight. */
  private inflight = 0;
  /** TCP connections waiting for inflight to drop below maxInflight, oldest first: each one's wake-up. */
  private readonly waiting = new Set<() => void>();
  private readonly idleMs: number;
  private readonly maxConns: number;
  private readonly maxPipelined: number;
  private readonly maxUnread: number;
  private readonly maxInflight: number;
  readonly stats: DnsServerStats = { udpQueries: 0, tcpQueries: 0, refused: 0, dropped: 0, overload: 0, tcpWaits: 0, tcpConnections: 0, tcpRefused: 0, errors: 0 };

  constructor(private readonly o: DnsServerOptions) {
    this.idleMs = o.tcpIdleMs ?? 10_000;
    this.maxConns = o.tcpMaxConnections ?? 256;
    this.maxPipelined = o.tcpMaxPipelined ?? 32;
    this.maxUnread = o.tcpMaxUnread ?? 1 << 20;
    this.maxInflight = o.maxInflight ?? 4096;
    this.transport = o.udp ?? defaultUdpTransport(process.env, { logger: o.logger });
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
      return errorAnswer(msg, RCODE.REFUSED);
    }
    try {
      return this.o.handler.handle(msg, client);
    } catch (e) {
      // The handler promises not to throw; if it does, the client still gets an answer.
      this.stats.errors++;
      this.o.logger.error({ err: e }, 'DNS handler threw');
      return errorAnswer(msg, RCODE.SERVFAIL);
    }
  }

  /** A pending answer settled: one more may be in flight; connections waiting for that are read again, oldest first. */
  private release(): void {
    this.inflight--;
    for (const wake of this.waiting) {
      if (this.inflight >= this.maxInflight) break;
      this.waiting.delete(wake);
      wake();
    }
  }

  private onDatagramInPlace(buf: Buffer, off: number, len: number, address: string, out: Buffer, at: number, room: number): number {
    const h = this.o.handler;
    // Outsiders, responses and the rest get their answer (or none) from the full path.
    if (h.answerHit === undefined || !this.o.allows(address)) return -1;
    const n = h.answerHit(buf, off, len, out, at, room, address);
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
        this.release();
        return b;
      },
      (e: unknown) => {
        this.release();
        this.stats.errors++;
        this.o.logger.error({ err: e }, 'DNS handler rejected');
        return null;
      },
    );
  }

  private onConnection(c: net.Socket): void {
    const address = (c.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
    c.on('error', () => c.destroy());
    if (!this.o.allows(address)) {
      // An outsider's connection is reset before anything is read: answering
      // REFUSED would keep it open, and with it one of tcpMaxConnections, for
      // as long as the outsider likes. RST rather than FIN: no TIME_WAIT here.
      this.stats.tcpRefused++;
      c.resetAndDestroy();
      return;
    }
    this.stats.tcpConnections++;
    this.conns.add(c);
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    let ended = false;
    /** Not read until the server has room for another query in flight (its wake-up is in this.waiting). */
    let blocked = false;
    // Idle means nothing in flight or waiting either: a slow upstream is not the client's idleness.
    c.setTimeout(this.idleMs, () => {
      if (pending === 0 && !blocked) c.destroy();
    });
    c.on('close', () => {
      this.conns.delete(c);
      this.waiting.delete(wake);
    });
    c.on('end', () => {
      ended = true;
      if (pending === 0 && !blocked) c.end();
    });
    /** Take more queries; after the client's FIN, close once all are answered. */
    const next = (): void => {
      pump();
      if (ended && pending === 0 && !blocked) c.end();
    };
    const wake = (): void => {
      blocked = false;
      next();
    };
    const send = (b: Buffer): void => {
      if (c.destroyed) return;
      const len = Buffer.allocUnsafe(2);
      len.writeUInt16BE(b.length);
      c.write(Buffer.concat([len, b]));
      // A client that never reads its answers does not get to fill our memory.
      if (c.writableLength > this.maxUnread) c.destroy();
    };
    const settled = (): void => {
      this.release();
      pending--;
      next();
    };
    const pump = (): void => {
      while (!blocked && buf.length >= 2 && pending < this.maxPipelined) {
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) break;
        if (this.inflight >= this.maxInflight) {
          // The server has all the queries in flight it takes: this
          // connection waits, unread, until one settles (a TCP client does
          // not retry a dropped query as a UDP client does).
          blocked = true;
          this.stats.tcpWaits++;
          this.waiting.add(wake);
          break;
        }
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
        this.inflight++;
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
      // Pipelining at its limit, or no room in flight: stop reading until answers go out.
      if (blocked || pending >= this.maxPipelined) c.pause();
      else if (c.isPaused()) c.resume();
    };
    c.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      pump();
    });
  }
}
