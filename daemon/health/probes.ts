// One probe round for one gateway, through that gateway's own tunnel: every
// socket comes from the path dialer for `gw:<name>` (SO_MARK), so gateways
// that share a tunnel address and a resolver address are still probed apart.
//
// Kinds: handshake (age of WireGuard's latest handshake, and rx growing:
// free), dns (a query to the gateway's resolvers), http (a GET, e.g. a
// generate_204 URL), tcp (a connect), icmp (an echo, by `ping -m MARK`). A
// round is good when every probe is; its RTT is the smallest a probe measured.
//
// Timing judges the gateway, not this process: a dns probe's round trip
// ends at its answer's kernel receive time, and a timeout is reported with
// how late its timer fired (lib/deadline.ts), so the monitor can take a
// round the process was too busy to watch as no evidence.
// SPLITWAN_PROBE_TIMING=naive brings back the old timing (timers decide
// alone, round trips end when an answer is read): for `bench health-load`
// only, which runs it beside the new one.
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import * as dnsPacket from 'dns-packet';
import type { Agent } from 'undici';
import { undici } from '../../lib/undici-lazy.js';
import type { PathName, ProbeSpec, Upstream } from '../../config/types.js';
import { parseHostPort } from '../../lib/ip.js';
import type { Clock } from '../../lib/clock.js';
import { latenessOf, withDeadline } from '../../lib/deadline.js';
import { readQuestion, type Exchange, type ExchangeOptions, type PathDialer, type Question } from '../../dns/forwarder.js';
import { responseInfo } from '../../dns/wire.js';
import type { TunnelStatus } from '../tunnel/types.js';

export interface ProbeResult {
  ok: boolean;
  rttMs: number | null;
  error: string | null;
  /**
   * A failed round: how much later than due the timer that failed it fired
   * (ms; 0 when no timer failed it, e.g. a refused connection). Large: the
   * process was not running to see an answer.
   */
  lateMs?: number;
}

/** The old probe timing, for `bench health-load`'s comparison only. */
export const NAIVE_TIMING = process.env.SPLITWAN_PROBE_TIMING === 'naive';

export interface ProbeTarget {
  name: string;
  path: PathName;
  ifname: string;
  /** The gateway's resolvers (dns probes). */
  dns: readonly Upstream[];
  /** The fwmark of its path (icmp probes). */
  mark: number;
  probes: readonly ProbeSpec[];
}

export interface ProbeDeps {
  dialer: PathDialer;
  /** One exchange with one resolver through a path, timed (Forwarder.exchange fits). */
  exchange(query: Buffer, q: Question, upstream: Upstream, path: PathName, o?: ExchangeOptions): Promise<Exchange>;
  /** The tunnel's state now (handshake probes). */
  tunnel(ifname: string): Promise<TunnelStatus | null>;
  /** `ping` through a mark; resolves with the RTT in ms, rejects on loss. */
  ping(target: string, mark: number, timeoutMs: number): Promise<number>;
  clock: Clock;
  timeoutMs: number;
}

/** A handshake older than this is stale: WireGuard rekeys every 2 minutes when traffic flows. */
export const HANDSHAKE_STALE_MS = 180_000;
/**
 * Nothing received for this long on a tunnel with a recent handshake: dead.
 * Keepalives (25 s in wg-quick files) and other probes' answers make rx grow
 * on a live tunnel.
 */
export const RX_STALL_MS = 35_000;

const ok = (rttMs: number | null): ProbeResult => ({ ok: true, rttMs, error: null });
const fail = (error: string, lateMs = 0): ProbeResult => ({ ok: false, rttMs: null, error, lateMs });

export class Prober {
  /** rx bytes at the previous handshake probe and when they last grew, per interface. */
  private readonly lastRx = new Map<string, { bytes: number; since: number }>();
  /** The latest handshake seen per interface (wg's wall-clock value), when it was first seen (monotonic) and how old it was then. */
  private readonly handshakes = new Map<string, { value: number; seenAt: number; ageThen: number }>();
  private readonly agents = new Map<string, Agent>();
  /** Probe queries by name (question()). */
  private readonly questions = new Map<string, { query: Buffer; q: Question } | null>();
  private timeoutMs: number;

