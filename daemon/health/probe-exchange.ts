// DNS probes over one long-lived UDP socket per path and family (issue 17:
// a router's CPU). Before, every probe of every resolver made a fresh
// marked socket (socket, bind, the fd lookup, setsockopt, close, and a
// libuv handle to open and tear down): 5 to 7 a second with 4 gateways and
// the breakout probed every second, a good part of the idle daemon's CPU.
//
// One socket serves every round of its path: each query gets an ID no other
// query in flight or recently sent on that socket has, and an answer counts
// only for the query it answers (the server asked, that ID, the same
// question). An answer to an older round (one that already timed out) finds
// nothing waiting under its ID and is dropped: it cannot count for a newer
// round. Hedged rounds (monitor.ts) are simply two queries in flight.
//
// The socket carries the path's mark (or, without native code, a port of
// the path's range: port-sockets.ts) from its first packet. A datagram is
// routed when it is sent, so an unconnected socket follows breakout to
// another WAN link. A socket is replaced when the path's mark changes (a
// reload gave the gateway another slot), when a send fails (ENETUNREACH
// while an interface is gone, EACCES under a prohibit route: the next round
// starts clean) or when it errors or closes; one no round used for a while
// is closed at the next exchange (no timer of its own).
//
// Timing is the forwarder's (lib/deadline.ts, sys/rx-stamp-linux.ts): the
// round trip ends at the answer's kernel receive time, and a timeout
// says how late its timer fired. DoT, DoH and a truncated answer's TCP retry
// go to `fallback` (the health forwarder).
import type dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import type { PathName, Upstream } from '../../config/types.js';
import { deadline, TimeoutError, type Deadline } from '../../lib/deadline.js';
import { enableRxStamps, queuedMs } from '../../sys/rx-stamp-linux.js';
import { answers, type Exchange, type ExchangeOptions, type PathDialer, type Question } from '../../dns/forwarder.js';

/** IDs sent on a socket that are not handed out again this soon (an old round's late answer must find no new query under its ID). */
const RECENT_IDS = 1024;
/** A socket no exchange used for this long is closed (a gateway removed by a reload, a family no longer asked). */
const IDLE_CLOSE_MS = 60_000;

export type ExchangeFn = (query: Buffer, q: Question, u: Upstream, path: PathName, o?: ExchangeOptions) => Promise<Exchange>;

export interface ProbeExchangeOptions {
  dialer: PathDialer;
  /** Everything that is not one UDP datagram each way: DoT, DoH, TCP after a truncated answer. */
  fallback: ExchangeFn;
  /** The mark a path's sockets carry now (MarkedDialer.markOf); a socket made for another one is replaced. */
  markOf?: (path: PathName) => number;
  /** health.timeout, read at each exchange (a reload changes it). */
  timeoutMs: () => number;
  /** Sends without dgram's send path (UdpPoolOptions.send: the same contract). Absent: dgram. */
  send?: (sock: dgram.Socket, msg: Buffer, port: number, host: string) => boolean;
}

interface Waiting {
  host: string;
  port: number;
  q: Question;
  sentAt: number;
  /** The old timing (bench health-load's peer): the round trip ends when the answer is read. */
  naive: boolean;
  timer: Deadline;
  resolve(e: Exchange): void;
  reject(e: Error): void;
}

interface Shared {
  key: string;
  mark: number | null;
  sock: dgram.Socket;
  stamped: boolean;
  waiting: Map<number, Waiting>;
  /** IDs sent lately, oldest first (a ring of RECENT_IDS). */
  recent: number[];
  recentSet: Set<number>;
  lastUsed: number;
  retired: boolean;
}

export class ProbeExchange {
  /** The socket of each path and family; `opening`: one being made (rounds that ask meanwhile wait for it). */
  private readonly sockets = new Map<string, Shared>();
  private readonly opening = new Map<string, Promise<Shared>>();
  private closed = false;
  /** Sockets opened since start (tests). */
  opened = 0;

  constructor(private readonly o: ProbeExchangeOptions) {}

  exchange: ExchangeFn = async (query, q, u, path, x = {}) => {
    if (u.kind !== 'plain') return this.o.fallback(query, q, u, path, x);
    const family = u.host.includes(':') ? 6 : 4;
    const r = await this.udp(await this.socket(path, family), query, q, u.host, u.port, x.naive ?? false).catch(async (e: NodeJS.ErrnoException) => {
      // Closed under us (its 'close' event comes a tick later): once more, on a new socket.
      if (e.code !== 'ERR_SOCKET_DGRAM_NOT_RUNNING') throw e;
      return this.udp(await this.socket(path, family), query, q, u.host, u.port, x.naive ?? false);
    });
    // A truncated answer: the question again over TCP (the forwarder's, a fresh connection).
    return (r.resp[2]! & 0x02) !== 0 ? this.o.fallback(query, q, u, path, x) : r;
  };

