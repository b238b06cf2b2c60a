// A line a flood repeats: the first of a window logged, the rest counted, the
// count logged when the window closes.
import { describe, expect, it } from 'vitest';
import { LogThrottle } from '../../lib/log-throttle.js';
import type { Logger } from '../../lib/logger.js';
import { ManualClock } from '../helpers/clock.js';

function recorder(): Logger & { lines: { level: string; obj: Record<string, unknown>; msg: string }[] } {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  const l = { lines, trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => l };
  return l;
}

describe('LogThrottle', () => {
  it('3,180 repeats in 10 s: one line, then one line with the count', async () => {
    const clock = new ManualClock();
    const log = recorder();
    const t = new LogThrottle(log, clock, { windowMs: 10_000 });
    for (let i = 0; i < 3180; i++) t.warn('no upstream', { name: `n${i}.test` }, 'no upstream answered');
    expect(log.lines).toEqual([{ level: 'warn', obj: { name: 'n0.test' }, msg: 'no upstream answered' }]);
    await clock.advance(10_000);
    expect(log.lines).toHaveLength(2);
    expect(log.lines[1]).toMatchObject({ level: 'warn', obj: { name: 'n3179.test', suppressed: 3179, windowS: 10 } });
    expect(log.lines[1]!.msg).toBe('no upstream answered (3179 more like this in 10 s, not logged one by one)');
    expect(t.suppressedTotal).toBe(3179);
  });

  it('a flood that goes on: one count line a window, nothing in between; once it stops, the next line is logged at once', async () => {
    const clock = new ManualClock();
    const log = recorder();
    const t = new LogThrottle(log, clock, { windowMs: 10_000 });
    for (let s = 0; s < 35; s++) {
      for (let i = 0; i < 100; i++) t.warn('k', {}, 'x');
      await clock.advance(1000);
    }
    // 0 s: the first line; at 10, 20, 30 s: counts (99, then 1000, 1000).
    expect(log.lines.map((l) => l.obj.suppressed ?? 0)).toEqual([0, 999, 1000, 1000]);
    await clock.advance(10_000); // the last 5 s of it
    expect(log.lines.at(-1)!.obj.suppressed).toBe(500);
    await clock.advance(10_000); // a quiet window: nothing to say, the kind is forgotten
    const n = log.lines.length;
    t.warn('k', { again: true }, 'x');
    expect(log.lines).toHaveLength(n + 1);
    expect(log.lines.at(-1)!.obj).toEqual({ again: true });
  });

  it('kinds are apart; past maxKinds they share one; burst lets a few through', async () => {
    const clock = new ManualClock();
    const log = recorder();
    const t = new LogThrottle(log, clock, { windowMs: 1000, burst: 2, maxKinds: 2 });
    for (const k of ['a', 'b', 'c', 'd']) for (let i = 0; i < 5; i++) t.info(k, { k }, k);
    // a and b: 2 each; c and d share "(other)": 2 of their 10 between them.
    expect(log.lines.map((l) => l.msg)).toEqual(['a', 'a', 'b', 'b', 'c', 'c']);
    await clock.advance(1000);
    expect(log.lines.slice(6).map((l) => l.obj.suppressed)).toEqual([3, 3, 8]);
  });

  it('flush() writes what is pending (at stop) and stops its timers', async () => {
    const clock = new ManualClock();
    const log = recorder();
    const t = new LogThrottle(log, clock);
    for (let i = 0; i < 4; i++) t.error('e', {}, 'boom');
    t.flush();
    expect(log.lines.map((l) => l.obj.suppressed ?? 0)).toEqual([0, 3]);
    await clock.advance(60_000);
    expect(log.lines).toHaveLength(2);
  });
});
