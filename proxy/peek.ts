// Decides a destination name from the first bytes a client sends, without
// consuming them: the proxy buffers what it read and replays it upstream
// unchanged, so this only ever looks. Pure: bytes in, decision out.
//
// Whatever the client sends is hostile input: every length is checked before
// it is followed, nothing throws, and a name is only returned when it is a
// plain host name that policy can match (an IP literal or junk gives null, so
// the proxy falls back to the original destination address).

export type PeekResult =
  | { kind: 'more' } // not enough bytes yet to decide
  | { kind: 'tls'; sni: string | null; ech: boolean } // a TLS ClientHello (complete, or the best seen when final)
  | { kind: 'http'; host: string | null } // an HTTP/1.x request head (complete, or best seen when final)
  | { kind: 'other' }; // neither TLS nor HTTP/1.x

/**
 * The most the proxy holds back before deciding. A buffer this long is decided
 * as if final, on its first PEEK_LIMIT bytes only, so the answer never depends
 * on how far past the limit the caller happened to read.
 */
export const PEEK_LIMIT = 16 * 1024;

// Shared results for the answers that carry nothing: one connection, no garbage.
const MORE: PeekResult = Object.freeze({ kind: 'more' });
const OTHER: PeekResult = Object.freeze({ kind: 'other' });
const TLS_NONE: PeekResult = Object.freeze({ kind: 'tls', sni: null, ech: false });
const HTTP_NONE: PeekResult = Object.freeze({ kind: 'http', host: null });

/**
 * buf: every byte the client has sent so far. final: no more bytes will come
 * (16 KiB limit reached, peek timeout, or client half-closed) — decide on what
 * was seen, never return 'more'.
 */
export function peek(buf: Buffer, final = false): PeekResult {
  if (buf.length >= PEEK_LIMIT) {
    buf = buf.subarray(0, PEEK_LIMIT);
    final = true;
  }
  if (buf.length === 0) return final ? OTHER : MORE;
  const b0 = buf[0]!;
  if (b0 === CT_HANDSHAKE) return peekTls(buf, final);
  if (isUpper(b0)) return peekHttp(buf, final);
  return OTHER;
}

// ---------------------------------------------------------------- TLS

const CT_HANDSHAKE = 22;
const HS_CLIENT_HELLO = 1;
const REC_HDR = 5;
const HS_HDR = 4;
// RFC 8446 §5.1: a plaintext record never carries more than 2^14 bytes.
const MAX_RECORD = 1 << 14;
const EXT_SERVER_NAME = 0x0000;
const EXT_ECH = 0xfe0d;

function recordHeaderOk(buf: Buffer, off: number): boolean {
  // Checks only the header bytes that have arrived; the length comes later.
  const n = buf.length;
  if (off < n && buf[off] !== CT_HANDSHAKE) return false;
  if (off + 1 < n && buf[off + 1] !== 3) return false;
  if (off + 2 < n && buf[off + 2]! > 4) return false;
  return true;
}

