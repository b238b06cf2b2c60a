// The Linux router adapter against the real kernel, in a namespace this test
// creates (never the machine's own):
//
//   [sw-rt-<pid>]  lan0, wan0, swg-gw1, swg-gw2   (veth pairs, both ends inside, up)
//
// set() installs the table, ip rules, routes and sysctls; the same plan again
// changes nothing; what someone deletes, reconcile() puts back; cleanup()
// leaves no trace. Needs root: CI runs as root.
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { linuxRunner, netnsRunner, type Runner } from '../../daemon/exec-linux.js';
import { NftSession } from '../../daemon/dataplane/nft-session-linux.js';
import { LinuxRouter } from '../../daemon/dataplane/router-linux.js';
import type { DataplanePlan } from '../../daemon/dataplane/plan.js';
import { GW1, rule, samplePlan } from '../helpers/plans.js';
import { addLinks } from '../helpers/netns.js';

const NS = `sw-rt-${process.pid}`;
const supported = process.getuid?.() === 0 && spawnSync('nft', ['--version']).status === 0;
const why = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : 'nft is not installed';

/** Counts commands that change something (`writes`), and every command (`all`: reads cost a process each too). */
function counting(base: Runner): Runner & { writes: string[][]; all: string[][] } {
  const writes: string[][] = [];
  const all: string[][] = [];
  return {
    writes,
    all,
    run: (argv, opts) => {
      const inner = [...argv];
      const read = (inner[0] === 'nft' && inner[1] === '-j') || (inner[0] === 'ip' && inner[1] === '-j') || (inner[0] === 'sysctl' && inner[1] === '-n');
      all.push(inner);
      if (!read) writes.push(inner);
      return base.run(argv, opts);
    },
  };
}

const sh = (argv: string[]): string => execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8' });
const plan = (over: Partial<DataplanePlan> = {}): DataplanePlan =>
  samplePlan({ rules: [rule(0, 'aaaa0000', { tagged: true }), rule(1, 'bbbb0000', { dst4: ['203.0.113.0/24'] })], ...over });

