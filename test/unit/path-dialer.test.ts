import { describe, expect, it } from 'vitest';
import { MarkedDialer } from '../../daemon/path-dialer.js';
import { FakePathSockets } from '../../daemon/sockets.js';
import { GW1, GW2 } from '../helpers/plans.js';

describe('MarkedDialer', () => {
  it('dials each path with its mark; tunnel follows the active gateway; no active gateway refuses', async () => {
    const sockets = new FakePathSockets();
    let active: string | null = 'gw1';
    const d = new MarkedDialer(sockets, () => ({ gateways: [GW1, GW2], active }));
    const a = await d.udp('tunnel', 4);
    const b = await d.udp('gw:gw2', 4);
    const c = await d.udp('breakout', 4);
    expect([sockets.markOf(a), sockets.markOf(b), sockets.markOf(c)]).toEqual([0x1100, 0x1200, 0x1000]);
    active = 'gw2';
    const e = await d.udp('tunnel', 4);
    expect(sockets.markOf(e)).toBe(0x1200);
    active = null;
    expect(() => d.markOf('tunnel')).toThrow(/kill switch/);
    // Never a silent fall back to the breakout.
    await expect(d.udp('tunnel', 4).catch((x: Error) => x.message)).resolves.toMatch(/kill switch/);
    for (const s of [a, b, c, e]) s.close();
  });
});
