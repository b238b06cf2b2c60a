// DNS protocol conformance of the resolver, after ISC's EDNS compliance
// tester (genreport, isc-projects/DNS-Compliance-Testing): its probes sent
// with dig, as its "dig" column gives them, in its recursive mode (-R: RD on
// every query, AA must be clear), and each answer judged by genreport's own
// checks (ported below: rcode, opcode, OPT present or not and its version,
// BADVERS, echoed options, undefined EDNS flags, AA/RA/RD/AD/CD/Z, size).
// The same probes go to dnsmasq as a caching forwarder in front of the same
// zone, the peer: its results are printed beside splitwan's, not asserted.
//
//   dig ──▶ splitwan   127.0.0.1:S ──┐
//   dig ──▶ dnsmasq -S 127.0.0.1:F ──┴──▶ dnsmasq, authoritative for conf.test (127.0.0.1:A)
//                                         (SOA, NS, two DNSKEYs: 626 bytes, over 512)
//
// Every probe runs twice: the second pass is answered from the cache (and
// the UDP in-place hit path), where header bits come from the first asker
// unless patched per client.
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveDnsmasq, startDnsmasq, startResolver, type Dnsmasq, type TestResolver } from '../helpers/dns.js';
import { loopbackConfig } from '../helpers/dns-upstream.js';
import { digRun, haveDig, parseDig, type DigAnswer } from '../helpers/dig.js';

const missing = [haveDig ? null : 'dig (dnsutils)', haveDnsmasq ? null : 'dnsmasq'].filter((m): m is string => m !== null);
if (missing.length > 0 && !process.env.CI) {
  console.warn(`\n*** SKIPPING test/integration/dns-conformance.test.ts: ${missing.join(' and ')} not installed ***\n`);
}
const runs = missing.length === 0 || !!process.env.CI;

const ZONE = 'conf.test';
const COOKIE = '+cookie=0102030405060708';

/** One genreport probe: its name, dig's arguments, and what genreport's checks need to know of the query. */
interface Probe {
  name: string;
  args: string[];
  opcode: number;
  /** EDNS version sent; null: no OPT. */
  version: number | null;
  do: boolean;
  cd: boolean;
  ad: boolean;
  /** The query carried a COOKIE (BADCOOKIE is then a fine rcode). */
  cookie: boolean;
  /** TC is not followed (+ignore): the answer must fit `udpSize`. */
  ignoreTc: boolean;
  udpSize: number;
  qtype: 'SOA' | 'DNSKEY' | 'TYPE666' | null;
}

function probe(name: string, args: string, o: Partial<Omit<Probe, 'name' | 'args'>> = {}): Probe {
  const a = args.split(' ').filter(Boolean);
  const qtype = o.qtype === undefined ? 'SOA' : o.qtype;
  const edns = a.find((x) => x.startsWith('+edns='));
  return {
    name,
    args: qtype === null ? a : [...a, qtype, ZONE],
    opcode: 0,
    version: edns === undefined ? null : Number(edns.slice(6)),
    do: a.includes('+dnssec'),
    cd: a.includes('+cd'),
    ad: a.includes('+ad'),
    cookie: a.some((x) => x.startsWith('+cookie=')),
    ignoreTc: a.includes('+ignore'),
    udpSize: Number(a.find((x) => x.startsWith('+bufsize='))?.slice(9) ?? (edns === undefined ? 0 : 4096)),
    ...o,
    qtype,
  };
}

