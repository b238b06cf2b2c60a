// Downloads url lists into a disk cache. The daemon starts from the cache, so a
// router that boots without internet still routes by yesterday's lists, and a
// bad download (error page, truncated body, wrong file) never replaces a good
// copy.
//
// A list decides where traffic goes, so whoever can rewrite it in transit can
// reroute (or unblock) whatever it names. A list is therefore fetched over
// https at every hop, redirects included, or its content is pinned
// (`sha256:`): a pinned body that does not hash to the pin is refused like
// any bad download, whatever the scheme it came over.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import type { Dispatcher } from 'undici';
import { undici } from '../../lib/undici-lazy.js';
import type { ListSource } from '../types.js';
import { ListFormatError } from './decoded.js';
import { isTextContent, readListContent } from './list-content.js';
import { detectRuleFileFormat } from './detect.js';

export interface ListCacheEntry {
  /** The body as downloaded: rule files are binary, so this, not `text`, is the list. */
  bytes: Buffer;
  /** The body as UTF-8 text (text lists), decoded when read. */
  readonly text: string;
  fetchedAt: number; // ms epoch
  etag?: string;
  lastModified?: string;
  url: string;
}

export interface ListFetchResult {
  status: 'updated' | 'not-modified' | 'failed';
  /** The last good copy (new or old); null when there is none for this URL (and pin). */
  entry: ListCacheEntry | null;
  error?: string;
  /** SPLITWAN_LIST_PIN: the body was not the pinned content (tampered with, or the list changed upstream). */
  code?: 'SPLITWAN_LIST_PIN';
}

/** What `${name}.meta.json` holds. The hash ties it to the body written just before it. */
interface CacheMeta {
  url: string;
  fetchedAt: number;
  etag?: string;
  lastModified?: string;
  sha256: string;
}

const MAX_REDIRECTIONS = 5;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Refuses anything that could leave the cache directory, even if the config layer let it through. */
function checkName(name: string): string | null {
  if (!NAME.test(name) || name.includes('/') || name.includes('..')) return `bad list name "${name}"`;
  return null;
}

/** Where the cached body of list `name` lives (entries' line numbers point into it). */
export function listCacheFile(cacheDir: string, name: string): string {
  return join(cacheDir, 'lists', `${name}.txt`);
}

/** The URL for messages: no user name or password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === '' && u.password === '') return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    // Not parseable: cut anything that looks like userinfo.
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Whether a cached body is the pinned content (true when the list has no pin). */
export function matchesPin(body: string | Buffer, pin: string | undefined): boolean {
  return pin === undefined || sha256(body) === pin;
}

/** A cache entry whose `text` is decoded from its bytes only when asked for (a rule file never is). */
export function cacheEntry(bytes: Buffer, fields: Omit<ListCacheEntry, 'bytes' | 'text'>): ListCacheEntry {
  const entry = {
    ...fields,
    get text() {
      return bytes.toString('utf8');
    },
  } as ListCacheEntry;
  // Not enumerable: an entry logs and compares as its text, not as a byte dump.
  Object.defineProperty(entry, 'bytes', { value: bytes, enumerable: false });
  return entry;
}

/**
 * Refuses every hop of a request that is not https, redirects included (the
 * redirect interceptor dispatches each hop through what it wraps): an https
 * list that redirects to http would hand the list to the network again.
 */
const httpsOnly: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
  const origin = opts.origin === undefined ? null : new URL(String(opts.origin));
  if (origin?.protocol === 'https:') return dispatch(opts, handler);
  handler.onResponseError?.(null as unknown as Dispatcher.DispatchController, new Error(`refused a redirect to ${origin?.protocol ?? '?'}// (${origin?.host ?? ''}): an unpinned list is fetched over https only`));
  return false;
};

