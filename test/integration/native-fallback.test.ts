// A host where koffi, the native call library, has no build (a MIPS router):
// every fast path built on it falls back to Node, says why once, and works.
// The child process below is the daemon's resolver, proxy and nft choice as
// built (dist/), with `require('koffi')` failing as it does where no build
// exists (a preload script makes it throw). Each part is made twice, as a
// reload does, and the log still has one line per fast path.
//
//   child: DnsServer (dgram) on 127.0.0.1:0  ◀── dig-like query (node:dgram) from the child itself
//          TransparentProxy (net.Server, pipe()) on 127.0.0.1:0 ◀── HTTP request ──▶ backend echo
//
// Nothing but loopback; no nft command is run (only whether libnftables can be used is asked).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compilePolicy } from '../../config/policy.js';
import { TransparentProxy } from '../../proxy/server.js';
import { pipeSplicer } from '../../proxy/splice.js';
import { FallbackNotes } from '../../sys/native-fallback.js';

const root = join(import.meta.dirname, '..', '..');
const dist = (p: string): string => JSON.stringify(pathToFileURL(join(root, 'dist', p)).href);
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), `splitwan-nokoffi-${process.pid}-`));
  // What Node says where koffi has no build for the platform.
  writeFileSync(
    join(dir, 'no-koffi.cjs'),
    `const Module = require('node:module');
     const load = Module._load;
     Module._load = function (request, ...rest) {
       if (request === 'koffi') throw new Error('Cannot find the native Koffi module; did you compile it? (no build for this platform)');
       return load.call(this, request, ...rest);
     };`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CHILD = `
import dgram from 'node:dgram';
import net from 'node:net';
const { DnsServer } = await import(${dist('dns/server.js')});
const { TransparentProxy } = await import(${dist('proxy/server.js')});
const { compilePolicy } = await import(${dist('config/policy.js')});
const { libnftProblem, libnftAvailable } = await import(${dist('daemon/dataplane/libnft-linux.js')});
const lines = [];
const logger = {
  trace() {}, debug() {}, error() {}, child() { return logger; },
  info: (obj, msg) => lines.push({ level: 'info', msg }),
  warn: (obj, msg) => lines.push({ level: 'warn', msg }),
};
const out = { lines, answers: [], proxied: [] };
const backend = net.createServer((s) => s.once('data', (d) => s.end('echo ' + d.toString().split('\\r\\n')[0])));
await new Promise((r) => backend.listen(0, '127.0.0.1', r));
const dst = { address: '127.0.0.1', port: backend.address().port };
for (let round = 0; round < 2; round++) {
  // The resolver: answers every query with its own header, QR set, and "ok" after it.
  const dns = new DnsServer({ handler: { handle: (m) => { const a = Buffer.concat([m.subarray(0, 12), Buffer.from('ok')]); a[2] |= 0x80; return a; } }, allows: () => true, logger });
  const [bound] = await dns.listen([{ host: '127.0.0.1', port: 0 }]);
  const c = dgram.createSocket('udp4');
  const answer = await new Promise((resolve) => {
    c.once('message', (m) => resolve(m.readUInt16BE(0) === 0x1234 ? m.subarray(12).toString() : 'wrong id'));
    // A DNS header (id 0x1234, one question) and the question: x.example A IN.
    c.send(Buffer.from('123401000001000000000000017807657861 6d706c650000010001'.replace(/ /g, ''), 'hex'), bound.port, '127.0.0.1');
  });
  c.close();
  out.answers.push({ transport: dns.udpTransport, answer });
  await dns.close();
  // The proxy: a dialer with marks, as the daemon's; accept and splicer are its defaults.
  const proxy = new TransparentProxy({
    policy: () => compilePolicy({ rules: [], default: ['breakout'] }, new Map()),
    pick: (via) => via[0],
    dialer: { markOf: () => 0, tcp: (_p, host, port) => new Promise((res, rej) => { const s = net.connect({ host, port }, () => res(s)); s.once('error', rej); }) },
    originalDst: () => dst,
    logger,
  }, { peekTimeoutMs: 2000, idleTimeoutMs: 5000 });
  await proxy.listen([{ host: '127.0.0.1', port: 0 }]);
  const reply = await new Promise((resolve) => {
    let got = '';
    const s = net.connect({ host: '127.0.0.1', port: proxy.addresses()[0].port }, () => s.write('GET /r' + round + ' HTTP/1.1\\r\\nHost: site.example\\r\\n\\r\\n'));
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => {});
  });
  out.proxied.push({ accept: proxy.acceptName, splicer: proxy.splicerName, reply });
  await proxy.close();
}
backend.close();
out.libnft = { available: libnftAvailable(), problem: libnftProblem() };
console.log(JSON.stringify(out));
`;

describe('no koffi build for this platform', () => {
  it('the resolver and the proxy fall back to Node, work, and say why once each', () => {
    for (const f of ['dns/server.js', 'proxy/server.js', 'daemon/dataplane/libnft-linux.js']) {
      if (!existsSync(join(root, 'dist', f))) throw new Error(`dist/${f} is missing: run \`npm run build\` first`);
    }
    const stdout = execFileSync(process.execPath, ['--require', join(dir, 'no-koffi.cjs'), '--input-type=module', '-e', CHILD], { encoding: 'utf8', timeout: 60_000 });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      lines: { level: string; msg: string }[];
      answers: { transport: string; answer: string }[];
      proxied: { accept: string; splicer: string; reply: string }[];
      libnft: { available: boolean; problem: string | null };
    };
    const why = `koffi does not load on ${process.platform}-${process.arch}: Cannot find the native Koffi module; did you compile it? (no build for this platform)`;
    expect(out.answers).toEqual([
      { transport: 'dgram', answer: 'ok' },
      { transport: 'dgram', answer: 'ok' },
    ]);
    expect(out.proxied).toEqual([
      { accept: 'node', splicer: 'pipe', reply: 'echo GET /r0 HTTP/1.1' },
      { accept: 'node', splicer: 'pipe', reply: 'echo GET /r1 HTTP/1.1' },
    ]);
    // Twice each part, once each line.
    expect(out.lines).toEqual([
      { level: 'warn', msg: `resolver UDP: recvmmsg fast path off (${why}): using node:dgram` },
      { level: 'warn', msg: `proxy bytes: splice(2) fast path off (${why}): using Node's streams (pipe())` },
      { level: 'info', msg: 'proxy accept: raw fds fast path off (the pipe splicer takes no fds): using net.Server and net.Socket' },
    ]);
    expect(out.libnft).toEqual({ available: false, problem: why });
  });
});

