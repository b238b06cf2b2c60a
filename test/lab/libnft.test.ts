// libnftables in-process (daemon/dataplane/libnft-linux.ts) against the real
// kernel. The library acts in the namespace of the process calling it, so the
// calls run in a child Node process started inside a namespace this test
// creates, using the built module (dist/, made by `npm test` before vitest):
//
//   [sw-ln-<pid>]  node (LibNft) → table inet splitwan (rendered), tag sets
//
// Needs root.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { release } from 'node:os';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderRuleset, tagSetNames } from '../../daemon/dataplane/plan.js';
import { samplePlan, rule } from '../helpers/plans.js';
import { emulatorRefusesNetfilterNetlink } from '../helpers/emulator-limits.js';
import { skipNative } from '../helpers/native.js';

const NS = `sw-ln-${process.pid}`;
/** The netlink tests' own namespace. */
const NS_E = `sw-le-${process.pid}`;
const root = join(import.meta.dirname, '..', '..');
const built = join(root, 'dist', 'daemon', 'dataplane', 'libnft-linux.js');
const supported = process.getuid?.() === 0 && spawnSync('nft', ['--version']).status === 0;
const why = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : 'nft is not installed';
// libnftables and the netlink batches are native calls (koffi): where koffi has no build (s390x) the daemon runs `nft -i`.
const noNative = skipNative('test/lab/libnft (libnftables and netlink through koffi)') !== null;
// Under test:arch, qemu-user refuses NETLINK_NETFILTER sockets itself (EPROTONOSUPPORT): asked here each run; the daemon runs `nft -i` there.
const netlinkRefused = noNative ? null : await emulatorRefusesNetfilterNetlink();
if (netlinkRefused !== null) console.warn(`[test/lab/libnft] SKIPPED: ${netlinkRefused}`);
const skipHere = noNative || netlinkRefused !== null;
const plan = samplePlan({ mode: 'host', lan: [], gateways: [], active: null, rules: [rule(0, 'aaaa0000', { tagged: true })] });
const A = tagSetNames(plan.rules[0]!);