/**
 * The connection pool of every list download (one ListFetcher is made per
 * refresh; the pool outlives them, and undici closes idle sockets itself).
 * Never undici's getGlobalDispatcher(): that returns whatever sits in the
 * process-wide slot (Symbol.for('undici.globalDispatcher.1')), and Node's own
 * bundled undici fills it as soon as it loads: on Node 22 and 24 when ESM code
 * imports node:http (the namespace reads http.WebSocket, a lazy getter that
 * loads it), on Node 20 at the first global fetch(). Node 20 and 22 bundle
 * undici 6, whose Agent refuses the undici 7 handlers our interceptors pass
 * on: every download failed with "invalid onError method". Our own Agent
 * speaks the API of the undici that made the interceptors, on every Node.
 */
let listsAgent: Dispatcher | null = null;

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message !== e.message ? `${e.message}: ${cause.message}` : e.message;
  }
  return String(e);
}

export class ListFetcher {
  private readonly dir: string;
  private readonly now: () => number;
  /** Redirects followed; `https`: and every hop https (unpinned lists). */
  private dispatchers: { any: Dispatcher; https: Dispatcher } | null = null;
  private readonly baseDispatcher: Dispatcher | undefined;

  constructor(opts: { cacheDir: string; now?: () => number; dispatcher?: Dispatcher }) {
    this.dir = join(opts.cacheDir, 'lists');
    this.now = opts.now ?? Date.now;
    this.baseDispatcher = opts.dispatcher;
  }

