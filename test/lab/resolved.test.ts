// The systemd-resolved takeover (daemon/resolved*.ts) against a real
// systemd-resolved (Debian's package, unpacked, lab/resolved-lab.ts) and a
// real NetworkManager managing the WAN by DHCP, in namespaces of this test:
//
//   [swr<pid>-host] the laptop (own netns + mount ns: /run, bus, resolved, NetworkManager)
//     lo            resolved's stub 127.0.0.53; the agent ("splitwan") on 127.0.0.153:53
//                   answering every A question with 198.51.100.53
//     splitwan-dns  TUN held by the agent (no native code: ifb), 192.0.0.8/32 scope site: DNS 127.0.0.153, ~., default route
//     wan0 (DHCP from the network, managed by NetworkManager) ─────┐
//     old0 ── old1  a veth pair for a stale takeover (cleanup)     │
//   [swr<pid>-net] the network                                    net0 10.97.0.1/24 + 10.97.0.2/24
//     dnsmasq DHCP (port 0): 10.97.0.50-99, DNS option 10.97.0.1 (then .2: a network change)
//     dnsmasq DNS 10.97.0.1 answers everything with 192.0.2.1 (logs queries)
//     dnsmasq DNS 10.97.0.2 answers everything with 192.0.2.2 (logs queries)
//
// The agent (test/lab/fixtures/resolved-agent.mjs) runs the compiled
// takeover inside the laptop's namespaces; its stdout says which names it
// was asked. Its link is the daemon's choice: the TUN device, or with
// SPLITWAN_NATIVE=off (`SPLITWAN_NATIVE=off npx vitest run test/lab/resolved.test.ts`)
// an ifb link made with ip, which a kill -9 leaves until cleanup. Without NetworkManager's packages the NetworkManager cases print
// SKIPPED and the WAN is configured the way NetworkManager would do it
// (SetLinkDNS/SetLinkDomains/SetLinkDefaultRoute through resolvectl).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, run, Supervised } from '../../lab/lab.js';
import { ensurePackages, resolvectlLink, resolvedLabSupported, startResolvedLab, type ResolvedLab } from '../../lab/resolved-lab.js';
import { nativeUnavailable } from '../helpers/native.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const agentPath = join(root, 'test', 'lab', 'fixtures', 'resolved-agent.mjs');
const built = join(root, 'dist', 'daemon', 'resolved-linux.js');

const support = resolvedLabSupported();
const inCi = Boolean(process.env.CI);
if (!support.ok) console.warn(`[test/lab/resolved] SKIPPED: the resolved lab cannot run here: ${support.why}`);

const tag = process.pid % 10000;
const HOST = `swr${tag}-host`;
const NET = `swr${tag}-net`;
const SPLITWAN = '198.51.100.53';
const ISP1 = '192.0.2.1';
const ISP2 = '192.0.2.2';
/** The link the takeover makes: the TUN device where native code runs, else one made with ip (it outlives a crash). */
const LINK: 'tun' | 'ip' = nativeUnavailable() === null ? 'tun' : 'ip';

let lab: ResolvedLab | undefined;
let nmAvailable = false;
let setupError: unknown;
const netProcs: Supervised[] = [];
const createdNs: string[] = [];
let dhcp: Supervised | null = null;
let tmpLogs = '';
let seq = 0;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const unique = (what: string) => `${what}-${tag}-${Date.now() % 1_000_000}-${seq++}.example`;

function need(): ResolvedLab {
  if (!lab) throw new Error(`the resolved lab was not built: ${String((setupError as Error)?.stack ?? setupError)}`);
  return lab;
}

async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100);
  }
}

/** `dig @127.0.0.53 NAME A` inside the laptop: the addresses resolved answered. */
async function viaStub(name: string): Promise<string[]> {
  const r = await need().exec(['dig', '+short', '+time=3', '+tries=2', '@127.0.0.53', name, 'A']);
  return r.stdout.split('\n').map((s) => s.trim()).filter((s) => /^\d+\.\d+\.\d+\.\d+$/.test(s));
}

/** `resolvectl status IF`, the lines that matter. */
const linkView = (ifname: string) => resolvectlLink(need(), ifname);

/**
 * Every link's section of `resolvectl status` but splitwan's: what the
 * takeover must leave as it was. The Global section is left out: the
 * takeover makes no global call, but resolvectl 252 lists a link's loopback
 * server there too (resolved reports loopback servers with ifindex 1, lo).
 */
