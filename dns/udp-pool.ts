// Upstream UDP sockets kept open and shared by queries, per route (the
// path's mark, or the path) and family.
//
// Why: a socket per query cost more than anything else a miss does in
// Node: dgram's create, bind (with its lookup), the libuv handle, the
// epoll registration, the close and its callbacks, plus socket(2), bind(2),
// epoll_ctl(2) twice and close(2) in the kernel (`bench dns`, perf and
// --cpu-prof: docs/design/footprint.md, "A tagged DNS miss against dnsmasq
// --nftset").
//
// Spoofing resistance (the reason resolvers use a fresh random port per
// query): every query still gets a random 16-bit ID (unique among the
// queries waiting on its socket) and a socket on a random port. A pool has
// up to SLOTS sockets per route and family, each bound by the kernel to a
// random ephemeral port (or, without SO_MARK, to a random port of its path's
// range: daemon/port-sockets.ts); a query picks a slot at random, and a
// socket carries at most MAX_USES queries and lives at most MAX_AGE_MS
// before the slot gets a socket on a new random port. So an off-path
// attacker who does not know our ports must guess port and ID as before
// (~15 + 16 bits); one who learns a port (by making us ask its own server)
// can aim only at the few other queries that socket carries before it is
// retired, and must still guess which socket a query took (1 in SLOTS once
// the pool is full) and its ID. dnsmasq keeps at most 64 random-port
// sockets and shares them under load in the same way (forward.c,
// allocate_rfd); c-ares bounds queries per port (udp_max_queries).
//
// Answers are taken only from the upstream the query went to (address and
// port) with the query's ID and question; anything else is counted as a
// stray and ignored. A socket that reports an error, or whose send fails
// (its path's interface went away: ENETUNREACH, EPERM, EADDRNOTAVAIL...),
// is retired at once: its waiters fail (the forwarder tries the next
// upstream), and its slot gets a new socket from the dialer on the next
// query. Idle sockets are closed after IDLE_MS; pool sockets never keep
// the process alive (unref).
import { randomFillSync } from 'node:crypto';
import type dgram from 'node:dgram';

export interface UdpPoolOptions {
  /** Sockets per route and family (default SLOTS). */
  slots?: number;
  /** Queries a socket carries before its slot gets a new one (default MAX_USES). */
  maxUses?: number;
  /** ms a socket serves new queries at most (default MAX_AGE_MS). */
  maxAgeMs?: number;
  /** ms without a query after which a socket is closed (default IDLE_MS). */
  idleMs?: number;
  /**
   * Sends a datagram without dgram's send path (sys/udp-sendto-linux.ts): true when sent, false to
   * leave it to dgram; throws what the kernel refused. Absent: dgram sends everything.
   */
  send?: (sock: dgram.Socket, msg: Buffer, port: number, host: string) => boolean;
}

export const SLOTS = 64;
export const MAX_USES = 32;
export const MAX_AGE_MS = 30_000;
export const IDLE_MS = 10_000;

/** One query waiting for its answer on a pool socket. */
interface Waiter {
  host: string;
  port: number;
  /** Is `resp` this query's answer (ID, QR, question)? */
  accepts(resp: Buffer): boolean;
  settle(err: Error | null, resp?: Buffer): void;
}

/** Random numbers for IDs and slots from a buffer refilled by the CSPRNG (one call per 2048 draws). */
class Randoms {
  private readonly buf = Buffer.alloc(4096);
  private at = this.buf.length;
  /** A uniform integer in [0, 65536). */
  u16(): number {
    if (this.at >= this.buf.length) {
      randomFillSync(this.buf);
      this.at = 0;
    }
    const v = this.buf.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  /** A uniform integer in [0, n), n ≤ 65536 (rejection sampling: no modulo bias). */
  below(n: number): number {
    const limit = 65536 - (65536 % n);
    for (;;) {
      const v = this.u16();
      if (v < limit) return v % n;
    }
  }
}

class PoolSocket {
  readonly waiting = new Map<number, Waiter>();
  /** Queries given this socket that have not registered their waiter yet (it must not close under them). */
  held = 0;
  uses = 0;
  retired = false;
  lastUsed: number;
  readonly bornAt: number;