  /** undici's dispatcher with redirects followed (undici 7 dropped the per-request option); loaded on the first download. */
  private async http(httpsOnlyHops: boolean): Promise<{ dispatcher: Dispatcher; request: typeof import('undici').request }> {
    const { Agent, interceptors, request } = await undici();
    if (this.dispatchers === null) {
      const base = this.baseDispatcher ?? (listsAgent ??= new Agent());
      const redirect = interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS });
      // The guard goes first, so the redirect interceptor dispatches every hop through it.
      this.dispatchers = { any: base.compose(redirect), https: base.compose(httpsOnly, redirect) };
    }
    return { dispatcher: httpsOnlyHops ? this.dispatchers.https : this.dispatchers.any, request };
  }

  private paths(name: string): { body: string; meta: string } {
    return { body: join(this.dir, `${name}.txt`), meta: join(this.dir, `${name}.meta.json`) };
  }

  /** The cached copy of a list, or null when there is none (or it is unreadable). */
  async readCache(name: string): Promise<ListCacheEntry | null> {
    if (checkName(name)) return null;
    const p = this.paths(name);
    let bytes: Buffer;
    let meta: unknown;
    try {
      bytes = await readFile(p.body);
      meta = JSON.parse(await readFile(p.meta, 'utf8'));
    } catch {
      return null;
    }
    if (!isMeta(meta)) return null;
    const entry = cacheEntry(bytes, { fetchedAt: meta.fetchedAt, url: meta.url });
    // A crash between writing the body and its meta leaves validators for another body:
    // keep the text but drop them, so the next fetch is unconditional.
    if (meta.sha256 === sha256(bytes)) {
      if (meta.etag !== undefined) entry.etag = meta.etag;
      if (meta.lastModified !== undefined) entry.lastModified = meta.lastModified;
    }
    return entry;
  }

  /** Fetches `source.url`. Never throws: failures come back as status 'failed'. */
  async fetch(source: ListSource): Promise<ListFetchResult> {
    const shown = redactUrl(source.url ?? '');
    const nameError = checkName(source.name);
    if (nameError) return { status: 'failed', entry: null, error: `${shown}: ${nameError}` };
    if (!source.url) return { status: 'failed', entry: null, error: `list "${source.name}" has no url` };
    let cached = await this.readCache(source.name);
    // A cache for another URL is another list: neither its validators nor its text apply;
    // nor is a copy that is not the pinned content (the pin changed, or it predates the pin).
    if (cached && (cached.url !== source.url || !matchesPin(cached.bytes, source.sha256))) cached = null;
    // Pinned content cannot change: the copy that matches is the list, with nothing to ask.
    if (cached && source.sha256 !== undefined) return { status: 'not-modified', entry: cached };
    try {
      return await this.download(source, source.url, cached);
    } catch (e) {
      return { status: 'failed', entry: cached, error: `${shown}: ${scrub(errorText(e), source.url)}` };
    }
  }

  private async download(source: ListSource, url: string, cached: ListCacheEntry | null): Promise<ListFetchResult> {
    const shown = redactUrl(url);
    const fail = (why: string): ListFetchResult => ({ status: 'failed', entry: cached, error: `${shown}: ${why}` });
    const target = new URL(url);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') return fail('only http and https URLs are fetched');
    if (target.protocol !== 'https:' && source.sha256 === undefined) return fail('a plain http:// list needs a sha256 pin (or an https:// URL): anyone on the way could rewrite it');
    const headers: Record<string, string> = { 'accept-encoding': 'gzip, deflate', 'user-agent': 'splitwan' };
    // Credentials in the URL become a header: undici does not send userinfo, and
    // its redirect handler drops authorization when the origin changes.
    if (target.username !== '' || target.password !== '') {
      const user = decodeURIComponent(target.username);
      const pass = decodeURIComponent(target.password);
      headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
      target.username = '';
      target.password = '';
    }
    if (cached?.etag) headers['if-none-match'] = cached.etag;
    if (cached?.lastModified) headers['if-modified-since'] = cached.lastModified;

    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, source.timeoutMs);
    try {
      const { dispatcher, request } = await this.http(source.sha256 === undefined);
      const res = await request(target, { method: 'GET', headers, dispatcher, signal: ac.signal });
      const status = res.statusCode;
      if (status === 304) {
        await res.body.dump();
        if (!cached) return fail('server answered 304 Not Modified to an unconditional request');
        const entry = cacheEntry(cached.bytes, { url: cached.url, fetchedAt: this.now() });
        if (cached.etag !== undefined) entry.etag = cached.etag;
        if (cached.lastModified !== undefined) entry.lastModified = cached.lastModified;
        const writeError = await this.writeMeta(source.name, entry).then(
          () => null,
          (e: unknown) => errorText(e),
        );
        return writeError === null
          ? { status: 'not-modified', entry }
          : { status: 'not-modified', entry, error: `${shown}: could not update the cache: ${writeError}` };
      }
      if (status < 200 || status > 299) {
        await res.body.dump();
        const hint = status >= 300 && status < 400 ? ` (more than ${MAX_REDIRECTIONS} redirects?)` : '';
        return fail(`HTTP ${status}${hint}`);
      }
      const declared = Number(header(res.headers, 'content-length'));
      if (Number.isFinite(declared) && declared > source.maxBytes) {
        res.body.destroy();
        return fail(`body of ${declared} bytes is over the ${source.maxBytes} byte limit`);
      }
      const body = await readLimited(res.body, header(res.headers, 'content-encoding'), source.maxBytes);
      if ('error' in body) return fail(body.error);
      if (source.sha256 !== undefined) {
        const got = sha256(body.bytes);
        if (got !== source.sha256) return { ...fail(`the body does not match the list's sha256 pin (got ${got}, pinned ${source.sha256}): refused`), code: 'SPLITWAN_LIST_PIN' };
      }
      const invalid = validate(body.bytes, source);
      if (invalid) return fail(invalid);
      const entry = cacheEntry(body.bytes, { fetchedAt: this.now(), url });
      const etag = header(res.headers, 'etag');
      const lastModified = header(res.headers, 'last-modified');
      if (etag) entry.etag = etag;
      if (lastModified) entry.lastModified = lastModified;
      try {
        await this.write(source.name, entry);
      } catch (e) {
        return { status: 'updated', entry, error: `${shown}: could not write the cache: ${errorText(e)}` };
      }
      return { status: 'updated', entry };
    } catch (e) {
      if (timedOut) return fail(`timed out after ${source.timeoutMs} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private async write(name: string, entry: ListCacheEntry): Promise<void> {
    // Body first: readCache notices a body without its meta by the hash.
    await atomicWrite(this.dir, this.paths(name).body, entry.bytes);
    await this.writeMeta(name, entry);
  }

  private async writeMeta(name: string, entry: ListCacheEntry): Promise<void> {
    const meta: CacheMeta = { url: entry.url, fetchedAt: entry.fetchedAt, sha256: sha256(entry.bytes) };
    if (entry.etag !== undefined) meta.etag = entry.etag;
    if (entry.lastModified !== undefined) meta.lastModified = entry.lastModified;
    await atomicWrite(this.dir, this.paths(name).meta, `${JSON.stringify(meta, null, 2)}\n`);
  }
}

function isMeta(v: unknown): v is CacheMeta {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    typeof m.url === 'string' &&
    typeof m.fetchedAt === 'number' &&
    typeof m.sha256 === 'string' &&
    (m.etag === undefined || typeof m.etag === 'string') &&
    (m.lastModified === undefined || typeof m.lastModified === 'string')
  );
}

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Removes the URL's password (raw and decoded) from text that a library may have built from it. */
function scrub(message: string, url: string): string {
  let out = message.split(url).join(redactUrl(url));
  try {
    const u = new URL(url);
    for (const secret of [u.password, decodeURIComponent(u.password)]) {
      if (secret !== '') out = out.split(secret).join('***');
    }
  } catch {
    // Unparseable URLs fail before any request is made; nothing else to hide.
  }
  return out;
}

/**
 * Reads a body up to `max` bytes (after decompression, so a small gzip bomb is
 * cut off too) and stops the transfer as soon as it goes over.
 */
async function readLimited(
  body: Readable,
  encoding: string | undefined,
  max: number,
): Promise<{ bytes: Buffer } | { error: string }> {
  const enc = (encoding ?? 'identity').trim().toLowerCase();
  let stream: Readable;
  if (enc === 'identity' || enc === '') stream = body;
  else if (enc === 'gzip' || enc === 'x-gzip') stream = body.pipe(createGunzip());
  else if (enc === 'deflate') stream = body.pipe(createInflate());
  else {
    body.destroy();
    return { error: `unsupported content-encoding "${enc}"` };
  }
  if (stream !== body) body.once('error', (e) => stream.destroy(e));
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      const b = chunk as Buffer;
      total += b.length;
      if (total > max) {
        body.destroy();
        stream.destroy();
        return { error: `body is over the ${max} byte limit` };
      }
      chunks.push(b);
    }
  } finally {
    if (stream !== body) body.destroy();
  }
  return { bytes: Buffer.concat(chunks, total) };
}

/** Why a downloaded body is not a list of the expected format, or null when it is. */
function validate(bytes: Buffer, source: ListSource): string | null {
  // A geoip.dat or .mmdb with no selection is a geodata database: rules select from it later.
  const kind = detectRuleFileFormat(bytes);
  if (source.select === undefined && (kind === 'geoip' || kind === 'mmdb') && (source.format === 'auto' || source.format === kind)) return null;
  let parsed;
  try {
    parsed = readListContent(bytes, source);
  } catch (e) {
    if (e instanceof ListFormatError) return e.detail;
    throw e;
  }
  // Rule files are refused whole or not at all; a text list is malformed when most of its lines are.
  if (!isTextContent(parsed)) return null;
  const first = parsed.problems[0];
  const firstText = first ? ` (line ${first.line}: ${first.message})` : '';
  let nonBlank = 0;
  for (const l of bytes.toString('utf8').split('\n')) if (l.trim() !== '') nonBlank++;
  const badLines = new Set(parsed.problems.map((p) => p.line)).size;
  if (badLines * 2 > nonBlank) {
    return `malformed: ${badLines} of ${nonBlank} lines are not ${parsed.format} entries${firstText}`;
  }
  return null;
}

/** Writes via a temp file in the same directory and a rename, so readers never see half a file. */
async function atomicWrite(dir: string, path: string, data: string | Buffer): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    // 0600: the meta holds the URL, which may carry a password.
    await writeFile(tmp, data, { mode: 0o600 });
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
