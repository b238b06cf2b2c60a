// A gateway's recheck after its WAN link changed: one good round brings a
// down gateway back (not recoverAfter), a failure once down cancels that.
import { describe, expect, it } from 'vitest';
import { GatewayHealth } from '../../daemon/health/gateway-health.js';

const opts = { failAfter: 3, recoverAfter: 5, window: 30, degradeFactor: 3 };
function down(): GatewayHealth {
  const h = new GatewayHealth(opts, 0);
  h.record(1, true, 1);
  for (let t = 2; t < 5; t++) h.record(t, false);
  expect(h.current).toBe('down');
  return h;
}

describe('GatewayHealth.recheck', () => {
  it('without it a down gateway needs recoverAfter good rounds', () => {
    const h = down();
    for (let t = 10; t < 14; t++) expect(h.record(t, true, 1)).toBeNull();
    expect(h.record(14, true, 1)).toBe('up');
  });

  it('after it, one good round', () => {
    const h = down();
    h.recheck();
    expect(h.record(10, true, 1)).toBe('up');
  });

  it('a failed round once down cancels it', () => {
    const h = down();
    h.recheck();
    h.record(10, false);
    for (let t = 11; t < 15; t++) expect(h.record(t, true, 1)).toBeNull();
    expect(h.record(15, true, 1)).toBe('up');
  });

  it('given while still failing, it holds through going down', () => {
    const h = new GatewayHealth(opts, 0);
    h.record(1, true, 1);
    h.record(2, false);
    h.recheck();
    h.record(3, false);
    expect(h.record(4, false)).toBe('down');
    expect(h.record(5, true, 1)).toBe('up');
  });

  it('a good round while up ends it: a later outage needs recoverAfter again', () => {
    const h = new GatewayHealth(opts, 0);
    h.record(1, true, 1);
    h.record(2, false);
    h.recheck();
    h.record(3, true, 1);
    for (let t = 4; t < 7; t++) h.record(t, false);
    expect(h.current).toBe('down');
    expect(h.record(7, true, 1)).toBeNull();
  });
});
