// Prometheus metrics (prom-client), on `metrics.listen` when configured.
// Most figures are read at scrape time from what the daemon already keeps
// (resolver counters, the health monitor, the tagger, the proxy), so the hot
// paths pay nothing for them; events (failovers, reloads, list refreshes,
// upstream latencies) are counted as they happen.
import http from 'node:http';
import { createRequire } from 'node:module';
import type { Counter, Histogram, Registry } from 'prom-client';
import type { UpstreamResult } from '../dns/forwarder.js';

const PREFIX = 'splitwan_';
/**
 * prom-client's default gauges whose names end in _total, which Prometheus
 * keeps for counters (`promtool check metrics` fails on them). They are the
 * sums of the per-type gauges of the same name without _total
 * (splitwan_nodejs_active_handles{type}...): sum() those instead.
 */
const DEFAULT_GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface MetricsSource {
  dns(): {
    byPath: Record<string, { hits: number; misses: number; blocked: number }>;
    servfail: number;
    formerr: number;
    hits: number;
    misses: number;
    /** Questions answered locally because no resolver is asked them. */
    refusedLocally?: number;
    /** Misses dropped by the per-client limit. */
    clientLimited?: number;
  };
  gateways(): { name: string; state: string; active: boolean; rttMs: number | null; loss: number }[];
  /** Tagged addresses per path now. */
  tagged(): Record<string, number>;
  proxy(): Record<string, { connections: number; active: number; bytesUp: number; bytesDown: number }> | null;
  /** Connections the proxy reset at accept, by reason (not-redirected, loop, cap, client-cap). */
  proxyRefused?(): Record<string, number> | null;
  /** Hits per rule: index (-1: default), a short label, count. */
  ruleHits(): { rule: number; label: string; count: number }[];
  /** Answers refused because a tag set was full (NftTagger.refusedFull). */
  tagSetFull?(): number;
}

type PromClient = typeof import('prom-client');
let prom: PromClient | null = null;
/**
 * prom-client, loaded by the first Metrics: the daemon makes one only when a
 * metrics endpoint is configured, and a router without one does not carry
 * the library (issue 17: the footprint on a router).
 */
const promClient = (): PromClient => (prom ??= createRequire(import.meta.url)('prom-client') as PromClient);

export const GATEWAY_STATES = ['unknown', 'up', 'degraded', 'down'] as const;

export class Metrics {
  private readonly r: Registry;
  private defaults = false;
  private readonly failovers: Counter<'from' | 'to'>;
  private readonly linkFailovers: Counter<'from' | 'to'>;
  private readonly reloads: Counter<'result'>;
  private readonly listRefreshes: Counter<'list' | 'result'>;
  private readonly upstreamLatency: Histogram<'path' | 'result'>;
  private server: http.Server | null = null;

  /**
   * The registry, with prom-client's process metrics from the first time it
   * is read (a scrape): they run an event-loop delay monitor, a timer every
   * 10 ms, and a GC observer, which woke an idle daemon without a metrics
   * endpoint 100 times a second (issue 17: the footprint on a router).
   */
  get registry(): Registry {
    if (!this.defaults) {
      this.defaults = true;
      promClient().collectDefaultMetrics({ register: this.r, prefix: PREFIX });
      for (const name of DEFAULT_GAUGES_NAMED_LIKE_COUNTERS) this.r.removeSingleMetric(PREFIX + name);
    }
    return this.r;
  }

