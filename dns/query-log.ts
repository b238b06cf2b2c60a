// The query log: every DNS decision the resolver makes, as one record in a
// bounded in-memory ring (`queryLog.size`), read by `splitwan log`, the
// dashboard and the optional log file.
//
// The resolver writes a record on its hot path, so writing is one counter
// increment and a bounded copy of references and numbers into a slot
// allocated in advance: no allocation, no formatting, no I/O. The cache-hit
// fast path hands over the question's wire bytes as the latin1 string it
// already made for its own lookup (at most 259 characters); the name and type
// are decoded from it only when someone reads the record. A record keeps its
// rule's label (a reference to the policy's own string), so a reload that
// renumbers rules does not relabel old records; it keeps no reference to the
// policy itself, which would hold a replaced policy (and its lists) in
// memory until the ring came round.
//
// Privacy (`queryLog.privacy`): `off` records nothing (the resolver checks
// one boolean); `anonymize` keeps clients as their network (IPv4 /24, IPv6
// /48) and never names them; `full` (the default) keeps addresses.
import type { Clock } from '../lib/logger.js';
import { formatIp, parseIp } from '../lib/ip.js';
import { parseQuery, RCODE, TYPE } from './wire.js';

export type QueryLogPrivacy = 'off' | 'anonymize' | 'full';

/**
 * What became of a query: answered (from the cache or an upstream), stale
 * (an expired answer served because every upstream failed), blocked (a rule
 * or blockEncryptedDns), servfail, limited (the client asked too much: dropped
 * or refused), local (answered here: meta types, the DoH canary, no IPv6 on
 * the path).
 */
export type QueryResult = 'answered' | 'stale' | 'blocked' | 'servfail' | 'limited' | 'local';

/** Rule number of a record no rule decided (answered before any policy). */
export const NO_RULE = -2;

/** The rules of the policy a record was decided by (config/policy.ts's Policy fits). */
export interface RuleSource {
  readonly rules: readonly { readonly label: string }[];
}

/** One record as read: every field decoded. */
export interface QueryLogEntry {
  /** Increasing with every record: `since` continues from the last one seen. */
  seq: number;
  /** Unix ms. */
  at: number;
  client: string;
  /** From the LAN's leases or hosts files (set by the reader); null: none known (always null when anonymized). */
  clientName: string | null;
  name: string;
  /** A, AAAA, HTTPS... or TYPE123. */
  type: string;
  /** 0-based rule index; null: the default, or no rule (answered before any policy: see result). */
  rule: number | null;
  ruleLabel: string | null;
  /** The path the answer's addresses are routed through (breakout, tunnel, gw:NAME), or block; null: none decided. */
  path: string | null;
  answers: string[];
  /** Answered from the cache. */
  cached: boolean;
  /** ms the upstream took (misses); null for answers from the cache or made here. */
  upstreamMs: number | null;
  /** NOERROR, NXDOMAIN, SERVFAIL, REFUSED... */
  rcode: string;
  result: QueryResult;
}

/** A preallocated ring slot: fields are overwritten, never reallocated. */
interface Slot {
  mono: number;
  client: string;
  /** The fast path's question bytes (name, type, class) as latin1, or null when `name` is set. */
  wireQ: string | null;
  name: string;
  qtype: number;
  /** The rule's label when it was decided (the policy's own string, not a copy). */
  label: string | null;
  rule: number;
  path: string;
  answers: string | readonly string[] | null;
  hit: boolean;
  rcode: number;
  upstreamMs: number;
  result: QueryResult;
}

const newSlot = (): Slot => ({ mono: 0, client: '', wireQ: null, name: '', qtype: 0, label: null, rule: NO_RULE, path: '', answers: null, hit: false, rcode: 0, upstreamMs: -1, result: 'answered' });

const TYPE_NAMES = new Map<number, string>(Object.entries(TYPE).map(([k, v]) => [v, k]));
const RCODE_NAMES = new Map<number, string>(Object.entries(RCODE).map(([k, v]) => [v, k]));
export const typeName = (t: number): string => TYPE_NAMES.get(t) ?? `TYPE${t}`;
/** -1: no answer was sent (a limited UDP query, dropped). */
export const rcodeName = (r: number): string => (r < 0 ? 'DROPPED' : (RCODE_NAMES.get(r) ?? `RCODE${r}`));

