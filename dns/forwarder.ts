// Forwards a question to a path's resolvers, in order, and returns the first
// good answer. Plain upstreams: UDP from a pool of long-lived sockets on
// random ports (udp-pool.ts: why, and what it keeps of spoofing resistance)
// with a random ID, answers matched to the question (a spoofed or stray
// packet is ignored, not taken), TCP when the answer is truncated. Encrypted
// upstreams: DoH (RFC 8484, POST, undici) and DoT (RFC 7858). The sockets
// come from a PathDialer, so every query leaves through the path it belongs
// to (the daemon marks them; tests pass plain loopback sockets).
//
// Timeouts judge the upstream, not this process (lib/deadline.ts): an
// answer that arrived in time is taken even when a busy event loop reads
// it after the timer fired. exchange() (health probes) also measures the
// round trip to the answer's kernel receive time.
import { randomInt } from 'node:crypto';
import type dgram from 'node:dgram';
import { isIP, type default as net } from 'node:net';
import tls from 'node:tls';
import type { Agent } from 'undici';
import { undici } from '../lib/undici-lazy.js';
import { deadline, TimeoutError } from '../lib/deadline.js';
import { enableRxStamps, queuedMs } from '../sys/rx-stamp-linux.js';
import type { Logger } from '../lib/logger.js';
import type { PathName, Upstream } from '../config/types.js';
import { matchesQuestion, parseQuery } from './wire.js';
import { UdpPool, type UdpPoolOptions } from './udp-pool.js';

/** Sockets on a path; implemented by the daemon (SO_MARK), plain in tests. */
export interface PathDialer {
  udp(path: PathName, family: 4 | 6): Promise<dgram.Socket>;
  tcp(path: PathName, host: string, port: number, timeoutMs: number): Promise<net.Socket>;
  /**
   * What a UDP socket of `path` is tied to now (the daemon: its mark), so
   * upstream sockets are shared only by queries that would get the same
   * socket (`tunnel` after a failover gets the new gateway's). Throws when
   * the path cannot be dialled now. Without it, sockets are shared per path.
   */
  routeOf?(path: PathName): string;
}

