// An NftExec for unit tests: a model of nft's element semantics for the tag
// sets (what the tagger sends), and a session that can be closed. Lines that
// are not element changes (the map flip the failover sends through the router)
// are not modelled here: FakeRouter keeps that state.
import type { Clock } from '../../lib/logger.js';
import type { NftExec } from './nft-session-linux.js';

/**
 * A model of nft's element semantics (nft 1.0.6): a line is all-or-nothing;
 * deleting an element that is not there fails the line; adding one that is
 * refreshes its timeout. Lines can be held to test coalescing.
 */
export class FakeNft implements NftExec {
  readonly sets = new Map<string, Map<string, number>>();
  readonly lines: string[] = [];
  hold = false;
  /** Linux before 6.12: adding an element that is there keeps its expiry. */
  keepExpiryOnReAdd = false;
  private held: (() => void)[] = [];
  constructor(private readonly clock: Clock) {}
  release(): void {
    const h = this.held;
    this.held = [];
    for (const f of h) f();
  }
  has(set: string, addr: string): boolean {
    const exp = this.sets.get(set)?.get(addr);
    return exp !== undefined && exp > this.clock.now();
  }
  async exec(line: string): Promise<void> {
    this.lines.push(line);
    if (this.hold) await new Promise<void>((r) => this.held.push(r));
    const next = new Map([...this.sets].map(([k, v]) => [k, new Map(v)]));
    for (const part of line.split('; ')) {
      // `flush set` (a captive portal window closing: portal-rules.ts) empties a set.
      const flush = /^flush set inet splitwan (\S+)$/.exec(part);
      if (flush) {
        next.set(flush[1]!, new Map());
        continue;
      }
      const m = /^(add|delete) element inet splitwan (\S+) \{ (.*) \}$/.exec(part);
      if (!m) throw new Error(`bad line ${part}`);
      const set = next.get(m[2]!) ?? next.set(m[2]!, new Map()).get(m[2]!)!;
      for (const e of m[3]!.split(', ')) {
        // An element is an address, or a concatenation (`192.0.2.80 . tcp . 80`: the portal sets).
        const [addr, t] = e.split(' timeout ');
        if (addr === '300.0.0.1') throw new Error('Error: Could not process rule: invalid address');
        if (m[1] === 'delete') {
          if (!set.has(addr!) || set.get(addr!)! <= this.clock.now()) throw new Error('Error: Could not process rule: No such file or directory');
          set.delete(addr!);
        } else if (!(this.keepExpiryOnReAdd && set.has(addr!) && set.get(addr!)! > this.clock.now())) set.set(addr!, this.clock.now() + parseInt(t ?? '', 10) * 1000);
      }
    }
    this.sets.clear();
    for (const [k, v] of next) this.sets.set(k, v);
  }
}


/** A FakeNft that a daemon can close. */
export class FakeNftSession extends FakeNft {
  closed = false;
  close(): void {
    this.closed = true;
  }
}
