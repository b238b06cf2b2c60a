// Shared pieces for resolver tests and benches: a loopback PathDialer, a real
// dnsmasq started on a loopback port (with its query log, which proves which
// resolver was asked), and a resolver + server built from a config text.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tls from 'node:tls';
import * as dnsPacket from 'dns-packet';
import { loadConfig } from '../../config/load.js';
import { silentLogger, systemClock, type Clock, type Logger } from '../../lib/logger.js';
import type { PathName, Target, Upstream } from '../../config/types.js';
import { DnsCache } from '../../dns/cache.js';
import { Forwarder, type PathDialer } from '../../dns/forwarder.js';
import { Resolver, type PathState, type RouteTagger } from '../../dns/resolver.js';
import { DnsServer, type DnsServerOptions } from '../../dns/server.js';
import { ClientAcl } from '../../dns/acl.js';
import { parseUpstream } from '../../config/upstream.js';

export const haveDnsmasq = spawnSync('dnsmasq', ['--version']).status === 0;

/** Plain loopback sockets: the path is recorded, not enforced (the daemon's dialer marks them). */
export class LoopbackDialer implements PathDialer {
  readonly paths: string[] = [];
  udp(path: string, family: 4 | 6): Promise<dgram.Socket> {
    this.paths.push(path);
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    return new Promise((r) => s.bind(0, () => r(s)));
  }
  tcp(path: string, host: string, port: number): Promise<net.Socket> {
    this.paths.push(path);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => resolve(s));
      s.once('error', reject);
    });
  }
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.once('error', reject);
  });
}

export function upstream(text: string): Upstream {
  const u = parseUpstream(text);
  if ('error' in u) throw new Error(u.error);
  return u;
}

export interface Dnsmasq {
  port: number;
  /**
   * The names dnsmasq was asked, in order, from its query log ("query[A] name
   * from 127.0.0.1", "query[type=65280] ...", and "auth[A] ..." when it serves
   * an --auth-zone), as asked (case kept).
   */
  asked(): string[];
  /** The same with the type as dnsmasq logs it (A, AAAA, HTTPS, type=65280...). */
  queries(): { type: string; name: string }[];
  close(): void;
}

/**
 * A real dnsmasq on 127.0.0.1:PORT answering from `args` (e.g.
 * `--address=/a.test/192.0.2.1`, `--host-record=`, `--cname=`) and nothing
 * else (no upstream, no /etc/hosts). Resolves once it answers.
 */