  constructor(private readonly d: ProbeDeps) {
    this.timeoutMs = d.timeoutMs;
  }

  /** A reload's `health.timeout`: probes from now on wait this long. */
  setTimeoutMs(ms: number): void {
    if (ms === this.timeoutMs) return;
    this.timeoutMs = ms;
    this.close(); // http agents dial with the timeout they were made with
  }

  /** Runs every probe of the target at once; a round is good when all are. */
  async round(t: ProbeTarget): Promise<ProbeResult> {
    const results = await Promise.all(t.probes.map((p) => this.one(t, p).catch((e: unknown) => fail((e as Error).message, latenessOf(e)))));
    const bad = results.filter((r) => !r.ok);
    if (bad.length) return fail(bad.map((r) => r.error).join('; '), Math.max(...bad.map((r) => r.lateMs ?? 0)));
    const rtts = results.map((r) => r.rttMs).filter((x): x is number => x !== null);
    return ok(rtts.length ? Math.min(...rtts) : null);
  }

  close(): void {
    for (const a of this.agents.values()) void a.close();
    this.agents.clear();
  }

  private one(t: ProbeTarget, p: ProbeSpec): Promise<ProbeResult> {
    switch (p.kind) {
      case 'handshake':
        return this.handshake(t);
      case 'dns':
        return this.dns(t, p.name ?? '.');
      case 'tcp':
        return this.tcp(t, p.target ?? '');
      case 'http':
        return this.http(t, p.url ?? '', p.expect);
      case 'icmp':
        return this.icmp(t, p.target ?? '');
    }
  }

  private async handshake(t: ProbeTarget): Promise<ProbeResult> {
    const s = await this.d.tunnel(t.ifname);
    if (!s || !s.up) return fail('handshake: the tunnel is not up');
    if (s.latestHandshake === null) return fail('handshake: none yet');
    const now = this.d.clock.now();
    // WireGuard reports a handshake in wall time. Its age is taken from the
    // wall clock once, when a new handshake is first seen, and from the
    // monotonic clock after that: a wall-clock step (NTP's first sync) does
    // not make a fresh handshake look hours old.
    let hs = this.handshakes.get(t.ifname);
    if (hs === undefined || hs.value !== s.latestHandshake) {
      hs = { value: s.latestHandshake, seenAt: now, ageThen: Math.max(0, this.d.clock.wall() - s.latestHandshake) };
      this.handshakes.set(t.ifname, hs);
    }
    const age = hs.ageThen + (now - hs.seenAt);
    if (age > HANDSHAKE_STALE_MS) return fail(`handshake: the latest is ${Math.round(age / 1000)} s old`);
    const before = this.lastRx.get(t.ifname);
    if (before === undefined || s.rxBytes !== before.bytes) this.lastRx.set(t.ifname, { bytes: s.rxBytes, since: now });
    else if (now - before.since > RX_STALL_MS) return fail(`handshake: nothing received for ${Math.round((now - before.since) / 1000)} s`);
    return ok(null);
  }

