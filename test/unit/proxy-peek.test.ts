import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PEEK_LIMIT, peek, type PeekResult } from '../../proxy/peek.js';

// Recorded from real clients by test/fixtures/hellos/record.mjs (see its README.md).
const DIR = new URL('../fixtures/hellos/', import.meta.url);
const fixture = (name: string): Buffer => readFileSync(new URL(`${name}.bin`, DIR));

const LONG_NAME = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(49)}.split.example.net`;

const TLS_CASES: Array<[string, string | null]> = [
  ['node-tls-sni', 'www.example.com'],
  ['node-tls-nosni', null],
  ['curl-tls-sni', 'sni.example.org'],
  ['curl-tls-nosni', null],
  ['openssl-sni', 'split.example.net'],
  ['openssl-nosni', null],
  ['openssl-frag', 'split.example.net'],
  ['openssl-frag-in-sni', LONG_NAME],
];
const HTTP_CASES: Array<[string, string | null]> = [
  ['curl-http-host-port', 'www.example.com'],
  ['curl-http-absolute', 'abs.example.com'],
  ['curl-http-absolute-decoy', 'abs.example.com'],
];
const HUGE_CASES: Array<[string, string | null]> = [
  ['curl-http-huge-host-first', 'huge-first.example.com'],
  ['node-http-huge-host-last', null],
];
const ALL = [...TLS_CASES, ...HTTP_CASES, ...HUGE_CASES].map(([n]) => n);

const tls = (sni: string | null, ech = false): PeekResult => ({ kind: 'tls', sni, ech });
const http = (host: string | null): PeekResult => ({ kind: 'http', host });
const MORE: PeekResult = { kind: 'more' };
const OTHER: PeekResult = { kind: 'other' };
const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

// ---- A test-side view of a recorded hello, to make variants of real bytes.

interface Hello {
  recordVersion: number;
  /** ClientHello body up to (not including) the extensions length. */
  head: Buffer;
  exts: Array<[type: number, data: Buffer]>;
}

function records(buf: Buffer): Array<{ type: number; start: number; len: number }> {
  const out = [];
  for (let o = 0; o + 5 <= buf.length; o += 5 + buf.readUInt16BE(o + 3)) {
    out.push({ type: buf[o]!, start: o, len: buf.readUInt16BE(o + 3) });
  }
  return out;
}

function parseHello(buf: Buffer): Hello {
  const hs = Buffer.concat(records(buf).map((r) => buf.subarray(r.start + 5, r.start + 5 + r.len)));
  expect(hs[0]).toBe(1);
  const body = hs.subarray(4, 4 + hs.readUIntBE(1, 3));
  let p = 34;
  p += 1 + body[p]!;
  p += 2 + body.readUInt16BE(p);
  p += 1 + body[p]!;
  const head = body.subarray(0, p);
  const end = p + 2 + body.readUInt16BE(p);
  expect(end).toBe(body.length);
  const exts: Hello['exts'] = [];
  for (p += 2; p < end; p += 4 + body.readUInt16BE(p + 2)) {
    exts.push([body.readUInt16BE(p), body.subarray(p + 4, p + 4 + body.readUInt16BE(p + 2))]);
  }
  return { recordVersion: buf.readUInt16BE(1), head, exts };
}

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);

/** Re-emits a hello as handshake records of at most recordSize bytes each. */
function buildHello(h: Hello, recordSize = 1 << 14): Buffer {
  const extBytes = Buffer.concat(h.exts.flatMap(([t, d]) => [u16(t), u16(d.length), d]));
  const body = Buffer.concat([h.head, u16(extBytes.length), extBytes]);
  const hs = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  const out: Buffer[] = [];
  for (let o = 0; o < hs.length; o += recordSize) {
    const frag = hs.subarray(o, o + recordSize);
    out.push(Buffer.from([22, h.recordVersion >> 8, h.recordVersion & 0xff]), u16(frag.length), frag);
  }
  return Buffer.concat(out);
}

function serverNameExt(name: Buffer, type = 0): Buffer {
  const entry = Buffer.concat([Buffer.from([type]), u16(name.length), name]);
  return Buffer.concat([u16(entry.length), entry]);
}

function withSni(base: Hello, name: string | Buffer): Hello {
  const data = serverNameExt(typeof name === 'string' ? ascii(name) : name);
  const exts = base.exts.filter(([t]) => t !== 0);
  return { ...base, exts: [[0, data], ...exts] };
}

/** Like a real ECH outer extension: outer type, HPKE kdf/aead, config id, enc, payload. */
const ECH_OUTER = Buffer.concat([
  Buffer.from([0, 0x00, 0x01, 0x00, 0x01, 0x2a]),
  u16(32),
  Buffer.alloc(32, 0x11),
  u16(208),
  Buffer.alloc(208, 0x22),
]);

const sniHello = parseHello(fixture('node-tls-sni'));
const sniOf = (name: string | Buffer): PeekResult => peek(buildHello(withSni(sniHello, name)));

// ---- Fixtures

describe('recorded fixtures', () => {
  it.each(TLS_CASES)('%s is TLS with SNI %s', (name, sni) => {
    expect(peek(fixture(name))).toEqual(tls(sni));
  });

  it.each(HTTP_CASES)('%s is HTTP with Host %s', (name, host) => {
    expect(peek(fixture(name))).toEqual(http(host));
  });

  it('the fragmented hellos really span several TLS records', () => {
    const frag = fixture('openssl-frag');
    expect(records(frag).length).toBeGreaterThanOrEqual(3);
    expect(records(frag).every((r) => r.type === 22)).toBe(true);
    const inSni = fixture('openssl-frag-in-sni');
    expect(records(inSni).length).toBe(2);
    // A record header cuts the host name: it is nowhere in the bytes as one piece.
    expect(inSni.indexOf(ascii('split.example.net'))).toBe(-1);
    expect(inSni.indexOf(ascii('d'.repeat(49)))).toBeGreaterThan(0);
  });

  it('the fixtures are one whole hello or head each, so "complete" is the last byte', () => {
    for (const [name] of [...TLS_CASES, ...HTTP_CASES]) {
      const buf = fixture(name);
      if (buf[0] === 22) {
        const recs = records(buf);
        const last = recs[recs.length - 1]!;
        expect(last.start + 5 + last.len, name).toBe(buf.length);
      } else {
        expect(buf.indexOf(ascii('\r\n\r\n')), name).toBe(buf.length - 4);
      }
    }
  });

  it.each([...TLS_CASES, ...HTTP_CASES])('%s fed byte by byte: more until the last byte, then the decision', (name) => {
    const buf = fixture(name);
    const full = peek(buf);
    for (let i = 0; i < buf.length; i++) {
      const prefix = buf.subarray(0, i);
      expect(peek(prefix), `${name} prefix ${i}`).toEqual(MORE);
    }
    expect(peek(buf, true)).toEqual(full);
  });

  it.each(TLS_CASES)('%s with final on every prefix: a TLS decision, and never a wrong name', (name, sni) => {
    const buf = fixture(name);
    for (let i = 0; i <= buf.length; i++) {
      const r = peek(buf.subarray(0, i), true);
      if (i < 3) {
        expect(r).toEqual(OTHER);
        continue;
      }
      expect(r.kind, `${name} prefix ${i}`).toBe('tls');
      // A cut hello reports a name only from a server_name extension seen whole.
      if (r.kind === 'tls' && r.sni !== null) expect(r.sni).toBe(sni);
    }
  });

  it.each(HTTP_CASES)('%s with final on every prefix: other until the request line, then http', (name, host) => {
    const buf = fixture(name);
    const lineEnd = buf.indexOf(0x0a) + 1;
    for (let i = 0; i <= buf.length; i++) {
      const r = peek(buf.subarray(0, i), true);
      if (i < lineEnd) expect(r, `${name} prefix ${i}`).toEqual(OTHER);
      else {
        expect(r.kind, `${name} prefix ${i}`).toBe('http');
        if (r.kind === 'http' && r.host !== null) expect(r.host).toBe(host);
      }
    }
  });

  it('huge heads decide at the 16 KiB limit: Host before it found, Host after it not', () => {
    for (const [name, host] of HUGE_CASES) {
      const buf = fixture(name);
      expect(buf.length).toBeGreaterThan(PEEK_LIMIT);
      const hostAt = buf.indexOf(ascii('\r\nHost: '));
      expect(hostAt < PEEK_LIMIT).toBe(host !== null);
      // Sampled prefixes (every byte of 20 KiB would take seconds): 'more' below the limit...
      for (let i = 0; i < PEEK_LIMIT; i += 97) expect(peek(buf.subarray(0, i)), `${name} ${i}`).toEqual(MORE);
      expect(peek(buf.subarray(0, PEEK_LIMIT - 1))).toEqual(MORE);
      // ...and the decision at the limit, without final, and the same for anything longer.
      expect(peek(buf.subarray(0, PEEK_LIMIT))).toEqual(http(host));
      expect(peek(buf)).toEqual(http(host));
      expect(peek(buf, true)).toEqual(http(host));
      for (let i = 0; i < buf.length; i += 89) expect(peek(buf.subarray(0, i), true).kind).not.toBe('more');
    }
  });
});

// ---- TLS

describe('TLS ClientHello', () => {
  it('reassembles a real hello cut into records of any size', () => {
    for (const [name, sni] of TLS_CASES) {
      const h = parseHello(fixture(name));
      for (const size of [1, 2, 3, 4, 5, 7, 64, 333]) {
        const buf = buildHello(h, size);
        expect(peek(buf), `${name} / ${size}`).toEqual(tls(sni));
        expect(peek(buf.subarray(0, buf.length - 1))).toEqual(MORE);
      }
    }
  });

  it('one-byte records, fed byte by byte: more until the last byte', () => {
    const buf = buildHello(sniHello, 1);
    for (let i = 0; i < buf.length; i++) expect(peek(buf.subarray(0, i))).toEqual(MORE);
    expect(peek(buf)).toEqual(tls('www.example.com'));
  });

  it('ECH: an outer hello reports the outer SNI and ech', () => {
    const h = parseHello(fixture('node-tls-sni'));
    const ech = { ...h, exts: [...h.exts, [0xfe0d, ECH_OUTER] as [number, Buffer]] };
    expect(peek(buildHello(ech))).toEqual(tls('www.example.com', true));
    expect(peek(buildHello(ech, 100))).toEqual(tls('www.example.com', true));
    // Before server_name too (clients shuffle extensions).
    const first = { ...h, exts: [[0xfe0d, ECH_OUTER] as [number, Buffer], ...h.exts] };
    expect(peek(buildHello(first))).toEqual(tls('www.example.com', true));
    const noSni = parseHello(fixture('curl-tls-nosni'));
    expect(peek(buildHello({ ...noSni, exts: [...noSni.exts, [0xfe0d, ECH_OUTER]] }))).toEqual(tls(null, true));
    // Two ECH extensions: malformed.
    expect(peek(buildHello({ ...h, exts: [...h.exts, [0xfe0d, ECH_OUTER], [0xfe0d, ECH_OUTER]] }))).toEqual(tls(null));
  });

  it('normalises SNI as policy compares names', () => {
    expect(sniOf('WWW.Example.COM.')).toEqual(tls('www.example.com'));
    expect(sniOf('_dmarc.example.com')).toEqual(tls('_dmarc.example.com'));
    expect(sniOf('r3---sn-abc.googlevideo.com')).toEqual(tls('r3---sn-abc.googlevideo.com'));
    expect(sniOf('localhost')).toEqual(tls('localhost'));
    expect(sniOf('xn--bcher-kva.example')).toEqual(tls('xn--bcher-kva.example'));
    expect(sniOf(`${'a'.repeat(63)}.com`)).toEqual(tls(`${'a'.repeat(63)}.com`));
    const n253 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expect(n253.length).toBe(253);
    expect(sniOf(n253)).toEqual(tls(n253));
    expect(sniOf(`${n253}.`)).toEqual(tls(n253));
  });

  it.each([
    ['127.0.0.1'],
    ['::1'],
    ['[::1]'],
    ['10.0.0.1.'],
    ['0x7f000001'],
    ['example.0x1f'],
    ['example.123'],
    [''],
    ['.'],
    ['a..b'],
    ['.example.com'],
    ['example.com..'],
    ['-a.example.com'],
    ['a-.example.com'],
    ['ex ample.com'],
    ['example.com:443'],
    ['exa*mple.com'],
    [`${'a'.repeat(64)}.com`],
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`],
  ])('SNI %j is no name', (name) => {
    expect(sniOf(name)).toEqual(tls(null));
  });

  it('SNI with non-ASCII or NUL bytes is no name', () => {
    expect(sniOf(Buffer.from('bücher.example', 'utf8'))).toEqual(tls(null));
    expect(sniOf(Buffer.from('good.example\0.evil.example', 'latin1'))).toEqual(tls(null));
  });

  it('an ambiguous or malformed server_name gives no name', () => {
    const two = ascii('\0\0\x0da.example.com\0\0\x0db.example.com');
    const list = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
    const withExt = (data: Buffer): Buffer =>
      buildHello({ ...sniHello, exts: [[0, data], ...sniHello.exts.filter(([t]) => t !== 0)] });
    expect(peek(withExt(list(two)))).toEqual(tls(null)); // two host_names
    expect(peek(withExt(serverNameExt(ascii('a.example.com'), 1)))).toEqual(tls(null)); // unknown name type
    expect(peek(withExt(Buffer.alloc(0)))).toEqual(tls(null));
    expect(peek(withExt(u16(0)))).toEqual(tls(null));
    const dup = { ...sniHello, exts: [...sniHello.exts, [0, serverNameExt(ascii('b.example.com'))] as [number, Buffer]] };
    expect(peek(buildHello(dup))).toEqual(tls(null)); // two server_name extensions
  });

  it('a hello without extensions is TLS without a name', () => {
    const h = buildHello({ ...sniHello, exts: [] });
    // buildHello always writes the extensions length; drop it for an SSL 3.0-style hello.
    const body = sniHello.head;
    const bare = Buffer.concat([
      Buffer.from([22, 3, 1]),
      u16(body.length + 4),
      Buffer.from([1, 0, body.length >> 8, body.length & 0xff]),
      body,
    ]);
    expect(peek(h)).toEqual(tls(null));
    expect(peek(bare)).toEqual(tls(null));
  });

  it('decides at once on lengths that cannot be a hello under the limit', () => {
    const buf = Buffer.from(fixture('node-tls-sni'));
    const absurd = Buffer.from(buf.subarray(0, 20));
    absurd.writeUIntBE(0xffffff, 6, 3);
    expect(peek(absurd)).toEqual(tls(null));
    const big = Buffer.from(buf.subarray(0, 20));
    big.writeUIntBE(PEEK_LIMIT, 6, 3);
    expect(peek(big)).toEqual(tls(null));
    const recTooLong = Buffer.from(buf.subarray(0, 20));
    recTooLong.writeUInt16BE((1 << 14) + 1, 3);
    expect(peek(recTooLong)).toEqual(tls(null));
    const recEmpty = Buffer.from(buf);
    recEmpty.writeUInt16BE(0, 3);
    expect(peek(recEmpty)).toEqual(tls(null));
    // RFC 8446 §5.1: no zero-length handshake fragments, even before a good record.
    expect(peek(Buffer.concat([Buffer.from([22, 3, 1, 0, 0]), buf]))).toEqual(tls(null));
  });

  it('rejects what is not a ClientHello in a handshake record', () => {
    const buf = Buffer.from(fixture('node-tls-sni'));
    const serverHello = Buffer.from(buf);
    serverHello[5] = 2;
    expect(peek(serverHello)).toEqual(tls(null));
    // An alert record in the middle of a fragmented hello.
    const frag = Buffer.from(fixture('openssl-frag'));
    frag[517] = 21;
    expect(peek(frag)).toEqual(tls(null));
    expect(peek(frag.subarray(0, 518))).toEqual(tls(null));
    // Session id, cipher suites and compression methods of legal and illegal sizes.
    const withHead = (sid: Buffer, cs: Buffer, cm: Buffer): PeekResult =>
      peek(buildHello({ ...sniHello, head: Buffer.concat([sniHello.head.subarray(0, 34), Buffer.from([sid.length]), sid, u16(cs.length), cs, Buffer.from([cm.length]), cm]) }));
    const suites = Buffer.from([0x13, 0x01, 0x13, 0x02]);
    expect(withHead(Buffer.alloc(32, 7), suites, Buffer.from([0]))).toEqual(tls('www.example.com'));
    expect(withHead(Buffer.alloc(0), suites.subarray(0, 2), Buffer.from([0]))).toEqual(tls('www.example.com'));
    expect(withHead(Buffer.alloc(33, 7), suites, Buffer.from([0]))).toEqual(tls(null));
    expect(withHead(Buffer.alloc(0), suites.subarray(0, 3), Buffer.from([0]))).toEqual(tls(null));
    expect(withHead(Buffer.alloc(0), Buffer.alloc(0), Buffer.from([0]))).toEqual(tls(null));
    expect(withHead(Buffer.alloc(0), suites, Buffer.alloc(0))).toEqual(tls(null));
    // A later record with a bad version.
    const badVer = Buffer.from(fixture('openssl-frag'));
    badVer[519] = 9;
    expect(peek(badVer.subarray(0, 520))).toEqual(tls(null));
    // Extensions length one short or one long of the hello.
    for (const delta of [-1, 1]) {
      const h = Buffer.from(buf);
      const off = 5 + 4 + sniHello.head.length;
      h.writeUInt16BE(h.readUInt16BE(off) + delta, off);
      expect(peek(h)).toEqual(tls(null));
    }
  });

  it('is not TLS unless the record header says so', () => {
    expect(peek(Buffer.from([22]))).toEqual(MORE);
    expect(peek(Buffer.from([22]), true)).toEqual(OTHER);
    expect(peek(Buffer.from([22, 3]), true)).toEqual(OTHER);
    expect(peek(Buffer.from([22, 2]))).toEqual(OTHER);
    expect(peek(Buffer.from([22, 3, 5]))).toEqual(OTHER);
    expect(peek(Buffer.from([22, 3, 1]), true)).toEqual(tls(null));
    expect(peek(Buffer.from([0x80, 0x2e, 1, 3, 1]))).toEqual(OTHER); // SSLv2-style hello
    expect(peek(Buffer.from([23, 3, 3, 0, 1, 0]))).toEqual(OTHER); // application data
  });

  it('a truncated hello with final reports the server_name seen whole', () => {
    const buf = fixture('openssl-sni');
    const nameEnd = buf.indexOf(ascii('split.example.net')) + 'split.example.net'.length;
    expect(peek(buf.subarray(0, nameEnd - 1), true)).toEqual(tls(null));
    expect(peek(buf.subarray(0, nameEnd), true)).toEqual(tls('split.example.net'));
  });
});

