// Hostile and corrupt input for the rule-file decoders: random bytes,
// truncations and bit flips of every real fixture (also inside the zlib and
// zstd payloads, re-compressed so the flips reach the decoders), and
// hand-made files with huge declared lengths, deep nesting and
// decompression bombs. Each decode must return a result or throw
// ListFormatError, quickly; nothing else.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { decompress } from '../../config/lists/fzstd-portable.js';
import { describe, expect, it } from 'vitest';
import { ListFormatError } from '../../config/lists/decoded.js';
import { detectRuleFileFormat } from '../../config/lists/detect.js';
import { decodeGeoipDat } from '../../config/lists/geoip-dat.js';
import { decodeGeosite } from '../../config/lists/geosite.js';
import { MmdbDatabase } from '../../config/lists/mmdb.js';
import { decodeMrs } from '../../config/lists/mrs.js';
import { decodeSrs } from '../../config/lists/srs.js';
import { decodeSrsJson } from '../../config/lists/srs-json.js';
import { budget } from '../helpers/emulation.js';

const DIR = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'lists', 'rule-files');
const file = (name: string): Uint8Array => new Uint8Array(readFileSync(join(DIR, name)));

/** A zstd frame of raw (stored) blocks: valid zstd any decoder reads, made without a compressor. */
function zstdRaw(data: Uint8Array): Uint8Array {
  const parts: number[] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]; // magic, FHD (no FCS), window 128 KiB
  const max = 128 * 1024;
  for (let at = 0; at === 0 || at < data.length; at += max) {
    const chunk = data.subarray(at, at + max);
    const last = at + max >= data.length ? 1 : 0;
    const h = last | (0 << 1) | (chunk.length << 3);
    parts.push(h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, ...chunk);
  }
  return new Uint8Array(parts);
}

type Decode = (b: Uint8Array) => unknown;

const geosite: Decode = (b) => decodeGeosite(b, { categories: ['netflix', 'google@cn', 'apple@!cn'] }, 'f');
const geoip: Decode = (b) => decodeGeoipDat(b, { codes: ['cn', '!private'] }, 'f');
const srs: Decode = (b) => decodeSrs(b, 'f');
const srsJson: Decode = (b) => decodeSrsJson(b, 'f');
const mrs: Decode = (b) => decodeMrs(b, 'f');
const mmdb: Decode = (b) => {
  const db = new MmdbDatabase(b, 'f');
  db.lookup('81.2.69.160');
  db.lookup('2a02:cf40::1');
  try {
    return db.select({ countries: ['GB'], asns: [1221] });
  } catch (e) {
    if (e instanceof ListFormatError) return null;
    throw e;
  }
};

/** Srs with its zlib payload inflated, so flips can be applied to the rules themselves. */
const srsPayload = (name: string): { head: Uint8Array; body: Uint8Array } => {
  const b = file(name);
  return { head: b.subarray(0, 4), body: new Uint8Array(inflateSync(b.subarray(4))) };
};
const srsFrom = (head: Uint8Array, body: Uint8Array): Uint8Array => new Uint8Array([...head, ...deflateSync(body)]);

const CASES: { name: string; bytes: Uint8Array; decode: Decode; wrap?: (b: Uint8Array) => Uint8Array }[] = [
  { name: 'geosite dlc-cut.dat', bytes: file('dlc-cut.dat'), decode: geosite },
  { name: 'geoip-lite.dat', bytes: file('geoip-lite.dat'), decode: geoip },
  { name: 'srs v2 (compressed)', bytes: file('sing-geosite-google.srs'), decode: srs },
  { name: 'srs v1 payload', bytes: srsPayload('sing-geosite-v1-geosite-google@cn.srs').body, decode: srs, wrap: (b) => srsFrom(srsPayload('sing-geosite-v1-geosite-google@cn.srs').head, b) },
  { name: 'srs v2 payload', bytes: srsPayload('sing-geosite-google.srs').body, decode: srs, wrap: (b) => srsFrom(srsPayload('sing-geosite-google.srs').head, b) },
  { name: 'srs v2 ip payload', bytes: srsPayload('sing-geoip-netflix.srs').body, decode: srs, wrap: (b) => srsFrom(srsPayload('sing-geoip-netflix.srs').head, b) },
  { name: 'srs json', bytes: file('sing-geosite-netflix.json'), decode: srsJson },
  { name: 'mrs (compressed)', bytes: file('meta-geosite-google.mrs'), decode: mrs },
  { name: 'mrs domain payload', bytes: decompress(file('meta-geosite-google.mrs'), undefined), decode: mrs, wrap: zstdRaw },
  { name: 'mrs ipcidr payload', bytes: decompress(file('meta-geoip-netflix.mrs'), undefined), decode: mrs, wrap: zstdRaw },
  { name: 'mmdb country', bytes: file('GeoIP2-Country-Test.mmdb'), decode: mmdb },
  { name: 'mmdb asn', bytes: file('GeoLite2-ASN-Test.mmdb'), decode: mmdb },
];

