// Which gateway carries the `tunnel` path: pure, from each gateway's health.
//
// Ranking: up before degraded before unknown; then `priority` (lower first);
// then smoothed RTT; then config order. Stability rules on top, so traffic
// does not flap:
//   - a usable active gateway is left only for a better-ranked one by state
//     or priority, and only once that one has been up for `failbackHoldMs`;
//     RTT alone never moves traffic off a working gateway (it only orders
//     candidates when a move is needed anyway);
//   - a degraded active gateway is left for an up one of lower priority only
//     when that one is really faster (smoothed RTT lower by DEGRADE_FLOOR_MS
//     at least): degraded is judged against each gateway's own baseline, and
//     when all of them are slowed by one cause (this machine is busy and its
//     tunnel processes wait for a CPU, the shared uplink is saturated) a move
//     gains nothing and only shifts the flows;
//   - an active gateway that is down is left at once, for the best usable one;
//   - no usable gateway: null (the kill switch holds).
// A pinned gateway (`splitwan select NAME`) wins while it is usable.
import { DEGRADE_FLOOR_MS, type GatewayState } from './gateway-health.js';

export interface Candidate {
  name: string;
  priority: number;
  /** Position in the config (ties). */
  order: number;
  state: GatewayState;
  /** ms when it became usable; null when down. */
  upSince: number | null;
  rttMs: number | null;
}

export interface Selection {
  active: string | null;
  /** Why, in a few words, for the log line of a switch. */
  reason: string;
}

const STATE_RANK: Record<GatewayState, number> = { up: 0, degraded: 1, unknown: 2, down: 3 };

function compare(a: Candidate, b: Candidate): number {
  return (
    STATE_RANK[a.state] - STATE_RANK[b.state] ||
    a.priority - b.priority ||
    (a.rttMs ?? Number.POSITIVE_INFINITY) - (b.rttMs ?? Number.POSITIVE_INFINITY) ||
    a.order - b.order
  );
}

/** Better by state or priority (not by RTT): worth leaving a working gateway for. */
function betterClass(a: Candidate, b: Candidate): boolean {
  return STATE_RANK[a.state] < STATE_RANK[b.state] || (STATE_RANK[a.state] === STATE_RANK[b.state] && a.priority < b.priority);
}

/**
 * Whether leaving cur for a, better by state alone, gains anything: a's
 * smoothed RTT is lower by the degradation floor. Without RTTs (probes that
 * measure none) the states decide, as they must.
 */
function worthLeaving(a: Candidate, cur: Candidate): boolean {
  if (a.priority < cur.priority) return true;
  if (a.rttMs === null || cur.rttMs === null) return true;
  return a.rttMs + DEGRADE_FLOOR_MS <= cur.rttMs;
}

export function selectGateway(o: {
  candidates: readonly Candidate[];
  current: string | null;
  now: number;
  failbackHoldMs: number;
  pinned?: string | null;
}): Selection {
  const usable = o.candidates.filter((c) => c.state !== 'down').sort(compare);
  if (usable.length === 0) return { active: null, reason: 'no gateway is up: the kill switch holds' };
  if (o.pinned) {
    const p = usable.find((c) => c.name === o.pinned);
    if (p) return { active: p.name, reason: `pinned to ${p.name}` };
  }
  const best = usable[0]!;
  const cur = o.candidates.find((c) => c.name === o.current);
  if (!cur) return { active: best.name, reason: o.current === null ? `${best.name} is the best usable gateway` : `${o.current} is no longer configured` };
  if (cur.state === 'down') return { active: best.name, reason: `${cur.name} is down` };
  if (best.name === cur.name) return { active: cur.name, reason: 'unchanged' };
  // A better gateway by state or priority takes over once it has held up long enough.
  const held = (c: Candidate): boolean => c.upSince !== null && o.now - c.upSince >= o.failbackHoldMs;
  const better = usable.find((c) => c.name !== cur.name && betterClass(c, cur) && held(c) && c.state !== 'unknown' && worthLeaving(c, cur));
  if (better) {
    const why = STATE_RANK[better.state] < STATE_RANK[cur.state] ? `${cur.name} is ${cur.state}, ${better.name} is ${better.state}` : `${better.name} (priority ${better.priority}) is preferred and has been up ${Math.round((o.now - better.upSince!) / 1000)} s`;
    return { active: better.name, reason: why };
  }
  return { active: cur.name, reason: 'unchanged' };
}
