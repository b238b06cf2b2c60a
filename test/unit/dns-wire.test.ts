import { readFileSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  addEdns,
  buildError,
  CLASS,
  errorAnswer,
  findOpt,
  isParsedQuery,
  matchesQuestion,
  parseQuery,
  patchResponse,
  patchResponseAt,
  type ParsedQuery,
  ourAnswer,
  questionBytes,
  RCODE,
  removeOpt,
  responseInfo,
  truncateForUdp,
  ttlOffsets,
  TYPE,
  udpLimit,
  upstreamQuery,
  writeHitAnswer,
} from '../../dns/wire.js';

// --- helpers ---------------------------------------------------------------

/** dns-packet with loose typing (its types do not know UNKNOWN_65 etc.). */
function enc(p: object): Buffer {
  return dnsPacket.encode(p as dnsPacket.Packet);
}

function query(name: string, type = 'A', opts: { id?: number; flags?: number; additionals?: object[] } = {}): Buffer {
  return enc({
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: opts.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: opts.additionals ?? [],
  });
}

const RD = dnsPacket.RECURSION_DESIRED;

const OPT = (udpPayloadSize = 4096, doBit = false, options: object[] = []): object => ({
  type: 'OPT',
  name: '.',
  udpPayloadSize,
  flags: doBit ? dnsPacket.DNSSEC_OK : 0,
  options,
});

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

/** Wire name from raw label bytes. */
function wireName(...labels: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = typeof l === 'string' ? Buffer.from(l, 'latin1') : l;
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function rr(name: Buffer, type: number, ttl: number, rdata: Buffer, klass = 1): Buffer {
  return Buffer.concat([name, u16(type), u16(klass), u32(ttl), u16(rdata.length), rdata]);
}

function questionOf(name: Buffer, type = 1, klass = 1): Buffer {
  return Buffer.concat([name, u16(type), u16(klass)]);
}

function ok(r: ReturnType<typeof parseQuery>): ParsedQuery {
  if (!isParsedQuery(r)) throw new Error(`expected a query, got ${JSON.stringify(r)}`);
  return r;
}

const RESP = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE;

/** alias.example.com → CNAME edge.cdn.example.net → CNAME e1.cdn.example.net → 2 A; SOA in authority; OPT. */
function chainResponse(qname = 'alias.example.com'): Buffer {
  return enc({
    type: 'response',
    id: 0xbeef,
    flags: RESP,
    questions: [{ type: 'A', name: qname, class: 'IN' }],
    answers: [
      { type: 'CNAME', name: qname, ttl: 300, data: 'edge.cdn.example.net' },
      { type: 'CNAME', name: 'edge.cdn.example.net', ttl: 50, data: 'e1.cdn.example.net' },
      { type: 'A', name: 'e1.cdn.example.net', ttl: 120, data: '192.0.2.10' },
      { type: 'A', name: 'e1.cdn.example.net', ttl: 120, data: '192.0.2.11' },
    ],
    authorities: [
      {
        type: 'SOA',
        name: 'example.net',
        ttl: 3600,
        data: {
          mname: 'ns1.example.net',
          rname: 'hostmaster.example.net',
          serial: 1,
          refresh: 7200,
          retry: 900,
          expire: 1209600,
          minimum: 600,
        },
      },
    ],
    additionals: [OPT(1232, true)],
  });
}

/**
 * A hand-compressed response (as real servers send it): question
 * www.Example.com A, answer `www` (ptr → 12) CNAME `cdn` + ptr → example.com,
 * A for that name via pointer, authority NS, additional A for the NS, OPT.
 */
function compressedResponse(): Buffer {
  const h = header(0x4242, 0x8180, 1, 2, 1, 2);
  const q = questionOf(wireName('www', 'Example', 'com')); // name at 12; 'Example' at 16, 'com' at 24
  let body = Buffer.concat([h, q]);
  const cnameOwner = Buffer.from([0xc0, 12]);
  const cnameTarget = Buffer.concat([Buffer.from([3]), Buffer.from('cdn'), Buffer.from([0xc0, 16])]);
  const a1 = rr(cnameOwner, TYPE.CNAME, 300, cnameTarget);
  const cdnAt = body.length + 2 + 10; // rdata of the CNAME
  body = Buffer.concat([body, a1]);
  const a2 = rr(Buffer.from([0xc0, cdnAt]), TYPE.A, 60, Buffer.from([198, 51, 100, 7]));
  body = Buffer.concat([body, a2]);
  const nsTarget = Buffer.concat([Buffer.from([3]), Buffer.from('ns1'), Buffer.from([0xc0, 16])]);
  const ns = rr(Buffer.from([0xc0, 16]), TYPE.NS, 86400, nsTarget);
  const nsAt = body.length + 2 + 10;
  body = Buffer.concat([body, ns]);
  const glue = rr(Buffer.from([0xc0, nsAt]), TYPE.A, 30, Buffer.from([203, 0, 113, 1]));
  const opt = Buffer.concat([Buffer.from([0]), u16(TYPE.OPT), u16(1232), u32(0x00008000), u16(0)]);
  return Buffer.concat([body, glue, opt]);
}

/** SVCB/HTTPS RDATA: priority, uncompressed target, params (alpn, ipv4hint, ipv6hint). */
function svcbRdata(priority: number, target: string[], v4: number[][], v6: Buffer[]): Buffer {
  const params: Buffer[] = [];
  const alpn = Buffer.from([2, 0x68, 0x32]);
  params.push(u16(1), u16(alpn.length), alpn);
  if (v4.length > 0) {
    const v = Buffer.from(v4.flat());
    params.push(u16(4), u16(v.length), v);
  }
  if (v6.length > 0) {
    const v = Buffer.concat(v6);
    params.push(u16(6), u16(v.length), v);
  }
  return Buffer.concat([u16(priority), wireName(...target), ...params]);
}

function v6(text: string): Buffer {
  // only for the fixed literals used here (dns-packet's encoder does the work)
  const p = enc({ type: 'response', answers: [{ type: 'AAAA', name: 'x', ttl: 1, data: text }] });
  return p.subarray(p.length - 16);
}

/** Inverse of the presentation escaping, to check it is unambiguous. */
function unescape(name: string): Buffer[] {
  if (name === '') return [];
  const labels: Buffer[] = [];
  let cur: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '\\') {
      cur.push(Number(name.slice(i + 1, i + 4)));
      i += 3;
    } else if (c === '.') {
      labels.push(Buffer.from(cur));
      cur = [];
    } else cur.push(c.charCodeAt(0));
  }
  labels.push(Buffer.from(cur));
  return labels;
}

// --- parseQuery ---------------------------------------------------------------

