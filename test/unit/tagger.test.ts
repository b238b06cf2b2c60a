import { describe, expect, it } from 'vitest';
import type { Clock } from '../../lib/logger.js';
import { renderElementChanges, type ElementChanges } from '../../daemon/dataplane/nft-session-linux.js';
import { FakeNft } from '../../daemon/dataplane/nft-fake.js';
import { NftTagger, TagSetFullError } from '../../daemon/dataplane/tagger.js';
import { ManualClock } from '../helpers/clock.js';
import { removeStaleHomes } from '../../daemon/dataplane/nft-session-linux.js';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function clock(): Clock & { t: number } {
  const c = { t: 1_000_000, now: () => c.t, wall: () => c.t, boot: () => c.t, setTimeout: () => 0, clearTimeout: () => {} };
  return c;
}

const A = { v4: 'tag4_a', v6: 'tag6_a' };
const B = { v4: 'tag4_b', v6: 'tag6_b' };

describe('NftTagger', () => {
  it('resolves only after the addresses are in the kernel set, v4 and v6 apart', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    nft.hold = true;
    let done = false;
    const p = t.tag(A, ['198.51.100.1', '2001:db8::1'], 600_000).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(done).toBe(false);
    nft.release();
    await p;
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(true);
    expect(nft.has('tag6_a', '2001:db8::1')).toBe(true);
    expect(nft.lines).toEqual(['add element inet splitwan tag4_a { 198.51.100.1 timeout 600s expires 600s }; add element inet splitwan tag6_a { 2001:db8::1 timeout 600s expires 600s }']);
  });

  it('coalesces answers that arrive while a transaction is in flight into one line', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    nft.hold = true;
    const first = t.tag(A, ['198.51.100.1'], 60_000);
    await new Promise((r) => setTimeout(r, 1));
    const rest = Array.from({ length: 100 }, (_, i) => t.tag(i % 2 ? A : B, [`203.0.113.${i}`], 60_000));
    nft.release();
    await first;
    await new Promise((r) => setTimeout(r, 1));
    nft.release();
    await Promise.all(rest);
    expect(nft.lines).toHaveLength(2);
    expect(t.transactions).toBe(2);
    for (let i = 0; i < 100; i++) expect(nft.has(i % 2 ? 'tag4_a' : 'tag4_b', `203.0.113.${i}`)).toBe(true);
  });

  it('does not re-send a tag that is far from expiry, and refreshes one that is near it', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1'], 600_000);
    c.t += 60_000;
    await t.tag(A, ['198.51.100.1'], 600_000);
    expect(nft.lines).toHaveLength(1);
    c.t += 300_000; // 240 s left of 600: under half
    await t.tag(A, ['198.51.100.1'], 600_000);
    expect(nft.lines).toHaveLength(2);
    c.t += 500_000; // still there thanks to the refresh
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(true);
  });

  it('moves an address answered for another rule: the most recent answer wins', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1'], 600_000);
    await t.tag(B, ['198.51.100.1'], 600_000);
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(false);
    expect(nft.has('tag4_b', '198.51.100.1')).toBe(true);
    expect(t.lookup('198.51.100.1')?.set).toBe('tag4_b');
  });

  it('does not delete from a set where the tag already expired (that would fail the line)', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1'], 10_000);
    c.t += 11_000;
    await t.tag(B, ['198.51.100.1'], 10_000);
    expect(nft.lines.at(-1)).toBe('add element inet splitwan tag4_b { 198.51.100.1 timeout 10s expires 10s }');
    expect(nft.has('tag4_b', '198.51.100.1')).toBe(true);
  });

  it('a bad element fails only the answer that carried it', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    nft.hold = true;
    const first = t.tag(A, ['198.51.100.9'], 60_000);
    await new Promise((r) => setTimeout(r, 1));
    const good = t.tag(A, ['198.51.100.1'], 60_000);
    const bad = t.tag(B, ['300.0.0.1'], 60_000);
    nft.hold = false;
    nft.release();
    await first;
    await expect(good).resolves.toBeUndefined();
    await expect(bad).rejects.toThrow(/invalid address/);
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(true);
    expect(t.lookup('300.0.0.1')).toBeUndefined();
  });
});