describe.skipIf(!supported && !process.env.CI)('LinuxRouter in a namespace', () => {
  let runner: ReturnType<typeof counting>;
  let router: LinuxRouter;
  let session: NftSession;

  beforeAll(() => {
    if (!supported) throw new Error(`lab test cannot run: ${why}`);
    execFileSync('ip', ['netns', 'add', NS]);
    addLinks(NS, ['lan0', 'wan0', 'swg-gw1', 'swg-gw2']);
    runner = counting(netnsRunner(NS, linuxRunner));
    session = new NftSession(silentLogger, ['ip', 'netns', 'exec', NS, 'nft', '-i']);
    router = new LinuxRouter(runner, session, silentLogger);
  });
  afterAll(() => {
    session?.close();
    spawnSync('ip', ['netns', 'del', NS]);
  });

  it('installs the table, rules at 5000-5099, per-gateway routes and forwarding', async () => {
    expect(await router.set(plan())).toBe(true);
    expect(sh(['nft', 'list', 'table', 'inet', 'splitwan'])).toContain('chain classify');
    const rules = sh(['ip', 'rule', 'show']);
    expect(rules).toContain('5020:\tfrom all fwmark 0x1100/0xff00 lookup 1101');
    expect(rules).toContain('5099:\tfrom all fwmark 0x1000/0xf000 prohibit');
    expect(sh(['ip', '-6', 'rule', 'show'])).toContain('5021:\tfrom all fwmark 0x1200/0xff00 lookup 1102');
    expect(sh(['ip', 'route', 'show', 'table', '1101'])).toContain('default dev swg-gw1');
    expect(sh(['ip', 'route', 'show', 'table', '1101'])).toContain('prohibit default metric 4000000000');
    expect(sh(['ip', '-6', 'route', 'show', 'table', '1102'])).toContain('default dev swg-gw2');
    expect(sh(['sysctl', '-n', 'net.ipv4.ip_forward']).trim()).toBe('1');
    expect(sh(['nft', 'list', 'map', 'inet', 'splitwan', 'active'])).toContain('0x00001f00 : 0x00001100');
  });

  it('failover and the kill switch flip the active map; the tunnel path\'s table follows the gateway', async () => {
    runner.writes.length = 0;
    expect(sh(['ip', 'route', 'show', 'table', '1100'])).toContain('default dev swg-gw1');
    await router.setActive('gw2');
    expect(sh(['nft', 'list', 'map', 'inet', 'splitwan', 'active'])).toContain('0x00001f00 : 0x00001200');
    expect(sh(['ip', 'route', 'show', 'table', '1100'])).toContain('default dev swg-gw2');
    expect(sh(['ip', '-6', 'route', 'show', 'table', '1100'])).toContain('default dev swg-gw2');
    await router.setActive(null);
    expect(sh(['nft', 'list', 'map', 'inet', 'splitwan', 'active'])).not.toContain('0x00001f00 :');
    // No gateway: the first one's tunnel (nftables rejects; without nftables a dead tunnel leaks nothing).
    expect(sh(['ip', 'route', 'show', 'table', '1100'])).toContain('default dev swg-gw1');
    await router.setActive('gw1');
    // The map through the nft session; the route (both families) in one `ip -batch` when the tunnel changed.
    expect(runner.writes.map((w) => w.join(' '))).toEqual(['ip -force -batch -', 'ip -force -batch -']);
    expect(sh(['ip', 'route', 'show', 'table', '1100']).match(/^default dev/gm)).toHaveLength(1);
    expect(await router.set(plan())).toBe(false);
  });

  it('the same plan again changes nothing', async () => {
    runner.writes.length = 0;
    expect(await router.set(plan())).toBe(false);
    expect(runner.writes).toEqual([]);
  });

  it('the same plan as the last set() runs no process at all, not even a read; a flip or a repair in between makes it read again', async () => {
    await router.set(plan());
    runner.all.length = 0;
    expect(await router.set(plan())).toBe(false);
    expect(runner.all).toEqual([]);
    // A flip changed part of the state behind set()'s back: the next set() reads the kernel.
    await router.setActive('gw2');
    runner.all.length = 0;
    expect(await router.set(plan())).toBe(true);
    expect(sh(['ip', 'route', 'show', 'table', '1100'])).toContain('default dev swg-gw1');
    expect(runner.all.some((a) => a[0] === 'ip' && a[1] === '-j')).toBe(true);
    // A different plan reads and applies.
    runner.all.length = 0;
    expect(await router.set(plan({ rules: [rule(0, 'aaaa0000', { tagged: true })] }))).toBe(true);
    expect(runner.all.length).toBeGreaterThan(0);
    expect(await router.set(plan())).toBe(true);
  });

  it('repairs a deleted table, a deleted rule and a deleted route', async () => {
    sh(['nft', 'delete', 'table', 'inet', 'splitwan']);
    sh(['ip', 'rule', 'del', 'pref', '5020']);
    sh(['ip', 'route', 'del', 'default', 'dev', 'swg-gw2', 'table', '1102']);
    const repaired = await router.reconcile();
    expect(repaired).toContain('nft table');
    expect(repaired).toContain('ip rules');
    expect(repaired).toContain('routes');
    expect(sh(['nft', 'list', 'table', 'inet', 'splitwan'])).toContain('chain classify');
    expect(sh(['ip', 'rule', 'show'])).toContain('5020:');
    expect(sh(['ip', 'route', 'show', 'table', '1102'])).toContain('default dev swg-gw2');
    // The re-created table got its default path back.
    expect(sh(['nft', 'list', 'map', 'inet', 'splitwan', 'active'])).toContain('0x00001f00 : 0x00001100');
    expect(await router.reconcile()).toEqual([]);
  });

  it('a flushed chain is repaired too', async () => {
    sh(['nft', 'flush', 'chain', 'inet', 'splitwan', 'classify']);
    expect(await router.reconcile()).toContain('nft rules of classify');
    expect(sh(['nft', 'list', 'chain', 'inet', 'splitwan', 'classify'])).toContain('meta mark set 0x00001f00');
  });

  it('a plan without gw2 removes its rule and routes, keeps tags of rules that stay', async () => {
    sh(['nft', 'add', 'element', 'inet', 'splitwan', 'tag4_aaaa0000', '{ 198.51.100.7 timeout 10m }']);
    await router.set(plan({ gateways: [GW1] }));
    expect(sh(['ip', 'rule', 'show'])).not.toContain('lookup 1102');
    expect(sh(['ip', 'route', 'show', 'table', '1102'])).toBe('');
    expect(sh(['nft', 'list', 'set', 'inet', 'splitwan', 'tag4_aaaa0000'])).toContain('198.51.100.7');
  });

  it('source-port paths: their ports are reserved, so the kernel picks none of them even where the ephemeral range was widened', async () => {
    sh(['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=60000 65500', 'net.ipv4.ip_local_reserved_ports=5000-5001']);
    await router.set(plan({ gateways: [GW1], portPaths: true }));
    expect(sh(['sysctl', '-n', 'net.ipv4.ip_local_reserved_ports']).trim()).toBe('5000-5001,61000-65399');
    expect(sh(['ip', 'rule', 'show'])).toContain('5020:\tfrom all iif lo sport 61200-61399 lookup 1101');
    runner.writes.length = 0;
    expect(await router.set(plan({ gateways: [GW1], portPaths: true }))).toBe(false);
    expect(runner.writes).toEqual([]);
    // 300 sockets bound to port 0, both families: 1101 ports of 60000-65500 lie outside the window.
    const script = `const d=require('dgram');let n=0;const ports=[];for(let i=0;i<300;i++){const s=d.createSocket(i%2?'udp6':'udp4');s.bind(0,()=>{ports.push(s.address().port);if(++n===300){console.log(JSON.stringify(ports));process.exit(0)}})}`;
    const ports = JSON.parse(sh([process.execPath, '-e', script])) as number[];
    expect(ports).toHaveLength(300);
    expect(ports.filter((p) => p >= 61000 && p <= 65399)).toEqual([]);
  });

  it('cleanup leaves no table, no rule in 5000-5099, no route in our tables', async () => {
    await router.cleanup();
    expect(spawnSync('ip', ['netns', 'exec', NS, 'nft', 'list', 'table', 'inet', 'splitwan']).status).not.toBe(0);
    expect(sh(['ip', 'rule', 'show'])).not.toMatch(/^50\d\d:/m);
    expect(sh(['ip', '-6', 'rule', 'show'])).not.toMatch(/^50\d\d:/m);
    for (const t of ['1100', '1101', '1102']) expect(sh(['ip', 'route', 'show', 'table', t])).toBe('');
    // What was reserved before the port paths' window is reserved again, no more.
    expect(sh(['sysctl', '-n', 'net.ipv4.ip_local_reserved_ports']).trim()).toBe('5000-5001');
  });
});

it.skipIf(supported || !!process.env.CI)('LinuxRouter in a namespace: SKIPPED', () => {
  console.warn(`SKIPPED lab test (router-linux): ${why}. CI runs it as root.`);
});