describe('parseQuery', () => {
  it('reads ExAmPle.COM A: lower-case qname, raw name as sent, offsets, cache key', () => {
    const buf = query('ExAmPle.COM', 'A', { id: 0xabcd });
    const q = ok(parseQuery(buf));
    expect(q).toMatchObject({
      id: 0xabcd,
      rd: true,
      cd: false,
      opcode: 0,
      qdcount: 1,
      qname: 'example.com',
      qnameRaw: 'ExAmPle.COM',
      qtype: TYPE.A,
      qclass: CLASS.IN,
      questionEnd: 12 + 13 + 4,
      edns: null,
      cacheKey: 'example.com|1|1|0',
    });
    expect(q.flags).toBe(dnsPacket.RECURSION_DESIRED);
  });

  it('reads the OPT record: size, DO bit, version; DO goes into the cache key', () => {
    const buf = query('example.com', 'AAAA', {
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED,
      additionals: [OPT(4096, true, [{ code: 10, data: Buffer.alloc(8, 1) }])],
    });
    const q = ok(parseQuery(buf));
    expect(q.edns).toEqual({ udpSize: 4096, do: true, version: 0 });
    expect(q.cd).toBe(true);
    expect(q.cacheKey).toBe('example.com|28|1|1');
    const q2 = ok(parseQuery(query('example.com', 'AAAA', { additionals: [OPT(1400, false)] })));
    expect(q2.edns).toEqual({ udpSize: 1400, do: false, version: 0 });
    expect(q2.cacheKey).toBe('example.com|28|1|0');
  });

  it('reads the EDNS version and RD=0', () => {
    const buf = Buffer.concat([
      header(7, 0, 1, 0, 0, 1),
      questionOf(wireName('a'), 65),
      Buffer.from([0]),
      u16(TYPE.OPT),
      u16(512),
      Buffer.from([0, 1, 0, 0]),
      u16(0),
    ]);
    const q = ok(parseQuery(buf));
    expect(q.rd).toBe(false);
    expect(q.qtype).toBe(TYPE.HTTPS);
    expect(q.edns).toEqual({ udpSize: 512, do: false, version: 1 });
  });

  it('names the root as the empty string; unknown types and classes pass through', () => {
    const q = ok(parseQuery(Buffer.concat([header(1, 0x0100, 1), questionOf(wireName(), 2)])));
    expect(q.qname).toBe('');
    expect(q.cacheKey).toBe('|2|1|0');
    const q2 = ok(parseQuery(Buffer.concat([header(1, 0x0100, 1), questionOf(wireName('x'), 0xff00, 3)])));
    expect([q2.qtype, q2.qclass]).toEqual([0xff00, 3]);
  });

  it('escapes dots, backslashes and non-printable bytes in labels like dig (\\DDD)', () => {
    const name = wireName(Buffer.from('A.b', 'latin1'), Buffer.from([0x20, 0xff, 0x5c, 0x00]), 'Com');
    const q = ok(parseQuery(Buffer.concat([header(1, 0, 1), questionOf(name)])));
    expect(q.qnameRaw).toBe('A\\046b.\\032\\255\\092\\000.Com');
    expect(q.qname).toBe('a\\046b.\\032\\255\\092\\000.com');
    // different wire names never collide
    const other = ok(parseQuery(Buffer.concat([header(1, 0, 1), questionOf(wireName('a', 'b', 'com'))])));
    expect(other.qname).toBe('a.b.com');
    // bytes 0xc0..0xde are not case-folded (only ASCII A-Z is)
    const latin = ok(parseQuery(Buffer.concat([header(1, 0, 1), questionOf(wireName(Buffer.from([0xc0, 0x41])))])));
    expect(latin.qname).toBe('\\192a');
  });

  it('accepts a name of exactly 255 bytes and 127 labels', () => {
    const labels = Array.from({ length: 127 }, () => 'a');
    const q = ok(parseQuery(Buffer.concat([header(1, 0, 1), questionOf(wireName(...labels))])));
    expect(q.qname.split('.').length).toBe(127);
    const big = [63, 63, 63, 61].map((n) => 'x'.repeat(n)); // 64+64+64+62+1 = 255
    expect(isParsedQuery(parseQuery(Buffer.concat([header(1, 0, 1), questionOf(wireName(...big))])))).toBe(true);
  });

  it("drops anything shorter than a header ('short')", () => {
    for (let n = 0; n < 12; n++) expect(parseQuery(Buffer.alloc(n, 0xff))).toEqual({ error: 'short' });
  });

  describe('FORMERR (with id and rd) for', () => {
    const formerr = (buf: Buffer, id = 0x1111, rd = true): void =>
      expect(parseQuery(buf)).toEqual({ error: 'formerr', id, rd });
    const q1 = questionOf(wireName('example', 'com'));

    it('a header without a question', () => formerr(header(0x1111, 0x0100, 0)));
    it('a header claiming a question that is not there', () => formerr(header(0x1111, 0x0100, 1)));
    it('two questions', () =>
      formerr(Buffer.concat([header(0x1111, 0x0100, 2), q1, questionOf(wireName('example', 'org'))])));
    it('a response (QR=1)', () => formerr(Buffer.concat([header(0x1111, 0x8100, 1), q1])));
    it('opcode 2 (STATUS) and opcode 5 (UPDATE)', () => {
      formerr(Buffer.concat([header(0x1111, 0x0100 | (2 << 11), 1), q1]));
      formerr(Buffer.concat([header(0x1111, 0x0000 | (5 << 11), 1), q1]), 0x1111, false);
    });
    it('a compression pointer in the question', () => {
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), Buffer.from([0xc0, 12]), u16(1), u16(1)]));
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), Buffer.from([1, 0x61, 0xc0, 12]), u16(1), u16(1)]));
    });
    it('a reserved label type (0x40/0x80)', () => {
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), Buffer.from([0x41]), Buffer.alloc(70, 0x61), u16(1), u16(1)]));
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), Buffer.from([0x80, 0]), u16(1), u16(1)]));
    });
    it('a name over 255 bytes or 127 labels', () => {
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), questionOf(wireName(...[63, 63, 63, 62].map((n) => 'x'.repeat(n))))]));
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), questionOf(wireName(...Array.from({ length: 128 }, () => 'a')))]));
    });
    it('a truncated name or missing type/class', () => {
      const full = Buffer.concat([header(0x1111, 0x0100, 1), q1]);
      for (let n = 12; n < full.length; n++) formerr(full.subarray(0, n));
    });
    it('a label longer than the packet', () =>
      formerr(Buffer.concat([header(0x1111, 0x0100, 1), Buffer.from([40, 0x61, 0x62])])));
    it('malformed or misplaced OPT records', () => {
      const opt = Buffer.concat([Buffer.from([0]), u16(TYPE.OPT), u16(1232), u32(0), u16(0)]);
      // two OPTs
      formerr(Buffer.concat([header(0x1111, 0x0100, 1, 0, 0, 2), q1, opt, opt]));
      // OPT in the answer section
      formerr(Buffer.concat([header(0x1111, 0x0100, 1, 1, 0, 0), q1, opt]));
      // OPT owned by a non-root name
      formerr(Buffer.concat([header(0x1111, 0x0100, 1, 0, 0, 1), q1, Buffer.from([0xc0, 12]), opt.subarray(1)]));
      // truncated additional section
      formerr(Buffer.concat([header(0x1111, 0x0100, 1, 0, 0, 1), q1, opt.subarray(0, 8)]));
      // rdlength past the end
      formerr(Buffer.concat([header(0x1111, 0x0100, 1, 0, 0, 1), q1, opt.subarray(0, 9), u16(4)]));
    });
  });

  it('questionBytes is the question exactly as sent', () => {
    const buf = query('WwW.ExAmPle.CoM', 'AAAA', { additionals: [OPT()] });
    const q = ok(parseQuery(buf));
    const qb = questionBytes(buf, q);
    expect(qb).toEqual(Buffer.concat([wireName('WwW', 'ExAmPle', 'CoM'), u16(28), u16(1)]));
  });

  it('udpLimit: 512 without EDNS, else the size clamped to 512..1232', () => {
    expect(udpLimit(null)).toBe(512);
    expect(udpLimit({ udpSize: 4096, do: false, version: 0 })).toBe(1232);
    expect(udpLimit({ udpSize: 1000, do: false, version: 0 })).toBe(1000);
    expect(udpLimit({ udpSize: 100, do: false, version: 0 })).toBe(512);
  });
});

