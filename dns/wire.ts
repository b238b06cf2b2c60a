// The resolver's wire-format layer: bytes in, bytes out, no sockets, no
// dns-packet. Built for the hot path: a query is read without decoding more
// than its header, question and OPT record, and a cache hit is answered from
// the cached response's bytes with the ID, the question (the client's case)
// and the TTLs patched at offsets computed once when the answer was cached.
//
// Names are presented like dig prints them, without the trailing dot (the root
// is ''): label bytes outside 0x21..0x7e, '.' and '\' are written as \DDD, so
// the string is unambiguous. Lower-casing touches ASCII A-Z only (RFC 4343).
//
// Nothing here throws on malformed input: parsers return an error value or
// null, builders return their input unchanged when it cannot be walked.

import { formatIp } from '../lib/ip.js';
export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  DS: 43,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  NSEC3: 50,
  SVCB: 64,
  HTTPS: 65,
  ANY: 255,
} as const;

export const CLASS = { IN: 1, CH: 3, HS: 4, NONE: 254, ANY: 255 } as const;

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

export const OPCODE_QUERY = 0;
/** The UDP payload size splitwan advertises and caps answers at (DNS flag day 2020). */
export const EDNS_UDP_SIZE = 1232;
/** The UDP limit for a client that sent no OPT record (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;

const F_QR = 0x8000;
const F_AA = 0x0400;
const F_TC = 0x0200;
const F_RD = 0x0100;
const F_RA = 0x0080;
const F_Z = 0x0040;
const F_AD = 0x0020;
const F_CD = 0x0010;
const DO_BIT = 0x8000;
const MAX_NAME_WIRE = 255;
const MAX_LABELS = 127;

export interface EdnsInfo {
  /** The requestor's UDP payload size as sent (see `udpLimit` for the effective one). */
  udpSize: number;
  do: boolean;
  version: number;
}

export interface ParsedQuery {
  id: number;
  /** The header's flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
  flags: number;
  rd: boolean;
  cd: boolean;
  opcode: number;
  qdcount: number;
  /** Lower-cased, no trailing dot ('' for the root), \DDD escapes. */
  qname: string;
  /** The name as sent (case preserved), same escaping as `qname`. */
  qnameRaw: string;
  qtype: number;
  qclass: number;
  /** Byte offset just after the question (the question is bytes 12..questionEnd). */
  questionEnd: number;
  edns: EdnsInfo | null;
  /** `${qname}|${qtype}|${qclass}|${do ? 1 : 0}` */
  cacheKey: string;
}

export type QueryParseResult =
  | ParsedQuery
  | { error: 'short' }
  | { error: 'formerr'; id: number; rd: boolean };

export interface AnswerRecord {
  /** Owner name, lower-cased. */
  name: string;
  type: number;
  ttl: number;
  /** A/AAAA: the address; CNAME/DNAME/NS/PTR: the target name (lower-cased). */
  data?: string;
}

export interface ResponseInfo {
  id: number;
  /** Including the extended bits from the OPT record, if any. */
  rcode: number;
  tc: boolean;
  /** Of the first question; '' with qtype/qclass 0 when the response has none. */
  qname: string;
  qtype: number;
  qclass: number;
  /** The answer section, OPT excluded. */
  answers: AnswerRecord[];
  /** Smallest TTL in the answer section; null when it is empty. */
  minTtl: number | null;
  /** min(SOA TTL, SOA MINIMUM) of an SOA in the authority section (RFC 2308). */
  soaMinimum: number | null;
  /** A, AAAA and SVCB/HTTPS ipv4hint/ipv6hint of the answer section, unique, in order. */
  addresses: string[];
  /** CNAME targets of the answer section, lower-cased, in order. */
  cnames: string[];
}

// ---------------------------------------------------------------------------
// Names

const SCRATCH = Buffer.allocUnsafe(MAX_NAME_WIRE * 4 + 8);
/** Set by readName: the offset just after the name where it started. */
let nameEnd = 0;
/** Set by readName: whether the name had an ASCII upper-case letter. */
let nameHadUpper = false;

/**
 * Reads the name at `start` into its presentation form (case as sent), or
 * null when malformed: truncated, a reserved label type, more than 255 bytes
 * or 127 labels, or (when `pointers`) a compression pointer that does not
 * point strictly backwards into the message body (so it cannot loop).
 * Sets `nameEnd` and `nameHadUpper`.
 */
