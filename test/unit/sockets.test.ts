// The path-socket fake (daemon/sockets.ts) and the SPLITWAN_SOCKET error mapping.
// Real sockets on 127.0.0.1 port 0 only; marks are recorded, never set.
import dgram from 'node:dgram';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  checkMark,
  connectWithTimeout,
  errnoName,
  FakePathSockets,
  fromNodeError,
  socketErrorMessage,
  SocketError,
  type PathSockets,
} from '../../daemon/sockets.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function tcpServer(reply: string): Promise<{ port: number; peers: number[] }> {
  const peers: number[] = [];
  const server = net.createServer((c) => {
    peers.push(c.remotePort ?? 0);
    c.end(reply);
  });
  cleanups.push(() => server.close());
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as net.AddressInfo).port, peers })));
}

function read(sock: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let d = '';
    sock.setEncoding('utf8').on('data', (x: string) => (d += x)).on('end', () => resolve(d)).on('error', reject);
  });
}

describe('FakePathSockets', () => {
  it('records the mark of each UDP socket; the socket is bound on loopback and works', async () => {
    const fake = new FakePathSockets();
    cleanups.push(() => fake.closeAll());
    const ps: PathSockets = fake;
    const a = await ps.udp(4, 0x1100);
    const b = await ps.udp(4, 0x1200);
    expect(a.address()).toMatchObject({ address: '127.0.0.1', family: 'IPv4' });
    expect(a.address().port).toBeGreaterThan(0);
    expect(fake.markOf(a)).toBe(0x1100);
    expect(fake.markOf(b)).toBe(0x1200);
    expect(fake.markOf(dgram.createSocket('udp4'))).toBeUndefined();
    expect(fake.opened.map((r) => [r.kind, r.family, r.mark])).toEqual([
      ['udp', 4, 0x1100],
      ['udp', 4, 0x1200],
    ]);
    const got = new Promise<string>((resolve) => b.once('message', (m) => resolve(m.toString())));
    a.send('hi', b.address().port, '127.0.0.1');
    expect(await got).toBe('hi');
  });

  it('UDP family 6 binds on ::1', async () => {
    const fake = new FakePathSockets();
    cleanups.push(() => fake.closeAll());
    let s: dgram.Socket;
    try {
      s = await fake.udp(6, 0x1000);
    } catch (e) {
      // a host without IPv6 on lo: bind fails with EADDRNOTAVAIL, as a SocketError
      expect(e).toMatchObject({ code: 'SPLITWAN_SOCKET', syscall: 'bind' });
      return;
    }
    expect(s.address()).toMatchObject({ address: '::1', family: 'IPv6' });
    expect(fake.markOf(s)).toBe(0x1000);
  });

  it('tcpConnect connects (through a redirect), records host, port and mark', async () => {
    const srv = await tcpServer('echo\n');
    const fake = new FakePathSockets({ redirect: (r) => (r.host === '10.99.9.9' ? { host: '127.0.0.1', port: srv.port } : undefined) });
    cleanups.push(() => fake.closeAll());
    const s = await fake.tcpConnect({ host: '10.99.9.9', port: 80, mark: 0x1200 });
    expect(await read(s)).toBe('echo\n');
    expect(fake.markOf(s)).toBe(0x1200);
    expect(fake.opened).toHaveLength(1);
    expect(fake.opened[0]).toMatchObject({ kind: 'tcp', family: 4, mark: 0x1200, host: '10.99.9.9', port: 80 });
    const direct = await fake.tcpConnect({ host: '127.0.0.1', port: srv.port, mark: 0x1000 });
    expect(await read(direct)).toBe('echo\n');
    expect(fake.opened.map((r) => r.mark)).toEqual([0x1200, 0x1000]);
  });

  it('a refused connect rejects with SPLITWAN_SOCKET naming the peer that was asked for', async () => {
    const srv = await tcpServer('');
    const port = srv.port;
    cleanups.splice(0).forEach((c) => c()); // close it: the port now refuses
    await new Promise((r) => setTimeout(r, 20));
    const fake = new FakePathSockets({ redirect: () => ({ host: '127.0.0.1', port }) });
    const err = await fake.tcpConnect({ host: '10.99.9.9', port: 443, mark: 0x1100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocketError);
    expect(err).toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'ECONNREFUSED', address: '10.99.9.9', port: 443, mark: 0x1100 });
    expect((err as Error).message).toBe('TCP IPv4 socket to 10.99.9.9:443 (mark 0x1100): connect failed: ECONNREFUSED: the peer refused the connection');
    expect(fake.opened).toHaveLength(0);
  });

  it('a connect that does not finish in timeoutMs rejects with ETIMEDOUT and destroys the socket', async () => {
    // No packet leaves the host: a stub socket whose connect never completes.
    vi.useFakeTimers();
    try {
      const stub = Object.assign(new EventEmitter(), {
        connected: null as unknown,
        destroyed: false,
        connect(o: unknown) {
          this.connected = o;
          return this;
        },
        destroy() {
          this.destroyed = true;
          return this;
        },
      });
      const p = connectWithTimeout(stub as unknown as net.Socket, { host: 'fd64::1', port: 53, mark: 0x1100, timeoutMs: 150 }, 6).catch((e: unknown) => e);
      expect(stub.connected).toEqual({ host: 'fd64::1', port: 53, family: 6 });
      await vi.advanceTimersByTimeAsync(149);
      expect(stub.destroyed).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      // The verdict comes one loop turn after the timer (lib/deadline.ts: I/O ready by then is read first).
      await vi.advanceTimersByTimeAsync(1);
      const err = (await p) as SocketError;
      expect(stub.destroyed).toBe(true);
      expect(err).toBeInstanceOf(SocketError);
      expect(err).toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'ETIMEDOUT', syscall: 'connect' });
      expect(err.message).toBe('TCP IPv6 socket to [fd64::1]:53 (mark 0x1100): connect failed: ETIMEDOUT: no answer within 150 ms');
      stub.emit('error', new Error('late')); // a late error of the destroyed socket is swallowed
      expect(stub.listenerCount('connect')).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('an error before the timeout rejects at once, destroys the socket and clears the timer', async () => {
    vi.useFakeTimers();
    try {
      const stub = Object.assign(new EventEmitter(), { destroyed: false, connect() { return this; }, destroy() { this.destroyed = true; return this; } });
      const p = connectWithTimeout(stub as unknown as net.Socket, { host: '10.64.0.1', port: 53, mark: 0x1200 }, 4).catch((e: unknown) => e);
      stub.emit('error', Object.assign(new Error('connect EHOSTUNREACH'), { code: 'EHOSTUNREACH', syscall: 'connect' }));
      const err = (await p) as SocketError;
      expect(err).toMatchObject({ errno: 'EHOSTUNREACH', address: '10.64.0.1', port: 53, mark: 0x1200 });
      expect(stub.destroyed).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('injected failures and bad arguments throw the real errors', async () => {
    const fake = new FakePathSockets({ fail: (r) => (r.mark === 0x1200 ? { errno: 'EPERM' } : undefined) });
    cleanups.push(() => fake.closeAll());
    await expect(fake.udp(4, 0x1200)).rejects.toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'EPERM', syscall: 'setsockopt(SO_MARK)' });
    await expect(fake.udp(4, 0x1200)).rejects.toThrow(/CAP_NET_ADMIN/);
    await expect(fake.tcpConnect({ host: '10.99.9.9', port: 80, mark: 0x1200 })).rejects.toMatchObject({ errno: 'EPERM', syscall: 'connect' });
    await expect(fake.tcpConnect({ host: 'example.com', port: 80, mark: 0x1100 })).rejects.toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'EINVAL' });
    await expect(fake.tcpConnect({ host: 'example.com', port: 80, mark: 0x1100 })).rejects.toThrow(/must be an IP address/);
    await expect(fake.tcpConnect({ host: '10.0.0.1', port: 0, mark: 0x1100 })).rejects.toThrow(/bad port 0/);
    await expect(fake.tcpConnect({ host: '10.0.0.1', port: 80, mark: -1 })).rejects.toThrow(/not a 32-bit unsigned integer/);
    await expect(fake.tcpConnect({ host: '10.0.0.1', port: 80, mark: 1, timeoutMs: 0 })).rejects.toThrow(/bad timeoutMs/);
    await expect(fake.udp(4, 2 ** 32)).rejects.toMatchObject({ errno: 'EINVAL' });
    expect(fake.opened).toHaveLength(0);
  });
});

