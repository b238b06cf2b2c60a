// Path sockets (daemon/sockets-linux.ts) with real marks, routes and gateways.
//
//                          (probe: test/lab/fixtures/sockets-probe.mjs runs here)
//  [client]   [router] wan0 10.99.2.2 fd99:2::2 ──────────────── [isp] web 10.99.9.9 fd99:9::9 :80 (echo)
//                 │  mark 0x1000 → main (breakout)
//                 ├─ swg<tag>g1 10.64.0.2 ══ WireGuard ══ [gw1] 10.64.0.1 fd64::1 (dnsmasq) up0 10.99.3.2 ── [isp]
//                 │  mark 0x1100 → table 1101: default dev swg<tag>g1
//                 └─ swg<tag>g2 10.64.0.2 ══ WireGuard ══ [gw2] 10.64.0.1 fd64::1 (dnsmasq) up0 10.99.4.2 ── [isp]
//                    mark 0x1200 → table 1102: default dev swg<tag>g2
//
// Both tunnels have the same address and both resolvers the same address, so
// only the mark can choose the path. The test installs the ip rules and tables
// (dataplane-notes §2) in the ROUTER namespace only; they go away with the lab.
// Node cannot enter a namespace, so the sockets are made by a child script run
// with `ip netns exec`, importing the compiled dist/daemon/sockets-linux.js (built
// in beforeAll). Needs root; CI must have it (the test fails there otherwise).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupported, type Lab } from '../../lab/lab.js';
import { emulatorRefusesMark } from '../helpers/emulator-limits.js';
import { skipNative } from '../helpers/native.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const probe = join(root, 'test', 'lab', 'fixtures', 'sockets-probe.mjs');
const built = join(root, 'dist', 'daemon', 'sockets-linux.js');

const support = labSupported();
const supported = support.ok;
const inCi = Boolean(process.env.CI);
if (!supported && !inCi) console.warn(`[test/lab/sockets-linux] SKIPPED: namespace lab not supported here: ${support.why}`);
// SO_MARK and SO_ORIGINAL_DST are native calls (koffi): where koffi has no build (s390x) the daemon takes source-port paths instead.
const noNative = skipNative('test/lab/sockets-linux (marked sockets through koffi)') !== null;
// Under test:arch, qemu-user answers SO_MARK itself (ENOPROTOOPT): asked here each run; the daemon takes source-port paths there.
const markRefused = noNative ? null : await emulatorRefusesMark();
if (markRefused !== null) console.warn(`[test/lab/sockets-linux] SKIPPED: ${markRefused}`);

const M_BREAKOUT = 0x1000;
const M_GW1 = 0x1100;
const M_GW2 = 0x1200;

let lab: Lab | undefined;
let setupError: unknown;

function need(): Lab {
  expect(support, 'the namespace lab must run in CI (root, ip, wg, wireguard-go, nft, dnsmasq, curl, dig)').toEqual({ ok: true });
  if (!lab) throw new Error(`lab was not built: ${String((setupError as Error)?.message ?? setupError)}`);
  return lab;
}

async function inRouter(l: Lab, argv: string[], input?: string): Promise<string> {
  const res = await l.exec(l.ns.router, argv, input === undefined ? {} : { input });
  if (res.code !== 0) throw new Error(`${argv.join(' ')} (router ns) failed ${res.code}: ${res.stderr}`);
  return res.stdout;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Result = any;

/** Runs the probe in the router namespace with these ops; one result per op. */
async function runProbe(l: Lab, ops: object[], argvPrefix: string[] = [], timeoutMs = 15_000): Promise<Result[]> {
  const res = await l.exec(l.ns.router, [...argvPrefix, process.execPath, probe, JSON.stringify(ops)], { timeoutMs });
  if (res.code !== 0) throw new Error(`probe failed (exit ${res.code}): ${res.stderr}`);
  // dgram's fd is read through the state symbol, not the deprecated _handle (DEP0112).
  expect(res.stderr).not.toMatch(/DeprecationWarning|DEP0112/);
  const line = res.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Result[];
  } catch {
    throw new Error(`probe printed no JSON: ${res.stdout} ${res.stderr}`);
  }
}

/**
 * The probe runs the compiled module inside the namespace. `npm test` builds
 * dist/ before the tests; rebuilding here would rewrite files other test
 * files are reading at the same time.
 */
function build(): Promise<void> {
  if (!existsSync(built)) return Promise.reject(new Error(`${built} is missing: run \`npm run build\` (npm test does it first)`));
  return Promise.resolve();
}

