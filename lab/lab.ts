// A network-namespace lab built by code, for e2e tests, benchmarks and `splitwan demo`.
//
//                         (splitwan runs here)
//  [client]                    [router]                             [isp]
//   c0 10.99.1.2 ───────── lan0 10.99.1.1                            lo  web 10.99.9.9  fd99:9::9  (echo-server.mjs :80, :443)
//      fd99:1::2                fd99:1::1                                resolver 10.99.9.53 fd99:9::53 (dnsmasq, logs)
//                          wan0 10.99.2.2 ───────────────────── r0  10.99.2.1  fd99:2::1
//                               fd99:2::2
//                          swg<tag>g1 10.64.0.2/32 fd64::2/128
//                             ╚══ WireGuard ══╗
//                                       [gw1] gwg<tag>g1 10.64.0.1/24 fd64::1/64 (dnsmasq)
//                                             up0 10.99.3.2 fd99:3::2 ── gw1 10.99.3.1  fd99:3::1
//                          swg<tag>g2 10.64.0.2/32 fd64::2/128
//                             ╚══ WireGuard ══╗
//                                       [gw2] gwg<tag>g2 10.64.0.1/24 fd64::1/64 (dnsmasq)
//                                             up0 10.99.4.2 fd99:4::2 ── gw2 10.99.4.1  fd99:4::1
//
// - Namespaces: `<id>-client`, `<id>-router`, `<id>-isp`, `<id>-gw1`, `<id>-gw2`, where
//   id = `sw<pid % 10000>` (plus a letter for a second lab in the same process).
// - Optional (off by default): a second ISP link (`secondWan`), router wan1 10.99.5.2
//   fd99:5::2 ── isp r1 10.99.5.1 fd99:5::1 (no default route of its own: splitwan's
//   config names its next hop); the web server sees 10.99.5.2 for traffic by it.
//   `handTunnel: i`: the router side of gateway i made by hand (not by splitwan) as
//   `awg<tag>`, with wg-quick's fwmark 51820 on its own UDP, for unmanaged gateways.
// - Both router tunnels carry the SAME address (10.64.0.2, fd64::2) and both gateways
//   run their resolver at the SAME address (10.64.0.1, fd64::1), as with Mullvad.
// - The web server echoes the source address it sees: 10.99.2.2 = breakout (after the
//   router masquerades), 10.99.3.2 = through gw1, 10.99.4.2 = through gw2.
// - The router gets NO routing magic: interfaces, addresses, a default route via the
//   isp, forwarding on, both tunnels up with handshakes done (no wg fwmark: splitwan
//   sets it). The isp has no route back to the client LAN, so without a masquerade
//   on the router the client reaches nothing.
// - Gateways forward and masquerade out of up0 (nft, inside their namespace).
//
// Safety: nothing is done in the root namespace except creating and deleting the
// namespaces above (and their wireguard-go control sockets, which are global:
// /var/run/wireguard/<if>.sock). Commands run from argv arrays; private keys go
// through 0600 files in a 0700 temp dir only (never argv). Processes are stopped by
// the pid we spawned, never by name. Set SPLITWAN_LAB_DEBUG=1 to print the output of
// every process once the lab is up (LOG_LEVEL=verbose makes wireguard-go chatty).

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------
// Public types

export type NsRole = 'client' | 'router' | 'isp' | 'gw1' | 'gw2';
export type GatewayIndex = 0 | 1;

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; 124 after a timeout, 127 when the command could not be started, 128+n after signal n. */
  code: number;
}

export interface ExecOptions {
  input?: string;
  /** The command's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** The command's working directory (default: this process's). */
  cwd?: string;
  /** Default 10 s; the child (our own pid) is SIGKILLed after it. */
  timeoutMs?: number;
}

export interface EchoReply {
  /** The source address the web server saw (never ::ffff:-mapped). */
  remote: string;
  /** The Host header it got. */
  host: string;
  /** The address it was reached on. */
  local: string;
  /** The TLS server name it saw (HTTPS on 443), '' over HTTP or without SNI. */
  sni: string;
}

export interface CurlOptions {
  /** Whole request timeout, default 3000 ms. */
  timeoutMs?: number;
  /** `curl --interface IF` (SO_BINDTODEVICE; works for IPv4 only through a tunnel). */
  interface?: string;
  /** Extra curl arguments placed before the URL (e.g. ['--resolve', 'x:80:10.99.9.9']). */
  extraArgs?: string[];
}

export interface Pair {
  v4: string;
  /** Configured only when `lab.ipv6` is true. */
  v6: string;
}

export interface LabAddresses {
  client: Pair;
  routerLan: Pair;
  routerWan: Pair;
  /** The isp's side of the router link: the router's default gateway. */
  ispToRouter: Pair;
  /** secondWan: the router's second link (wan1) and the isp's side of it (its next hop). */
  routerWan2: Pair;
  ispToRouter2: Pair;
  ispToGw1: Pair;
  ispToGw2: Pair;
  /** gw1's uplink: the source the web server sees for traffic through gw1. */
  gw1Uplink: Pair;
  gw2Uplink: Pair;
  /** The echo web server (HTTP :80) on the isp's lo. */
  web: Pair;
  /** The isp's dnsmasq. */
  ispResolver: Pair;
  /** The router's tunnel address, the same on both tunnels (/32, /128). */
  tunnelRouter: Pair;
  /** The gateways' tunnel address and resolver, the same on both gateways (/24, /64). */
  tunnelGateway: Pair;
}

export interface LabInterfaces {
  client: { lan: string };
  router: { lan: string; wan: string; gw1: string; gw2: string };
  isp: { router: string; gw1: string; gw2: string };
  gw1: { uplink: string; tunnel: string };
  gw2: { uplink: string; tunnel: string };
}

