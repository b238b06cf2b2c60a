// ListFetcher against real HTTP(S) servers on 127.0.0.1, one handler for both:
//
//   ListFetcher ──undici──▶ https://127.0.0.1:<port>/<route>  (node:https, a throwaway cert made by
//        │                                                     openssl, trusted by the test's Agent)
//        │      ──undici──▶ http://127.0.0.1:<port>/<route>   (node:http: pinned lists, and what an
//        ▼                                                     unpinned list must never reach)
//   <tmp>/lists/<name>.txt + <name>.meta.json

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budget } from '../helpers/emulation.js';
import { ListFetcher } from '../../config/lists/fetch.js';
import { haveOpenssl, makeCert } from '../helpers/tls.js';
import type { ListFormat, ListSource } from '../../config/types.js';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** The built fetcher, for a fresh process that runs it without vitest. */
const DIST_FETCH = join(REPO, 'dist', 'config', 'lists', 'fetch.js');
const HOSTS_V1 = '# blocklist v1\n0.0.0.0 ads.example.com\n0.0.0.0 tracker.example.net\n';
const HOSTS_V2 = '# blocklist v2\n0.0.0.0 ads.example.com\n0.0.0.0 pixel.example.org\n';
const HTML_ERROR =
  '<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n';
const LAST_MODIFIED = 'Sat, 01 Mar 2025 12:00:00 GMT';
const PASSWORD = 's3cret-Pa55';

/** What a route serves next; tests flip it to turn a good server bad. */
type Mode = 'v1' | 'v2' | '500' | 'html' | 'mostly-bad' | 'big-chunked' | 'big-declared' | 'stall-body' | 'stall-headers';

interface Seen {
  headers: IncomingHttpHeaders;
  url: string;
}

const modes = new Map<string, Mode>();
const RULE_FIXTURES = join(REPO, 'test', 'fixtures', 'lists', 'rule-files');
const srs = readFileSync(join(RULE_FIXTURES, 'sing-geosite-netflix.srs'));
/** Real published rule files, and a truncated one. */
const RULE_FILES = new Map<string, Buffer>([
  ['netflix.srs', srs],
  ['truncated.srs', srs.subarray(0, srs.length - 40)],
  ['dlc.dat', readFileSync(join(RULE_FIXTURES, 'dlc-cut.dat'))],
  ['asn.mmdb', readFileSync(join(RULE_FIXTURES, 'GeoLite2-ASN-Test.mmdb'))],
]);
const seen = new Map<string, Seen[]>();
/** Set when the big-chunked route's response closes: how far it got. */
let bigWritten = -1;
let bigFinished = true;

function serveHosts(req: IncomingMessage, res: ServerResponse, body: string, etag: string): void {
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, { etag });
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', etag, 'last-modified': LAST_MODIFIED });
  res.end(body);
}

/** Writes 1 KiB chunks of hosts lines, up to 8 MiB, honouring backpressure, until the client goes away. */
async function streamBig(res: ServerResponse): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/plain' });
  const line = '0.0.0.0 big.example.com\n';
  const chunk = line.repeat(Math.ceil(1024 / line.length));
  let written = 0;
  res.on('close', () => {
    bigWritten = written;
    bigFinished = res.writableFinished;
  });
  while (written < 8 * 1024 * 1024 && !res.destroyed) {
    if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    written += chunk.length;
    await sleep(1);
  }
  res.end();
}