  close(): void {
    this.closed = true;
    for (const s of [...this.sockets.values()]) this.retire(s, new Error('the probes stopped'));
  }

  private async socket(path: PathName, family: 4 | 6): Promise<Shared> {
    if (this.closed) throw new Error('the probes stopped');
    const now = performance.now();
    this.closeIdle(now);
    const key = `${path}/${family}`;
    const mark = this.o.markOf ? this.o.markOf(path) : null; // throws for a path with no mark now, as a dial would
    const have = this.sockets.get(key);
    if (have && have.mark === mark) {
      have.lastUsed = now;
      return have;
    }
    if (have) this.retire(have, null);
    const pending = this.opening.get(key);
    if (pending) return pending;
    const made = this.open(key, path, family, mark).finally(() => this.opening.delete(key));
    this.opening.set(key, made);
    return made;
  }

  private async open(key: string, path: PathName, family: 4 | 6, mark: number | null): Promise<Shared> {
    const sock = await this.o.dialer.udp(path, family);
    this.opened++;
    const s: Shared = { key, mark, sock, stamped: enableRxStamps(sock), waiting: new Map(), recent: [], recentSet: new Set(), lastUsed: performance.now(), retired: false };
    sock.on('message', (resp, rinfo) => {
      // The kernel's receive stamp of this very datagram: read before anything else runs.
      const queued = s.stamped ? queuedMs(sock) : null;
      if (resp.length < 12) return;
      const id = resp.readUInt16BE(0);
      const w = s.waiting.get(id);
      // Only the server asked, with that ID and question (anything else is stray or spoofed).
      if (!w || rinfo.port !== w.port || rinfo.address.replace(/^::ffff:/, '') !== w.host || !answers(resp, id, w.q)) return;
      s.waiting.delete(id);
      w.timer.cancel();
      w.resolve({ resp, rttMs: Math.max(0, performance.now() - (w.naive ? 0 : (queued ?? 0)) - w.sentAt) });
      if (s.retired) this.release(s);
    });
    sock.on('error', (e) => this.retire(s, e));
    sock.on('close', () => this.retire(s, new Error('the probe socket closed')));
    if (this.closed) {
      this.retire(s, new Error('the probes stopped'));
      throw new Error('the probes stopped');
    }
    this.sockets.set(key, s);
    return s;
  }

  private udp(s: Shared, query: Buffer, q: Question, host: string, port: number, naive: boolean): Promise<Exchange> {
    return new Promise<Exchange>((resolve, reject) => {
      const id = this.freshId(s);
      const msg = Buffer.from(query);
      msg.writeUInt16BE(id, 0);
      const ms = this.o.timeoutMs();
      const fail = (e: Error): void => {
        if (s.waiting.get(id) !== w) return;
        s.waiting.delete(id);
        w.timer.cancel();
        reject(e);
        if (s.retired) this.release(s);
      };
      const w: Waiting = {
        host,
        port,
        q,
        sentAt: 0,
        naive,
        timer: deadline(ms, (e) => fail(new TimeoutError(`no answer in ${ms} ms`, e.lateMs)), { naive }),
        resolve,
        reject,
      };
      s.waiting.set(id, w);
      w.sentAt = performance.now();
      const sent = (e: Error | null | undefined): void => {
        if (!e) return;
        fail(e);
        // The path may have changed under it (an interface gone, a prohibit route): the next round gets a new socket.
        this.retire(s, null);
      };
      try {
        if (this.o.send === undefined || !this.o.send(s.sock, msg, port, host)) s.sock.send(msg, port, host, sent);
      } catch (e) {
        sent(e as Error);
      }
    });
  }

  /** An ID not in flight and not sent lately on this socket. */
  private freshId(s: Shared): number {
    let id = randomInt(0, 0x10000);
    while (s.recentSet.has(id) || s.waiting.has(id)) id = (id + 1) & 0xffff;
    s.recent.push(id);
    s.recentSet.add(id);
    if (s.recent.length > RECENT_IDS) s.recentSet.delete(s.recent.shift()!);
    return id;
  }

  /**
   * No new query goes out on it. `err`: what failed every query waiting on
   * it (the socket itself errored or closed); null: they keep waiting for
   * their answers or timeouts, and it closes after the last.
   */
  private retire(s: Shared, err: Error | null): void {
    if (!s.retired) {
      s.retired = true;
      if (this.sockets.get(s.key) === s) this.sockets.delete(s.key);
    }
    if (err) {
      for (const [id, w] of s.waiting) {
        s.waiting.delete(id);
        w.timer.cancel();
        w.reject(err);
      }
    }
    this.release(s);
  }

  private release(s: Shared): void {
    if (s.waiting.size > 0) return;
    s.sock.removeAllListeners('close');
    try {
      s.sock.close();
    } catch {
      // already closed
    }
  }

  private closeIdle(now: number): void {
    for (const s of this.sockets.values()) if (s.waiting.size === 0 && now - s.lastUsed > IDLE_CLOSE_MS) this.retire(s, null);
  }
}
