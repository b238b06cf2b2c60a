// A real scrape of /metrics (over HTTP, on 127.0.0.1) checked by Prometheus's
// own linter, `promtool check metrics`, as a Prometheus operator would before
// relying on the names. Upstream results come from a real Forwarder asking
// real loopback servers that answer SERVFAIL and REFUSED, and one that stays
// silent.
//
//   Forwarder ──udp──▶ 127.0.0.1: servfail / refused / silent / ok servers
//       │ observe
//       ▼
//   Metrics ──http GET /metrics──▶ this test ──stdin──▶ promtool check metrics
//
// promtool: PROMTOOL or `promtool` on PATH (.ci/run extracts it from Debian's
// prometheus package). Without it the file is SKIPPED loudly; in CI it fails.
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import http from 'node:http';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics, type MetricsSource } from '../../daemon/metrics.js';
import { Forwarder } from '../../dns/forwarder.js';
import { silentLogger } from '../../lib/logger.js';
import { LoopbackDialer, upstream } from '../helpers/dns.js';

const PROMTOOL = process.env.PROMTOOL ?? 'promtool';
const havePromtool = spawnSync(PROMTOOL, ['--version']).status === 0;
if (!havePromtool && !process.env.CI) {
  console.warn(`\n*** SKIPPED test/integration/metrics-promtool.test.ts: ${PROMTOOL} not found (.ci/run fetches it from Debian's prometheus package) ***\n`);
}
const runs = havePromtool || !!process.env.CI;

function promtoolCheck(text: string): { status: number | null; out: string } {
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

const source: MetricsSource = {
  dns: () => ({ byPath: { breakout: { hits: 3, misses: 2, blocked: 1 } }, servfail: 1, formerr: 1, hits: 3, misses: 2 }),
  gateways: () => [{ name: 'gw1', state: 'up', active: true, rttMs: 12, loss: 0 }],
  tagged: () => ({ breakout: 2 }),
  proxy: () => ({ breakout: { connections: 2, active: 1, bytesUp: 10, bytesDown: 20 } }),
  ruleHits: () => [{ rule: 0, label: 'example.com', count: 4 }],
};

/** A UDP server on 127.0.0.1 answering every query with `rcode` (null: silent). */
async function rcodeServer(rcode: number | null): Promise<{ port: number; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, r) => {
    if (rcode === null) return;
    const q = dnsPacket.decode(msg);
    const answers = rcode === 0 ? [{ type: 'A' as const, name: q.questions![0]!.name, ttl: 60, data: '192.0.2.1' }] : [];
    s.send(dnsPacket.encode({ type: 'response', id: q.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE | rcode, questions: q.questions ?? [], answers }), r.port, r.address);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => s.close() };
}

function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

describe.skipIf(!runs)('metrics: a real scrape passes promtool check metrics', () => {
  const cleanups: (() => unknown)[] = [];
  let text = '';

  beforeAll(async () => {
    if (!havePromtool) throw new Error(`${PROMTOOL} missing: CI must fetch it (.ci/run extracts it from Debian's prometheus package)`);
    const metrics = new Metrics(source);
    cleanups.push(() => metrics.close());
    const servers = await Promise.all([rcodeServer(2), rcodeServer(5), rcodeServer(null), rcodeServer(0)]);
    for (const s of servers) cleanups.push(() => s.close());
    const forwarder = new Forwarder({ dialer: new LoopbackDialer(), logger: silentLogger, timeoutMs: 300, observe: (o) => metrics.upstream(o) });
    cleanups.push(() => forwarder.close());
    const q = dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'm.example', class: 'IN' }] });
    // SERVFAIL, then REFUSED, then silence (failed), then an answer: each upstream tried in turn.
    await forwarder.forward(q, { qname: 'm.example', qtype: 1, qclass: 1 }, servers.map((s) => upstream(`127.0.0.1:${s.port}`)), 'breakout');
    metrics.failover('gw1', 'gw2');
    metrics.reload('applied');
    metrics.listRefresh('ads', 'updated');
    text = await get(await metrics.listen('127.0.0.1', 0));
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('the scrape has each upstream result on its own, and promtool finds nothing to say', () => {
    for (const result of ['servfail', 'refused', 'failed', 'ok']) expect(text).toMatch(new RegExp(`^splitwan_dns_upstream_seconds_count\\{path="breakout",result="${result}"\\} 1$`, 'm'));
    expect(promtoolCheck(text)).toEqual({ status: 0, out: '' });
  });

  it('promtool does reject what the scrape had before: a gauge named *_total', () => {
    const bad = `${text}# HELP splitwan_nodejs_active_handles_total Number of active libuv handles.\n# TYPE splitwan_nodejs_active_handles_total gauge\nsplitwan_nodejs_active_handles_total 3\n`;
    const r = promtoolCheck(bad);
    expect(r.status).not.toBe(0);
    expect(r.out).toContain('splitwan_nodejs_active_handles_total non-counter metrics should not have "_total" suffix');
  });
});