describe('proxy accept with a splicer that takes no fds', () => {
  const proxies: TransparentProxy[] = [];
  afterEach(async () => {
    for (const p of proxies.splice(0)) await p.close();
  });

  it('no raw fds with a splicer that takes none: said once, however many proxies (a reload makes a new one)', async () => {
    const notes = new FallbackNotes();
    const lines: { level: string; msg: string }[] = [];
    const log = { debug: () => {}, info: (_o: object, msg?: string) => void lines.push({ level: 'info', msg: msg ?? '' }), warn: (_o: object, msg?: string) => void lines.push({ level: 'warn', msg: msg ?? '' }) };
    for (let i = 0; i < 2; i++) {
      const p = new TransparentProxy(
        {
          policy: () => compilePolicy({ rules: [], default: ['breakout'] }, new Map()),
          pick: (via) => via[0]!,
          dialer: { markOf: () => 0, tcp: () => Promise.reject(new Error('unused')) },
          originalDst: () => null,
          logger: log,
          splicer: pipeSplicer,
          notes,
        },
        { peekTimeoutMs: 1000, idleTimeoutMs: 1000 },
      );
      proxies.push(p);
      await p.listen([{ host: '127.0.0.1', port: 0 }]);
      expect(p.acceptName).toBe('node');
    }
    expect(lines.map((l) => [l.level, l.msg])).toEqual([['info', 'proxy accept: raw fds fast path off (the pipe splicer takes no fds): using net.Server and net.Socket']]);
  });
});


describe('nft set elements', () => {
  it('SPLITWAN_NFT_NETLINK=0: said once, however many sessions (the start\'s cleanup opens one, the daemon another)', async (ctx) => {
    const { LibNft, libnftAvailable } = await import('../../daemon/dataplane/libnft-linux.js');
    if (!libnftAvailable()) {
      console.log('SKIPPED native-fallback nft: libnftables.so.1 is not installed (apt-get install libnftables1)');
      ctx.skip();
    }
    const notes = new FallbackNotes();
    const lines: { level: string; msg: string }[] = [];
    const at = (level: string) => (_o: object, msg?: string) => void lines.push({ level, msg: msg ?? '' });
    const log = { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
    const before = process.env.SPLITWAN_NFT_NETLINK;
    process.env.SPLITWAN_NFT_NETLINK = '0';
    try {
      // A session only makes a libnftables context: no command runs.
      for (let i = 0; i < 2; i++) new LibNft(log, { notes }).close();
    } finally {
      if (before === undefined) delete process.env.SPLITWAN_NFT_NETLINK;
      else process.env.SPLITWAN_NFT_NETLINK = before;
    }
    expect(lines).toEqual([{ level: 'info', msg: 'nft set elements: netlink batches fast path off (SPLITWAN_NFT_NETLINK=0): using add element commands through libnftables (~4x the CPU a tag)' }]);
  });
});
