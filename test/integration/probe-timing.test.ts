// A probe's timing on a busy process, with real sockets on 127.0.0.1: an
// answer that arrived in time wins even when the event loop reads it after
// the timer fired, its round trip ends when it arrived (the kernel's receive
// time), and a timer that fired late says by how much. The resolver answers
// from this process and then holds its event loop: the answer is in the
// kernel before the hold, whatever else the machine is doing.
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadline, latenessOf, TimeoutError } from '../../lib/deadline.js';
import { silentLogger } from '../../lib/logger.js';
import { Forwarder, readQuestion, type PathDialer } from '../../dns/forwarder.js';
import { LoopbackDialer, upstream } from '../helpers/dns.js';
import { budget } from '../helpers/emulation.js';
import { skipNative } from '../helpers/native.js';

// The kernel's receive stamp (sys/rx-stamp-linux.ts) is a native call: where koffi has no build (s390x, MIPS)
// or with SPLITWAN_NATIVE=off a round trip is timed at the event, and the loop's hold is in it.
const noStamps = process.platform !== 'linux' || skipNative('probe-timing: the round trip from the kernel\'s receive stamp') !== null;

/** The forwarder's timeout; the loop is held for twice it. Stretched in an emulated Node, where the resolver's own reply (same process) takes ~0.5 s. */
const T = budget(200);

/** Holds this process's event loop (a long task, a starved CPU). */
function hold(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

/** The LoopbackDialer's sockets, their sends refused `failSends` times first. */
class RefusingDialer extends LoopbackDialer implements PathDialer {
  failSends = 0;
  sends = 0;
  override async udp(path: string, family: 4 | 6): Promise<dgram.Socket> {
    const s = await super.udp(path, family);
    const send = s.send.bind(s) as (...a: unknown[]) => void;
    (s as unknown as { send: (...a: unknown[]) => void }).send = (...args: unknown[]) => {
      this.sends++;
      if (this.failSends > 0) {
        this.failSends--;
        // What the kernel says when netfilter drops the packet (a stale conntrack entry of another tunnel).
        const cb = args.at(-1) as (e: Error | null) => void;
        queueMicrotask(() => cb(Object.assign(new Error('send EPERM'), { code: 'EPERM' })));
        return;
      }
      send(...args);
    };
    return s;
  }
}

describe('probe timing on a busy process', () => {
  let server: dgram.Socket;
  let port = 0;
  /** Run once the resolver's answer has left: the loop is held while the answer waits unread. */
  let afterAnswer: (() => void) | null = null;
  const dialer = new RefusingDialer();
  const forwarder = new Forwarder({ dialer, logger: silentLogger, timeoutMs: T });
  const query = Buffer.from('abcd01000001000000000000076578616d706c650000010001', 'hex'); // example. A
  const q = readQuestion(query)!;

  beforeAll(async () => {
    // The resolver: every query echoed back as an empty answer, at once.
    server = dgram.createSocket('udp4');
    server.on('message', (m, r) => {
      const a = Buffer.from(m);
      a[2]! |= 0x80;
      server.send(a, r.port, r.address, () => afterAnswer?.());
    });
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    port = server.address().port;
  });
  afterAll(() => {
    forwarder.close();
    server.close();
  });

  it('the loop held past the timeout while the answer waited: the answer wins, and its round trip is the packet\'s, not the loop\'s', async () => {
    afterAnswer = () => hold(2 * T);
    try {
      const t0 = performance.now();
      const r = await forwarder.exchange(query, q, upstream(`127.0.0.1:${port}`), 'gw:a');
      const seen = performance.now() - t0;
      expect(r.resp[2]! & 0x80).toBe(0x80); // the answer
      expect(seen).toBeGreaterThanOrEqual(2 * T); // this process read it only after the hold...
      if (!noStamps) expect(r.rttMs).toBeLessThan(T); // ...it had arrived before (kernel receive time)
    } finally {
      afterAnswer = null;
    }
  });

  it('the old timing, in the same situation, calls it a timeout (what made healthy gateways "down" on a busy machine)', async () => {
    afterAnswer = () => hold(2 * T);
    try {
      await expect(forwarder.exchange(query, q, upstream(`127.0.0.1:${port}`), 'gw:a', { naive: true })).rejects.toThrow(new RegExp(`no answer in ${T} ms`));
    } finally {
      afterAnswer = null;
    }
  });

  it('no answer at all: a timeout, with how late its timer fired', async () => {
    const silent = upstream('127.0.0.1:9'); // discard: nothing answers
    const p = forwarder.exchange(query, q, silent, 'gw:a').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    hold(2 * T); // the loop is held when the timer is due
    const e = await p;
    expect(e).toBeInstanceOf(TimeoutError);
    expect(latenessOf(e)).toBeGreaterThan(0.75 * T);
  });
});

describe('deadline', () => {
  it('expires and says how late; cancelled, it never fires', async () => {
    const t0 = performance.now();
    const [late, firedAt] = await new Promise<[number, number]>((r) => deadline(30, (e) => r([e.lateMs, performance.now()])));
    // How late it was is what this loop saw when it fired: the whole wait less the 30 ms asked (read
    // there, not after the await: an emulated Node took 39 ms more to resume).
    expect(late).toBeCloseTo(firedAt - t0 - 30, -1);
    let fired = false;
    deadline(10, () => (fired = true)).cancel();
    await new Promise((r) => setTimeout(r, 40));
    expect(fired).toBe(false);
  });
});
