// Per-app split in host mode (issue 16, item 5): `splitwan exec --via PATH`
// and `apps: [{exe}]` pin a program to one path whatever the rules say, in
// the namespace lab (lab/lab.ts):
//
//  [router: the laptop, splitwan run (host mode), curl/dig started by `splitwan exec`]
//     wan0 10.99.2.2 ──▶ [isp] web 10.99.9.9 (echo: says the source it saw), dnsmasq (where.lab.test → 192.0.2.1)
//     swg-*a ══ WireGuard ══ [gw1] uplink 10.99.4.x, dnsmasq (where.lab.test → 192.0.2.11)
//     swg-*b ══ WireGuard ══ [gw2] uplink 10.99.5.x, dnsmasq (where.lab.test → 192.0.2.12)
//
// The source the web server saw says which path a connection took; the
// answer for where.lab.test (and the resolvers' query logs) says which
// resolver was asked; a capture on the ISP side of wan0 shows what left bare.
//
// cgroup v2: `ip netns exec` gives the daemon a fresh /sys without cgroup
// mounts, so the daemon (and the commands) run with cgroup2 mounted in that
// private mount namespace, in both layouts: unified (/sys/fs/cgroup is
// cgroup2, today's distributions) and hybrid (/sys/fs/cgroup a tmpfs,
// cgroup2 at /sys/fs/cgroup/unified, as on this machine). Every cgroup is
// under a per-pid root and removed in afterAll. Needs root: CI runs it as root.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, run, type Lab } from '../../lab/lab.js';
import { cgroup2Mount } from '../../daemon/apps/cgroups.js';
import { daemonNode, labConfig, startDaemon, teardown, until, type Daemon } from '../helpers/daemon.js';

const support = labSupported();
if (!support.ok) console.warn(`[test/e2e/laptop-apps] SKIPPED: the lab cannot run here: ${support.why}`);
const hostCgroup2 = cgroup2Mount(readFileSync('/proc/self/mounts', 'utf8'));
if (support.ok && hostCgroup2 === null) console.warn('[test/e2e/laptop-apps] SKIPPED: no cgroup2 mounted on this machine (per-app split needs cgroup v2)');
const root = join(import.meta.dirname, '..', '..');

/** Mounts cgroup2 in the namespace's private mount namespace as the layout has it, binds our resolv.conf, then runs the rest. */
const WRAP: Record<'unified' | 'hybrid', string> = {
  unified: 'mount -t cgroup2 none /sys/fs/cgroup && mount --bind "$0" /etc/resolv.conf && exec "$@"',
  hybrid: 'mount -t tmpfs -o mode=755 none /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified && mount --bind "$0" /etc/resolv.conf && exec "$@"',
};

