import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/load.js';
import { silentLogger, type Logger } from '../../lib/logger.js';
import { ListRefresher, type CronScheduler } from '../../config/lists/refresher.js';
import { ConfigStore } from '../../config/store.js';
import { ListFetcher } from '../../config/lists/fetch.js';
import { haveOpenssl, makeCert } from '../helpers/tls.js';

// A list served by a local HTTPS server (a throwaway certificate the fetcher
// is told to trust): the daemon's first download, a scheduled refresh that
// changes the policy, a broken download that keeps the last good copy, and a
// restart that starts offline from the cache. Then a list pinned by sha256
// over plain HTTP: a body that is not the pinned one changes nothing.

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

function warnings(): Logger & { warns: string[]; errors: { obj: object; msg: string }[] } {
  const warns: string[] = [];
  const errors: { obj: object; msg: string }[] = [];
  const l: Logger & { warns: string[]; errors: typeof errors } = {
    ...silentLogger,
    warns,
    errors,
    warn: (_o, m) => void warns.push(m ?? ''),
    error: (obj, m) => void errors.push({ obj, msg: m ?? '' }),
    child: (b) => ({ ...l, warn: (o, m) => l.warn({ ...b, ...o }, m), error: (o, m) => l.error({ ...b, ...o }, m) }),
  };
  return l;
}

const key = (): string => randomBytes(32).toString('base64');
const GW_CONF = (): string => `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`;

if (!haveOpenssl) console.log('SKIPPED list-refresher over https: no openssl to make the test certificate (apt-get install openssl)');

describe.skipIf(!haveOpenssl)('ListRefresher', () => {
  let server: Server;
  let body = 'netflix.test\nhulu.test\n';
  let status = 200;
  let requests = 0;
  let dir: string;
  let url: string;
  let trusted: Agent;

  beforeAll(async () => {
    const { key: tlsKey, cert } = makeCert(['lists.test']);
    trusted = new Agent({ connect: { ca: cert } });
    server = createHttpsServer({ key: tlsKey, cert }, (req, res) => {
      requests++;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/streaming.txt`;
    dir = mkdtempSync(join(tmpdir(), 'splitwan-refresh-'));
    writeFileSync(join(dir, 'gw1.conf'), GW_CONF(), { mode: 0o600 });
    writeFileSync(
      join(dir, 'config.yaml'),
      ['mode: host', 'stateDir: state', 'tunnel: { gateways: [{ name: gw1, config: gw1.conf }] }', 'lists:', `  streaming: { url: "${url}", refresh: "0 4 * * *", timeout: 2s }`, 'rules:', '  - list: streaming', '    via: breakout', ''].join('\n'),
    );
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await trusted.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads at start, swaps the policy, refreshes on schedule, keeps the last good copy', async () => {
    const file = join(dir, 'config.yaml');
    const log = warnings();
    const store = await ConfigStore.open({ file, logger: silentLogger });
    expect(store.current.lists.get('streaming')!.origin).toBe('none');
    expect(store.current.policy.matchName('netflix.test').rule).toBeNull();

    const sched = new ManualScheduler();
    const refresher = new ListRefresher(store, log, sched, (cacheDir) => new ListFetcher({ cacheDir, dispatcher: trusted }));
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
    expect(log.warns).toContainEqual(expect.stringMatching(/^list "streaming" download failed: .*HTTP 500; keeping the last good copy$/));
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
    const etagBody = 'apply1.test\n';
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
    // Plain http is allowed with a sha256 pin of the body.
    const pin = createHash('sha256').update(etagBody).digest('hex');
    writeFileSync(file, ['mode: host', 'stateDir: state2', 'tunnel: { gateways: [{ name: gw1, config: gw1.conf }] }', 'lists:', `  streaming: { url: "${condUrl}", sha256: ${pin}, refresh: "0 4 * * *", timeout: 2s }`, 'rules:', '  - list: streaming', '    via: breakout', ''].join('\n'));
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

describe('ListRefresher: a list pinned by sha256', () => {
  const V1 = 'netflix.test\n';
  const sha = (t: string): string => createHash('sha256').update(t).digest('hex');
  let body = V1;
  let requests = 0;
  let server: Server;
  let dir: string;
  let url: string;

  beforeAll(async () => {
    server = createServer((_req: IncomingMessage, res: ServerResponse) => {
      requests++;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pinned.txt`;
    dir = mkdtempSync(join(tmpdir(), 'splitwan-refresh-pin-'));
    writeFileSync(join(dir, 'gw1.conf'), GW_CONF(), { mode: 0o600 });
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (pin: string): string =>
    ['mode: host', 'stateDir: state', 'tunnel: { gateways: [{ name: gw1, config: gw1.conf }] }', 'lists:', `  pinned: { url: "${url}", sha256: ${pin} }`, 'rules:', '  - list: pinned', '    via: breakout', ''].join('\n');

  it('takes the pinned content over plain http; a body that is not it changes nothing and is an error naming the list', async () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, config(sha(V1).toUpperCase()));
    const log = warnings();
    const store = await ConfigStore.open({ file, logger: silentLogger });
    const refresher = new ListRefresher(store, log, new ManualScheduler());
    await refresher.start();
    expect(store.current.policy.matchName('netflix.test').rule).toBe(0);
    expect(requests).toBe(1);
    // The copy is the pinned content: a refresh asks nothing.
    expect((await refresher.refresh('pinned')).status).toBe('not-modified');
    expect(requests).toBe(1);

    // Someone on the way (or upstream) serves other content, and the cache is gone: the download is refused.
    body = 'netflix.test\nbank.example\n';
    unlinkSync(join(dir, 'state', 'lists', 'pinned.txt'));
    const r = await refresher.refresh('pinned');
    expect(requests).toBe(2);
    expect(r).toMatchObject({ status: 'failed', code: 'SPLITWAN_LIST_PIN' });
    expect(store.current.policy.matchName('bank.example').rule).toBeNull();
    expect(store.current.policy.matchName('netflix.test').rule).toBe(0);
    expect(log.errors).toHaveLength(1);
    expect(log.errors[0]!.msg).toMatch(/^list "pinned" download failed: http:\/\/127\.0\.0\.1:\d+\/pinned\.txt: the body does not match the list's sha256 pin .*; keeping the last good copy$/);
    expect(log.errors[0]!.obj).toMatchObject({ list: 'pinned', code: 'SPLITWAN_LIST_PIN', kept: true });
    refresher.stop();
    store.close();

    // Started with a pin nothing serves: the list matches nothing, and says why.
    writeFileSync(file, config(sha('other\n')));
    const log2 = warnings();
    const store2 = await ConfigStore.open({ file, logger: silentLogger });
    const refresher2 = new ListRefresher(store2, log2, new ManualScheduler());
    await refresher2.start();
    expect(store2.current.policy.matchName('netflix.test').rule).toBeNull();
    expect(log2.errors.map((e) => e.msg)).toEqual([expect.stringMatching(/^list "pinned" download failed: .*sha256 pin.*; no copy yet, its rules match nothing$/)]);
    refresher2.stop();
    store2.close();
  });
});
