// `splitwan demo` (daemon/commands/demo.ts), end to end: it builds its own
// namespace lab (lab/lab.ts), runs `splitwan run` in it and narrates:
//
//  [client] ── lan0 [router: splitwan run] wan0 10.99.2.2 ── [isp] web server (echoes the source it sees)
//                    swg-gw1-<id> ══ WireGuard ══ [gw1] ── isp   (seen as 10.99.3.2)
//                    swg-gw2-<id> ══ WireGuard ══ [gw2] ── isp   (seen as 10.99.4.2)
//
// The test calls demoCommand with a capturing Io and its own signal emitter
// (no CLI wiring needed; bin/splitwan must be built: the demo runs the daemon
// through it), checks what it printed and that nothing it started is left:
// no namespace of its lab, no daemon, no wireguard-go of its tunnels, no child
// process of this one. A second run is interrupted (SIGINT) in the middle and
// must clean up just the same and return 130. Needs root: CI runs it as root.
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { demoCommand } from '../../daemon/commands/demo.js';
import { labSupported } from '../../lab/lab.js';

const support = labSupported();

/** Live child processes of this process (every thread's children). */
function children(): Set<number> {
  const out = new Set<number>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      for (const p of readFileSync(`/proc/self/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) out.add(Number(p));
    } catch {
      /* thread gone */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** wireguard-go processes whose interface (last argv) is one of these. */
function wireguardGoFor(ifnames: readonly string[]): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (argv[0]?.split('/').pop() === 'wireguard-go' && ifnames.includes(argv[argv.length - 1] ?? '')) out.push(Number(d));
  }
  return out;
}

/** Everything the demo started is gone: its lab's namespaces, the daemon, its tunnels' wireguard-go, our children. */
function expectNothingLeft(text: string, childrenBefore: Set<number>): void {
  const id = /\(lab (sw\d+[a-z]?)\)/.exec(text)?.[1];
  expect(id, 'the demo prints its lab id').toBeDefined();
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  expect(netns.split('\n').filter((l) => l.startsWith(`${id}-`))).toEqual([]);
  const pid = Number(/running \(pid (\d+)\)/.exec(text)?.[1]);
  if (pid) expect(alive(pid), `the daemon (pid ${pid})`).toBe(false);
  const tag = id!.slice(2);
  expect(wireguardGoFor([`swg-gw1-${tag}`, `swg-gw2-${tag}`])).toEqual([]);
  // Children of this worker started meanwhile: only those in the demo's own (now deleted) namespaces
  // count; other test files running in the same worker start lab processes of their own.
  const ours = [...children()].filter((p) => !childrenBefore.has(p) && alive(p) && inDeletedNetns(p));
  expect(ours).toEqual([]);
}

/** A process whose network namespace is no longer named in `ip netns` (its lab was removed under it). */
function inDeletedNetns(pid: number): boolean {
  try {
    const mine = readlinkSync(`/proc/${process.pid}/ns/net`);
    const its = readlinkSync(`/proc/${pid}/ns/net`);
    if (its === mine) return false;
    const named = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0])
      .filter((n): n is string => !!n)
      .map((n) => {
        try {
          return readlinkSync(`/run/netns/${n}`) === its || statInode(`/run/netns/${n}`) === its;
        } catch {
          return false;
        }
      });
    return !named.some(Boolean);
  } catch {
    return false;
  }
}

function statInode(path: string): string {
  return `net:[${statSync(path).ino}]`;
}

describe.skipIf(!support.ok && !process.env.CI)('splitwan demo', () => {
  it('shows routing by name, DNS, failover with its time, the kill switch and recovery; then removes everything', async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    const before = children();
    let text = '';
    const io = { out: (t: string) => void (text += t), err: (t: string) => void (text += t) };
    const t0 = Date.now();
    const code = await demoCommand({ keep: false, io, signals: new EventEmitter() });
    console.log(`splitwan demo: exit ${code} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n${text}`);
    // The demo's own verdicts first: on a failure CI shows only the tail of the output, so the
    // assertion itself must name what went wrong.
    const verdicts = text.split('\n').filter((l) => /UNEXPECTED|demo failed|not as expected|cleanup had problems/.test(l));
    expect(verdicts).toEqual([]);
    expect(code).toBe(0);

    // 1. names: breakout, the default tunnel (gw1), pinned to gw2, blocked
    expect(text).toMatch(/out\.lab\.test +answered 10\.99\.9\.21; the web server saw 10\.99\.2\.2, the router's WAN address: local breakout/);
    expect(text).toMatch(/video\.lab\.test +answered CNAME edge\.cdn\.lab\.test → 10\.99\.9\.22; the web server saw 10\.99\.2\.2/);
    expect(text).toMatch(/in\.lab\.test +answered 10\.99\.9\.23; the web server saw 10\.99\.3\.2: through gw1/);
    expect(text).toMatch(/pinned\.lab\.test +answered 10\.99\.9\.24; the web server saw 10\.99\.4\.2: through gw2/);
    expect(text).toMatch(/blocked\.lab\.test +answered 0\.0\.0\.0: blocked/);
    // 2. DNS: which resolver answered
    expect(text).toMatch(/out\.where\.lab\.test +answered by the ISP's resolver \(192\.0\.2\.1\)/);
    expect(text).toMatch(/in\.where\.lab\.test +answered by gw1's resolver, through the tunnel \(192\.0\.2\.11\)/);
    expect(text).toMatch(/pinned\.where\.lab\.test +answered by gw2's resolver, through its tunnel \(192\.0\.2\.12\)/);
    // 3. failover, measured
    const took = Number(/traffic moved to gw2 after (\d+\.\d) s/.exec(text)?.[1]);
    expect(took).toBeGreaterThan(0);
    expect(took).toBeLessThan(10);
    // 4. kill switch
    expect(text).toMatch(/the daemon saw both gateways down after \d+\.\d s and blocks tunnel traffic/);
    expect(text).toMatch(/a tunnel request \(10\.99\.9\.9\): refused after \d+ ms/);
    expect(text).toMatch(/a tunnel name \(dark\.where\.lab\.test\): SERVFAIL/);
    expect(text).toMatch(/a breakout name \(out\.lab\.test\) still works: .*saw 10\.99\.2\.2/);
    expect(text).toMatch(/from the router's WAN while both were dark: 0 ok/);
    // 5. recovery
    expect(text).toMatch(/traffic is back on gw1, the preferred gateway \(priority 1\), after \d+\.\d s/);
    expect(text).toMatch(/left by the WAN during the recovery: 0 ok/);
    expect(text).toMatch(/breakout traffic left by lte \(the web server saw 10\.99\.5\.2\) after \d+\.\d s ok/);
    expect(text).toMatch(/tunnel traffic through gw1 again after \d+\.\d s \(its WireGuard follows the best link\) ok/);
    expect(text).toMatch(/fiber answers again: breakout back on it after \d+\.\d s .* ok/);
    expect(text).toMatch(/left by either WAN during the WAN failover: 0 ok/);
    expect(text).toMatch(/and in the whole demo: 0 ok/);
    expect(text).toContain('All 6 steps showed the expected behaviour');
    expect(text).toMatch(/removing the lab \.\.\. done \(lab sw\d+[a-z]? removed\)/);

    expectNothingLeft(text, before);
  }, 150_000);

  it('SIGINT in the middle: stops the daemon, removes the lab, returns 130', async () => {
    if (!support.ok) throw new Error(`lab test cannot run: ${support.why}`);
    const before = children();
    let text = '';
    const io = { out: (t: string) => void (text += t), err: (t: string) => void (text += t) };
    const signals = new EventEmitter();
    const done = demoCommand({ keep: false, io, signals });
    const end = Date.now() + 60_000;
    while (!text.includes('1. Routing by name') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(text).toContain('1. Routing by name');
    signals.emit('SIGINT');
    const code = await done;
    console.log(`splitwan demo, interrupted: exit ${code}\n${text}`);
    expect(code).toBe(130);
    expect(text).toContain('SIGINT: stopping the demo and removing the lab');
    expect(text).not.toContain('All 6 steps');
    expect(text).toMatch(/removing the lab \.\.\. done \(lab sw\d+[a-z]? removed\)/);
    expect(signals.listenerCount('SIGINT') + signals.listenerCount('SIGTERM')).toBe(0);
    expectNothingLeft(text, before);
  }, 90_000);
});

it.skipIf(support.ok || !!process.env.CI)('splitwan demo: SKIPPED', () => {
  console.warn(`SKIPPED e2e test (demo): ${support.ok ? '' : support.why}. CI runs it as root.`);
});