  /**
   * The probe query for `name`, encoded once (issue 17: every round of every gateway encoded and parsed it
   * again). Its ID does not matter: each exchange sends a copy under an ID of its own.
   */
  private question(name: string): { query: Buffer; q: Question } | null {
    let asked = this.questions.get(name);
    if (asked === undefined) {
      const qname = name === '.' ? '' : name.replace(/\.$/, '');
      const query = dnsPacket.encode({ type: 'query', id: randomInt(0, 0x10000), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: qname === '' ? 'NS' : 'A', name: qname === '' ? '.' : qname, class: 'IN' }] });
      const q = readQuestion(query);
      asked = q === null ? null : { query, q };
      // Names come from the config's probes: a handful; a reload's new ones join, none is dropped (bounded anyway).
      if (this.questions.size >= 256) this.questions.clear();
      this.questions.set(name, asked);
    }
    return asked;
  }

  private async dns(t: ProbeTarget, name: string): Promise<ProbeResult> {
    if (t.dns.length === 0) return fail('dns: the gateway has no resolver');
    const asked = this.question(name);
    if (asked === null) return fail(`dns: cannot ask for ${name}`);
    const { query, q } = asked;
    // Every resolver at once, the first answer wins: a round takes one timeout, not one per resolver.
    const { resp, rttMs } = await Promise.any(t.dns.map((u) => this.d.exchange(query, q, u, t.path, { naive: NAIVE_TIMING }))).catch((e: AggregateError) => {
      throw Object.assign(new Error(`dns: ${e.errors.map((x: Error, i) => `${t.dns[i]!.text}: ${x.message}`).join('; ')}`), { lateMs: latenessOf(e) });
    });
    const info = responseInfo(resp);
    // Any well-formed answer, whatever its rcode, proves the tunnel and the
    // resolver behind it work: a forwarding resolver may well refuse the root
    // NS question it is asked by default.
    if (info === null) return fail('dns: malformed answer');
    return ok(rttMs);
  }

  private async tcp(t: ProbeTarget, target: string): Promise<ProbeResult> {
    const hp = parseHostPort(target);
    if ('error' in hp) return fail(`tcp: ${hp.error}`);
    const start = performance.now();
    const s = await this.d.dialer.tcp(t.path, hp.host, hp.port, this.timeoutMs);
    const rtt = performance.now() - start;
    s.destroy();
    return ok(rtt);
  }

  private async icmp(t: ProbeTarget, target: string): Promise<ProbeResult> {
    if (isIP(target) === 0) return fail(`icmp: ${target} is not an IP address`);
    return ok(await this.d.ping(target, t.mark, this.timeoutMs));
  }

  private async http(t: ProbeTarget, url: string, expect?: number): Promise<ProbeResult> {
    const { Agent, request } = await undici();
    let agent = this.agents.get(t.path);
    if (!agent) {
      const dialer = this.d.dialer;
      const timeoutMs = this.timeoutMs;
      agent = new Agent({
        keepAliveTimeout: 1, // a probe measures a fresh connection each time
        connect: (opts, cb) => {
          const host = opts.hostname.replace(/^\[|\]$/g, '');
          if (isIP(host) === 0) return cb(new Error(`http probe host ${host} must be an IP address`), null);
          const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
          dialer
            .tcp(t.path, host, port, timeoutMs)
            .then((socket) => {
              if (opts.protocol !== 'https:') return cb(null, socket);
              const s = tls.connect({ socket, ...(opts.servername ? { servername: opts.servername } : {}), ALPNProtocols: ['http/1.1'] }, () => cb(null, s));
              s.once('error', (e) => cb(e, null));
            })
            .catch((e: Error) => cb(e, null));
        },
      });
      this.agents.set(t.path, agent);
    }
    const start = performance.now();
    // undici's own timeouts are a backstop (twice as long); ours is judged after the I/O that was ready.
    const res = await withDeadline(
      request(url, { method: 'GET', dispatcher: agent, headersTimeout: 2 * this.timeoutMs, bodyTimeout: 2 * this.timeoutMs }),
      this.timeoutMs,
      'http',
      (late) => void late.body.dump().catch(() => undefined),
      { naive: NAIVE_TIMING },
    );
    await res.body.dump();
    const rtt = performance.now() - start;
    const good = expect !== undefined ? res.statusCode === expect : res.statusCode >= 200 && res.statusCode < 400;
    return good ? ok(rtt) : fail(`http: status ${res.statusCode}${expect !== undefined ? ` (expected ${expect})` : ''}`);
  }
}
