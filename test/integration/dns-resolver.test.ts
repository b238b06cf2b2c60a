// The resolver end to end on 127.0.0.1: real clients (dig, spawned with an
// argv array; dns-packet over UDP) → splitwan's server + resolver → real
// upstreams (one dnsmasq per path, started here on loopback ports), with the
// FakeTagger standing in for the kernel's sets.
//
//                        ┌──────────── splitwan (127.0.0.1:port 0) ───────────┐
//   dig / dns-packet ──▶ │ server → policy(name) → path → cache → forwarder   │
//                        │                 tag(rule, addresses) → FakeTagger  │
//                        └──────┬──────────────────┬─────────────────┬────────┘
//                   breakout.dns│        gw1's dns │ (tunnel)        │ gw2's dns
//                               ▼                  ▼                 ▼
//                    dnsmasq B 127.0.0.1:b  dnsmasq G1 :g1    dnsmasq G2 :g2
//                    *.test → 203.0.113.1   *.test → 198.51.100.1  *.test → 192.0.2.1
//
// Every dnsmasq knows every name, each with its own address, so the answer
// says which one answered and its query log says which ones were asked.
// Special cases use small hand-written upstreams (silent, SERVFAIL, slow),
// an authoritative dnsmasq (SOA for negative caching) and a DoH server.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../lib/logger.js';
import type { PathName } from '../../config/types.js';
import { FakeTagger, haveDnsmasq, startDnsmasq, startResolver, type Dnsmasq, type TestResolver } from '../helpers/dns.js';
import { dig, digOutput, digRun, haveDig, parseDig, type DigAnswer as Dig } from '../helpers/dig.js';
import { budget } from '../helpers/emulation.js';

const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
const missing = [haveDig ? null : 'dig (dnsutils)', haveDnsmasq ? null : 'dnsmasq'].filter((m): m is string => m !== null);
if (missing.length > 0 && !process.env.CI) {
  console.warn(`\n*** SKIPPING test/integration/dns-resolver.test.ts: ${missing.join(' and ')} not installed ***\n`);
}
/** In CI a missing tool fails the file (beforeAll throws) instead of skipping it. */
const runs = missing.length === 0 || !!process.env.CI;

const addrs = (d: Dig, type = 'A'): string[] => d.answer.filter((r) => r.type === type).map((r) => r.data);
const lower = (names: readonly string[]): string[] => names.map((n) => n.toLowerCase());
/** How many times a dnsmasq was asked `name` (any case). */
const count = (m: Dnsmasq, name: string): number => lower(m.asked()).filter((n) => n === name.toLowerCase()).length;

// ---------------------------------------------------------------------------
// dns-packet over UDP, and hand-written upstreams

type QType = dnsPacket.RecordType;

function query(name: string, type: QType = 'A', o: { id?: number; edns?: boolean } = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: o.id ?? 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: o.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as dnsPacket.Answer] : [],
  });
}