export interface LabGateway {
  name: 'gw1' | 'gw2';
  /** The gateway's namespace. */
  ns: string;
  /** The router-side WireGuard interface (in the router namespace). */
  routerIf: string;
  /** The gateway-side WireGuard interface (in the gateway namespace). */
  gatewayIf: string;
  /** The gateway's public key: the router's peer. */
  publicKey: string;
  /** The router side's public key: the gateway's peer. */
  routerPublicKey: string;
  /** `10.99.3.2:51820` */
  endpoint: string;
  /** The address the web server sees for traffic through this gateway. */
  uplink: Pair;
  /** wg-quick(8) text for the router side (holds the private key), for splitwan's config. */
  configText: string;
  /** This gateway's dnsmasq query log (the same file as gwResolverLogs[i]). */
  resolverLog: string;
}

/** Answers for a test name: one value for every resolver, or per resolver. */
export type NameAnswer = string | readonly string[];
export interface NameAnswers {
  isp?: NameAnswer;
  gw1?: NameAnswer;
  gw2?: NameAnswer;
}
export interface ResolvedNames {
  [name: string]: { isp: string[]; gw1: string[]; gw2: string[] };
}

export interface LabOptions {
  /** Configure IPv6 everywhere (default true). */
  withIpv6?: boolean;
  /** Test names and their answers, merged over DEFAULT_NAMES. */
  names?: Record<string, NameAnswer | NameAnswers>;
  /**
   * CNAMEs every resolver serves: alias → target. A target must be one of
   * `names`; it is then served as a host record (dnsmasq's --cname needs one).
   */
  cnames?: Record<string, string>;
  /** Bring up the router-side tunnels (default true). With false, only the gateways exist. */
  routerTunnels?: boolean;
  /** Handshake wait, default 10 s. */
  handshakeTimeoutMs?: number;
  /** TTL of the resolvers' answers, seconds (dnsmasq --local-ttl); default 0: never cached. */
  resolverTtl?: number;
  /** A second ISP link: router wan1 ── isp r1 (default false: the lab is as it always was). */
  secondWan?: boolean;
  /** Make the router side of this gateway by hand as `awg<tag>` (another program's tunnel); use with routerTunnels: false. */
  handTunnel?: GatewayIndex;
}