function handler(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const route = url.pathname;
  const list = seen.get(route) ?? [];
  list.push({ headers: req.headers, url: req.url ?? '' });
  seen.set(route, list);

  if (route === '/to-plain') {
    res.writeHead(302, { location: `${plainBase}/list/downgraded` });
    res.end();
    return;
  }
  const redirect = /^\/redirect\/(\d+)$/.exec(route);
  if (redirect) {
    const n = Number(redirect[1]);
    res.writeHead(302, { location: n > 1 ? `/redirect/${n - 1}` : '/list/redirected' });
    res.end();
    return;
  }
  if (route === '/auth') {
    const want = `Basic ${Buffer.from(`reader:${PASSWORD}`).toString('base64')}`;
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="lists"' });
      res.end('unauthorised');
      return;
    }
    serveHosts(req, res, HOSTS_V1, '"auth"');
    return;
  }
  if (route === '/gzip') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    res.end(gzipSync(HOSTS_V2));
    return;
  }
  if (route === '/missing') {
    res.writeHead(404);
    res.end('not found');
    return;
  }
  // Rule files (issue 21): served as the bytes they are.
  const ruleFile = /^\/rule-file\/(.+)$/.exec(route);
  if (ruleFile) {
    const bytes = RULE_FILES.get(ruleFile[1]!);
    if (!bytes) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(bytes);
    return;
  }
  switch (modes.get(route) ?? 'v1') {
    case 'v1':
      serveHosts(req, res, HOSTS_V1, '"v1"');
      return;
    case 'v2':
      serveHosts(req, res, HOSTS_V2, '"v2"');
      return;
    case '500':
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
      return;
    case 'html':
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(HTML_ERROR);
      return;
    case 'mostly-bad':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('good.example.com\n<html>\n<body>oops</body>\n</html>\n');
      return;
    case 'big-chunked':
      void streamBig(res);
      return;
    case 'big-declared':
      res.writeHead(200, { 'content-length': String(50 * 1024 * 1024) });
      res.write('0.0.0.0 a.example.com\n'); // and never the rest
      return;
    case 'stall-body':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('0.0.0.0 slow.example.com\n');
      return;
    case 'stall-headers':
      return; // never answer
  }
}

let root: string;
let http: Server;
let https: Server | null = null;
/** The https server (unpinned lists are fetched over https only). */
let base = '';
let plainBase = '';
/** Trusts the throwaway certificate, and nothing else. */
let trusted: Agent | null = null;
let clock = 1_700_000_000_000;
const now = (): number => clock;

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function source(name: string, url: string, over: Partial<ListSource> = {}): ListSource {
  return {
    name,
    url,
    format: 'hosts' as ListFormat,
    maxBytes: 1024 * 1024,
    timeoutMs: budget(5000), // stretched in an emulated Node: its first fetch (undici and TLS emulated) took 7 s
    pos: { file: '/etc/splitwan/config.yaml', line: 1, col: 1 },
    ...over,
  };
}

function cacheDir(test: string): string {
  return join(root, test);
}

/** A fetcher as the daemon makes one, trusting the test's certificate. */
function fetcher(dir: string): ListFetcher {
  return new ListFetcher({ cacheDir: dir, now, dispatcher: trusted! });
}

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

if (!haveOpenssl) console.log('SKIPPED list-fetch: no openssl to make the test certificate (apt-get install openssl)');

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'splitwan-list-fetch-'));
  http = createServer(handler);
  plainBase = `http://127.0.0.1:${await listen(http)}`;
  if (!haveOpenssl) return;
  const { key, cert } = makeCert(['lists.test']);
  https = createHttpsServer({ key, cert }, handler);
  base = `https://127.0.0.1:${await listen(https)}`;
  trusted = new Agent({ connect: { ca: cert } });
});