async function othersView(): Promise<string> {
  const r = await need().resolvectl('status');
  return r.stdout
    .split(/\n(?=Link \d+ )/)
    .filter((s) => /^Link \d+ /.test(s) && !/^Link \d+ \(splitwan-dns\)/.test(s))
    // which server answered last is not configuration
    .map((s) => s.replace(/^\s*Current DNS Server:.*\n/gm, '').replace(/^Link \d+ /, 'Link '))
    .join('\n');
}

function logOf(which: 'isp1' | 'isp2'): string {
  try {
    return readFileSync(join(tmpLogs, `${which}.log`), 'utf8');
  } catch {
    return '';
  }
}

class Agent {
  readonly p: Supervised;
  constructor(guardMs: number) {
    this.p = need().spawn('agent', [process.execPath, agentPath, 'run', String(guardMs), 'wan0']);
  }
  async ready(): Promise<{ active: boolean; ifindex: number; link: 'tun' | 'ip' }> {
    await this.p.waitUntil('the agent to take over', () => /^ready /m.test(this.p.tail), 20_000);
    return JSON.parse(/^ready (.*)$/m.exec(this.p.tail)![1]!) as { active: boolean; ifindex: number; link: 'tun' | 'ip' };
  }
  asked(name: string): boolean {
    return this.p.tail.includes(`query ${name} A`);
  }
  /** SIGUSR1 → the controller's status line. */
  async status(): Promise<{ active: boolean; reapplied: number; lastError: string | null }> {
    const n = (this.p.tail.match(/^status /gm) ?? []).length;
    this.p.signal('SIGUSR1');
    await this.p.waitUntil('status', () => (this.p.tail.match(/^status /gm) ?? []).length > n, 10_000);
    return JSON.parse([...this.p.tail.matchAll(/^status (.*)$/gm)].pop()![1]!) as { active: boolean; reapplied: number; lastError: string | null };
  }
  async breakout(): Promise<string[]> {
    const n = (this.p.tail.match(/^breakout /gm) ?? []).length;
    this.p.signal('SIGUSR2');
    await this.p.waitUntil('breakout', () => (this.p.tail.match(/^breakout /gm) ?? []).length > n, 10_000);
    return JSON.parse([...this.p.tail.matchAll(/^breakout (.*)$/gm)].pop()![1]!) as string[];
  }
  async stop(): Promise<void> {
    this.p.signal('SIGTERM');
    await Promise.race([this.p.exited, sleep(15_000)]);
    if (this.p.running) throw new Error(`agent did not stop: ${this.p.tail.slice(-800)}`);
  }
}

const inNet = (argv: string[]) => ['ip', 'netns', 'exec', NET, ...argv];

function startDhcp(dnsServer: string): Promise<void> {
  const p = new Supervised('dnsmasq dhcp', 'dnsmasq', inNet(['dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--port=0', '--bind-interfaces', '--interface=net0', '--dhcp-range=10.97.0.50,10.97.0.99,255.255.255.0,1h', `--dhcp-option=option:dns-server,${dnsServer}`, `--dhcp-leasefile=${join(tmpLogs, 'leases')}`, '--log-dhcp']), process.env);
  netProcs.push(p);
  dhcp = p;
  return p.waitUntil('dnsmasq dhcp', () => /started, version/.test(p.tail), 10_000);
}

