// Prometheus metrics: families read at scrape time from a fake source, event
// counters, the upstream histogram, and the /metrics HTTP endpoint.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import perfHooks from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Gauge } from 'prom-client';
import { GATEWAY_STATES, Metrics, type MetricsSource } from '../../daemon/metrics.js';
import { families, promLint } from '../helpers/prom-lint.js';

type Gw = ReturnType<MetricsSource['gateways']>[number];

interface FakeSource extends MetricsSource {
  gws: Gw[];
  proxyStats: ReturnType<MetricsSource['proxy']>;
  refused: Record<string, number> | null;
  hits: ReturnType<MetricsSource['ruleHits']>;
  fail: Error | null;
}

function fakeSource(): FakeSource {
  const s: FakeSource = {
    gws: [
      { name: 'a', state: 'up', active: true, rttMs: 12.5, loss: 0.25 },
      { name: 'b', state: 'down', active: false, rttMs: null, loss: 1 },
      { name: 'c', state: 'degraded', active: false, rttMs: 250, loss: 0.5 },
      { name: 'd', state: 'unknown', active: false, rttMs: null, loss: 0 },
    ],
    proxyStats: {
      breakout: { connections: 2, active: 1, bytesUp: 100, bytesDown: 2000 },
      'gw:a': { connections: 7, active: 0, bytesUp: 5, bytesDown: 0 },
    },
    refused: { 'not-redirected': 1, loop: 0, cap: 0, 'client-cap': 42 },
    hits: [
      { rule: 0, label: 'a.test', count: 5 },
      { rule: 3, label: 'list:stream', count: 2 },
      { rule: -1, label: 'default', count: 9 },
    ],
    fail: null,
    dns: () => {
      if (s.fail) throw s.fail;
      return {
        byPath: { breakout: { hits: 3, misses: 2, blocked: 0 }, 'gw:a': { hits: 0, misses: 4, blocked: 1 } },
        servfail: 1,
        formerr: 0,
        hits: 3,
        misses: 6,
      };
    },
    gateways: () => s.gws,
    tagged: () => ({ breakout: 3, 'gw:b': 1 }),
    proxy: () => s.proxyStats,
    proxyRefused: () => s.refused,
    ruleHits: () => s.hits,
  };
  return s;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the exposition text (samples only); label values unescaped. */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;
    const body = m[2] ?? '';
    let l: RegExpExecArray | null;
    let end = 0;
    while ((l = re.exec(body))) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      end = re.lastIndex;
    }
    if (end !== body.length) throw new Error(`bad labels: ${body}`);
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