/** A session with the element path (LibNft's netlink batches): the changes are recorded, then applied as the same line would be. */
class FakeElementsNft extends FakeNft {
  readonly changes: ElementChanges[] = [];
  execCalls = 0;
  override exec(line: string): Promise<void> {
    this.execCalls++;
    return super.exec(line);
  }
  elements(c: ElementChanges): Promise<void> {
    this.changes.push(c);
    this.execCalls--; // the line below stands for the batch, not for an exec()
    return this.exec(renderElementChanges(c));
  }
}

describe('NftTagger over a session with an element path', () => {
  it('sends element changes, not lines: deletes from the old set before the add, timeouts in whole seconds', async () => {
    const c = clock();
    const nft = new FakeElementsNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1', '2001:db8::1'], 599_500);
    await t.tag(B, ['198.51.100.1'], 60_000);
    expect(nft.execCalls).toBe(0);
    expect(nft.changes).toHaveLength(2);
    expect(nft.changes[0]).toEqual({ table: 'splitwan', deletes: new Map(), adds: new Map([['tag4_a', [{ address: '198.51.100.1', timeoutS: 600 }]], ['tag6_a', [{ address: '2001:db8::1', timeoutS: 600 }]]]) });
    expect(nft.changes[1]).toEqual({ table: 'splitwan', deletes: new Map([['tag4_a', ['198.51.100.1']]]), adds: new Map([['tag4_b', [{ address: '198.51.100.1', timeoutS: 60 }]]]) });
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(false);
    expect(nft.has('tag4_b', '198.51.100.1')).toBe(true);
    expect(t.lookup('198.51.100.1')).toEqual({ set: 'tag4_b', expiresAt: c.t + 60_000 });
  });

  it('a failed batch is retried per request, and the shadow put back', async () => {
    const c = clock();
    const nft = new FakeElementsNft(c);
    const t = new NftTagger(nft, c);
    nft.hold = true;
    const first = t.tag(A, ['198.51.100.9'], 60_000);
    await new Promise((r) => setTimeout(r, 1));
    const good = t.tag(A, ['198.51.100.1'], 60_000);
    const bad = t.tag(B, ['300.0.0.1'], 60_000);
    nft.hold = false;
    nft.release();
    await first;
    await expect(good).resolves.toBeUndefined();
    await expect(bad).rejects.toThrow(/invalid address/);
    expect(nft.changes).toHaveLength(4); // first; good+bad together (failed); good alone; bad alone
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(true);
    expect(t.lookup('300.0.0.1')).toBeUndefined();
  });
});