export class UpstreamError extends Error {
  readonly code = 'SPLITWAN_DNS_UPSTREAM';
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** The question a query asks, as the forwarder needs it to match answers (a ParsedQuery fits). */
export interface Question {
  /** Lower case, no trailing dot, special bytes escaped as wire.ts does. */
  qname: string;
  qtype: number;
  qclass: number;
}

/** The question of a query; null when it is not a well-formed query. */
export function readQuestion(msg: Buffer): Question | null {
  const q = parseQuery(msg);
  return 'error' in q ? null : { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
}

/**
 * Whom the certificate must name: a host name goes in SNI; an IP address is
 * checked against the certificate's IP SANs but not sent as SNI (RFC 6066
 * forbids it, and Node warns).
 */
function tlsName(name: string): { servername: string } | { host: string } {
  return isIP(name) === 0 ? { servername: name } : { host: name };
}

function withId(msg: Buffer, id: number): Buffer {
  const b = Buffer.from(msg);
  b.writeUInt16BE(id, 0);
  return b;
}

/** `resp` (a buffer of its own: every exchange returns one) with the client's ID, in place. */
function ownId(resp: Buffer, id: number): Buffer {
  resp.writeUInt16BE(id, 0);
  return resp;
}

/** Is `resp` the answer to `q` sent with `id`? (ID, QR bit, the same question.) */
export function answers(resp: Buffer, id: number, q: Question): boolean {
  return matchesQuestion(resp, { id, qname: q.qname, qtype: q.qtype, qclass: q.qclass });
}

const isTruncated = (resp: Buffer): boolean => (resp[2]! & 0x02) !== 0;

/**
 * How one upstream exchange ended, for metrics: an answer ('ok': NOERROR,
 * NXDOMAIN and the rest), an answer that is the upstream failing or
 * declining ('servfail', 'refused'; 'formerr', 'notimp': it could not take
 * our query), or none ('failed': timeout, network error, no matching answer).
 */
export type UpstreamResult = 'ok' | 'servfail' | 'refused' | 'formerr' | 'notimp' | 'failed';

const RESULT_OF_RCODE: Readonly<Record<number, UpstreamResult>> = { 1: 'formerr', 2: 'servfail', 4: 'notimp', 5: 'refused' };

/** The result an answer with this header counts as. */
export function resultOf(resp: Buffer): UpstreamResult {
  return RESULT_OF_RCODE[resp[3]! & 0xf] ?? 'ok';
}

export interface ForwarderOptions {
  dialer: PathDialer;
  logger: Logger;
  /** Per upstream, before the next is tried. */
  timeoutMs: number;
  /** Extra TLS options for DoH/DoT (tests: a private CA). */
  tls?: tls.ConnectionOptions;
  /** Every upstream exchange, for metrics: seconds taken and how it ended. */
  observe?: (o: { upstream: string; path: PathName; seconds: number; result: UpstreamResult }) => void;
  /** The upstream socket pool's bounds (udp-pool.ts; tests make them small). */
  pool?: UdpPoolOptions;
}

/** A probe's exchange with one resolver: the answer and its round trip. */
export interface Exchange {
  resp: Buffer;
  /** ms from the query leaving to the answer arriving (the kernel's receive time over plain UDP). */
  rttMs: number;
}

export interface ExchangeOptions {
  /**
   * The timing every query had before: the timer's own callback fails the
   * query, the round trip ends when the answer is read. Only for the
   * benchmark that compares the two.
   */
  naive?: boolean;
}

export class Forwarder {
  private readonly agents = new Map<PathName, Agent>();
  private timeoutMs: number;
  /** Client queries' UDP sockets (probes' exchange() dials its own: it times the kernel's receive). */
  readonly pool: UdpPool;

  constructor(private readonly o: ForwarderOptions) {
    this.timeoutMs = o.timeoutMs;
    this.pool = new UdpPool(o.pool);
  }

  /** A reload's `dns.timeout` (or `health.timeout`): queries from now on wait this long per upstream. */
  setTimeoutMs(ms: number): void {
    if (ms === this.timeoutMs) return;
    this.timeoutMs = ms;
    this.closeAgents(); // DoH agents dial with the timeout they were made with
  }

  /**
   * Asks `upstreams` in order through `path`; resolves with the answer (its
   * ID set back to the client query's), or rejects when every one failed.
   */
  async forward(query: Buffer, q: Question, upstreams: readonly Upstream[], path: PathName): Promise<Buffer> {
    const clientId = query.readUInt16BE(0);
    const problems: string[] = [];
    let refusal: Buffer | null = null;
    for (const u of upstreams) {
      const t0 = this.o.observe ? performance.now() : 0;
      try {
        const resp = await this.ask(query, q, u, path);
        const result = resultOf(resp);
        this.o.observe?.({ upstream: u.text, path, seconds: (performance.now() - t0) / 1000, result });
        // A resolver that cannot or will not answer: the next may; its answer is kept for when none can.
        if (result === 'servfail' || result === 'refused') {
          refusal ??= ownId(resp, clientId);
          problems.push(`${u.text}: ${result.toUpperCase()}`);
          continue;
        }
        return ownId(resp, clientId);
      } catch (e) {
        this.o.observe?.({ upstream: u.text, path, seconds: (performance.now() - t0) / 1000, result: 'failed' });
        problems.push(`${u.text}: ${(e as Error).message}`);
        this.o.logger.debug({ upstream: u.text, path, err: (e as Error).message }, 'upstream failed');
      }
    }
    if (refusal !== null) return refusal;
    throw new UpstreamError(`no upstream answered ${q.qname} via ${path}: ${problems.join('; ') || 'no upstreams'}`);
  }

  /**
   * One exchange with one resolver through `path`, for a health probe: the
   * answer as it came (any rcode: the caller judges it), and its round
   * trip. Rejects on no answer in time (a TimeoutError, with how late its
   * timer fired) or a socket error.
   */
  async exchange(query: Buffer, q: Question, u: Upstream, path: PathName, o: ExchangeOptions = {}): Promise<Exchange> {
    const id = randomInt(0, 0x10000);
    const started = performance.now();
    const timed = async (p: Promise<Buffer>): Promise<Exchange> => {
      const resp = await p;
      return { resp, rttMs: performance.now() - started };
    };
    switch (u.kind) {
      case 'plain': {
        const r = await this.udp(withId(query, id), id, q, u.host, u.port, path, o.naive ? 'naive' : 'kernel');
        return isTruncated(r.resp) ? timed(this.tcp(withId(query, id), id, q, u.host, u.port, path, undefined, o.naive)) : r;
      }
      case 'tls':
        return timed(this.tcp(withId(query, id), id, q, u.host, u.port, path, u.servername, o.naive));
      case 'doh':
        return timed(this.doh(query, q, u.url, path));
    }
  }

  close(): void {
    this.closeAgents();
    this.pool.close();
  }

  private closeAgents(): void {
    for (const a of this.agents.values()) void a.close();
    this.agents.clear();
  }

  private async ask(query: Buffer, q: Question, u: Upstream, path: PathName): Promise<Buffer> {
    switch (u.kind) {
      case 'plain': {
        const resp = await this.pooled(query, q, u.host, u.port, path);
        if (!isTruncated(resp)) return resp;
        const id = randomInt(0, 0x10000);
        return this.tcp(withId(query, id), id, q, u.host, u.port, path);
      }
      case 'tls': {
        const id = randomInt(0, 0x10000);
        return this.tcp(withId(query, id), id, q, u.host, u.port, path, u.servername);
      }
      case 'doh':
        return this.doh(query, q, u.url, path);
    }
  }

  /** One UDP exchange of a client query, from a pool socket of the path's route. */
  private pooled(query: Buffer, q: Question, host: string, port: number, path: PathName): Promise<Buffer> {
    let route: string;
    try {
      route = this.o.dialer.routeOf?.(path) ?? path;
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const family = host.includes(':') ? 6 : 4;
    const x = this.pool.exchange(`${route}|${family}`, () => this.o.dialer.udp(path, family), Buffer.from(query), host, port, (resp, id) => answers(resp, id, q));
    return new Promise<Buffer>((resolve, reject) => {
      const timer = deadline(this.timeoutMs, (e) => {
        x.cancel();
        reject(new TimeoutError(`no answer in ${this.timeoutMs} ms`, e.lateMs));
      });
      x.answer.then(
        (resp) => {
          timer.cancel();
          resolve(resp);
        },
        (e: unknown) => {
          timer.cancel();
          reject(e as Error);
        },
      );
    });
  }

  /**
   * One UDP exchange. `timing`: 'event' (client queries: the round trip is
   * not needed), 'kernel' (probes: to the kernel's receive time of the
   * answer), 'naive' (the old timing, for the benchmark's comparison).
   */
  private async udp(msg: Buffer, id: number, q: Question, host: string, port: number, path: PathName, timing: 'event' | 'kernel' | 'naive'): Promise<Exchange> {
    const sock = await this.o.dialer.udp(path, host.includes(':') ? 6 : 4);
    const stamped = timing === 'kernel' && enableRxStamps(sock);
    return new Promise<Exchange>((resolve, reject) => {
      let sentAt = 0;
      const timer = deadline(this.timeoutMs, (e) => done(new TimeoutError(`no answer in ${this.timeoutMs} ms`, e.lateMs)), { naive: timing === 'naive' });
      const done = (err: Error | null, resp?: Buffer, rttMs = 0): void => {
        timer.cancel();
        sock.removeAllListeners('message');
        sock.close();
        if (err) reject(err);
        else resolve({ resp: resp!, rttMs });
      };
      // Only the answer from that server, with that ID and question, counts;
      // anything else on the socket is ignored (anti-spoofing).
      sock.on('message', (resp, rinfo) => {
        if (!(rinfo.port === port && rinfo.address.replace(/^::ffff:/, '') === host && answers(resp, id, q))) return;
        // Arrival: now, less the time the answer waited in the kernel for a busy loop to read it.
        const arrivedAt = performance.now() - ((stamped ? queuedMs(sock) : null) ?? 0);
        done(null, resp, Math.max(0, arrivedAt - sentAt));
      });
      sock.on('error', (e) => done(e));
      // Node sends an address literal's datagram a tick later, before the loop can be held up.
      sentAt = performance.now();
      sock.send(msg, port, host, (e) => {
        if (e) done(e);
      });
    });
  }

  private async tcp(msg: Buffer, id: number, q: Question, host: string, port: number, path: PathName, servername?: string, naive = false): Promise<Buffer> {
    let sock: net.Socket = await this.o.dialer.tcp(path, host, port, this.timeoutMs);
    if (servername !== undefined) sock = await this.tlsOver(sock, servername);
    return new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const timer = deadline(this.timeoutMs, (e) => done(new TimeoutError(`no answer in ${this.timeoutMs} ms`, e.lateMs)), { naive });
      const done = (err: Error | null, resp?: Buffer): void => {
        timer.cancel();
        sock.destroy();
        if (err) reject(err);
        else resolve(resp!);
      };
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const resp = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + resp.length);
          if (answers(resp, id, q)) return done(null, Buffer.from(resp));
        }
        if (buf.length > 65537) done(new Error('oversized TCP answer'));
      });
      sock.on('error', (e) => done(e));
      sock.on('end', () => done(new Error('connection closed without an answer')));
      const len = Buffer.alloc(2);
      len.writeUInt16BE(msg.length);
      sock.write(Buffer.concat([len, msg]));
    });
  }

  private tlsOver(socket: net.Socket, servername: string): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const t = tls.connect({ ...this.o.tls, socket, ...tlsName(servername), ALPNProtocols: ['dot'] }, () => resolve(t));
      t.once('error', reject);
    });
  }

  /** DoH POST; the connection comes from the dialer, so it takes the path too. */
  private async doh(query: Buffer, q: Question, url: string, path: PathName): Promise<Buffer> {
    const { Agent, request } = await undici();
    let agent = this.agents.get(path);
    if (!agent) {
      const dialer = this.o.dialer;
      const timeoutMs = this.timeoutMs;
      const extra = this.o.tls ?? {};
      agent = new Agent({
        connect: (opts, cb) => {
          const host = opts.hostname.replace(/^\[|\]$/g, '');
          // The dialer takes addresses: resolving the resolver's own name would need a resolver.
          if (isIP(host) === 0) return cb(new Error(`DoH host ${host} must be an IP address (e.g. https://1.1.1.1/dns-query)`), null);
          const port = Number(opts.port) || 443;
          const servername = opts.servername ?? host;
          dialer
            .tcp(path, host, port, timeoutMs)
            .then((socket) => {
              const t = tls.connect({ ...extra, socket, ...tlsName(servername), ALPNProtocols: ['http/1.1'] }, () => cb(null, t));
              t.once('error', (e) => cb(e, null));
            })
            .catch((e: Error) => cb(e, null));
        },
      });
      this.agents.set(path, agent);
    }
    // RFC 8484: ID 0 in DoH for cache friendliness.
    const body = withId(query, 0);
    const res = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/dns-message', accept: 'application/dns-message' },
      body,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const resp = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`DoH HTTP ${res.statusCode}`);
    if (!answers(resp, 0, q)) throw new Error('DoH answer does not match the question');
    return resp;
  }
}
