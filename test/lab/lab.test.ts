// The namespace lab itself, checked with real packets and no splitwan.
//
//  [client] c0 10.99.1.2 ── lan0 10.99.1.1 [router] wan0 10.99.2.2 ── r0 10.99.2.1 [isp] web 10.99.9.9 fd99:9::9 :80
//                                    │                                            dnsmasq 10.99.9.53 (isp resolver)
//                    swg<tag>g1 10.64.0.2 ══ WireGuard ══ [gw1] 10.64.0.1 (dnsmasq) up0 10.99.3.2 ── [isp]
//                    swg<tag>g2 10.64.0.2 ══ WireGuard ══ [gw2] 10.64.0.1 (dnsmasq) up0 10.99.4.2 ── [isp]
//
// Each test adds what it needs (a masquerade, a route) inside the ROUTER namespace and
// removes it in `finally`. Needs root; CI must have it (the test fails there otherwise).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, helperNode, labSupported, type GatewayIndex, type Lab } from '../../lab/lab.js';

const support = labSupported();
const supported = support.ok;
const inCi = Boolean(process.env.CI);
if (!supported && !inCi) console.warn(`[test/lab] SKIPPED: namespace lab not supported here: ${support.why}`);

let lab: Lab | undefined;
let setupError: unknown;
let upMs = 0;

function need(): Lab {
  expect(support, 'the namespace lab must run in CI (root, ip, wg, wireguard-go, nft, dnsmasq, curl, dig)').toEqual({ ok: true });
  if (!lab) throw new Error(`lab was not built: ${String((setupError as Error)?.message ?? setupError)}`);
  return lab;
}

/** Runs in the router ns and throws on failure. */
async function r(l: Lab, argv: string[], input?: string): Promise<string> {
  const res = await l.exec(l.ns.router, argv, input === undefined ? {} : { input });
  if (res.code !== 0) throw new Error(`${argv.join(' ')} (router ns) failed ${res.code}: ${res.stderr}`);
  return res.stdout;
}

