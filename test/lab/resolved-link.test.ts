// The link the systemd-resolved takeover makes with ip when there is no
// native code (daemon/resolved-link-linux.ts, IpDnsLink), in a network
// namespace of this test: what `ip` shows after each step. resolved needs a
// link that is up with carrier (LOWER_UP) and an address; a crash leaves this
// one behind, so cleanup must find and remove it, and it can be deleted
// under the daemon, so repair must make it again. Beside a real resolved and
// NetworkManager: test/lab/resolved.test.ts (with SPLITWAN_NATIVE=off) and
// test/e2e/laptop-resolved.test.ts. The probe (fixtures/dns-link-probe.mjs)
// runs under `ip netns exec`, importing the compiled dist/.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { must, run } from '../../lab/lab.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const probe = join(root, 'test', 'lab', 'fixtures', 'dns-link-probe.mjs');
const built = join(root, 'dist', 'daemon', 'resolved-link-linux.js');
const NS = `srl${process.pid % 100000}`;
const root_ = process.getuid?.() === 0;
const inCi = Boolean(process.env.CI);
if (!root_) console.warn('[test/lab/resolved-link] SKIPPED: needs root (network namespaces)');

interface Step {
  step: string;
  result?: unknown;
  error?: string;
  code?: string | null;
  link: { ifindex: number; kind: string | null; flags: string[]; operstate: string; alias: string | null; addrs: string[] } | null;
}

async function probeSteps(steps: string[], kinds?: string[]): Promise<Step[]> {
  const r = await run(['ip', 'netns', 'exec', NS, process.execPath, probe, JSON.stringify(steps), ...(kinds ? [JSON.stringify(kinds)] : [])], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`probe failed (exit ${r.code}): ${r.stderr}`);
  const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Step);
  expect(out.map((s) => s.step)).toEqual(steps);
  return out;
}

const UP = { flags: expect.arrayContaining(['UP', 'LOWER_UP']) as unknown, operstate: 'UNKNOWN', addrs: ['192.0.0.8/32 site'], alias: expect.stringMatching(/^splitwan: systemd-resolved takeover/) as unknown };

describe.skipIf(!root_ && !inCi)('the takeover\'s link made with ip (no native code)', () => {
  beforeAll(async () => {
    expect(root_, 'CI runs as root').toBe(true);
    if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` (npm test does it first)`);
    await must(['ip', 'netns', 'add', NS]);
  });

  afterAll(async () => {
    await run(['ip', 'netns', 'del', NS]);
  });

  it('open: an ifb (else dummy) link, up with carrier and 192.0.0.8/32 scope site, marked by its alias; close removes it', async () => {
    const [opened, closed] = await probeSteps(['open', 'close']);
    expect(['ifb', 'dummy']).toContain(opened!.link?.kind);
    expect(opened!.result).toEqual({ ifindex: opened!.link!.ifindex, kind: opened!.link!.kind });
    expect(opened!.link).toMatchObject(UP);
    expect(closed!.link).toBeNull();
  });

  it('a kind this kernel lacks is passed over; with none it says which were tried', async () => {
    const [opened] = await probeSteps(['open', 'close'], ['nosuchkind', 'ifb', 'dummy']);
    expect(opened!.link?.kind).not.toBe('nosuchkind');
    expect(opened!.link).toMatchObject(UP);
    const [none] = await probeSteps(['open'], ['nosuchkind']);
    expect(none).toMatchObject({ code: 'SPLITWAN_RESOLVED_LINK', link: null });
    expect(none!.error).toMatch(/splitwan-dns: ip link add: the kernel has none of nosuchkind \(nosuchkind: .*Unknown device type/);
  });

  it('deleted under the daemon: repair makes it again (a new ifindex, which open returns); flushed and down: repair puts it back on the same link', async () => {
    const [opened, deleted, repaired, again, flushed, fixed, whole, closed] = await probeSteps(['open', 'delete', 'repair', 'open', 'flush', 'repair', 'repair', 'close']);
    expect(deleted!.link).toBeNull();
    expect(repaired!.result).toBe(true);
    expect(repaired!.link).toMatchObject(UP);
    expect(repaired!.link!.ifindex).not.toBe(opened!.link!.ifindex);
    expect(again!.result).toMatchObject({ ifindex: repaired!.link!.ifindex });
    expect(flushed!.link).toMatchObject({ addrs: [], operstate: 'DOWN' });
    expect(fixed!.result).toBe(true);
    expect(fixed!.link).toMatchObject({ ...UP, ifindex: repaired!.link!.ifindex });
    expect(whole!.result).toBe(false); // nothing to do while it is whole
    expect(closed!.link).toBeNull();
  });

  it('made again while another link holds the name: repair fails (File exists) and keeps trying; once the name is free it makes it', async () => {
    const [, , , failed, , again, closed] = await probeSteps(['open', 'delete', 'foreign', 'repair', 'delete', 'repair', 'close']);
    expect(failed).toMatchObject({ code: 'SPLITWAN_RESOLVED_LINK', link: { alias: null } });
    expect(failed!.error).toMatch(/File exists/);
    expect(again!.result).toBe(true);
    expect(again!.link).toMatchObject(UP);
    expect(closed!.link).toBeNull();
  });

  it('a leftover (a killed run\'s) is not taken over blindly: open fails naming cleanup; cleanup (removeStale) deletes it; then open works', async () => {
    const [first] = await probeSteps(['open']); // the process exits holding nothing: the link stays, as after kill -9
    expect(first!.link).toMatchObject(UP);
    const [second, cleaned, reopened, closed] = await probeSteps(['open', 'removeStale', 'open', 'close']);
    expect(second).toMatchObject({ code: 'SPLITWAN_RESOLVED_LINK' });
    expect(second!.error).toMatch(/File exists.*splitwan cleanup/);
    expect(second!.link!.ifindex).toBe(first!.link!.ifindex); // left as it was
    expect(cleaned!.link).toBeNull();
    expect(reopened!.link).toMatchObject(UP);
    expect(closed!.link).toBeNull();
  });
});