  constructor(
    readonly sock: dgram.Socket,
    now: number,
    private readonly onStray: () => void,
    private readonly onBroken: (s: PoolSocket, e: Error) => void,
  ) {
    this.bornAt = now;
    this.lastUsed = now;
    sock.unref();
    sock.on('message', (resp, rinfo) => {
      const w = resp.length >= 12 ? this.waiting.get((resp[0]! << 8) | resp[1]!) : undefined;
      // Only the answer from that server, with that ID and question, counts (anti-spoofing).
      if (w === undefined || rinfo.port !== w.port || !sameHost(rinfo.address, w.host) || !w.accepts(resp)) {
        this.onStray();
        return;
      }
      this.waiting.delete((resp[0]! << 8) | resp[1]!);
      w.settle(null, resp);
      this.closeIfDone();
    });
    sock.on('error', (e) => this.onBroken(this, e));
  }

  /** Retired and nobody waiting: closed. */
  closeIfDone(): void {
    if (this.retired && this.waiting.size === 0 && this.held === 0) {
      try {
        this.sock.close();
      } catch {
        // already closed
      }
    }
  }
}

/** rinfo.address against the upstream's address as configured (a v4-mapped form on a dual-stack socket counts). */
function sameHost(got: string, want: string): boolean {
  return got === want || (got.startsWith('::ffff:') && got.slice(7) === want);
}

export interface PoolStats {
  /** Sockets opened (from the dialer). */
  opened: number;
  /** Sockets retired: used up, too old, idle or broken. */
  retired: number;
  /** Of which broken (an error or a failed send). */
  broken: number;
  /** Datagrams ignored: no query waits for that ID there, the wrong sender, or not the question asked. */
  stray: number;
}

type Slot = PoolSocket | Promise<PoolSocket> | undefined;

export class UdpPool {
  private readonly routes = new Map<string, Slot[]>();
  private readonly rnd = new Randoms();
  private readonly slots: number;
  private readonly maxUses: number;
  private readonly maxAgeMs: number;
  private readonly idleMs: number;
  private readonly send: UdpPoolOptions['send'];
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;
  readonly stats: PoolStats = { opened: 0, retired: 0, broken: 0, stray: 0 };

  constructor(o: UdpPoolOptions = {}) {
    this.slots = Math.max(1, Math.min(1024, o.slots ?? SLOTS));
    this.maxUses = Math.max(1, o.maxUses ?? MAX_USES);
    this.maxAgeMs = o.maxAgeMs ?? MAX_AGE_MS;
    this.idleMs = o.idleMs ?? IDLE_MS;
    this.send = o.send;
  }

  /** Sockets open now (for tests and status). */
  get size(): number {
    let n = 0;
    for (const slots of this.routes.values()) for (const s of slots) if (s instanceof PoolSocket) n++;
    return n;
  }

  /**
   * Sends `query` (its ID is overwritten: the caller's buffer is not kept)
   * to host:port from a pool socket of `route`, opening one with `open` when
   * the picked slot has none; resolves with the matching answer, rejects on
   * a socket error. The caller times out the exchange with `cancel` (the
   * waiter goes, a late answer is then a stray).
   */
  exchange(
    route: string,
    open: () => Promise<dgram.Socket>,
    query: Buffer,
    host: string,
    port: number,
    accepts: (resp: Buffer, id: number) => boolean,
  ): { answer: Promise<Buffer>; cancel(): void } {
    let cancelled = false;
    let leave: () => void = () => undefined;
    const answer = this.socketFor(route, open).then(
      (ps) =>
        new Promise<Buffer>((resolve, reject) => {
          // Given this socket: from here its waiter (not `held`) keeps it open. A
          // socket retired meanwhile still carries the queries it was given.
          ps.held--;
          if (cancelled) {
            ps.closeIfDone();
            return reject(new Error('cancelled'));
          }
          let id = this.rnd.u16();
          // 65536 IDs and at most MAX_USES queries a socket: a free one is near.
          while (ps.waiting.has(id)) id = this.rnd.u16();
          query.writeUInt16BE(id, 0);
          const w: Waiter = {
            host,
            port,
            accepts: (resp) => accepts(resp, id),
            settle: (err, resp) => (err ? reject(err) : resolve(resp!)),
          };
          ps.waiting.set(id, w);
          leave = () => {
            if (ps.waiting.get(id) === w) ps.waiting.delete(id);
            ps.closeIfDone();
          };
          const failed = (e: Error): void => {
            // The path's interface went away, a firewall refused it...: this socket is done with.
            if (ps.waiting.get(id) === w) ps.waiting.delete(id);
            reject(e);
            this.broken(ps, e);
          };
          try {
            if (this.send === undefined || !this.send(ps.sock, query, port, host)) ps.sock.send(query, port, host, (e) => e && failed(e));
          } catch (e) {
            failed(e as Error); // refused (ENETUNREACH...), or closed under us (ERR_SOCKET_DGRAM_NOT_RUNNING)
          }
        }),
    );
    return {
      answer,
      cancel: () => {
        cancelled = true;
        leave();
      },
    };
  }

