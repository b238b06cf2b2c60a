// The splice contract (proxy/splice.ts), run against each implementation:
// Node's pipe() (portable) and splice(2) through kernel pipes (Linux). Real
// sockets on loopback; the splicer joins the two sockets in the middle, as
// the proxy does after it has peeked and dialled:
//
//   app ──▶ front (127.0.0.1:0) ── accepted `c` ══splice══ `s` ──▶ back (127.0.0.1:0) ── accepted `b`
//
// `app` plays the client, `b` the server; both are plain allowHalfOpen
// sockets the test drives.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readlinkSync } from 'node:fs';
import { defaultSplicer, spliceSplicer } from '../../proxy/splice-linux.js';
import { pipeSplicer, type Splice, type SpliceOptions, type Splicer } from '../../proxy/splice.js';
import { budget } from '../helpers/emulation.js';
import { skipNative } from '../helpers/native.js';

/** Why splice(2) cannot run here by design (no koffi build, SPLITWAN_NATIVE=off), said once; pipe()'s tests run anyway. */
const noNative = process.platform === 'linux' ? skipNative('test/integration/proxy-splice.test.ts: the splice(2) splicer') : 'not Linux';
const splicers: Splicer[] = [pipeSplicer, ...(noNative === null ? [spliceSplicer()] : [])];

