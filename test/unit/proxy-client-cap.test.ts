// The proxy's per-client cap and its log window (proxy/client-cap.ts), as
// logic. The cap on real sockets, every accept path: test/integration/proxy-client-cap.test.ts.
import { describe, expect, it } from 'vitest';
import { ClientConnections, LogWindow } from '../../proxy/client-cap.js';

describe('ClientConnections', () => {
  it('counts each address on its own, up to the limit, and gives places back', () => {
    const c = new ClientConnections();
    expect([1, 2, 3].map(() => c.acquire('192.168.1.50', 2))).toEqual([true, true, false]);
    expect(c.acquire('192.168.1.51', 2)).toBe(true);
    expect(c.acquire('fd00::50', 2)).toBe(true);
    expect(c.count('192.168.1.50')).toBe(2);
    c.release('192.168.1.50');
    expect(c.acquire('192.168.1.50', 2)).toBe(true);
    expect(c.clients).toBe(3);
    // A client with nothing open takes no memory; a stray release is harmless.
    for (const a of ['192.168.1.50', '192.168.1.50', '192.168.1.51', 'fd00::50', 'fd00::50']) c.release(a);
    expect(c.clients).toBe(0);
    expect(c.count('192.168.1.50')).toBe(0);
  });

  it('a lower limit (a reload) applies to new connections; open ones stay', () => {
    const c = new ClientConnections();
    for (let i = 0; i < 5; i++) expect(c.acquire('10.0.0.9', 5)).toBe(true);
    expect(c.acquire('10.0.0.9', 3)).toBe(false);
    c.release('10.0.0.9');
    c.release('10.0.0.9');
    expect(c.acquire('10.0.0.9', 3)).toBe(false);
    c.release('10.0.0.9');
    expect(c.acquire('10.0.0.9', 3)).toBe(true);
  });
});

describe('LogWindow', () => {
  it('one line per window, the next one saying how many went unlogged', () => {
    let t = 1000;
    const w = new LogWindow(10_000, () => t);
    expect(w.take()).toEqual({ suppressed: 0 });
    for (let i = 0; i < 500; i++) expect(w.take()).toBeNull();
    t += 9_999;
    expect(w.take()).toBeNull();
    t += 1;
    expect(w.take()).toEqual({ suppressed: 501 });
    t += 60_000;
    expect(w.take()).toEqual({ suppressed: 0 });
  });
});