/** The samples of one family matching the given labels. */
function samples(all: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample's value; throws when none or several match. */
function value(all: Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples(all, name, labels);
  if (s.length !== 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${s.length} samples`);
  return s[0]!.value;
}

async function scrape(m: Metrics): Promise<{ text: string; all: Sample[] }> {
  const text = await m.registry.metrics();
  return { text, all: parse(text) };
}

const FAMILIES: [string, string][] = [
  ['splitwan_dns_queries_total', 'counter'],
  ['splitwan_dns_errors_total', 'counter'],
  ['splitwan_dns_cache_hit_ratio', 'gauge'],
  ['splitwan_dns_limited_total', 'counter'],
  ['splitwan_tag_set_full_total', 'counter'],
  ['splitwan_dns_upstream_seconds', 'histogram'],
  ['splitwan_gateway_up', 'gauge'],
  ['splitwan_gateway_state', 'gauge'],
  ['splitwan_gateway_active', 'gauge'],
  ['splitwan_gateway_rtt_seconds', 'gauge'],
  ['splitwan_gateway_loss_ratio', 'gauge'],
  ['splitwan_failovers_total', 'counter'],
  ['splitwan_link_failovers_total', 'counter'],
  ['splitwan_tagged_addresses', 'gauge'],
  ['splitwan_proxy_connections_total', 'counter'],
  ['splitwan_proxy_active_connections', 'gauge'],
  ['splitwan_proxy_bytes_total', 'counter'],
  ['splitwan_proxy_refused_total', 'counter'],
  ['splitwan_config_reloads_total', 'counter'],
  ['splitwan_list_refreshes_total', 'counter'],
  ['splitwan_rule_hits_total', 'counter'],
];

describe('metrics: an idle daemon without a metrics endpoint', () => {
  it('starts no event-loop delay monitor (a timer every 10 ms) until the registry is read or served', async () => {
    const spy = vi.spyOn(perfHooks, 'monitorEventLoopDelay');
    try {
      const m = new Metrics(fakeSource());
      m.failover('a', 'b');
      m.upstream({ path: 'breakout', seconds: 0.01, result: 'ok' });
      expect(spy).not.toHaveBeenCalled();
      const text = await m.registry.metrics();
      expect(spy).toHaveBeenCalledTimes(1);
      expect(text).toMatch(/^splitwan_nodejs_eventloop_lag_seconds /m);
      // Counted before the process metrics came: still there.
      expect(text).toMatch(/^splitwan_failovers_total\{from="a",to="b"\} 1$/m);
      void m.registry;
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('metrics: families read from the source at scrape time', () => {
  it('every family has its # HELP and # TYPE lines, and default process metrics carry the splitwan_ prefix', async () => {
    const { text } = await scrape(new Metrics(fakeSource()));
    for (const [name, type] of FAMILIES) {
      expect(text).toContain(`\n# TYPE ${name} ${type}\n`);
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
    }
    expect(text).toMatch(/^# TYPE splitwan_process_cpu_user_seconds_total counter$/m);
    expect(text).toMatch(/^# TYPE splitwan_nodejs_heap_size_total_bytes gauge$/m);
    expect(text).not.toMatch(/^# TYPE (?!splitwan_)/m);
  });

  it('the text parses as exposition lines throughout; splitwan families hold no NaN', async () => {
    const { all } = await scrape(new Metrics(fakeSource()));
    expect(all.length).toBeGreaterThan(50);
    // (prom-client's own event-loop lag gauges are NaN before their first sample: fine in the format.)
    const ours = all.filter((s) => FAMILIES.some(([f]) => s.name === f || s.name.startsWith(`${f}_`)));
    expect(ours.length).toBeGreaterThan(30);
    expect(ours.filter((s) => Number.isNaN(s.value)).map((s) => s.name)).toEqual([]);
  });

  it('gateway_up: 1 for up and degraded, 0 for down and unknown', async () => {
    const { text, all } = await scrape(new Metrics(fakeSource()));
    expect(text).toContain('splitwan_gateway_up{gateway="a"} 1\n');
    expect(text).toContain('splitwan_gateway_up{gateway="b"} 0\n');
    expect(value(all, 'splitwan_gateway_up', { gateway: 'c' })).toBe(1);
    expect(value(all, 'splitwan_gateway_up', { gateway: 'd' })).toBe(0);
  });

  it('gateway_state is one-hot over unknown/up/degraded/down', async () => {
    const { all } = await scrape(new Metrics(fakeSource()));
    expect(GATEWAY_STATES).toEqual(['unknown', 'up', 'degraded', 'down']);
    const want: Record<string, string> = { a: 'up', b: 'down', c: 'degraded', d: 'unknown' };
    for (const [gw, state] of Object.entries(want)) {
      const rows = samples(all, 'splitwan_gateway_state', { gateway: gw });
      expect(rows.map((r) => r.labels.state).sort()).toEqual([...GATEWAY_STATES].sort());
      for (const r of rows) expect(r.value).toBe(r.labels.state === state ? 1 : 0);
    }
  });

  it('a state outside the four is 0 everywhere (gateway_up 0)', async () => {
    const src = fakeSource();
    src.gws = [{ name: 'x', state: 'weird', active: false, rttMs: null, loss: 0 }];
    const { all } = await scrape(new Metrics(src));
    expect(samples(all, 'splitwan_gateway_state', { gateway: 'x' }).map((s) => s.value)).toEqual([0, 0, 0, 0]);
    expect(value(all, 'splitwan_gateway_up', { gateway: 'x' })).toBe(0);
  });

  it('gateway_active, rtt in seconds (none when unknown), loss ratio', async () => {
    const { all } = await scrape(new Metrics(fakeSource()));
    expect(samples(all, 'splitwan_gateway_active').map((s) => [s.labels.gateway, s.value])).toEqual([
      ['a', 1],
      ['b', 0],
      ['c', 0],
      ['d', 0],
    ]);
    expect(value(all, 'splitwan_gateway_rtt_seconds', { gateway: 'a' })).toBeCloseTo(0.0125, 10);
    expect(value(all, 'splitwan_gateway_rtt_seconds', { gateway: 'c' })).toBeCloseTo(0.25, 10);
    expect(samples(all, 'splitwan_gateway_rtt_seconds', { gateway: 'b' })).toEqual([]);
    expect(samples(all, 'splitwan_gateway_rtt_seconds', { gateway: 'd' })).toEqual([]);
    expect(value(all, 'splitwan_gateway_loss_ratio', { gateway: 'a' })).toBe(0.25);
    expect(value(all, 'splitwan_gateway_loss_ratio', { gateway: 'b' })).toBe(1);
  });

  it('dns queries by path and result (zero results left out), errors by rcode, the hit ratio', async () => {
    const { all } = await scrape(new Metrics(fakeSource()));
    expect(samples(all, 'splitwan_dns_queries_total').map((s) => [s.labels.path, s.labels.result, s.value])).toEqual([
      ['breakout', 'hit', 3],
      ['breakout', 'miss', 2],
      ['gw:a', 'miss', 4],
      ['gw:a', 'blocked', 1],
    ]);
    expect(value(all, 'splitwan_dns_errors_total', { rcode: 'servfail' })).toBe(1);
    expect(value(all, 'splitwan_dns_errors_total', { rcode: 'formerr' })).toBe(0);
    expect(value(all, 'splitwan_dns_cache_hit_ratio')).toBeCloseTo(1 / 3, 10);
  });

  it('queries not forwarded (refused locally, over a client\'s limit) and answers refused for a full tag set', async () => {
    const src = fakeSource();
    const dns = src.dns;
    src.dns = () => ({ ...dns(), refusedLocally: 4, clientLimited: 17 });
    const full = { n: 2 };
    const { all } = await scrape(new Metrics({ ...src, dns: src.dns, tagSetFull: () => full.n }));
    expect(value(all, 'splitwan_dns_limited_total', { reason: 'refused-locally' })).toBe(4);
    expect(value(all, 'splitwan_dns_limited_total', { reason: 'client-limit' })).toBe(17);
    expect(value(all, 'splitwan_tag_set_full_total')).toBe(2);
    // Sources without the figures (an older composition root) read as 0.
    const { all: none } = await scrape(new Metrics(fakeSource()));
    expect(value(none, 'splitwan_tag_set_full_total')).toBe(0);
    expect(value(none, 'splitwan_dns_limited_total', { reason: 'client-limit' })).toBe(0);
  });

  it('the hit ratio is 0 before any query', async () => {
    const src = fakeSource();
    src.dns = () => ({ byPath: {}, servfail: 0, formerr: 0, hits: 0, misses: 0 });
    const { all } = await scrape(new Metrics(src));
    expect(value(all, 'splitwan_dns_cache_hit_ratio')).toBe(0);
    expect(samples(all, 'splitwan_dns_queries_total')).toEqual([]);
  });

  it('tagged addresses per path', async () => {
    const { all } = await scrape(new Metrics(fakeSource()));
    expect(value(all, 'splitwan_tagged_addresses', { path: 'breakout' })).toBe(3);
    expect(value(all, 'splitwan_tagged_addresses', { path: 'gw:b' })).toBe(1);
  });

  it('rule hits with their index and label', async () => {
    const { text, all } = await scrape(new Metrics(fakeSource()));
    expect(text).toContain('splitwan_rule_hits_total{rule="0",label="a.test"} 5\n');
    expect(value(all, 'splitwan_rule_hits_total', { rule: '3', label: 'list:stream' })).toBe(2);
    expect(value(all, 'splitwan_rule_hits_total', { rule: '-1', label: 'default' })).toBe(9);
  });

  it('a label with quotes, a backslash and a newline is escaped', async () => {
    const src = fakeSource();
    src.hits = [{ rule: 1, label: 'say "hi"\\ \nthere', count: 1 }];
    const { text, all } = await scrape(new Metrics(src));
    expect(text).toContain('splitwan_rule_hits_total{rule="1",label="say \\"hi\\"\\\\ \\nthere"} 1\n');
    expect(value(all, 'splitwan_rule_hits_total', { rule: '1' })).toBe(1);
  });

  it('proxy connections, open connections and bytes by direction', async () => {
    const { text, all } = await scrape(new Metrics(fakeSource()));
    expect(value(all, 'splitwan_proxy_connections_total', { path: 'breakout' })).toBe(2);
    expect(value(all, 'splitwan_proxy_connections_total', { path: 'gw:a' })).toBe(7);
    expect(value(all, 'splitwan_proxy_active_connections', { path: 'breakout' })).toBe(1);
    expect(text).toContain('splitwan_proxy_bytes_total{path="breakout",direction="up"} 100\n');
    expect(text).toContain('splitwan_proxy_bytes_total{path="breakout",direction="down"} 2000\n');
    expect(value(all, 'splitwan_proxy_bytes_total', { path: 'gw:a', direction: 'up' })).toBe(5);
    expect(value(all, 'splitwan_proxy_bytes_total', { path: 'gw:a', direction: 'down' })).toBe(0);
  });

  it('connections the proxy reset at accept, by reason', async () => {
    const { all } = await scrape(new Metrics(fakeSource()));
    expect(value(all, 'splitwan_proxy_refused_total', { reason: 'client-cap' })).toBe(42);
    expect(value(all, 'splitwan_proxy_refused_total', { reason: 'not-redirected' })).toBe(1);
    expect(value(all, 'splitwan_proxy_refused_total', { reason: 'cap' })).toBe(0);
  });

  it('no proxy (null): the families are there, with no samples', async () => {
    const src = fakeSource();
    src.proxyStats = null;
    src.refused = null;
    const { text, all } = await scrape(new Metrics(src));
    expect(text).toContain('# TYPE splitwan_proxy_bytes_total counter');
    for (const f of ['splitwan_proxy_connections_total', 'splitwan_proxy_active_connections', 'splitwan_proxy_bytes_total', 'splitwan_proxy_refused_total']) expect(samples(all, f)).toEqual([]);
  });

  it('each scrape reads the source anew: values follow it, a removed gateway disappears, nothing doubles', async () => {
    const src = fakeSource();
    const m = new Metrics(src);
    await scrape(m);
    src.gws = [{ name: 'a', state: 'down', active: false, rttMs: null, loss: 1 }];
    src.proxyStats = { breakout: { connections: 3, active: 0, bytesUp: 150, bytesDown: 2500 } };
    const { all } = await scrape(m);
    expect(samples(all, 'splitwan_gateway_up').map((s) => [s.labels.gateway, s.value])).toEqual([['a', 0]]);
    expect(samples(all, 'splitwan_gateway_state').map((s) => s.labels.gateway)).toEqual(['a', 'a', 'a', 'a']);
    expect(samples(all, 'splitwan_gateway_rtt_seconds')).toEqual([]);
    expect(value(all, 'splitwan_gateway_active', { gateway: 'a' })).toBe(0);
    // Counters read from the source are its totals, not sums over scrapes.
    expect(value(all, 'splitwan_proxy_connections_total', { path: 'breakout' })).toBe(3);
    expect(value(all, 'splitwan_proxy_bytes_total', { path: 'breakout', direction: 'up' })).toBe(150);
    expect(samples(all, 'splitwan_proxy_bytes_total', { path: 'gw:a' })).toEqual([]);
    expect(value(all, 'splitwan_dns_queries_total', { path: 'breakout', result: 'hit' })).toBe(3);
    expect(value(all, 'splitwan_rule_hits_total', { rule: '0' })).toBe(5);
  });

  it('two Metrics in one process keep separate registries', async () => {
    const a = new Metrics(fakeSource());
    const b = new Metrics(fakeSource());
    a.reload('applied');
    expect(value((await scrape(a)).all, 'splitwan_config_reloads_total', { result: 'applied' })).toBe(1);
    expect(samples((await scrape(b)).all, 'splitwan_config_reloads_total')).toEqual([]);
  });
});

describe('metrics: Prometheus naming rules (what `promtool check metrics` checks; test/integration/metrics-promtool.test.ts runs promtool itself)', () => {
  /** A scrape with a sample in every family: events and upstream results too. */
  async function fullScrape(): Promise<string> {
    const m = new Metrics(fakeSource());
    m.failover('a', 'b');
    m.reload('applied');
    m.listRefresh('ads', 'updated');
    for (const result of ['ok', 'servfail', 'refused', 'formerr', 'notimp', 'failed'] as const) m.upstream({ path: 'breakout', seconds: 0.02, result });
    return m.registry.metrics();
  }

  it('every family, ours and prom-client\'s defaults: counters end in _total, nothing else does, help, snake_case, base units', async () => {
    const text = await fullScrape();
    expect(promLint(text)).toEqual([]);
    const f = families(text);
    expect(f.size).toBeGreaterThan(40);
    // The per-type active handle/request/resource gauges stay; their *_total sums (gauges) are gone.
    for (const name of ['handles', 'requests', 'resources']) {
      expect(f.get(`splitwan_nodejs_active_${name}`)?.type).toBe('gauge');
      expect(f.has(`splitwan_nodejs_active_${name}_total`)).toBe(false);
    }
  });

  it('the rules catch what promtool rejects: a gauge named _total (prom-client\'s defaults before), a counter without it, others', async () => {
    const m = new Metrics(fakeSource());
    new Gauge({ name: 'splitwan_nodejs_active_handles_total', help: 'as prom-client names it', registers: [m.registry] });
    const text = (await m.registry.metrics()) + ['# HELP splitwan_x_count x', '# TYPE splitwan_x_count gauge', 'splitwan_x_count 1', '# TYPE splitwan_y counter', 'splitwan_y 1', '# HELP splitwan_lagMs_milliseconds lag', '# TYPE splitwan_lagMs_milliseconds gauge', 'splitwan_lagMs_milliseconds{le="1"} 1', ''].join('\n');
    expect(promLint(text)).toEqual([
      'splitwan_nodejs_active_handles_total: non-counter metrics should not have "_total" suffix',
      'splitwan_x_count: non-histogram and non-summary metrics should not have "_count" suffix',
      'splitwan_y: no help text',
      'splitwan_y: counter metrics should have "_total" suffix',
      'splitwan_lagMs_milliseconds: non-histogram metrics should not have "le" label',
      "splitwan_lagMs_milliseconds: metric names should be written in 'snake_case' not 'camelCase'",
      'splitwan_lagMs_milliseconds: use base unit "seconds" instead of "milliseconds"',
    ]);
  });
});

describe('metrics: the Grafana dashboard (docs/grafana-dashboard.json)', () => {
  interface Panel {
    title?: string;
    targets?: { expr?: string }[];
    panels?: Panel[];
  }
  const dashboard = JSON.parse(readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: Panel[] };
  const panels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...panels(p.panels ?? [])]);
  const exprs = panels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title ?? '', expr: t.expr ?? '' })));

  it('every metric its queries name is in a scrape (a histogram\'s _bucket, _count, _sum included)', async () => {
    const m = new Metrics(fakeSource());
    m.upstream({ path: 'breakout', seconds: 0.01, result: 'ok' });
    const names = new Set(families(await m.registry.metrics()).keys());
    const used = [...new Set(exprs.flatMap((e) => e.expr.match(/splitwan_[a-z0-9_]+/g) ?? []))];
    expect(used.length).toBeGreaterThan(10);
    expect(used.filter((n) => !names.has(n) && !names.has(n.replace(/_(bucket|count|sum)$/, '')))).toEqual([]);
  });

  it('the upstream failures panel counts every result but ok: a SERVFAIL or REFUSED answer shows there', () => {
    const failures = exprs.filter((e) => e.title === 'Upstream failures');
    expect(failures.map((e) => e.expr)).toEqual([expect.stringContaining('result!="ok"')]);
  });
});

