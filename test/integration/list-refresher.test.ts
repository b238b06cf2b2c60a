import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load.js';
import { silentLogger, type Logger } from '../../lib/logger.js';
import { ListRefresher, type CronScheduler } from '../../config/lists/refresher.js';
import { ConfigStore } from '../../config/store.js';

// A list served by a local HTTP server: the daemon's first download, a
// scheduled refresh that changes the policy, a broken download that keeps the
// last good copy, and a restart that starts offline from the cache.

class ManualScheduler implements CronScheduler {
  readonly jobs: { expression: string; fn: () => void; stopped: boolean }[] = [];
  schedule(expression: string, fn: () => void): { stop(): void } {
    const job = { expression, fn, stopped: false };
    this.jobs.push(job);
    return { stop: () => void (job.stopped = true) };
  }
  fire(): void {
    for (const j of this.jobs) if (!j.stopped) j.fn();
  }
}

function warnings(): Logger & { warns: string[] } {
  const warns: string[] = [];
  const l: Logger & { warns: string[] } = { ...silentLogger, warns, warn: (_o, m) => void warns.push(m ?? ''), child: () => l };
  return l;
}

describe('ListRefresher', () => {
  let server: Server;
  let body = 'netflix.test\nhulu.test\n';
  let status = 200;
  let requests = 0;
  let dir: string;
  let url: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests++;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/streaming.txt`;
    dir = mkdtempSync(join(tmpdir(), 'splitwan-refresh-'));
    const k = (): string => randomBytes(32).toString('base64');
    writeFileSync(join(dir, 'gw1.conf'), `[Interface]\nPrivateKey = ${k()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${k()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`, { mode: 0o600 });
    writeFileSync(
      join(dir, 'config.yaml'),
      ['mode: host', 'stateDir: state', 'tunnel: { gateways: [{ name: gw1, config: gw1.conf }] }', 'lists:', `  streaming: { url: "${url}", refresh: "0 4 * * *", timeout: 2s }`, 'rules:', '  - list: streaming', '    via: breakout', ''].join('\n'),
    );
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads at start, swaps the policy, refreshes on schedule, keeps the last good copy', async () => {
    const file = join(dir, 'config.yaml');
    const log = warnings();
    const store = await ConfigStore.open({ file, logger: silentLogger });
    expect(store.current.lists.get('streaming')!.origin).toBe('none');
    expect(store.current.policy.matchName('netflix.test').rule).toBeNull();

    const sched = new ManualScheduler();
    const refresher = new ListRefresher(store, log, sched);
    await refresher.start();
    expect(sched.jobs.map((j) => j.expression)).toEqual(['0 4 * * *']);
    expect(store.current.policy.matchName('www.netflix.test').rule).toBe(0);
    const m = store.current.policy.matchName('hulu.test');
    expect(m.entry?.list).toBe('streaming');
    expect(m.entry?.pos.file).toBe(join(dir, 'state', 'lists', 'streaming.txt'));
    expect(m.entry?.pos.line).toBe(2);
    expect(existsSync(join(dir, 'state', 'lists', 'streaming.txt'))).toBe(true);

    // The schedule fires: the new list replaces the old.
    body = 'disney.test\n';
    await refresher.refresh('streaming');
    expect(store.current.policy.matchName('disney.test').rule).toBe(0);
    expect(store.current.policy.matchName('netflix.test').rule).toBeNull();

    // A broken download (an error page) keeps the last good copy, and says so.
    status = 500;
    body = '<html>oops</html>';
    const before = requests;
    sched.fire();
    await new Promise((r) => setTimeout(r, 50));
    const r = await refresher.refresh('streaming');
    expect(requests).toBeGreaterThan(before);
    expect(r.status).toBe('failed');
    expect(store.current.policy.matchName('disney.test').rule).toBe(0);
    expect(log.warns.some((w) => w.includes('keeping the last good copy'))).toBe(true);
    refresher.stop();
    expect(sched.jobs.every((j) => j.stopped)).toBe(true);
    store.close();

    // A restart with the server gone starts from the cached copy.
    const offline = await loadConfig(file);
    expect(offline.lists.get('streaming')!.origin).toBe('cache');
    expect(offline.policy.matchName('disney.test').rule).toBe(0);
  });

  it('a download the daemon could not apply is reported failed, and applied by the next refresh even when the server says not modified', async () => {
    const file = join(dir, 'config.yaml');
    // The server answers 304 to a matching If-None-Match, as real list hosts do.
    let etagBody = 'apply1.test\n';
    const etag = () => `"${Buffer.from(etagBody).toString('hex').slice(0, 16)}"`;
    const cond = createServer((req, res) => {
      if (req.headers['if-none-match'] === etag()) {
        res.writeHead(304).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', etag: etag() }).end(etagBody);
    });
    await new Promise<void>((r) => cond.listen(0, '127.0.0.1', r));
    const condUrl = `http://127.0.0.1:${(cond.address() as AddressInfo).port}/apply.txt`;
    writeFileSync(file, ['mode: host', 'stateDir: state2', 'tunnel: { gateways: [{ name: gw1, config: gw1.conf }] }', 'lists:', `  streaming: { url: "${condUrl}", refresh: "0 4 * * *", timeout: 2s }`, 'rules:', '  - list: streaming', '    via: breakout', ''].join('\n'));
    const store = await ConfigStore.open({ file, logger: silentLogger });
    let failApply = true;
    store.subscribe(() => {
      if (failApply) throw new Error('the kernel refused the ruleset');
    });
    const refresher = new ListRefresher(store, silentLogger, new ManualScheduler());
    try {
      const r1 = await refresher.refresh('streaming');
      expect(r1.status).toBe('failed');
      expect(r1.error).toMatch(/applying it failed: the kernel refused the ruleset/);
      expect(store.current.policy.matchName('apply1.test').rule).toBeNull();
      // Nothing changed on the server (304), but the copy was never applied: now it is.
      failApply = false;
      const r2 = await refresher.refresh('streaming');
      expect(r2.status).toBe('not-modified');
      expect(store.current.policy.matchName('apply1.test').rule).toBe(0);
    } finally {
      refresher.stop();
      store.close();
      await new Promise((r) => cond.close(r));
    }
  });
});