export async function startDnsmasq(args: readonly string[], host = '127.0.0.1'): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), `splitwan-dnsmasq-${process.pid}-`));
  const log = join(dir, 'queries.log');
  writeFileSync(log, '');
  const port = await freePort(host);
  const child: ChildProcess = spawn(
    'dnsmasq',
    ['-k', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${host}`, `--port=${port}`, '--user=root', '--pid-file=', '--log-queries', `--log-facility=${log}`, ...args],
    { stdio: 'ignore' },
  );
  const close = (): void => {
    if (child.exitCode === null && child.pid) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  const probe = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'ready.invalid' }] });
  const end = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
      const t = setTimeout(() => {
        s.close();
        resolve(false);
      }, 100);
      s.on('message', () => {
        clearTimeout(t);
        s.close();
        resolve(true);
      });
      s.send(probe, port, host);
    });
    if (ok) break;
    if (Date.now() > end) {
      close();
      throw new Error(`dnsmasq did not start on ${host}:${port}`);
    }
  }
  const queries = (): { type: string; name: string }[] =>
    readFileSync(log, 'utf8')
      .split('\n')
      .map((l) => /(?:query|auth)\[([^\]]+)\] (\S+) from/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null && m[2] !== 'ready.invalid')
      .map((m) => ({ type: m[1]!, name: m[2]! }));
  return {
    port,
    asked: () => queries().map((q) => q.name),
    queries,
    close,
  };
}

/** A RouteTagger that models the kernel's sets: rule → address → expiry (ms). */
export class FakeTagger implements RouteTagger {
  readonly sets = new Map<number, Map<string, number>>();
  calls = 0;
  fail = false;
  constructor(private readonly clock: Clock = systemClock) {}
  tag(rule: number, addresses: readonly string[], ttlMs: number): Promise<void> | null {
    const now = this.clock.now();
    const todo = addresses.filter((a) => !((this.sets.get(rule)?.get(a) ?? 0) - now >= ttlMs / 2));
    if (todo.length === 0) return null;
    this.calls++;
    if (this.fail) return Promise.reject(new Error('nft: tagging failed (test)'));
    for (const a of todo) {
      // An address lives in one rule's set: the most recent answer wins.
      for (const s of this.sets.values()) s.delete(a);
      (this.sets.get(rule) ?? this.sets.set(rule, new Map()).get(rule)!).set(a, now + ttlMs);
    }
    return new Promise((r) => setTimeout(r, 1));
  }
  /** The rule whose set holds `address` now, or null. */
  ruleOf(address: string): number | null {
    for (const [rule, s] of this.sets) if ((s.get(address) ?? 0) > this.clock.now()) return rule;
    return null;
  }
}

export interface TestResolver {
  resolver: Resolver;
  server: DnsServer;
  port: number;
  tagger: FakeTagger;
  dialer: LoopbackDialer;
  close(): Promise<void>;
}

/**
 * A resolver and server on 127.0.0.1 (port 0) from a config's text. The
 * config's gateways' resolvers are the tunnel paths' upstreams; the active
 * gateway is `active` (default: the first). `allows` defaults to ClientAcl([]).
 */
export async function startResolver(o: {
  configYaml: string;
  files?: Record<string, string>;
  active?: string | null;
  ipv6?: (path: PathName) => boolean;
  allows?: (address: string) => boolean;
  clock?: Clock;
  logger?: Logger;
  tagger?: FakeTagger;
  timeoutMs?: number;
  /** Extra TLS options for DoH/DoT upstreams (tests: a private CA). */
  tls?: tls.ConnectionOptions;
  /** DnsServer limits (tcpIdleMs, tcpMaxConnections, tcpMaxPipelined, tcpMaxUnread, maxInflight). */
  server?: Partial<Omit<DnsServerOptions, 'handler' | 'allows' | 'logger'>>;
}): Promise<TestResolver> {
  const dir = mkdtempSync(join(tmpdir(), `splitwan-resolver-${process.pid}-`));
  const file = join(dir, 'splitwan.yaml');
  writeFileSync(file, o.configYaml);
  for (const [name, text] of Object.entries(o.files ?? {})) writeFileSync(join(dir, name), text, { mode: 0o600 });
  const loaded = await loadConfig(file);
  const c = loaded.config;
  const clock = o.clock ?? systemClock;
  const logger = o.logger ?? silentLogger;
  const active = o.active === undefined ? (c.tunnel.gateways[0]?.name ?? null) : o.active;
  const breakout = c.breakout.dns === 'auto' ? [] : c.breakout.dns;
  const paths: PathState = {
    pick: (via: readonly Target[]) => via[0]!,
    upstreams: (path: PathName) => {
      if (path === 'breakout') return breakout;
      const name = path === 'tunnel' ? active : path.slice(3);
      return c.tunnel.gateways.find((g) => g.name === name)?.dns ?? [];
    },
    ipv6: o.ipv6 ?? (() => true),
  };
  const dialer = new LoopbackDialer();
  const forwarder = new Forwarder({ dialer, logger, timeoutMs: o.timeoutMs ?? c.dns.timeoutMs, ...(o.tls ? { tls: o.tls } : {}) });
  const tagger = o.tagger ?? new FakeTagger(clock);
  const cache = new DnsCache(c.dns.cache, clock);
  const resolver = new Resolver({
    policy: () => loaded.policy,
    paths,
    upstreams: forwarder,
    tagger,
    cache,
    clock,
    logger,
    options: { tagTtlMs: c.dns.tagTtlMs, blockAnswer: c.dns.blockAnswer, minTtl: c.dns.cache.minTtl, maxTtl: c.dns.cache.maxTtl, negativeTtl: c.dns.cache.negativeTtl },
  });
  const acl = new ClientAcl([]);
  const server = new DnsServer({ ...o.server, handler: resolver, allows: o.allows ?? ((a) => acl.allows(a)), logger });
  const [bound] = await server.listen([{ host: '127.0.0.1', port: 0 }]);
  return {
    resolver,
    server,
    port: bound!.port,
    tagger,
    dialer,
    close: async () => {
      await server.close();
      forwarder.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