function readName(buf: Buffer, start: number, pointers: boolean): string | null {
  const n = buf.length;
  let o = start;
  let segStart = start;
  let end = -1;
  let w = 0;
  let wire = 1;
  let labels = 0;
  let upper = false;
  for (;;) {
    if (o >= n) return null;
    const len = buf[o]!;
    if (len === 0) {
      if (end < 0) end = o + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (!pointers || o + 1 >= n) return null;
      const target = ((len & 0x3f) << 8) | buf[o + 1]!;
      if (target < 12 || target >= segStart) return null;
      if (end < 0) end = o + 2;
      o = segStart = target;
      continue;
    }
    if (kind !== 0) return null;
    wire += len + 1;
    if (wire > MAX_NAME_WIRE || ++labels > MAX_LABELS || o + 1 + len > n) return null;
    if (w > 0) SCRATCH[w++] = 0x2e;
    const last = o + len;
    for (let i = o + 1; i <= last; i++) {
      const c = buf[i]!;
      if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) {
        SCRATCH[w++] = c;
        if (c >= 0x41 && c <= 0x5a) upper = true;
      } else {
        SCRATCH[w++] = 0x5c;
        SCRATCH[w++] = 0x30 + ((c / 100) | 0);
        SCRATCH[w++] = 0x30 + (((c / 10) | 0) % 10);
        SCRATCH[w++] = 0x30 + (c % 10);
      }
    }
    o = last + 1;
  }
  nameEnd = end;
  nameHadUpper = upper;
  return w === 0 ? '' : SCRATCH.toString('latin1', 0, w);
}

/**
 * Offset after the name at `start` without decoding it; -1 when malformed.
 * Compression pointers are followed (not decoded) to check them as readName does.
 */
function skipName(buf: Buffer, start: number): number {
  const n = buf.length;
  let o = start;
  let segStart = start;
  let end = -1;
  let wire = 1;
  for (;;) {
    if (o >= n) return -1;
    const len = buf[o]!;
    if (len === 0) return end < 0 ? o + 1 : end;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (o + 1 >= n) return -1;
      const target = ((len & 0x3f) << 8) | buf[o + 1]!;
      if (target < 12 || target >= segStart) return -1;
      if (end < 0) end = o + 2;
      o = segStart = target;
      continue;
    }
    if (kind !== 0) return -1;
    wire += len + 1;
    if (wire > MAX_NAME_WIRE) return -1;
    o += len + 1;
  }
}

function lowerName(raw: string, hadUpper: boolean): string {
  return hadUpper ? raw.toLowerCase() : raw;
}

// ---------------------------------------------------------------------------
// Walking a message

interface RR {
  /** Offset of the owner name. */
  start: number;
  /** Offset of the TYPE field (just after the owner name). */
  fixed: number;
  type: number;
  /** Offset of RDATA and of the byte after it. */
  rdStart: number;
  rdEnd: number;
  /** 1 answer, 2 authority, 3 additional. */
  section: 1 | 2 | 3;
}

interface Scan {
  qdcount: number;
  questionEnd: number;
  rrs: RR[];
  /** Index in `rrs` of the first OPT record of the additional section, or -1. */
  opt: number;
}