// genreport's table (EDNS, FULL and COMM groups; not dnswkk: TSIG, nor icmp),
// its dig commands with +norec made +rec (recursive mode) and dig 9.18's
// option names (+ignore for +ignoretc). dig sends AD and a COOKIE unless told
// not to, as genreport's commands say.
const PROBES: Probe[] = [
  probe('dns', '+noedns +noad +rec'),
  probe('aa', '+noedns +noad +rec +aaflag'),
  probe('ad', '+noedns +ad +rec'),
  probe('cd', '+noedns +noad +rec +cd'),
  probe('ra', '+noedns +noad +rec +raflag'),
  probe('rd', '+noedns +noad +rec'),
  probe('tc', '+noedns +noad +rec +tcflag'),
  probe('zflag', '+noedns +noad +rec +zflag'),
  probe('opcode', '+noedns +noad +rec +header-only +opcode=15', { opcode: 15, qtype: null }),
  probe('opcodeflg', '+noedns +header-only +opcode=15 +tcflag +rec +raflag +cd +ad +aaflag +zflag', { opcode: 15, qtype: null }),
  probe('type666', '+noedns +noad +rec', { qtype: 'TYPE666' }),
  probe('tcp', '+noedns +noad +rec +tcp'),
  probe('edns', '+edns=0 +nocookie +noad +rec'),
  probe('edns1', '+edns=1 +noednsneg +nocookie +noad +rec'),
  probe('edns@512', '+edns=0 +nocookie +noad +rec +dnssec +ignore +bufsize=512', { qtype: 'DNSKEY' }),
  probe('ednsopt', '+edns=0 +nocookie +noad +rec +ednsopt=100'),
  probe('edns1opt', '+edns=1 +noednsneg +nocookie +noad +rec +ednsopt=100'),
  probe('do', '+edns=0 +nocookie +noad +rec +dnssec'),
  probe('docd', '+edns=0 +nocookie +noad +rec +dnssec +cd'),
  probe('edns1do', '+edns=1 +noednsneg +nocookie +noad +rec +dnssec'),
  probe('ednsflags', '+edns=0 +nocookie +noad +rec +ednsflags=0x0080'),
  probe('optlist', `+edns=0 +noad +rec +nsid +subnet=0.0.0.0/0 +expire ${COOKIE}`),
  probe('ednsnsid', '+edns=0 +nocookie +noad +rec +nsid'),
  probe('ednscookie', `+edns=0 +noad +rec ${COOKIE}`),
  probe('ednsexpire', '+edns=0 +nocookie +noad +rec +expire'),
  probe('ednssubnet', '+edns=0 +nocookie +noad +rec +subnet=0.0.0.0/0'),
  probe('edns1nsid', '+edns=1 +noednsneg +nocookie +noad +rec +nsid'),
  probe('edns1cookie', `+edns=1 +noednsneg +noad +rec ${COOKIE}`),
  probe('edns1expire', '+edns=1 +noednsneg +nocookie +noad +rec +expire'),
  probe('edns1subnet', '+edns=1 +noednsneg +nocookie +noad +rec +subnet=0.0.0.0/0'),
  probe('ednstcp', '+edns=0 +nocookie +noad +rec +dnssec +bufsize=512 +tcp', { qtype: 'DNSKEY' }),
  probe('bind11', `+edns=0 ${COOKIE} +noad +rec +dnssec`),
  probe('dig11', `+edns=0 ${COOKIE} +ad +rec`),
];

const RCODES: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16, BADCOOKIE: 23 };

/**
 * genreport's verdict on an answer to `p` in recursive mode: [] for "ok",
 * else its tags (genreport.c, process(): the checks that apply without TSIG).
 */