export interface Lab {
  /** `sw<pid % 10000>[letter]`; every name of this lab carries it. */
  id: string;
  ipv6: boolean;
  ns: Record<NsRole, string>;
  addr: LabAddresses;
  ifaces: LabInterfaces;
  gateways: [LabGateway, LabGateway];
  names: ResolvedNames;
  ispResolverLog: string;
  gwResolverLogs: [string, string];
  /** Private to this lab, mode 0700; removed by destroy(). */
  tmpDir: string;
  /** Milliseconds spent in createLab, by phase, and in total (`total`). */
  timings: Record<string, number>;
  /** Pids of every process the lab started and that has not exited. */
  pids(): number[];
  /** The wireguard-go control sockets this lab's processes own. */
  sockets(): string[];
  /** Runs argv inside one of this lab's namespaces (`ip netns exec NS ...`). Never throws on a non-zero exit. */
  exec(ns: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** `curl` from a namespace to the echo server; the parsed reply, or why it failed. */
  curlEcho(fromNs: string, url: string, opts?: CurlOptions): Promise<EchoReply | { error: string }>;
  /** Drops WireGuard UDP (port 51820, both ways) inside that gateway's namespace, or lifts the drop. Idempotent. */
  blackholeGateway(i: GatewayIndex, on: boolean): Promise<void>;
  /** Drops everything on the isp's side of WAN link i (0: r0, 1: r1 with secondWan), or lifts the drop: a dead uplink whose interface stays up. Idempotent. */
  blackholeWan(i: 0 | 1, on: boolean): Promise<void>;
  /** With handTunnel: its interface name (`awg<tag>`), else null. */
  handTunnelIf: string | null;
  /** With handTunnel: deletes the hand-made interface (false) or makes it again (true), as the other program would. */
  handTunnel(up: boolean): Promise<void>;
  /** The router side's latest handshake with gateway i, unix seconds (0 = none yet). */
  latestHandshake(i: GatewayIndex): Promise<number>;
  /** Waits until the router side has a handshake with gateway i newer than `after` (unix s, default 0). */
  waitHandshake(i: GatewayIndex, opts?: { after?: number; timeoutMs?: number }): Promise<number>;
  /** Stops every process (SIGTERM, SIGKILL after 2 s), deletes the namespaces and temp dir. Idempotent. */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Constants

export const WG_PORT = 51820;
export const TUNNEL_MTU = 1420;

/** Built-in names. `where.lab.test` gets a different answer from each resolver. */
export const DEFAULT_NAMES: Readonly<Record<string, NameAnswer | NameAnswers>> = Object.freeze({
  'web.lab.test': ['10.99.9.9', 'fd99:9::9'],
  'where.lab.test': {
    isp: ['192.0.2.1', '2001:db8::1'],
    gw1: ['192.0.2.11', '2001:db8::11'],
    gw2: ['192.0.2.12', '2001:db8::12'],
  },
});

const ADDR = {
  client: { v4: '10.99.1.2', v6: 'fd99:1::2' },
  routerLan: { v4: '10.99.1.1', v6: 'fd99:1::1' },
  routerWan: { v4: '10.99.2.2', v6: 'fd99:2::2' },
  ispToRouter: { v4: '10.99.2.1', v6: 'fd99:2::1' },
  routerWan2: { v4: '10.99.5.2', v6: 'fd99:5::2' },
  ispToRouter2: { v4: '10.99.5.1', v6: 'fd99:5::1' },
  ispToGw1: { v4: '10.99.3.1', v6: 'fd99:3::1' },
  ispToGw2: { v4: '10.99.4.1', v6: 'fd99:4::1' },
  gw1Uplink: { v4: '10.99.3.2', v6: 'fd99:3::2' },
  gw2Uplink: { v4: '10.99.4.2', v6: 'fd99:4::2' },
  web: { v4: '10.99.9.9', v6: 'fd99:9::9' },
  ispResolver: { v4: '10.99.9.53', v6: 'fd99:9::53' },
  tunnelRouter: { v4: '10.64.0.2', v6: 'fd64::2' },
  tunnelGateway: { v4: '10.64.0.1', v6: 'fd64::1' },
} as const satisfies LabAddresses;

const WG_SOCKET_DIR = '/var/run/wireguard';
const BLACKHOLE_TABLE = 'swlab_blackhole';
const WAN_BLACKHOLE_TABLE = 'swlab_wan';
const TOOLS = ['ip', 'wg', 'wireguard-go', 'nft', 'dnsmasq', 'curl', 'dig'] as const;

// ---------------------------------------------------------------------------
// Support check

export function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

/** Whether this machine can run the lab: Linux, root, /dev/net/tun and the tools on PATH. */
let opensslFound: boolean | null = null;
/** The echo server's HTTPS needs a certificate made by openssl; without it, HTTP only. */
function haveOpenssl(): boolean {
  if (opensslFound === null) {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      opensslFound = true;
    } catch {
      opensslFound = false;
    }
  }
  return opensslFound;
}

export function labSupported(): { ok: true } | { ok: false; why: string } {
  if (process.platform !== 'linux') return { ok: false, why: `needs Linux (this is ${process.platform})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    return { ok: false, why: 'needs root (network namespaces, wireguard-go, nft)' };
  if (!existsSync('/dev/net/tun')) return { ok: false, why: 'needs /dev/net/tun for wireguard-go' };
  const missing = TOOLS.filter((t) => which(t) === null);
  if (missing.length > 0) return { ok: false, why: `missing on PATH: ${missing.join(', ')}` };
  return { ok: true };
}

// ---------------------------------------------------------------------------
// Commands (argv only, never a shell)

/** A failed command: argv, exit code, stderr (never stdin, which may hold a key). */
export class LabCommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`${argv.join(' ')} failed (exit ${exitCode}): ${stderr.trim().split('\n').slice(0, 4).join(' | ') || 'no output'}`);
    this.name = 'LabCommandError';
  }
}

const SIGNUM: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Runs a command; with `inFlight`, the child is in that set until it has exited (a lab kills them at destroy). */
export function run(argv: readonly string[], opts: ExecOptions = {}, inFlight?: Set<ChildProcess>): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (!cmd) return Promise.reject(new TypeError('empty argv'));
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    inFlight?.add(child);
    child.on('close', () => inFlight?.delete(child));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 10_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ stdout, stderr: stderr + err.message, code: 127 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) resolve({ stdout, stderr: stderr + `\n(timed out after ${opts.timeoutMs ?? 10_000} ms)`, code: 124 });
      else resolve({ stdout, stderr, code: code ?? 128 + (SIGNUM[signal ?? ''] ?? 0) });
    });
    child.stdin.on('error', () => undefined); // EPIPE when the command exits without reading
    child.stdin.end(opts.input ?? '');
  });
}

/** SIGKILLs every command still in the set (by its child's pid) and waits for each to close. */
export async function killCommands(commands: ReadonlySet<ChildProcess>): Promise<void> {
  await Promise.all(
    [...commands].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('close', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
}

export async function must(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new LabCommandError(argv, r.code, r.stderr);
  return r;
}

/** Awaits every promise (so nothing is still in flight), then throws the first failure. */
async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Supervised long-running processes

const TAIL_MAX = 32 * 1024;

/** A long-running process of a lab: its pid, the tail of its output, a stop by that pid. */
export class Supervised {
  readonly pid: number;
  tail = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;

  constructor(
    readonly name: string,
    readonly kind: 'wireguard-go' | 'dnsmasq' | 'echo' | 'resolved-lab',
    argv: readonly string[],
    env: NodeJS.ProcessEnv,
  ) {
    const [cmd, ...args] = argv;
    if (!cmd) throw new TypeError('empty argv');
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    if (this.child.pid === undefined) {
      // spawn failures (ENOENT) are reported asynchronously; there is no process to track.
      this.child.on('error', () => undefined);
      throw new Error(`${name}: could not start ${cmd}`);
    }
    this.pid = this.child.pid;
    const append = (d: string) => {
      this.tail += d;
      if (this.tail.length > TAIL_MAX) this.tail = this.tail.slice(-TAIL_MAX);
    };
    this.child.stdout?.setEncoding('utf8').on('data', append);
    this.child.stderr?.setEncoding('utf8').on('data', append);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => append(`\n${err.message}`));
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.exit === null;
  }

  describeExit(): string {
    return `${this.name} (pid ${this.pid}) exited (code ${this.exit?.code}, signal ${this.exit?.signal}): ${this.tail.trim().slice(-600)}`;
  }

  /** Resolves when `test()` is true; rejects if the process exits first or on timeout. */
  async waitUntil(what: string, test: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (test()) return;
      if (!this.running) throw new Error(`waiting for ${what}: ${this.describeExit()}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; output: ${this.tail.trim().slice(-600)}`);
      await sleep(5);
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, wait up to graceMs, then SIGKILL and wait for the exit. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    const t = await Promise.race([this.exited.then(() => 'exited'), sleep(graceMs).then(() => 'timeout')]);
    if (t === 'timeout' && this.running) {
      this.signal('SIGKILL');
      await Promise.race([this.exited, sleep(5000)]);
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

function wgKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const d = privateKey.export({ format: 'jwk' }).d;
  const x = publicKey.export({ format: 'jwk' }).x;
  if (!d || !x) throw new Error('x25519 key export failed');
  return {
    privateKey: Buffer.from(d, 'base64url').toString('base64'),
    publicKey: Buffer.from(x, 'base64url').toString('base64'),
  };
}

const NAME_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function resolveNames(extra: Record<string, NameAnswer | NameAnswers> | undefined, ipv6: boolean): ResolvedNames {
  const out: ResolvedNames = {};
  const list = (a: NameAnswer | undefined): string[] => (a === undefined ? [] : typeof a === 'string' ? [a] : [...a]);
  for (const [name, spec] of Object.entries({ ...DEFAULT_NAMES, ...extra })) {
    if (!NAME_RE.test(name)) throw new Error(`lab: bad test name ${JSON.stringify(name)}`);
    const per: NameAnswers = typeof spec === 'string' || Array.isArray(spec) ? { isp: spec, gw1: spec, gw2: spec } : (spec as NameAnswers);
    const entry = { isp: list(per.isp), gw1: list(per.gw1), gw2: list(per.gw2) };
    for (const ip of [...entry.isp, ...entry.gw1, ...entry.gw2])
      if (isIP(ip) === 0) throw new Error(`lab: answer ${JSON.stringify(ip)} for ${name} is not an IP address`);
    if (!ipv6) for (const k of ['isp', 'gw1', 'gw2'] as const) entry[k] = entry[k].filter((ip) => isIP(ip) === 4);
    out[name.toLowerCase()] = entry;
  }
  return out;
}

/**
 * The Node that runs the lab's own helper servers (the echo server): test
 * infrastructure, not the code under test. `npm run test:arch` runs the test
 * files in an emulated Node and sets SPLITWAN_HELPER_NODE to this machine's
 * own, so the web server the tests talk to starts in a second, not in the
 * ~20 s an emulated Node takes (which outlasted the 5 s wait for it to listen).
 */
export function helperNode(): string {
  return process.env.SPLITWAN_HELPER_NODE || process.execPath;
}

function echoServerPath(): string {
  // Beside this file when run from source; from dist/lab, back at the source tree; from the
  // bundle (dist/bundle, scripts/bundle-daemon.mjs), dist/lab, where install.sh puts it.
  const candidates = [new URL('./echo-server.mjs', import.meta.url), new URL('../../lab/echo-server.mjs', import.meta.url), new URL('../lab/echo-server.mjs', import.meta.url)];
  for (const c of candidates) {
    const p = fileURLToPath(c);
    if (existsSync(p)) return p;
  }
  throw new Error('lab: echo-server.mjs not found next to lab.ts');
}

let labSeq = 0;

function pickId(): string {
  const base = `sw${process.pid % 10000}`;
  for (;;) {
    const n = labSeq++;
    if (n >= 26) throw new Error('lab: more than 26 labs in one process');
    const id = n === 0 ? base : `${base}${String.fromCharCode(97 + n)}`;
    const tag = id.slice(2);
    const taken =
      ['client', 'router', 'isp', 'gw1', 'gw2'].some((r) => existsSync(`/run/netns/${id}-${r}`)) ||
      ['swg', 'gwg'].some((p) => ['g1', 'g2'].some((g) => existsSync(`${WG_SOCKET_DIR}/${p}${tag}${g}.sock`)));
    if (!taken) return id; // someone else's (another process with the same pid % 10000): skip, never touch
  }
}

// ---------------------------------------------------------------------------
// createLab

export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const support = labSupported();
  if (!support.ok) throw new Error(`lab not supported: ${support.why}`);
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  let tPhase = t0;
  const mark = (phase: string) => {
    const now = performance.now();
    timings[phase] = Math.round(now - tPhase);
    tPhase = now;
  };

  const ipv6 = opts.withIpv6 ?? true;
  const routerTunnels = opts.routerTunnels ?? true;
  const secondWan = opts.secondWan ?? false;
  if (opts.handTunnel !== undefined && routerTunnels) throw new Error('lab: handTunnel needs routerTunnels: false');
  const names = resolveNames(opts.names, ipv6);
  const cnames = opts.cnames ?? {};
  for (const [alias, target] of Object.entries(cnames)) {
    if (!NAME_RE.test(alias) || !names[target.toLowerCase()]) throw new Error(`lab: cname ${alias} → ${target}: the target must be one of the lab's names`);
  }
  const id = pickId();
  const tag = id.slice(2);
  const ns: Record<NsRole, string> = {
    client: `${id}-client`,
    router: `${id}-router`,
    isp: `${id}-isp`,
    gw1: `${id}-gw1`,
    gw2: `${id}-gw2`,
  };
  const ourNs = new Set(Object.values(ns));
  const ifaces: LabInterfaces = {
    client: { lan: 'c0' },
    router: { lan: 'lan0', wan: 'wan0', gw1: `swg${tag}g1`, gw2: `swg${tag}g2` },
    isp: { router: 'r0', gw1: 'gw1', gw2: 'gw2' },
    gw1: { uplink: 'up0', tunnel: `gwg${tag}g1` },
    gw2: { uplink: 'up0', tunnel: `gwg${tag}g2` },
  };
  for (const n of [ifaces.router.gw1, ifaces.gw2.tunnel]) if (n.length > 15) throw new Error(`lab: interface name ${n} too long`);
  const handIf = opts.handTunnel !== undefined ? `awg${tag}` : null;

  const tmpDir = mkdtempSync(join(tmpdir(), `splitwan-lab-${id}-`)); // mode 0700
  const ispResolverLog = join(tmpDir, 'dns-isp.log');
  const gwResolverLogs: [string, string] = [join(tmpDir, 'dns-gw1.log'), join(tmpDir, 'dns-gw2.log')];

  // --- state for cleanup
  const createdNs = new Set<string>();
  const procs: Supervised[] = [];
  const wgIfs: string[] = []; // interfaces whose wireguard-go we started
  let destroying: Promise<void> | null = null;
  /** exec/curlEcho children not yet exited. */
  const commands = new Set<ChildProcess>();

  const syncCleanup = () => {
    // Last resort when the process exits without destroy(): kill our pids, drop our namespaces.
    for (const p of procs) p.signal('SIGKILL');
    for (const n of createdNs) {
      try {
        execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      } catch {
        // gone
      }
    }
    for (const i of wgIfs) {
      try {
        unlinkSync(`${WG_SOCKET_DIR}/${i}.sock`);
      } catch {
        // gone
      }
    }
    rmSync(tmpDir, { recursive: true, force: true });
  };
  process.on('exit', syncCleanup);

  const inNs = (n: string, argv: readonly string[]) => ['ip', 'netns', 'exec', n, ...argv];
  const x = (n: string, argv: readonly string[], o?: ExecOptions) => must(inNs(n, argv), o);
  const batch = (n: string, lines: readonly string[]) => must(['ip', '-n', n, '-batch', '-'], { input: lines.join('\n') + '\n' });

  // Node's 'pipe' stdio is a socketpair, and wg(8) fopen()s its config path: /dev/stdin on a
  // socket fails with ENXIO. So the config (with its private key) goes through a 0600 file in
  // our 0700 temp dir, removed as soon as wg has read it.
  let confSeq = 0;
  const wgSetconf = async (n: string, ifName: string, text: string) => {
    const file = join(tmpDir, `wg-${ifName}-${confSeq++}.conf`);
    writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
    try {
      await x(n, ['wg', 'setconf', ifName, file]);
    } finally {
      rmSync(file, { force: true });
    }
  };

  const start = (name: string, kind: Supervised['kind'], n: string, argv: readonly string[], env: NodeJS.ProcessEnv = process.env) => {
    if (destroying) throw new Error('lab is being destroyed');
    const p = new Supervised(name, kind, inNs(n, argv), env);
    procs.push(p);
    return p;
  };

  async function stopAll(kind: Supervised['kind']) {
    await Promise.all(procs.filter((p) => p.kind === kind).map((p) => p.stop(2000)));
  }

  async function destroyImpl(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (what: string, f: () => Promise<void> | void) => {
      try {
        await f();
      } catch (e) {
        errors.push(new Error(`destroy: ${what}: ${(e as Error).message}`));
      }
    };
    // Commands still running in the lab (a curl or dig interrupted by a test's
    // end or a Ctrl-C) would outlive it in a deleted namespace: killed by pid.
    await attempt('commands in flight', () => killCommands(commands));
    // wireguard-go first: `ip netns del` does not stop it (its TUN fd keeps the netns alive).
    await attempt('wireguard-go', () => stopAll('wireguard-go'));
    await attempt('dnsmasq/echo', () => Promise.all([stopAll('dnsmasq'), stopAll('echo')]).then(() => undefined));
    for (const p of procs) if (p.running) errors.push(new Error(`destroy: ${p.name} (pid ${p.pid}) survived SIGKILL`));
    await attempt('namespaces', () =>
      settleAll(
        [...createdNs].map(async (n) => {
          const r = await run(['ip', 'netns', 'del', n]);
          if (r.code !== 0 && existsSync(`/run/netns/${n}`)) throw new LabCommandError(['ip', 'netns', 'del', n], r.code, r.stderr);
          createdNs.delete(n);
        }),
      ),
    );
    await attempt('sockets', () => {
      // A wireguard-go that exited on SIGTERM removes its socket; after SIGKILL it stays. Names are ours (unique per pid).
      for (const i of wgIfs) {
        const s = `${WG_SOCKET_DIR}/${i}.sock`;
        if (existsSync(s)) unlinkSync(s);
      }
    });
    await attempt('temp dir', () => rmSync(tmpDir, { recursive: true, force: true }));
    process.removeListener('exit', syncCleanup);
    if (errors.length > 0) throw new AggregateError(errors, `lab ${id}: destroy had ${errors.length} problem(s): ${errors.map((e) => (e as Error).message).join('; ')}`);
  }

  const destroy = (): Promise<void> => {
    destroying ??= destroyImpl();
    return destroying;
  };

  /** Makes the hand-made tunnel (handTunnel), as another program would: set in step 4. */
  let makeHandTunnel: (() => Promise<void>) | null = null;

  const checkNs = (n: string) => {
    if (!ourNs.has(n)) throw new Error(`lab ${id}: ${JSON.stringify(n)} is not one of this lab's namespaces`);
  };

  // --- keys
  const keys = {
    r1: wgKeyPair(),
    r2: wgKeyPair(),
    g1: wgKeyPair(),
    g2: wgKeyPair(),
  };
  const gwSpec = [
    { name: 'gw1' as const, ns: ns.gw1, gatewayIf: ifaces.gw1.tunnel, routerIf: ifaces.router.gw1, gk: keys.g1, rk: keys.r1, uplink: ADDR.gw1Uplink, log: gwResolverLogs[0] },
    { name: 'gw2' as const, ns: ns.gw2, gatewayIf: ifaces.gw2.tunnel, routerIf: ifaces.router.gw2, gk: keys.g2, rk: keys.r2, uplink: ADDR.gw2Uplink, log: gwResolverLogs[1] },
  ];

  const dnsmasq = (name: string, n: string, listen: string[], log: string, which: 'isp' | 'gw1' | 'gw2') => {
    const argv = [
      'dnsmasq',
      '--no-daemon', // foreground, no pid file, no user change
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--log-queries',
      `--log-facility=${log}`,
      '--bind-interfaces',
      '--port=53',
      ...(opts.resolverTtl ? [`--local-ttl=${opts.resolverTtl}`] : []),
      ...listen.map((a) => `--listen-address=${a}`),
    ];
    const targets = new Set(Object.values(cnames).map((t) => t.toLowerCase()));
    for (const [nm, e] of Object.entries(names)) {
      if (targets.has(nm)) {
        if (e[which].length) argv.push(`--host-record=${nm},${e[which].join(',')}`);
      } else for (const ip of e[which]) argv.push(`--address=/${nm}/${ip}`);
    }
    for (const [alias, target] of Object.entries(cnames)) argv.push(`--cname=${alias},${target}`);
    const p = start(name, 'dnsmasq', n, argv);
    return p.waitUntil(`${name} to start`, () => /started, version/.test(p.tail), 5000);
  };

  try {
    // 1. namespaces
    await settleAll(
      Object.values(ns).map(async (n) => {
        await must(['ip', 'netns', 'add', n]);
        createdNs.add(n);
      }),
    );
    mark('netns');

    // 2. links (veths are created straight into their namespaces), wireguard-go, gateway NAT, sysctls
    const wgStarts: Promise<void>[] = [];
    const startWg = (n: string, ifName: string) => {
      wgIfs.push(ifName);
      const p = start(`wireguard-go ${ifName}`, 'wireguard-go', n, ['wireguard-go', '-f', ifName], { ...process.env, WG_PROCESS_FOREGROUND: '1' });
      wgStarts.push(p.waitUntil(`${WG_SOCKET_DIR}/${ifName}.sock`, () => existsSync(`${WG_SOCKET_DIR}/${ifName}.sock`), 5000));
    };
    for (const g of gwSpec) startWg(g.ns, g.gatewayIf);
    if (routerTunnels) for (const g of gwSpec) startWg(ns.router, g.routerIf);

    const fwd = ['sysctl', '-qw', 'net.ipv4.ip_forward=1', ...(ipv6 ? ['net.ipv6.conf.all.forwarding=1'] : [])];
    await settleAll([
      batch(ns.client, ['link set lo up', `link add c0 type veth peer name lan0 netns ${ns.router}`]),
      batch(ns.router, ['link set lo up', `link add wan0 type veth peer name r0 netns ${ns.isp}`, ...(secondWan ? [`link add wan1 type veth peer name r1 netns ${ns.isp}`] : [])]),
      batch(ns.gw1, ['link set lo up', `link add up0 type veth peer name gw1 netns ${ns.isp}`]),
      batch(ns.gw2, ['link set lo up', `link add up0 type veth peer name gw2 netns ${ns.isp}`]),
      ...[ns.router, ns.isp, ns.gw1, ns.gw2].map((n) => x(n, fwd)),
      ...[ns.gw1, ns.gw2].map((n) =>
        x(n, ['nft', '-f', '-'], {
          input: `table inet swlab_gw {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname "up0" masquerade\n\t}\n}\n`,
        }),
      ),
      ...wgStarts,
    ]);
    mark('links+wireguard-go');

    // 3. addresses and routes; gateway WireGuard configs
    const a = (addr: string, dev: string, plen: number, v6 = false) => (v6 ? (ipv6 ? [`addr add ${addr}/${plen} dev ${dev} nodad`] : []) : [`addr add ${addr}/${plen} dev ${dev}`]);
    const v6only = (lines: string[]) => (ipv6 ? lines : []);
    const gwConf = (g: (typeof gwSpec)[number]) =>
      `[Interface]\nPrivateKey = ${g.gk.privateKey}\nListenPort = ${WG_PORT}\n\n[Peer]\nPublicKey = ${g.rk.publicKey}\nAllowedIPs = ${ADDR.tunnelRouter.v4}/32, ${ADDR.tunnelRouter.v6}/128\n`;
    const routerConf = (g: (typeof gwSpec)[number]) =>
      `[Interface]\nPrivateKey = ${g.rk.privateKey}\n\n[Peer]\nPublicKey = ${g.gk.publicKey}\nEndpoint = ${g.uplink.v4}:${WG_PORT}\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n`;
    await settleAll([
      batch(ns.client, [
        'link set c0 up',
        ...a(ADDR.client.v4, 'c0', 24),
        ...a(ADDR.client.v6, 'c0', 64, true),
        `route add default via ${ADDR.routerLan.v4}`,
        ...v6only([`route add ::/0 via ${ADDR.routerLan.v6}`]),
      ]),
      batch(ns.router, [
        'link set lan0 up',
        'link set wan0 up',
        ...a(ADDR.routerLan.v4, 'lan0', 24),
        ...a(ADDR.routerLan.v6, 'lan0', 64, true),
        ...a(ADDR.routerWan.v4, 'wan0', 24),
        ...a(ADDR.routerWan.v6, 'wan0', 64, true),
        `route add default via ${ADDR.ispToRouter.v4}`,
        ...v6only([`route add ::/0 via ${ADDR.ispToRouter.v6}`]),
        // The second link has no default route of its own (splitwan's config names its next hop).
        ...(secondWan ? ['link set wan1 up', ...a(ADDR.routerWan2.v4, 'wan1', 24), ...a(ADDR.routerWan2.v6, 'wan1', 64, true)] : []),
      ]),
      batch(ns.isp, [
        ...['r0', 'gw1', 'gw2'].map((d) => `link set ${d} up`),
        ...(secondWan ? ['link set r1 up', ...a(ADDR.ispToRouter2.v4, 'r1', 24), ...a(ADDR.ispToRouter2.v6, 'r1', 64, true)] : []),
        ...a(ADDR.ispToRouter.v4, 'r0', 24),
        ...a(ADDR.ispToRouter.v6, 'r0', 64, true),
        ...a(ADDR.ispToGw1.v4, 'gw1', 24),
        ...a(ADDR.ispToGw1.v6, 'gw1', 64, true),
        ...a(ADDR.ispToGw2.v4, 'gw2', 24),
        ...a(ADDR.ispToGw2.v6, 'gw2', 64, true),
        ...a(ADDR.web.v4, 'lo', 32),
        ...a(ADDR.web.v6, 'lo', 128, true),
        ...a(ADDR.ispResolver.v4, 'lo', 32),
        ...a(ADDR.ispResolver.v6, 'lo', 128, true),
      ]),
      ...gwSpec.map(async (g) => {
        const up = g.name === 'gw1' ? ADDR.ispToGw1 : ADDR.ispToGw2;
        await batch(g.ns, [
          'link set up0 up',
          ...a(g.uplink.v4, 'up0', 24),
          ...a(g.uplink.v6, 'up0', 64, true),
          `route add default via ${up.v4}`,
          ...v6only([`route add ::/0 via ${up.v6}`]),
        ]);
        await wgSetconf(g.ns, g.gatewayIf, gwConf(g));
        await batch(g.ns, [
          `link set ${g.gatewayIf} mtu ${TUNNEL_MTU} up`,
          ...a(ADDR.tunnelGateway.v4, g.gatewayIf, 24),
          ...a(ADDR.tunnelGateway.v6, g.gatewayIf, 64, true),
        ]);
      }),
    ]);
    mark('addresses+wg config');

    if (handIf !== null) {
      const g = gwSpec[opts.handTunnel!]!;
      makeHandTunnel = async () => {
        if (!wgIfs.includes(handIf)) wgIfs.push(handIf);
        const p = start(`wireguard-go ${handIf}`, 'wireguard-go', ns.router, ['wireguard-go', '-f', handIf], { ...process.env, WG_PROCESS_FOREGROUND: '1' });
        await p.waitUntil(`${WG_SOCKET_DIR}/${handIf}.sock`, () => existsSync(`${WG_SOCKET_DIR}/${handIf}.sock`), 5000);
        // wg-quick's way: the tunnel's own UDP carries a mark of its own, so it is nobody else's traffic.
        await wgSetconf(ns.router, handIf, routerConf(g).replace('[Interface]\n', '[Interface]\nFwMark = 51820\n'));
        await batch(ns.router, [`link set ${handIf} mtu ${TUNNEL_MTU} up`, ...a(ADDR.tunnelRouter.v4, handIf, 32), ...a(ADDR.tunnelRouter.v6, handIf, 128, true)]);
      };
    }

    // 4. servers; router tunnels configured and up (after the gateways listen)
    const v = (p: Pair) => (ipv6 ? [p.v4, p.v6] : [p.v4]);
    // HTTPS too (for the transparent proxy's SNI tests), with a throwaway self-signed certificate.
    const tlsDir = join(tmpDir, 'echo-tls');
    const echoEnv: NodeJS.ProcessEnv = { ...process.env };
    if (haveOpenssl()) {
      execFileSync('mkdir', ['-m', '0700', tlsDir]);
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=web.lab.test', '-addext', 'subjectAltName=DNS:web.lab.test,DNS:*.lab.test,DNS:*.where.lab.test', '-keyout', join(tlsDir, 'key.pem'), '-out', join(tlsDir, 'cert.pem')], { stdio: 'ignore' });
      echoEnv.ECHO_TLS_DIR = tlsDir;
    }
    const echo = start('echo-server', 'echo', ns.isp, [helperNode(), echoServerPath(), ...v(ADDR.web)], echoEnv);
    await settleAll([
      echo.waitUntil('echo-server to listen', () => /^ready/m.test(echo.tail), 5000),
      dnsmasq('dnsmasq isp', ns.isp, v(ADDR.ispResolver), ispResolverLog, 'isp'),
      ...gwSpec.map((g) => dnsmasq(`dnsmasq ${g.name}`, g.ns, v(ADDR.tunnelGateway), g.log, g.name)),
      ...(routerTunnels
        ? [
            (async () => {
              // wireguard-go treats a fresh device as up: with PersistentKeepalive, setconf sends the
              // first initiation at once. It must come after the gateways listen and the router has
              // its uplink, or it is lost and the retry comes 5 s later.
              await settleAll(gwSpec.map((g) => wgSetconf(ns.router, g.routerIf, routerConf(g))));
              await batch(
                ns.router,
                gwSpec.flatMap((g) => [
                  `link set ${g.routerIf} mtu ${TUNNEL_MTU} up`,
                  ...a(ADDR.tunnelRouter.v4, g.routerIf, 32),
                  ...a(ADDR.tunnelRouter.v6, g.routerIf, 128, true),
                ]),
              );
            })(),
          ]
        : []),
      ...(makeHandTunnel ? [makeHandTunnel()] : []),
    ]);
    mark('servers+tunnels up');
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }

  const latestHandshake = async (i: GatewayIndex): Promise<number> => {
    const g = gwSpec[i]!;
    const r = await must(inNs(ns.router, ['wg', 'show', g.routerIf, 'latest-handshakes']));
    const line = r.stdout.split('\n').find((l) => l.startsWith(g.gk.publicKey));
    return Number(line?.split('\t')[1] ?? 0) || 0;
  };

  const waitHandshake = async (i: GatewayIndex, o: { after?: number; timeoutMs?: number } = {}): Promise<number> => {
    if (!routerTunnels) throw new Error('lab: created with routerTunnels: false');
    const timeoutMs = o.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const t = await latestHandshake(i);
      if (t > (o.after ?? 0)) return t;
      const wg = procs.find((p) => p.name === `wireguard-go ${gwSpec[i]!.routerIf}`);
      if (wg && !wg.running) throw new Error(wg.describeExit());
      if (Date.now() > deadline) throw new Error(`lab ${id}: no handshake with ${gwSpec[i]!.name} within ${timeoutMs} ms`);
      await sleep(10);
    }
  };

