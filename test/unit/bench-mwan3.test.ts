// The peer of `bench links`' balance: mwan3's balanced policy as nft rules,
// in its order and with its probabilities (mwan3_set_policy: each member
// inserted at the top with weight / the weight so far, in thousandths).
import { describe, expect, it } from 'vitest';
import { mwan3BalanceRules } from '../../bench/links.js';

describe('mwan3BalanceRules', () => {
  it('2:1: the last member is tried first with 333/1000, the first takes the rest; marks restored from and saved in conntrack', () => {
    expect(mwan3BalanceRules([{ mark: 0x100, weight: 2 }, { mark: 0x200, weight: 1 }], 'lan0')).toEqual([
      'iifname "lan0" ct mark and 0xff00 != 0 meta mark set ct mark',
      'iifname "lan0" meta mark and 0xff00 == 0 numgen random mod 1000 < 333 meta mark set 0x200',
      'iifname "lan0" meta mark and 0xff00 == 0 meta mark set 0x100',
      'iifname "lan0" ct mark set meta mark',
    ]);
  });

  it('1:1:1: 333, then 500, then the rest (each a third overall)', () => {
    const r = mwan3BalanceRules([{ mark: 0x100, weight: 1 }, { mark: 0x200, weight: 1 }, { mark: 0x300, weight: 1 }], 'br-lan');
    expect(r.slice(1, 4).map((l) => /< (\d+)/.exec(l)?.[1] ?? 'rest')).toEqual(['333', '500', 'rest']);
  });
});