/** Adds routes in the router ns for the duration of fn, then deletes them. */
async function withRoutes<T>(l: Lab, routes: string[][], fn: () => Promise<T>): Promise<T> {
  const added: string[][] = [];
  try {
    for (const rt of routes) {
      await r(l, ['ip', 'route', 'add', ...rt]);
      added.push(rt);
    }
    return await fn();
  } finally {
    for (const rt of added.reverse()) await r(l, ['ip', 'route', 'del', ...rt]).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('namespace lab', () => {
  beforeAll(async () => {
    if (!supported) return;
    const t = performance.now();
    try {
      lab = await createLab({ names: { 'custom.lab.test': { isp: '198.51.100.1', gw1: '198.51.100.11', gw2: '198.51.100.12' } } });
      upMs = performance.now() - t;
      console.log(`[test/lab] lab ${lab.id} up in ${upMs.toFixed(0)} ms`, lab.timings);
    } catch (e) {
      setupError = e;
    }
  }, 60_000);

  afterAll(async () => {
    await lab?.destroy();
  }, 30_000);

  const test = it.skipIf(!supported && !inCi);

  test('builds five namespaces, processes in the right ones, both handshakes done, no fwmark on the router', async () => {
    const l = need();
    const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const n of Object.values(l.ns)) expect(list).toContain(n);
    expect(l.pids()).toHaveLength(4 + 3 + 1); // 4 wireguard-go, 3 dnsmasq, echo server
    const programs: string[] = [];
    for (const pid of l.pids()) {
      // Every process runs inside one of the lab's namespaces, never the root one.
      expect(Object.values(l.ns)).toContain(execFileSync('ip', ['netns', 'identify', String(pid)], { encoding: 'utf8' }).trim());
      // What it runs, by its executable and arguments (comm is a thread name: Node 24 calls its main thread MainThread).
      const exe = realpathSync(`/proc/${pid}/exe`);
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      programs.push(exe === realpathSync(helperNode()) ? `node ${basename(argv[1] ?? '')}` : basename(exe));
    }
    expect(programs.sort()).toEqual(['dnsmasq', 'dnsmasq', 'dnsmasq', 'node echo-server.mjs', 'wireguard-go', 'wireguard-go', 'wireguard-go', 'wireguard-go']);
    for (const [i, g] of l.gateways.entries()) {
      expect(await l.latestHandshake(i as GatewayIndex)).toBeGreaterThan(0);
      expect((await r(l, ['wg', 'show', g.routerIf, 'fwmark'])).trim()).toBe('off');
      expect(g.configText).toContain(`Endpoint = ${g.endpoint}`);
      expect(g.configText).toContain(`PublicKey = ${g.publicKey}`);
      expect(existsSync(`/var/run/wireguard/${g.routerIf}.sock`)).toBe(true);
    }
    // Both tunnels carry the same address.
    const addrs = JSON.parse(await r(l, ['ip', '-j', 'addr', 'show'])) as { ifname: string; addr_info: { local: string }[] }[];
    for (const g of l.gateways) {
      const locals = addrs.find((x) => x.ifname === g.routerIf)?.addr_info.map((a) => a.local);
      expect(locals).toEqual(expect.arrayContaining([l.addr.tunnelRouter.v4, l.addr.tunnelRouter.v6]));
    }
  });

  test('client reaches the web server through the router only with a masquerade; the echo shows the WAN address', async () => {
    const l = need();
    // No routing magic: the isp has no route back to the client LAN.
    expect(await l.curlEcho(l.ns.client, `http://${l.addr.web.v4}/`, { timeoutMs: 1000 })).toHaveProperty('error');
    const table = `labtest${process.pid}`;
    await r(l, ['nft', '-f', '-'], `table inet ${table} {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname "wan0" masquerade\n\t}\n}\n`);
    try {
      expect(await l.curlEcho(l.ns.client, `http://${l.addr.web.v4}/`)).toEqual({ remote: l.addr.routerWan.v4, host: l.addr.web.v4, local: l.addr.web.v4, sni: '' });
      expect(await l.curlEcho(l.ns.client, `http://[${l.addr.web.v6}]/`)).toMatchObject({ remote: l.addr.routerWan.v6 });
      const viaName = await l.curlEcho(l.ns.client, 'http://web.lab.test/', { extraArgs: ['--resolve', `web.lab.test:80:${l.addr.web.v4}`] });
      expect(viaName).toMatchObject({ remote: l.addr.routerWan.v4, host: 'web.lab.test' });
    } finally {
      await r(l, ['nft', 'delete', 'table', 'inet', table]);
    }
    // The router itself goes out through main (breakout) without any help.
    expect(await l.curlEcho(l.ns.router, `http://${l.addr.web.v4}/`)).toMatchObject({ remote: l.addr.routerWan.v4 });
  });

  test('from the router, a route via each tunnel reaches the web server through that gateway', async () => {
    const l = need();
    for (const g of l.gateways) {
      const seen = await withRoutes(
        l,
        [
          [`${l.addr.web.v4}/32`, 'dev', g.routerIf],
          [`${l.addr.web.v6}/128`, 'dev', g.routerIf],
        ],
        async () => [await l.curlEcho(l.ns.router, `http://${l.addr.web.v4}/`), await l.curlEcho(l.ns.router, `http://[${l.addr.web.v6}]/`)],
      );
      expect(seen).toEqual([expect.objectContaining({ remote: g.uplink.v4 }), expect.objectContaining({ remote: g.uplink.v6 })]);
    }
    // SO_BINDTODEVICE works for IPv4 too (no route needed).
    expect(await l.curlEcho(l.ns.router, `http://${l.addr.web.v4}/`, { interface: l.gateways[1].routerIf })).toMatchObject({
      remote: l.gateways[1].uplink.v4,
    });
  });

  test("dig @10.64.0.1 through each tunnel gets that gateway's own answer, and its resolver logs it", async () => {
    const l = need();
    const dig = async (server: string, type: string, name: string) =>
      (await r(l, ['dig', '+short', '+time=2', '+tries=1', `@${server}`, type, name])).trim().split('\n').filter(Boolean);
    for (const [i, g] of l.gateways.entries()) {
      const answers = await withRoutes(
        l,
        [
          [`${l.addr.tunnelGateway.v4}/32`, 'dev', g.routerIf],
          [`${l.addr.tunnelGateway.v6}/128`, 'dev', g.routerIf],
        ],
        async () => ({
          a: await dig(l.addr.tunnelGateway.v4, 'A', 'where.lab.test'),
          aaaa: await dig(l.addr.tunnelGateway.v6, 'AAAA', 'where.lab.test'),
          custom: await dig(l.addr.tunnelGateway.v4, 'A', 'custom.lab.test'),
        }),
      );
      const want = l.names['where.lab.test']![g.name];
      expect(answers).toEqual({ a: [want[0]], aaaa: [want[1]], custom: [`198.51.100.1${i + 1}`] });
      const log = readFileSync(l.gwResolverLogs[i as GatewayIndex], 'utf8');
      expect(log).toContain(`query[A] where.lab.test from ${l.addr.tunnelRouter.v4}`);
      expect(log).toContain(`query[AAAA] where.lab.test from ${l.addr.tunnelRouter.v6}`);
    }
    expect(l.names['where.lab.test']!.gw1).not.toEqual(l.names['where.lab.test']!.gw2);
  });

  test('the isp resolver answers its own values and logs the names asked of it', async () => {
    const l = need();
    const out = await r(l, ['dig', '+short', '+time=2', '+tries=1', `@${l.addr.ispResolver.v4}`, 'A', 'where.lab.test']);
    expect(out.trim()).toBe(l.names['where.lab.test']!.isp[0]);
    const out6 = await r(l, ['dig', '+short', '+time=2', '+tries=1', `@${l.addr.ispResolver.v6}`, 'A', 'custom.lab.test']);
    expect(out6.trim()).toBe('198.51.100.1');
    const log = readFileSync(l.ispResolverLog, 'utf8');
    expect(log).toContain(`query[A] where.lab.test from ${l.addr.routerWan.v4}`);
    expect(log).toContain(`query[A] custom.lab.test from ${l.addr.routerWan.v6}`);
  });

  test('blackholeGateway stops handshakes and traffic through that gateway only, and lifting it restores them', async () => {
    const l = need();
    const g = l.gateways[1];
    const resetPeer = async () => {
      // A fresh peer has no session: the next packet needs a new handshake.
      await r(l, ['wg', 'set', g.routerIf, 'peer', g.publicKey, 'remove']);
      await r(l, ['wg', 'set', g.routerIf, 'peer', g.publicKey, 'endpoint', g.endpoint, 'allowed-ips', '0.0.0.0/0,::/0', 'persistent-keepalive', '25']);
    };
    const viaGw = (gw: typeof g) =>
      withRoutes(l, [[`${l.addr.web.v4}/32`, 'dev', gw.routerIf]], () => l.curlEcho(l.ns.router, `http://${l.addr.web.v4}/`, { timeoutMs: 1500 }));
    await l.blackholeGateway(1, true);
    await l.blackholeGateway(1, true); // idempotent
    try {
      await resetPeer();
      expect(await viaGw(g)).toHaveProperty('error');
      expect(await l.latestHandshake(1)).toBe(0);
      expect(await viaGw(l.gateways[0])).toMatchObject({ remote: l.gateways[0].uplink.v4 }); // the other one is fine
    } finally {
      await l.blackholeGateway(1, false);
      await l.blackholeGateway(1, false); // idempotent
    }
    // wireguard-go retries the initiation every 5 s.
    expect(await l.waitHandshake(1, { timeoutMs: 12_000 })).toBeGreaterThan(0);
    expect(await viaGw(g)).toMatchObject({ remote: g.uplink.v4 });
  }, 30_000);

  test('destroy() leaves no namespace, process, socket or temp dir, and is idempotent', async () => {
    const l = need();
    const pids = l.pids();
    expect(pids.length).toBeGreaterThan(0);
    const t = performance.now();
    await l.destroy();
    const downMs = performance.now() - t;
    await l.destroy();
    console.log(`[test/lab] lab ${l.id}: up ${upMs.toFixed(0)} ms, down ${downMs.toFixed(0)} ms`);
    const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const n of Object.values(l.ns)) expect(list).not.toContain(n);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(l.pids()).toEqual([]);
    for (const s of l.sockets()) expect(existsSync(s), s).toBe(false);
    expect(existsSync(l.tmpDir)).toBe(false);
    await expect(l.exec(l.ns.router, ['true'])).rejects.toThrow(/destroyed/);
  });
});