describe.skipIf((!supported && !inCi) || noNative || markRefused !== null)('path sockets with SO_MARK in the namespace lab', () => {
  beforeAll(async () => {
    if (!supported) return;
    try {
      await build();
      lab = await createLab();
      const l = lab;
      const { gw1, gw2 } = l.ifaces.router;
      for (const f of l.ipv6 ? ['-4', '-6'] : ['-4']) {
        const lines = [
          'rule add pref 5000 lookup main suppress_prefixlength 0',
          `rule add pref 5010 fwmark ${M_BREAKOUT}/0xff00 lookup main`,
          `rule add pref 5020 fwmark ${M_GW1}/0xff00 lookup 1101`,
          `rule add pref 5021 fwmark ${M_GW2}/0xff00 lookup 1102`,
          `route add default dev ${gw1} table 1101`,
          `route add default dev ${gw2} table 1102`,
        ];
        for (const ln of lines) await inRouter(l, ['ip', f, ...ln.split(' ')]);
      }
    } catch (e) {
      setupError = e;
    }
  }, 120_000);

  afterAll(async () => {
    // The rules, tables and nft table live in the router namespace: deleting it removes them.
    await lab?.destroy();
  }, 30_000);

  it('UDP DNS to the shared resolver address gets the answer of the gateway the mark names', async () => {
    const l = need();
    const tag = `t${process.pid}-${Date.now() % 100000}`;
    const ops = [
      { op: 'dns', family: 4, server: l.addr.tunnelGateway.v4, name: `v4a-${tag}.where.lab.test`, type: 'A', mark: M_GW1 },
      { op: 'dns', family: 4, server: l.addr.tunnelGateway.v4, name: `v4b-${tag}.where.lab.test`, type: 'A', mark: M_GW2 },
      ...(l.ipv6
        ? [
            { op: 'dns', family: 6, server: l.addr.tunnelGateway.v6, name: `v6a-${tag}.where.lab.test`, type: 'AAAA', mark: M_GW1 },
            { op: 'dns', family: 6, server: l.addr.tunnelGateway.v6, name: `v6b-${tag}.where.lab.test`, type: 'AAAA', mark: M_GW2 },
          ]
        : []),
    ];
    const res = await runProbe(l, ops);
    const w = l.names['where.lab.test']!;
    expect(res[0]).toEqual({ answers: [w.gw1[0]], sport: expect.any(Number) });
    expect(res[1]).toEqual({ answers: [w.gw2[0]], sport: expect.any(Number) });
    if (l.ipv6) {
      expect(res[2]).toEqual({ answers: [w.gw1[1]], sport: expect.any(Number) });
      expect(res[3]).toEqual({ answers: [w.gw2[1]], sport: expect.any(Number) });
    }
    // The resolvers' logs agree: each saw only the queries of its own mark, from the shared tunnel address.
    const [log1, log2] = l.gwResolverLogs.map((p) => readFileSync(p, 'utf8'));
    expect(log1).toMatch(new RegExp(`query\\[A\\] v4a-${tag}\\.where\\.lab\\.test from ${l.addr.tunnelRouter.v4.replace(/\./g, '\\.')}`));
    expect(log2).toMatch(new RegExp(`query\\[A\\] v4b-${tag}\\.where\\.lab\\.test from ${l.addr.tunnelRouter.v4.replace(/\./g, '\\.')}`));
    expect(log1).not.toContain(`v4b-${tag}`);
    expect(log2).not.toContain(`v4a-${tag}`);
    if (l.ipv6) {
      expect(log1).toContain(`query[AAAA] v6a-${tag}.where.lab.test from ${l.addr.tunnelRouter.v6}`);
      expect(log2).toContain(`query[AAAA] v6b-${tag}.where.lab.test from ${l.addr.tunnelRouter.v6}`);
      expect(log1).not.toContain(`v6b-${tag}`);
      expect(log2).not.toContain(`v6a-${tag}`);
    }
  });

  it('TCP to the echo server leaves through gw1, gw2 or breakout by mark (IPv4 and IPv6)', async () => {
    const l = need();
    const web = l.addr.web;
    const fams = l.ipv6 ? (['v4', 'v6'] as const) : (['v4'] as const);
    const cases = fams.flatMap((f) => [
      { f, mark: M_GW1, want: l.addr.gw1Uplink[f] },
      { f, mark: M_GW2, want: l.addr.gw2Uplink[f] },
      { f, mark: M_BREAKOUT, want: l.addr.routerWan[f] },
    ]);
    const res = await runProbe(
      l,
      cases.map((c) => ({ op: 'http', host: web[c.f], port: 80, mark: c.mark, timeoutMs: 3000 })),
    );
    expect(res.map((r) => r.reply?.remote ?? r.error?.message)).toEqual(cases.map((c) => c.want));
  });

  it('a connect to a blackholed gateway rejects within timeoutMs and leaks no fd; a refusal names the peer', async () => {
    const l = need();
    const timeoutMs = 400;
    await l.blackholeGateway(1, true);
    let res: Result[];
    try {
      res = await runProbe(l, [
        { op: 'connect', host: l.addr.web.v4, port: 80, mark: M_GW2, timeoutMs, parallel: 8 },
        ...(l.ipv6 ? [{ op: 'connect', host: l.addr.web.v6, port: 80, mark: M_GW2, timeoutMs, parallel: 8 }] : []),
        { op: 'connect', host: l.addr.web.v4, port: 81, mark: M_BREAKOUT, timeoutMs: 3000, parallel: 4 },
      ]);
    } finally {
      await l.blackholeGateway(1, false);
    }
    const timeouts = l.ipv6 ? [res[0], res[1]] : [res[0]];
    for (const r of timeouts) {
      expect(r.runs).toHaveLength(8);
      for (const run of r.runs) {
        expect(run.error).toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'ETIMEDOUT' });
        expect(run.error.message).toContain(`mark 0x1200`);
        expect(run.error.message).toContain(`within ${timeoutMs} ms`);
        expect(run.elapsedMs).toBeGreaterThanOrEqual(timeoutMs - 5);
        expect(run.elapsedMs).toBeLessThan(timeoutMs + 300);
      }
      expect(r.fdsAfter).toBe(r.fdsBefore);
    }
    expect(timeouts[0].runs[0].error.message).toContain(`${l.addr.web.v4}:80`);
    if (l.ipv6) expect(timeouts[1].runs[0].error.message).toContain(`[${l.addr.web.v6}]:80`);
    const refused = res[res.length - 1];
    for (const run of refused.runs) {
      expect(run.error).toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'ECONNREFUSED' });
      expect(run.error.message).toContain(`${l.addr.web.v4}:81`);
    }
    expect(refused.fdsAfter).toBe(refused.fdsBefore);
  });

  it('without CAP_NET_ADMIN (and CAP_NET_RAW), marking fails with EPERM, says so, and closes the fd', async () => {
    const l = need();
    const res = await runProbe(
      l,
      [
        { op: 'udpOnly', family: 4, mark: M_GW1 },
        { op: 'tcpOnly', host: l.addr.web.v4, port: 80, mark: M_GW1, timeoutMs: 1000 },
      ],
      ['setpriv', '--bounding-set=-net_admin,-net_raw', '--inh-caps=-net_admin,-net_raw', '--'],
    );
    for (const r of res) {
      expect(r.error).toMatchObject({ code: 'SPLITWAN_SOCKET', errno: 'EPERM', syscall: 'setsockopt(SO_MARK)' });
      expect(r.error.message).toContain('CAP_NET_ADMIN');
      expect(r.fdsAfter).toBe(r.fdsBefore);
    }
    expect(res[1].error.message).toContain(`${l.addr.web.v4}:80`);
  });

  it('originalDst gives the address a redirected connection was sent to; marked dials are not redirected', async () => {
    const l = need();
    const port = 18080;
    const table = `swsock${process.pid % 100000}`;
    // nat output redirect in the router ns only, skipping marked sockets (as the proxy's rule, §7).
    const ruleset = [
      `table inet ${table} {`,
      '\tchain out_nat {',
      '\t\ttype nat hook output priority -100; policy accept;',
      '\t\tmeta mark 0 tcp dport 80 redirect to :' + port,
      '\t}',
      '}',
      '',
    ].join('\n');
    await inRouter(l, ['nft', '-f', '-'], ruleset);
    let res: Result[];
    try {
      res = await runProbe(l, [
        {
          op: 'origdst',
          listenPort: port,
          targets: [{ host: l.addr.web.v4, port: 80 }, ...(l.ipv6 ? [{ host: l.addr.web.v6, port: 80 }] : [])],
          marked: { host: l.addr.web.v4, port: 80, mark: M_BREAKOUT },
        },
      ]);
    } finally {
      await inRouter(l, ['nft', 'delete', 'table', 'inet', table]);
    }
    const r = res[0];
    expect(r.error).toBeUndefined();
    expect(r.seen.map((s: Result) => s.orig)).toEqual([
      { address: l.addr.web.v4, port: 80 },
      ...(l.ipv6 ? [{ address: l.addr.web.v6, port: 80 }] : []),
    ]);
    expect(r.markedReply).toMatchObject({ remote: l.addr.routerWan.v4 });
  });
});
