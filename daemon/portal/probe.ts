// Captive portal detection (issue 16): a plain-HTTP GET of a URL that answers
// 204 when nothing is in the way, through the breakout (a socket of splitwan's
// own, marked for the breakout path) with its name looked up by the breakout's
// resolvers. A portal shows as a redirect (302 to its login page) or as a page
// of its own where the 204 should be; the redirects are followed (plain HTTP
// only, a few hops) to learn every host the login needs.
//
// classifyResponse and metaRefresh are pure; probePortal does the I/O through
// the dialer and lookup it is given.
import http from 'node:http';
import { isIP } from 'node:net';
import type net from 'node:net';

/** What one HTTP answer says about the network. */
export type ResponseVerdict =
  | { kind: 'online' }
  | { kind: 'redirect'; to: string }
  /** A page where the 204 should be: the portal's own (`to`: where its meta refresh points, if it does). */
  | { kind: 'content'; to: string | null }
  | { kind: 'failed'; error: string };

export interface ProbeResponse {
  status: number;
  location: string | null;
  /** The start of the body (at most MAX_BODY bytes), latin1. */
  body: string;
}

/** What a probe found. */
export type ProbeResult =
  | { kind: 'online'; at: number }
  /** A portal: `url` is its login page as far as the probe followed, `hosts` every host on the way (the probe's first). */
  | { kind: 'portal'; at: number; url: string; hosts: string[]; status: number }
  /** No answer, or one that says neither (a 5xx): nothing is known. */
  | { kind: 'failed'; at: number; error: string };

const MAX_BODY = 64 * 1024;
export const MAX_HOPS = 5;

/** `<meta http-equiv="refresh" content="0; url=…">`, resolved against `base`; null when there is none (or it is not http/https). */
export function metaRefresh(body: string, base: string): string | null {
  const tag = /<meta\b[^>]*http-equiv\s*=\s*["']?refresh["']?[^>]*>/i.exec(body)?.[0];
  if (!tag) return null;
  const content = /content\s*=\s*("([^"]*)"|'([^']*)')/i.exec(tag);
  const value = content?.[2] ?? content?.[3] ?? '';
  const url = /url\s*=\s*['"]?([^'";\s]+)/i.exec(value)?.[1];
  return url === undefined ? null : absolute(url, base);
}

function absolute(ref: string, base: string): string | null {
  try {
    const u = new URL(ref, base);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * One answer, judged the way Android's NetworkMonitor judges its probe: 204,
 * or a 200 with an empty body (some networks turn a 204 into one), is a free
 * network; a redirect with a Location, or any other 2xx with content, is a
 * portal; anything else (4xx, 5xx, a redirect to nowhere) says nothing.
 */
export function classifyResponse(r: ProbeResponse, requestUrl: string): ResponseVerdict {
  if (r.status === 204 || (r.status === 200 && r.body.length === 0)) return { kind: 'online' };
  if (r.status >= 300 && r.status < 400) {
    const to = r.location === null ? null : absolute(r.location, requestUrl);
    return to === null ? { kind: 'failed', error: `HTTP ${r.status} without a usable Location` } : { kind: 'redirect', to };
  }
  if (r.status >= 200 && r.status < 300) return { kind: 'content', to: metaRefresh(r.body, requestUrl) };
  return { kind: 'failed', error: `HTTP ${r.status}` };
}

/** What a probe needs: one GET on the breakout. */
export interface ProbeIo {
  /** The addresses of a name through the breakout's resolvers (empty: none). */
  lookup(name: string): Promise<string[]>;
  /** A TCP connection on the breakout path. */
  dial(address: string, port: number, timeoutMs: number): Promise<net.Socket>;
  timeoutMs: number;
  now(): number;
}

/** One GET of `url` (http only) through `io`; the start of the body. */
export async function fetchOnce(url: string, io: ProbeIo): Promise<ProbeResponse> {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const address = isIP(host) ? host : (await io.lookup(host))[0];
  if (address === undefined) throw new Error(`${host} has no address through the breakout's resolvers`);
  const port = Number(u.port) || 80;
  const socket = await io.dial(address, port, io.timeoutMs);
  return new Promise<ProbeResponse>((resolve, reject) => {
    const timer = setTimeout(() => req.destroy(new Error(`no answer from ${u.host} within ${io.timeoutMs} ms`)), io.timeoutMs);
    // No `agent`: with one (even `agent: false`) Node dials a socket of its own, unmarked, and ignores ours.
    const req = http.request(
      { method: 'GET', host: address, port, path: `${u.pathname}${u.search}`, headers: { host: u.host, 'user-agent': 'splitwan-portal-probe', connection: 'close' }, createConnection: () => socket },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const done = (): void => {
          clearTimeout(timer);
          const loc = res.headers.location;
          resolve({ status: res.statusCode ?? 0, location: typeof loc === 'string' ? loc : null, body: Buffer.concat(chunks).toString('latin1') });
          res.destroy();
        };
        res.on('data', (d: Buffer) => {
          if (size >= MAX_BODY) return;
          chunks.push(d.subarray(0, MAX_BODY - size));
          size += d.length;
          // Enough to judge: the rest of a large page is not read.
          if (size >= MAX_BODY) done();
        });
        res.on('end', done);
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      },
    );
    req.on('error', (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    });
    req.end();
  });
}

/**
 * The probe: GET `probeUrl`, then follow a portal's redirects (and meta
 * refreshes) over plain HTTP for at most MAX_HOPS, collecting each host. An
 * https hop is recorded, not fetched: its host is what the login needs.
 */
export async function probePortal(probeUrl: string, io: ProbeIo): Promise<ProbeResult> {
  const hosts: string[] = [];
  const note = (url: string): void => {
    const h = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (!hosts.includes(h)) hosts.push(h);
  };
  note(probeUrl);
  let url = probeUrl;
  let status = 0;
  for (let hop = 0; hop <= MAX_HOPS; hop++) {
    let r: ProbeResponse;
    try {
      r = await fetchOnce(url, io);
    } catch (e) {
      if (hop === 0) return { kind: 'failed', at: io.now(), error: (e as Error).message };
      break; // the portal was seen; a later hop that fails leaves what is known
    }
    const v = classifyResponse(r, url);
    if (hop === 0) {
      if (v.kind === 'online') return { kind: 'online', at: io.now() };
      if (v.kind === 'failed') return { kind: 'failed', at: io.now(), error: v.error };
      status = r.status;
    }
    if (v.kind === 'redirect' || (v.kind === 'content' && v.to !== null)) {
      const to = v.kind === 'redirect' ? v.to : v.to!;
      if (to === url) break;
      note(to);
      url = to;
      if (new URL(to).protocol !== 'http:') break;
      continue;
    }
    break; // the page itself (the login form), or an answer that says nothing more
  }
  return { kind: 'portal', at: io.now(), url, hosts, status };
}