afterAll(async () => {
  for (const s of [http, https]) {
    if (!s) continue;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  await trusted?.close();
  await rm(root, { recursive: true, force: true });
});

describe.skipIf(!haveOpenssl)('ListFetcher', () => {
  it('writes the body and meta on the first fetch, in a 0700 directory', async () => {
    clock = 1_700_000_000_000;
    const dir = cacheDir('first');
    const f = fetcher(dir);
    const r = await f.fetch(source('ads', `${base}/list/first`));
    expect(r).toEqual({
      status: 'updated',
      entry: { text: HOSTS_V1, fetchedAt: clock, etag: '"v1"', lastModified: LAST_MODIFIED, url: `${base}/list/first` },
    });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'lists'))).mode & 0o777).toBe(0o700);
    expect(await readFile(join(dir, 'lists', 'ads.txt'), 'utf8')).toBe(HOSTS_V1);
    const meta = JSON.parse(await readFile(join(dir, 'lists', 'ads.meta.json'), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ etag: '"v1"', lastModified: LAST_MODIFIED, fetchedAt: clock, url: `${base}/list/first` });
    for (const file of ['ads.txt', 'ads.meta.json']) {
      expect((await stat(join(dir, 'lists', file))).mode & 0o777).toBe(0o600);
    }
    // No temp files left behind.
    expect((await readdir(join(dir, 'lists'))).sort()).toEqual(['ads.meta.json', 'ads.txt']);
  });

  it('revalidates with If-None-Match / If-Modified-Since and keeps the copy on 304', async () => {
    clock = 1_700_000_000_000;
    const dir = cacheDir('revalidate');
    const url = `${base}/list/revalidate`;
    const f = fetcher(dir);
    expect((await f.fetch(source('ads', url))).status).toBe('updated');
    clock += 3_600_000;
    const r = await f.fetch(source('ads', url));
    expect(r.status).toBe('not-modified');
    expect(r.entry).toEqual({ text: HOSTS_V1, fetchedAt: clock, etag: '"v1"', lastModified: LAST_MODIFIED, url });
    const req = seen.get('/list/revalidate')!.at(-1)!;
    expect(req.headers['if-none-match']).toBe('"v1"');
    expect(req.headers['if-modified-since']).toBe(LAST_MODIFIED);
    // fetchedAt moved on disk too, so a restart knows the copy is fresh.
    expect((await new ListFetcher({ cacheDir: dir }).readCache('ads'))!.fetchedAt).toBe(clock);
    // A changed list replaces the copy.
    modes.set('/list/revalidate', 'v2');
    const r2 = await f.fetch(source('ads', url));
    expect(r2.status).toBe('updated');
    expect(r2.entry!.text).toBe(HOSTS_V2);
    expect(r2.entry!.etag).toBe('"v2"');
  });

  describe('keeps the last good copy when a download goes wrong', () => {
    const dir = (): string => cacheDir('bad');
    const route = '/list/bad';
    const url = (): string => `${base}${route}`;
    let good: Awaited<ReturnType<ListFetcher['readCache']>>;

    beforeAll(async () => {
      modes.set(route, 'v1');
      const r = await fetcher(dir()).fetch(source('bad', url()));
      expect(r.status).toBe('updated');
      good = r.entry;
    });

    async function expectKept(r: { status: string; entry: unknown; error?: string }, error: RegExp): Promise<void> {
      expect(r.status).toBe('failed');
      expect(r.entry).toEqual(good);
      expect(r.error).toMatch(error);
      expect(r.error).toContain(url());
      expect(await readFile(join(dir(), 'lists', 'bad.txt'), 'utf8')).toBe(HOSTS_V1);
    }

    it('HTTP 500', async () => {
      modes.set(route, '500');
      await expectKept(await fetcher(dir()).fetch(source('bad', url())), /HTTP 500/);
    });

    it('an HTML error page with status 200', async () => {
      modes.set(route, 'html');
      await expectKept(
        await fetcher(dir()).fetch(source('bad', url())),
        /no entries found: not a hosts list\? \(line 1: "<!DOCTYPE" is not an IP address/,
      );
    });

    it('a body over maxBytes, cut off as soon as it goes over', async () => {
      modes.set(route, 'big-chunked');
      bigWritten = -1;
      const t0 = Date.now();
      const r = await fetcher(dir()).fetch(source('bad', url(), { maxBytes: 64 * 1024 }));
      await expectKept(r, /body is over the 65536 byte limit/);
      expect(Date.now() - t0).toBeLessThan(budget(3000));
      // The server sees the connection go away long before its 8 MiB are out.
      for (let i = 0; i < 100 && bigWritten < 0; i++) await sleep(20);
      expect(bigFinished).toBe(false);
      expect(bigWritten).toBeLessThan(4 * 1024 * 1024);
    });

    it('a declared Content-Length over maxBytes', async () => {
      modes.set(route, 'big-declared');
      await expectKept(
        await fetcher(dir()).fetch(source('bad', url(), { maxBytes: 64 * 1024 })),
        /body of 52428800 bytes is over the 65536 byte limit/,
      );
    });

    it.each<[Mode]>([['stall-body'], ['stall-headers']])('a server that stalls (%s) past timeoutMs', async (mode) => {
      modes.set(route, mode);
      const t0 = Date.now();
      const r = await fetcher(dir()).fetch(source('bad', url(), { timeoutMs: 300 }));
      const took = Date.now() - t0;
      await expectKept(r, /timed out after 300 ms/);
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(2000);
    });

    it('more than 5 redirects', async () => {
      const r = await fetcher(cacheDir('redirects')).fetch(
        source('r', `${base}/redirect/6`),
      );
      expect(r.status).toBe('failed');
      expect(r.entry).toBeNull();
      expect(r.error).toMatch(/HTTP 302 \(more than 5 redirects\?\)/);
    });

    it('and hands it out after a restart', async () => {
      const again = new ListFetcher({ cacheDir: dir() });
      expect(await again.readCache('bad')).toEqual(good);
    });
  });

  it('follows up to 5 redirects', async () => {
    const r = await fetcher(cacheDir('redirects-ok')).fetch(
      source('r', `${base}/redirect/5`),
    );
    expect(r.status).toBe('updated');
    expect(r.entry!.text).toBe(HOSTS_V1);
    expect(r.entry!.url).toBe(`${base}/redirect/5`);
  });

  it('ignores a cache written for another URL', async () => {
    const dir = cacheDir('url-change');
    const f = fetcher(dir);
    expect((await f.fetch(source('ads', `${base}/list/old-home`))).status).toBe('updated');

    // The new URL fails: the old URL's copy is not this list's copy.
    modes.set('/list/new-home-broken', '500');
    const failed = await f.fetch(source('ads', `${base}/list/new-home-broken`));
    expect(failed).toMatchObject({ status: 'failed', entry: null });

    // The new URL works: fetched unconditionally and stored in place of the old one.
    const r = await f.fetch(source('ads', `${base}/list/new-home`));
    expect(r.status).toBe('updated');
    const req = seen.get('/list/new-home')!.at(-1)!;
    expect(req.headers['if-none-match']).toBeUndefined();
    expect(req.headers['if-modified-since']).toBeUndefined();
    expect((await f.readCache('ads'))!.url).toBe(`${base}/list/new-home`);
  });

  it('sends URL credentials as Basic auth and never shows the password', async () => {
    const f = fetcher(cacheDir('auth'));
    const port = new URL(base).port;
    const ok = await f.fetch(source('private', `https://reader:${PASSWORD}@127.0.0.1:${port}/auth`));
    expect(ok.status).toBe('updated');
    expect(seen.get('/auth')!.at(-1)!.url).toBe('/auth');

    const notFound = await f.fetch(source('private2', `https://reader:${PASSWORD}@127.0.0.1:${port}/missing`));
    expect(notFound.status).toBe('failed');
    expect(notFound.error).toBe(`https://127.0.0.1:${port}/missing: HTTP 404`);

    // A refused connection: the error comes from undici, not from us.
    const closed = createServer();
    const deadPort = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await f.fetch(source('private3', `https://reader:${PASSWORD}@127.0.0.1:${deadPort}/x`));
    expect(refused.status).toBe('failed');
    expect(refused.error).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${deadPort}/x: .*ECONNREFUSED`));

    for (const r of [ok, notFound, refused]) {
      expect(JSON.stringify({ error: r.error })).not.toContain(PASSWORD);
      expect(r.error ?? '').not.toContain('reader');
    }
  });

  it('decompresses a gzip body', async () => {
    const r = await fetcher(cacheDir('gzip')).fetch(source('gz', `${base}/gzip`));
    expect(r.status).toBe('updated');
    expect(r.entry!.text).toBe(HOSTS_V2);
    expect(seen.get('/gzip')!.at(-1)!.headers['accept-encoding']).toContain('gzip');
  });

  it('checks the server\'s certificate: one the system does not trust fails', async () => {
    const dir = cacheDir('https');
    const strict = await new ListFetcher({ cacheDir: dir, now }).fetch(source('tls', `${base}/list/tls`));
    expect(strict.status).toBe('failed');
    expect(strict.error).toContain(`${base}/list/tls: `);
    expect(strict.error).toMatch(/certificate/i);

    const f = fetcher(dir);
    const r = await f.fetch(source('tls', `${base}/list/tls`));
    expect(r.status).toBe('updated');
    expect(r.entry!.text).toBe(HOSTS_V1);
    expect((await f.fetch(source('tls', `${base}/list/tls`))).status).toBe('not-modified');
  });

  it('validates with the configured format, auto included', async () => {
    const f = fetcher(cacheDir('formats'));
    // A hosts body is no CIDR list.
    const wrong = await f.fetch(source('c', `${base}/list/formats`, { format: 'cidr' }));
    expect(wrong.status).toBe('failed');
    expect(wrong.error).toMatch(/no entries found: not a cidr list\?/);
    expect((await f.fetch(source('c', `${base}/list/formats`, { format: 'auto' }))).status).toBe('updated');
  });

  it('rejects a body where most lines are problems, even if some parse', async () => {
    modes.set('/list/mostly-bad', 'mostly-bad');
    const f = fetcher(cacheDir('mostly-bad'));
    const r = await f.fetch(source('m', `${base}/list/mostly-bad`, { format: 'plain' }));
    expect(r).toMatchObject({ status: 'failed', entry: null });
    expect(r.error).toMatch(/malformed: 3 of 4 lines are not plain entries \(line 2: "<html>" is not a domain name/);
  });

  it('refuses list names that could leave the cache directory, without throwing', async () => {
    const dir = cacheDir('names');
    const f = fetcher(dir);
    for (const name of ['../escape', 'a/b', '.hidden', 'a..b', '']) {
      const r = await f.fetch(source(name, `${base}/list/names`));
      expect(r.status).toBe('failed');
      expect(r.error).toMatch(/bad list name/);
      expect(await f.readCache(name)).toBeNull();
    }
    expect(seen.get('/list/names')).toBeUndefined();
  });

  it('fails cleanly on URLs it cannot fetch', async () => {
    const f = fetcher(cacheDir('bad-urls'));
    for (const url of ['not a url', 'ftp://127.0.0.1/list.txt', 'file:///etc/passwd']) {
      const r = await f.fetch(source('u', url));
      expect(r.status).toBe('failed');
      expect(r.entry).toBeNull();
    }
    const noUrl = await f.fetch({ ...source('u', ''), url: undefined });
    expect(noUrl).toEqual({ status: 'failed', entry: null, error: 'list "u" has no url' });
  });

  it('drops validators when the body on disk does not match its meta', async () => {
    const dir = cacheDir('torn');
    const f = fetcher(dir);
    expect((await f.fetch(source('t', `${base}/list/torn`))).status).toBe('updated');
    // As if the daemon died between writing a new body and its meta.
    await writeFile(join(dir, 'lists', 't.txt'), HOSTS_V2);
    const entry = await f.readCache('t');
    expect(entry).toEqual({ text: HOSTS_V2, fetchedAt: clock, url: `${base}/list/torn` });
    // So the next fetch is unconditional and repairs the cache.
    const r = await f.fetch(source('t', `${base}/list/torn`));
    expect(r.status).toBe('updated');
    expect(seen.get('/list/torn')!.at(-1)!.headers['if-none-match']).toBeUndefined();
    expect((await f.readCache('t'))!.etag).toBe('"v1"');
  });

  describe('a list the network could rewrite is refused', () => {
    it('plain http without a pin: refused before any request', async () => {
      const r = await fetcher(cacheDir('plain')).fetch(source('plain', `${plainBase}/list/plain`));
      expect(r).toEqual({ status: 'failed', entry: null, error: `${plainBase}/list/plain: a plain http:// list needs a sha256 pin (or an https:// URL): anyone on the way could rewrite it` });
      expect(seen.get('/list/plain')).toBeUndefined();
    });

    it('an https list redirected to plain http: the http server never sees the request', async () => {
      const r = await fetcher(cacheDir('downgrade')).fetch(source('down', `${base}/to-plain`));
      expect(r.status).toBe('failed');
      expect(r.entry).toBeNull();
      expect(r.error).toBe(`${base}/to-plain: refused a redirect to http:// (127.0.0.1:${new URL(plainBase).port}): an unpinned list is fetched over https only`);
      expect(seen.get('/to-plain')).toHaveLength(1);
      expect(seen.get('/list/downgraded')).toBeUndefined();
      // Pinned, the same redirect is fine: the content is checked, not the road.
      const pinned = await fetcher(cacheDir('downgrade-pinned')).fetch(source('down', `${base}/to-plain`, { sha256: sha(HOSTS_V1) }));
      expect(pinned.status).toBe('updated');
      expect(pinned.entry!.text).toBe(HOSTS_V1);
      expect(seen.get('/list/downgraded')).toHaveLength(1);
    });
  });

  describe('a sha256 pin', () => {
    it('takes the pinned body over plain http, then asks nothing while the copy matches', async () => {
      const dir = cacheDir('pin-ok');
      const url = `${plainBase}/list/pin-ok`;
      const f = fetcher(dir);
      const r = await f.fetch(source('p', url, { sha256: sha(HOSTS_V1) }));
      expect(r.status).toBe('updated');
      expect(r.entry!.text).toBe(HOSTS_V1);
      expect(seen.get('/list/pin-ok')).toHaveLength(1);
      // Pinned content cannot change: no request, not even a conditional one.
      expect(await f.fetch(source('p', url, { sha256: sha(HOSTS_V1) }))).toMatchObject({ status: 'not-modified', entry: { text: HOSTS_V1 } });
      expect(seen.get('/list/pin-ok')).toHaveLength(1);
    });

    it('refuses a body that does not match (tampered, or changed upstream) and keeps the copy that does', async () => {
      const dir = cacheDir('pin-bad');
      const route = '/list/pin-bad';
      const url = `${plainBase}${route}`;
      modes.set(route, 'v1');
      const f = fetcher(dir);
      expect((await f.fetch(source('p', url, { sha256: sha(HOSTS_V1) }))).status).toBe('updated');
      // The server now serves v2, a well-formed list, and the pin moves to a third content nobody serves.
      modes.set(route, 'v2');
      const want = sha('0.0.0.0 other.example\n');
      const r = await f.fetch(source('p', url, { sha256: want }));
      expect(r).toEqual({
        status: 'failed',
        entry: null,
        code: 'SPLITWAN_LIST_PIN',
        error: `${url}: the body does not match the list's sha256 pin (got ${sha(HOSTS_V2)}, pinned ${want}): refused`,
      });
      // The request was unconditional: a copy that is not the pinned content has no validators to offer.
      expect(seen.get(route)!.at(-1)!.headers['if-none-match']).toBeUndefined();
      // Nothing was written: the cache still holds the v1 body that matched the old pin.
      expect(await readFile(join(dir, 'lists', 'p.txt'), 'utf8')).toBe(HOSTS_V1);
      // And with the old pin it is the list again, without a request.
      const before = seen.get(route)!.length;
      expect((await f.fetch(source('p', url, { sha256: sha(HOSTS_V1) }))).status).toBe('not-modified');
      expect(seen.get(route)).toHaveLength(before);
    });

    it('hashes the content, not the transfer: a gzip body matches the pin of the file', async () => {
      const r = await fetcher(cacheDir('pin-gzip')).fetch(source('gz', `${plainBase}/gzip`, { sha256: sha(HOSTS_V2) }));
      expect(r.status).toBe('updated');
      expect(r.entry!.text).toBe(HOSTS_V2);
    });
  });

  it("downloads with splitwan's own undici after Node's bundled one filled the global dispatcher slot", async () => {
    // As in the daemon: Node's own undici (6.x on Node 20 and 22) is loaded
    // before ours, which is loaded on the first download. It puts its Agent in
    // the process-wide slot undici's getGlobalDispatcher() reads (on Node 22
    // and 24 an ESM import of node:http does it; here fetch() does, on every
    // Node). Downloads went through that Agent, which refused our undici 7
    // handlers: "invalid onError method". A fresh process, so Node's undici
    // really is first (this file imported ours at the top).
    expect(existsSync(DIST_FETCH), 'build first: npm run build (npm test does)').toBe(true);
    const script = `
      const slot = Symbol.for('undici.globalDispatcher.1');
      await (await fetch(process.argv[1] + '/list/global-fetch')).text();
      const { Agent } = await import('undici');
      const { ListFetcher } = await import(process.argv[3]);
      const bundled = globalThis[slot] !== undefined && !(globalThis[slot] instanceof Agent);
      // As the daemon makes one: no dispatcher given.
      const f = new ListFetcher({ cacheDir: process.argv[4] });
      const base = { format: 'hosts', maxBytes: 1 << 20, timeoutMs: ${budget(5000)}, pos: { file: 'c.yaml', line: 1, col: 1 } };
      // Pinned, over plain http, through two redirects (the interceptors).
      const pinned = await f.fetch({ ...base, name: 'own', url: process.argv[1] + '/redirect/2', sha256: process.argv[5] });
      // Unpinned: the https-only guard, then TLS answers (the system does not trust the test's certificate).
      const strict = await f.fetch({ ...base, name: 'own-https', url: process.argv[2] + '/list/own-https' });
      console.log(JSON.stringify({ bundled, undici: process.versions.undici, pinned, strict }));`;
    // Asynchronously: the servers answering it run in this process.
    const child = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, plainBase, base, pathToFileURL(DIST_FETCH).href, cacheDir('own-undici'), sha(HOSTS_V1)], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: budget(30_000),
    });
    const out = JSON.parse(child.stdout) as { bundled: boolean; undici: string; pinned: { status: string; error?: string; entry: { text: string } | null }; strict: { status: string; error?: string } };
    expect(out.bundled, `Node ${process.version}'s own undici ${out.undici} in the slot`).toBe(true);
    expect(out.pinned.error).toBeUndefined();
    expect(out.pinned.status).toBe('updated');
    expect(out.pinned.entry!.text).toBe(HOSTS_V1);
    expect(out.strict.status).toBe('failed');
    expect(out.strict.error).toMatch(/certificate/i);
  });

  it('returns null from readCache when nothing is cached', async () => {
    expect(await new ListFetcher({ cacheDir: cacheDir('empty') }).readCache('nothing')).toBeNull();
  });
});