function peekTls(buf: Buffer, final: boolean): PeekResult {
  // 0x16 alone is one byte of anything; 16 03 0x (x ≤ 4) is a handshake record
  // header, SSL 3.0 to TLS 1.3, and from there on a failure is 'tls' with no name.
  if (!recordHeaderOk(buf, 0)) return OTHER;
  if (buf.length < 3) return final ? OTHER : MORE;

  // The ClientHello may be cut into many records (any size, even one byte
  // each) and those into any TCP segments: gather the handshake bytes. One
  // record is the common case and costs no copy.
  let parts: Buffer[] | null = null;
  let single: Buffer | null = null;
  let got = 0;
  let need = -1; // handshake header + body, once the header has arrived
  let off = 0;
  for (;;) {
    if (off + REC_HDR > buf.length) {
      if (!recordHeaderOk(buf, off)) return TLS_NONE;
      if (!final) return MORE;
      break;
    }
    if (!recordHeaderOk(buf, off)) return TLS_NONE; // another content type mid-hello is not allowed
    const len = (buf[off + 3]! << 8) | buf[off + 4]!;
    if (len === 0 || len > MAX_RECORD) return TLS_NONE;
    const start = off + REC_HDR;
    const end = Math.min(start + len, buf.length);
    if (end > start) {
      const frag = buf.subarray(start, end);
      if (single === null && parts === null) single = frag;
      else {
        parts ??= [single!];
        parts.push(frag);
      }
      got += end - start;
    }
    if (need < 0 && got >= HS_HDR) {
      const hs = parts === null ? single! : Buffer.concat(parts, got);
      if (hs[0] !== HS_CLIENT_HELLO) return TLS_NONE;
      const body = (hs[1]! << 16) | (hs[2]! << 8) | hs[3]!;
      // Waiting for a hello that cannot fit under the limit would only stall the client.
      if (REC_HDR + HS_HDR + body > PEEK_LIMIT) return TLS_NONE;
      need = HS_HDR + body;
    }
    if (need >= 0 && got >= need) break;
    if (end < start + len) {
      if (!final) return MORE;
      break;
    }
    off = start + len;
  }

  if (got < HS_HDR) return TLS_NONE; // final, and not even the handshake header
  const hs = parts === null ? single! : Buffer.concat(parts, got);
  const complete = got >= need;
  return parseClientHello(hs.subarray(HS_HDR, complete ? need : got), complete);
}

/**
 * Parses a ClientHello body (RFC 8446 §4.1.2). A complete body must be exactly
 * well formed; a cut one (final, never finished) reports what its complete
 * extensions said.
 */
function parseClientHello(h: Buffer, complete: boolean): PeekResult {
  const n = h.length;
  if (n >= 1 && h[0] !== 3) return TLS_NONE; // legacy_version 3.x
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > n) return TLS_NONE;
  const sid = h[p]!;
  if (sid > 32) return TLS_NONE;
  p += 1 + sid;
  if (p + 2 > n) return TLS_NONE;
  const cs = (h[p]! << 8) | h[p + 1]!;
  if (cs < 2 || (cs & 1) !== 0) return TLS_NONE;
  p += 2 + cs;
  if (p + 1 > n) return TLS_NONE;
  const cm = h[p]!;
  if (cm < 1) return TLS_NONE;
  p += 1 + cm;
  // No extensions at all (an SSL 3.0-era hello) is valid and simply has no name.
  if (p + 2 > n) return TLS_NONE;
  const extEnd = p + 2 + ((h[p]! << 8) | h[p + 1]!);
  p += 2;
  if (complete && extEnd !== n) return TLS_NONE;

  let sni: string | null = null;
  let sawSni = false;
  let ech = false;
  while (p < extEnd) {
    if (p + 4 > n) break; // cut: decide on the extensions seen whole
    if (p + 4 > extEnd) return TLS_NONE;
    const type = (h[p]! << 8) | h[p + 1]!;
    const len = (h[p + 2]! << 8) | h[p + 3]!;
    p += 4;
    if (p + len > extEnd) return TLS_NONE;
    if (p + len > n) break;
    if (type === EXT_SERVER_NAME) {
      // RFC 8446 §4.2: one extension of a type; two names would be ambiguous.
      if (sawSni) return TLS_NONE;
      sawSni = true;
      const name = parseServerName(h, p, p + len);
      if (name === undefined) return TLS_NONE;
      sni = name;
    } else if (type === EXT_ECH) {
      if (ech) return TLS_NONE;
      // With ECH the real name is encrypted inside; the outer server_name is
      // the client-facing server, which is where the connection really goes.
      ech = true;
    }
    p += len;
  }
  return sni === null && !ech ? TLS_NONE : { kind: 'tls', sni, ech };
}

/**
 * server_name extension data (RFC 6066 §3). Like OpenSSL, accept exactly one
 * host_name entry and nothing else: other name types were never defined and
 * their encoding is unknowable. undefined: malformed; null: not a usable name.
 */