  constructor(private readonly src: MetricsSource) {
    const { Counter, Gauge, Histogram, Registry } = promClient();
    this.r = new Registry();
    const r = this.r;
    new Counter({
      name: 'splitwan_dns_queries_total',
      help: 'DNS queries answered, by path and result (hit: from the cache, miss: forwarded, blocked).',
      labelNames: ['path', 'result'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const [path, c] of Object.entries(src.dns().byPath)) {
          if (c.hits) this.inc({ path, result: 'hit' }, c.hits);
          if (c.misses) this.inc({ path, result: 'miss' }, c.misses);
          if (c.blocked) this.inc({ path, result: 'blocked' }, c.blocked);
        }
      },
    });
    new Counter({
      name: 'splitwan_dns_errors_total',
      help: 'DNS answers that were errors: servfail (no upstream answered) or formerr (a malformed query).',
      labelNames: ['rcode'],
      registers: [r],
      collect: function () {
        this.reset();
        const d = src.dns();
        this.inc({ rcode: 'servfail' }, d.servfail);
        this.inc({ rcode: 'formerr' }, d.formerr);
      },
    });
    new Counter({
      name: 'splitwan_dns_limited_total',
      help: 'DNS queries not forwarded: refused locally (meta types, unknown classes) or dropped by the per-client limit on upstream queries.',
      labelNames: ['reason'],
      registers: [r],
      collect: function () {
        this.reset();
        const d = src.dns();
        this.inc({ reason: 'refused-locally' }, d.refusedLocally ?? 0);
        this.inc({ reason: 'client-limit' }, d.clientLimited ?? 0);
      },
    });
    new Counter({
      name: 'splitwan_tag_set_full_total',
      help: 'Answers refused (SERVFAIL) because a tag set they would add to was full: never left untagged.',
      registers: [r],
      collect: function () {
        this.reset();
        this.inc(src.tagSetFull?.() ?? 0);
      },
    });
    new Gauge({
      name: 'splitwan_dns_cache_hit_ratio',
      help: 'Share of answered queries served from the cache since start.',
      registers: [r],
      collect: function () {
        const d = src.dns();
        const total = d.hits + d.misses;
        this.set(total ? d.hits / total : 0);
      },
    });
    this.upstreamLatency = new Histogram({
      name: 'splitwan_dns_upstream_seconds',
      help: 'Time an upstream resolver took to answer (or fail), by path and result (ok; servfail, refused, formerr, notimp: an answer that is a failure; failed: none).',
      labelNames: ['path', 'result'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers: [r],
    });
    new Gauge({
      name: 'splitwan_gateway_up',
      help: 'Gateway health: 1 when up or degraded (usable), 0 otherwise.',
      labelNames: ['gateway'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const g of src.gateways()) this.set({ gateway: g.name }, g.state === 'up' || g.state === 'degraded' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'splitwan_gateway_state',
      help: 'Gateway health state: 1 for the current state.',
      labelNames: ['gateway', 'state'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const g of src.gateways()) for (const s of GATEWAY_STATES) this.set({ gateway: g.name, state: s }, g.state === s ? 1 : 0);
      },
    });
    new Gauge({
      name: 'splitwan_gateway_active',
      help: '1 for the gateway carrying the tunnel path now.',
      labelNames: ['gateway'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const g of src.gateways()) this.set({ gateway: g.name }, g.active ? 1 : 0);
      },
    });
    new Gauge({
      name: 'splitwan_gateway_rtt_seconds',
      help: 'Smoothed probe round-trip time through the gateway.',
      labelNames: ['gateway'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const g of src.gateways()) if (g.rttMs !== null) this.set({ gateway: g.name }, g.rttMs / 1000);
      },
    });
    new Gauge({
      name: 'splitwan_gateway_loss_ratio',
      help: 'Share of failed probe rounds in the health window.',
      labelNames: ['gateway'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const g of src.gateways()) this.set({ gateway: g.name }, g.loss);
      },
    });
    this.failovers = new Counter({ name: 'splitwan_failovers_total', help: 'Switches of the tunnel path between gateways ("none": no healthy gateway).', labelNames: ['from', 'to'], registers: [r] });
    // The breakout's own switches (breakout.links): a family of its own, so a sum of the tunnel's failovers stays the tunnel's.
    this.linkFailovers = new Counter({ name: 'splitwan_link_failovers_total', help: 'Switches of the breakout path between WAN links ("none": no link up).', labelNames: ['from', 'to'], registers: [r] });
    new Gauge({
      name: 'splitwan_tagged_addresses',
      help: 'Addresses the resolver has routed now, per path.',
      labelNames: ['path'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const [path, n] of Object.entries(src.tagged())) this.set({ path }, n);
      },
    });
    new Counter({
      name: 'splitwan_proxy_connections_total',
      help: 'Connections the transparent proxy dialled, per path.',
      labelNames: ['path'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const [path, t] of Object.entries(src.proxy() ?? {})) this.inc({ path }, t.connections);
      },
    });
    new Gauge({
      name: 'splitwan_proxy_active_connections',
      help: 'Proxied connections open now, per path.',
      labelNames: ['path'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const [path, t] of Object.entries(src.proxy() ?? {})) this.set({ path }, t.active);
      },
    });
    new Counter({
      name: 'splitwan_proxy_bytes_total',
      help: 'Bytes through the transparent proxy, per path and direction (up: from clients).',
      labelNames: ['path', 'direction'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const [path, t] of Object.entries(src.proxy() ?? {})) {
          this.inc({ path, direction: 'up' }, t.bytesUp);
          this.inc({ path, direction: 'down' }, t.bytesDown);
        }
      },
    });
    new Counter({
      name: 'splitwan_proxy_refused_total',
      help: 'Connections the transparent proxy reset at accept, by reason: not-redirected, loop, cap (maxConnections), client-cap (proxy.maxConnectionsPerClient).',
      labelNames: ['reason'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const [reason, n] of Object.entries(src.proxyRefused?.() ?? {})) this.inc({ reason }, n);
      },
    });
    this.reloads = new Counter({ name: 'splitwan_config_reloads_total', help: 'Config reloads, by result (applied, unchanged, rejected, failed: valid but not applied).', labelNames: ['result'], registers: [r] });
    this.listRefreshes = new Counter({ name: 'splitwan_list_refreshes_total', help: 'Downloads of URL lists, by result (updated, not-modified, failed).', labelNames: ['list', 'result'], registers: [r] });
    new Counter({
      name: 'splitwan_rule_hits_total',
      help: 'DNS questions decided by each rule (rule: its index, -1 the default; label: its short label).',
      labelNames: ['rule', 'label'],
      registers: [r],
      collect: function () {
        this.reset();
        for (const h of src.ruleHits()) this.inc({ rule: String(h.rule), label: h.label }, h.count);
      },
    });
  }

  failover(from: string | null, to: string | null): void {
    this.failovers.inc({ from: from ?? 'none', to: to ?? 'none' });
  }

  /** breakout moved to another WAN link (null: none up). */
  linkFailover(from: string | null, to: string | null): void {
    this.linkFailovers.inc({ from: from ?? 'none', to: to ?? 'none' });
  }

  reload(result: string): void {
    this.reloads.inc({ result });
  }

  listRefresh(list: string, result: string): void {
    this.listRefreshes.inc({ list, result });
  }

  /** One upstream exchange (the forwarder's observe): its time, by path and result (UpstreamResult). */
  upstream(o: { path: string; seconds: number; result: UpstreamResult }): void {
    this.upstreamLatency.observe({ path: o.path, result: o.result }, o.seconds);
  }

  /** Serves /metrics on host:port (0: any free port); resolves with the port. */
  async listen(host: string, port: number): Promise<number> {
    await this.close();
    void this.registry; // the process metrics from now on, not from the first scrape
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('splitwan: metrics are at /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => resolve());
    });
    this.server = server;
    return (server.address() as import('node:net').AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
