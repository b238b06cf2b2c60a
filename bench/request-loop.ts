// bench/failover-client-child.js run in a lab namespace, its lines kept as
// requests: `bench failover` and `bench links` both judge a failover by them
// (when the first request went by the other path, when requests were good
// again).
import { join } from 'node:path';
import { inNs, Proc } from './proc.js';

export interface Req {
  start: number;
  end: number;
  ok: boolean;
  /** The address the echo server saw (which path the request took); null for a failed one. */
  remote: string | null;
  /** Why a failed one failed (TIMEOUT, ECONNREFUSED...); null for a good one. */
  code: string | null;
}

/** A GET every `intervalMs` on a new connection, each abandoned after `timeoutMs`. */
export class RequestLoop {
  readonly reqs: Req[] = [];
  readonly proc: Proc;
  private buf = '';

  constructor(ns: string, url: string, intervalMs: number, timeoutMs: number, name = `client ${url}`) {
    this.proc = new Proc(name, inNs(ns, [process.execPath, join(import.meta.dirname, 'failover-client-child.js'), url, String(intervalMs), String(timeoutMs)]));
    this.proc.child.stdout!.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const m = /^([\d.]+) ([\d.]+) (ok|err) (\S+)$/.exec(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
        if (m) this.reqs.push({ start: Number(m[1]), end: Number(m[2]), ok: m[3] === 'ok', remote: m[3] === 'ok' ? m[4]! : null, code: m[3] === 'err' ? m[4]! : null });
      }
    });
  }

  ready(): Promise<void> {
    return this.proc.until('the client loop', () => this.proc.tail.includes('ready'), 10_000);
  }

  /** The remote the last `n` finished requests all went through, if it is one of `among`; else null. */
  stableOn(n: number, among: readonly string[]): string | null {
    if (this.reqs.length < n) return null;
    const last = this.reqs.slice(-n);
    const r = last[0]!.remote;
    return r !== null && among.includes(r) && last.every((q) => q.ok && q.remote === r) ? r : null;
  }

  /** The last `n` finished requests all succeeded, each through one of `among` (not necessarily the same). */
  goodOn(n: number, among: readonly string[]): boolean {
    const last = this.reqs.slice(-n);
    return last.length === n && last.every((q) => q.ok && among.includes(q.remote!));
  }

  /** The first good request through `remote` that ended after t. */
  firstBy(remote: string, t: number): Req | null {
    return this.reqs.find((q) => q.end > t && q.ok && q.remote === remote) ?? null;
  }

  /** Fault at t0 → the end of the first good request started after the last failed one (none failed: the first good one after t0). */
  recoveredAt(t0: number): number | null {
    const after = this.reqs.filter((q) => q.start >= t0);
    const lastFail = Math.max(t0, ...after.filter((q) => !q.ok).map((q) => q.start));
    const ok = after.find((q) => q.start > lastFail && q.ok);
    return ok ? ok.end : null;
  }

  /** The last requests, for a timeout's message. */
  recent(): string {
    return this.reqs
      .slice(-8)
      .map((q) => (q.ok ? q.remote : 'err'))
      .join(' ');
  }

  between(from: number, to: number): Req[] {
    return this.reqs.filter((q) => q.end > from && q.end <= to);
  }

  /** Requests hit by a fault at t0 that the switch at tB fixed: finished after t0, started before tB. */
  hit(t0: number, tB: number): Req[] {
    return this.reqs.filter((q) => q.end > t0 && q.start < tB);
  }

  /** Requests started in [from, to) (call once they have all finished). */
  started(from: number, to: number): Req[] {
    return this.reqs.filter((q) => q.start >= from && q.start < to);
  }
}