  const gateways = gwSpec.map(
    (g): LabGateway => ({
      name: g.name,
      ns: g.ns,
      routerIf: g.routerIf,
      gatewayIf: g.gatewayIf,
      publicKey: g.gk.publicKey,
      routerPublicKey: g.rk.publicKey,
      endpoint: `${g.uplink.v4}:${WG_PORT}`,
      uplink: { ...g.uplink },
      resolverLog: g.log,
      configText: [
        '[Interface]',
        `# splitwan lab ${id}: router side of ${g.name}`,
        `PrivateKey = ${g.rk.privateKey}`,
        `Address = ${ADDR.tunnelRouter.v4}/32${ipv6 ? `, ${ADDR.tunnelRouter.v6}/128` : ''}`,
        `DNS = ${ADDR.tunnelGateway.v4}${ipv6 ? `, ${ADDR.tunnelGateway.v6}` : ''}`,
        `MTU = ${TUNNEL_MTU}`,
        '',
        '[Peer]',
        `PublicKey = ${g.gk.publicKey}`,
        `AllowedIPs = 0.0.0.0/0${ipv6 ? ', ::/0' : ''}`,
        `Endpoint = ${g.uplink.v4}:${WG_PORT}`,
        'PersistentKeepalive = 25',
        '',
      ].join('\n'),
    }),
  ) as [LabGateway, LabGateway];