function startDns(which: 'isp1' | 'isp2', listen: string, answer: string): Promise<void> {
  const p = new Supervised(`dnsmasq ${which}`, 'dnsmasq', inNet(['dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${listen}`, '--port=53', '--log-queries', `--log-facility=${join(tmpLogs, `${which}.log`)}`, `--address=/#/${answer}`]), process.env);
  netProcs.push(p);
  return p.waitUntil(`dnsmasq ${which}`, () => /started, version/.test(p.tail), 10_000);
}

const WAN_CONNECTION = `[connection]
id=labwan
uuid=6f1d2b1e-8a57-4a8e-9a53-${String(tag).padStart(12, '0')}
type=ethernet
interface-name=wan0
[ethernet]
[ipv4]
method=auto
[ipv6]
method=disabled
`;

describe.skipIf(!support.ok && !inCi)('splitwan beside a real systemd-resolved (and NetworkManager)', () => {
  beforeAll(async () => {
    try {
      expect(support, 'the resolved lab must run in CI (root, nsenter, unshare, apt-get/dpkg or a filled cache)').toEqual({ ok: true });
      if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` (npm test does it first)`);
      try {
        await ensurePackages({ networkManager: true });
        nmAvailable = true;
      } catch (e) {
        console.warn(`[test/lab/resolved] SKIPPED: the NetworkManager cases: its packages could not be had: ${(e as Error).message}`);
      }
      for (const n of [HOST, NET]) {
        if (existsSync(`/run/netns/${n}`)) throw new Error(`${n} exists: another process with the same pid % 10000?`);
        await must(['ip', 'netns', 'add', n]);
        createdNs.push(n);
      }
      tmpLogs = (await must(['mktemp', '-d', `/tmp/splitwan-resolved-test-${process.pid}-XXXXXX`])).stdout.trim();
      await must(['ip', '-n', HOST, '-batch', '-'], { input: ['link set lo up', `link add wan0 type veth peer name net0 netns ${NET}`, 'link add old0 type veth peer name old1'].join('\n') + '\n' });
      await must(['ip', '-n', NET, '-batch', '-'], { input: ['link set lo up', 'link set net0 up', 'addr add 10.97.0.1/24 dev net0', 'addr add 10.97.0.2/24 dev net0'].join('\n') + '\n' });
      await Promise.all([startDns('isp1', '10.97.0.1', ISP1), startDns('isp2', '10.97.0.2', ISP2), startDhcp('10.97.0.1')]);
      lab = await startResolvedLab({ netns: HOST, networkManager: nmAvailable ? { connections: { 'labwan.nmconnection': WAN_CONNECTION } } : false, timeoutMs: 30_000 });
      if (nmAvailable) {
        await waitFor('NetworkManager to push the DHCP DNS of wan0 to resolved', async () => (await linkView('wan0'))?.dns.includes('10.97.0.1'), 45_000);
      } else {
        // What NetworkManager would do after DHCP: the address, then SetLinkDNS/SetLinkDefaultRoute.
        await must(['ip', '-n', HOST, '-batch', '-'], { input: 'link set wan0 up\naddr add 10.97.0.10/24 dev wan0\n' });
        for (const a of [['dns', 'wan0', '10.97.0.1'], ['default-route', 'wan0', 'yes']]) expect((await lab.resolvectl(...a)).code).toBe(0);
      }
      await waitFor('resolved to answer from the network', async () => (await viaStub(unique('warmup'))).includes(ISP1));
    } catch (e) {
      setupError = e;
    }
  }, 240_000);

  afterAll(async () => {
    const errors: unknown[] = [];
    try {
      await lab?.stop();
    } catch (e) {
      errors.push(e);
    }
    await Promise.all(netProcs.map((p) => p.stop(2000)));
    for (const n of createdNs) await run(['ip', 'netns', 'del', n]);
    if (tmpLogs) await run(['rm', '-rf', tmpLogs]);
    if (errors.length) throw errors[0];
  }, 60_000);

  let agent: Agent | undefined;
  let before = '';

  it('resolved\'s stub sends every query to splitwan\'s address once the takeover is in place, and none to the network', async () => {
    const l = need();
    const first = unique('before');
    expect(await viaStub(first)).toEqual([ISP1]);
    before = await othersView();
    // A long periodic check: what follows must come from the start and the bus signals alone.
    agent = new Agent(120_000);
    expect(await agent.ready()).toMatchObject({ active: true, link: LINK });
    expect((await l.exec(['ip', '-d', 'link', 'show', 'splitwan-dns'])).stdout).toMatch(LINK === 'tun' ? /\n\s+tun type tun / : /\n\s+(ifb|dummy) /);
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    const name = unique('taken');
    expect(await viaStub(name)).toEqual([SPLITWAN]);
    expect(agent.asked(name)).toBe(true);
    expect(logOf('isp1')).toContain(first);
    expect(logOf('isp1')).not.toContain(name);
    // The takeover touched no other link.
    expect(await othersView()).toBe(before);
    // splitwan's own upstreams come from resolved's WAN link, never the stub or itself.
    expect(await agent.breakout()).toEqual(['10.97.0.1']);
    expect((await l.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'splitwan-dns'])).stdout).toMatch(/inet 192\.0\.0\.8\/32 scope site/);
  }, 60_000);

  it('a network change (the WAN gets another DNS server and a search domain over the bus) does not take queries away', async () => {
    need();
    // Exactly what NetworkManager sends resolved for its device: SetLinkDNS, SetLinkDomains, SetLinkDefaultRoute.
    const l = need();
    for (const a of [['dns', 'wan0', '10.97.0.2'], ['domain', 'wan0', 'corp.test'], ['default-route', 'wan0', 'yes']]) expect((await l.resolvectl(...a)).code).toBe(0);
    expect((await linkView('wan0'))?.dns).toEqual(['10.97.0.2']);
    const name = unique('after-change');
    expect(await viaStub(name)).toEqual([SPLITWAN]);
    expect(agent!.asked(name)).toBe(true);
    expect(logOf('isp2')).not.toContain(name);
    expect(await agent!.breakout()).toEqual(['10.97.0.2']);
    // resolved routes a name under a link's search domain to that link (the longest match beats ~.):
    // such names reach the WAN's server; in host mode splitwan's DNS redirect (nft dns_out) catches them.
    const corp = `x${tag}-${seq++}.corp.test`;
    expect(await viaStub(corp)).toEqual([ISP2]);
    expect(agent!.asked(corp)).toBe(false);
    expect((await l.resolvectl('domain', 'wan0', '')).code).toBe(0);
    expect((await l.resolvectl('dns', 'wan0', '10.97.0.1')).code).toBe(0);
  }, 60_000);

  it('NetworkManager: a DHCP change on the WAN (new DNS server, reconnect) does not take queries away', async (ctx) => {
    const l = need();
    if (!nmAvailable) {
      console.warn('[test/lab/resolved] SKIPPED: NetworkManager DHCP change: no NetworkManager packages');
      ctx.skip();
    }
    await dhcp!.stop(2000);
    await startDhcp('10.97.0.2');
    const up = await l.nmcli('connection', 'up', 'labwan');
    expect(up.code, up.stderr).toBe(0);
    await waitFor('NetworkManager to push 10.97.0.2 for wan0', async () => (await linkView('wan0'))?.dns.join() === '10.97.0.2', 30_000);
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    const name = unique('nm-change');
    expect(await viaStub(name)).toEqual([SPLITWAN]);
    expect(agent!.asked(name)).toBe(true);
    expect(await agent!.breakout()).toEqual(['10.97.0.2']);
  }, 90_000);

  it('NetworkManager: sleep (networking off, on) leaves splitwan\'s link alone: it was marked unmanaged', async (ctx) => {
    const l = need();
    if (!nmAvailable) {
      console.warn('[test/lab/resolved] SKIPPED: NetworkManager sleep: no NetworkManager packages');
      ctx.skip();
    }
    expect((await l.nmcli('networking', 'off')).code).toBe(0);
    await waitFor('wan0 to be deconfigured', async () => !/inet /.test((await l.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'wan0'])).stdout));
    expect((await l.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'splitwan-dns'])).stdout).toMatch(/inet 192\.0\.0\.8\/32/);
    expect((await linkView('splitwan-dns'))?.scopes).toBe('DNS');
    expect((await l.nmcli('networking', 'on')).code).toBe(0);
    await waitFor('wan0 to be back', async () => (await linkView('wan0'))?.dns.length, 30_000);
    const name = unique('after-sleep');
    expect(await viaStub(name)).toEqual([SPLITWAN]);
    expect(agent!.asked(name)).toBe(true);
    expect((await agent!.status()).reapplied).toBe(0);
    // why: NetworkManager was told to leave the device alone
    expect((await l.nmcli('-t', '-f', 'DEVICE,STATE', 'device')).stdout).toMatch(/^splitwan-dns:unmanaged$/m);
  }, 90_000);

  it('a resolved restart is followed: kept state is reloaded; lost state is applied again on the bus signal', async () => {
    const l = need();
    await l.stopResolved();
    await l.startResolved(); // /run/systemd/resolve/netif survives: resolved reloads the link's settings
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    const kept = unique('restart-kept');
    expect(await viaStub(kept)).toEqual([SPLITWAN]);

    await l.stopResolved();
    await l.startResolved({ forgetState: true }); // as after a reboot of /run: resolved knows nothing
    // The periodic check is 120 s away: only NameOwnerChanged can bring the settings back this fast.
    await waitFor('the takeover to be applied again', async () => (await linkView('splitwan-dns'))?.dns.includes('127.0.0.153'), 15_000);
    // The link's DNS is the first of the takeover's calls; the count goes up after the last one
    // (a busy machine showed the DNS while the agent was still applying).
    await waitFor('the agent to count it', async () => (await agent!.status()).reapplied >= 1, 15_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${agent!.p.tail}`);
    });
    expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
    if (!nmAvailable) for (const a of [['dns', 'wan0', '10.97.0.1'], ['default-route', 'wan0', 'yes']]) expect((await l.resolvectl(...a)).code).toBe(0);
    const name = unique('restart-lost');
    expect(await waitFor('the stub to answer', async () => ((await viaStub(name)).length ? viaStub(name) : null))).toEqual([SPLITWAN]);
    expect(agent!.asked(name)).toBe(true);
  }, 90_000);

  it('stop undoes exactly what was done: the link and its settings are gone, every other link is as it was', async () => {
    const l = need();
    const now = await othersView();
    await agent!.stop();
    expect(agent!.p.tail).toMatch(/^stopped$/m);
    expect((await l.exec(['ip', 'link', 'show', 'splitwan-dns'])).code).not.toBe(0);
    const status = (await l.resolvectl('status')).stdout;
    expect(status).not.toContain('127.0.0.153');
    expect(await othersView()).toBe(now);
    const name = unique('after-stop');
    expect((await viaStub(name))[0]).toMatch(/^192\.0\.2\.[12]$/);
    expect(agent!.asked(name)).toBe(false);
  }, 60_000);

  it('a crash (kill -9) leaves no takeover behind (a TUN goes with the process, the link made with ip at the next start\'s cleanup); cleanup reverts a stale one found by its marker', async () => {
    const l = need();
    const crashed = new Agent(120_000);
    expect((await crashed.ready()).active).toBe(true);
    expect(await viaStub(unique('pre-crash'))).toEqual([SPLITWAN]);
    crashed.p.signal('SIGKILL');
    await crashed.p.exited;
    if (LINK === 'ip') {
      // No process holds the link made with ip: it stays, and resolved sends every name to a dead address ...
      expect(await linkView('splitwan-dns')).toEqual({ scopes: 'DNS', dns: ['127.0.0.153'], domains: ['~.'], defaultRoute: true });
      expect(await viaStub(unique('crashed'))).toEqual([]);
      // ... until the cleanup the next start runs (systemd restarts a crashed daemon) finds it by its name.
      const r = await l.exec([process.execPath, agentPath, 'cleanup'], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^cleanup \["splitwan-dns"\]$/m);
    }
    // The kernel removed the TUN with the process (or cleanup the link made with ip); resolved forgot its settings with the link.
    await waitFor('the link to go', async () => (await l.exec(['ip', 'link', 'show', 'splitwan-dns'])).code !== 0);
    expect((await l.resolvectl('status')).stdout).not.toContain('127.0.0.153');
    expect((await viaStub(unique('post-crash')))[0]).toMatch(/^192\.0\.2\.[12]$/);

    // A takeover an older layout left on another link (a tunnel), with nobody on 127.0.0.153 now:
    await must(['ip', '-n', HOST, '-batch', '-'], { input: 'link set old0 up\nlink set old1 up\naddr add 10.96.0.1/24 dev old0\n' });
    for (const a of [['dns', 'old0', '127.0.0.153'], ['domain', 'old0', '~.'], ['default-route', 'old0', 'yes']]) expect((await l.resolvectl(...a)).code).toBe(0);
    await waitFor('old0 to take queries', async () => (await linkView('old0'))?.scopes === 'DNS');
    expect(await viaStub(unique('stale'))).toEqual([]); // every name fails: that is what cleanup is for
    const r = await l.exec([process.execPath, agentPath, 'cleanup'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^cleanup \["old0"\]$/m);
    expect(await linkView('old0')).toMatchObject({ dns: [], domains: [] });
    expect((await viaStub(unique('cleaned')))[0]).toMatch(/^192\.0\.2\.[12]$/);
  }, 90_000);

  it('reading resolved\'s servers for the breakout needs no root', async () => {
    const l = need();
    const r = await l.exec(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, agentPath, 'breakout', 'wan0'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    const servers = JSON.parse(/^breakout (.*)$/m.exec(r.stdout)![1]!) as string[];
    expect(servers.length).toBeGreaterThan(0);
    expect(servers.every((s) => /^10\.97\.0\.[12]$/.test(s))).toBe(true);
  }, 30_000);
});
