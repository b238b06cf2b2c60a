// The fake tunnel backend's state model, and the pure spec helpers both backends use.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../lib/logger.js';
import { diffSpec, formatEndpoint, renderWgConfig, validateSpecs, redactSecrets } from '../../daemon/tunnel/spec.js';
import { FakeTunnels } from '../../daemon/tunnel/tunnels-fake.js';
import type { TunnelSpec } from '../../daemon/tunnel/types.js';

function key(): string {
  const d = generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' }).d!;
  return Buffer.from(d, 'base64url').toString('base64');
}

/** A manual clock: timers fire on tick(). */
function manualClock() {
  let now = 1_700_000_000_000;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let seq = 0;
  const clock: Clock & { tick(ms: number): void } = {
    now: () => now,
    wall: () => now,
    boot: () => now,
    setTimeout(fn, ms) {
      timers.set(++seq, { at: now + ms, fn });
      return seq;
    },
    clearTimeout(h) {
      timers.delete(h as number);
    },
    tick(ms) {
      now += ms;
      for (const [id, t] of [...timers]) {
        if (t.at <= now) {
          timers.delete(id);
          t.fn();
        }
      }
    },
  };
  return clock;
}

const PRIV = [key(), key()];
const PUB = [key(), key()];

function spec(i: 0 | 1, over: Partial<TunnelSpec> = {}): TunnelSpec {
  return {
    name: `gw${i + 1}`,
    ifname: `swg-gw${i + 1}`,
    privateKey: PRIV[i]!,
    addresses: ['10.64.0.2/32', 'fd64::2/128'],
    mtu: 1420,
    fwmark: 0x1000,
    peer: { publicKey: PUB[i]!, endpoint: { host: `10.99.${3 + i}.2`, port: 51820 }, allowedIPs: ['0.0.0.0/0', '::/0'], persistentKeepalive: 25 },
    ...over,
  };
}