/** A client address as `anonymize` keeps it: IPv4 to its /24, IPv6 to its /48 (the host part zeroed). */
export function anonymizeAddress(address: string): string {
  const ip = parseIp(address.split('%')[0]!);
  if (ip === null) return 'anonymous';
  const w = ip.w;
  return formatIp(ip.family === 4 ? { family: 4, w: [0, 0, 0, (w[3] & 0xffffff00) >>> 0] } : { family: 6, w: [w[0], w[1] & 0xffff0000, 0, 0] });
}

/** Clients anonymized per address, remembered: a flood of addresses clears it rather than growing it. */
const ANON_MEMO_MAX = 4096;

/** The question of a fast-path record, decoded: the name and type parseQuery would give. */
function decodeQuestion(wireQ: string): { name: string; qtype: number } {
  const msg = Buffer.alloc(12 + wireQ.length);
  msg[5] = 1; // qdcount
  msg.write(wireQ, 12, 'latin1');
  const q = parseQuery(msg);
  return 'error' in q ? { name: '?', qtype: 0 } : { name: q.qname, qtype: q.qtype };
}

export interface QueryLogOptions {
  privacy: QueryLogPrivacy;
  /** Records kept (the oldest are overwritten). */
  size: number;
}

export class QueryLog {
  /** False when privacy is off: the resolver records nothing (one check per query). */
  on = false;
  private privacy: QueryLogPrivacy = 'off';
  private slots: Slot[] = [];
  /** Records written so far: the next one's seq. */
  private written = 0;
  /** The first seq readers may see: records before it were written under a laxer privacy setting. */
  private floor = 0;
  private readonly anon = new Map<string, string>();

  constructor(
    private readonly clock: Pick<Clock, 'now' | 'wall'>,
    o: QueryLogOptions = { privacy: 'full', size: 10_000 },
  ) {
    this.configure(o);
  }

  /** Applies the config's settings; a smaller or larger ring keeps the newest records that fit. */
  configure(o: QueryLogOptions): void {
    const size = o.privacy === 'off' ? 0 : Math.max(1, Math.floor(o.size));
    if (o.privacy !== this.privacy && o.privacy !== 'full') {
      // Turning privacy up forgets what was recorded under the laxer setting
      // (seq goes on, so a follower's `since` stays valid).
      for (const s of this.slots) Object.assign(s, newSlot());
      this.floor = this.written;
      this.anon.clear();
    }
    this.privacy = o.privacy;
    if (size !== this.slots.length) {
      const keep = this.slots.length === 0 ? [] : this.ordered(Math.min(size, this.count));
      this.slots = Array.from({ length: size }, newSlot);
      // Kept records keep their seq: the ring's index is seq % size.
      for (const { seq, slot } of keep) Object.assign(this.slots[seq % size]!, slot);
    }
    this.on = size > 0;
  }

  get settings(): { privacy: QueryLogPrivacy; size: number } {
    return { privacy: this.privacy, size: this.slots.length };
  }

  /** The seq the next record gets. */
  get nextSeq(): number {
    return this.written;
  }

  /** Records held now. */
  get count(): number {
    return Math.min(this.written - this.floor, this.slots.length);
  }

  private clientOf(address: string): string {
    if (this.privacy !== 'anonymize') return address;
    let a = this.anon.get(address);
    if (a === undefined) {
      if (this.anon.size >= ANON_MEMO_MAX) this.anon.clear();
      a = anonymizeAddress(address);
      this.anon.set(address, a);
    }
    return a;
  }