describe.skipIf(!haveOpenssl)('ListFetcher: rule files', () => {
  it('downloads a binary rule file and caches it byte for byte; a corrupt one is refused and the copy kept', async () => {
    const dir = cacheDir('rule-files');
    const f = fetcher(dir);
    const r = await f.fetch(source('nf', `${base}/rule-file/netflix.srs`, { format: 'auto' }));
    expect(r.status).toBe('updated');
    expect(Buffer.compare(r.entry!.bytes, srs)).toBe(0);
    expect(Buffer.compare(await readFile(join(dir, 'lists', 'nf.txt')), srs)).toBe(0);
    expect(Buffer.compare((await f.readCache('nf'))!.bytes, srs)).toBe(0);
    const bad = await f.fetch(source('nf', `${base}/rule-file/truncated.srs`, { format: 'srs' }));
    expect(bad.status).toBe('failed');
    expect(bad.error).toMatch(/truncated\.srs: /);
    // The good copy stays, for its URL.
    expect(Buffer.compare((await f.readCache('nf'))!.bytes, srs)).toBe(0);
  });

  it('checks a geosite.dat download against the list\'s category', async () => {
    const f = fetcher(cacheDir('rule-files-geosite'));
    const ok = await f.fetch(source('nf', `${base}/rule-file/dlc.dat`, { format: 'geosite', select: { categories: ['netflix'] } }));
    expect(ok.status).toBe('updated');
    const typo = await f.fetch(source('nf2', `${base}/rule-file/dlc.dat`, { format: 'auto', select: { categories: ['netflx'] } }));
    expect(typo.status).toBe('failed');
    expect(typo.error).toMatch(/unknown category 'netflx' \(did you mean 'netflix'\?\)/);
    // A database for geodata (no selection) is taken as it is; rules select from it.
    expect((await f.fetch(source('asndb', `${base}/rule-file/asn.mmdb`, { format: 'auto' }))).status).toBe('updated');
    const asText = await f.fetch(source('nf3', `${base}/rule-file/dlc.dat`, { format: 'hosts' }));
    expect(asText.error).toMatch(/format: hosts was given, but the file is a geosite rule file/);
  });
});