  const lab: Lab = {
    id,
    ipv6,
    ns,
    addr: structuredClone(ADDR) as LabAddresses,
    ifaces,
    gateways,
    names,
    ispResolverLog,
    gwResolverLogs,
    tmpDir,
    timings,
    pids: () => procs.filter((p) => p.running).map((p) => p.pid),
    sockets: () => wgIfs.map((i) => `${WG_SOCKET_DIR}/${i}.sock`),
    exec(n, argv, o) {
      checkNs(n);
      if (destroying) return Promise.reject(new Error(`lab ${id} is destroyed`));
      return run(inNs(n, argv), o, commands);
    },
    async curlEcho(fromNs, url, o = {}) {
      checkNs(fromNs);
      if (destroying) throw new Error(`lab ${id} is destroyed`);
      const t = o.timeoutMs ?? 3000;
      const argv = ['curl', '-sS', '--globoff', '--noproxy', '*', '--max-time', (t / 1000).toFixed(3)];
      if (o.interface) argv.push('--interface', o.interface);
      argv.push(...(o.extraArgs ?? []), url);
      const r = await run(inNs(fromNs, argv), { timeoutMs: t + 2000 }, commands);
      if (r.code !== 0) return { error: `curl exit ${r.code}: ${r.stderr.trim()}` };
      try {
        const j = JSON.parse(r.stdout) as Partial<EchoReply>;
        if (typeof j.remote !== 'string') return { error: `not an echo reply: ${r.stdout.slice(0, 200)}` };
        return { remote: j.remote, host: String(j.host ?? ''), local: String(j.local ?? ''), sni: String(j.sni ?? '') };
      } catch {
        return { error: `not an echo reply: ${r.stdout.slice(0, 200)}` };
      }
    },
    async blackholeGateway(i, on) {
      if (destroying) throw new Error(`lab ${id} is destroyed`);
      const g = gwSpec[i]!;
      const text = on
        ? [
            `table inet ${BLACKHOLE_TABLE}`,
            `flush table inet ${BLACKHOLE_TABLE}`,
            `table inet ${BLACKHOLE_TABLE} {`,
            '\tchain in {',
            '\t\ttype filter hook input priority -300; policy accept;',
            `\t\tudp dport ${WG_PORT} drop`,
            '\t}',
            '\tchain out {',
            '\t\ttype filter hook output priority -300; policy accept;',
            `\t\tudp sport ${WG_PORT} drop`,
            '\t}',
            '}',
            '',
          ].join('\n')
        : // create-then-delete in one transaction: idempotent without a "does it exist" check
          `table inet ${BLACKHOLE_TABLE}\ndelete table inet ${BLACKHOLE_TABLE}\n`;
      await x(g.ns, ['nft', '-f', '-'], { input: text });
    },
    async blackholeWan(i, on) {
      if (destroying) throw new Error(`lab ${id} is destroyed`);
      if (i === 1 && !secondWan) throw new Error('lab: created without secondWan');
      const dev = i === 0 ? 'r0' : 'r1';
      const table = `${WAN_BLACKHOLE_TABLE}${i}`;
      const text = on
        ? [
            `table inet ${table}`,
            `flush table inet ${table}`,
            `table inet ${table} {`,
            '\tchain pre {',
            '\t\ttype filter hook prerouting priority -300; policy accept;',
            `\t\tiifname "${dev}" drop`,
            '\t}',
            '\tchain post {',
            '\t\ttype filter hook postrouting priority -300; policy accept;',
            `\t\toifname "${dev}" drop`,
            '\t}',
            '}',
            '',
          ].join('\n')
        : `table inet ${table}\ndelete table inet ${table}\n`;
      await x(ns.isp, ['nft', '-f', '-'], { input: text });
    },
    handTunnelIf: handIf,
    async handTunnel(up) {
      if (destroying) throw new Error(`lab ${id} is destroyed`);
      if (handIf === null || makeHandTunnel === null) throw new Error('lab: created without handTunnel');
      if (up) await makeHandTunnel();
      else {
        await x(ns.router, ['ip', 'link', 'del', handIf]);
        // wireguard-go exits when its link goes.
        await Promise.all(procs.filter((p) => p.name === `wireguard-go ${handIf}` && p.running).map((p) => p.stop(2000)));
      }
    },
    latestHandshake,
    waitHandshake,
    destroy,
  };

  try {
    if (routerTunnels) await settleAll([waitHandshake(0, { timeoutMs: opts.handshakeTimeoutMs }), waitHandshake(1, { timeoutMs: opts.handshakeTimeoutMs })]);
    mark('handshakes');
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }
  if (process.env.SPLITWAN_LAB_DEBUG) for (const p of procs) process.stderr.write(`--- ${p.name} (pid ${p.pid})\n${p.tail}\n`);
  timings.total = Math.round(performance.now() - t0);
  return lab;
}
