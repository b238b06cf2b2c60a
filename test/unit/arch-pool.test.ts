// scripts/arch/pool.ts: strings from a worker of the other byte order (a
// big-endian s390x worker, this machine little-endian) mended on arrival.
// The garbling made here as V8's serializer makes it: a two-byte string's
// UTF-16 code units written in the writer's order, read in the reader's.
import { describe, expect, it } from 'vitest';
import { unswapString, unswapStrings } from '../../scripts/arch/pool.js';

/** What the reader sees of a two-byte string the other byte order wrote. */
const garble = (s: string): string => Buffer.from(s, 'utf16le').swap16().toString('utf16le');

describe('strings from a worker of the other byte order', () => {
  it('a two-byte string comes back; a one-byte string (Latin-1) was never garbled and stays', () => {
    const name = 'resolver end to end: dig / dns-packet → splitwan → one dnsmasq per path';
    expect(garble(name)).not.toBe(name);
    expect(unswapString(garble(name))).toBe(name);
    // A two-byte string of ASCII only (V8 may keep one so): every unit over 0xff once swapped.
    expect(unswapString(garble('expected 4098 to be less than 3000'))).toBe('expected 4098 to be less than 3000');
    for (const s of ['plain ascii', 'caf\u00e9 \u00ff', '']) expect(unswapString(s)).toBe(s);
  });

  it('mends a message in place: nested objects, arrays, maps, errors\' message and stack, cycles', () => {
    const err = new Error(garble('AssertionError: expected [ … ] to deeply equal'));
    err.stack = garble('at file → line');
    const msg: Record<string, unknown> = { name: garble('a → b'), list: [garble('x…'), 'ok', 1.5], map: new Map([['k', garble('→')]]), err, bytes: new Uint8Array([0x20, 0x92]) };
    msg.self = msg;
    expect(unswapStrings(msg)).toBe(msg);
    expect(msg.name).toBe('a → b');
    expect(msg.list).toEqual(['x…', 'ok', 1.5]);
    expect((msg.map as Map<string, string>).get('k')).toBe('→');
    expect(err.message).toBe('AssertionError: expected [ … ] to deeply equal');
    expect(err.stack).toBe('at file → line');
    expect([...(msg.bytes as Uint8Array)]).toEqual([0x20, 0x92]);
  });
});
