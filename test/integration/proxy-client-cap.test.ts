// The proxy's per-client cap (proxy.maxConnectionsPerClient) on loopback with
// real sockets, on every accept path: a client address at its cap gets a RST
// for one more connection, another address is served, a place comes back when
// a connection ends, and a flood of refusals is one log line per window and
// a counter by reason.
//
//   client 127.0.0.1 ×3 ─┐
//   client 127.0.0.1 #4 ─┼─▶ proxy (127.0.0.1:0, cap 3) ──▶ backend (127.0.0.1, holds connections open)
//   client 127.0.0.2 ────┘
//
// The original destination is stood in for (the backend); the dialer is a
// plain loopback socket (mark 0 on the raw path).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePolicy } from '../../config/policy.js';
import type { PathName } from '../../config/types.js';
import { TransparentProxy, type AcceptMode, type ProxyDialer } from '../../proxy/server.js';
import { spliceSplicer } from '../../proxy/splice-linux.js';
import { pipeSplicer, type Splicer } from '../../proxy/splice.js';
import { skipNative } from '../helpers/native.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const REQUEST = 'GET / HTTP/1.1\r\nHost: site.example\r\n\r\n';

class PlainDialer implements ProxyDialer {
  markOf(_path: PathName): number {
    return 0;
  }
  tcp(_path: PathName, host: string, port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port, allowHalfOpen: true }, () => resolve(s));
      s.once('error', reject);
    });
  }
}

const modes: { splicer: Splicer; accept: AcceptMode }[] = [
  { splicer: pipeSplicer, accept: 'node' },
  ...(process.platform === 'linux' && skipNative('test/integration/proxy-client-cap.test.ts: the splice(2) and raw accept ways (koffi); pipe() runs') === null ? [{ splicer: spliceSplicer(), accept: 'node' as const }, { splicer: spliceSplicer(), accept: 'raw' as const }] : []),
];

for (const { splicer, accept } of modes)
describe(`the per-client cap (${accept}, ${splicer.name})`, () => {
  const policy = compilePolicy({ rules: [], default: ['breakout'] }, new Map());
  const warns: { obj: Record<string, unknown>; msg: string }[] = [];
  const logger = { debug: () => {}, info: () => {}, warn: (obj: object, msg?: string) => void warns.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' }) };
  let backend: net.Server;
  let backendPort: number;
  /** Connections the backend holds: what got through. */
  const held = new Set<net.Socket>();
  let proxy: TransparentProxy;
  let port: number;
  let clock = 0;
  const clients: net.Socket[] = [];

  beforeAll(async () => {
    // Answers "ok" to a request and keeps the connection open.
    backend = net.createServer((s) => {
      held.add(s);
      s.once('close', () => held.delete(s));
      s.on('error', () => {});
      s.once('data', () => s.write('ok'));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    backendPort = (backend.address() as net.AddressInfo).port;
    const dst = { address: '127.0.0.1', port: backendPort };
    proxy = new TransparentProxy(
      { policy: () => policy, pick: (via) => via[0]!, dialer: new PlainDialer(), originalDst: () => dst, originalDstFd: () => dst, logger, splicer, accept, now: () => clock },
      { peekTimeoutMs: 5000, idleTimeoutMs: 30_000, maxConnectionsPerClient: 3 },
    );
    await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
    expect(proxy.acceptName).toBe(accept);
    port = proxy.addresses()[0]!.port;
  });

  afterAll(async () => {
    for (const c of clients) c.destroy();
    await proxy.close();
    for (const s of held) s.destroy();
    await new Promise((r) => backend.close(r));
  });

  /** Connects from `from`, sends a request; 'ok' when the backend answered through the proxy, 'reset' on a RST. */
  async function attempt(from: string): Promise<{ outcome: 'ok' | 'reset' | 'closed'; socket: net.Socket }> {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    clients.push(s);
    const outcome = await new Promise<'ok' | 'reset' | 'closed'>((resolve) => {
      s.once('connect', () => s.write(REQUEST));
      s.once('data', () => resolve('ok'));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' ? 'reset' : 'closed'));
      s.once('close', () => resolve('closed'));
    });
    return { outcome, socket: s };
  }

  it('a client at its cap is reset; another client is served; a place comes back when a connection ends', async () => {
    const first = [];
    for (let i = 0; i < 3; i++) first.push(await attempt('127.0.0.1'));
    expect(first.map((a) => a.outcome)).toEqual(['ok', 'ok', 'ok']);
    expect(held.size).toBe(3);

    expect((await attempt('127.0.0.1')).outcome).toBe('reset');
    expect(held.size).toBe(3); // never dialled
    expect((await attempt('127.0.0.2')).outcome).toBe('ok');
    expect(held.size).toBe(4);
    expect(proxy.stats.refusedBy['client-cap']).toBe(1);
    expect(proxy.stats.refused).toBe(1);
    expect(warns).toEqual([
      {
        obj: { client: '127.0.0.1', open: 3, limit: 3, suppressed: 0 },
        msg: 'proxy: client 127.0.0.1 has 3 connections open (proxy.maxConnectionsPerClient): resetting its new ones',
      },
    ]);

    // One of the three ends: its place comes back (once the proxy has seen the end).
    const endsBefore = Object.values(proxy.stats.ends).reduce((a, b) => a + b, 0);
    first[0]!.socket.destroy();
    for (let i = 0; i < 500 && Object.values(proxy.stats.ends).reduce((a, b) => a + b, 0) === endsBefore; i++) await sleep(10);
    let again = await attempt('127.0.0.1');
    // The node path gives the place back on the client socket's close, which may trail the splice's end by a turn.
    for (let i = 0; i < 50 && again.outcome === 'reset'; i++) {
      await sleep(20);
      again = await attempt('127.0.0.1');
    }
    expect(again.outcome).toBe('ok');
  });

  it('a flood of refusals is one log line per 10 s, then one that counts the rest', async () => {
    const refusedBefore = proxy.stats.refusedBy['client-cap'];
    const linesBefore = warns.length;
    clock += 60_000; // a new window
    const outcomes = [];
    for (let i = 0; i < 20; i++) outcomes.push((await attempt('127.0.0.1')).outcome);
    expect(outcomes.every((o) => o === 'reset')).toBe(true);
    expect(proxy.stats.refusedBy['client-cap'] - refusedBefore).toBe(20);
    expect(warns.length - linesBefore).toBe(1);
    clock += 10_000;
    expect((await attempt('127.0.0.1')).outcome).toBe('reset');
    expect(warns.length - linesBefore).toBe(2);
    expect(warns.at(-1)!.obj.suppressed).toBe(19);
    expect(warns.at(-1)!.msg).toContain('(19 more refusals since the last line)');
    // Others are still served.
    expect((await attempt('127.0.0.3')).outcome).toBe('ok');
  });
});
