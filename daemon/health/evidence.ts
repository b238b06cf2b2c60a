// Whether a failed probe round says anything about the gateway: pure.
//
// A gateway declared down takes the tunnel path off it, and with no other
// gateway up the kill switch blocks everyone: that verdict must come from
// the gateway, not from this process's scheduler. A failed round is set
// aside as no evidence when
//   - its timer fired late by more than `lateLimitMs`: the event loop was
//     held up (a CPU-starved machine, a long GC) or the process stopped
//     (SIGSTOP, a debugger) for about as long as the probe waited, so an
//     answer may well have come while nothing watched (one that was already
//     waiting is read before a timeout is called: lib/deadline.ts);
//   - the machine slept (the boot clock ran ahead of the monotonic one)
//     within `resumeGraceMs` before the round ended: the network and the
//     tunnel's session come back a few seconds after a resume.
// A round that starts more than FROZEN_LATE_MS after it was due means this
// process did not run meanwhile (SIGSTOP, a cgroup freezer around a
// suspend, a VM paused): no clock jumps then, and the network may be coming
// back as after a resume, so it counts as a resume.
//   - the WAN link the gateway is reached by is failing itself (breakout.links:
//     its probes go unanswered too): the failure is the link's, and the link
//     monitor moves breakout (and the tunnels with it) to another link; the
//     gateway stays up meanwhile instead of going down with the link and
//     coming back a round after (its flows dropped in between).
// At most `maxInRow` failed rounds are set aside between two good rounds;
// after that failures count again, so a dead gateway on a machine that stays
// this busy is still left (later, not never).

export interface EvidenceOptions {
  /** A timer later than this made the round no evidence (ms). */
  lateLimitMs: number;
  /** Failed rounds ending this soon after a suspend are no evidence (ms). */
  resumeGraceMs: number;
  /** Rounds in a row that may be set aside. */
  maxInRow: number;
}

/** The health timeout 800 ms: a timer 200 ms late. */
export const LATE_FRACTION = 0.25;
export const LATE_FLOOR_MS = 100;
/** WireGuard retries a handshake after 5 s; wifi takes a few seconds to come back. */
export const RESUME_GRACE_MS = 10_000;
export const MAX_NO_EVIDENCE_IN_ROW = 10;
/** A round that started this late: the process was frozen (treated as a resume). */
export const FROZEN_LATE_MS = 2_000;

export function evidenceOptions(timeoutMs: number): EvidenceOptions {
  return { lateLimitMs: Math.max(LATE_FLOOR_MS, timeoutMs * LATE_FRACTION), resumeGraceMs: RESUME_GRACE_MS, maxInRow: MAX_NO_EVIDENCE_IN_ROW };
}

export interface FailedRound {
  /** How late the timer that failed it fired (ms). */
  lateMs: number;
  /** ms from the last suspend seen to the end of this round; null: none seen. */
  sinceResumeMs: number | null;
  /** How long that suspend was (ms). */
  sleptMs: number;
  /** Failed rounds of this gateway set aside since its last good round. */
  inRow: number;
  /** Why the WAN link the gateway is reached by is failing now (its failure is the link's); null or absent: it is not. */
  underlay?: string | null;
}

/** null: the failure counts; else why it is set aside. */
export function noEvidence(r: FailedRound, o: EvidenceOptions): string | null {
  if (r.inRow >= o.maxInRow) return null;
  if (r.underlay) return r.underlay;
  if (r.sinceResumeMs !== null && r.sinceResumeMs < o.resumeGraceMs) return `the machine slept ${Math.round(r.sleptMs / 1000)} s, ${Math.round(r.sinceResumeMs / 1000)} s ago`;
  if (r.lateMs > o.lateLimitMs) return `the probe's timer fired ${Math.round(r.lateMs)} ms late: this process was not running to see an answer`;
  return null;
}