describe('metrics: events', () => {
  it('failover(from, to) counts by pair; null reads as "none"', async () => {
    const m = new Metrics(fakeSource());
    m.failover('a', 'b');
    m.failover('a', 'b');
    m.failover('b', null);
    m.failover(null, 'a');
    const { text, all } = await scrape(m);
    expect(text).toContain('splitwan_failovers_total{from="a",to="b"} 2\n');
    expect(value(all, 'splitwan_failovers_total', { from: 'b', to: 'none' })).toBe(1);
    expect(value(all, 'splitwan_failovers_total', { from: 'none', to: 'a' })).toBe(1);
    expect(samples(all, 'splitwan_failovers_total')).toHaveLength(3);
  });

  it('linkFailover(from, to): WAN links in a family of their own, the tunnel\'s count untouched', async () => {
    const m = new Metrics(fakeSource());
    m.linkFailover('fiber', 'lte');
    m.linkFailover('lte', null);
    const { text, all } = await scrape(m);
    expect(text).toContain('splitwan_link_failovers_total{from="fiber",to="lte"} 1\n');
    expect(value(all, 'splitwan_link_failovers_total', { from: 'lte', to: 'none' })).toBe(1);
    expect(samples(all, 'splitwan_failovers_total')).toHaveLength(0);
  });

  it('reload(result) and listRefresh(list, result)', async () => {
    const m = new Metrics(fakeSource());
    m.reload('rejected');
    m.reload('applied');
    m.reload('rejected');
    m.listRefresh('stream', 'updated');
    m.listRefresh('stream', 'failed');
    m.listRefresh('ads', 'not-modified');
    const { text, all } = await scrape(m);
    expect(text).toContain('splitwan_config_reloads_total{result="rejected"} 2\n');
    expect(value(all, 'splitwan_config_reloads_total', { result: 'applied' })).toBe(1);
    expect(value(all, 'splitwan_list_refreshes_total', { list: 'stream', result: 'updated' })).toBe(1);
    expect(value(all, 'splitwan_list_refreshes_total', { list: 'stream', result: 'failed' })).toBe(1);
    expect(value(all, 'splitwan_list_refreshes_total', { list: 'ads', result: 'not-modified' })).toBe(1);
  });

  it('upstream() fills the histogram: cumulative buckets, +Inf, sum and count, by path and result', async () => {
    const m = new Metrics(fakeSource());
    m.upstream({ path: 'gw:a', seconds: 0.003, result: 'ok' });
    m.upstream({ path: 'gw:a', seconds: 0.04, result: 'ok' });
    m.upstream({ path: 'gw:a', seconds: 7, result: 'ok' });
    m.upstream({ path: 'breakout', seconds: 2, result: 'failed' });
    const { all } = await scrape(m);
    const buckets = (labels: Record<string, string>): [string, number][] => samples(all, 'splitwan_dns_upstream_seconds_bucket', labels).map((s) => [s.labels.le!, s.value]);
    expect(buckets({ path: 'gw:a', result: 'ok' })).toEqual([
      ['0.001', 0],
      ['0.0025', 0],
      ['0.005', 1],
      ['0.01', 1],
      ['0.025', 1],
      ['0.05', 2],
      ['0.1', 2],
      ['0.25', 2],
      ['0.5', 2],
      ['1', 2],
      ['2', 2],
      ['5', 2],
      ['+Inf', 3],
    ]);
    expect(value(all, 'splitwan_dns_upstream_seconds_count', { path: 'gw:a', result: 'ok' })).toBe(3);
    expect(value(all, 'splitwan_dns_upstream_seconds_sum', { path: 'gw:a', result: 'ok' })).toBeCloseTo(7.043, 9);
    // le is inclusive: 2 s lands in the 2 bucket.
    expect(value(all, 'splitwan_dns_upstream_seconds_bucket', { path: 'breakout', result: 'failed', le: '1' })).toBe(0);
    expect(value(all, 'splitwan_dns_upstream_seconds_bucket', { path: 'breakout', result: 'failed', le: '2' })).toBe(1);
    expect(samples(all, 'splitwan_dns_upstream_seconds_count', { path: 'breakout', result: 'ok' })).toEqual([]);
  });

  it('upstream(): a SERVFAIL or REFUSED (and FORMERR, NOTIMP) answer is its own result, not ok', async () => {
    const m = new Metrics(fakeSource());
    for (const result of ['ok', 'servfail', 'servfail', 'refused', 'formerr', 'notimp', 'failed'] as const) m.upstream({ path: 'gw:a', seconds: 0.01, result });
    const { all } = await scrape(m);
    const counts = Object.fromEntries(samples(all, 'splitwan_dns_upstream_seconds_count', { path: 'gw:a' }).map((s) => [s.labels.result, s.value]));
    expect(counts).toEqual({ ok: 1, servfail: 2, refused: 1, formerr: 1, notimp: 1, failed: 1 });
  });
});

