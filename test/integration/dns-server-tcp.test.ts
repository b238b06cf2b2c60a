// DnsServer's limits with real sockets on loopback: TCP idle timeout,
// pipelining, reassembly, the connection cap, the unread-bytes cap, runt
// frames, the ACL at accept; the in-flight cap over UDP (drop, not queue) and
// TCP (not read until there is room).
//
//   test clients 127.0.0.1 ──tcp/udp──▶ DnsServer+Resolver (127.0.0.1:P, small limits) ──udp──▶ tiny upstream (127.0.0.1:U)
//   outsiders    127.0.0.2 ──tcp──────▶   (ACL: all but 127.0.0.2)                              (slow*.test answered late,
//                                                                                                 held*.test when released)
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startResolver, type TestResolver } from '../helpers/dns.js';
import { budget } from '../helpers/emulation.js';
import { loopbackConfig, startTinyUpstream, type TinyUpstream } from '../helpers/dns-upstream.js';

/**
 * tcpIdleMs of the idle tests, and the test's pace around it: stretched in an
 * emulated Node (test:arch), where the client and the server share one
 * emulated process and a 150 ms sleep can last past a 300 ms idle timeout.
 */
const IDLE_MS = budget(300);
/** The upstream's delay for slow*.test: over IDLE_MS. */
const SLOW_MS = IDLE_MS + 500;
/** TXT records of 250 bytes: big.test's answer is about 16 KB (TCP only). */
const BIG_RECORDS = 60;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function query(name: string, id: number, type: dnsPacket.RecordType = 'A'): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] });
}

const frame = (m: Buffer): Buffer => Buffer.concat([Buffer.from([m.length >> 8, m.length & 255]), m]);

/** A TCP client that collects answers (by ID) and notes when the server closes. */
class Client {
  readonly answers: Buffer[] = [];
  closedAt: number | null = null;
  error: Error | null = null;
  readonly openedAt = Date.now();
  private buf = Buffer.alloc(0);
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        this.answers.push(Buffer.from(this.buf.subarray(2, 2 + this.buf.readUInt16BE(0))));
        this.buf = this.buf.subarray(2 + this.buf.readUInt16BE(0));
      }
    });
    sock.on('error', (e) => (this.error = e));
    sock.on('close', () => (this.closedAt = Date.now()));
  }
  /** Connects to 127.0.0.1:port from `from` (another loopback address: an outsider). */
  static open(port: number, from?: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true, ...(from ? { localAddress: from } : {}) }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }
  get ids(): number[] {
    return this.answers.map((a) => a.readUInt16BE(0));
  }
  send(...msgs: Buffer[]): void {
    this.sock.write(Buffer.concat(msgs.map(frame)));
  }
  /** Waits until `n` answers came (or `ms` passed); returns the answers. */
  async waitAnswers(n: number, ms = 3000): Promise<Buffer[]> {
    const end = Date.now() + ms;
    while (this.answers.length < n && Date.now() < end) await sleep(5);
    return this.answers;
  }
  async waitClosed(ms = 3000): Promise<boolean> {
    const end = Date.now() + ms;
    while (this.closedAt === null && Date.now() < end) await sleep(5);
    return this.closedAt !== null;
  }
  close(): void {
    this.sock.destroy();
  }
}

/** One UDP exchange from a fresh socket: the answers that came within `ms`. */
async function udpAsk(port: number, msg: Buffer, ms: number): Promise<Buffer[]> {
  const s = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  try {
    s.send(msg, port, '127.0.0.1');
    await sleep(ms);
  } finally {
    s.close();
  }
  return got;
}

interface OutsiderEnd {
  /** ms from connect() to the socket closing. */
  lived: number;
  /** Bytes the server sent. */
  bytes: number;
  /** The error that ended the connection (ECONNRESET: the server reset it). */
  code: string | undefined;
}

/**
 * An outsider: a connection from 127.0.0.2 that writes a query and would keep
 * the socket open for as long as the server let it (given up after 6 s).
 */