/** Sends `msgs` from one UDP socket to 127.0.0.1:port; resolves with the answers keyed by ID. */
function udpExchange(port: number, msgs: readonly Buffer[], timeoutMs = 3000): Promise<Map<number, Buffer[]>> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const got = new Map<number, Buffer[]>();
    let n = 0;
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`${n} of ${msgs.length} answers in ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('message', (m) => {
      const id = m.readUInt16BE(0);
      got.set(id, [...(got.get(id) ?? []), m]);
      if (++n === msgs.length) {
        clearTimeout(timer);
        // A moment for duplicates, which must not come.
        setTimeout(() => {
          s.close();
          resolve(got);
        }, 50);
      }
    });
    s.bind(0, '127.0.0.1', () => {
      for (const m of msgs) s.send(m, port, '127.0.0.1');
    });
  });
}

async function udpAsk(port: number, msg: Buffer): Promise<dnsPacket.DecodedPacket> {
  const got = await udpExchange(port, [msg]);
  return dnsPacket.decode([...got.values()][0]![0]!);
}

/** Whether anything answers a UDP query on 127.0.0.1:port within 150 ms. */
async function answersUdp(port: number): Promise<boolean> {
  return udpExchange(port, [query('ping.invalid')], 150).then(
    () => true,
    () => false,
  );
}

interface FakeUpstream {
  port: number;
  /** Queries received, as sent. */
  queries: Buffer[];
  close(): void;
}

/** A UDP upstream on 127.0.0.1 that answers what `reply` returns (null: stays silent), after `delayMs`. */
async function fakeUpstream(reply: (q: Buffer) => Buffer | null | Promise<Buffer | null>, delayMs = 0): Promise<FakeUpstream> {
  const s = dgram.createSocket('udp4');
  const queries: Buffer[] = [];
  s.on('message', (msg, r) => {
    queries.push(msg);
    setTimeout(() => {
      void Promise.resolve(reply(msg)).then((b) => {
        if (b !== null) s.send(b, r.port, r.address);
      });
    }, delayMs);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, queries, close: () => s.close() };
}

/** A response to `q`: its ID and question, rcode and A records. */
function respond(q: Buffer, o: { rcode?: number; a?: string[]; ttl?: number } = {}): Buffer {
  const d = dnsPacket.decode(q);
  const qq = d.questions![0]!;
  return dnsPacket.encode({
    type: 'response',
    id: d.id ?? 0,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (o.rcode ?? 0),
    questions: [qq],
    answers: (o.a ?? []).map((data) => ({ type: 'A' as const, name: qq.name, class: 'IN' as const, ttl: o.ttl ?? 300, data })),
  });
}

/** A relay on 127.0.0.1 to a real upstream that keeps what it was sent (the forwarded queries, bytes as sent). */
async function recordingRelay(targetPort: number): Promise<FakeUpstream> {
  return fakeUpstream(async (q) => {
    const got = await udpExchange(targetPort, [q], 2000).catch(() => null);
    return got === null ? null : [...got.values()][0]![0]!;
  });
}

class FakeClock implements Clock {
  t = Date.now();
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.t;
  }
  boot(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    return setTimeout(fn, ms);
  }
  clearTimeout(h: unknown): void {
    clearTimeout(h as NodeJS.Timeout);
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

// ---------------------------------------------------------------------------
// The upstreams' data and the configs

type PathKey = 'breakout' | 'gw1' | 'gw2';
/** What each path's dnsmasq answers for any *.test name (and its HTTPS hints, its CNAME target's address). */
const NET: Record<PathKey, { v4: string; v6: string; hint4: string; hint6: string; cdn: string }> = {
  breakout: { v4: '203.0.113.1', v6: '2001:db8:b::1', hint4: '100.64.11.1', hint6: '2001:db8:11::1', cdn: '100.64.20.1' },
  gw1: { v4: '198.51.100.1', v6: '2001:db8:1::1', hint4: '100.64.12.1', hint6: '2001:db8:12::1', cdn: '100.64.20.2' },
  gw2: { v4: '192.0.2.1', v6: '2001:db8:2::1', hint4: '100.64.13.1', hint6: '2001:db8:13::1', cdn: '100.64.20.3' },
};
/** Rule indices of the standard config (the FakeTagger's set names). */
const RULE = { breakout: 0, gw2: 1, block: 2, cidrGw2: 3 } as const;
const RULES = [
  'rules:',
  '  - domains: [breakout.test]',
  '    via: breakout',
  '  - domains: [gw2.test]',
  '    via: gw2',
  '  - domains: [blocked.test]',
  '    via: block',
  '  - cidrs: [100.64.7.0/24, "2001:db8:77::/48"]',
  '    via: gw2',
];

const hexOf = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
function ip4(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}
function ip6(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
/** HTTPS RDATA (RFC 9460): priority 1, target ".", ipv4hint, ipv6hint. */
function httpsRdata(v4: string, v6: string): string {
  const kv = (key: number, value: Buffer): Buffer => {
    const h = Buffer.alloc(4);
    h.writeUInt16BE(key, 0);
    h.writeUInt16BE(value.length, 2);
    return Buffer.concat([h, value]);
  };
  return hexOf(Buffer.concat([Buffer.from([0, 1, 0]), kv(4, ip4(v4)), kv(6, ip6(v6))]));
}

/** The records every path's dnsmasq serves, with its own data. */
function pathArgs(p: PathKey): string[] {
  const n = NET[p];
  const args = ['--local-ttl=300', '--edns-packet-max=4096', `--address=/test/${n.v4}`, `--address=/test/${n.v6}`, `--host-record=edge.cdn.example,${n.cdn}`];
  for (const d of ['breakout.test', 'tunnel.test', 'gw2.test']) {
    args.push(
      `--txt-record=txt.${d},answered by ${p},second string`,
      `--mx-host=mx.${d},mail.${d},10`,
      `--srv-host=_sip._tcp.${d},sip.${d},5060,1,2`,
      `--dns-rr=svc.${d},65,${httpsRdata(n.hint4, n.hint6)}`,
      `--dns-rr=odd.${d},65280,de:ad:be:ef`,
      `--cname=alias.${d},edge.cdn.example`,
    );
  }
  // Reverse names: one in the CIDR rule (gw2's), one in no rule, one IPv6 in the rule.
  for (const r of ['5.7.64.100.in-addr.arpa', '5.6.64.100.in-addr.arpa', `${[...'20010db8007700000000000000000005'].reverse().join('.')}.ip6.arpa`]) {
    args.push(`--ptr-record=${r},ptr-${p}.test`);
  }
  if (p === 'breakout') {
    // Bigger than 512 bytes (40 A) and than 1232 bytes (TXT of 6 × 250 bytes).
    for (let i = 1; i <= 40; i++) args.push(`--host-record=many.breakout.test,100.64.8.${i}`);
    const s = 'x'.repeat(250);
    args.push(`--txt-record=bigtxt.breakout.test,${s},${s},${s},${s},${s},${s}`);
    args.push('--host-record=shared.breakout.test,100.64.9.9', '--host-record=fresh.breakout.test,100.64.10.10', '--host-record=short.breakout.test,100.64.31.1,5');
  }
  if (p === 'gw2') args.push('--host-record=shared.gw2.test,100.64.9.9');
  if (p === 'gw1') args.push('--host-record=shared.default.test,100.64.9.9');
  return args;
}

const key = (): string => randomBytes(32).toString('base64');
const list = (xs: readonly string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

function wgQuick(n: number): string {
  return ['[Interface]', `PrivateKey = ${key()}`, `Address = 10.64.0.${n}/32`, 'DNS = 10.64.0.1', '', '[Peer]', `PublicKey = ${key()}`, `Endpoint = 192.0.2.${10 + n}:51820`, 'AllowedIPs = 0.0.0.0/0, ::/0', ''].join('\n');
}

/**
 * A host-mode config: `breakout.dns`; each gateway's own resolvers given
 * inline (`dns:` of the gateway, a private key in a 0600 file), or, with
 * `tunnelDns`, gateways from wg-quick files whose resolvers come from
 * `tunnel.dns`. `dns` lines go under `dns:`.
 */
function config(o: { breakout: readonly string[]; gw1?: readonly string[]; gw2?: readonly string[]; tunnelDns?: readonly string[]; dns?: readonly string[] }): { configYaml: string; files: Record<string, string> } {
  const files: Record<string, string> = {};
  const lines = ['mode: host', 'breakout:', `  dns: ${list(o.breakout)}`, 'tunnel:'];
  if (o.tunnelDns) lines.push(`  dns: ${list(o.tunnelDns)}`);
  lines.push('  gateways:');
  (['gw1', 'gw2'] as const).forEach((name, i) => {
    if (o.tunnelDns) {
      files[`${name}.conf`] = wgQuick(i + 2);
      lines.push(`    - name: ${name}`, `      config: ${name}.conf`);
      return;
    }
    files[`${name}.key`] = key();
    lines.push(
      `    - name: ${name}`,
      `      privateKeyFile: ${name}.key`,
      `      address: 10.64.0.${i + 2}/32`,
      `      dns: ${list(o[name] ?? [])}`,
      '      peer:',
      `        publicKey: "${key()}"`,
      `        endpoint: 192.0.2.${12 + i}:51820`,
    );
  });
  if (o.dns) lines.push('dns:', ...o.dns.map((l) => `  ${l}`));
  lines.push(...RULES);
  return { configYaml: lines.join('\n') + '\n', files };
}

const at = (m: { port: number }): string => `127.0.0.1:${m.port}`;

// ---------------------------------------------------------------------------

describe.skipIf(!runs)('resolver end to end: dig / dns-packet → splitwan → one dnsmasq per path', () => {
  const cleanups: (() => unknown)[] = [];
  let B: Dnsmasq;
  let G1: Dnsmasq;
  let G2: Dnsmasq;
  /** The standard resolver: active gateway gw1, every path with IPv6. */
  let R: TestResolver;
  /** Tunnel names asked in this file: none may ever reach B. */
  const tunnelNames: string[] = [];

  async function resolver(o: Parameters<typeof startResolver>[0]): Promise<TestResolver> {
    const r = await startResolver(o);
    cleanups.push(() => r.close());
    return r;
  }
  async function dnsmasq(args: string[]): Promise<Dnsmasq> {
    const m = await startDnsmasq(args);
    cleanups.push(() => m.close());
    return m;
  }
  async function fake(reply: Parameters<typeof fakeUpstream>[0], delayMs = 0): Promise<FakeUpstream> {
    const u = await fakeUpstream(reply, delayMs);
    cleanups.push(() => u.close());
    return u;
  }
  const standard = (): ReturnType<typeof config> => config({ breakout: [at(B)], gw1: [at(G1)], gw2: [at(G2)] });

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`${missing.join(' and ')} missing: CI must install them (.ci/run installs dnsutils and dnsmasq-base)`);
    [B, G1, G2] = await Promise.all([dnsmasq(pathArgs('breakout')), dnsmasq(pathArgs('gw1')), dnsmasq(pathArgs('gw2'))]);
    R = await resolver(standard());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // keep cleaning up
      }
    }
  });

  describe('routing per path', () => {
    it('a via: breakout name is asked to the breakout dnsmasq only and its address is tagged with that rule', async () => {
      const d = await dig(R.port, ['r1.breakout.test', 'A']);
      expect(d.status).toBe('NOERROR');
      expect(addrs(d)).toEqual([NET.breakout.v4]);
      expect(count(B, 'r1.breakout.test')).toBe(1);
      expect(count(G1, 'r1.breakout.test') + count(G2, 'r1.breakout.test')).toBe(0);
      expect(R.tagger.ruleOf(NET.breakout.v4)).toBe(RULE.breakout);
      expect(R.dialer.paths).toContain('breakout');
    });

    it('an unlisted name (default: tunnel) is asked to the active gateway (gw1) only; the default path needs no tag', async () => {
      tunnelNames.push('r2.tunnel.test');
      const d = await dig(R.port, ['r2.tunnel.test']);
      expect(d.status).toBe('NOERROR');
      expect(addrs(d)).toEqual([NET.gw1.v4]);
      expect(count(G1, 'r2.tunnel.test')).toBe(1);
      expect(count(B, 'r2.tunnel.test') + count(G2, 'r2.tunnel.test')).toBe(0);
      expect(R.tagger.ruleOf(NET.gw1.v4)).toBeNull();
      // Over TCP too.
      tunnelNames.push('r2tcp.tunnel.test');
      const t = await dig(R.port, ['+tcp', 'r2tcp.tunnel.test']);
      expect(t.tcp).toBe(true);
      expect(addrs(t)).toEqual([NET.gw1.v4]);
      expect(count(G1, 'r2tcp.tunnel.test')).toBe(1);
    });

    it('TCP: several queries on one connection (dig +keepopen) each take their own path', async () => {
      tunnelNames.push('ko2.tunnel.test', 'ko3.gw2.test');
      const out = await digOutput(R.port, ['+tcp', '+keepopen', 'ko1.breakout.test', 'ko2.tunnel.test', 'ko3.gw2.test']);
      const answers = out.split('Got answer:').slice(1).map(parseDig);
      expect(answers.map((d) => [d.question?.name, addrs(d), d.tcp])).toEqual([
        ['ko1.breakout.test.', [NET.breakout.v4], true],
        ['ko2.tunnel.test.', [NET.gw1.v4], true],
        ['ko3.gw2.test.', [NET.gw2.v4], true],
      ]);
      expect([count(B, 'ko1.breakout.test'), count(G1, 'ko2.tunnel.test'), count(G2, 'ko3.gw2.test')]).toEqual([1, 1, 1]);
    });

    it('a name pinned to gw2 is asked to gw2 only and tagged with its rule', async () => {
      tunnelNames.push('r3.gw2.test');
      const d = await dig(R.port, ['r3.gw2.test']);
      expect(addrs(d)).toEqual([NET.gw2.v4]);
      expect(count(G2, 'r3.gw2.test')).toBe(1);
      expect(count(B, 'r3.gw2.test') + count(G1, 'r3.gw2.test')).toBe(0);
      expect(R.tagger.ruleOf(NET.gw2.v4)).toBe(RULE.gw2);
    });

    it('kill switch (no active gateway): a tunnel name gets SERVFAIL and is asked to nobody; breakout names still resolve', async () => {
      // This config takes its gateways from wg-quick files and their resolver from tunnel.dns.
      const K = await resolver({ ...config({ breakout: [at(B)], tunnelDns: [at(G1)] }), active: null });
      tunnelNames.push('k1.tunnel.test');
      const d = await dig(K.port, ['k1.tunnel.test']);
      expect(d.status).toBe('SERVFAIL');
      expect(d.answer).toEqual([]);
      expect(count(B, 'k1.tunnel.test') + count(G1, 'k1.tunnel.test') + count(G2, 'k1.tunnel.test')).toBe(0);
      const b = await dig(K.port, ['k1.breakout.test']);
      expect(addrs(b)).toEqual([NET.breakout.v4]);
      expect(count(B, 'k1.breakout.test')).toBe(1);
      // gw1 active but its resolver dead: SERVFAIL, still never the breakout resolver.
      const silent = await fake(() => null);
      const K3 = await resolver({ ...config({ breakout: [at(B)], tunnelDns: [at(silent)], dns: ['timeout: 200ms'] }), active: 'gw1' });
      tunnelNames.push('k3.tunnel.test');
      expect((await dig(K3.port, ['k3.tunnel.test'])).status).toBe('SERVFAIL');
      expect(silent.queries).toHaveLength(1);
      expect(count(B, 'k3.tunnel.test')).toBe(0);
      // The same config with gw1 active asks gw1's resolver (from tunnel.dns).
      const K2 = await resolver({ ...config({ breakout: [at(B)], tunnelDns: [at(G1)] }), active: 'gw1' });
      tunnelNames.push('k2.tunnel.test');
      expect(addrs(await dig(K2.port, ['k2.tunnel.test']))).toEqual([NET.gw1.v4]);
      expect(count(G1, 'k2.tunnel.test')).toBe(1);
    });
  });

  describe('record types', () => {
    it('AAAA: answered by the path, the address tagged', async () => {
      const d = await dig(R.port, ['v6.breakout.test', 'AAAA']);
      expect(d.status).toBe('NOERROR');
      expect(addrs(d, 'AAAA')).toEqual([NET.breakout.v6]);
      expect(R.tagger.ruleOf(NET.breakout.v6)).toBe(RULE.breakout);
      expect(B.queries()).toContainEqual({ type: 'AAAA', name: 'v6.breakout.test' });
    });

    it('TXT, MX and SRV pass through from the path\'s resolver', async () => {
      const txt = await dig(R.port, ['txt.breakout.test', 'TXT']);
      expect(txt.answer.map((r) => [r.type, r.data])).toEqual([['TXT', '"answered by breakout" "second string"']]);
      const mx = await dig(R.port, ['mx.breakout.test', 'MX']);
      expect(mx.answer.map((r) => [r.type, r.data])).toEqual([['MX', '10 mail.breakout.test.']]);
      const srv = await dig(R.port, ['_sip._tcp.breakout.test', 'SRV']);
      expect(srv.answer.map((r) => [r.type, r.data])).toEqual([['SRV', '1 2 5060 sip.breakout.test.']]);
      // The tunnel path's TXT comes from gw1's resolver.
      tunnelNames.push('txt.tunnel.test');
      const t = await dig(R.port, ['txt.tunnel.test', 'TXT']);
      expect(t.answer.map((r) => r.data)).toEqual(['"answered by gw1" "second string"']);
      expect(B.queries()).toEqual(expect.arrayContaining([{ type: 'TXT', name: 'txt.breakout.test' }, { type: 'MX', name: 'mx.breakout.test' }, { type: 'SRV', name: '_sip._tcp.breakout.test' }]));
    });

    it('PTR: the reverse of an address in a CIDR rule goes to that rule\'s path; others to the tunnel', async () => {
      tunnelNames.push('5.7.64.100.in-addr.arpa', '5.6.64.100.in-addr.arpa');
      const inRule = await dig(R.port, ['-x', '100.64.7.5']);
      expect(inRule.answer.map((r) => [r.type, r.data])).toEqual([['PTR', 'ptr-gw2.test.']]);
      expect(count(G2, '5.7.64.100.in-addr.arpa')).toBe(1);
      expect(count(B, '5.7.64.100.in-addr.arpa') + count(G1, '5.7.64.100.in-addr.arpa')).toBe(0);
      const v6 = await dig(R.port, ['-x', '2001:db8:77::5']);
      const v6name = v6.question!.name.replace(/\.$/, '');
      tunnelNames.push(v6name);
      expect(v6.answer.map((r) => r.data)).toEqual(['ptr-gw2.test.']);
      expect(count(G2, v6name)).toBe(1);
      const other = await dig(R.port, ['-x', '100.64.6.5']);
      expect(other.answer.map((r) => r.data)).toEqual(['ptr-gw1.test.']);
      expect(count(G1, '5.6.64.100.in-addr.arpa')).toBe(1);
    });

    it('HTTPS (type 65): passed through, and its ipv4hint/ipv6hint addresses are tagged with the name\'s rule', async () => {
      const d = await dig(R.port, ['svc.breakout.test', 'TYPE65']);
      expect(d.status).toBe('NOERROR');
      expect(d.answer).toHaveLength(1);
      expect(d.answer[0]!.type).toBe('HTTPS');
      expect(d.answer[0]!.data).toBe(`1 . ipv4hint=${NET.breakout.hint4} ipv6hint=${NET.breakout.hint6}`);
      expect(R.tagger.ruleOf(NET.breakout.hint4)).toBe(RULE.breakout);
      expect(R.tagger.ruleOf(NET.breakout.hint6)).toBe(RULE.breakout);
      tunnelNames.push('svc.gw2.test');
      await dig(R.port, ['svc.gw2.test', 'TYPE65']);
      expect(R.tagger.ruleOf(NET.gw2.hint4)).toBe(RULE.gw2);
      expect(R.tagger.ruleOf(NET.gw2.hint6)).toBe(RULE.gw2);
    });

    it('an unknown type (TYPE65280) and the CH class pass through untouched', async () => {
      const d = await dig(R.port, ['odd.breakout.test', 'TYPE65280']);
      expect(d.answer.map((r) => [r.class, r.type, r.data])).toEqual([['IN', 'TYPE65280', '\\# 4 DEADBEEF']]);
      expect(B.queries()).toContainEqual({ type: 'type=65280', name: 'odd.breakout.test' });
      // version.bind CH TXT matches no rule: the tunnel's resolver answers it.
      tunnelNames.push('version.bind');
      const ch = await dig(R.port, ['version.bind', 'TXT', 'CH']);
      expect(ch.status).toBe('NOERROR');
      expect(ch.question).toEqual({ name: 'version.bind.', class: 'CH', type: 'TXT' });
      expect(ch.answer.map((r) => [r.class, r.type])).toEqual([['CH', 'TXT']]);
      expect(ch.answer[0]!.data).toMatch(/^"dnsmasq-/);
      expect(count(G1, 'version.bind')).toBe(1);
    });

    it('the question\'s case is preserved in the answer, on a miss and on a cache hit', async () => {
      const a = await dig(R.port, ['ExAmPlE.breakout.test']);
      expect(a.question!.name).toBe('ExAmPlE.breakout.test.');
      expect(addrs(a)).toEqual([NET.breakout.v4]);
      const b = await dig(R.port, ['eXaMpLe.BREAKOUT.TeSt']);
      expect(b.question!.name).toBe('eXaMpLe.BREAKOUT.TeSt.');
      expect(addrs(b)).toEqual([NET.breakout.v4]);
      expect(count(B, 'example.breakout.test')).toBe(1); // the second came from the cache
    });

    it('DNSSEC: the DO bit of the client\'s query is on the forwarded query, and only then', async () => {
      const relay = await recordingRelay(B.port);
      cleanups.push(() => relay.close());
      const D = await resolver(config({ breakout: [at(relay)], gw1: [at(G1)], gw2: [at(G2)] }));
      const doBit = (m: Buffer): boolean | null => {
        const opt = dnsPacket.decode(m).additionals?.find((x) => x.type === 'OPT') as { flag_do?: boolean } | undefined;
        return opt === undefined ? null : opt.flag_do === true;
      };
      const d = await dig(D.port, ['+dnssec', 'do1.breakout.test']);
      expect(addrs(d)).toEqual([NET.breakout.v4]);
      expect(d.edns?.flags).toContain('do');
      expect(relay.queries.map(doBit)).toEqual([true]);
      await dig(D.port, ['+nodnssec', 'do2.breakout.test']);
      expect(relay.queries.map(doBit)).toEqual([true, false]);
      // A client without EDNS: splitwan adds an OPT upstream, without DO.
      await dig(D.port, ['+noedns', 'do3.breakout.test']);
      expect(relay.queries.map(doBit)).toEqual([true, false, false]);
      expect(count(B, 'do1.breakout.test')).toBe(1);
    });
  });

  describe('EDNS, truncation and malformed questions', () => {
    it('EDNS clients get an OPT advertising 1232 (whatever they and the upstream advertise); clients without EDNS get none', async () => {
      const d = await dig(R.port, ['+bufsize=4096', 'e1.breakout.test']);
      expect(d.edns).toEqual({ version: 0, flags: [], mbz: 0, udp: 1232, options: [] });
      const n = await dig(R.port, ['+noedns', 'e1.breakout.test']);
      expect(n.edns).toBeNull();
      expect(addrs(n)).toEqual([NET.breakout.v4]);
      // Synthesized answers too.
      const canary = await dig(R.port, ['+bufsize=4096', 'use-application-dns.net']);
      expect(canary.edns?.udp).toBe(1232);
      expect((await dig(R.port, ['+noedns', 'use-application-dns.net'])).edns).toBeNull();
      const dp = await udpAsk(R.port, query('e2.breakout.test', 'A', { edns: false }));
      expect(dp.additionals ?? []).toEqual([]);
    });

    it('EDNS options are hop by hop: a client\'s COOKIE is not forwarded, so no client gets a cookie made for another', async () => {
      // Like BIND or Unbound: echo the client cookie of the query, add a server cookie.
      const up = await fake((q) => {
        const d = dnsPacket.decode(q);
        const qq = d.questions![0]!;
        const opt = d.additionals?.find((a) => a.type === 'OPT') as { options?: { code: number; data?: Buffer }[] } | undefined;
        const cookie = opt?.options?.find((o) => o.code === 10)?.data;
        return dnsPacket.encode({
          type: 'response',
          id: d.id ?? 0,
          flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
          questions: [qq],
          answers: [{ type: 'A', name: qq.name, class: 'IN', ttl: 300, data: '100.64.50.1' }],
          additionals: opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: cookie ? [{ code: 10, data: Buffer.concat([cookie.subarray(0, 8), Buffer.from('SERVERCK')]) }] : [] } as unknown as dnsPacket.Answer] : [],
        });
      });
      const X = await resolver(config({ breakout: [at(up)], gw1: [at(G1)], gw2: [at(G2)] }));
      const first = await dig(X.port, ['+cookie=0102030405060708', 'ck.breakout.test']);
      expect(addrs(first)).toEqual(['100.64.50.1']);
      const options = (m: Buffer): number[] =>
        ((dnsPacket.decode(m).additionals?.find((a) => a.type === 'OPT') as { options?: { code: number }[] } | undefined)?.options ?? []).map((o) => o.code);
      expect(up.queries.map(options)).toEqual([[]]);
      // Another client, another cookie, the cached answer: no cookie of the first client in it.
      const second = await dig(X.port, ['+cookie=a1a2a3a4a5a6a7a8', 'ck.breakout.test']);
      expect(addrs(second)).toEqual(['100.64.50.1']);
      expect(up.queries).toHaveLength(1);
      expect(second.out).not.toMatch(/COOKIE mismatch/);
      expect(second.out).not.toContain('0102030405060708');
    });

    it('an answer bigger than a client without EDNS takes (512) comes back TC=1; dig\'s TCP retry gets all 40 records', async () => {
      const raw = await udpAsk(R.port, query('many.breakout.test', 'A', { id: 777 }));
      expect(raw.id).toBe(777);
      expect(raw.flag_tc).toBe(true);
      expect(raw.answers ?? []).toEqual([]);
      const d = await dig(R.port, ['+noedns', 'many.breakout.test']);
      expect(d.retriedTcp).toBe(true);
      expect(d.tcp).toBe(true);
      expect(addrs(d).sort()).toEqual(Array.from({ length: 40 }, (_, i) => `100.64.8.${i + 1}`).sort());
      expect(R.tagger.ruleOf('100.64.8.40')).toBe(RULE.breakout);
      // An EDNS client (1232) gets the same ~700 bytes over UDP, untruncated.
      const e = await dig(R.port, ['many.breakout.test']);
      expect(e.retriedTcp).toBe(false);
      expect(addrs(e)).toHaveLength(40);
      expect(count(B, 'many.breakout.test')).toBe(1);
    });

    it('an answer bigger than 1232 bytes: TC=1 to an EDNS client, then the full answer over TCP', async () => {
      const d = await dig(R.port, ['bigtxt.breakout.test', 'TXT']);
      expect(d.retriedTcp).toBe(true);
      expect(d.status).toBe('NOERROR');
      expect(d.answer).toHaveLength(1);
      expect(d.answer[0]!.data).toBe(Array(6).fill(`"${'x'.repeat(250)}"`).join(' '));
      const raw = await udpAsk(R.port, query('bigtxt.breakout.test', 'TXT', { edns: true }));
      expect(raw.flag_tc).toBe(true);
      expect(raw.answers ?? []).toEqual([]);
      expect(raw.additionals?.map((a) => a.type)).toEqual(['OPT']);
    });

    it('several questions or none: FORMERR with the client\'s ID, nothing asked upstream', async () => {
      const two = dnsPacket.encode({ type: 'query', id: 1111, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'f1.breakout.test' }, { type: 'A', name: 'f2.breakout.test' }] });
      const none = dnsPacket.encode({ type: 'query', id: 2222, flags: dnsPacket.RECURSION_DESIRED, questions: [] });
      const got = await udpExchange(R.port, [two, none]);
      for (const id of [1111, 2222]) {
        const d = dnsPacket.decode(got.get(id)![0]!);
        expect((d.flags ?? 0) & 0xf).toBe(1); // FORMERR
        expect(d.id).toBe(id);
        expect(d.answers ?? []).toEqual([]);
      }
      expect(count(B, 'f1.breakout.test') + count(B, 'f2.breakout.test')).toBe(0);
    });

    it('opcodes other than QUERY (STATUS, UPDATE): NOTIMP with the opcode echoed, so the client takes the answer; nothing asked', async () => {
      // A Windows client registering itself sends UPDATE to its resolver; an
      // answer whose opcode differs from the query's is ignored (dig: "Opcode
      // mismatch") and the client waits for its timeout instead.
      for (const [opcode, name] of [['2', 'STATUS'], ['5', 'UPDATE']] as const) {
        const d = await dig(R.port, [`+opcode=${opcode}`, `op${opcode}.breakout.test`]);
        expect(d.out).not.toContain('Opcode mismatch');
        expect([d.opcode, d.status]).toEqual([name, 'NOTIMP']);
        expect(count(B, `op${opcode}.breakout.test`)).toBe(0);
      }
    });

    it('EDNS version 1: BADVERS, nothing asked upstream', async () => {
      const d = await dig(R.port, ['+edns=1', '+noednsnegotiation', 'v1.breakout.test']);
      expect(d.status).toBe('BADVERS');
      expect(d.edns?.version).toBe(0);
      expect(count(B, 'v1.breakout.test')).toBe(0);
    });
  });

  describe('CNAME chains', () => {
    it('alias (a rule\'s name) → CNAME edge.cdn.example (no rule) → A: the A is tagged with the alias\'s rule', async () => {
      const d = await dig(R.port, ['alias.breakout.test']);
      expect(d.answer.map((r) => [r.name, r.type, r.data])).toEqual([
        ['alias.breakout.test.', 'CNAME', 'edge.cdn.example.'],
        ['edge.cdn.example.', 'A', NET.breakout.cdn],
      ]);
      expect(R.tagger.ruleOf(NET.breakout.cdn)).toBe(RULE.breakout);
      expect(count(B, 'alias.breakout.test')).toBe(1);
      // The same CDN name behind a gw2 alias: asked to gw2, tagged with gw2's rule.
      tunnelNames.push('alias.gw2.test');
      const g = await dig(R.port, ['alias.gw2.test']);
      expect(addrs(g)).toEqual([NET.gw2.cdn]);
      expect(R.tagger.ruleOf(NET.gw2.cdn)).toBe(RULE.gw2);
      // Asked directly, the CDN name matches no rule: the tunnel's answer, no tag.
      tunnelNames.push('edge.cdn.example');
      const direct = await dig(R.port, ['edge.cdn.example']);
      expect(addrs(direct)).toEqual([NET.gw1.cdn]);
      expect(R.tagger.ruleOf(NET.gw1.cdn)).toBeNull();
    });
  });

  describe('cache (fake clock)', () => {
    let clock: FakeClock;
    let C: TestResolver;
    let AUTH: Dnsmasq;

    beforeAll(async () => {
      // gw1's resolver here is authoritative for auth.test, so its negative answers carry an SOA (TTL and MINIMUM 100).
      AUTH = await dnsmasq(['--auth-server=ns.auth.test,lo', '--auth-zone=auth.test', '--auth-ttl=100', '--auth-soa=1,hostmaster.auth.test,1200,120,604800', '--host-record=host.auth.test,100.64.30.1']);
      clock = new FakeClock();
      C = await resolver({
        ...config({ breakout: [at(B)], gw1: [at(AUTH)], gw2: [at(G2)], dns: ['cache:', '  minTtl: 30', '  maxTtl: 240'] }),
        clock,
        tagger: new FakeTagger(clock),
      });
    });

    it('a second identical query is not asked upstream; the TTL counts down with age; expiry asks again', async () => {
      const a = await dig(C.port, ['c1.breakout.test']);
      expect(a.answer[0]!.ttl).toBe(240); // 300 clamped to maxTtl
      // Tagged for max(TTL, dns.tagTtl = 10 min).
      expect(C.tagger.sets.get(RULE.breakout)?.get(NET.breakout.v4)).toBe(clock.now() + 600_000);
      clock.advance(100);
      const b = await dig(C.port, ['c1.breakout.test']);
      expect(addrs(b)).toEqual([NET.breakout.v4]);
      expect(b.answer[0]!.ttl).toBe(140);
      expect(count(B, 'c1.breakout.test')).toBe(1);
      clock.advance(141);
      const c = await dig(C.port, ['c1.breakout.test']);
      expect(c.answer[0]!.ttl).toBe(240);
      expect(count(B, 'c1.breakout.test')).toBe(2);
    });

    it('min/max TTL clamps rewrite the TTLs clients see and how long answers are kept', async () => {
      const short = await dig(C.port, ['short.breakout.test']);
      expect(short.answer.map((r) => [r.data, r.ttl])).toEqual([['100.64.31.1', 30]]); // 5 raised to minTtl
      clock.advance(10);
      const again = await dig(C.port, ['short.breakout.test']);
      expect(again.answer[0]!.ttl).toBe(20);
      expect(count(B, 'short.breakout.test')).toBe(1);
      // The standard resolver has no clamps: the upstream's 5 s as it is.
      expect((await dig(R.port, ['short.breakout.test'])).answer[0]!.ttl).toBeLessThanOrEqual(5);
    });

    it('NXDOMAIN is cached for the SOA\'s TTL (RFC 2308), SOA TTL counting down', async () => {
      tunnelNames.push('nope.auth.test');
      const a = await dig(C.port, ['nope.auth.test']);
      expect(a.status).toBe('NXDOMAIN');
      expect(a.authority.map((r) => [r.type, r.ttl])).toEqual([['SOA', 100]]);
      clock.advance(60);
      const b = await dig(C.port, ['nope.auth.test']);
      expect(b.status).toBe('NXDOMAIN');
      expect(b.authority[0]!.ttl).toBe(40);
      expect(count(AUTH, 'nope.auth.test')).toBe(1);
      clock.advance(41);
      expect((await dig(C.port, ['nope.auth.test'])).status).toBe('NXDOMAIN');
      expect(count(AUTH, 'nope.auth.test')).toBe(2);
    });

    it('NODATA is cached for the SOA\'s TTL too', async () => {
      tunnelNames.push('host.auth.test');
      const a = await dig(C.port, ['host.auth.test', 'AAAA']);
      expect(a.status).toBe('NOERROR');
      expect(a.answer).toEqual([]);
      expect(a.authority.map((r) => r.type)).toEqual(['SOA']);
      clock.advance(99);
      const b = await dig(C.port, ['host.auth.test', 'AAAA']);
      expect(b.answer).toEqual([]);
      expect(b.authority[0]!.ttl).toBe(1);
      expect(count(AUTH, 'host.auth.test')).toBe(1);
      clock.advance(2);
      await dig(C.port, ['host.auth.test', 'AAAA']);
      expect(count(AUTH, 'host.auth.test')).toBe(2);
      // The A record of the same name is there (and is not NODATA-cached).
      expect(addrs(await dig(C.port, ['host.auth.test', 'A']))).toEqual(['100.64.30.1']);
    });

    it('100 concurrent identical queries: one upstream query, every client its own ID', async () => {
      const slow = await fake((q) => respond(q, { a: ['100.64.40.1'] }), 200);
      const S = await resolver(config({ breakout: [at(slow)], gw1: [at(G1)], gw2: [at(G2)] }));
      const ids = Array.from({ length: 100 }, (_, i) => 1000 + i * 7);
      // The same question, asked in two cases, with and without EDNS: still one question upstream.
      const nameOf = (id: number): string => (id % 2 === 0 ? 'co.breakout.test' : 'Co.BreakOut.TEST');
      const edns = (id: number): boolean => id % 3 === 0;
      const got = await udpExchange(S.port, ids.map((id) => query(nameOf(id), 'A', { id, edns: edns(id) })));
      expect(slow.queries).toHaveLength(1);
      expect([...got.keys()].sort((x, y) => x - y)).toEqual(ids);
      for (const id of ids) {
        expect(got.get(id)).toHaveLength(1);
        const d = dnsPacket.decode(got.get(id)![0]!);
        expect(d.id).toBe(id);
        expect(d.questions?.[0]?.name).toBe(nameOf(id));
        expect(d.answers?.map((a) => (a as { data: unknown }).data)).toEqual(['100.64.40.1']);
        expect((d.additionals ?? []).some((a) => a.type === 'OPT')).toBe(edns(id));
      }
      expect(S.tagger.calls).toBe(1);
      expect(S.tagger.ruleOf('100.64.40.1')).toBe(RULE.breakout);
      expect(S.resolver.stats.coalesced).toBe(99);
    });
  });

  describe('timeouts and failover between upstreams', () => {
    it('a silent first upstream: the second answers within the timeout plus a margin', async () => {
      const silent = await fake(() => null);
      const F = await resolver(config({ breakout: [at(silent), at(B)], gw1: [at(G1)], gw2: [at(G2)], dns: ['timeout: 300ms'] }));
      const t0 = Date.now();
      const d = await dig(F.port, ['fo1.breakout.test']);
      const took = Date.now() - t0;
      expect(addrs(d)).toEqual([NET.breakout.v4]);
      expect(silent.queries).toHaveLength(1);
      expect(count(B, 'fo1.breakout.test')).toBe(1);
      expect(took).toBeGreaterThanOrEqual(290);
      expect(took).toBeLessThan(300 + budget(1000)); // the margin stretched in an emulated Node (4.6 s there)
    });

    it('a SERVFAIL or REFUSED first upstream: the next one\'s answer', async () => {
      const servfail = await fake((q) => respond(q, { rcode: 2 }));
      // A real dnsmasq that knows nothing and has no upstream answers REFUSED.
      const refusing = await dnsmasq([]);
      const F = await resolver(config({ breakout: [at(B)], gw1: [at(servfail), at(G1)], gw2: [at(refusing), at(G2)] }));
      tunnelNames.push('fo2.tunnel.test', 'fo3.gw2.test');
      const d = await dig(F.port, ['fo2.tunnel.test']);
      expect(d.status).toBe('NOERROR');
      expect(addrs(d)).toEqual([NET.gw1.v4]);
      expect(servfail.queries).toHaveLength(1);
      expect(count(G1, 'fo2.tunnel.test')).toBe(1);
      const g = await dig(F.port, ['fo3.gw2.test']);
      expect(g.status).toBe('NOERROR');
      expect(addrs(g)).toEqual([NET.gw2.v4]);
      expect(count(refusing, 'fo3.gw2.test')).toBe(1);
      expect(count(G2, 'fo3.gw2.test')).toBe(1);
    });

    it('every upstream dead: SERVFAIL after trying each', async () => {
      const s1 = await fake(() => null);
      const s2 = await fake(() => null);
      const F = await resolver(config({ breakout: [at(s1), at(s2)], gw1: [at(G1)], gw2: [at(G2)], dns: ['timeout: 200ms'] }));
      const t0 = Date.now();
      const d = await dig(F.port, ['dead.breakout.test']);
      expect(d.status).toBe('SERVFAIL');
      expect(d.answer).toEqual([]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
      expect([s1.queries.length, s2.queries.length]).toEqual([1, 1]);
      // Not cached: the next query asks again.
      await dig(F.port, ['dead.breakout.test']);
      expect([s1.queries.length, s2.queries.length]).toEqual([2, 2]);
    });

    it('serveStale: an expired entry is served (TTL <= 30) when every upstream fails, until staleTtl', async () => {
      const clock = new FakeClock();
      const S = await dnsmasq(pathArgs('breakout'));
      const F = await resolver({
        ...config({ breakout: [at(S)], gw1: [at(G1)], gw2: [at(G2)], dns: ['timeout: 200ms', 'cache:', '  serveStale: true', '  staleTtl: 3600'] }),
        clock,
        tagger: new FakeTagger(clock),
      });
      const fresh = await dig(F.port, ['old.breakout.test']);
      expect(fresh.answer.map((r) => [r.data, r.ttl])).toEqual([[NET.breakout.v4, 300]]);
      clock.advance(301);
      S.close();
      const end = Date.now() + 3000;
      while ((await answersUdp(S.port)) && Date.now() < end);
      const stale = await dig(F.port, ['old.breakout.test']);
      expect(stale.status).toBe('NOERROR');
      expect(addrs(stale)).toEqual([NET.breakout.v4]);
      expect(stale.answer[0]!.ttl).toBeGreaterThan(0);
      expect(stale.answer[0]!.ttl).toBeLessThanOrEqual(30);
      expect(F.tagger.ruleOf(NET.breakout.v4)).toBe(RULE.breakout);
      expect(F.resolver.stats.staleServed).toBe(1);
      clock.advance(3600);
      expect((await dig(F.port, ['old.breakout.test'])).status).toBe('SERVFAIL');
    });

    it('serveStale: upstreams that answer SERVFAIL or REFUSED failed to refresh too (RFC 8767 §4): the stale entry is served', async () => {
      const clock = new FakeClock();
      let mode: 'answer' | 'servfail' | 'refused' = 'answer';
      const up = await fake((q) => respond(q, mode === 'answer' ? { a: ['100.64.41.1'], ttl: 60 } : { rcode: mode === 'servfail' ? 2 : 5 }));
      const up2 = await fake((q) => (mode === 'answer' ? respond(q, { a: ['100.64.41.1'], ttl: 60 }) : respond(q, { rcode: 2 })));
      const F = await resolver({
        ...config({ breakout: [at(up), at(up2)], gw1: [at(G1)], gw2: [at(G2)], dns: ['timeout: 200ms', 'cache:', '  serveStale: true'] }),
        clock,
        tagger: new FakeTagger(clock),
      });
      expect(addrs(await dig(F.port, ['sf.breakout.test']))).toEqual(['100.64.41.1']);
      for (const m of ['servfail', 'refused'] as const) {
        mode = m;
        clock.advance(61);
        const before = up.queries.length;
        const d = await dig(F.port, ['sf.breakout.test']);
        expect(up.queries.length).toBe(before + 1); // it did try to refresh
        expect(d.status).toBe('NOERROR');
        expect(d.answer.map((r) => [r.data, r.ttl])).toEqual([['100.64.41.1', 30]]);
      }
      // Without a stale entry the failure is what the client gets.
      mode = 'servfail';
      expect((await dig(F.port, ['sf2.breakout.test'])).status).toBe('SERVFAIL');
    });
  });

  describe('REFUSED for outsiders', () => {
    it('a client the ACL rejects (127.0.0.2) gets REFUSED over UDP, its TCP connection is reset unanswered, nothing is asked upstream; 127.0.0.1 is answered', async () => {
      const A = await resolver({ ...standard(), allows: (a) => a !== '127.0.0.2' });
      const u = await dig(A.port, ['acl.breakout.test'], { bind: '127.0.0.2' });
      expect(u.status).toBe('REFUSED');
      expect(u.answer).toEqual([]);
      const t = await digRun(A.port, ['+tcp', 'acl.breakout.test'], { bind: '127.0.0.2' });
      expect(t.out).toContain('connection reset');
      expect(t.out).not.toContain('Got answer:');
      expect(count(B, 'acl.breakout.test')).toBe(0);
      expect([A.server.stats.refused, A.server.stats.tcpRefused]).toEqual([1, 1]);
      const ok = await dig(A.port, ['acl.breakout.test']);
      expect(ok.status).toBe('NOERROR');
      expect(addrs(ok)).toEqual([NET.breakout.v4]);
      expect(count(B, 'acl.breakout.test')).toBe(1);
      // Cached and asked again (now answered in place, the UDP fast path): outsiders are still refused.
      for (let i = 0; i < 2; i++) expect(addrs(await dig(A.port, ['acl.breakout.test']))).toEqual([NET.breakout.v4]);
      expect((await dig(A.port, ['acl.breakout.test'], { bind: '127.0.0.2' })).status).toBe('REFUSED');
      expect(A.server.stats.refused).toBe(2);
      expect(count(B, 'acl.breakout.test')).toBe(1);
    });
  });

  describe('block, canary, no IPv6', () => {
    it('via: block answers 0.0.0.0 / :: (NODATA for other types) and asks nobody', async () => {
      const a = await dig(R.port, ['ads.blocked.test']);
      expect([a.status, addrs(a)]).toEqual(['NOERROR', ['0.0.0.0']]);
      const aaaa = await dig(R.port, ['ads.blocked.test', 'AAAA']);
      expect(addrs(aaaa, 'AAAA')).toEqual(['::']);
      const txt = await dig(R.port, ['ads.blocked.test', 'TXT']);
      expect([txt.status, txt.answer]).toEqual(['NOERROR', []]);
      for (const m of [B, G1, G2]) expect(count(m, 'ads.blocked.test')).toBe(0);
    });

    it('with dns.blockAnswer: nxdomain, via: block answers NXDOMAIN', async () => {
      const N = await resolver(config({ breakout: [at(B)], gw1: [at(G1)], gw2: [at(G2)], dns: ['blockAnswer: nxdomain'] }));
      const d = await dig(N.port, ['ads.blocked.test']);
      expect(d.status).toBe('NXDOMAIN');
      expect(d.answer).toEqual([]);
      // Other names are unaffected.
      expect(addrs(await dig(N.port, ['nx.breakout.test']))).toEqual([NET.breakout.v4]);
    });

    it('use-application-dns.net (Firefox\'s DoH canary) is NXDOMAIN and asked to nobody', async () => {
      const d = await dig(R.port, ['use-application-dns.net']);
      expect(d.status).toBe('NXDOMAIN');
      for (const m of [B, G1, G2]) expect(count(m, 'use-application-dns.net')).toBe(0);
    });

    it('AAAA on a path without IPv6: NOERROR with no answers (not asked upstream) while A works', async () => {
      const V = await resolver({ ...standard(), ipv6: (p: PathName) => p === 'breakout' });
      tunnelNames.push('v4only.tunnel.test');
      const aaaa = await dig(V.port, ['v4only.tunnel.test', 'AAAA']);
      expect([aaaa.status, aaaa.answer]).toEqual(['NOERROR', []]);
      expect(G1.queries()).not.toContainEqual({ type: 'AAAA', name: 'v4only.tunnel.test' });
      const a = await dig(V.port, ['v4only.tunnel.test', 'A']);
      expect(addrs(a)).toEqual([NET.gw1.v4]);
      const b6 = await dig(V.port, ['v4only.breakout.test', 'AAAA']);
      expect(addrs(b6, 'AAAA')).toEqual([NET.breakout.v6]);
    });
  });

  describe('tagging', () => {
    it('when tagging fails the client gets SERVFAIL, never an answer whose addresses are not routed', async () => {
      R.tagger.fail = true;
      try {
        const d = await dig(R.port, ['fresh.breakout.test']);
        expect(d.status).toBe('SERVFAIL');
        expect(d.answer).toEqual([]);
        expect(R.tagger.ruleOf('100.64.10.10')).toBeNull();
      } finally {
        R.tagger.fail = false;
      }
      const d = await dig(R.port, ['fresh.breakout.test']);
      expect(addrs(d)).toEqual(['100.64.10.10']);
      expect(R.tagger.ruleOf('100.64.10.10')).toBe(RULE.breakout);
      // The failure was not cached: the upstream was asked twice.
      expect(count(B, 'fresh.breakout.test')).toBe(2);
    });

    it('an address answered for names of two rules ends up in the most recent one\'s set', async () => {
      await dig(R.port, ['shared.breakout.test']);
      expect(R.tagger.ruleOf('100.64.9.9')).toBe(RULE.breakout);
      tunnelNames.push('shared.gw2.test');
      expect(addrs(await dig(R.port, ['shared.gw2.test']))).toEqual(['100.64.9.9']);
      expect(R.tagger.ruleOf('100.64.9.9')).toBe(RULE.gw2);
      // Again the breakout name (a cache hit): back to its rule.
      await dig(R.port, ['shared.breakout.test']);
      expect(count(B, 'shared.breakout.test')).toBe(1);
      expect(R.tagger.ruleOf('100.64.9.9')).toBe(RULE.breakout);
      // A default-path name answered with it leaves it where it is: a page's own
      // name must not be able to pull a rule's address out to the default path.
      tunnelNames.push('shared.default.test');
      expect(addrs(await dig(R.port, ['shared.default.test']))).toEqual(['100.64.9.9']);
      expect(R.tagger.ruleOf('100.64.9.9')).toBe(RULE.breakout);
    });
  });

  describe.skipIf(!haveOpenssl && !process.env.CI)('encrypted upstreams (certificate made here by openssl, private CA)', () => {
    let key: Buffer;
    let cert: Buffer;
    beforeAll(() => {
      const dir = mkdtempSync(join(tmpdir(), `splitwan-resolver-tls-${process.pid}-`));
      try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=dns.test', '-addext', 'subjectAltName=DNS:dns.test,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
        key = readFileSync(join(dir, 'key.pem'));
        cert = readFileSync(join(dir, 'cert.pem'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('DoH: https://127.0.0.1:PORT/dns-query as the breakout resolver, relaying to the breakout dnsmasq', async () => {
      const seen: string[] = [];
      const srv = https.createServer({ key, cert }, (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          seen.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
          udpExchange(B.port, [Buffer.concat(chunks)]).then(
            (got) => {
              res.writeHead(200, { 'content-type': 'application/dns-message' });
              res.end([...got.values()][0]![0]!);
            },
            () => {
              res.writeHead(502);
              res.end();
            },
          );
        });
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      cleanups.push(
        () =>
          new Promise<void>((r) => {
            srv.closeAllConnections();
            srv.close(() => r());
          }),
      );
      const port = (srv.address() as net.AddressInfo).port;
      const H = await resolver({ ...config({ breakout: [`https://127.0.0.1:${port}/dns-query`], gw1: [at(G1)], gw2: [at(G2)] }), tls: { ca: cert } });
      const d = await dig(H.port, ['doh.breakout.test']);
      expect(d.status).toBe('NOERROR');
      expect(addrs(d)).toEqual([NET.breakout.v4]);
      expect(seen).toEqual(['POST /dns-query application/dns-message']);
      expect(count(B, 'doh.breakout.test')).toBe(1);
      expect(H.dialer.paths).toEqual(['breakout']);
      expect(H.tagger.ruleOf(NET.breakout.v4)).toBe(RULE.breakout);
      // Tunnel names still go to the tunnel, not to the DoH server.
      tunnelNames.push('doh.tunnel.test');
      expect(addrs(await dig(H.port, ['doh.tunnel.test']))).toEqual([NET.gw1.v4]);
      expect(seen).toHaveLength(1);
    });

    it('DoT: tls://127.0.0.1:PORT#dns.test as gw2\'s resolver, relaying to gw2\'s dnsmasq', async () => {
      let served = 0;
      const srv = tls.createServer({ key, cert }, (c) => {
        let buf = Buffer.alloc(0);
        c.on('error', () => c.destroy());
        c.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
            const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
            buf = buf.subarray(2 + msg.length);
            served++;
            void udpExchange(G2.port, [Buffer.from(msg)]).then((got) => {
              const a = [...got.values()][0]![0]!;
              c.write(Buffer.concat([Buffer.from([a.length >> 8, a.length & 255]), a]));
            });
          }
        });
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
      const port = (srv.address() as net.AddressInfo).port;
      const T = await resolver({ ...config({ breakout: [at(B)], gw1: [at(G1)], gw2: [`tls://127.0.0.1:${port}#dns.test`] }), tls: { ca: cert } });
      tunnelNames.push('dot.gw2.test');
      const d = await dig(T.port, ['dot.gw2.test']);
      expect(addrs(d)).toEqual([NET.gw2.v4]);
      expect(served).toBe(1);
      expect(count(G2, 'dot.gw2.test')).toBe(1);
      expect(T.dialer.paths).toEqual(['gw:gw2']);
      expect(T.tagger.ruleOf(NET.gw2.v4)).toBe(RULE.gw2);
    });
  });

  it('across every test above, no tunnel or gateway name ever reached the breakout dnsmasq', () => {
    const asked = new Set(lower(B.asked()));
    expect(asked.size).toBeGreaterThan(10);
    expect(tunnelNames.length).toBeGreaterThan(10);
    expect(tunnelNames.filter((n) => asked.has(n.toLowerCase()))).toEqual([]);
    expect([...asked].filter((n) => /(\.tunnel\.test|\.gw2\.test|\.auth\.test|^version\.bind|ptr-|\.ip6\.arpa|\.in-addr\.arpa)$/.test(n))).toEqual([]);
  });
});