  /** The cache-hit fast path: the question as the latin1 string of its wire bytes (name, type, class). */
  hit(mono: number, client: string, wireQ: string, policy: RuleSource, rule: number, path: string, answers: string | readonly string[], rcode: number): void {
    const slots = this.slots;
    const s = slots[this.written++ % slots.length]!;
    s.mono = mono;
    s.client = this.clientOf(client);
    s.wireQ = wireQ;
    s.qtype = 0;
    s.label = rule >= 0 ? (policy?.rules[rule]?.label ?? null) : null;
    s.rule = rule;
    s.path = path;
    s.answers = answers;
    s.hit = true;
    s.rcode = rcode;
    s.upstreamMs = -1;
    s.result = 'answered';
  }

  /** Every other decision. `rule`: NO_RULE when none decided; `path` '' when none; `upstreamMs` -1 when no upstream was asked. */
  record(
    mono: number,
    client: string,
    name: string,
    qtype: number,
    policy: RuleSource | null,
    rule: number,
    path: string,
    hit: boolean,
    answers: string | readonly string[] | null,
    rcode: number,
    upstreamMs: number,
    result: QueryResult,
  ): void {
    const slots = this.slots;
    const s = slots[this.written++ % slots.length]!;
    s.mono = mono;
    s.client = this.clientOf(client);
    s.wireQ = null;
    s.name = name;
    s.qtype = qtype;
    s.label = rule >= 0 ? (policy?.rules[rule]?.label ?? null) : null;
    s.rule = rule;
    s.path = path;
    s.answers = answers;
    s.hit = hit;
    s.rcode = rcode;
    s.upstreamMs = upstreamMs;
    s.result = result;
  }

  /** The newest `n` slots with their seq, oldest first (copies: the ring goes on being written). */
  private ordered(n: number): { seq: number; slot: Slot }[] {
    const out: { seq: number; slot: Slot }[] = [];
    const size = this.slots.length;
    for (let seq = this.written - Math.min(n, this.count); seq < this.written; seq++) out.push({ seq, slot: { ...this.slots[seq % size]! } });
    return out;
  }

  private decode(seq: number, s: Slot, wallOffset: number): QueryLogEntry {
    let name = s.name;
    let qtype = s.qtype;
    if (s.wireQ !== null) ({ name, qtype } = decodeQuestion(s.wireQ));
    const rule = s.rule >= 0 ? s.rule : null;
    const answers = s.answers === null ? [] : typeof s.answers === 'string' ? [s.answers] : [...s.answers];
    return {
      seq,
      at: Math.round(s.mono + wallOffset),
      client: s.client,
      clientName: null,
      name,
      type: typeName(qtype),
      rule,
      ruleLabel: rule === null ? (s.rule === -1 ? 'default' : null) : (s.label ?? `rule ${rule}`),
      path: s.path === '' ? null : s.path,
      answers,
      cached: s.hit,
      upstreamMs: s.upstreamMs < 0 ? null : Math.round(s.upstreamMs * 10) / 10,
      rcode: rcodeName(s.rcode),
      result: s.result,
    };
  }

  /**
   * Records from `since` on (oldest first), at most `max`; those already
   * overwritten are skipped. `next` is where the following call continues.
   */
  since(since: number, max = 1000): { entries: QueryLogEntry[]; next: number; missed: number } {
    const first = Math.max(since, this.written - this.count);
    const missed = Math.max(0, first - since);
    const end = Math.min(this.written, first + max);
    const wallOffset = this.clock.wall() - this.clock.now();
    const size = this.slots.length;
    const entries: QueryLogEntry[] = [];
    for (let seq = first; seq < end; seq++) entries.push(this.decode(seq, this.slots[seq % size]!, wallOffset));
    return { entries, next: end, missed };
  }

  /** The newest records that `keep` accepts, newest first, at most `limit` (reads at most the whole ring once). */
  latest(limit: number, keep: (e: QueryLogEntry) => boolean = () => true): QueryLogEntry[] {
    const out: QueryLogEntry[] = [];
    const wallOffset = this.clock.wall() - this.clock.now();
    const size = this.slots.length;
    for (let seq = this.written - 1; seq >= this.written - this.count && out.length < limit; seq--) {
      const e = this.decode(seq, this.slots[seq % size]!, wallOffset);
      if (keep(e)) out.push(e);
    }
    return out;
  }
}