/** Walks header, questions and records; null when any of it is malformed. */
function scan(buf: Buffer): Scan | null {
  const n = buf.length;
  if (n < 12) return null;
  const qdcount = buf.readUInt16BE(4);
  const counts = [buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const;
  let o = 12;
  for (let i = 0; i < qdcount; i++) {
    o = skipName(buf, o);
    if (o < 0 || o + 4 > n) return null;
    o += 4;
  }
  const questionEnd = o;
  const rrs: RR[] = [];
  let opt = -1;
  for (let s = 0; s < 3; s++) {
    const count = counts[s]!;
    for (let i = 0; i < count; i++) {
      const start = o;
      const fixed = skipName(buf, o);
      if (fixed < 0 || fixed + 10 > n) return null;
      const rdStart = fixed + 10;
      const rdEnd = rdStart + buf.readUInt16BE(fixed + 8);
      if (rdEnd > n) return null;
      const type = buf.readUInt16BE(fixed);
      if (type === TYPE.OPT && s === 2 && opt < 0) opt = rrs.length;
      rrs.push({ start, fixed, type, rdStart, rdEnd, section: (s + 1) as 1 | 2 | 3 });
      o = rdEnd;
    }
  }
  return { qdcount, questionEnd, rrs, opt };
}

/** RFC 2181 §8: a TTL with the top bit set is treated as zero. */
function readTtl(buf: Buffer, o: number): number {
  const t = buf.readUInt32BE(o);
  return t > 0x7fffffff ? 0 : t;
}

// ---------------------------------------------------------------------------
// Queries

const SHORT = Object.freeze({ error: 'short' as const });

/**
 * Reads a client's query: header, its single question and the OPT record.
 * 'short' (drop it) below a 12-byte header; 'formerr' (answer FORMERR) for a
 * response, an opcode other than QUERY, qdcount != 1, a malformed or
 * compressed question name, malformed records after it, or a bad OPT (not in
 * the additional section, not owned by the root, or more than one).
 */
export function parseQuery(buf: Buffer): QueryParseResult {
  const n = buf.length;
  if (n < 12) return SHORT;
  const id = (buf[0]! << 8) | buf[1]!;
  const flags = (buf[2]! << 8) | buf[3]!;
  const rd = (flags & F_RD) !== 0;
  const opcode = (flags >>> 11) & 0xf;
  const qdcount = (buf[4]! << 8) | buf[5]!;
  if ((flags & F_QR) !== 0 || opcode !== OPCODE_QUERY || qdcount !== 1) return { error: 'formerr', id, rd };
  const qnameRaw = readName(buf, 12, false);
  if (qnameRaw === null) return { error: 'formerr', id, rd };
  let o = nameEnd;
  if (o + 4 > n) return { error: 'formerr', id, rd };
  const qname = lowerName(qnameRaw, nameHadUpper);
  const qtype = (buf[o]! << 8) | buf[o + 1]!;
  const qclass = (buf[o + 2]! << 8) | buf[o + 3]!;
  o += 4;
  const questionEnd = o;
  let edns: EdnsInfo | null = null;
  const anns = ((buf[6]! << 8) | buf[7]!) + ((buf[8]! << 8) | buf[9]!);
  const total = anns + ((buf[10]! << 8) | buf[11]!);
  for (let i = 0; i < total; i++) {
    const start = o;
    const fixed = skipName(buf, o);
    if (fixed < 0 || fixed + 10 > n) return { error: 'formerr', id, rd };
    o = fixed + 10 + ((buf[fixed + 8]! << 8) | buf[fixed + 9]!);
    if (o > n) return { error: 'formerr', id, rd };
    if (((buf[fixed]! << 8) | buf[fixed + 1]!) !== TYPE.OPT) continue;
    if (i < anns || edns !== null || buf[start] !== 0) return { error: 'formerr', id, rd };
    edns = {
      udpSize: (buf[fixed + 2]! << 8) | buf[fixed + 3]!,
      version: buf[fixed + 5]!,
      do: (buf[fixed + 6]! & 0x80) !== 0,
    };
  }
  return {
    id,
    flags,
    rd,
    cd: (flags & F_CD) !== 0,
    opcode,
    qdcount,
    qname,
    qnameRaw,
    qtype,
    qclass,
    questionEnd,
    edns,
    cacheKey: `${qname}|${qtype}|${qclass}|${edns !== null && edns.do ? 1 : 0}`,
  };
}

export function isParsedQuery(r: QueryParseResult): r is ParsedQuery {
  return !('error' in r);
}

/** The question section exactly as the client sent it: a view into `buf`, not a copy. */
export function questionBytes(buf: Buffer, q: ParsedQuery): Buffer {
  return buf.subarray(12, q.questionEnd);
}

/** The largest UDP answer a client takes: 512 without EDNS, else its size clamped to 512..1232. */
export function udpLimit(edns: EdnsInfo | null): number {
  if (edns === null) return CLASSIC_UDP_SIZE;
  return Math.min(Math.max(edns.udpSize, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE);
}

function writeOpt(out: Buffer, o: number, udpSize: number, extRcode: number, doBit: boolean): void {
  out[o] = 0; // root
  out.writeUInt16BE(TYPE.OPT, o + 1);
  out.writeUInt16BE(udpSize & 0xffff, o + 3);
  out[o + 5] = extRcode & 0xff;
  out[o + 6] = 0; // version
  out.writeUInt16BE(doBit ? DO_BIT : 0, o + 7);
  out.writeUInt16BE(0, o + 9); // rdlength
}

/**
 * A response with no records: QR=1 and the opcode (default QUERY) copied, the
 * question echoed when given. rcode 0 makes an empty NOERROR (NODATA) answer.
 * To a QUERY: RA=1 (splitwan recurses), RD and CD copied (RFC 1035 §4.1.1,
 * RFC 4035 §3.2.2). Those bits mean something for QUERY only (for UPDATE
 * they are its Z field, RFC 2136 §2.2), so an answer to another opcode has
 * none of them. With `opt` (or when the rcode needs the extended bits, e.g.
 * BADVERS), an OPT record is added.
 */
export function buildError(
  q: { id: number; rd: boolean; cd?: boolean | undefined; question?: Buffer | undefined; opcode?: number | undefined },
  rcode: number,
  opt?: { udpSize?: number; do?: boolean } | null,
): Buffer {
  const question = q.question !== undefined && q.question.length > 0 ? q.question : null;
  const withOpt = (opt !== undefined && opt !== null) || rcode > 15;
  const ql = question !== null ? question.length : 0;
  const out = Buffer.alloc(12 + ql + (withOpt ? 11 : 0));
  out.writeUInt16BE(q.id & 0xffff, 0);
  const opcode = (q.opcode ?? OPCODE_QUERY) & 0xf;
  const queryBits = opcode === OPCODE_QUERY ? F_RA | (q.rd ? F_RD : 0) | (q.cd === true ? F_CD : 0) : 0;
  // RFC 1035 §4.1.1: the opcode is copied into the response (a client drops an answer whose opcode differs).
  out.writeUInt16BE(F_QR | (opcode << 11) | queryBits | (rcode & 0xf), 2);
  out.writeUInt16BE(question !== null ? 1 : 0, 4);
  if (question !== null) question.copy(out, 12);
  if (withOpt) {
    out.writeUInt16BE(1, 10);
    writeOpt(out, 12 + ql, opt?.udpSize ?? EDNS_UDP_SIZE, (rcode >>> 4) & 0xff, opt?.do ?? false);
  }
  return out;
}

/**
 * A synthesized answer to `q` (block rules): one record of `type` with `rdata`
 * for the question's name (a pointer to the question), or NODATA when `rdata`
 * is null. AA is not set: splitwan is not the zone's authority.
 */
export function buildRecordAnswer(
  q: { id: number; rd: boolean; cd?: boolean | undefined; question: Buffer },
  type: number,
  rdata: Buffer | null,
  ttl: number,
  opt?: { udpSize?: number; do?: boolean } | null,
): Buffer {
  if (rdata === null) return buildError(q, RCODE.NOERROR, opt);
  const withOpt = opt !== undefined && opt !== null;
  const ql = q.question.length;
  const rr = 2 + 10 + rdata.length;
  const out = Buffer.alloc(12 + ql + rr + (withOpt ? 11 : 0));
  out.writeUInt16BE(q.id & 0xffff, 0);
  out.writeUInt16BE(F_QR | F_RA | (q.rd ? F_RD : 0) | (q.cd === true ? F_CD : 0), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 6);
  out.writeUInt16BE(withOpt ? 1 : 0, 10);
  q.question.copy(out, 12);
  let o = 12 + ql;
  out.writeUInt16BE(0xc00c, o); // the owner: a pointer to the question's name
  out.writeUInt16BE(type, o + 2);
  out.writeUInt16BE(CLASS.IN, o + 4);
  out.writeUInt32BE(ttl >>> 0, o + 6);
  out.writeUInt16BE(rdata.length, o + 10);
  rdata.copy(out, o + 12);
  o += rr;
  if (withOpt) writeOpt(out, o, opt?.udpSize ?? EDNS_UDP_SIZE, 0, opt?.do ?? false);
  return out;
}

/**
 * The EDNS of a message parseQuery refused (another opcode, several
 * questions, two OPTs...): the first OPT of its additional section, found by
 * walking the sections as far as they go; null when there is none or the
 * walk fails before it.
 */
export function findOpt(buf: Buffer): EdnsInfo | null {
  const s = scan(buf);
  if (s === null || s.opt < 0) return null;
  const f = s.rrs[s.opt]!.fixed;
  return { udpSize: buf.readUInt16BE(f + 2), version: buf[f + 5]!, do: (buf[f + 6]! & 0x80) !== 0 };
}

/**
 * An error answer with `rcode` to any message of 12 bytes or more (see
 * buildError for its bits): the question echoed when it is one well-formed
 * QUERY; an OPT of ours when the message has one (RFC 6891 §7: an EDNS
 * requestor gets an OPT, errors included).
 */
export function errorAnswer(msg: Buffer, rcode: number): Buffer {
  const opcode = (msg[2]! >>> 3) & 0xf;
  const q = parseQuery(msg);
  const parsed = 'error' in q ? null : q;
  const edns = parsed !== null ? parsed.edns : findOpt(msg);
  return buildError(
    {
      id: (msg[0]! << 8) | msg[1]!,
      opcode,
      rd: (msg[2]! & 0x01) !== 0,
      cd: (msg[3]! & 0x10) !== 0,
      question: parsed !== null ? questionBytes(msg, parsed) : undefined,
    },
    rcode,
    edns === null ? null : { udpSize: EDNS_UDP_SIZE, do: edns.do },
  );
}

// ---------------------------------------------------------------------------
// Cached answers

/**
 * Offsets of the TTL field of every record except OPT, in all three sections;
 * null when the response is malformed. Computed once when caching, so that a
 * hit needs only `patchResponseAt`.
 */
export function ttlOffsets(resp: Buffer): number[] | null {
  const s = scan(resp);
  if (s === null) return null;
  const out: number[] = [];
  for (const rr of s.rrs) if (rr.type !== TYPE.OPT) out.push(rr.fixed + 4);
  return out;
}

/**
 * A cached answer's header bits that are the asking client's, written at
 * out[at + 2], out[at + 3] from the query's flags bytes `b2`, `b3`: RD and
 * CD copied from the query (RFC 1035 §4.1.1, RFC 4035 §3.2.2), whoever
 * asked first; AD kept only for a client that asked with AD or DO
 * (RFC 6840 §5.8). The rest (RA, rcode, TC) is the answer's.
 */
function setClientBits(out: Uint8Array, at: number, b2: number, b3: number, dnssecOk: boolean): void {
  out[at + 2] = (out[at + 2]! & 0xfe) | (b2 & 0x01);
  const keep = dnssecOk || (b3 & 0x20) !== 0 ? 0xef : 0xcf; // AD (0x20) and CD (0x10) cleared unless kept
  out[at + 3] = (out[at + 3]! & keep) | (b3 & 0x10);
}

/**
 * A copy of a cached response for a hit: the ID set, the client's header bits
 * (`queryFlags`: the query's flags word; `dnssecOk`: its DO bit; see
 * setClientBits), the question replaced by the client's bytes (its case; only
 * when it is the cached question up to ASCII case, which a cache hit
 * guarantees, else the cached one is kept), and the TTLs at `offsets` (from
 * `ttlOffsets`) decreased by `ageSeconds`, floored at 0. Plain byte
 * operations only: no decoding, no encoding, one allocation.
 */
export function patchResponseAt(
  cached: Buffer,
  offsets: readonly number[],
  id: number,
  questionRaw: Buffer,
  ageSeconds: number,
  queryFlags: number,
  dnssecOk: boolean,
): Buffer {
  const n = cached.length;
  const out = Buffer.allocUnsafe(n);
  out.set(cached);
  if (n >= 2) {
    out[0] = (id >>> 8) & 0xff;
    out[1] = id & 0xff;
  }
  if (n >= 4) setClientBits(out, 0, queryFlags >>> 8, queryFlags & 0xff, dnssecOk);
  // the client's question, byte by byte (cheaper than a copy call for ~30 bytes),
  // as long as it equals the cached one up to ASCII case; else undo
  const ql = questionRaw.length;
  if (12 + ql <= n) {
    for (let i = 0; i < ql; i++) {
      const a = cached[12 + i]!;
      const b = questionRaw[i]!;
      if (a !== b) {
        const la = a | 0x20;
        if (la !== (b | 0x20) || la < 0x61 || la > 0x7a) {
          for (let j = 0; j < i; j++) out[12 + j] = cached[12 + j]!;
          break;
        }
        out[12 + i] = b;
      }
    }
  }
  const age = ageSeconds >= 1 ? Math.floor(ageSeconds) : 0; // NaN and negatives age nothing
  if (age > 0) {
    for (let i = 0; i < offsets.length; i++) {
      const off = offsets[i]!;
      if (!(off >= 12 && off + 4 <= n)) continue;
      let ttl = ((out[off]! << 24) | (out[off + 1]! << 16) | (out[off + 2]! << 8) | out[off + 3]!) >>> 0;
      if (ttl > 0x7fffffff) ttl = 0; // RFC 2181 §8
      ttl = ttl > age ? ttl - age : 0;
      out[off] = ttl >>> 24;
      out[off + 1] = (ttl >>> 16) & 0xff;
      out[off + 2] = (ttl >>> 8) & 0xff;
      out[off + 3] = ttl & 0xff;
    }
  }
  return out;
}

/**
 * Rewrites, in place, the TTLs at `offsets` clamped to [min, max] seconds
 * (a cache's TTL bounds, so clients cache no longer than splitwan's tags
 * last); returns the largest TTL written (0 with no records).
 */
export function clampTtlsAt(buf: Buffer, offsets: readonly number[], min: number, max: number): number {
  let largest = 0;
  for (const off of offsets) {
    if (!(off >= 12 && off + 4 <= buf.length)) continue;
    let ttl = buf.readUInt32BE(off);
    if (ttl > 0x7fffffff) ttl = 0; // RFC 2181 §8
    ttl = Math.min(Math.max(ttl, min), max);
    buf.writeUInt32BE(ttl >>> 0, off);
    if (ttl > largest) largest = ttl;
  }
  return largest;
}

/** `patchResponseAt` computing the offsets now; with a malformed `cached`, no TTL is changed. */
export function patchResponse(cached: Buffer, id: number, questionRaw: Buffer, ageSeconds: number, queryFlags: number, dnssecOk: boolean): Buffer {
  return patchResponseAt(cached, ttlOffsets(cached) ?? [], id, questionRaw, ageSeconds, queryFlags, dnssecOk);
}

// ---------------------------------------------------------------------------
// Upstream answers

/**
 * Anti-spoofing: whether `resp` answers the query `q` — same ID, QR=1, a
 * single question equal to q's (name compared case-insensitively, so 0x20
 * randomisation upstream is fine).
 */
export function matchesQuestion(
  resp: Buffer,
  q: { id: number; qname: string; qtype: number; qclass: number },
): boolean {
  if (resp.length < 17) return false;
  if (((resp[0]! << 8) | resp[1]!) !== q.id || (resp[2]! & 0x80) === 0) return false;
  if (((resp[4]! << 8) | resp[5]!) !== 1) return false;
  const raw = readName(resp, 12, false);
  if (raw === null) return false;
  const o = nameEnd;
  if (o + 4 > resp.length) return false;
  return (
    resp.readUInt16BE(o) === q.qtype &&
    resp.readUInt16BE(o + 2) === q.qclass &&
    lowerName(raw, nameHadUpper) === q.qname.toLowerCase()
  );
}

function ipv4(buf: Buffer, o: number): string {
  return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
}

/** RFC 5952 text, by the same formatter the config uses. */
function ipv6(buf: Buffer, o: number): string {
  return formatIp({ family: 6, w: [buf.readUInt32BE(o), buf.readUInt32BE(o + 4), buf.readUInt32BE(o + 8), buf.readUInt32BE(o + 12)] });
}

/** ipv4hint (4) and ipv6hint (6) of SVCB/HTTPS RDATA (RFC 9460); [] when malformed or absent. */
function svcbHints(buf: Buffer, rdStart: number, rdEnd: number): string[] {
  const out: string[] = [];
  let o = rdStart + 2; // SvcPriority
  if (o > rdEnd) return out;
  // TargetName: uncompressed (RFC 9460 §2.2)
  let wire = 1;
  for (;;) {
    if (o >= rdEnd) return [];
    const len = buf[o]!;
    o++;
    if (len === 0) break;
    if (len > 63) return [];
    wire += len + 1;
    if (wire > MAX_NAME_WIRE) return [];
    o += len;
  }
  while (o + 4 <= rdEnd) {
    const key = buf.readUInt16BE(o);
    const len = buf.readUInt16BE(o + 2);
    const v = o + 4;
    o = v + len;
    if (o > rdEnd) return [];
    if (key === 4 && len % 4 === 0) for (let p = v; p < o; p += 4) out.push(ipv4(buf, p));
    else if (key === 6 && len % 16 === 0) for (let p = v; p < o; p += 16) out.push(ipv6(buf, p));
  }
  return o === rdEnd ? out : [];
}

/**
 * What the resolver needs from an upstream answer (the miss path): rcode,
 * TC, question, answer records, TTLs for caching, the addresses to tag and
 * the CNAME chain. Null when the message is malformed. No dns-packet.
 */
export function responseInfo(resp: Buffer): ResponseInfo | null {
  const s = scan(resp);
  if (s === null) return null;
  const flags = resp.readUInt16BE(2);
  let rcode = flags & 0xf;
  let qname = '';
  let qtype = 0;
  let qclass = 0;
  if (s.qdcount > 0) {
    const raw = readName(resp, 12, false);
    if (raw === null) return null;
    qname = lowerName(raw, nameHadUpper);
    qtype = resp.readUInt16BE(nameEnd);
    qclass = resp.readUInt16BE(nameEnd + 2);
  }
  if (s.opt >= 0) rcode |= resp[s.rrs[s.opt]!.fixed + 4]! << 4;
  const answers: AnswerRecord[] = [];
  const addresses: string[] = [];
  const cnames: string[] = [];
  let minTtl: number | null = null;
  let soaMinimum: number | null = null;
  const addAddress = (a: string): void => {
    if (!addresses.includes(a)) addresses.push(a);
  };
  const nameIn = (rr: RR): string | null => {
    const raw = readName(resp, rr.rdStart, true);
    if (raw === null || nameEnd > rr.rdEnd) return null;
    return lowerName(raw, nameHadUpper);
  };
  for (const rr of s.rrs) {
    if (rr.type === TYPE.OPT) continue;
    const ttl = readTtl(resp, rr.fixed + 4);
    const rdLen = rr.rdEnd - rr.rdStart;
    if (rr.section === 2 && rr.type === TYPE.SOA) {
      if (readName(resp, rr.rdStart, true) === null || nameEnd > rr.rdEnd) return null;
      if (readName(resp, nameEnd, true) === null || nameEnd + 20 > rr.rdEnd) return null;
      const min = Math.min(ttl, readTtl(resp, nameEnd + 16));
      soaMinimum = soaMinimum === null ? min : Math.min(soaMinimum, min);
      continue;
    }
    if (rr.section !== 1) continue;
    const ownerRaw = readName(resp, rr.start, true);
    if (ownerRaw === null) return null;
    const rec: AnswerRecord = { name: lowerName(ownerRaw, nameHadUpper), type: rr.type, ttl };
    switch (rr.type) {
      case TYPE.A:
        if (rdLen !== 4) return null;
        rec.data = ipv4(resp, rr.rdStart);
        addAddress(rec.data);
        break;
      case TYPE.AAAA:
        if (rdLen !== 16) return null;
        rec.data = ipv6(resp, rr.rdStart);
        addAddress(rec.data);
        break;
      case TYPE.CNAME:
      case TYPE.DNAME:
      case TYPE.NS:
      case TYPE.PTR: {
        const target = nameIn(rr);
        if (target === null) return null;
        rec.data = target;
        if (rr.type === TYPE.CNAME) cnames.push(target);
        break;
      }
      case TYPE.SVCB:
      case TYPE.HTTPS:
        for (const a of svcbHints(resp, rr.rdStart, rr.rdEnd)) addAddress(a);
        break;
    }
    answers.push(rec);
    minTtl = minTtl === null ? ttl : Math.min(minTtl, ttl);
  }
  return {
    id: resp.readUInt16BE(0),
    rcode,
    tc: (flags & F_TC) !== 0,
    qname,
    qtype,
    qclass,
    answers,
    minTtl,
    soaMinimum,
    addresses,
    cnames,
  };
}

// ---------------------------------------------------------------------------
// EDNS and truncation

/**
 * The query to forward: advertises EDNS0 with `udpSize`. An existing OPT keeps
 * its options, version and DO bit (DO is set, never cleared, when `doBit`);
 * otherwise a bare OPT is appended. A malformed query is returned as a copy.
 */
export function addEdns(query: Buffer, udpSize: number = EDNS_UDP_SIZE, doBit = false): Buffer {
  return withOpt(query, udpSize, doBit).out;
}

/** addEdns, and where the OPT's TYPE field is in the copy (-1: no OPT, `buf` was malformed). */
function withOpt(buf: Buffer, udpSize: number, doBit: boolean): { out: Buffer; fixed: number } {
  const s = scan(buf);
  if (s === null) return { out: Buffer.from(buf), fixed: -1 };
  if (s.opt >= 0) {
    const out = Buffer.from(buf);
    const fixed = s.rrs[s.opt]!.fixed;
    out.writeUInt16BE(udpSize & 0xffff, fixed + 2);
    if (doBit) out[fixed + 6] = out[fixed + 6]! | 0x80;
    return { out, fixed };
  }
  const arcount = buf.readUInt16BE(10);
  if (arcount === 0xffff) return { out: Buffer.from(buf), fixed: -1 };
  const last = s.rrs.length > 0 ? s.rrs[s.rrs.length - 1]!.rdEnd : s.questionEnd;
  const out = Buffer.alloc(last + 11);
  buf.copy(out, 0, 0, last); // trailing bytes after the last record are dropped
  out.writeUInt16BE(arcount + 1, 10);
  writeOpt(out, last, udpSize, 0, doBit);
  return { out, fixed: last + 1 };
}

/**
 * The query splitwan sends upstream for a client's `query`: the client's EDNS
 * options dropped (they are hop by hop: a forwarded COOKIE would come back in
 * the cached answer to every other client), a bare OPT of ours (`udpSize`,
 * the client's DO), RD and AD set (a forwarder wants recursion, and AD from a
 * validating upstream, whatever the first asker sent: the answer is cached
 * for everyone), the reserved Z bit clear, the client's CD kept.
 */
export function upstreamQuery(query: Buffer, udpSize: number, doBit: boolean): Buffer {
  const out = addEdns(removeOpt(query), udpSize, doBit);
  if (out.length >= 12) out.writeUInt16BE((out.readUInt16BE(2) & ~F_Z) | F_RD | F_AD, 2);
  return out;
}

/**
 * The copy of an upstream's answer that splitwan keeps and serves: AA
 * cleared (splitwan is no authority), RA set (it recurses), the reserved Z
 * bit clear; an OPT advertising EDNS_UDP_SIZE, version 0, with no flag but
 * DO (a bare one appended when the upstream sent none: an EDNS client must
 * get one, RFC 6891 §7; appended last, it moves no TTL offset). Header bits
 * that are the client's are set per answer (patchResponseAt).
 */
export function ourAnswer(resp: Buffer): Buffer {
  const { out, fixed } = withOpt(resp, EDNS_UDP_SIZE, false);
  if (out.length < 12) return out;
  out.writeUInt16BE((out.readUInt16BE(2) & ~(F_AA | F_Z)) | F_RA, 2);
  if (fixed >= 0) {
    out[fixed + 5] = 0; // version
    out.writeUInt16BE(out.readUInt16BE(fixed + 6) & DO_BIT, fixed + 6); // flags: only DO is defined
  }
  return out;
}

/**
 * A copy of `resp` without its OPT record, for a client that sent none
 * (RFC 6891 §7), wherever in the additional section it is (§6.1.1 allows any
 * place). Additional records after a non-final OPT go with it: their names
 * may point at each other, and cutting bytes out from under a compression
 * pointer would corrupt them; the additional section is optional data
 * (RFC 2181 §9), so dropping some needs no TC. Unchanged (a copy) when there
 * is no OPT or the message is malformed.
 */
export function removeOpt(resp: Buffer): Buffer {
  const s = scan(resp);
  if (s === null || s.opt < 0) return Buffer.from(resp);
  const rr = s.rrs[s.opt]!;
  const out = Buffer.from(resp.subarray(0, rr.start));
  const additionalBefore = s.rrs.slice(0, s.opt).filter((r) => r.section === 3).length;
  out.writeUInt16BE(additionalBefore, 10);
  return out;
}

/**
 * `resp` itself when it fits in `limit` bytes (see `udpLimit`); else the
 * header and question with TC=1 and no records but a bare OPT (when
 * `withOpt`, by default when `resp` has one), so the client retries over TCP.
 */
export function truncateForUdp(resp: Buffer, limit: number, withOpt?: boolean): Buffer {
  if (resp.length <= limit || resp.length < 12) return resp;
  const s = scan(resp);
  let qEnd = 12;
  let qd = 0;
  let optUdp = EDNS_UDP_SIZE;
  let optExt = 0;
  let optDo = false;
  let hasOpt = false;
  if (s !== null) {
    qEnd = s.questionEnd;
    qd = s.qdcount;
    if (s.opt >= 0) {
      const f = s.rrs[s.opt]!.fixed;
      hasOpt = true;
      optUdp = resp.readUInt16BE(f + 2);
      optExt = resp[f + 4]!;
      optDo = (resp[f + 6]! & 0x80) !== 0;
    }
  } else {
    // cannot walk the records: keep a well-formed single question if there is one
    const end = resp.readUInt16BE(4) === 1 ? skipName(resp, 12) : -1;
    if (end > 0 && end + 4 <= resp.length) {
      qEnd = end + 4;
      qd = 1;
    }
  }
  const opt = withOpt ?? hasOpt;
  const out = Buffer.alloc(qEnd + (opt ? 11 : 0));
  resp.copy(out, 0, 0, qEnd);
  out.writeUInt16BE(resp.readUInt16BE(2) | F_TC, 2);
  out.writeUInt16BE(qd, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  if (opt) writeOpt(out, qEnd, optUdp, optExt, optDo);
  return out;
}


// ---------------------------------------------------------------------------
// The UDP cache-hit fast path (resolver.answerHit): a query read where it
// lies (the transport's receive slot) and an answer written where it is sent
// from (a send slot), with nothing allocated. Only the plainest queries take
// it; anything else returns "no" and goes the full way (parseQuery...).

/** What scanHitQuery found; one reusable object (the caller's), filled in place. */
export interface HitScan {
  /** Offset just past the question (name, type, class) in the buffer. */
  questionEnd: number;
  /** The client sent an OPT record (EDNS). */
  edns: boolean;
  /** The DO bit of that OPT. */
  do: boolean;
  /** The largest UDP answer the client takes (udpLimit). */
  limit: number;
}

export function newHitScan(): HitScan {
  return { questionEnd: 0, edns: false, do: false, limit: CLASSIC_UDP_SIZE };
}

/**
 * Whether buf[off, off+len) is a query the fast path may answer: QUERY, not
 * a response, one question whose name is uncompressed and has no upper-case
 * letter (the cache is keyed lower-case; other names go the full way), no
 * answer or authority records, and at most one additional record, an EDNS
 * version 0 OPT owned by the root, ending exactly at the end of the message.
 * Fills `s`. False says nothing about validity: the full path decides.
 */
export function scanHitQuery(buf: Uint8Array, off: number, len: number, s: HitScan): boolean {
  if (len < 17) return false; // header + root name + type + class
  const end = off + len;
  // QR, opcode (bits 1-4 of byte 2) zero; qdcount 1; ancount, nscount 0; arcount 0 or 1.
  if ((buf[off + 2]! & 0xf8) !== 0) return false;
  if (buf[off + 4] !== 0 || buf[off + 5] !== 1 || buf[off + 6] !== 0 || buf[off + 7] !== 0 || buf[off + 8] !== 0 || buf[off + 9] !== 0 || buf[off + 10] !== 0) return false;
  const arcount = buf[off + 11]!;
  if (arcount > 1) return false;
  let o = off + 12;
  let wire = 1;
  for (;;) {
    if (o >= end) return false;
    const l = buf[o]!;
    if (l === 0) break;
    if (l > 63) return false; // compression or an extended label type
    wire += l + 1;
    if (wire > MAX_NAME_WIRE || o + 1 + l >= end) return false;
    for (let i = o + 1; i <= o + l; i++) {
      const c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) return false;
    }
    o += l + 1;
  }
  o += 5; // root byte, type, class
  if (o > end) return false;
  s.questionEnd = o;
  if (arcount === 0) {
    if (o !== end) return false;
    s.edns = false;
    s.do = false;
    s.limit = CLASSIC_UDP_SIZE;
    return true;
  }
  // The OPT: root owner, type 41, class = UDP size, TTL = ext-rcode, version, flags; rdlength.
  if (o + 11 > end || buf[o] !== 0 || buf[o + 1] !== 0 || buf[o + 2] !== TYPE.OPT || buf[o + 6] !== 0) return false;
  if (o + 11 + ((buf[o + 9]! << 8) | buf[o + 10]!) !== end) return false;
  const size = (buf[o + 3]! << 8) | buf[o + 4]!;
  s.edns = true;
  s.do = (buf[o + 7]! & 0x80) !== 0;
  s.limit = size < CLASSIC_UDP_SIZE ? CLASSIC_UDP_SIZE : size > EDNS_UDP_SIZE ? EDNS_UDP_SIZE : size;
  return true;
}

/**
 * patchResponseAt writing into `out` at `at` instead of a new Buffer: the
 * cached answer with the ID, the client's header bits (`dnssecOk`: its DO
 * bit) and the question bytes of the query at buf[msg, questionEnd) (the
 * same name up to case and the same length: the cache key says so) and the
 * TTLs aged. Returns the answer's length.
 */
export function writeHitAnswer(out: Uint8Array, at: number, cached: Uint8Array, offsets: readonly number[], buf: Uint8Array, msg: number, questionEnd: number, ageSeconds: number, dnssecOk: boolean): number {
  const n = cached.length;
  out.set(cached, at);
  out[at] = buf[msg]!;
  out[at + 1] = buf[msg + 1]!;
  setClientBits(out, at, buf[msg + 2]!, buf[msg + 3]!, dnssecOk);
  for (let i = msg + 12, j = at + 12; i < questionEnd; i++, j++) out[j] = buf[i]!;
  const age = ageSeconds >= 1 ? Math.floor(ageSeconds) : 0;
  if (age > 0) {
    for (let i = 0; i < offsets.length; i++) {
      const o = offsets[i]!;
      if (!(o >= 12 && o + 4 <= n)) continue;
      const p = at + o;
      let ttl = ((out[p]! << 24) | (out[p + 1]! << 16) | (out[p + 2]! << 8) | out[p + 3]!) >>> 0;
      if (ttl > 0x7fffffff) ttl = 0; // RFC 2181 §8
      ttl = ttl > age ? ttl - age : 0;
      out[p] = ttl >>> 24;
      out[p + 1] = (ttl >>> 16) & 0xff;
      out[p + 2] = (ttl >>> 8) & 0xff;
      out[p + 3] = ttl & 0xff;
    }
  }
  return n;
}
