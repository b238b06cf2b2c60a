// The tagger's netlink batches (daemon/dataplane/libnft-linux.ts), byte by
// byte: what is sent, and how acknowledgements are read. The lab test
// (test/lab/libnft.test.ts) sends them to a real kernel.
import { beforeAll, describe, expect, it } from 'vitest';
import { addressBytes, encodeElementBatch, NlWriter, parseAcks } from '../../daemon/dataplane/libnft-linux.js';
import { NftError, renderElementChanges, type ElementChanges } from '../../daemon/dataplane/nft-session-linux.js';

interface Attr {
  type: number;
  nested: boolean;
  data: Buffer;
}

/** The byte order the current describe block encodes and parses (both are tested: the kernel reads the machine's). */
let LE = true;
const u16 = (b: Buffer, at: number): number => (LE ? b.readUInt16LE(at) : b.readUInt16BE(at));
const u32 = (b: Buffer, at: number): number => (LE ? b.readUInt32LE(at) : b.readUInt32BE(at));

function attrs(b: Buffer): Attr[] {
  const out: Attr[] = [];
  let at = 0;
  while (at + 4 <= b.length) {
    const len = u16(b, at);
    const t = u16(b, at + 2);
    out.push({ type: t & 0x3fff, nested: (t & 0x8000) !== 0, data: b.subarray(at + 4, at + len) });
    at += (len + 3) & ~3;
  }
  return out;
}

interface Msg {
  type: number;
  flags: number;
  seq: number;
  family: number;
  resId: number;
  attrs: Attr[];
}

function messages(b: Buffer): Msg[] {
  const out: Msg[] = [];
  let at = 0;
  while (at < b.length) {
    const len = u32(b, at);
    out.push({
      type: u16(b, at + 4),
      flags: u16(b, at + 6),
      seq: u32(b, at + 8),
      family: b.readUInt8(at + 16),
      resId: b.readUInt16BE(at + 18),
      attrs: attrs(b.subarray(at + 20, at + len)),
    });
    expect(len % 4).toBe(0);
    at += len;
  }
  return out;
}

const changes: ElementChanges = {
  table: 'splitwan',
  deletes: new Map([['tag4_a', ['192.0.2.1']]]),
  adds: new Map([
    ['tag4_b', [{ address: '192.0.2.1', timeoutS: 600 }, { address: '198.51.100.7', timeoutS: 30 }]],
    ['tag6_b', [{ address: '2001:db8::1', timeoutS: 600 }]],
  ]),
};