describe('SPLITWAN_SOCKET error mapping', () => {
  it('maps errno numbers to names', () => {
    expect(errnoName(1)).toBe('EPERM');
    expect(errnoName(13)).toBe('EACCES');
    expect(errnoName(111)).toBe('ECONNREFUSED');
    expect(errnoName(11)).toBe('EAGAIN');
    expect(errnoName('ETIMEDOUT')).toBe('ETIMEDOUT');
    expect(errnoName(99999)).toBe('errno 99999');
  });

  it('EPERM on SO_MARK says CAP_NET_ADMIN is needed', () => {
    const e = new SocketError({ op: 'setsockopt(SO_MARK)', errno: 1, kind: 'tcp', family: 6, address: 'fd99:9::9', port: 80, mark: 0x1200 });
    expect(e.code).toBe('SPLITWAN_SOCKET');
    expect(e.errno).toBe('EPERM');
    expect(e.message).toMatch(/^TCP IPv6 socket to \[fd99:9::9\]:80 \(mark 0x1200\): setsockopt\(SO_MARK\) failed: EPERM: setting a socket mark needs CAP_NET_ADMIN/);
    const u = new SocketError({ op: 'setsockopt(SO_MARK)', errno: 'EPERM', kind: 'udp', family: 4, mark: 0x1100 });
    expect(u.message).toMatch(/^UDP IPv4 socket \(mark 0x1100\): setsockopt\(SO_MARK\) failed: EPERM: .*CAP_NET_ADMIN/);
  });

  it('gives a hint for the errors a path socket meets', () => {
    const m = (errno: string, op: Parameters<typeof socketErrorMessage>[0]['op'] = 'connect') =>
      socketErrorMessage({ op, errno, kind: 'tcp', address: '10.64.0.1', port: 53, mark: 0x1f00, timeoutMs: 500 });
    expect(m('EPERM')).toContain('a firewall rule refused it');
    expect(m('EPERM')).not.toContain('CAP_NET_ADMIN');
    expect(m('EACCES')).toContain('kill switch');
    expect(m('ENETUNREACH')).toContain('no route for this mark');
    expect(m('EHOSTUNREACH')).toContain('no route for this mark');
    expect(m('ETIMEDOUT')).toBe('TCP socket to 10.64.0.1:53 (mark 0x1f00): connect failed: ETIMEDOUT: no answer within 500 ms');
    expect(m('EMFILE')).toContain('too many open files');
    expect(m('ENOENT', 'getsockopt(SO_ORIGINAL_DST)')).toContain('not redirected');
    expect(m('EXDEV')).toBe('TCP socket to 10.64.0.1:53 (mark 0x1f00): connect failed: EXDEV');
  });

  it('wraps Node errors, keeping the cause', () => {
    const nodeErr = Object.assign(new Error('connect ECONNREFUSED 10.99.9.9:81'), { code: 'ECONNREFUSED', syscall: 'connect', errno: -111 });
    const e = fromNodeError(nodeErr, { kind: 'tcp', family: 4, address: '10.99.9.9', port: 81, mark: 0x1000 });
    expect(e).toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'ECONNREFUSED', syscall: 'connect', address: '10.99.9.9', port: 81, mark: 0x1000 });
    expect(e.cause).toBe(nodeErr);
    expect(fromNodeError(e, { kind: 'tcp' })).toBe(e);
    expect(fromNodeError(Object.assign(new Error('x'), { errno: -13 }), { kind: 'udp' }).errno).toBe('EACCES');
  });

  it('checkMark accepts every 32-bit mark and nothing else', () => {
    for (const ok of [0, 0x1000, 0xffffffff]) expect(() => checkMark(ok, 'udp')).not.toThrow();
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) expect(() => checkMark(bad, 'udp')).toThrow(SocketError);
  });
});