function genreportTags(p: Probe, a: DigAnswer): string[] {
  const tags: string[] = [];
  const rcode = RCODES[a.status] ?? -1;
  const opcode = a.opcode === 'QUERY' ? 0 : Number(/(\d+)$/.exec(a.opcode)?.[1] ?? -1);
  const has = (f: string): boolean => a.flags.includes(f);
  const version = p.version ?? 0;
  if (p.opcode !== 0) {
    if (a.counts.query !== 0) tags.push('non-empty-question-section');
    if (a.counts.answer !== 0) tags.push('non-empty-answer-section');
    if (a.counts.authority !== 0) tags.push('non-empty-authority-section');
    if (a.counts.additional !== 0) tags.push('non-empty-additional-section');
  }
  if (opcode !== p.opcode) tags.push(`opcode:${a.opcode}`);
  if (version === 0) {
    if (p.opcode === 0 && rcode !== 0 && !(p.cookie && rcode === 23 && (a.edns?.options.includes('COOKIE') ?? false))) tags.push(a.status);
    if (p.opcode !== 0 && rcode !== 4) tags.push(a.status);
  } else if (rcode !== 16) tags.push(a.status);
  const e = a.edns;
  if (e !== null && e.version !== 0) tags.push('version-not-zero');
  if (e !== null && ((e.version < version && rcode !== 16) || (e.version >= version && rcode === 16))) tags.push('badversion');
  if (e === null && p.version !== null) tags.push('noopt');
  if (e !== null && p.version === null) tags.push('opt');
  const seenSoa = a.answer.some((r) => r.type === 'SOA' && r.name.toLowerCase() === `${ZONE}.`);
  if (p.qtype === 'SOA' && version === 0 && !p.ignoreTc && !seenSoa && rcode === 0) tags.push('nosoa');
  if (p.qtype === 'SOA' && seenSoa && (version !== 0 || rcode !== 0)) tags.push('soa');
  if (e?.options.includes('OPT=100')) tags.push('echoed');
  const seenRrsig = a.answer.some((r) => r.type === 'RRSIG');
  if (e !== null && p.do && !e.flags.includes('do') && seenRrsig) tags.push('nodo');
  if (e !== null && p.do && p.cd && e.flags.includes('do') && !has('cd') && seenRrsig) tags.push('nocd');
  if (has('aa')) tags.push('aa'); // recursive mode: AA is never right
  if (has('ra') && p.opcode !== 0) tags.push('ra');
  if (!has('rd') && p.opcode === 0) tags.push('nord');
  if (has('ad') && (p.opcode !== 0 || (!p.ad && !p.do))) tags.push('ad');
  if (has('cd') && (p.opcode !== 0 || !p.cd)) tags.push('cd');
  if (a.headerMbz !== 0) tags.push('z');
  if (e !== null && e.mbz !== 0) tags.push('mbz');
  if (p.ignoreTc && a.size > (p.udpSize || 512)) tags.push('toobig');
  return tags;
}

/** genreport's word for a probe's outcome: "ok", its tags, or what dig said when nothing came. */
async function verdict(port: number, p: Probe): Promise<string> {
  const { out } = await digRun(port, p.args);
  if (!out.includes('Got answer:')) return /communications error[^\n]*: ([^\n]+)/.exec(out)?.[1] ?? 'no answer';
  const tags = genreportTags(p, parseDig(out));
  return tags.length === 0 ? 'ok' : tags.join(',');
}