/** Runs `lines` through one LibNft inside the namespace; each line's outcome ("ok" or the error message). */
function runInNs(lines: string[]): string[] {
  const script = `
    const { LibNft, libnftAvailable } = await import(${JSON.stringify(pathToFileURL(built).href)});
    if (!libnftAvailable()) { console.log(JSON.stringify(['unavailable'])); process.exit(0); }
    const n = new LibNft({ debug() {}, info() {}, warn() {}, error() {}, child() { return this; } });
    const lines = ${JSON.stringify(lines)};
    // Sent all at once: they must still run one at a time, in order.
    const out = await Promise.all(lines.map((l) => n.exec(l).then(() => 'ok', (e) => e.code + ': ' + e.message)));
    n.close();
    console.log(JSON.stringify(out));`;
  const r = execFileSync('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(r.trim().split('\n').at(-1)!) as string[];
}

/** Runs element batches through one LibNft's netlink path inside the namespace, one after another (with a pause before each `wait` one); each outcome. */
function elementsInNs(ns: string, batches: { deletes?: Record<string, string[]>; adds?: Record<string, [string, number][]>; waitMs?: number }[]): string[] {
  const script = `
    const { LibNft } = await import(${JSON.stringify(pathToFileURL(built).href)});
    const n = new LibNft({ debug() {}, info() {}, warn() {}, error() {}, child() { return this; } });
    const out = [];
    for (const b of ${JSON.stringify(batches)}) {
      if (b.waitMs) await new Promise((r) => setTimeout(r, b.waitMs));
      const changes = {
        table: 'splitwan',
        deletes: new Map(Object.entries(b.deletes ?? {})),
        adds: new Map(Object.entries(b.adds ?? {}).map(([s, es]) => [s, es.map(([address, timeoutS]) => ({ address, timeoutS }))])),
      };
      out.push(await n.elements(changes).then(() => 'ok', (e) => e.code + ': ' + e.message));
    }
    n.close();
    console.log(JSON.stringify(out));`;
  const r = execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(r.trim().split('\n').at(-1)!) as string[];
}

/** Seconds left of an element's expiry, from `nft list set`. */
function expiresIn(listing: string, address: string): number {
  const m = new RegExp(`${address.replace(/\./g, '\\.')} timeout [^,}]* expires (?:(\\d+)m)?(?:(\\d+)s)?`).exec(listing);
  if (!m) throw new Error(`${address} not in ${listing}`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

function elements(set: string, ns: string = NS): string {
  return execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'set', 'inet', 'splitwan', set], { encoding: 'utf8' });
}

describe.skipIf((!supported && !process.env.CI) || skipHere)('libnftables in-process (real nft)', () => {
  beforeAll(() => {
    if (!supported) throw new Error(`lab test cannot run: ${why}`);
    if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build (npm test does)`);
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['link', 'add', 'wan0', 'netns', NS, 'type', 'veth', 'peer', 'name', 'wan0-p', 'netns', NS]);
    execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: renderRuleset(plan) });
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NS]);
  });

  it('runs each line as one transaction, in order; a bad line fails alone with nft\'s message', () => {
    const out = runInNs([
      `add element inet splitwan ${A.v4} { 192.0.2.1 timeout 60s }`,
      `add element inet splitwan ${A.v4} { 300.0.0.1 timeout 60s }`,
      `add element inet splitwan ${A.v4} { 192.0.2.2 timeout 60s }; add element inet splitwan ${A.v6} { 2001:db8::2 timeout 60s }`,
      `delete element inet splitwan ${A.v4} { 192.0.2.1 }`,
      `delete element inet splitwan ${A.v4} { 192.0.2.1 }`,
    ]);
    expect(out[0]).toBe('ok');
    expect(out[1]).toMatch(/^SPLITWAN_NFT: nft: .*(Could not resolve|invalid|Error)/i);
    expect(out[2]).toBe('ok');
    expect(out[3]).toBe('ok');
    expect(out[4]).toMatch(/^SPLITWAN_NFT: nft: .*No such file or directory/);
    const v4 = elements(A.v4);
    expect(v4).toContain('192.0.2.2');
    expect(v4).not.toContain('192.0.2.1 ');
    expect(v4).not.toContain('300.0.0.1');
    expect(elements(A.v6)).toContain('2001:db8::2');
  });
});

describe.skipIf((!supported && !process.env.CI) || skipHere)('element batches over netlink (the tagger\'s path; real kernel)', () => {
  beforeAll(() => {
    if (!supported) throw new Error(`lab test cannot run: ${why}`);
    if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build (npm test does)`);
    execFileSync('ip', ['netns', 'add', NS_E]);
    execFileSync('ip', ['link', 'add', 'wan0', 'netns', NS_E, 'type', 'veth', 'peer', 'name', 'wan0-p', 'netns', NS_E]);
    execFileSync('ip', ['netns', 'exec', NS_E, 'nft', '-f', '-'], { input: renderRuleset(plan) });
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NS_E]);
  });

  it('adds v4 and v6 with timeouts; a batch with a missing delete or a non-address fails whole, with the reason', () => {
    const out = elementsInNs(NS_E, [
        { adds: { [A.v4]: [['192.0.2.10', 60], ['192.0.2.11', 120]], [A.v6]: [['2001:db8::10', 60]] } },
        { deletes: { [A.v4]: ['192.0.2.99'] }, adds: { [A.v4]: [['192.0.2.12', 60]] } },
        { adds: { [A.v4]: [['300.0.0.1', 60]] } },
        { adds: { nosuchset: [['192.0.2.13', 60]] } },
      { deletes: { [A.v4]: ['192.0.2.11'] }, adds: { [A.v6]: [['2001:db8::11', 60]] } },
    ]);
    expect(out[0]).toBe('ok');
    expect(out[1]).toMatch(/^SPLITWAN_NFT: nft: Could not process rule: No such file or directory.*delete element inet splitwan tag4_aaaa0000 \{ 192\.0\.2\.99 \}/);
    expect(out[2]).toMatch(/^SPLITWAN_NFT: nft: .*300\.0\.0\.1 is not an address/);
    expect(out[3]).toMatch(/^SPLITWAN_NFT: nft: Could not process rule: No such file or directory/);
    expect(out[4]).toBe('ok');
    const v4 = elements(A.v4, NS_E);
    expect(v4).toMatch(/192\.0\.2\.10 timeout 1m expires/);
    expect(v4).not.toContain('192.0.2.11 ');
    expect(v4).not.toContain('192.0.2.12');
    expect(v4).not.toContain('192.0.2.13');
    const v6 = elements(A.v6, NS_E);
    expect(v6).toContain('2001:db8::10 timeout 1m');
    expect(v6).toContain('2001:db8::11 timeout 1m');
  });

  // Linux 6.12 made a re-add with a timeout and an expiry update an element already there; before, a re-add changes nothing.
  const [major, minor] = release().split('.').map(Number) as [number, number];
  it.skipIf(major < 6 || (major === 6 && minor < 12))('a re-add with the same timeout refreshes the expiry (Linux >= 6.12)', () => {
    const out = elementsInNs(NS_E, [{ adds: { [A.v4]: [['192.0.2.20', 60]] } }, { waitMs: 2500, adds: { [A.v4]: [['192.0.2.20', 60]] } }]);
    expect(out).toEqual(['ok', 'ok']);
    expect(expiresIn(elements(A.v4, NS_E), '192.0.2.20')).toBeGreaterThanOrEqual(58);
  });
});

it.skipIf(supported || !!process.env.CI)('libnftables in-process: SKIPPED', () => {
  console.warn(`SKIPPED lab test (libnft): ${why}. CI runs it as root.`);
});