function outsider(port: number): Promise<OutsiderEnd> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let bytes = 0;
    let code: string | undefined;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, () => s.write(frame(query('outsider.test', 9)), () => {}));
    const giveUp = setTimeout(() => s.destroy(), 6000);
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
    s.on('close', () => {
      clearTimeout(giveUp);
      resolve({ lived: Date.now() - t0, bytes, code });
    });
  });
}

/** Waits until `cond` holds (or `ms` passed); returns whether it held. */
async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(5);
  return cond();
}

describe('DnsServer limits', () => {
  let upstream: TinyUpstream | undefined;
  const servers: TestResolver[] = [];
  const clients: Client[] = [];
  /** held*.test names are answered by the upstream only once this is released. */
  let held = gate();

  function gate(): { promise: Promise<void>; release: () => void } {
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    return { promise, release };
  }

  /** A resolver+server with these server limits (and ACL, forwarder timeout), closed in afterAll. */
  async function server(
    limits: NonNullable<Parameters<typeof startResolver>[0]['server']>,
    o: { allows?: (address: string) => boolean; timeoutMs?: number } = {},
  ): Promise<TestResolver> {
    const r = await startResolver({ ...loopbackConfig(upstream!.port), timeoutMs: o.timeoutMs ?? 2000, server: limits, ...(o.allows ? { allows: o.allows } : {}) });
    servers.push(r);
    return r;
  }
  async function client(port: number, from?: string): Promise<Client> {
    const c = await Client.open(port, from);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    upstream = await startTinyUpstream({
      records: (name, type) => {
        if (name === 'big.test' && type === 16) {
          return Array.from({ length: BIG_RECORDS }, (_, i) => ({ type: 'TXT' as const, name: 'big.test', ttl: 3600, data: `${i}`.padEnd(250, 'x') }));
        }
        if (type === 1) return [{ type: 'A' as const, name, ttl: 300, data: '192.0.2.1' }];
        return null;
      },
      delayMs: (name) => (name.startsWith('slow') ? SLOW_MS : 0),
      hold: (name) => (name.startsWith('held') ? held.promise : undefined),
    });
  });

  afterAll(async () => {
    held.release();
    for (const c of clients) c.close();
    for (const s of servers) await s.close();
    await upstream?.close();
  });

  describe('TCP', () => {
    it('closes an idle connection after tcpIdleMs', async () => {
      const r = await server({ tcpIdleMs: IDLE_MS });
      const c = await client(r.port);
      expect(await c.waitClosed(budget(3000))).toBe(true);
      const idle = c.closedAt! - c.openedAt;
      expect(idle).toBeGreaterThanOrEqual(IDLE_MS - 50);
      expect(idle).toBeLessThan(IDLE_MS * 5);
    });

    it('keeps a connection that keeps asking, and closes it tcpIdleMs after the last answer', async () => {
      const r = await server({ tcpIdleMs: IDLE_MS });
      const c = await client(r.port);
      for (let i = 1; i <= 6; i++) {
        c.send(query('normal.test', i));
        await sleep(IDLE_MS / 2);
      }
      expect(c.closedAt).toBeNull();
      expect(c.ids).toEqual([1, 2, 3, 4, 5, 6]);
      expect(await c.waitClosed(budget(3000))).toBe(true);
    });

    it('a query still being resolved is answered even when it takes longer than tcpIdleMs (not idle: RFC 7766 §6.2.3, RFC 1035 §4.2.2)', async () => {
      const r = await server({ tcpIdleMs: IDLE_MS });
      const c = await client(r.port);
      c.send(query('slow-idle.test', 77));
      const answers = await c.waitAnswers(1, SLOW_MS + budget(1500));
      const closedAfter = c.closedAt === null ? null : c.closedAt - c.openedAt;
      expect({ ids: answers.map((a) => a.readUInt16BE(0)), closedAfter }).toEqual({ ids: [77], closedAfter: null });
    });

    it('a client that half-closes after writing its queries still gets their answers (RFC 1035 §4.2.2)', async () => {
      const r = await server({});
      const c = await client(r.port);
      // A hit (answered at once) and a miss (answered after the upstream), then FIN.
      c.send(query('normal.test', 61));
      await c.waitAnswers(1);
      c.send(query('normal.test', 62), query('half-close.test', 63));
      c.sock.end();
      expect(await c.waitClosed(3000)).toBe(true);
      expect(c.ids).toEqual([61, 62, 63]);
    });

    it('pipelining: 50 queries written at once on one connection are all answered, IDs matched', async () => {
      const r = await server({});
      const c = await client(r.port);
      const msgs = Array.from({ length: 50 }, (_, i) => query(i % 5 === 0 ? 'normal.test' : `p${i}.pipeline.test`, 1000 + i));
      c.send(...msgs); // one write: misses and hits interleaved, more than tcpMaxPipelined (32) in flight
      const answers = await c.waitAnswers(50, 5000);
      expect(answers).toHaveLength(50);
      expect([...c.ids].sort((a, b) => a - b)).toEqual(msgs.map((m) => m.readUInt16BE(0)));
      for (const a of answers) {
        const d = dnsPacket.decode(a);
        const i = d.id! - 1000;
        expect(d.questions![0]!.name).toBe(i % 5 === 0 ? 'normal.test' : `p${i}.pipeline.test`);
        expect((d.answers ?? []).map((x) => (x as { data?: unknown }).data)).toEqual(['192.0.2.1']);
      }
      expect(c.closedAt).toBeNull();
    });

    it('a message split across many 1-byte writes is answered', async () => {
      const r = await server({});
      const c = await client(r.port);
      const bytes = Buffer.concat([frame(query('bytewise.test', 4321)), frame(query('normal.test', 4322))]);
      for (const b of bytes) {
        c.sock.write(Buffer.from([b]));
        await sleep(1);
      }
      const answers = await c.waitAnswers(2);
      expect(answers.map((a) => a.readUInt16BE(0))).toEqual([4321, 4322]);
    });

    it('tcpMaxConnections: connections beyond it are closed by the server; the others keep working', async () => {
      const r = await server({ tcpMaxConnections: 2 });
      const c1 = await client(r.port);
      const c2 = await client(r.port);
      c1.send(query('normal.test', 1));
      c2.send(query('normal.test', 2));
      expect((await c1.waitAnswers(1)).length).toBe(1);
      expect((await c2.waitAnswers(1)).length).toBe(1);
      const c3 = await client(r.port);
      c3.send(query('normal.test', 3));
      expect(await c3.waitClosed(2000)).toBe(true);
      expect(c3.answers).toEqual([]);
      c1.send(query('normal.test', 11));
      c2.send(query('normal.test', 12));
      expect(c1.ids).toEqual([1]); // (not yet: sanity of the wait below)
      await c1.waitAnswers(2);
      await c2.waitAnswers(2);
      expect(c1.ids).toEqual([1, 11]);
      expect(c2.ids).toEqual([2, 12]);
      // A slot freed is a slot for the next client.
      c1.close();
      await sleep(100);
      const c4 = await client(r.port);
      c4.send(query('normal.test', 4));
      expect((await c4.waitAnswers(1)).map((a) => a.readUInt16BE(0))).toEqual([4]);
    });

    it('tcpMaxUnread: a client that never reads its answers is disconnected; others are still served', async () => {
      const r = await server({ tcpMaxUnread: 64 * 1024 });
      // big.test into the cache first: then every answer is a synchronous 16 KB hit.
      const warm = await client(r.port);
      warm.send(query('big.test', 1, 'TXT'));
      const [big] = await warm.waitAnswers(1);
      expect(big!.length).toBeGreaterThan(BIG_RECORDS * 250);

      const hog = await client(r.port);
      hog.sock.pause(); // never reads
      let sent = 0;
      const q = frame(query('big.test', 2, 'TXT'));
      const batch = Buffer.concat(Array.from({ length: 50 }, () => q));
      // Keep asking until the server hangs up (a write then fails) or 2000 queries (32 MB of answers) went out.
      while (hog.closedAt === null && hog.error === null && !hog.sock.destroyed && sent < 2000) {
        hog.sock.write(batch, () => {});
        sent += 50;
        if (sent === 50) {
          // Meanwhile another client is served.
          warm.send(query('normal.test', 3));
          expect((await warm.waitAnswers(2)).map((a) => a.readUInt16BE(0))).toEqual([1, 3]);
        }
        await sleep(10);
      }
      // The server has hung up: reading now ends in a close long before every answer came.
      hog.sock.resume();
      expect(await hog.waitClosed(3000)).toBe(true);
      expect(hog.answers.length).toBeLessThan(sent);
      console.info(`tcpMaxUnread: hung up after ${sent} queries sent, ${hog.answers.length} answers read (${hog.error?.message ?? 'no error'})`);
      // And still serves others, old and new connections.
      warm.send(query('normal.test', 4));
      expect((await warm.waitAnswers(3)).map((a) => a.readUInt16BE(0))).toEqual([1, 3, 4]);
      const fresh = await client(r.port);
      fresh.send(query('big.test', 5, 'TXT'));
      expect((await fresh.waitAnswers(1)).map((a) => a.readUInt16BE(0))).toEqual([5]);
    });

    it('a length prefix of 5 (shorter than a header) is dropped; later queries on the connection are answered', async () => {
      const r = await server({});
      const c = await client(r.port);
      const dropped = r.server.stats.dropped;
      c.sock.write(Buffer.concat([Buffer.from([0, 5, 0xab, 0xcd, 0x01, 0x00, 0x00]), frame(query('normal.test', 21))]));
      await c.waitAnswers(1);
      c.sock.write(Buffer.from([0, 0])); // and an empty one
      c.send(query('after-runt.test', 22));
      const answers = await c.waitAnswers(2);
      await sleep(50);
      expect(answers.map((a) => a.readUInt16BE(0))).toEqual([21, 22]);
      expect(r.server.stats.dropped - dropped).toBe(2);
      expect(c.closedAt).toBeNull();
    });

    it('the ACL is checked at accept: an outsider\'s connection is reset at once, unread, holding no slot; allowed clients are served', async () => {
      // Two slots; outsiders (127.0.0.2) try to take more than all of them and to keep them.
      const r = await server({ tcpMaxConnections: 2, tcpIdleMs: 5000 }, { allows: (a) => a !== '127.0.0.2' });
      const asked = upstream!.asked.length;
      const first = await Promise.all(Array.from({ length: 6 }, () => outsider(r.port)));
      // At once (long before the 5 s idle timeout that would close a held
      // connection), by a reset, with nothing read: not even REFUSED.
      expect(Math.max(...first.map((o) => o.lived))).toBeLessThan(2500);
      expect(first.map((o) => [o.bytes, o.code])).toEqual(first.map(() => [0, 'ECONNRESET']));
      expect([r.server.stats.tcpRefused, r.server.stats.tcpConnections, r.server.stats.tcpQueries]).toEqual([6, 0, 0]);
      // Both slots are free for allowed clients, while outsiders keep coming.
      const more = Promise.all(Array.from({ length: 6 }, () => outsider(r.port)));
      const c1 = await client(r.port);
      const c2 = await client(r.port);
      c1.send(query('normal.test', 1));
      c2.send(query('normal.test', 2));
      expect((await c1.waitAnswers(1)).map((a) => a.readUInt16BE(0))).toEqual([1]);
      expect((await c2.waitAnswers(1)).map((a) => a.readUInt16BE(0))).toEqual([2]);
      const later = await more;
      expect(later.map((o) => [o.bytes, o.code])).toEqual(later.map(() => [0, 'ECONNRESET']));
      expect([c1.closedAt, c2.closedAt, r.server.stats.tcpRefused, r.server.stats.tcpConnections]).toEqual([null, null, 12, 2]);
      expect(upstream!.asked.slice(asked)).not.toContain('outsider.test');
      const lived = [...first, ...later].map((o) => o.lived);
      console.info(`ACL at accept: outsiders reset after ${Math.min(...lived)}-${Math.max(...lived)} ms (idle timeout 5000 ms)`);
    });

    it('maxInflight counts TCP queries: beyond it a connection is not read until one settles (nothing dropped); UDP meets the same bound', async () => {
      held = gate();
      const r = await server({ maxInflight: 2 }, { timeoutMs: 15_000 });
      const heldAsked = (): string[] => upstream!.asked.filter((n) => n.startsWith('held'));
      const c1 = await client(r.port);
      const c2 = await client(r.port);
      c1.send(query('held1.test', 301), query('held2.test', 302), query('held3.test', 303));
      expect(await until(() => heldAsked().length >= 2)).toBe(true);
      c2.send(query('held4.test', 304));
      await sleep(300);
      // Two in flight: the third and fourth wait, unread, instead of going upstream.
      expect(heldAsked().sort()).toEqual(['held1.test', 'held2.test']);
      expect(r.server.stats.tcpWaits).toBeGreaterThanOrEqual(2);
      // The bound is the server's, not the connection's: a UDP query meanwhile is dropped.
      expect(await udpAsk(r.port, query('held-udp.test', 305), 300)).toEqual([]);
      expect(r.server.stats.overload).toBe(1);
      expect([c1.answers, c2.answers, c1.closedAt, c2.closedAt]).toEqual([[], [], null, null]);
      held.release();
      expect((await c1.waitAnswers(3)).map((a) => a.readUInt16BE(0)).sort()).toEqual([301, 302, 303]);
      expect((await c2.waitAnswers(1)).map((a) => a.readUInt16BE(0))).toEqual([304]);
      expect(heldAsked().sort()).toEqual(['held1.test', 'held2.test', 'held3.test', 'held4.test']);
      // And the bound is free again.
      expect((await udpAsk(r.port, query('normal.test', 306), 500)).map((m) => m.readUInt16BE(0))).toEqual([306]);
    });
  });

  describe('UDP', () => {
    it('maxInflight: beyond it new queries are dropped, not queued (stats.overload), and service resumes', async () => {
      const r = await server({ maxInflight: 2 });
      const s = await Promise.all([1, 2, 3].map(() => new Promise<dgram.Socket>((res) => {
        const sock = dgram.createSocket('udp4');
        sock.bind(0, '127.0.0.1', () => res(sock));
      })));
      const got: Buffer[][] = [[], [], []];
      s.forEach((sock, i) => sock.on('message', (m) => got[i]!.push(m)));
      try {
        s[0]!.send(query('slow1.test', 101), r.port, '127.0.0.1');
        s[1]!.send(query('slow2.test', 102), r.port, '127.0.0.1');
        await sleep(100); // both are waiting for the slow upstream now
        s[2]!.send(query('slow3.test', 103), r.port, '127.0.0.1');
        await sleep(SLOW_MS + 700);
        expect(got[0]!.map((m) => m.readUInt16BE(0))).toEqual([101]);
        expect(got[1]!.map((m) => m.readUInt16BE(0))).toEqual([102]);
        expect(got[2]).toEqual([]); // dropped: not answered late either
        expect(r.server.stats.overload).toBe(1);
      } finally {
        for (const sock of s) sock.close();
      }
      // The two are done: the next query is served.
      const after = await udpAsk(r.port, query('normal.test', 104), 300);
      expect(after.map((m) => m.readUInt16BE(0))).toEqual([104]);
      expect(r.server.stats.overload).toBe(1);
    });

    it('closing the server while a miss is upstream does not crash the process when the answer comes back', async () => {
      const r = await server({});
      const problems: unknown[] = [];
      const onProblem = (e: unknown): void => void problems.push(e);
      process.on('unhandledRejection', onProblem);
      process.on('uncaughtException', onProblem);
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
      try {
        sock.send(query('slow-close.test', 201), r.port, '127.0.0.1');
        await sleep(100); // waiting for the slow upstream
        await r.server.close(); // a stop or a rebind
        await sleep(SLOW_MS + 300); // the upstream's answer arrives now
        expect(problems).toEqual([]);
      } finally {
        process.off('unhandledRejection', onProblem);
        process.off('uncaughtException', onProblem);
        sock.close();
      }
    });
  });
});