describe('NftTagger: the shadow of what is installed', () => {
  it('counts per set, forgets one set, and drops expired tags from the counts', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1', '198.51.100.2', '2001:db8::1'], 60_000);
    await t.tag(B, ['203.0.113.1'], 10_000);
    expect(t.countsBySet()).toEqual(new Map([['tag4_a', 2], ['tag6_a', 1], ['tag4_b', 1]]));
    t.forgetSet('tag4_a');
    expect(t.lookup('198.51.100.1')).toBeUndefined();
    expect(t.lookup('2001:db8::1')).toEqual({ set: 'tag6_a', expiresAt: c.t + 60_000 });
    c.t += 10_000;
    expect(t.countsBySet()).toEqual(new Map([['tag6_a', 1]]));
    t.reset();
    expect(t.countsBySet()).toEqual(new Map());
  });

  it('pending: what is missing from the rule\'s set or near expiry there, in order', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1', '2001:db8::1'], 600_000);
    await t.tag(B, ['198.51.100.2'], 600_000);
    expect(t.pending(A, ['198.51.100.1', '2001:db8::1'], 600_000)).toEqual([]);
    expect(t.pending(A, ['198.51.100.3', '198.51.100.1', '198.51.100.2', '2001:db8::2'], 600_000)).toEqual(['198.51.100.3', '198.51.100.2', '2001:db8::2']);
    expect(t.pending(B, ['198.51.100.1'], 600_000)).toEqual(['198.51.100.1']);
    c.t += 300_001; // under half of 600 s left
    expect(t.pending(A, ['198.51.100.1', '2001:db8::1'], 600_000)).toEqual(['198.51.100.1', '2001:db8::1']);
  });

  it('expired entries leave the shadow a few per transaction, with no full sweep', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, Array.from({ length: 200 }, (_, i) => `198.51.100.${i}`), 10_000);
    await t.tag(B, Array.from({ length: 100 }, (_, i) => `203.0.113.${i}`), 10_000);
    await t.tag(A, ['2001:db8::1'], 600_000);
    expect(t.shadowEntries).toBe(301);
    c.t += 11_000;
    for (let i = 0; i < 40 && t.shadowEntries > 2; i++) await t.tag(A, [`192.0.2.${i}`], 600_000);
    // Only the live ones are left: the IPv6 one and those just tagged.
    expect(t.shadowEntries).toBeLessThan(45);
    expect(t.lookup('2001:db8::1')?.set).toBe('tag6_a');
    expect(t.lookup('192.0.2.0')?.set).toBe('tag4_a');
    expect(t.countsBySet().get('tag4_b')).toBeUndefined();
  });

  it('the incremental sweep survives a set forgotten and made anew mid-way', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, Array.from({ length: 100 }, (_, i) => `198.51.100.${i}`), 10_000);
    c.t += 11_000;
    await t.tag(B, ['203.0.113.1'], 600_000); // starts sweeping tag4_a
    t.forgetSet('tag4_a');
    await t.tag(A, ['198.51.100.1'], 600_000); // tag4_a anew: its fresh entry must stay
    for (let i = 0; i < 10; i++) await t.tag(B, [`203.0.113.${10 + i}`], 600_000);
    expect(t.lookup('198.51.100.1')?.set).toBe('tag4_a');
    expect(t.lookup('203.0.113.1')?.set).toBe('tag4_b');
  });

  it('a failed line leaves a moved address where it was, in the shadow as in the kernel', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.1'], 600_000);
    await expect(t.tag(B, ['198.51.100.1', '300.0.0.1'], 60_000)).rejects.toThrow(/invalid address/);
    expect(t.lookup('198.51.100.1')).toEqual({ set: 'tag4_a', expiresAt: c.t + 600_000 });
    expect(t.lookup('300.0.0.1')).toBeUndefined();
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(true);
    expect(t.countsBySet()).toEqual(new Map([['tag4_a', 1]]));
  });
});

describe('removeStaleHomes (the nft -i fallback\'s private HOMEs)', () => {
  it('removes those of dead processes only', () => {
    const dir = mkdtempSync(join(tmpdir(), `splitwan-homes-${process.pid}-`));
    try {
      for (const d of ['splitwan-nft-111-aaa', 'splitwan-nft-222-bbb', 'other-333']) mkdirSync(join(dir, d));
      writeFileSync(join(dir, 'splitwan-nft-111-aaa', '.nft.history'), 'add element ...');
      expect(removeStaleHomes(dir, (pid) => pid === 222)).toBe(1);
      expect(readdirSync(dir).sort()).toEqual(['other-333', 'splitwan-nft-222-bbb']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a refresh deletes and re-adds in one transaction, so kernels that keep an element\'s expiry on a re-add (before 6.12) extend it too', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    nft.keepExpiryOnReAdd = true;
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.7'], 600_000);
    c.t += 400_000; // less than half of the 600 s left: a hit re-tags
    expect(t.pending(A, ['198.51.100.7'], 600_000)).toEqual(['198.51.100.7']);
    await t.tag(A, ['198.51.100.7'], 600_000);
    expect(nft.lines.at(-1)).toBe('delete element inet splitwan tag4_a { 198.51.100.7 }; add element inet splitwan tag4_a { 198.51.100.7 timeout 600s expires 600s }');
    c.t += 300_000; // past the first expiry (600 s), within the refreshed one (1000 s)
    expect(nft.has('tag4_a', '198.51.100.7')).toBe(true);
    expect(t.lookup('198.51.100.7')?.set).toBe('tag4_a');
  });

  it('a refresh of an element the kernel lost (its set flushed behind our back) adds it afresh', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c);
    await t.tag(A, ['198.51.100.8'], 600_000);
    nft.sets.get('tag4_a')!.clear();
    c.t += 400_000;
    await t.tag(A, ['198.51.100.8'], 600_000);
    expect(nft.lines.slice(-2)).toEqual([
      'delete element inet splitwan tag4_a { 198.51.100.8 }; add element inet splitwan tag4_a { 198.51.100.8 timeout 600s expires 600s }',
      'add element inet splitwan tag4_a { 198.51.100.8 timeout 600s expires 600s }',
    ]);
    expect(nft.has('tag4_a', '198.51.100.8')).toBe(true);
  });
});