// --- buildError ------------------------------------------------------------------

describe('buildError', () => {
  it('builds a response header with RA, RD copied and the question echoed', () => {
    const buf = query('Example.com', 'A', { id: 0x5555 });
    const q = ok(parseQuery(buf));
    for (const rcode of [RCODE.FORMERR, RCODE.SERVFAIL, RCODE.NXDOMAIN, RCODE.REFUSED]) {
      const out = buildError({ id: q.id, rd: q.rd, question: questionBytes(buf, q) }, rcode);
      const d = dnsPacket.decode(out);
      expect(d.id).toBe(0x5555);
      expect(d.type).toBe('response');
      expect(d.flags! & 0xf).toBe(rcode);
      expect(d.flag_rd).toBe(true);
      expect(d.flag_ra).toBe(true);
      expect(d.flag_aa).toBe(false);
      expect(d.questions).toEqual([{ name: 'Example.com', type: 'A', class: 'IN' }]);
      expect(d.answers).toEqual([]);
      expect(matchesQuestion(out, q)).toBe(true);
    }
  });

  it('without a question (FORMERR for garbage): header only, RD=0 kept', () => {
    const out = buildError({ id: 9, rd: false }, RCODE.FORMERR);
    expect(out.length).toBe(12);
    expect(out).toEqual(header(9, 0x8081, 0));
  });

  it('with an OPT record, and extended rcodes (BADVERS) through it', () => {
    const out = buildError({ id: 1, rd: true, question: questionOf(wireName('a')) }, RCODE.NOERROR, { udpSize: 1232, do: true });
    const d = dnsPacket.decode(out);
    const opt = d.additionals![0] as dnsPacket.OptAnswer;
    expect(opt.type).toBe('OPT');
    expect(opt.udpPayloadSize).toBe(1232);
    expect(opt.flag_do).toBe(true);
    const bad = buildError({ id: 1, rd: true }, RCODE.BADVERS);
    const info = responseInfo(bad)!;
    expect(info.rcode).toBe(RCODE.BADVERS);
    expect(bad.readUInt16BE(2) & 0xf).toBe(0);
  });
});

// --- cached answers: ttlOffsets / patchResponseAt ----------------------------------