const sha = (b: Buffer | Buffer[]): string => createHash('sha256').update(Array.isArray(b) ? Buffer.concat(b) : b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const once = <T = void>(e: NodeJS.EventEmitter, ev: string): Promise<T> => new Promise((r) => e.once(ev, r as (v: T) => void));

/** Everything a socket receives until its end (or close), as one buffer. */
function collect(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Writes `data` in 64 KiB pieces honouring backpressure, then ends. */
async function sendAll(s: net.Socket, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 65536) {
    if (!s.write(data.subarray(at, at + 65536))) await once(s, 'drain');
  }
  s.end();
}

for (const splicer of splicers) {
  describe(`splice contract (${splicer.name})`, () => {
    let front: net.Server;
    let back: net.Server;
    const accepted: net.Socket[] = [];
    const waiting: ((s: net.Socket) => void)[] = [];

    beforeAll(async () => {
      front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => {
        c.on('error', () => {});
        accepted.push(c);
      });
      back = net.createServer({ allowHalfOpen: true }, (b) => {
        b.on('error', () => {});
        const w = waiting.shift();
        if (w) w(b);
      });
      await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
      await new Promise<void>((r) => back.listen(0, '127.0.0.1', r));
    });
    afterAll(() => {
      front.close();
      back.close();
    });

    /** A joined pair: app <-> c ══ s <-> b. `before` runs on the sockets before the splice starts. */
    async function pair(
      idleMs = 0,
      o?: SpliceOptions,
      before?: (x: { app: net.Socket; c: net.Socket; s: net.Socket; b: net.Socket }) => Promise<void>,
    ): Promise<{ app: net.Socket; b: net.Socket; c: net.Socket; s: net.Socket; sp: Splice }> {
      const app = net.connect({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, allowHalfOpen: true });
      app.on('error', () => {});
      await once(app, 'connect');
      for (let i = 0; i < budget(200) && accepted.length === 0; i++) await sleep(5);
      const c = accepted.shift()!;
      const gotB = new Promise<net.Socket>((r) => waiting.push(r));
      const s = net.connect({ host: '127.0.0.1', port: (back.address() as net.AddressInfo).port, allowHalfOpen: true });
      s.on('error', () => {});
      await once(s, 'connect');
      const b = await gotB;
      await before?.({ app, c, s, b });
      const sp = splicer.start(c, s, idleMs, o);
      return { app, b, c, s, sp };
    }

    it('moves a large transfer both ways at once, intact (sha256), and counts the bytes', async () => {
      const up = randomBytes(24 << 20);
      const down = randomBytes(16 << 20);
      const { app, b, sp } = await pair();
      const atB = collect(b);
      const atApp = collect(app);
      await Promise.all([sendAll(app, up), sendAll(b, down)]);
      const [gotUp, gotDown] = await Promise.all([atB, atApp]);
      expect(sha(gotUp)).toBe(sha(up));
      expect(sha(gotDown)).toBe(sha(down));
      const r = await sp.done;
      expect(r).toEqual({ end: 'closed', up: up.length, down: down.length });
    }, budget(60_000)); // 40 MiB through an emulated loop on a loaded machine took over 60 s

    it('half-close: the client ends its side and still reads the whole answer; both close once both ways ended', async () => {
      const { app, b, c, s, sp } = await pair();
      const atApp = collect(app);
      app.end('question');
      const q = await collect(b);
      expect(q.toString()).toBe('question');
      // The server side is still writable after the client's FIN.
      await sleep(50);
      expect(b.writable).toBe(true);
      const answer = randomBytes(300_000);
      b.end(answer);
      expect(sha(await atApp)).toBe(sha(answer));
      const r = await sp.done;
      expect(r).toEqual({ end: 'closed', up: 8, down: answer.length });
      expect(c.destroyed && s.destroyed).toBe(true);
    });

    it('half-close the other way: the server ends first, the client keeps sending', async () => {
      const { app, b, sp } = await pair();
      const atApp = collect(app);
      b.end('bye');
      expect((await atApp).toString()).toBe('bye');
      const atB = collect(b);
      const more = randomBytes(100_000);
      app.end(more);
      expect(sha(await atB)).toBe(sha(more));
      expect((await sp.done).end).toBe('closed');
    });

    it('a reset by the server resets the client (never a clean FIN)', async () => {
      const { app, b, sp } = await pair();
      app.write('hello');
      await once(b, 'data');
      const err = once<NodeJS.ErrnoException>(app, 'error');
      b.resetAndDestroy();
      expect((await err).code).toBe('ECONNRESET');
      expect((await sp.done).end).toBe('reset-by-server');
    });

    it('a reset by the client resets the server', async () => {
      const { app, b, sp } = await pair();
      app.write('hello');
      await once(b, 'data');
      const err = once<NodeJS.ErrnoException>(b, 'error');
      app.resetAndDestroy();
      expect((await err).code).toBe('ECONNRESET');
      expect((await sp.done).end).toBe('reset-by-client');
    });

    it('a reset after a half-close still reaches the other side', async () => {
      const { app, b, sp } = await pair();
      app.end('x');
      expect((await collect(b)).toString()).toBe('x');
      b.write('partial answer');
      await once(app, 'data');
      const err = once<NodeJS.ErrnoException>(app, 'error');
      b.resetAndDestroy();
      expect((await err).code).toBe('ECONNRESET');
      expect((await sp.done).end).toBe('reset-by-server');
    });

    it('idle: nothing either way for the timeout resets both sides', async () => {
      const { app, b, sp } = await pair(300);
      const t0 = Date.now();
      const appErr = once<NodeJS.ErrnoException>(app, 'error');
      const bErr = once<NodeJS.ErrnoException>(b, 'error');
      const r = await sp.done;
      expect(r.end).toBe('idle');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      expect(Date.now() - t0).toBeLessThan(300 + budget(700)); // the sweep's lateness: stretched in an emulated Node
      expect((await appErr).code).toBe('ECONNRESET');
      expect((await bErr).code).toBe('ECONNRESET');
    });

    it('idle: a one-way trickle keeps the connection open past the timeout', async () => {
      // Stretched in an emulated Node (test:arch), where a busy machine held the loop past 300 ms between two writes.
      const { app, b, sp } = await pair(budget(300));
      const atB = collect(b);
      for (let i = 0; i < 8; i++) {
        app.write(`${i}`);
        await sleep(budget(100));
      }
      app.end();
      expect((await atB).toString()).toBe('01234567');
      b.end();
      expect((await sp.done).end).toBe('closed');
    });

    it('backpressure: a server that does not read stalls the client instead of filling the proxy', async () => {
      const { app, b, sp } = await pair();
      b.pause();
      const data = randomBytes(64 << 20);
      let finished = false;
      const sending = sendAll(app, data).then(() => (finished = true));
      await sleep(budget(800)); // the buffers fill (stretched emulated: pipe() there filled them more slowly than 800 ms)
      // Bounded by socket buffers and one pipe (or Node's highWaterMark), never the whole 64 MiB.
      const moved = sp.bytes().up;
      expect(finished).toBe(false);
      expect(moved).toBeLessThan(32 << 20);
      await sleep(budget(300));
      expect(sp.bytes().up - moved).toBeLessThan(1 << 20); // stalled, not trickling into memory
      const atB = collect(b);
      b.resume();
      await sending;
      expect(sha(await atB)).toBe(sha(data));
      b.end();
      const r = await sp.done;
      expect(r).toEqual({ end: 'closed', up: data.length, down: 0 });
    }, 60_000);

    it('a slow reader gets everything, in order', async () => {
      const { app, b, sp } = await pair();
      const data = randomBytes(4 << 20);
      const chunks: Buffer[] = [];
      b.on('data', (d: Buffer) => {
        chunks.push(d);
        b.pause();
        setTimeout(() => b.resume(), 2);
      });
      const ended = once(b, 'end');
      await sendAll(app, data);
      await ended;
      expect(sha(chunks)).toBe(sha(data));
      b.end();
      expect((await sp.done).end).toBe('closed');
    }, 60_000);

    it('writes the head first and passes on a FIN that came while peeking', async () => {
      const { b, sp } = await pair(0, { head: Buffer.from('HEAD:'), clientEnded: true }, async ({ app }) => {
        app.end();
        await sleep(50);
      });
      expect((await collect(b)).toString()).toBe('HEAD:');
      b.end('ok');
      expect((await sp.done).end).toBe('closed');
    });

    it('bytes Node read before the handoff are passed on first (server-speaks-first, a client that sent more)', async () => {
      const { app, b, sp } = await pair(0, { head: Buffer.from('peeked ') }, async ({ app, b, c, s }) => {
        b.write('banner ');
        app.write('more ');
        c.read(0); // Node reads into its buffer without a consumer
        for (let i = 0; i < 100 && (s.readableLength === 0 || c.readableLength === 0); i++) await sleep(5);
        expect(s.readableLength).toBeGreaterThan(0);
        expect(c.readableLength).toBeGreaterThan(0);
      });
      const atApp = collect(app);
      const atB = collect(b);
      app.end('after');
      b.end('after');
      expect((await atApp).toString()).toBe('banner after');
      expect((await atB).toString()).toBe('peeked more after');
      const r = await sp.done;
      expect(r).toEqual({ end: 'closed', up: 'more after'.length, down: 'banner after'.length });
    });

    it('reset() resets both sides at once', async () => {
      const { app, b, sp } = await pair();
      app.write('x');
      await once(b, 'data');
      const appErr = once<NodeJS.ErrnoException>(app, 'error');
      const bErr = once<NodeJS.ErrnoException>(b, 'error');
      sp.reset();
      expect((await appErr).code).toBe('ECONNRESET');
      expect((await bErr).code).toBe('ECONNRESET');
      expect((await sp.done).end).toBe('closed');
    });

    it('many concurrent connections each get their own bytes', async () => {
      const n = 200;
      // Joined one after the other (pair() matches accepted sockets in order), then all run at once.
      const pairs: Awaited<ReturnType<typeof pair>>[] = [];
      for (let i = 0; i < n; i++) pairs.push(await pair());
      const runs = await Promise.all(
        pairs.map(async ({ app, b, sp }, i) => {
          const up = randomBytes(20_000 + i * 97);
          const down = randomBytes(10_000 + i * 131);
          const atB = collect(b);
          const atApp = collect(app);
          await Promise.all([sendAll(app, up), sendAll(b, down)]);
          const [gotUp, gotDown] = await Promise.all([atB, atApp]);
          const r = await sp.done;
          return sha(gotUp) === sha(up) && sha(gotDown) === sha(down) && r.end === 'closed' && r.up === up.length && r.down === down.length;
        }),
      );
      expect(runs.filter((ok) => !ok).length).toBe(0);
    }, 60_000);
  });
}