describe.skipIf((!support.ok || hostCgroup2 === null) && !process.env.CI).each(['unified', 'hybrid'] as const)('per-app split in host mode (cgroup layout: %s)', (layout) => {
  const tag = `p${process.pid % 10000}${layout[0]}`;
  const GW = [`${tag}a`, `${tag}b`] as const;
  const cgroupRoot = `splitwan-e2e-${process.pid}-${layout}.slice`;
  let lab: Lab;
  let dir = '';
  let cfg = '';
  let resolv = '';
  let appBash = '';
  let daemon: Daemon | null = null;
  const background: ChildProcess[] = [];
  let capture: ChildProcess | null = null;
  let captured = '';
  let seq = 0;
  const unique = (base: string): string => `u${process.pid}x${++seq}.${base}`;

  const config = (extra = '') =>
    labConfig({
      dir,
      ispResolver: lab.addr.ispResolver.v4,
      names: GW,
      mode: 'host',
      lines: [
        'health: { interval: 500ms, timeout: 400ms, failAfter: 2, recoverAfter: 2, failbackHold: 1s }',
        'rules:',
        '  - { domains: [web.lab.test], via: tunnel }',
        '  - { domains: [out.lab.test], via: breakout }',
        'apps:',
        `  - { exe: ${appBash}, via: breakout }`,
        'default: tunnel',
        extra,
      ],
    });
  /** argv in the laptop's namespace, with cgroup2 and our resolv.conf mounted as the layout has them. */
  const inLaptop = (argv: readonly string[]): string[] => ['ip', 'netns', 'exec', lab.ns.router, 'sh', '-c', WRAP[layout], resolv, ...argv];
  const splitwan = (...args: string[]) => run([...daemonNode(), join(root, 'bin', 'splitwan'), ...args, '--config', cfg], { timeoutMs: 20_000 });
  const exec = (via: string, argv: readonly string[]) => run(inLaptop([...daemonNode(), join(root, 'bin', 'splitwan'), 'exec', '--config', cfg, '--via', via, '--', ...argv]), { timeoutMs: 30_000 });
  const curlArgv = (url: string) => ['curl', '-4', '-sS', '--noproxy', '*', '--max-time', '4', url];
  const remoteOf = (r: { code: number | null; stdout: string; stderr: string }): string => {
    if (r.code !== 0) return `error ${r.code}: ${r.stderr.trim()}`;
    try {
      return (JSON.parse(r.stdout) as { remote: string }).remote;
    } catch {
      return `not an echo reply: ${r.stdout.slice(0, 200)}`;
    }
  };
  const plainCurl = async (url: string) => remoteOf(await run(inLaptop(curlArgv(url)), { timeoutMs: 10_000 }));
  const pinnedCurl = async (via: string, url: string) => remoteOf(await exec(via, curlArgv(url)));
  const digArgv = (name: string) => ['dig', '+short', '+tries=1', '+time=3', name, '@127.0.0.53'];
  const asked = (log: string): string => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  const status = async () => JSON.parse((await splitwan('status', '--json')).stdout || '{}') as { gateways?: { name: string; state: string }[]; active?: string | null; apps?: { path: string; cgroup: string; kind: string[]; refused?: boolean }[] };
  const cgroupDir = (path: string): string => join(hostCgroup2!, cgroupRoot, `via-${path.replace(':', '-')}`);

  beforeAll(async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    lab = await createLab({ routerTunnels: false, names: { 'out.lab.test': ['10.99.9.9', 'fd99:9::9'] } });
    dir = mkdtempSync(join(tmpdir(), `splitwan-e2e-apps-${process.pid}-`));
    writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
    writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
    resolv = join(dir, 'resolv.conf');
    writeFileSync(resolv, 'nameserver 127.0.0.53\n');
    // An executable of its own (/proc/PID/exe names it): the apps: exe entry's program.
    appBash = join(dir, 'appbash');
    copyFileSync('/bin/bash', appBash);
    cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, config(), { mode: 0o600 });
    daemon = await startDaemon(lab.ns.router, cfg, { wrap: ['sh', '-c', WRAP[layout], resolv], env: { ...process.env, SPLITWAN_CGROUP_ROOT: cgroupRoot } });
    // Both tunnels up: the tunnel takes gw1.
    await until(async () => (await plainCurl('http://web.lab.test/')) === lab.gateways[0].uplink.v4, 20_000, 'web.lab.test through gw1');
    await until(async () => (await status()).gateways?.every((g) => g.state === 'up') === true, 20_000, 'both gateways up');
  }, 120_000);

  afterAll(async () => {
    if (capture?.exitCode === null) capture.kill('SIGTERM');
    for (const b of background) if (b.exitCode === null && b.signalCode === null) b.kill('SIGKILL');
    try {
      await teardown({ daemon, lab, dir });
    } finally {
      // Every cgroup of this run (the daemon removes its own; a failed test must not leave any). Programs a
      // failed test left in them (a loop whose CLI was killed) are this test's: cgroup.kill ends them all.
      const top = hostCgroup2 ? join(hostCgroup2, cgroupRoot) : '';
      if (top && existsSync(top)) {
        for (const d of readdirSync(top, { withFileTypes: true })) {
          if (!d.isDirectory()) continue;
          const cg = join(top, d.name);
          writeFileSync(join(cg, 'cgroup.kill'), '1');
          await until(() => readFileSync(join(cg, 'cgroup.events'), 'utf8').includes('populated 0'), 10_000, `${cg} to empty`);
          rmdirSync(cg);
        }
        rmdirSync(top);
      }
    }
  }, 60_000);

  it('exec --via breakout: a name the rules send through the tunnel reaches the server from the WAN address; the program\'s DNS went to the ISP\'s resolver', async () => {
    expect(await plainCurl('http://web.lab.test/')).toBe(lab.gateways[0].uplink.v4);
    expect(await pinnedCurl('breakout', 'http://web.lab.test/')).toBe(lab.addr.routerWan.v4);
    // DNS: where.lab.test has another answer at each resolver. The rules (default: tunnel) ask gw1's...
    const plain = unique('where.lab.test');
    expect((await run(inLaptop(digArgv(plain)), { timeoutMs: 10_000 })).stdout.trim()).toBe('192.0.2.11');
    // ...the pinned program's question goes to the ISP's, and only there.
    const pinned = unique('where.lab.test');
    const r = await exec('breakout', digArgv(pinned));
    expect(r.stdout.trim(), r.stderr).toBe('192.0.2.1');
    expect(asked(lab.ispResolverLog)).toContain(pinned);
    expect(asked(lab.gwResolverLogs[0])).not.toContain(pinned);
    expect(asked(lab.gwResolverLogs[1])).not.toContain(pinned);
  }, 60_000);

  it('exec --via a gateway: a name whose rule says breakout goes through that gateway (not the active one); its DNS is that gateway\'s', async () => {
    expect(await plainCurl('http://out.lab.test/')).toBe(lab.addr.routerWan.v4);
    expect(await pinnedCurl(GW[1], 'http://out.lab.test/')).toBe(lab.gateways[1].uplink.v4);
    const name = unique('where.lab.test');
    expect((await exec(GW[1], digArgv(name))).stdout.trim()).toBe('192.0.2.12');
    expect(asked(lab.gwResolverLogs[1])).toContain(name);
    expect(asked(lab.ispResolverLog)).not.toContain(name);
  }, 60_000);

  it('the cgroup is gone once the program exited; an unknown path is refused naming the known ones', async () => {
    await until(() => !existsSync(cgroupDir('breakout')) && !existsSync(cgroupDir(`gw:${GW[1]}`)), 15_000, 'the pinned cgroups to be removed');
    expect((await status()).apps ?? []).toEqual([]);
    const r = await exec('nowhere', ['true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no path named "nowhere"');
    expect(r.stderr).toContain(`breakout, tunnel, ${GW[0]}, ${GW[1]}`);
    // The exit code is passed through.
    expect((await exec('breakout', ['sh', '-c', 'exit 7'])).code).toBe(7);
  }, 60_000);

  it('exec --via a gateway that is down: refused at once, DNS SERVFAIL, nothing reaches the WAN', async () => {
    await lab.blackholeGateway(1, true);
    try {
      await until(async () => (await status()).gateways?.find((g) => g.name === GW[1])?.state === 'down', 30_000, `${GW[1]} down`);
      capture = spawn('ip', ['netns', 'exec', lab.ns.isp, 'tcpdump', '-l', '-n', '-i', lab.ifaces.isp.router, `host ${lab.addr.web.v4} or host ${lab.addr.web.v6}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      capture.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      capture.stdout!.setEncoding('utf8').on('data', (d: string) => (captured += d));
      await until(() => err.includes('listening on'), 5000, 'tcpdump to listen');
      const started = Date.now();
      expect(await pinnedCurl(GW[1], 'http://out.lab.test/')).toMatch(/^error /);
      // Refused (a reset), not a timeout into a dead tunnel.
      expect(Date.now() - started).toBeLessThan(4000 + 3000);
      const r = await exec(GW[1], ['dig', '+tries=1', '+time=3', unique('where.lab.test'), '@127.0.0.53']);
      expect(r.stdout).toContain('SERVFAIL');
      // IPv6 too.
      expect(remoteOf(await exec(GW[1], ['curl', '-6', '-sS', '--max-time', '3', `http://[${lab.addr.web.v6}]/`]))).toMatch(/^error /);
      await new Promise((res) => setTimeout(res, 500));
      expect(captured).toBe('');
    } finally {
      await lab.blackholeGateway(1, false);
    }
    await until(async () => (await status()).gateways?.find((g) => g.name === GW[1])?.state === 'up', 30_000, `${GW[1]} up again`);
    expect(await pinnedCurl(GW[1], 'http://out.lab.test/')).toBe(lab.gateways[1].uplink.v4);
  }, 90_000);

  it('exec --via tunnel: a running program keeps its path across a reload and follows a failover, never leaving bare', async () => {
    const script = 'for i in $(seq 1 400); do curl -4 -s --max-time 1 http://out.lab.test/; echo; sleep 0.2; done';
    const child = spawn(inLaptop([...daemonNode(), join(root, 'bin', 'splitwan'), 'exec', '--config', cfg, '--via', 'tunnel', '--', 'bash', '-c', script])[0]!, inLaptop([...daemonNode(), join(root, 'bin', 'splitwan'), 'exec', '--config', cfg, '--via', 'tunnel', '--', 'bash', '-c', script]).slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    background.push(child);
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const remotes = (): string[] => out.split('\n').flatMap((l) => (l.startsWith('{') ? [(JSON.parse(l) as { remote: string }).remote] : []));
    const count = (): number => remotes().length;
    await until(() => remotes().includes(lab.gateways[0].uplink.v4), 20_000, 'the pinned program through gw1');
    expect((await status()).apps?.map((a) => a.path)).toContain('tunnel');
    // A reload: the program's flows keep their path.
    writeFileSync(cfg, config('# reloaded'), { mode: 0o600 });
    expect((await splitwan('reload')).code).toBe(0);
    const afterReload = count();
    await until(() => count() >= afterReload + 3, 15_000, 'requests after the reload');
    expect(remotes().slice(afterReload).every((r) => r === lab.gateways[0].uplink.v4)).toBe(true);
    // gw1 fails: the tunnel (and the pinned program) moves to gw2.
    await lab.blackholeGateway(0, true);
    try {
      await until(() => remotes().slice(-2).every((r) => r === lab.gateways[1].uplink.v4) && count() > afterReload + 3, 40_000, 'the pinned program through gw2 after the failover');
    } finally {
      await lab.blackholeGateway(0, false);
    }
    // Never the WAN address: the pin to tunnel never fell back to breakout.
    expect(remotes()).not.toContain(lab.addr.routerWan.v4);
    child.kill('SIGTERM');
    await new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
    await until(() => !existsSync(cgroupDir('tunnel')), 20_000, 'the tunnel cgroup to be removed after the program exited');
  }, 150_000);

  it('apps: exe — a program started by other means is moved to its path: its later connections take it', async () => {
    await until(async () => (await status()).active === GW[0], 40_000, 'gw1 active again');
    const script = 'for i in $(seq 1 200); do curl -4 -s --max-time 1 http://web.lab.test/; echo; sleep 0.2; done';
    const argv = inLaptop([appBash, '-c', script]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    background.push(child);
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const remotes = (): string[] => out.split('\n').flatMap((l) => (l.startsWith('{') ? [(JSON.parse(l) as { remote: string }).remote] : []));
    // The rules send web.lab.test through the tunnel; once moved (a scan every second), the breakout.
    await until(() => remotes().slice(-2).length === 2 && remotes().slice(-2).every((r) => r === lab.addr.routerWan.v4), 20_000, 'the exe entry\'s program on the breakout');
    const s = await status();
    expect(s.apps?.find((a) => a.path === 'breakout')?.kind).toContain('exe');
    child.kill('SIGKILL');
    await until(() => !existsSync(cgroupDir('breakout')), 20_000, 'the breakout cgroup to be removed');
  }, 90_000);
});