// ---- HTTP

describe('HTTP/1.x request head', () => {
  const req = (s: string, final?: boolean): PeekResult => peek(ascii(s), final);

  it('takes Host, case-insensitive, OWS trimmed, port dropped', () => {
    expect(req('GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n')).toEqual(http('example.com'));
    expect(req('GET / HTTP/1.1\r\nhOsT:\t example.com:8080 \t\r\nAccept: */*\r\n\r\n')).toEqual(http('example.com'));
    expect(req('POST /x HTTP/1.0\r\nUser-Agent: x\r\nHOST:example.com.\r\n\r\n')).toEqual(http('example.com'));
    expect(req('GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n')).toEqual(http('example.com'));
    expect(req('OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n')).toEqual(http('example.com'));
    // CONNECT's authority form is not absolute-form: Host decides.
    expect(req('CONNECT a.example.com:443 HTTP/1.1\r\nHost: b.example.com:443\r\n\r\n')).toEqual(http('b.example.com'));
  });

  it('an absolute-form target wins over Host', () => {
    expect(req('GET http://Abs.Example.com:8080/x HTTP/1.1\r\nHost: other.example.com\r\n\r\n')).toEqual(http('abs.example.com'));
    expect(req('GET https://abs.example.com?q HTTP/1.1\r\n\r\n')).toEqual(http('abs.example.com'));
    expect(req('GET http://abs.example.com#f HTTP/1.0\r\n\r\n')).toEqual(http('abs.example.com'));
    // ...even when its host is unusable: the server would ignore Host too.
    expect(req('GET http://[::1]:80/ HTTP/1.1\r\nHost: other.example.com\r\n\r\n')).toEqual(http(null));
    expect(req('GET http:///x HTTP/1.1\r\nHost: other.example.com\r\n\r\n')).toEqual(http(null));
    expect(req('GET http://user@evil.example/ HTTP/1.1\r\nHost: other.example.com\r\n\r\n')).toEqual(http(null));
    expect(req('GET http://good.example:80@evil.example/ HTTP/1.1\r\n\r\n')).toEqual(http(null));
  });

  it('no usable Host is http with host null', () => {
    expect(req('GET / HTTP/1.0\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost:\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com:80:80\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com:8o\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com, b.example.com\r\n\r\n')).toEqual(http(null));
  });

  it('duplicate or folded Host is ambiguous: null', () => {
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com\r\nhost: a.example.com\r\n\r\n')).toEqual(http(null));
    expect(req('GET http://a.example.com/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com\r\n .evil.example\r\n\r\n')).toEqual(http(null));
    // Folding after another field is not our business.
    expect(req('GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\nHost: a.example.com\r\n\r\n')).toEqual(http('a.example.com'));
  });

  it('accepts bare LF line ends', () => {
    expect(req('GET / HTTP/1.1\nHost: lf.example.com\n\n')).toEqual(http('lf.example.com'));
    expect(req('GET / HTTP/1.1\nHost: lf.example.com\n')).toEqual(MORE);
    expect(req('GET / HTTP/1.1\r\nHost: mixed.example.com\n\r\n')).toEqual(http('mixed.example.com'));
  });

  it('waits while the request line or head is incomplete and plausible', () => {
    for (const s of ['G', 'GE', 'GET', 'GET ', 'GET /', 'GET / ', 'GET / HTTP/', 'GET / HTTP/1.1', 'GET / HTTP/1.1\r', 'GET / HTTP/1.1\r\n', 'GET / HTTP/1.1\r\nHost: a.example.com\r\n', 'GET / HTTP/1.1\r\nHost: a.example.com\r\n\r']) {
      expect(req(s), JSON.stringify(s)).toEqual(MORE);
    }
  });

  it('with final: Host from the complete lines, else null; no complete request line is other', () => {
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com\r\nAccept: x', true)).toEqual(http('a.example.com'));
    expect(req('GET / HTTP/1.1\r\nHost: a.example.com', true)).toEqual(http(null));
    expect(req('GET / HTTP/1.1\r\n', true)).toEqual(http(null));
    expect(req('GET / HTTP/1.1', true)).toEqual(OTHER);
    expect(req('GET /', true)).toEqual(OTHER);
  });

  it.each([
    ['SSH banner', 'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n'],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['HTTP/2.0 version', 'GET / HTTP/2.0\r\n\r\n'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\n\r\n'],
    ['lowercase method', 'get / HTTP/1.1\r\n\r\n'],
    ['short method', 'GE / HTTP/1.1\r\n\r\n'],
    ['long method', 'ABCDEFGHIJK / HTTP/1.1\r\n'],
    ['SMTP', '220 mail.example.com ESMTP\r\n'],
    ['two spaces', 'GET  / HTTP/1.1\r\n'],
    ['control in target', 'GET /\x01 HTTP/1.1\r\n'],
    ['CR without LF', 'GET / HTTP/1.1\rHost: a\r\n\r\n'],
    ['junk after version', 'GET / HTTP/1.1x\r\n\r\n'],
    ['no version', 'GET /\r\n'],
    ['JSON', '{"a":1}'],
  ])('%s is other, at once', (_, s) => {
    expect(req(s)).toEqual(OTHER);
    expect(req(s, true)).toEqual(OTHER);
  });

  it('the PRI preface is other as soon as it differs from HTTP/1', () => {
    const pri = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
    expect(req(pri.slice(0, 'PRI * HTTP/'.length))).toEqual(MORE);
    expect(req(pri.slice(0, 'PRI * HTTP/2'.length))).toEqual(OTHER);
  });
});

// ---- Robustness

const fixtureBufs = ALL.map(fixture);

/** Mutations that hit lengths: bit flips, overwritten 16/24-bit fields, truncation, splices. */
const mutated = fc
  .tuple(
    fc.integer({ min: 0, max: fixtureBufs.length - 1 }),
    fc.array(
      fc.oneof(
        fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
        fc.record({ op: fc.constant('u16' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 0xffff }) }),
        fc.record({ op: fc.constant('u24' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 0xffffff }) }),
        fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
        fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 8 }) }),
      ),
      { minLength: 1, maxLength: 4 },
    ),
  )
  .map(([i, ops]) => {
    let b = Buffer.from(fixtureBufs[i]!.subarray(0, 4096));
    for (const m of ops) {
      if (b.length === 0) break;
      const at = m.at % b.length;
      if (m.op === 'flip') b[at] = b[at]! ^ (1 << m.bit);
      else if (m.op === 'u16' && at + 2 <= b.length) b.writeUInt16BE(m.v, at);
      else if (m.op === 'u24' && at + 3 <= b.length) b.writeUIntBE(m.v, at, 3);
      else if (m.op === 'cut') b = b.subarray(0, at);
      else if (m.op === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    }
    return b;
  });

function checkSane(b: Buffer): void {
  const r = peek(b);
  const f = peek(b, true);
  expect(f.kind).not.toBe('more');
  // final only ever settles what 'more' left open.
  if (r.kind !== 'more') expect(f).toEqual(r);
  for (const x of [r, f]) {
    if (x.kind === 'tls' && x.sni !== null) expect(x.sni).toMatch(/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/);
    if (x.kind === 'http' && x.host !== null) expect(x.host).toMatch(/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/);
  }
}

describe('robustness', () => {
  it('random bytes never throw, and final never gives more', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (a) => checkSane(Buffer.from(a))),
      { numRuns: 3000 },
    );
  });

  it('random bytes behind a TLS or HTTP start never throw', () => {
    const starts = [[22, 3, 1], [22, 3, 3, 0x40, 0x00, 1], [22, 3, 1, 0, 10, 1, 0, 0, 6], [...ascii('GET / HTTP/1.1\r\n')], [...ascii('GET http://')]];
    fc.assert(
      fc.property(fc.constantFrom(...starts), fc.uint8Array({ maxLength: 600 }), (s, a) => checkSane(Buffer.from([...s, ...a]))),
      { numRuns: 3000 },
    );
  });

  it('mutated real hellos and heads never throw', () => {
    fc.assert(fc.property(mutated, (b) => checkSane(b)), { numRuns: 3000 });
  });

  it('a PEEK_LIMIT-long buffer is decided without final, whatever it holds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: fixtureBufs.length - 1 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (i, fill) => {
        const head = fixtureBufs[i]!.subarray(0, 40);
        const b = Buffer.alloc(PEEK_LIMIT + 3);
        for (let k = 0; k < b.length; k++) b[k] = fill[k % fill.length]!;
        head.copy(b);
        expect(peek(b).kind).not.toBe('more');
        expect(peek(b.subarray(0, PEEK_LIMIT))).toEqual(peek(b, true));
      }),
      { numRuns: 200 },
    );
  });

  it('a real hello in records of random sizes gives the same answer', () => {
    const hellos = TLS_CASES.map(([n, sni]) => [parseHello(fixture(n)), sni] as const);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: hellos.length - 1 }), fc.integer({ min: 1, max: 600 }), (i, size) => {
        const [h, sni] = hellos[i]!;
        expect(peek(buildHello(h, size))).toEqual(tls(sni));
      }),
      { numRuns: 500 },
    );
  });
});