describe('NftTagger: a bounded shadow', () => {
  it('a full set refuses an answer that would add to it (TagSetFullError: the resolver answers SERVFAIL), counts it; refreshes still fit', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c, { maxPerSet: 3 });
    await t.tag(A, ['198.51.100.1', '198.51.100.2', '198.51.100.3'], 600_000);
    await expect(t.tag(A, ['198.51.100.4'], 600_000)).rejects.toBeInstanceOf(TagSetFullError);
    await expect(t.tag(A, ['198.51.100.4'], 600_000)).rejects.toThrow(/tag set tag4_a is full \(3 addresses\)/);
    expect(t.refusedFull).toBe(2);
    expect(nft.has('tag4_a', '198.51.100.4')).toBe(false);
    // Another set, or the other family, has its own room; a refresh of a tagged address fits.
    await t.tag(A, ['2001:db8::4'], 600_000);
    await t.tag(B, ['198.51.100.4'], 600_000);
    c.t += 400_000;
    await t.tag(A, ['198.51.100.1'], 600_000);
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(true);
    expect(t.shadowEntries).toBe(5);
  });

  it('at the bound, expired tags are swept out first: a new answer then fits', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c, { maxPerSet: 2 });
    await t.tag(A, ['198.51.100.1'], 10_000);
    await t.tag(A, ['198.51.100.2'], 600_000);
    c.t += 11_000;
    await t.tag(A, ['198.51.100.3'], 600_000);
    expect(nft.has('tag4_a', '198.51.100.3')).toBe(true);
    expect(t.refusedFull).toBe(0);
  });

  it('in one batch, the answers that fit are tagged and only the one past the bound is refused', async () => {
    const c = clock();
    const nft = new FakeNft(c);
    const t = new NftTagger(nft, c, { maxPerSet: 2 });
    nft.hold = true;
    const first = t.tag(A, ['198.51.100.1'], 600_000); // in flight
    await new Promise((r) => setTimeout(r, 1));
    const rs = [t.tag(A, ['198.51.100.2'], 600_000), t.tag(A, ['198.51.100.3'], 600_000), t.tag(A, ['198.51.100.2'], 600_000)].map((p) => p.then(() => 'ok', (e: Error) => e.name));
    nft.hold = false;
    nft.release();
    await first;
    await new Promise((r) => setTimeout(r, 5));
    nft.release();
    expect(await Promise.all(rs)).toEqual(['ok', 'TagSetFullError', 'ok']);
  });

  it('expiries are the monotonic clock\'s: a wall-clock step back an hour does not keep a tag alive that the kernel dropped', async () => {
    const mc = new ManualClock();
    const nft = new FakeNft(mc); // the kernel's timeouts are monotonic too
    const t = new NftTagger(nft, mc);
    await t.tag(A, ['198.51.100.1'], 60_000);
    await mc.advance(61_000);
    mc.stepWall(-3_600_000);
    expect(nft.has('tag4_a', '198.51.100.1')).toBe(false);
    // A cache hit asks: the address must be sent again, not skipped as "tagged".
    expect(t.pending(A, ['198.51.100.1'], 60_000)).toEqual(['198.51.100.1']);
    expect(t.lookup('198.51.100.1')).toBeUndefined();
  });
});