  /** A socket of a random slot of `route`: the one there, or a new one when it is empty, used up or too old. */
  private socketFor(route: string, open: () => Promise<dgram.Socket>): Promise<PoolSocket> {
    if (this.closed) return Promise.reject(new Error('upstream sockets closed'));
    let slots = this.routes.get(route);
    if (slots === undefined) this.routes.set(route, (slots = new Array<Slot>(this.slots).fill(undefined)));
    const i = this.slots === 1 ? 0 : this.rnd.below(this.slots);
    const cur = slots[i];
    const now = performance.now();
    if (cur instanceof PoolSocket) {
      if (!cur.retired && cur.uses < this.maxUses && now - cur.bornAt < this.maxAgeMs) {
        cur.uses++;
        cur.held++;
        cur.lastUsed = now;
        return Promise.resolve(cur);
      }
      this.retire(cur);
    } else if (cur !== undefined) {
      // Being opened for another query: shared (it counts as a use).
      return cur.then((ps) => {
        ps.uses++;
        ps.held++;
        return ps;
      });
    }
    const p = open().then(
      (sock) => {
        const ps = new PoolSocket(sock, performance.now(), () => this.stats.stray++, (s, e) => this.broken(s, e));
        ps.uses = 1;
        ps.held = 1;
        this.stats.opened++;
        if (this.closed) {
          ps.held = 0;
          this.retire(ps);
          throw new Error('upstream sockets closed');
        }
        if (slots[i] === p) slots[i] = ps;
        else this.retire(ps); // the slot was emptied meanwhile (close, or its route flushed)
        this.startSweeper();
        return ps;
      },
      (e: unknown) => {
        if (slots[i] === p) slots[i] = undefined;
        throw e;
      },
    );
    slots[i] = p;
    return p;
  }

  /** Out of its slot; closed once its waiters are done. */
  private retire(ps: PoolSocket): void {
    if (ps.retired) return;
    ps.retired = true;
    this.stats.retired++;
    for (const slots of this.routes.values()) {
      const i = slots.indexOf(ps);
      if (i >= 0) slots[i] = undefined;
    }
    ps.closeIfDone();
  }

  /** An error on the socket, or a failed send: retired now, and every query waiting there fails. */
  private broken(ps: PoolSocket, e: Error): void {
    if (!ps.retired) this.stats.broken++;
    this.retire(ps);
    const waiters = [...ps.waiting.values()];
    ps.waiting.clear();
    for (const w of waiters) w.settle(e);
    ps.closeIfDone();
  }

  private startSweeper(): void {
    if (this.sweeper !== null || this.closed) return;
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, this.idleMs / 2));
    this.sweeper.unref();
  }

  /** Closes sockets idle for idleMs; stops sweeping when none are left. */
  sweep(now = performance.now()): void {
    let open = 0;
    for (const slots of this.routes.values()) {
      for (const s of slots) {
        if (!(s instanceof PoolSocket)) continue;
        if (s.waiting.size === 0 && now - s.lastUsed >= this.idleMs) this.retire(s);
        else open++;
      }
    }
    if (open === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Closes every socket; queries waiting fail. */
  close(): void {
    this.closed = true;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const slots of this.routes.values()) {
      for (const s of slots) if (s instanceof PoolSocket) this.broken(s, new Error('upstream sockets closed'));
    }
    this.routes.clear();
  }
}