describe('ttlOffsets / patchResponseAt', () => {
  it('ages every TTL but the OPT record, floors at 0, sets the ID and puts the client case back', () => {
    const cached = chainResponse('alias.example.com');
    const before = Buffer.from(cached);
    const offsets = ttlOffsets(cached)!;
    expect(offsets).toHaveLength(5); // 4 answers + SOA, not OPT
    const clientQuery = query('ALiaS.ExAmple.COM', 'A', { id: 0x0a0b });
    const q = ok(parseQuery(clientQuery));
    const out = patchResponseAt(cached, offsets, q.id, questionBytes(clientQuery, q), 100, q.flags, true);
    expect(cached).toEqual(before); // the cached copy is untouched
    const d = dnsPacket.decode(out);
    expect(d.id).toBe(0x0a0b);
    expect(d.questions![0]!.name).toBe('ALiaS.ExAmple.COM');
    expect(d.answers!.map((a) => (a as { ttl: number }).ttl)).toEqual([200, 0, 20, 20]);
    expect((d.authorities![0] as { ttl: number }).ttl).toBe(3500);
    const opt = d.additionals![0] as dnsPacket.OptAnswer;
    expect(opt.type).toBe('OPT');
    expect(opt.udpPayloadSize).toBe(1232);
    expect(opt.flag_do).toBe(true);
    // the OPT record's bytes are identical (its "TTL" is ext-rcode/version/flags)
    expect(out.subarray(out.length - 11)).toEqual(cached.subarray(cached.length - 11));
    expect(matchesQuestion(out, q)).toBe(true);
  });

  it('patchResponse equals patchResponseAt with ttlOffsets; age 0 and negative/NaN ages change no TTL', () => {
    const cached = chainResponse();
    const qb = cached.subarray(12, 12 + 19 + 4);
    expect(patchResponse(cached, 7, qb, 30, RD, true)).toEqual(patchResponseAt(cached, ttlOffsets(cached)!, 7, qb, 30, RD, true));
    for (const age of [0, -5, Number.NaN, 0.7]) {
      const out = patchResponse(cached, cached.readUInt16BE(0), qb, age, cached.readUInt16BE(2), true);
      expect(out).toEqual(cached);
      expect(out).not.toBe(cached);
    }
    // fractional ages round down
    const d = dnsPacket.decode(patchResponse(cached, 1, qb, 10.9, RD, true));
    expect((d.answers![0] as { ttl: number }).ttl).toBe(290);
  });

  it('walks compressed responses (pointers in owners and RDATA)', () => {
    const cached = compressedResponse();
    expect(dnsPacket.decode(cached).answers).toHaveLength(2); // well-formed
    const offsets = ttlOffsets(cached)!;
    expect(offsets).toHaveLength(4);
    const qb = questionOf(wireName('WWW', 'example', 'COM'));
    const out = patchResponseAt(cached, offsets, 0x9999, qb, 45, RD, true);
    const d = dnsPacket.decode(out);
    expect(d.id).toBe(0x9999);
    expect(d.questions![0]!.name).toBe('WWW.example.COM');
    expect(d.answers!.map((a) => [a.name, (a as { ttl: number }).ttl])).toEqual([
      ['WWW.example.COM', 255], // owner is a pointer to the question: the client's case too
      ['cdn.example.COM', 15],
    ]);
    expect((d.authorities![0] as { ttl: number }).ttl).toBe(86355);
    expect((d.additionals![0] as { ttl: number }).ttl).toBe(0);
    expect((d.additionals![1] as dnsPacket.OptAnswer).flag_do).toBe(true);
  });

  it('treats a TTL with the top bit set as 0 (RFC 2181 §8)', () => {
    const buf = Buffer.concat([
      header(1, 0x8180, 1, 1),
      questionOf(wireName('a')),
      rr(Buffer.from([0xc0, 12]), TYPE.A, 0x80000005, Buffer.from([1, 2, 3, 4])),
    ]);
    const out = patchResponse(buf, 1, questionOf(wireName('a')), 1, RD, false);
    expect(out.readUInt32BE(out.length - 10)).toBe(0);
    expect(responseInfo(buf)!.minTtl).toBe(0);
  });

  it('keeps the cached question when the given one is not the same question', () => {
    const cached = chainResponse('alias.example.com');
    const other = questionOf(wireName('alias', 'example', 'org')); // same length, other name
    const out = patchResponse(cached, 2, other, 0, cached.readUInt16BE(2), true);
    expect(out.subarray(12, 12 + other.length)).toEqual(cached.subarray(12, 12 + other.length));
    const otherType = questionOf(wireName('alias', 'example', 'com'), 28);
    expect(patchResponse(cached, 2, otherType, 0, cached.readUInt16BE(2), true).subarray(2)).toEqual(cached.subarray(2));
  });

  it('returns null for malformed responses and ignores out-of-range offsets', () => {
    const good = chainResponse();
    for (let n = 0; n < good.length; n++) expect(ttlOffsets(good.subarray(0, n))).toBeNull();
    const loop = Buffer.concat([header(1, 0x8180, 1, 1), questionOf(wireName('a')), rr(Buffer.from([0xc0, 19]), 1, 5, Buffer.alloc(4))]);
    expect(ttlOffsets(loop)).toBeNull(); // pointer to itself
    const fwd = Buffer.concat([header(1, 0x8180, 1, 2), questionOf(wireName('a')), rr(Buffer.from([1, 0x62, 0xc0, 40]), 1, 5, Buffer.alloc(4)), rr(Buffer.from([0xc0, 12]), 1, 5, Buffer.alloc(4))]);
    expect(ttlOffsets(fwd)).toBeNull(); // forward pointer
    const intoHeader = Buffer.concat([header(1, 0x8180, 1, 1), questionOf(wireName('a')), rr(Buffer.from([0xc0, 2]), 1, 5, Buffer.alloc(4))]);
    expect(ttlOffsets(intoHeader)).toBeNull();
    const out = patchResponseAt(good, [-4, 0, 5, good.length - 2, 1e9], 3, Buffer.alloc(0), 10, good.readUInt16BE(2), true);
    expect(out.subarray(2)).toEqual(good.subarray(2));
  });

  it('uses Buffer operations only (no dns-packet on the hit path)', () => {
    const src = readFileSync(new URL('../../dns/wire.ts', import.meta.url), 'utf8');
    expect(src).not.toMatch(/from ['"]dns-packet['"]/);
    expect(src).not.toMatch(/require\(/);
    const body = patchResponseAt.toString();
    expect(body).not.toMatch(/decode|encode|scan\(|ttlOffsets|JSON/);
    const decode = vi.spyOn(dnsPacket, 'decode');
    const encode = vi.spyOn(dnsPacket, 'encode');
    const cached = chainResponse();
    const offsets = ttlOffsets(cached)!;
    decode.mockClear();
    encode.mockClear();
    for (let i = 0; i < 1000; i++) patchResponseAt(cached, offsets, i, cached.subarray(12, 35), i, RD, false);
    expect(decode).not.toHaveBeenCalled();
    expect(encode).not.toHaveBeenCalled();
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

// --- matchesQuestion --------------------------------------------------------------

describe('matchesQuestion', () => {
  const q = { id: 0xbeef, qname: 'alias.example.com', qtype: TYPE.A, qclass: CLASS.IN };

  it('accepts the answer to the question, whatever the case upstream (0x20)', () => {
    expect(matchesQuestion(chainResponse(), q)).toBe(true);
    expect(matchesQuestion(chainResponse('AlIaS.eXaMpLe.CoM'), q)).toBe(true);
    expect(matchesQuestion(chainResponse(), { ...q, qname: 'ALIAS.example.com' })).toBe(true);
  });

  it('rejects another ID, a query, another name, type or class, no question, garbage', () => {
    const r = chainResponse();
    expect(matchesQuestion(r, { ...q, id: 0xbeee })).toBe(false);
    const notResponse = Buffer.from(r);
    notResponse[2] = notResponse[2]! & 0x7f;
    expect(matchesQuestion(notResponse, q)).toBe(false);
    expect(matchesQuestion(r, { ...q, qname: 'alias.example.co' })).toBe(false);
    expect(matchesQuestion(r, { ...q, qname: 'blias.example.com' })).toBe(false);
    expect(matchesQuestion(r, { ...q, qtype: TYPE.AAAA })).toBe(false);
    expect(matchesQuestion(r, { ...q, qclass: CLASS.CH })).toBe(false);
    expect(matchesQuestion(header(0xbeef, 0x8182, 0), q)).toBe(false);
    expect(matchesQuestion(Buffer.alloc(0), q)).toBe(false);
    expect(matchesQuestion(r.subarray(0, 20), q)).toBe(false);
    const two = Buffer.concat([header(0xbeef, 0x8180, 2), questionOf(wireName('alias', 'example', 'com')), questionOf(wireName('x'))]);
    expect(matchesQuestion(two, q)).toBe(false);
  });
});

// --- responseInfo ---------------------------------------------------------------

describe('responseInfo', () => {
  it('reads a CNAME chain with addresses, TTLs and the SOA', () => {
    const info = responseInfo(chainResponse('Alias.Example.com'))!;
    expect(info).toEqual({
      id: 0xbeef,
      rcode: 0,
      tc: false,
      qname: 'alias.example.com',
      qtype: TYPE.A,
      qclass: CLASS.IN,
      answers: [
        { name: 'alias.example.com', type: TYPE.CNAME, ttl: 300, data: 'edge.cdn.example.net' },
        { name: 'edge.cdn.example.net', type: TYPE.CNAME, ttl: 50, data: 'e1.cdn.example.net' },
        { name: 'e1.cdn.example.net', type: TYPE.A, ttl: 120, data: '192.0.2.10' },
        { name: 'e1.cdn.example.net', type: TYPE.A, ttl: 120, data: '192.0.2.11' },
      ],
      minTtl: 50,
      soaMinimum: 600,
      addresses: ['192.0.2.10', '192.0.2.11'],
      cnames: ['edge.cdn.example.net', 'e1.cdn.example.net'],
    });
  });

  it('reads a compressed response', () => {
    const info = responseInfo(compressedResponse())!;
    expect(info.qname).toBe('www.example.com');
    expect(info.cnames).toEqual(['cdn.example.com']);
    expect(info.answers[1]).toEqual({ name: 'cdn.example.com', type: TYPE.A, ttl: 60, data: '198.51.100.7' });
    expect(info.addresses).toEqual(['198.51.100.7']); // not the glue of the additional section
    expect(info.minTtl).toBe(60);
    expect(info.soaMinimum).toBeNull();
  });

  it('formats AAAA in RFC 5952 form (as the WHATWG URL serializer does)', () => {
    const addrs = ['2001:db8::1', '::1', '::', 'fe80::1:0:0:1', '2001:db8:0:1:1:1:1:1', '::ffff:1.2.3.4', '1:0:0:2:0:0:0:3'];
    const resp = enc({
      type: 'response',
      id: 1,
      questions: [{ type: 'AAAA', name: 'v6.example', class: 'IN' }],
      answers: addrs.map((data) => ({ type: 'AAAA', name: 'v6.example', ttl: 5, data })),
    });
    // (dns-packet shortens the first zero run, not the longest: 1::2:0:0:0:3)
    const expected = addrs.map((a) => new URL(`http://[${a}]/`).hostname.slice(1, -1));
    expect(expected[6]).toBe('1:0:0:2::3');
    expect(responseInfo(resp)!.addresses).toEqual(expected);
  });

  it('negative answers: rcode, soaMinimum = min(SOA TTL, MINIMUM), no answers', () => {
    const nx = (ttl: number, minimum: number): Buffer =>
      enc({
        type: 'response',
        id: 3,
        flags: RESP | RCODE.NXDOMAIN,
        questions: [{ type: 'A', name: 'nope.example', class: 'IN' }],
        authorities: [
          {
            type: 'SOA',
            name: 'example',
            ttl,
            data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum },
          },
        ],
      });
    expect(responseInfo(nx(3600, 300))).toMatchObject({ rcode: 3, answers: [], minTtl: null, soaMinimum: 300, addresses: [] });
    expect(responseInfo(nx(60, 300))!.soaMinimum).toBe(60);
  });

  it('extracts SVCB/HTTPS ipv4hint and ipv6hint (types 64/65)', () => {
    const https = svcbRdata(1, [], [[104, 16, 132, 229], [104, 16, 133, 229]], [v6('2606:4700::6810:84e5')]);
    const svcb = svcbRdata(1, ['svc', 'example', 'net'], [[192, 0, 2, 1]], []);
    const alias = svcbRdata(0, ['pool', 'example', 'net'], [], []);
    const resp = enc({
      type: 'response',
      id: 4,
      flags: RESP,
      questions: [{ type: 'UNKNOWN_65', name: 'www.example.com', class: 'IN' }],
      answers: [
        { type: 'UNKNOWN_65', name: 'www.example.com', ttl: 300, data: https },
        { type: 'UNKNOWN_64', name: 'www.example.com', ttl: 200, data: svcb },
        { type: 'UNKNOWN_65', name: 'www.example.com', ttl: 300, data: alias },
      ],
    });
    const info = responseInfo(resp)!;
    expect(info.qtype).toBe(TYPE.HTTPS);
    expect(info.addresses).toEqual(['104.16.132.229', '104.16.133.229', '2606:4700::6810:84e5', '192.0.2.1']);
    expect(info.answers.map((a) => a.type)).toEqual([65, 64, 65]);
    expect(info.minTtl).toBe(200);
  });

  it('ignores malformed SVCB params but keeps the rest of the answer', () => {
    const bad = Buffer.concat([u16(1), Buffer.from([0]), u16(4), u16(3), Buffer.from([1, 2, 3])]); // ipv4hint of 3 bytes
    const resp = Buffer.concat([
      header(5, 0x8180, 1, 2),
      questionOf(wireName('a'), 65),
      rr(Buffer.from([0xc0, 12]), 65, 10, bad),
      rr(Buffer.from([0xc0, 12]), 1, 10, Buffer.from([10, 0, 0, 1])),
    ]);
    expect(responseInfo(resp)!.addresses).toEqual(['10.0.0.1']);
  });

  it('reads TC, extended rcodes, a response without a question', () => {
    const tc = enc({ type: 'response', id: 1, flags: dnsPacket.TRUNCATED_RESPONSE, questions: [{ type: 'A', name: 'a' }] });
    expect(responseInfo(tc)!.tc).toBe(true);
    const refused = header(1, 0x8185, 0);
    expect(responseInfo(refused)).toMatchObject({ rcode: 5, qname: '', qtype: 0, qclass: 0, answers: [] });
  });

  it('returns null for garbage and for malformed records', () => {
    expect(responseInfo(Buffer.alloc(5))).toBeNull();
    const r = chainResponse();
    for (let n = 0; n < r.length; n++) expect(responseInfo(r.subarray(0, n))).toBeNull();
    const badA = Buffer.concat([header(1, 0x8180, 1, 1), questionOf(wireName('a')), rr(Buffer.from([0xc0, 12]), 1, 5, Buffer.alloc(3))]);
    expect(responseInfo(badA)).toBeNull();
    const fwdPtr = Buffer.concat([header(1, 0x8180, 1, 1), questionOf(wireName('a')), rr(Buffer.from([0xc0, 12]), 5, 5, Buffer.from([0xc0, 40]))]);
    expect(responseInfo(fwdPtr)).toBeNull();
  });
});

// --- EDNS and truncation ------------------------------------------------------------

describe('addEdns / removeOpt', () => {
  it('appends an OPT advertising 1232 to a query without one', () => {
    const buf = query('example.com');
    const out = addEdns(buf);
    const d = dnsPacket.decode(out);
    const opt = d.additionals![0] as dnsPacket.OptAnswer;
    expect(d.additionals).toHaveLength(1);
    expect([opt.type, opt.udpPayloadSize, opt.flag_do, opt.ednsVersion]).toEqual(['OPT', 1232, false, 0]);
    expect(ok(parseQuery(out)).edns).toEqual({ udpSize: 1232, do: false, version: 0 });
    expect(out.subarray(0, buf.length - 0).subarray(12)).toEqual(out.subarray(12, buf.length));
    expect(ok(parseQuery(addEdns(buf, 1232, true))).edns!.do).toBe(true);
    expect(ok(parseQuery(addEdns(buf, 1400))).edns!.udpSize).toBe(1400);
  });

  it("replaces an existing OPT's size, keeping its DO bit and options", () => {
    const cookie = { code: 10, data: Buffer.from('0123456789abcdef', 'hex') };
    const buf = query('example.com', 'A', { additionals: [OPT(4096, true, [cookie])] });
    const out = addEdns(buf, 1232, false);
    expect(out.length).toBe(buf.length);
    const opt = dnsPacket.decode(out).additionals![0] as dnsPacket.OptAnswer;
    expect(opt.udpPayloadSize).toBe(1232);
    expect(opt.flag_do).toBe(true);
    expect(opt.options).toEqual([{ code: 10, type: 'COOKIE', data: cookie.data }]);
    const noDo = query('example.com', 'A', { additionals: [OPT(512, false)] });
    expect(ok(parseQuery(addEdns(noDo, 1232, true))).edns).toEqual({ udpSize: 1232, do: true, version: 0 });
    expect(buf).toEqual(query('example.com', 'A', { additionals: [OPT(4096, true, [cookie])] })); // input untouched
  });

  it('removeOpt drops a final OPT record', () => {
    const r = chainResponse();
    const out = removeOpt(r);
    expect(out.length).toBe(r.length - 11);
    const d = dnsPacket.decode(out);
    expect(d.additionals).toEqual([]);
    expect(d.answers).toHaveLength(4);
    expect(removeOpt(out)).toEqual(out);
  });

  it('leaves malformed messages as they are', () => {
    const junk = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    expect(addEdns(junk)).toEqual(junk);
    expect(removeOpt(junk)).toEqual(junk);
  });
});

// --- header bits and error answers -------------------------------------------------

/** The header bits a message carries, by dig's names (z: the reserved bit). */
function bitsOf(b: Buffer): string[] {
  const f = b.readUInt16BE(2);
  const names: [number, string][] = [[0x0400, 'aa'], [0x0200, 'tc'], [0x0100, 'rd'], [0x0080, 'ra'], [0x0040, 'z'], [0x0020, 'ad'], [0x0010, 'cd']];
  return names.filter(([bit]) => (f & bit) !== 0).map(([, n]) => n);
}
/** A message with another opcode (its question and records kept). */
function withOpcode(b: Buffer, opcode: number): Buffer {
  const out = Buffer.from(b);
  out[2] = (out[2]! & 0x87) | (opcode << 3);
  return out;
}
const ALL_QUERY_BITS = 0x0400 | 0x0200 | RD | 0x80 | 0x40 | 0x20 | 0x10;

describe('errorAnswer / findOpt / buildError bits', () => {
  it('to a QUERY: RA set, RD and CD copied, the question echoed, an OPT of ours (DO copied) when the query had one', () => {
    const plain = query('Err.example', 'A', { id: 7, flags: RD | dnsPacket.CHECKING_DISABLED });
    for (const rcode of [RCODE.SERVFAIL, RCODE.REFUSED, RCODE.NOTIMP]) {
      const out = errorAnswer(plain, rcode);
      expect(bitsOf(out)).toEqual(['rd', 'ra', 'cd']);
      const d = dnsPacket.decode(out);
      expect([d.id, d.flags! & 0xf, d.questions![0]!.name, d.additionals]).toEqual([7, rcode, 'Err.example', []]);
    }
    const edns = query('err.example', 'A', { flags: 0, additionals: [OPT(4096, true, [{ code: 100, data: Buffer.alloc(0) }])] });
    const out = errorAnswer(edns, RCODE.REFUSED);
    expect(bitsOf(out)).toEqual(['ra']);
    const opt = dnsPacket.decode(out).additionals![0] as dnsPacket.OptAnswer;
    expect([opt.type, opt.udpPayloadSize, opt.flag_do, opt.options]).toEqual(['OPT', 1232, true, []]);
  });

  it('FORMERR (RFC 6891 §7): an EDNS query gets an OPT even when it cannot be parsed: two questions, two OPTs, a compressed name', () => {
    const two = enc({ type: 'query', id: 3, flags: RD, questions: [{ type: 'A', name: 'a.example' }, { type: 'A', name: 'b.example' }], additionals: [OPT(4096, true)] });
    const twoOpts = query('a.example', 'A', { additionals: [OPT(4096, false), OPT(512, true)] });
    const none = enc({ type: 'query', id: 3, flags: RD, questions: [], additionals: [OPT(1232, false)] });
    for (const [msg, doBit] of [[two, true], [twoOpts, false], [none, false]] as const) {
      expect(parseQuery(msg)).toMatchObject({ error: 'formerr' });
      expect(findOpt(msg)).toMatchObject({ do: doBit, version: 0 });
      const out = errorAnswer(msg, RCODE.FORMERR);
      const d = dnsPacket.decode(out);
      expect([d.flags! & 0xf, d.questions, d.additionals!.map((a) => [a.type, (a as dnsPacket.OptAnswer).udpPayloadSize, (a as dnsPacket.OptAnswer).flag_do])]).toEqual([RCODE.FORMERR, [], [['OPT', 1232, doBit]]]);
    }
    // No OPT in the query, or records that cannot be walked to it: none in the answer.
    expect(findOpt(query('a.example'))).toBeNull();
    expect(errorAnswer(enc({ type: 'query', id: 3, flags: RD, questions: [] }), RCODE.FORMERR).length).toBe(12);
    const cut = twoOpts.subarray(0, twoOpts.length - 3);
    expect(findOpt(cut)).toBeNull();
    expect(errorAnswer(cut, RCODE.FORMERR).length).toBe(12);
  });

  it('to another opcode: the opcode echoed, no RA, RD, CD, AD, AA, Z or TC whatever the request had; no question; an OPT only for EDNS', () => {
    for (const opcode of [1, 2, 4, 5, 15]) {
      const msg = withOpcode(query('zone.example', 'SOA', { flags: ALL_QUERY_BITS }), opcode);
      const out = errorAnswer(msg, RCODE.NOTIMP);
      expect([(out[2]! >> 3) & 0xf, out[3]! & 0xf, bitsOf(out), out.length]).toEqual([opcode, RCODE.NOTIMP, [], 12]);
      const e = errorAnswer(withOpcode(query('zone.example', 'SOA', { flags: RD, additionals: [OPT(4096, true)] }), opcode), RCODE.NOTIMP);
      const d = dnsPacket.decode(e);
      expect([bitsOf(e), d.questions, d.additionals!.map((a) => a.type)]).toEqual([[], [], ['OPT']]);
    }
    expect(bitsOf(buildError({ id: 1, rd: true, cd: true, opcode: 4 }, RCODE.NOTIMP))).toEqual([]);
    expect(bitsOf(buildError({ id: 1, rd: true, cd: true }, RCODE.SERVFAIL))).toEqual(['rd', 'ra', 'cd']);
  });
});

describe('upstreamQuery / ourAnswer', () => {
  it('upstreamQuery: RD and AD set, Z clear, CD kept; the client\'s OPT options dropped, its DO kept', () => {
    const cookie = { code: 10, data: Buffer.from('0102030405060708', 'hex') };
    for (const [flags, want] of [
      [0, ['rd', 'ad']],
      [0x40 | dnsPacket.CHECKING_DISABLED, ['rd', 'ad', 'cd']],
      [RD | 0x20, ['rd', 'ad']],
    ] as const) {
      const out = upstreamQuery(query('up.example', 'A', { flags, additionals: [OPT(4096, true, [cookie])] }), 1232, true);
      expect(bitsOf(out)).toEqual(want);
      const opt = dnsPacket.decode(out).additionals![0] as dnsPacket.OptAnswer;
      expect([opt.udpPayloadSize, opt.flag_do, opt.options]).toEqual([1232, true, []]);
    }
  });

  it('ourAnswer: AA and Z cleared, RA set; the OPT sized 1232, version 0, no flag but DO, options kept; one appended when missing', () => {
    const ede = { code: 15, data: Buffer.from([0, 18]) };
    const resp = enc({
      type: 'response',
      id: 1,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | 0x40 | RD,
      questions: [{ type: 'A', name: 'a.example' }],
      answers: [{ type: 'A', name: 'a.example', ttl: 60, data: '192.0.2.1' }],
      additionals: [{ ...OPT(4096, true, [ede]), flags: dnsPacket.DNSSEC_OK | 0x0080 }],
    });
    const optAt = resp.length - 11 - 6; // the OPT record: 11 bytes and its 6-byte option, last
    resp[optAt + 6] = 1; // version 1 (owner, type, class, then ext-rcode and version)
    const sent = dnsPacket.decode(resp).additionals![0] as dnsPacket.OptAnswer;
    expect([sent.ednsVersion, sent.flags]).toEqual([1, dnsPacket.DNSSEC_OK | 0x0080]);
    const out = ourAnswer(resp);
    expect(bitsOf(out)).toEqual(['rd', 'ra']);
    const opt = dnsPacket.decode(out).additionals![0] as dnsPacket.OptAnswer;
    expect([opt.udpPayloadSize, opt.ednsVersion, opt.flags, opt.options]).toEqual([1232, 0, dnsPacket.DNSSEC_OK, [{ code: 15, type: 'OPTION_15', data: ede.data }]]);
    expect(ttlOffsets(out)).toEqual(ttlOffsets(resp));
    const bare = ourAnswer(removeOpt(resp));
    expect(dnsPacket.decode(bare).additionals!.map((a) => [(a as dnsPacket.OptAnswer).udpPayloadSize, (a as dnsPacket.OptAnswer).flags])).toEqual([[1232, 0]]);
  });
});

describe('patchResponseAt / writeHitAnswer: the client\'s header bits', () => {
  const AD = dnsPacket.AUTHENTIC_DATA;
  const CD = dnsPacket.CHECKING_DISABLED;
  it('RD and CD from the query, AD only with the query\'s AD or DO; the same bytes from both', () => {
    const cached = ourAnswer(enc({ type: 'response', id: 1, flags: RESP | AD, questions: [{ type: 'A', name: 'a.example' }], answers: [{ type: 'A', name: 'a.example', ttl: 60, data: '192.0.2.1' }] }));
    const offsets = ttlOffsets(cached)!;
    for (const [flags, dnssecOk, want] of [
      [0, false, ['ra']],
      [RD, false, ['rd', 'ra']],
      [CD, false, ['ra', 'cd']],
      [AD, false, ['ra', 'ad']],
      [RD | CD, true, ['rd', 'ra', 'ad', 'cd']],
    ] as const) {
      const q = query('A.example', 'A', { id: 0x4321, flags });
      const qb = questionBytes(q, ok(parseQuery(q)));
      const out = patchResponseAt(cached, offsets, 0x4321, qb, 5, flags, dnssecOk);
      expect([flags, bitsOf(out)]).toEqual([flags, want]);
      const slot = Buffer.alloc(cached.length + 4, 0xaa);
      const n = writeHitAnswer(slot, 2, cached, offsets, q, 0, 12 + qb.length, 5, dnssecOk);
      expect(slot.subarray(2, 2 + n)).toEqual(out);
    }
  });
});

describe('truncateForUdp', () => {
  const big = (withOpt: boolean): Buffer =>
    enc({
      type: 'response',
      id: 0x7777,
      flags: RESP,
      questions: [{ type: 'A', name: 'Many.Example.com', class: 'IN' }],
      answers: Array.from({ length: 40 }, (_, i) => ({ type: 'A', name: 'many.example.com', ttl: 60, data: `10.0.0.${i}` })),
      additionals: withOpt ? [OPT(1232, true)] : [],
    });

  it('returns the response itself when it fits', () => {
    const r = chainResponse();
    expect(truncateForUdp(r, 512)).toBe(r);
  });

  it('returns header + question with TC=1 when it does not (no OPT for a client without EDNS)', () => {
    const r = big(false);
    expect(r.length).toBeGreaterThan(512);
    const out = truncateForUdp(r, udpLimit(null));
    const d = dnsPacket.decode(out);
    expect(d.id).toBe(0x7777);
    expect(d.flag_tc).toBe(true);
    expect(d.flag_rd).toBe(true);
    expect(d.questions).toEqual([{ name: 'Many.Example.com', type: 'A', class: 'IN' }]);
    expect([d.answers, d.authorities, d.additionals]).toEqual([[], [], []]);
    expect(responseInfo(out)!.tc).toBe(true);
  });

  it('keeps a bare OPT when the response had one, or when asked', () => {
    const out = truncateForUdp(big(true), 512);
    const d = dnsPacket.decode(out);
    expect(d.flag_tc).toBe(true);
    expect(d.answers).toEqual([]);
    const opt = d.additionals![0] as dnsPacket.OptAnswer;
    expect([opt.type, opt.udpPayloadSize, opt.flag_do]).toEqual(['OPT', 1232, true]);
    expect(dnsPacket.decode(truncateForUdp(big(false), 512, true)).additionals).toHaveLength(1);
    expect(dnsPacket.decode(truncateForUdp(big(true), 512, false)).additionals).toHaveLength(0);
  });

  it('survives a malformed long response', () => {
    const r = Buffer.concat([big(false).subarray(0, 400), Buffer.alloc(300, 0xff)]);
    r.writeUInt16BE(200, 6);
    const out = truncateForUdp(r, 512);
    expect(out.length).toBeLessThanOrEqual(512);
    expect(dnsPacket.decode(out).flag_tc).toBe(true);
  });
});

// --- properties ---------------------------------------------------------------------

const labelArb = fc.stringMatching(/^[a-zA-Z0-9-]{1,20}$/);
const nameArb = fc.array(labelArb, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
const rrArb = fc.oneof(
  fc.record({ type: fc.constant('A'), name: nameArb, ttl: fc.nat(0x7fffffff), data: fc.ipV4() }),
  fc.record({ type: fc.constant('AAAA'), name: nameArb, ttl: fc.nat(0x7fffffff), data: fc.ipV6() }),
  fc.record({ type: fc.constant('CNAME'), name: nameArb, ttl: fc.nat(0x7fffffff), data: nameArb }),
  fc.record({ type: fc.constant('TXT'), name: nameArb, ttl: fc.nat(0x7fffffff), data: fc.string({ maxLength: 50 }) }),
  fc.record({
    type: fc.constant('MX'),
    name: nameArb,
    ttl: fc.nat(0x7fffffff),
    data: fc.record({ preference: fc.nat(0xffff), exchange: nameArb }),
  }),
);
const responseArb = fc
  .record({
    id: fc.nat(0xffff),
    qname: nameArb,
    answers: fc.array(rrArb, { maxLength: 6 }),
    authorities: fc.array(rrArb, { maxLength: 3 }),
    additionals: fc.array(rrArb, { maxLength: 3 }),
    opt: fc.boolean(),
  })
  .map((r) =>
    enc({
      type: 'response',
      id: r.id,
      flags: RESP,
      questions: [{ type: 'A', name: r.qname, class: 'IN' }],
      answers: r.answers,
      authorities: r.authorities,
      additionals: r.opt ? [...r.additionals, OPT(1232, true)] : r.additionals,
    }),
  );
const queryArb = fc
  .record({ id: fc.nat(0xffff), name: nameArb, type: fc.constantFrom('A', 'AAAA', 'MX', 'TXT'), opt: fc.boolean() })
  .map((q) => query(q.name, q.type, { id: q.id, additionals: q.opt ? [OPT(4096, true)] : [] }));

const mutate = (base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> =>
  fc
    .tuple(
      base,
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }),
      fc.option(fc.nat(), { nil: undefined }),
    )
    .map(([b, edits, cut]) => {
      const out = Buffer.from(b);
      for (const [at, v] of edits) out[at % out.length] = v;
      return cut === undefined ? out : out.subarray(0, cut % (out.length + 1));
    });

const packetArb = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  mutate(queryArb),
  mutate(responseArb),
  mutate(fc.constant(compressedResponse())),
);

describe('properties', () => {
  it('no function throws on random or mutated packets', () => {
    fc.assert(
      fc.property(packetArb, fc.integer({ min: -10, max: 100000 }), (buf, age) => {
        const q = parseQuery(buf);
        expect(typeof q).toBe('object');
        if (isParsedQuery(q)) {
          expect(q.questionEnd).toBeLessThanOrEqual(buf.length);
          const qb = questionBytes(buf, q);
          expect(isParsedQuery(parseQuery(Buffer.concat([header(q.id, 0x100, 1), qb])))).toBe(true);
          buildError({ id: q.id, rd: q.rd, question: qb }, RCODE.SERVFAIL);
          matchesQuestion(buf, q);
        } else if (q.error === 'formerr') {
          expect(buildError(q, RCODE.FORMERR).length).toBe(12);
        } else expect(buf.length).toBeLessThan(12);
        const info = responseInfo(buf);
        expect(info === null || typeof info === 'object').toBe(true);
        const offs = ttlOffsets(buf);
        expect(offs === null || Array.isArray(offs)).toBe(true);
        patchResponse(buf, 1, buf.subarray(12, 30), age, RD, true);
        patchResponseAt(buf, offs ?? [], 1, buf.subarray(12), age, 0, false);
        addEdns(buf, 1232, true);
        removeOpt(buf);
        truncateForUdp(buf, 512);
        truncateForUdp(buf, 0);
      }),
      { numRuns: 2000 },
    );
  });

  it('patchResponseAt on ttlOffsets of valid responses stays decodable, with aged TTLs', () => {
    fc.assert(
      fc.property(responseArb, fc.nat(0xffff), fc.nat(1_000_000), (resp, id, age) => {
        const offs = ttlOffsets(resp);
        expect(offs).not.toBeNull();
        const info = responseInfo(resp);
        expect(info).not.toBeNull();
        const before = dnsPacket.decode(resp);
        const qEnd = ok(parseQuery(Buffer.concat([header(1, 0x100, 1), resp.subarray(12)]).subarray(0, resp.length))).questionEnd;
        const qb = Buffer.from(resp.subarray(12, qEnd));
        for (let i = 0; i < qb.length; i++) if (qb[i]! >= 0x61 && qb[i]! <= 0x7a && i % 2 === 0) qb[i] = qb[i]! - 0x20;
        const out = patchResponseAt(resp, offs!, id, qb, age, resp.readUInt16BE(2), true);
        const after = dnsPacket.decode(out);
        expect(after.id).toBe(id);
        expect(out.subarray(12, qEnd)).toEqual(qb);
        const ttls = (p: dnsPacket.DecodedPacket): (number | undefined)[] =>
          [...p.answers!, ...p.authorities!, ...p.additionals!].map((a) => (a.type === 'OPT' ? undefined : (a as { ttl: number }).ttl));
        expect(ttls(after)).toEqual(ttls(before).map((t) => (t === undefined ? t : Math.max(0, t - age))));
        expect(info!.answers.length).toBe(before.answers!.length);
      }),
      { numRuns: 500 },
    );
  });

  it('parseQuery names are unambiguous: any label bytes round-trip through the escaping', () => {
    const rawLabel = fc.uint8Array({ minLength: 1, maxLength: 20 }).map((a) => Buffer.from(a));
    fc.assert(
      fc.property(fc.array(rawLabel, { maxLength: 8 }), (labels) => {
        const q = ok(parseQuery(Buffer.concat([header(1, 0, 1), questionOf(wireName(...labels))])));
        expect(unescape(q.qnameRaw)).toEqual(labels);
        const lower = labels.map((l) => Buffer.from(l.map((c) => (c >= 0x41 && c <= 0x5a ? c + 0x20 : c))));
        expect(unescape(q.qname)).toEqual(lower);
      }),
    );
  });

  it('matchesQuestion accepts every valid response to its own question and responseInfo agrees', () => {
    fc.assert(
      fc.property(responseArb, (resp) => {
        const info = responseInfo(resp)!;
        expect(matchesQuestion(resp, { id: info.id, qname: info.qname, qtype: info.qtype, qclass: info.qclass })).toBe(true);
        expect(matchesQuestion(resp, { id: (info.id + 1) & 0xffff, qname: info.qname, qtype: info.qtype, qclass: info.qclass })).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
