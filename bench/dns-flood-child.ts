// A bounded DNS load from one client, for `npm run bench -- health-load`:
// run inside a lab namespace (`ip netns exec NS node dns-flood-child.js`),
// aimed at splitwan's resolver in the lab. Bounded: at most COUNT queries,
// at most SECONDS of sending, whichever ends first; then it stops.
//
// argv: HOST PORT KIND RATE COUNT SECONDS [ROUND_ON_MS ROUND_OFF_MS] [SEED]
//   KIND  valid:  names from a small list (cache hits after the first)
//         flood:  malformed and mutated queries: random names (misses that
//                 would go upstream), bit-flipped headers and questions,
//                 truncations, garbage, responses (QR set), compression
//                 loops, odd types and classes
//   RATE  queries a second while a round is on; with ROUND_ON/OFF the load
//         comes in rounds (on for ROUND_ON ms, quiet for ROUND_OFF ms)
// stdout, last line: one JSON object {sent, answered, rcodes, seconds}.
import dgram from 'node:dgram';
import { rng } from './rng.js';

const [host = '10.99.1.1', portS = '53', kind = 'valid', rateS = '1000', countS = '10000', secondsS = '60', onS = '0', offS = '0', seedS = '1'] = process.argv.slice(2);
const port = Number(portS);
const rate = Number(rateS);
const count = Number(countS);
const seconds = Number(secondsS);
const roundOn = Number(onS);
const roundOff = Number(offS);
const rand = rng(Number(seedS));
if (!(rate > 0 && count > 0 && seconds > 0 && rate <= 200_000 && count <= 5_000_000 && seconds <= 3600)) {
  process.stderr.write('dns-flood-child: rate, count and seconds must be bounded (rate ≤ 200k/s, count ≤ 5M, seconds ≤ 3600)\n');
  process.exit(2);
}

const VALID = ['web.lab.test', 'where.lab.test', 'a.lab.test', 'b.lab.test', 'c.lab.test'];

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([Math.min(63, l.length)]), Buffer.from(l.slice(0, 63), 'latin1')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function query(id: number, name: string | Buffer, qtype = 1, qclass = 1, flags = 0x0100): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(1, 4);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(qtype, 0);
  q.writeUInt16BE(qclass, 2);
  return Buffer.concat([h, typeof name === 'string' ? encodeName(name) : name, q]);
}

const r = (n: number): number => Math.floor(rand() * n);
const label = (binary: boolean): string => {
  const len = 1 + r(20);
  let s = '';
  for (let i = 0; i < len; i++) s += binary ? String.fromCharCode(r(256)) : 'abcdefghijklmnopqrstuvwxyz0123456789-'[r(37)]!;
  return s;
};

/** One malformed or mutated query; every kind of bad a fuzzer or a broken client sends. */
function hostile(id: number): Buffer {
  switch (r(10)) {
    case 0: // a random name: parses, would be forwarded upstream
    case 1:
      return query(id, `${label(false)}.${label(false)}.flood.test`);
    case 2: {
      // a binary label
      const l = Buffer.from(label(true), 'latin1');
      return query(id, Buffer.concat([Buffer.from([l.length]), l, Buffer.from([0])]));
    }
    case 3: {
      // bit flips in a valid query
      const q = query(id, VALID[r(VALID.length)]!);
      for (let i = 0, n = 1 + r(4); i < n; i++) q[r(q.length)]! ^= 1 << r(8);
      return q;
    }
    case 4: // truncated
      return query(id, `${label(false)}.lab.test`).subarray(0, r(20));
    case 5: // garbage
      return Buffer.from(Array.from({ length: r(600) }, () => r(256)));
    case 6: // a response (QR set): dropped, never answered
      return query(id, 'web.lab.test', 1, 1, 0x8180);
    case 7: {
      // a compression pointer to itself
      const q = query(id, Buffer.from([0xc0, 12]));
      return q;
    }
    case 8: // odd type and class
      return query(id, `${label(false)}.lab.test`, r(65536), r(65536));
    default: // qdcount 2, or an opcode other than QUERY
      return r(2) ? Buffer.concat([query(id, 'web.lab.test'), encodeName('x.lab.test'), Buffer.from([0, 1, 0, 1])]).fill(2, 5, 6) : query(id, 'web.lab.test', 1, 1, 0x2100);
  }
}

const socks = Array.from({ length: 4 }, () => dgram.createSocket('udp4'));
let sent = 0;
let answered = 0;
const rcodes: Record<string, number> = {};
for (const s of socks) {
  s.on('message', (m) => {
    answered++;
    const rc = m.length >= 4 ? String(m[3]! & 0xf) : 'short';
    rcodes[rc] = (rcodes[rc] ?? 0) + 1;
  });
  s.on('error', () => undefined);
  s.bind(0);
}

const start = performance.now();
const TICK_MS = 10;
let owed = 0;
let id = 0;
const tick = setInterval(() => {
  const t = performance.now() - start;
  if (sent >= count || t > seconds * 1000) return finish();
  if (roundOn > 0 && t % (roundOn + roundOff) >= roundOn) return;
  owed += (rate * TICK_MS) / 1000;
  const n = Math.min(Math.floor(owed), count - sent);
  owed -= n;
  for (let i = 0; i < n; i++) {
    id = (id + 1) & 0xffff;
    const msg = kind === 'flood' ? hostile(id) : query(id, VALID[r(VALID.length)]!, r(4) === 0 ? 28 : 1);
    socks[i & 3]!.send(msg, port, host);
  }
  sent += n;
}, TICK_MS);

let finished = false;
function finish(): void {
  if (finished) return;
  finished = true;
  clearInterval(tick);
  // Late answers for a moment, then the figures.
  setTimeout(() => {
    process.stdout.write(JSON.stringify({ sent, answered, rcodes, seconds: Math.round((performance.now() - start) / 100) / 10 }) + '\n');
    for (const s of socks) s.close();
  }, 1000);
}
process.on('SIGTERM', finish);