describe('addressBytes', () => {
  it('reads IPv4 and IPv6 as nft does, in network order', () => {
    expect(addressBytes('192.0.2.1')).toEqual(Buffer.from([192, 0, 2, 1]));
    expect(addressBytes('2001:db8::1')!.toString('hex')).toBe('20010db8000000000000000000000001');
    expect(addressBytes('::')!.toString('hex')).toBe('0'.repeat(32));
    expect(addressBytes('fe80::1:2')!.toString('hex')).toBe('fe800000000000000000000000010002');
    expect(addressBytes('::ffff:192.0.2.1')!.toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(addressBytes('1:2:3:4:5:6:7:8')!.toString('hex')).toBe('00010002000300040005000600070008');
  });

  it('refuses what is not an address', () => {
    for (const s of ['300.0.0.1', '1.2.3', '1.2.3.4.5', 'a.b.c.d', '', '1:2:3:4:5:6:7', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::1', '::ffff:1.2.3.256', '1:2:3:4:5:6:7::8']) {
      expect(addressBytes(s), s).toBeNull();
    }
  });
});

describe.each(['little-endian', 'big-endian'])('encodeElementBatch (%s)', (order) => {
  beforeAll(() => {
    LE = order === 'little-endian';
  });
  it('one batch: BEGIN, a DELSETELEM then NEWSETELEMs (one per set), END; element messages ask for an ack', () => {
    const b = encodeElementBatch(changes, 100, new NlWriter(LE));
    const ms = messages(b.bytes);
    expect(ms.map((m) => m.type.toString(16))).toEqual(['10', 'a0e', 'a0c', 'a0c', '11']);
    expect(ms.map((m) => m.seq)).toEqual([100, 101, 102, 103, 104]);
    expect(b.acked).toEqual([101, 102, 103]);
    expect(ms[0]!.resId).toBe(10); // NFNL_SUBSYS_NFTABLES
    expect(ms[1]!.flags).toBe(0x1 | 0x4); // request, ack
    expect(ms[2]!.flags).toBe(0x1 | 0x4 | 0x400); // request, ack, create (no EXCL: an element already there is no error)
    expect(ms.slice(1, 4).every((m) => m.family === 1)).toBe(true); // NFPROTO_INET
    expect(b.what.get(101)).toBe('delete element inet splitwan tag4_a { 192.0.2.1 }');
    expect(b.what.get(103)).toBe('add element inet splitwan tag6_b { 2001:db8::1 }');
  });

  it('each element: its key, and a timeout and an expiry in ms (big-endian)', () => {
    const ms = messages(encodeElementBatch(changes, 1, new NlWriter(LE)).bytes);
    const add4 = ms[2]!;
    expect(add4.attrs[0]).toMatchObject({ type: 1, data: Buffer.from('splitwan\0') });
    expect(add4.attrs[1]).toMatchObject({ type: 2, data: Buffer.from('tag4_b\0') });
    const list = add4.attrs[2]!;
    expect(list).toMatchObject({ type: 3, nested: true });
    const els = attrs(list.data).map((e) => attrs(e.data));
    expect(els).toHaveLength(2);
    const [key, timeout, expiration] = els[1]!;
    expect(attrs(key!.data)[0]!.data).toEqual(Buffer.from([198, 51, 100, 7]));
    expect(timeout).toMatchObject({ type: 4 });
    expect(timeout!.data.readBigUInt64BE()).toBe(30_000n);
    expect(expiration).toMatchObject({ type: 5 });
    expect(expiration!.data.readBigUInt64BE()).toBe(30_000n);
    const del = ms[1]!;
    const delEls = attrs(del.attrs[2]!.data).map((e) => attrs(e.data));
    expect(delEls).toEqual([[expect.objectContaining({ type: 1, nested: true })]]); // a key only
    const six = attrs(attrs(ms[3]!.attrs[2]!.data)[0]!.data)[0]!;
    expect(attrs(six.data)[0]!.data.toString('hex')).toBe('20010db8000000000000000000000001');
  });

  it('splits a long list into messages of 1024 elements (an attribute\'s length is 16 bits)', () => {
    const many = Array.from({ length: 2500 }, (_, k) => ({ address: `10.0.${k >> 8}.${k & 255}`, timeoutS: 60 }));
    const b = encodeElementBatch({ table: 'splitwan', deletes: new Map(), adds: new Map([['tag4_a', many]]) }, 1, new NlWriter(LE));
    const ms = messages(b.bytes);
    expect(ms.map((m) => attrs(m.attrs[2]?.data ?? Buffer.alloc(0)).length)).toEqual([0, 1024, 1024, 452, 0]);
    expect(b.acked).toHaveLength(3);
  });

  it('an address that is not one fails the batch before anything is sent', () => {
    const bad: ElementChanges = { table: 'splitwan', deletes: new Map(), adds: new Map([['tag4_a', [{ address: '300.0.0.1', timeoutS: 60 }]]]) };
    expect(() => encodeElementBatch(bad, 1)).toThrow(NftError);
    expect(() => encodeElementBatch(bad, 1)).toThrow(/300\.0\.0\.1 is not an address/);
  });
});

describe.each(['little-endian', 'big-endian'])('parseAcks (%s)', (order) => {
  beforeAll(() => {
    LE = order === 'little-endian';
  });
  /** An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK (and, with a message, NLM_F_ACK_TLVS). */
  function ack(seq: number, error: number, message?: string): Buffer {
    const tlv = message === undefined ? Buffer.alloc(0) : (() => {
      const s = Buffer.from(`${message}\0`);
      const t = Buffer.alloc((4 + s.length + 3) & ~3);
      if (LE) t.writeUInt16LE(4 + s.length, 0);
      else t.writeUInt16BE(4 + s.length, 0);
      if (LE) t.writeUInt16LE(1, 2);
      else t.writeUInt16BE(1, 2);
      s.copy(t, 4);
      return t;
    })();
    const b = Buffer.alloc(36 + tlv.length);
    const w32 = (v: number, at: number) => (LE ? b.writeInt32LE(v, at) : b.writeInt32BE(v, at));
    const w16 = (v: number, at: number) => (LE ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
    w32(b.length, 0);
    w16(2, 4);
    w16(message === undefined ? 0x100 : 0x300, 6);
    w32(error, 16);
    w32(20, 20);
    w32(seq, 28);
    tlv.copy(b, 36);
    return b;
  }

  it('reads each acknowledgement: the request\'s sequence number, the error, the kernel\'s message', () => {
    expect(parseAcks(Buffer.concat([ack(7, 0), ack(8, -2, 'element not found'), ack(9, -22)]), LE)).toEqual([
      { seq: 7, error: 0 },
      { seq: 8, error: -2, message: 'element not found' },
      { seq: 9, error: -22 },
    ]);
  });

  it('stops at a truncated message', () => {
    const b = Buffer.concat([ack(7, 0), ack(8, 0)]);
    expect(parseAcks(b.subarray(0, b.length - 4), LE)).toEqual([{ seq: 7, error: 0 }]);
  });
});

describe('renderElementChanges (the same changes as an nft line)', () => {
  it('deletes first, with the expiry beside the timeout', () => {
    expect(renderElementChanges(changes)).toBe(
      'delete element inet splitwan tag4_a { 192.0.2.1 }; ' +
        'add element inet splitwan tag4_b { 192.0.2.1 timeout 600s expires 600s, 198.51.100.7 timeout 30s expires 30s }; ' +
        'add element inet splitwan tag6_b { 2001:db8::1 timeout 600s expires 600s }',
    );
  });
});