describe.skipIf(noNative === null)('without native code (no koffi build, SPLITWAN_NATIVE=off)', () => {
  it('the default splicer is pipe()', () => {
    expect(defaultSplicer({}, {}).name).toBe('pipe');
  });
});

describe.skipIf(noNative !== null)('splice(2) splicer on Linux', () => {
  it('is the default; SPLITWAN_PROXY_SPLICE=pipe chooses pipe()', () => {
    expect(defaultSplicer({}).name).toBe('splice');
    expect(defaultSplicer({ SPLITWAN_PROXY_SPLICE: 'pipe' }).name).toBe('pipe');
  });

  it('leaves no sockets open and at most its pool of idle pipes once connections end', async () => {
    const fds = (): { sockets: number; pipes: number } => {
      let sockets = 0;
      let pipes = 0;
      for (const f of readdirSync('/proc/self/fd')) {
        try {
          const l = readlinkSync(`/proc/self/fd/${f}`);
          if (l.startsWith('socket:')) sockets++;
          else if (l.startsWith('pipe:')) pipes++;
        } catch {
          // closed while listing
        }
      }
      return { sockets, pipes };
    };
    const server = net.createServer({ allowHalfOpen: true }, (b) => {
      b.on('error', () => {});
      b.on('data', () => {});
      b.on('end', () => b.end(randomBytes(200_000)));
    });
    const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => {
      c.on('error', () => {});
      const s = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, allowHalfOpen: true }, () => {
        void spliceSplicer().start(c, s, 0).done;
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const before = fds();
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const app = net.connect({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, allowHalfOpen: true });
        const got = collect(app);
        app.end(randomBytes(100_000));
        expect((await got).length).toBe(200_000);
        app.destroy();
      }),
    );
    for (let i = 0; i < 100 && fds().sockets > before.sockets; i++) await sleep(20);
    const after = fds();
    expect(after.sockets).toBe(before.sockets);
    expect(after.pipes).toBeLessThanOrEqual(128); // POOL_MAX pipes, two fds each
    front.close();
    server.close();
  });
});