function parseServerName(h: Buffer, s: number, e: number): string | null | undefined {
  if (e - s < 2 + 3) return undefined;
  const list = (h[s]! << 8) | h[s + 1]!;
  if (s + 2 + list !== e) return undefined;
  if (h[s + 2] !== 0) return undefined;
  const len = (h[s + 3]! << 8) | h[s + 4]!;
  if (s + 5 + len !== e) return undefined;
  return hostName(h, s + 5, e);
}

// ---------------------------------------------------------------- names

const DOT = 0x2e;
const HYPHEN = 0x2d;

function isUpper(c: number): boolean {
  return c >= 0x41 && c <= 0x5a;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isNameChar(c: number): boolean {
  const l = c | 0x20;
  return (l >= 0x61 && l <= 0x7a) || isDigit(c) || c === HYPHEN || c === 0x5f;
}

/**
 * The bytes [s, e) as splitwan compares names (the same rules as
 * config/domain.ts normalizeDomain for ASCII): lower case, one trailing dot
 * dropped, LDH labels plus '_', 1–63 per label, at most 253 in all, and not an
 * IP literal (a last label that is a number, as URL parsers read it). Anything
 * else is null. IDNs arrive as punycode on the wire, so no IDN step is needed.
 */
function hostName(b: Buffer, s: number, e: number): string | null {
  if (e > s && b[e - 1] === DOT) e--;
  if (e - s < 1 || e - s > 253) return null;
  let labelStart = s;
  for (let i = s; i <= e; i++) {
    const c = i < e ? b[i]! : DOT;
    if (c === DOT) {
      const len = i - labelStart;
      if (len < 1 || len > 63) return null;
      if (b[labelStart] === HYPHEN || b[i - 1] === HYPHEN) return null;
      labelStart = i + 1;
    } else if (!isNameChar(c)) {
      return null;
    }
  }
  if (isNumber(b, s, e)) return null;
  return b.toString('latin1', s, e).toLowerCase();
}

/** Is the last label of [s, e) a number (decimal, or 0x hex as URL parsers take it)? */
function isNumber(b: Buffer, s: number, e: number): boolean {
  let i = e;
  while (i > s && b[i - 1] !== DOT) i--;
  if (e - i >= 2 && b[i] === 0x30 && (b[i + 1]! | 0x20) === 0x78) {
    for (let j = i + 2; j < e; j++) {
      const l = b[j]! | 0x20;
      if (!isDigit(b[j]!) && !(l >= 0x61 && l <= 0x66)) return false;
    }
    return true;
  }
  for (let j = i; j < e; j++) if (!isDigit(b[j]!)) return false;
  return true;
}

// ---------------------------------------------------------------- HTTP/1.x

const SP = 0x20;
const HT = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
const VERSION = Buffer.from('HTTP/1.', 'latin1');

function peekHttp(buf: Buffer, final: boolean): PeekResult {
  const n = buf.length;
  const wait = final ? OTHER : MORE;

  // Request line: METHOD SP request-target SP HTTP/1.x CRLF (RFC 9112 §3).
  // Anything that stops looking like one is 'other' at once, not after a timeout.
  let i = 0;
  while (i < n && isUpper(buf[i]!)) if (++i > 10) return OTHER;
  if (i === n) return wait;
  if (buf[i] !== SP || i < 3) return OTHER;
  const targetStart = ++i;
  while (i < n && buf[i] !== SP) {
    const c = buf[i]!;
    if (c < 0x21 || c > 0x7e) return OTHER;
    i++;
  }
  if (i === n) return wait;
  const targetEnd = i;
  if (targetEnd === targetStart) return OTHER;
  i++;
  for (let k = 0; k < VERSION.length; k++, i++) {
    if (i === n) return wait;
    if (buf[i] !== VERSION[k]) return OTHER; // also turns away the HTTP/2 preface, PRI * HTTP/2.0
  }
  if (i === n) return wait;
  if (buf[i] !== 0x30 && buf[i] !== 0x31) return OTHER;
  i++;
  if (i === n) return wait;
  if (buf[i] === CR) {
    i++;
    if (i === n) return wait;
  }
  if (buf[i] !== LF) return OTHER;
  i++;

  // Header lines; LF alone ends a line too (RFC 9112 §2.2 lets a recipient
  // accept it). Only lines whose LF has arrived count.
  let hosts = 0;
  let hostStart = 0;
  let hostEnd = 0;
  let folded = false;
  let lastWasHost = false;
  let complete = false;
  for (;;) {
    const lf = buf.indexOf(LF, i);
    if (lf < 0) break;
    const le = lf > i && buf[lf - 1] === CR ? lf - 1 : lf;
    if (le === i) {
      complete = true;
      break;
    }
    const c0 = buf[i]!;
    if (c0 === SP || c0 === HT) {
      // obs-fold: a continuation would change the Host value, and servers
      // either reject it or join it; either way the name is not the one seen.
      if (lastWasHost) folded = true;
    } else {
      lastWasHost = isHostField(buf, i, le);
      if (lastWasHost) {
        hosts++;
        hostStart = i + 5;
        hostEnd = le;
      }
    }
    i = lf + 1;
  }
  if (!complete && !final) return MORE;

  // RFC 9110 §7.2: more than one Host is a 400, so there is no right name.
  if (hosts > 1 || folded) return HTTP_NONE;
  // RFC 9112 §3.2.2: an absolute-form target wins over Host.
  const abs = absoluteAuthority(buf, targetStart, targetEnd);
  if (abs !== undefined) return abs === null ? HTTP_NONE : { kind: 'http', host: abs };
  if (hosts === 0) return HTTP_NONE;
  const host = hostPort(buf, hostStart, hostEnd);
  return host === null ? HTTP_NONE : { kind: 'http', host };
}

function isHostField(b: Buffer, s: number, e: number): boolean {
  return (
    e - s >= 5 &&
    (b[s]! | 0x20) === 0x68 &&
    (b[s + 1]! | 0x20) === 0x6f &&
    (b[s + 2]! | 0x20) === 0x73 &&
    (b[s + 3]! | 0x20) === 0x74 &&
    b[s + 4] === COLON
  );
}

/** A Host value or URI authority in [s, e): OWS trimmed, `:port` dropped; `[v6]` and userinfo give null. */
function hostPort(b: Buffer, s: number, e: number): string | null {
  while (s < e && (b[s] === SP || b[s] === HT)) s++;
  while (e > s && (b[e - 1] === SP || b[e - 1] === HT)) e--;
  if (s === e || b[s] === 0x5b) return null; // empty, or an IP literal
  let colon = -1;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c === COLON) {
      if (colon >= 0) return null;
      colon = i;
    } else if (colon >= 0 && !isDigit(c)) {
      return null;
    }
  }
  return hostName(b, s, colon >= 0 ? colon : e);
}

/**
 * The host of an absolute-form target (`scheme://authority/...`), null when it
 * has no usable host, undefined when the target is not absolute-form (origin
 * `/x`, asterisk `*`, or CONNECT's authority form, which has no `//`).
 */
function absoluteAuthority(b: Buffer, s: number, e: number): string | null | undefined {
  const c0 = b[s]! | 0x20;
  if (!(c0 >= 0x61 && c0 <= 0x7a)) return undefined;
  let i = s + 1;
  while (i < e) {
    const c = b[i]!;
    const l = c | 0x20;
    if ((l >= 0x61 && l <= 0x7a) || isDigit(c) || c === 0x2b || c === HYPHEN || c === DOT) i++;
    else break;
  }
  if (i + 3 > e || b[i] !== COLON || b[i + 1] !== 0x2f || b[i + 2] !== 0x2f) return undefined;
  const as = i + 3;
  let ae = as;
  while (ae < e && b[ae] !== 0x2f && b[ae] !== 0x3f && b[ae] !== 0x23) ae++;
  // userinfo (`user@host`, forbidden in http(s) URIs by RFC 9110 §4.2.4, and
  // parsers disagree on which '@' splits it off) fails as a name: no guessing.
  return hostPort(b, as, ae);
}