describe.skipIf(!runs)('DNS conformance: genreport\'s probes (recursive mode) against splitwan, dnsmasq beside it', () => {
  const cleanups: (() => unknown)[] = [];
  let auth: Dnsmasq;
  let peer: Dnsmasq;
  let r: TestResolver;
  /** probe → [splitwan pass 1, pass 2, dnsmasq pass 1, pass 2]. */
  const results = new Map<string, string[]>();

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`${missing.join(' and ')} missing: CI must install them (.ci/run installs dnsutils and dnsmasq-base)`);
    // Two DNSKEYs of 264 bytes each: over 512 bytes with DO (edns@512 must come back truncated, not too big).
    const key = (last: string): string => ['01', '01', '03', '08', ...Array<string>(259).fill('ab'), last].join(':');
    auth = await startDnsmasq(['--auth-server=ns.conf.test,lo', `--auth-zone=${ZONE}`, '--auth-soa=1,hostmaster.conf.test,1200,120,604800', `--dns-rr=${ZONE},48,${key('01')}`, `--dns-rr=${ZONE},48,${key('02')}`]);
    cleanups.push(() => auth.close());
    peer = await startDnsmasq([`--server=127.0.0.1#${auth.port}`]);
    cleanups.push(() => peer.close());
    r = await startResolver({ ...loopbackConfig(auth.port), timeoutMs: 2000 });
    cleanups.push(() => r.close());
    for (let pass = 0; pass < 2; pass++) {
      for (const p of PROBES) {
        const row = results.get(p.name) ?? [];
        row[pass] = await verdict(r.port, p);
        row[2 + pass] = await verdict(peer.port, p);
        results.set(p.name, row);
      }
    }
    const w = Math.max(...PROBES.map((p) => p.name.length));
    console.info(
      [
        `genreport probes, recursive mode (pass 1 / pass 2 from the cache):`,
        `  ${'probe'.padEnd(w)}  ${'splitwan'.padEnd(24)}  dnsmasq (forwarder, the peer)`,
        ...PROBES.map((p) => {
          const [s1, s2, d1, d2] = results.get(p.name)!;
          return `  ${p.name.padEnd(w)}  ${(s1 === s2 ? s1! : `${s1} / ${s2}`).padEnd(24)}  ${d1 === d2 ? d1 : `${d1} / ${d2}`}`;
        }),
      ].join('\n'),
    );
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it.each(PROBES.map((p) => [p.name]))('%s: ok, asked fresh and from the cache', (name) => {
    const [first, second] = results.get(name)!;
    expect({ first, second }).toEqual({ first: 'ok', second: 'ok' });
  });

  it('the probes reached the zone\'s server through splitwan (not answered from nowhere)', () => {
    expect(auth.queries().filter((q) => q.name.toLowerCase() === ZONE).length).toBeGreaterThan(0);
  });

  it('the checks can fail: the peer fails some of them (edns1: dnsmasq does not answer BADVERS)', () => {
    const failures = PROBES.filter((p) => results.get(p.name)![2] !== 'ok').map((p) => p.name);
    expect(failures).toContain('edns1');
  });

  // Hand probes: what genreport's recursive mode does not mix. Its queries
  // all ask for recursion; a cached answer must carry each asker's own RD
  // and CD (RFC 1035 §4.1.1, RFC 4035 §3.2.2), and errors to EDNS queries an
  // OPT (RFC 6891 §7).
  it('a cached answer to a query without RD has no RD; to a query with CD, CD (UDP twice: the in-place hit path too, and TCP)', async () => {
    for (const transport of ['', '', '+tcp']) {
      const norec = parseDig((await digRun(r.port, ['+noedns', '+noad', '+norec', ...(transport ? [transport] : []), 'SOA', ZONE])).out);
      expect([norec.status, norec.flags, norec.answer.map((a) => a.type)]).toEqual(['NOERROR', ['qr', 'ra'], ['SOA']]);
      const cd = parseDig((await digRun(r.port, ['+noedns', '+noad', '+rec', '+cd', ...(transport ? [transport] : []), 'SOA', ZONE])).out);
      expect([cd.status, cd.flags]).toEqual(['NOERROR', ['qr', 'rd', 'ra', 'cd']]);
    }
  });

  it('UPDATE to an EDNS client: NOTIMP with the opcode echoed and an OPT, no RA or RD', async () => {
    const a = parseDig((await digRun(r.port, ['+edns=0', '+nocookie', '+opcode=5', 'SOA', ZONE])).out);
    expect([a.opcode, a.status, a.flags, a.edns && [a.edns.version, a.edns.udp]]).toEqual(['UPDATE', 'NOTIMP', ['qr'], [0, 1232]]);
  });

  it('a malformed EDNS query (two questions) gets FORMERR with an OPT; without EDNS, none', async () => {
    const ask = (msg: Buffer): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const s = dgram.createSocket('udp4');
        const t = setTimeout(() => {
          s.close();
          reject(new Error('no answer'));
        }, 2000);
        s.on('message', (m) => {
          clearTimeout(t);
          s.close();
          resolve(m);
        });
        s.send(msg, r.port, '127.0.0.1');
      });
    const q = (edns: boolean): Buffer => {
      const name = Buffer.from([4, ...Buffer.from('conf'), 4, ...Buffer.from('test'), 0, 0, 6, 0, 1]);
      const opt = Buffer.from([0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]); // 4096, DO
      return Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, edns ? 1 : 0]), name, name, edns ? opt : Buffer.alloc(0)]);
    };
    const withOpt = await ask(q(true));
    expect([withOpt.readUInt16BE(0), withOpt[3]! & 0xf, withOpt.readUInt16BE(10), withOpt.length]).toEqual([0x1234, 1, 1, 12 + 11]);
    expect([withOpt.readUInt16BE(12 + 3), withOpt[12 + 7]! & 0x80]).toEqual([1232, 0x80]); // our size, DO copied
    const without = await ask(q(false));
    expect([without[3]! & 0xf, without.readUInt16BE(10), without.length]).toEqual([1, 0, 12]);
  });
});