describe('FakeTunnels', () => {
  it('brings tunnels up, and the same specs twice change nothing', async () => {
    const f = new FakeTunnels({ clock: manualClock() });
    await f.set([spec(0), spec(1)]);
    const s = f.state();
    expect(s.links.map((l) => [l.ifname, l.up, l.mtu])).toEqual([
      ['swg-gw1', true, 1420],
      ['swg-gw2', true, 1420],
    ]);
    expect(s.processes).toHaveLength(2);
    expect(s.links[0]!.latestHandshake).not.toBeNull();
    expect(s.changes).toBe(1);
    await f.set([spec(0), spec(1)]);
    expect(f.state().changes).toBe(1);
    expect(f.state().noops).toBe(1);
    expect(f.state().links).toEqual(s.links);
    const st = await f.status();
    expect(st.map((x) => [x.ifname, x.up, x.endpoint])).toEqual([
      ['swg-gw1', true, '10.99.3.2:51820'],
      ['swg-gw2', true, '10.99.4.2:51820'],
    ]);
  });

  it('never exposes keys', async () => {
    const f = new FakeTunnels({ clock: manualClock() });
    await f.set([spec(0, { peer: { ...spec(0).peer, presharedKey: key() } })]);
    const text = JSON.stringify(f.state());
    expect(text).not.toContain(PRIV[0]);
    expect(f.state().links[0]!.config.privateKey).toBe('(hidden)');
    expect(f.state().links[0]!.config.peer.presharedKey).toBe('(hidden)');
  });

  it('changes the endpoint in place, removes a dropped spec, recreates a deleted link', async () => {
    const f = new FakeTunnels({ clock: manualClock(), autoRestart: false });
    await f.set([spec(0), spec(1)]);
    const pid = f.link('swg-gw1')!.pid;
    await f.set([spec(0, { peer: { ...spec(0).peer, endpoint: { host: 'fd99:3:0::2', port: 51820 } } }), spec(1)]);
    expect(f.link('swg-gw1')!.endpoint).toBe('[fd99:3::2]:51820');
    expect(f.link('swg-gw1')!.pid).toBe(pid);
    expect(f.link('swg-gw1')!.incarnation).toBe(1);

    await f.set([spec(0)]);
    expect(f.state().links.map((l) => l.ifname)).toEqual(['swg-gw1']);
    expect(f.state().processes).toHaveLength(1);

    f.deleteLink('swg-gw1');
    expect(f.state().links).toEqual([]);
    expect((await f.status())[0]).toMatchObject({ up: false, pid: null });
    await f.set([spec(0)]);
    expect(f.link('swg-gw1')).toMatchObject({ up: true, incarnation: 2 });
    expect(f.link('swg-gw1')!.pid).not.toBe(pid);
  });

  it('restarts a crashed process after the delay, with a new pid', async () => {
    const clock = manualClock();
    const f = new FakeTunnels({ clock, restartDelayMs: 250 });
    await f.set([spec(0)]);
    const pid = f.link('swg-gw1')!.pid;
    f.crash('swg-gw1');
    clock.tick(100);
    expect(f.link('swg-gw1')).toBeUndefined();
    clock.tick(200);
    expect(f.link('swg-gw1')).toMatchObject({ up: true, restarts: 1 });
    expect(f.link('swg-gw1')!.pid).not.toBe(pid);
  });

  it('puts a roamed endpoint back once status() has seen it, and repairs a down link', async () => {
    const f = new FakeTunnels({ clock: manualClock() });
    await f.set([spec(0)]);
    f.roam('swg-gw1', '10.99.3.2:15461');
    await f.set([spec(0)]);
    expect(f.link('swg-gw1')!.endpoint).toBe('10.99.3.2:15461'); // not seen yet
    expect((await f.status())[0]!.endpoint).toBe('10.99.3.2:15461');
    await f.set([spec(0)]);
    expect(f.link('swg-gw1')!.endpoint).toBe('10.99.3.2:51820');

    f.setDown('swg-gw1');
    expect(f.link('swg-gw1')!.addresses).toEqual(['10.64.0.2/32']);
    await f.status();
    await f.set([spec(0)]);
    expect(f.link('swg-gw1')).toMatchObject({ up: true, addresses: ['10.64.0.2/32', 'fd64::2/128'] });
  });

  it('models handshakes with the injected clock and reachability', async () => {
    const clock = manualClock();
    const f = new FakeTunnels({ clock });
    await f.set([spec(0)]);
    const t0 = f.link('swg-gw1')!.latestHandshake!;
    f.setReachable('swg-gw1', false);
    clock.tick(120_000);
    expect(f.handshake('swg-gw1')).toBe(false);
    expect(f.link('swg-gw1')!.latestHandshake).toBe(t0);
    f.setReachable('swg-gw1', true);
    expect(f.handshake('swg-gw1')).toBe(true);
    expect(f.link('swg-gw1')!.latestHandshake).toBe(t0 + 120_000);
    f.traffic('swg-gw1', 100, 50);
    expect((await f.status())[0]).toMatchObject({ rxBytes: 100, txBytes: 50 });
  });

  it('failNextSet fails that tunnel once; close() leaves nothing', async () => {
    const f = new FakeTunnels({ clock: manualClock() });
    f.failNextSet('swg-gw2', new Error('boom'));
    await expect(f.set([spec(0), spec(1)])).rejects.toThrow('boom');
    expect(f.state().links.map((l) => l.ifname)).toEqual(['swg-gw1']);
    await f.set([spec(0), spec(1)]);
    expect(f.state().links).toHaveLength(2);
    await f.close();
    expect(f.state()).toMatchObject({ links: [], processes: [], closed: true });
    await expect(f.set([spec(0)])).rejects.toThrow(/close/);
  });

  it('rejects bad specs with messages that hold no key', async () => {
    const f = new FakeTunnels({ clock: manualClock() });
    const bad = spec(0, { ifname: 'much-too-long-name' });
    await expect(f.set([bad])).rejects.toThrow(/ifname/);
    await expect(f.set([spec(0), spec(0)])).rejects.toThrow(/twice/);
    await expect(f.set([spec(0, { peer: { ...spec(0).peer, endpoint: { host: 'vpn.example.com', port: 51820 } } })])).rejects.toThrow(/resolve names/);
    const badKey = PRIV[0]!.slice(0, 40);
    const err = await f.set([spec(0, { privateKey: badKey })]).catch((e: Error) => e);
    expect(String(err)).toMatch(/privateKey is not a WireGuard key/);
    expect(String(err)).not.toContain(badKey);
    expect(f.state().links).toEqual([]);
  });
});

describe('tunnel spec helpers', () => {
  it('renders the wg(8) config, with the fwmark in hex and IPv6 endpoints bracketed', () => {
    const t = renderWgConfig(spec(1, { peer: { ...spec(1).peer, endpoint: { host: 'fd99:4::2', port: 51820 } } }));
    expect(t).toBe(
      `[Interface]\nPrivateKey = ${PRIV[1]}\nFwMark = 0x1000\n\n[Peer]\nPublicKey = ${PUB[1]}\nEndpoint = [fd99:4::2]:51820\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n`,
    );
  });

  it('diffs: endpoint-only, wg config, mtu, addresses', () => {
    const a = spec(0);
    expect(diffSpec(a, spec(0, { peer: { ...a.peer, endpoint: { host: '10.99.3.9', port: 51820 } } }))).toMatchObject({ wgConfig: false, endpoint: true });
    expect(diffSpec(a, spec(0, { fwmark: 0 }))).toMatchObject({ wgConfig: true, endpoint: false });
    expect(diffSpec(a, spec(0, { mtu: 1412, addresses: ['10.64.0.3/32'] }))).toMatchObject({ mtu: true, addAddresses: ['10.64.0.3/32'], removeAddresses: ['10.64.0.2/32', 'fd64::2/128'] });
    expect(formatEndpoint({ host: 'FD99:0003::2', port: 1 })).toBe('[fd99:3::2]:1');
  });

  it('redacts secrets and validates', () => {
    expect(redactSecrets(`bad key \`${PRIV[0]}'`, [PRIV[0]!])).toBe("bad key `(hidden)'");
    expect(() => validateSpecs([spec(0, { mtu: 100 })])).toThrow(/mtu/);
    expect(() => validateSpecs([spec(0, { addresses: ['10.64.0.2'] })])).toThrow(/CIDR/);
  });
});
