// `splitwan demo`: the whole product on a fresh machine, in a throwaway lab.
//
//  [client] 10.99.1.2 ── lan0 [router: splitwan run] wan0 10.99.2.2 ── [isp] web server 10.99.9.9 (echoes the source it sees)
//                              ╠══ WireGuard ══ [gw1] ── isp (seen as 10.99.3.2)      resolver 10.99.9.53
//                              ╚══ WireGuard ══ [gw2] ── isp (seen as 10.99.4.2)
//
// It builds the namespace lab of lab/lab.ts (compiled to dist/lab),
// writes a config into the lab's private temp dir, runs `splitwan run` as a
// child process in the router's namespace and shows, in plain words:
//   1. where each name went (the source address the web server saw),
//   2. which resolver answered (each lab resolver answers *.where.lab.test
//      with its own address),
//   3. failover when the active gateway goes dark, with its measured time,
//   4. the kill switch with both gateways dark (and nothing leaking),
//   5. recovery, back to the preferred gateway.
// Then everything is removed: the daemon (by the pid we started), its
// wireguard-go processes (by their interface names, which carry the lab id),
// the lab (namespaces, processes, temp dir). Also on SIGINT/SIGTERM (exit 130).
//
// --keep: after the steps the lab and the daemon stay up and the demo stays in
// the foreground, printing the commands to poke at it; Ctrl-C (or SIGTERM to
// the pid it prints) removes everything, and the exit code is the steps'.
//
// The web server's extra addresses (one per name, so each name is routed on
// its own) are DNATed to it inside the isp namespace; a counter there (before
// the DNAT) sees any request to a tunnel destination that arrives from the
// router's WAN: a leak.
import { spawn, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { createWriteStream, existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EchoReply, Lab } from '../../lab/lab.js';
import { Exit, type Io } from '../cli-io.js';

export interface DemoOptions {
  /** Leave the lab and the daemon up after the steps, until SIGINT/SIGTERM. */
  keep: boolean;
  io: Io;
  /** Where SIGINT/SIGTERM come from (default: process). */
  signals?: Pick<EventEmitter, 'on' | 'off'>;
}

/** Extra web addresses (DNATed to the echo server in the isp namespace), one per demo name. */
const WEB = {
  out: '10.99.9.21',
  video: '10.99.9.22',
  in: '10.99.9.23',
  pinned: '10.99.9.24',
  blocked: '10.99.9.25',
} as const;

const HEALTH = { interval: '1s', timeout: '800ms', failAfter: 3, recoverAfter: 3, failbackHold: '2s' } as const;
const WG_SOCKET_DIR = '/var/run/wireguard';

class Interrupted extends Error {
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

interface LogLine {
  time: number;
  msg: string;
}

/** The daemon child: `ip netns exec NS node bin/splitwan run --config CFG` (ip execs: the pid is node's). */
class DaemonChild {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  tail = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<void>;
  private buf = '';

  constructor(ns: string, bin: string, cfg: string, logFile: WriteStream) {
    // Its own process group: a Ctrl-C on the terminal reaches the demo, which stops the daemon in order.
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, bin, 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const feed = (d: string) => {
      logFile.write(d);
      this.tail = (this.tail + d).slice(-16_384);
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        try {
          const j = JSON.parse(line) as { time?: number; msg?: string };
          if (typeof j.msg === 'string') this.lines.push({ time: j.time ?? Date.now(), msg: j.msg });
        } catch {
          if (line.trim()) this.lines.push({ time: Date.now(), msg: line });
        }
      }
    };
    this.child.stdout!.setEncoding('utf8').on('data', feed);
    this.child.stderr!.setEncoding('utf8').on('data', feed);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e) => feed(`\n${e.message}\n`));
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exit === null && this.child.pid !== undefined;
  }

  /** The first log line at or after `since` (epoch ms) whose message passes `test`. */
  find(test: (msg: string) => boolean, since = 0): LogLine | undefined {
    return this.lines.find((l) => l.time >= since && test(l.msg));
  }

  describe(): string {
    return `splitwan run (pid ${this.pid}) ${this.exit ? `exited (code ${this.exit.code}, signal ${this.exit.signal})` : 'is running'}; its last output:\n${indent(this.tail.trim().split('\n').slice(-15).join('\n'), '    ')}`;
  }

  /** SIGTERM (the daemon removes what it installed), SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return;
    const kill = (s: NodeJS.Signals) => {
      try {
        process.kill(this.pid, s);
      } catch {
        /* gone */
      }
    };
    kill('SIGTERM');
    const timedOut = await Promise.race([this.exited.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut && this.running) {
      kill('SIGKILL');
      await Promise.race([this.exited, sleep(5000)]);
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const indent = (text: string, pad: string) =>
  text
    .split('\n')
    .map((l) => (l ? pad + l : l))
    .join('\n');

/** bin/splitwan, from daemon/commands (source, under vitest) or dist/daemon/commands (built). */
function findBin(): string {
  for (const rel of ['../../bin/splitwan', '../../../bin/splitwan']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error('bin/splitwan not found next to this module');
}

/** wireguard-go processes serving these interfaces (the daemon's, if it had to be killed): by argv, our names only. */
function killWireguardGo(ifnames: readonly string[]): void {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (argv[0]?.split('/').pop() === 'wireguard-go' && ifnames.includes(argv[argv.length - 1] ?? '')) {
      try {
        process.kill(Number(d), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  for (const i of ifnames) {
    try {
      unlinkSync(`${WG_SOCKET_DIR}/${i}.sock`);
    } catch {
      /* gone */
    }
  }
}

/** `splitwan demo`; resolves to the exit code. */
export async function demoCommand(opts: DemoOptions): Promise<number> {
  const { io } = opts;
  const signals = opts.signals ?? process;
  if (process.platform !== 'linux') {
    io.err(`splitwan demo needs Linux (network namespaces); this is ${process.platform}\n`);
    return Exit.CONFIG;
  }
  if (process.getuid?.() !== 0) {
    io.err('splitwan demo builds network namespaces, WireGuard tunnels and nftables rules, and needs root: sudo splitwan demo\n');
    return Exit.NEEDS_ROOT;
  }
  let labMod: typeof import('../../lab/lab.js');
  try {
    labMod = await import('../../lab/lab.js');
  } catch (e) {
    io.err(`splitwan demo: the lab (dist/lab/lab.js) is not part of this installation: ${(e as Error).message}\nRun it from a source checkout after npm ci: sudo node bin/splitwan demo\n`);
    return Exit.SOFTWARE;
  }
  const support = labMod.labSupported();
  if (!support.ok) {
    io.err(
      `splitwan demo cannot run here: it ${support.why}.\n` +
        'It needs: ip (iproute2), wg (wireguard-tools), wireguard-go, nft (nftables), dnsmasq, curl, dig (dnsutils / bind-tools).\n',
    );
    return support.why.startsWith('needs root') ? Exit.NEEDS_ROOT : Exit.CONFIG;
  }

  // What the finally below removes.
  let labPromise: Promise<Lab> | null = null;
  let lab: Lab | null = null;
  let daemon: DaemonChild | null = null;
  let logFile: WriteStream | null = null;
  let gwIfs: string[] = [];

  // ------------------------------------------------------------------ interruption
  const ac = new AbortController();
  let cleaningUp = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (cleaningUp) {
      io.err(`\n(${sig}: still cleaning up, one moment)\n`);
      return;
    }
    if (!ac.signal.aborted) {
      io.out(`\n${sig}: stopping the demo and removing the lab ...\n`);
      ac.abort(new Interrupted(sig));
    }
  };
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  signals.on('SIGINT', onInt);
  signals.on('SIGTERM', onTerm);
  const cancelled = new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason as Error), { once: true }));
  cancelled.catch(() => undefined);
  /** Awaits p unless the demo is interrupted first (p keeps going; its failure is ignored). */
  const guard = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => undefined);
    return Promise.race([p, cancelled]);
  };
  const pause = (ms: number) => guard(sleep(ms));
  /** Output of the steps: silenced once interrupted (a step may still be finishing in the background). */
  const say = (text: string) => {
    if (!ac.signal.aborted) io.out(text);
  };

  const until = async <V>(what: string, f: () => V | null | undefined | false | Promise<V | null | undefined | false>, ms: number, stepMs = 100): Promise<V> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await guard(Promise.resolve(f()));
      if (v !== null && v !== undefined && v !== false) return v;
      if (daemon && !daemon.running) throw new Error(`the daemon stopped while waiting for ${what}: ${daemon.describe()}`);
      if (Date.now() > end) throw new Error(`timed out after ${secs(ms)} waiting for ${what}`);
      await pause(stepMs);
    }
  };

  const problems: string[] = [];
  const check = (ok: boolean, unexpected: string): string => {
    if (!ok) problems.push(unexpected);
    return ok ? 'ok' : `UNEXPECTED: ${unexpected}`;
  };

  const exitGuard = () => {
    // Last resort if this process exits without the finally below: our daemon and its tunnels.
    if (daemon?.running) {
      try {
        process.kill(daemon.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    killWireguardGo(gwIfs);
  };
  process.on('exit', exitGuard);

  let code: number = Exit.OK;
  const t00 = Date.now();
  try {
    say('splitwan demo: a LAN client, a router running splitwan with two WAN links, an ISP and two WireGuard gateways, each in its own network namespace; all of it is removed at the end.\n\n');

    // -------------------------------------------------------------- the lab
    say('Building the lab (namespaces, veths, WireGuard gateways, resolvers, web server) ... ');
    const tLab = Date.now();
    labPromise = labMod.createLab({
      routerTunnels: false, // splitwan brings the router's tunnels up itself
      secondWan: true, // a second uplink: the WAN failover of step 6
      names: {
        'out.lab.test': WEB.out,
        'edge.cdn.lab.test': WEB.video,
        'in.lab.test': WEB.in,
        'pinned.lab.test': WEB.pinned,
        'blocked.lab.test': WEB.blocked,
      },
      cnames: { 'video.lab.test': 'edge.cdn.lab.test' },
    });
    lab = await guard(labPromise);
    const L = lab;
    const tag = L.id.slice(2);
    const GW = [`gw1-${tag}`, `gw2-${tag}`] as const; // splitwan's names: interfaces swg-gw1-<tag>, unique on this machine
    gwIfs = GW.map((n) => `swg-${n}`);
    const up = [L.gateways[0].uplink.v4, L.gateways[1].uplink.v4] as const;
    const wanSeen = L.addr.routerWan.v4;
    const web = L.addr.web.v4;
    const routerDns = L.addr.routerLan.v4;
    say(`done in ${secs(Date.now() - tLab)} (lab ${L.id})\n\n`);
    say(
      indent(
        [
          `[client] ${L.addr.client.v4} ── lan0 ${routerDns} [router: splitwan] wan0 ${wanSeen} ── [isp] web server ${web}, resolver ${L.addr.ispResolver.v4}`,
          `                                                     wan1 ${L.addr.routerWan2.v4} ── [isp]   (a second uplink, "lte")`,
          `                                  ╠══ WireGuard ══ [gw1] ── isp   (the web server sees ${up[0]})`,
          `                                  ╚══ WireGuard ══ [gw2] ── isp   (the web server sees ${up[1]})`,
          `namespaces: ${Object.values(L.ns).join(', ')}`,
        ].join('\n'),
        '    ',
      ) + '\n\n',
    );

    // The isp: one address per demo name, DNATed to the web server; a leak counter before the DNAT.
    const tunnelDsts = [web, WEB.in, WEB.pinned];
    const nft = await guard(
      L.exec(L.ns.isp, ['nft', '-f', '-'], {
        input: [
          'table ip splitwan_demo {',
          '\tchain watch {',
          '\t\ttype filter hook prerouting priority -300; policy accept;',
          `\t\tiifname { "${L.ifaces.isp.router}", "r1" } ip daddr { ${tunnelDsts.join(', ')} } counter`,
          `\t\tiifname { "${L.ifaces.isp.router}", "r1" } ip daddr { ${tunnelDsts.join(', ')} } tcp flags & rst == rst counter`,
          `\t\tiifname { "${L.ifaces.isp.router}", "r1" } ip daddr { ${tunnelDsts.join(', ')} } tcp flags & (syn|ack) == syn counter`,
          '\t}',
          '\tchain pre {',
          '\t\ttype nat hook prerouting priority dstnat; policy accept;',
          `\t\tip daddr { ${Object.values(WEB).join(', ')} } tcp dport 80 dnat to ${web}`,
          '\t}',
          '}',
          '',
        ].join('\n'),
      }),
    );
    if (nft.code !== 0) throw new Error(`nft in ${L.ns.isp}: ${nft.stderr.trim()}`);
    /** Packets for tunnel destinations seen arriving from the router's WAN: all, TCP resets, new TCP connections. */
    const counters = async (): Promise<[number, number, number]> => {
      const r = await L.exec(L.ns.isp, ['nft', 'list', 'chain', 'ip', 'splitwan_demo', 'watch']);
      const c = [...r.stdout.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
      if (c.length !== 3) throw new Error(`reading the leak counters: ${r.stderr.trim() || r.stdout.trim()}`);
      return c as [number, number, number];
    };
    const leaks = async (): Promise<number> => (await counters())[0];
    /** "N ok", or "N UNEXPECTED: ..." with what the packets were. */
    const leakVerdict = async (n: number, when: string): Promise<string> =>
      `${n} ${check(n === 0, `${n} packet(s) for tunnel destinations left by the WAN ${when}${n ? await leakDetail() : ''}`)}`;
    /** After a leak: what it was, to tell a client's connection from a reset the router sent. */
    const leakDetail = async (): Promise<string> => {
      const [all, rst, syn] = await counters();
      return ` (so far ${all} packet(s): ${syn} new TCP connection(s), ${rst} TCP reset(s), ${all - syn - rst} other)`;
    };

    // -------------------------------------------------------------- the config
    const dir = L.tmpDir;
    writeFileSync(join(dir, 'gw1.conf'), L.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), L.gateways[1].configText, { mode: 0o600 });
    const cfg = join(dir, 'config.yaml');
    const cfgText = [
      `# splitwan demo, lab ${L.id}: the router's config. ${GW[0]} and ${GW[1]} are the lab's gateways gw1 and gw2.`,
      'mode: router',
      `lan: [${L.ifaces.router.lan}]`,
      'breakout:',
      '  links:',
      `    - { name: fiber, interface: ${L.ifaces.router.wan}, gateway: ${L.addr.ispToRouter.v4}, dns: [${L.addr.ispResolver.v4}], priority: 1 }`,
      `    - { name: lte, interface: wan1, gateway: ${L.addr.ispToRouter2.v4}, dns: [${L.addr.ispResolver.v4}], priority: 2 }`,
      'tunnel:',
      '  gateways:',
      `    - { name: ${GW[0]}, config: gw1.conf, priority: 1 }`,
      `    - { name: ${GW[1]}, config: gw2.conf, priority: 2 }`,
      `health: { interval: ${HEALTH.interval}, timeout: ${HEALTH.timeout}, failAfter: ${HEALTH.failAfter}, recoverAfter: ${HEALTH.recoverAfter}, failbackHold: ${HEALTH.failbackHold} }`,
      `stateDir: ${join(dir, 'state')}`,
      `control: { socket: ${join(dir, 'control.sock')} }`,
      'rules:',
      '  - domains: [out.lab.test, video.lab.test, out.where.lab.test]',
      '    via: breakout',
      '  - domains: [pinned.lab.test, pinned.where.lab.test]',
      `    via: ${GW[1]}`,
      '  - domains: [blocked.lab.test]',
      '    via: block',
      'default: tunnel',
      '',
    ].join('\n');
    writeFileSync(cfg, cfgText, { mode: 0o600 });
    say(`The config (${cfg}; the gateways' wg-quick files gw1.conf and gw2.conf beside it):\n${indent(cfgText.trimEnd(), '    ')}\n\n`);

    // -------------------------------------------------------------- the daemon
    const bin = findBin();
    logFile = createWriteStream(join(dir, 'daemon.log'), { mode: 0o600 });
    const tStart = Date.now();
    say(`Starting splitwan run in ${L.ns.router} ... `);
    daemon = new DaemonChild(L.ns.router, bin, cfg, logFile);
    const D = daemon;
    await until('"splitwan running"', () => D.find((m) => m === 'splitwan running'), 30_000, 50);
    say(`running (pid ${D.pid}); waiting for both gateways to be up ... `);
    await until('both gateways up', () => GW.every((g) => D.find((m) => m === `gateway ${g} is up`)), 30_000, 50);

    /** One request from the client to an address (no name: the default path unless tagged); who the web server saw. */
    const fetchFrom = async (ip: string, timeoutMs: number, host = ip): Promise<{ remote: string | null; error: string | null; ms: number }> => {
      const t = Date.now();
      const r: EchoReply | { error: string } = await L.curlEcho(L.ns.client, `http://${host}/`, {
        timeoutMs,
        ...(host !== ip ? { extraArgs: ['--resolve', `${host}:80:${ip}`] } : {}),
      });
      return 'error' in r ? { remote: null, error: r.error, ms: Date.now() - t } : { remote: r.remote, error: null, ms: Date.now() - t };
    };
    await until('the default path through gw1', async () => (await fetchFrom(web, 1000)).remote === up[0], 20_000, 200);
    say(`both up, traffic on gw1 (${secs(Date.now() - tStart)})\n\n`);

    const who = (remote: string | null): string =>
      remote === null ? 'nobody (the request failed)' : remote === wanSeen ? `${remote}, the router's WAN address: local breakout` : remote === up[0] ? `${remote}: through gw1` : remote === up[1] ? `${remote}: through gw2` : remote;
    const gwOf = (remote: string | null): string => (remote === up[0] ? 'gw1' : remote === up[1] ? 'gw2' : remote === wanSeen ? 'the breakout' : 'nowhere');

    /** The client asks the router's resolver (dig); `status` is dig's header status. */
    const dig = async (name: string): Promise<{ answers: string[]; status: string }> => {
      const r = await L.exec(L.ns.client, ['dig', '+tries=1', '+time=3', '+noall', '+comments', '+answer', `@${routerDns}`, name, 'A'], { timeoutMs: 8000 });
      const status = /status: (\w+)/.exec(r.stdout)?.[1] ?? (r.code === 0 ? 'NOERROR' : `dig exit ${r.code}`);
      const answers = r.stdout
        .split('\n')
        .filter((l) => l && !l.startsWith(';'))
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f.length >= 5)
        .map((f) => (f[3] === 'CNAME' ? `CNAME ${f[4]!.replace(/\.$/, '')}` : f[4]!));
      return { answers, status };
    };

    // -------------------------------------------------------------- 1. routing by name
    say('1. Routing by name: the client asks the router\'s resolver, then connects; the web server tells which source address it saw ...\n');
    const names: { name: string; expect: string | null; why: string }[] = [
      { name: 'out.lab.test', expect: wanSeen, why: 'rule: via breakout' },
      { name: 'video.lab.test', expect: wanSeen, why: 'rule: via breakout; a CNAME to edge.cdn.lab.test, routed by the name asked' },
      { name: 'in.lab.test', expect: up[0], why: 'no rule: default tunnel, the active gateway gw1' },
      { name: 'pinned.lab.test', expect: up[1], why: `rule: via ${GW[1]} (gw2), whichever gateway is active` },
      { name: 'blocked.lab.test', expect: null, why: 'rule: via block' },
    ];
    for (const n of names) {
      const d = await guard(dig(n.name));
      const ip = d.answers.filter((a) => !a.startsWith('CNAME')).at(-1) ?? null;
      const chain = d.answers.filter((a) => a.startsWith('CNAME')).map((a) => `${a} → `).join('');
      const answered = ip === null ? `no answer (${d.status})` : `${chain}${ip}`;
      if (n.expect === null) {
        say(`   ${n.name.padEnd(17)} answered ${answered}: blocked, nothing to connect to (${n.why}) ${check(ip === '0.0.0.0', `${n.name} was answered ${answered}, not 0.0.0.0`)}\n`);
        continue;
      }
      if (ip === null) {
        say(`   ${n.name.padEnd(17)} ${check(false, `${n.name}: the router's resolver gave no answer (${d.status})`)}\n`);
        continue;
      }
      const f = await guard(fetchFrom(ip, 3000, n.name));
      say(`   ${n.name.padEnd(17)} answered ${answered}; the web server saw ${who(f.remote)}${f.error ? ` (${f.error})` : ''} [${n.why}] ${check(f.remote === n.expect, `${n.name} went ${gwOf(f.remote)}, expected ${gwOf(n.expect)}`)}\n`);
    }
    const leaksStart = await guard(leaks());
    say(`   packets for tunnel destinations that left by the WAN so far (counted at the ISP): ${await guard(leakVerdict(leaksStart, 'before the failover'))}\n\n`);

    // -------------------------------------------------------------- 2. DNS
    const where = L.names['where.lab.test']!;
    const resolverOf = (ip: string | undefined): string =>
      ip === undefined ? 'nobody' : ip === where.isp[0] ? `the ISP's resolver (${ip})` : ip === where.gw1[0] ? `gw1's resolver, through the tunnel (${ip})` : ip === where.gw2[0] ? `gw2's resolver, through its tunnel (${ip})` : ip;
    say(`2. DNS: every resolver in the lab answers *.where.lab.test with its own address (ISP ${where.isp[0]}, gw1 ${where.gw1[0]}, gw2 ${where.gw2[0]}) ...\n`);
    for (const [name, expect, why] of [
      ['out.where.lab.test', where.isp[0], 'a breakout name: the local resolver'],
      ['in.where.lab.test', where.gw1[0], 'a tunnel name: the active gateway\'s resolver'],
      ['pinned.where.lab.test', where.gw2[0], 'pinned to gw2: gw2\'s resolver'],
    ] as const) {
      const d = await guard(dig(name));
      const a = d.answers.at(-1);
      say(`   ${name.padEnd(22)} answered by ${resolverOf(a)} [${why}] ${check(a === expect, `${name} was answered by ${resolverOf(a)}`)}\n`);
    }
    let ispLog = '';
    try {
      ispLog = readFileSync(L.ispResolverLog, 'utf8');
    } catch {
      /* no log yet */
    }
    const leakedNames = ['in.where.lab.test', 'pinned.where.lab.test', 'in.lab.test', 'pinned.lab.test'].filter((n) => ispLog.includes(`] ${n} from`));
    say(
      `   the ISP's resolver never saw a tunnel name (its query log): ${check(leakedNames.length === 0 && ispLog.includes('] out.where.lab.test from'), leakedNames.length ? `the ISP's resolver was asked ${leakedNames.join(', ')}` : "the ISP's query log does not show out.where.lab.test")}\n\n`,
    );

    // -------------------------------------------------------------- 3. failover
    say(`3. Failover: blackholing gw1 (its WireGuard packets are dropped in its namespace); a request to ${web} every 100 ms ...\n`);
    const probe = web; // untagged: always the default path (the active gateway)
    const leaksFo0 = await guard(leaks());
    const t0 = Date.now();
    await guard(L.blackholeGateway(0, true));
    const reqs: { start: number; end: number; remote: string | null }[] = [];
    let firstGw2: { start: number; end: number } | null = null;
    {
      const inflight = new Set<Promise<void>>();
      const deadline = t0 + 20_000;
      while (!firstGw2 && Date.now() < deadline && !ac.signal.aborted) {
        const start = Date.now();
        const p = fetchFrom(probe, 1000).then((f) => {
          const q = { start, end: Date.now(), remote: f.remote };
          reqs.push(q);
          if (f.remote === up[1] && (!firstGw2 || q.end < firstGw2.end)) firstGw2 = q;
        });
        inflight.add(p);
        void p.finally(() => inflight.delete(p)).catch(() => undefined);
        await pause(100);
      }
      await guard(Promise.all(inflight));
    }
    const gw1Down = daemon.find((m) => m === `gateway ${GW[0]} is down`, t0);
    const first = firstGw2 as { start: number; end: number } | null;
    const lost = reqs.filter((q) => q.remote === null && (!first || q.start < first.end)).length;
    const leakedFo = (await guard(leaks())) - leaksFo0;
    if (first) {
      const took = first.end - t0;
      say(`   traffic moved to gw2 after ${secs(took)} (measured: from the blackhole until the first request answered through gw2's address ${up[1]}) ${check(took < 10_000, `failover took ${secs(took)}`)}\n`);
    } else say(`   ${check(false, 'traffic did not move to gw2 within 20 s')}\n`);
    say(`   the daemon declared gw1 down after ${gw1Down ? secs(gw1Down.time - t0) : '?'} (health: a probe every ${HEALTH.interval}, ${HEALTH.timeout} timeout, down after ${HEALTH.failAfter} failed rounds)\n`);
    say(`   ${lost} of ${reqs.length} requests failed meanwhile; packets for tunnel destinations that left by the WAN: ${await guard(leakVerdict(leakedFo, 'during the failover'))}\n\n`);

    // -------------------------------------------------------------- 4. kill switch
    say('4. Kill switch: blackholing gw2 too, so no gateway works ...\n');
    const leaks0 = await guard(leaks());
    const t1 = Date.now();
    await guard(L.blackholeGateway(1, true));
    const ks = await until('the kill switch', () => daemon!.find((m) => m.startsWith('no gateway is up'), t1), 20_000).catch((e: unknown) => {
      if (e instanceof Interrupted) throw e;
      return null;
    });
    say(`   ${ks ? `the daemon saw both gateways down after ${secs(ks.time - t1)} and blocks tunnel traffic` : check(false, 'the daemon did not report the kill switch within 20 s')}\n`);
    const ksReq = await guard(fetchFrom(probe, 3000));
    say(
      `   a tunnel request (${probe}): ${ksReq.remote ? `answered via ${who(ksReq.remote)}` : `refused after ${ksReq.ms} ms (${ksReq.error?.replace(/^curl exit \d+: /, '')})`} ${check(ksReq.remote === null && ksReq.ms < 1500, ksReq.remote ? `a tunnel request was answered via ${gwOf(ksReq.remote)}` : `the request was not refused at once (${ksReq.ms} ms)`)}\n`,
    );
    const ksDns = await guard(dig('dark.where.lab.test'));
    say(`   a tunnel name (dark.where.lab.test): ${ksDns.status}${ksDns.answers.length ? ` ${ksDns.answers.join(' ')}` : ''} ${check(ksDns.status === 'SERVFAIL', `a tunnel name was answered ${ksDns.status} ${ksDns.answers.join(' ')}`)}\n`);
    const ksOut = await guard(dig('out.lab.test'));
    const ksOutIp = ksOut.answers.at(-1);
    const ksOutReq = ksOutIp ? await guard(fetchFrom(ksOutIp, 3000, 'out.lab.test')) : null;
    say(`   a breakout name (out.lab.test) still works: answered ${ksOutIp ?? ksOut.status}, the web server saw ${who(ksOutReq?.remote ?? null)} ${check(ksOutReq?.remote === wanSeen, 'the breakout name did not work during the kill switch')}\n`);
    const leaks1 = await guard(leaks());
    say(`   packets for tunnel destinations that reached the ISP from the router's WAN while both were dark: ${await guard(leakVerdict(leaks1 - leaks0, 'during the kill switch'))}\n\n`);

    // -------------------------------------------------------------- 5. recovery
    say('5. Recovery: both gateways reachable again (WireGuard retries its handshake every 5 s) ...\n');
    const leaksRec0 = await guard(leaks());
    const t2 = Date.now();
    await guard(Promise.all([L.blackholeGateway(0, false), L.blackholeGateway(1, false)]));
    let firstBack: { at: number; remote: string } | null = null;
    const onGw1 = await until(
      'traffic back on gw1',
      async () => {
        const f = await fetchFrom(probe, 700);
        if (f.remote && !firstBack) firstBack = { at: Date.now(), remote: f.remote };
        return f.remote === up[0] ? Date.now() : null;
      },
      45_000,
      200,
    ).catch((e: unknown) => {
      if (e instanceof Interrupted) throw e;
      return null;
    });
    const fb = firstBack as { at: number; remote: string } | null;
    if (fb) say(`   tunnel traffic flowed again after ${secs(fb.at - t2)}, through ${gwOf(fb.remote)}\n`);
    if (onGw1 !== null) {
      const held = fb && fb.remote !== up[0];
      say(`   traffic is back on gw1, the preferred gateway (priority 1), after ${secs(onGw1 - t2)}${held ? ` (it had to be up ${HEALTH.failbackHold} first: the failback hold)` : ''} ok\n`);
    } else say(`   ${check(false, 'traffic did not come back to gw1 within 45 s')}\n`);
    const leaksEnd = await guard(leaks());
    say(`   packets for tunnel destinations that left by the WAN during the recovery: ${await guard(leakVerdict(leaksEnd - leaksRec0, 'during the recovery'))}\n`);

    // -------------------------------------------------------------- 6. WAN failover
    say(`\n6. WAN failover: the ISP stops answering on fiber (wan0; its link stays up); breakout (out.lab.test) and tunnel (${web}) requests every 100 ms ...\n`);
    const lteSeen = L.addr.routerWan2.v4;
    const leaksWan0 = await guard(leaks());
    const t3 = Date.now();
    await guard(L.blackholeWan(0, true));
    let onLte: number | null = null;
    let tunnelBack: number | null = null;
    let tunnelFailed = 0;
    {
      const deadline = t3 + 30_000;
      while ((onLte === null || tunnelBack === null) && Date.now() < deadline && !ac.signal.aborted) {
        const [b, t] = await guard(Promise.all([fetchFrom(WEB.out, 700, 'out.lab.test'), fetchFrom(probe, 700)]));
        if (onLte === null && b.remote === lteSeen) onLte = Date.now();
        if (t.remote === up[0]) {
          if (tunnelFailed > 0 && tunnelBack === null) tunnelBack = Date.now();
          if (tunnelFailed === 0 && onLte !== null) tunnelBack = Date.now();
        } else tunnelFailed++;
        await pause(100);
      }
    }
    say(`   breakout traffic left by lte (the web server saw ${lteSeen}) after ${onLte === null ? '-' : secs(onLte - t3)} ${check(onLte !== null, 'breakout did not move to lte within 30 s')}\n`);
    say(`   tunnel traffic through gw1 again after ${tunnelBack === null ? '-' : secs(tunnelBack - t3)} (its WireGuard follows the best link) ${check(tunnelBack !== null, 'tunnel traffic did not come back within 30 s')}\n`);
    await guard(L.blackholeWan(0, false));
    const t4 = Date.now();
    const onFiber = await until('breakout back on fiber', async () => ((await fetchFrom(WEB.out, 700, 'out.lab.test')).remote === wanSeen ? Date.now() : null), 30_000, 200).catch((e: unknown) => {
      if (e instanceof Interrupted) throw e;
      return null;
    });
    say(`   fiber answers again: breakout back on it after ${onFiber === null ? '-' : secs(onFiber - t4)} (up ${HEALTH.recoverAfter} rounds, then the ${HEALTH.failbackHold} hold) ${check(onFiber !== null, 'breakout did not come back to fiber within 30 s')}\n`);
    const leaksWan1 = await guard(leaks());
    say(`   packets for tunnel destinations that left by either WAN during the WAN failover: ${await guard(leakVerdict(leaksWan1 - leaksWan0, 'during the WAN failover'))}\n`);
    const leaksAll = leaksWan1;

    const flagged = problems.some((p) => p.includes('left by the WAN'));
    say(`   ... and in the whole demo: ${leaksAll} ${leaksAll === 0 ? 'ok' : flagged ? '(see above)' : check(false, `${leaksAll} packet(s) for tunnel destinations left by the WAN${await guard(leakDetail())}`)}\n\n`);

    // -------------------------------------------------------------- the end
    if (problems.length === 0) say(`All 6 steps showed the expected behaviour (${secs(Date.now() - t00)}).\n`);
    else {
      say(`${problems.length} step result(s) were not as expected:\n${problems.map((p) => `   - ${p}`).join('\n')}\nThe daemon's log: ${join(dir, 'daemon.log')}${opts.keep ? '' : ' (removed with the lab)'}\n${daemon.describe()}\n`);
      code = 1;
    }

    if (opts.keep) {
      const x = (ns: string) => `ip netns exec ${ns}`;
      say(
        [
          '',
          `The lab stays up (lab ${L.id}). As root, try:`,
          `    ${x(L.ns.client)} dig +short @${routerDns} in.lab.test            # the router's resolver`,
          `    ${x(L.ns.client)} curl -s --resolve in.lab.test:80:${WEB.in} http://in.lab.test/   # {"remote": the source the web server saw}`,
          `    ${x(L.ns.client)} curl -s http://${web}/                 # the default path: the active gateway`,
          `    ${x(L.ns.router)} ${process.execPath} ${bin} explain --config ${cfg} in.lab.test`,
          `    ${x(L.ns.router)} ${process.execPath} ${bin} explain --config ${cfg} ${WEB.out}`,
          `    ${x(L.ns.router)} nft list table inet splitwan           # the kill switch and the tags`,
          `    ${x(L.ns.router)} wg show                                    # the tunnels`,
          `    ${x(L.ns.gw1)} nft 'add table inet bh; add chain inet bh in { type filter hook input priority -300; }; add rule inet bh in udp dport 51820 drop'   # gw1 goes dark`,
          `    ${x(L.ns.gw1)} nft delete table inet bh                    # gw1 comes back`,
          `    tail -f ${join(dir, 'daemon.log')}   # the daemon's log (pino JSON)`,
          `The config is ${cfg} (edits are reloaded live); splitwan run is pid ${daemon.pid}.`,
          `To stop: press Ctrl-C here (or kill ${process.pid}): the daemon is stopped and the lab removed.`,
          '',
        ].join('\n'),
      );
      await cancelled.catch(() => undefined);
    }
  } catch (e) {
    if (e instanceof Interrupted || ac.signal.aborted) {
      code = 130;
    } else {
      code = 1;
      io.err(`splitwan demo failed: ${(e as Error).message}\n`);
      if (daemon) io.err(`${daemon.describe()}\n`);
    }
  } finally {
    cleaningUp = true;
    io.out(`${ac.signal.aborted ? '' : '\n'}Cleaning up: ${daemon ? `stopping splitwan (pid ${daemon.pid}), ` : ''}removing the lab ... `);
    const errors: string[] = [];
    if (daemon) {
      await daemon.stop().catch((e: unknown) => errors.push(`stopping the daemon: ${(e as Error).message}`));
      if (daemon.running) errors.push(`the daemon (pid ${daemon.pid}) survived SIGKILL`);
    }
    killWireguardGo(gwIfs);
    await new Promise<void>((r) => (logFile ? logFile.end(r) : r()));
    if (!lab && labPromise) lab = await labPromise.catch(() => null); // interrupted while building: let it finish, then remove it
    if (lab) await lab.destroy().catch((e: unknown) => errors.push((e as Error).message));
    process.off('exit', exitGuard);
    signals.off('SIGINT', onInt);
    signals.off('SIGTERM', onTerm);
    if (errors.length) {
      io.out('\n');
      io.err(`splitwan demo: cleanup had problems: ${errors.join('; ')}\n`);
      if (code === 0) code = 1;
    } else io.out(`done${lab ? ` (lab ${lab.id} removed)` : ''}.\n`);
  }
  return code;
}