describe('metrics: the /metrics endpoint', () => {
  const open: Metrics[] = [];
  afterEach(async () => {
    for (const m of open.splice(0)) await m.close();
  });

  function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  function portFree(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
    });
  }

  it("listen('127.0.0.1', 0) serves /metrics with the Prometheus content type", async () => {
    const m = new Metrics(fakeSource());
    open.push(m);
    m.failover('a', 'b');
    const port = await m.listen('127.0.0.1', 0);
    expect(port).toBeGreaterThan(0);
    const r = await get(port, '/metrics');
    expect(r.status).toBe(200);
    expect(r.type).toBe(m.registry.contentType);
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(r.body).toContain('# TYPE splitwan_gateway_up gauge');
    expect(r.body).toContain('splitwan_failovers_total{from="a",to="b"} 1');
    expect((await get(port, '/metrics?x=1')).status).toBe(200);
  });

  it('404 anywhere else, and for another method', async () => {
    const m = new Metrics(fakeSource());
    open.push(m);
    const port = await m.listen('127.0.0.1', 0);
    for (const p of ['/', '/metric', '/metrics/', '/v1/status']) {
      const r = await get(port, p);
      expect([p, r.status]).toEqual([p, 404]);
      expect(r.body).toBe('splitwan: metrics are at /metrics\n');
    }
    expect((await get(port, '/metrics', 'POST')).status).toBe(404);
  });

  it('a source that throws → 500, and the endpoint keeps serving', async () => {
    const src = fakeSource();
    const m = new Metrics(src);
    open.push(m);
    const port = await m.listen('127.0.0.1', 0);
    src.fail = new Error('resolver gone');
    const r = await get(port, '/metrics');
    expect(r.status).toBe(500);
    expect(r.body).toContain('resolver gone');
    src.fail = null;
    expect((await get(port, '/metrics')).status).toBe(200);
  });

  it('close() frees the port, is idempotent, and listen() again works', async () => {
    const m = new Metrics(fakeSource());
    open.push(m);
    const port = await m.listen('127.0.0.1', 0);
    // An open keep-alive connection must not hold the port.
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve());
      s.on('error', () => {});
    });
    await m.close();
    await m.close();
    expect(await portFree(port)).toBe(true);
    await expect(get(port, '/metrics')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const again = await m.listen('127.0.0.1', port);
    expect(again).toBe(port);
    expect((await get(port, '/metrics')).status).toBe(200);
  });

  it('listen() twice moves to the new port and frees the old one', async () => {
    const m = new Metrics(fakeSource());
    open.push(m);
    const p1 = await m.listen('127.0.0.1', 0);
    const p2 = await m.listen('127.0.0.1', 0);
    expect((await get(p2, '/metrics')).status).toBe(200);
    if (p1 !== p2) expect(await portFree(p1)).toBe(true);
  });

  it('a port in use → listen rejects with EADDRINUSE', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    const m = new Metrics(fakeSource());
    open.push(m);
    try {
      await expect(m.listen('127.0.0.1', port)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });
});