/** CPU per decode; an emulated Node (test:arch) spends ~10-20x the CPU on the same work. */
const TIME_LIMIT_MS = budget(2000);

/**
 * Runs a decode; only success or ListFormatError may come out, within the time
 * limit. The limit is on this process's CPU time, not the wall clock: on a
 * machine whose two cores are busy with other work a 0.8 s decode took 2.9 s
 * of wall time, and what the limit is for is a decoder that loops.
 */
function survives(decode: Decode, b: Uint8Array): void {
  const c0 = process.cpuUsage();
  try {
    decode(b);
  } catch (e) {
    if (!(e instanceof ListFormatError)) throw new Error(`threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
    expect(e.code).toBe('SPLITWAN_LIST_FORMAT');
  }
  const c = process.cpuUsage(c0);
  const ms = (c.user + c.system) / 1000;
  if (ms > TIME_LIMIT_MS) throw new Error(`took ${ms.toFixed(0)} ms of CPU`);
}

const RUNS = Number(process.env.SPLITWAN_FUZZ_RUNS ?? 150);
/** A whole property (RUNS decodes) may take this long on a busy machine (not a figure); a single decode only TIME_LIMIT_MS of CPU. */
const PROPERTY_TIMEOUT_MS = budget(Math.max(120_000, RUNS * 800));

describe.each(CASES)('$name under fuzzing', ({ bytes, decode, wrap }) => {
  const w = wrap ?? ((b: Uint8Array): Uint8Array => b);

  it('decodes intact', () => {
    survives(decode, w(bytes));
  });

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), (b) => survives(decode, w(b))), { numRuns: RUNS });
  }, PROPERTY_TIMEOUT_MS);

  it('truncations', () => {
    fc.assert(fc.property(fc.nat({ max: bytes.length }), (n) => survives(decode, w(bytes.subarray(0, n)))), { numRuns: RUNS });
  }, PROPERTY_TIMEOUT_MS);

  it('bit flips', () => {
    const flips = fc.array(fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(flips, (fs) => {
        const b = Uint8Array.from(bytes);
        for (const [i, bit] of fs) b[i]! ^= 1 << bit;
        survives(decode, w(b));
      }),
      { numRuns: RUNS },
    );
  }, PROPERTY_TIMEOUT_MS);

  it('detection never throws', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => void detectRuleFileFormat(b)), { numRuns: RUNS });
    const b = Uint8Array.from(bytes);
    for (let i = 0; i < b.length; i += Math.max(1, b.length >> 6)) detectRuleFileFormat(b.subarray(0, i));
  });
});

// ---------------------------------------------------------------------------

function expectFormatError(fn: () => unknown, pattern: RegExp): void {
  const t0 = performance.now();
  let err: unknown = null;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ListFormatError);
  expect((err as Error).message).toMatch(pattern);
  expect(performance.now() - t0).toBeLessThan(TIME_LIMIT_MS);
}

const varint = (n: number): number[] => {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
};

describe('hostile hand-made files', () => {
  it('protobuf: a declared length past the end, groups nested deep, an entry without a name', () => {
    expectFormatError(() => decodeGeosite(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]), { categories: ['x'] }, 'f'), /premature EOF|not a valid geosite/);
    const groups = new Uint8Array([0x0a, 200, 1, ...new Array<number>(200).fill(0x0b)]); // field 1 start-group, 200 deep
    expectFormatError(() => decodeGeosite(groups, { categories: ['x'] }, 'f'), /group|not a valid geosite/);
    expectFormatError(() => decodeGeosite(new Uint8Array([0x0a, 2, 0x10, 1]), { categories: ['x'] }, 'f'), /no country_code/);
    expectFormatError(() => decodeGeoipDat(new Uint8Array([0x0a, 0x05, 0x0a, 0x02, 0x43, 0x4e, 0x12]), { codes: ['cn'] }, 'f'), /not a valid geoip\.dat/);
  });

  it('srs: a rule count of 2^50, logical rules nested 10,000 deep, a zlib bomb', () => {
    const head = [0x53, 0x52, 0x53, 2];
    expectFormatError(() => decodeSrs(new Uint8Array([...head, ...deflateSync(new Uint8Array(varint(2 ** 50)))]), 'f'), /rule count|rules: .* declared/);
    const deep: number[] = [...varint(1)];
    for (let i = 0; i < 10_000; i++) deep.push(1, 1, ...varint(1)); // logical "or" of one rule
    expectFormatError(() => decodeSrs(new Uint8Array([...head, ...deflateSync(new Uint8Array(deep))]), 'f'), /nested deeper than 32/);
    const bomb = deflateSync(new Uint8Array(80 * 1024 * 1024)); // ~80 KB that inflates to 80 MB
    expect(bomb.length).toBeLessThan(200_000);
    expectFormatError(() => decodeSrs(new Uint8Array([...head, ...bomb]), 'f'), /inflates to more than 67108864 bytes/);
    expectFormatError(() => decodeSrs(new Uint8Array([...head.slice(0, 3), 9]), 'f'), /version 9 is not supported \(versions 1-4\)/);
    // A domain set whose label bitmap promises more children than it has labels.
    const set = [0, ...varint(1), 0, 0, 0, 0, 0, 0, 0, 1, ...varint(1), 0, 0, 0, 0, 0, 0, 0, 0, ...varint(1), 0x61];
    expectFormatError(() => decodeSrs(new Uint8Array([...head, ...deflateSync(new Uint8Array([1, 0, 2, ...set, 0xff, 0]))]), 'f'), /label bitmap/);
  });

  it('mrs: zstd bombs are refused from their headers, before decoding', () => {
    // 600 RLE blocks of 128 KiB: 2.4 KB that would inflate to 75 MB.
    const rle: number[] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    for (let i = 0; i < 600; i++) {
      const h = (i === 599 ? 1 : 0) | (1 << 1) | ((128 * 1024) << 3);
      rle.push(h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0x41);
    }
    expectFormatError(() => decodeMrs(new Uint8Array(rle), 'f'), /inflates to more than/);
    // A window of 2 GB (what fzstd would allocate up front).
    expectFormatError(() => decodeMrs(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 1, 0, 0]), 'f'), /declares \d+ bytes/);
    // A declared content size of 2^40.
    expectFormatError(() => decodeMrs(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]), 'f'), /declares \d+ bytes/);
    expectFormatError(() => decodeMrs(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x03]), 'f'), /dictionary/);
  });

  it('mrs: declared counts past the data', () => {
    const hdr = [0x4d, 0x52, 0x53, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    expectFormatError(() => decodeMrs(zstdRaw(new Uint8Array([...hdr, 0x3f, 0, 0, 0, 0, 0, 0, 0])), 'f'), /extra length|extra data/);
    expectFormatError(() => decodeMrs(zstdRaw(new Uint8Array([...hdr, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])), 'f'), /ranges: .* declared/);
    expectFormatError(() => decodeMrs(zstdRaw(new Uint8Array([...hdr, 0xff, 0, 0, 0, 0, 0, 0, 0])), 'f'), /negative/);
    expectFormatError(() => decodeMrs(zstdRaw(new Uint8Array([0x4d, 0x52, 0x53, 2])), 'f'), /version 2 is not supported/);
    expectFormatError(() => decodeMrs(zstdRaw(new Uint8Array([0x4d, 0x52, 0x53, 1, 2])), 'f'), /classical/);
  });

  it('mmdb: a data pointer that points at itself, a node count larger than the file', () => {
    const good = file('MaxMind-DB-test-ipv4-24.mmdb');
    const meta = Buffer.from(good).lastIndexOf(Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1'));
    // Overwrite the start of the data section (tree of 164 nodes of 6 bytes, then 16 zero bytes) with a pointer to itself.
    const loop = Uint8Array.from(good);
    const data = 164 * 6 + 16;
    for (let at = data; at < Math.min(meta, data + 200); at += 2) {
      loop[at] = 0x20; // pointer, size 0: next byte is the offset
      loop[at + 1] = (at - data) & 0xff;
    }
    expect(() => {
      try {
        const db = new MmdbDatabase(loop, 'loop');
        db.lookup('1.1.1.1');
      } catch (e) {
        if (!(e instanceof ListFormatError)) throw e;
      }
    }).not.toThrow();
    const huge = Uint8Array.from(good);
    const nc = Buffer.from(huge).indexOf(Buffer.from('node_count'), meta);
    expect(nc).toBeGreaterThan(0);
    huge[nc + 'node_count'.length] = 0xc4; // uint32 of 4 bytes
    huge.set([0x7f, 0xff, 0xff, 0xff], nc + 'node_count'.length + 1);
    expectFormatError(() => new MmdbDatabase(huge, 'huge'), /does not fit|not a (valid|usable)/);
  });

  it('srs json: deep nesting and wrong types', () => {
    let deep: unknown = { domain: 'a.example' };
    for (let i = 0; i < 100; i++) deep = { type: 'logical', mode: 'or', rules: [deep] };
    expectFormatError(() => decodeSrsJson(JSON.stringify({ version: 1, rules: [deep] }), 'f'), /nested deeper than 32/);
    expectFormatError(() => decodeSrsJson('['.repeat(100_000), 'f'), /invalid JSON/);
    expectFormatError(() => decodeSrsJson(JSON.stringify({ version: 1, rules: [{ domain: 5 }] }), 'f'), /must be a string or a list of strings/);
  });
});
