// wireguard-go's UAPI answer (daemon/tunnel/uapi.ts): what status() reads
// instead of spawning `wg show IF dump` every second. The fixture is a real
// `get=1` answer captured from wireguard-go 0.0.20230223 (Debian 12) in a
// namespace pair after one handshake (its throwaway private key zeroed); the
// same moment's `wg show dump` peer line is below, and both must agree.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseUapiGet } from '../../daemon/tunnel/uapi.js';
import { parseWgDump } from '../../daemon/os-parse.js';

const uapi = readFileSync(new URL('../fixtures/wg/uapi-get.txt', import.meta.url), 'utf8');
const dumpPeer = 'TDYdyumhuj+hV3fAakGtvzTMhAk75JG031GgU11r70I=\t(none)\t192.0.2.2:51821\t10.1.0.2/32,fd00::2/128\t1796642876\t92\t456\t25';
const dumpIface = '(hidden)\tTDYdyumhuj+hV3fAakGtvzTMhAk75JG031GgU11r70I=\t51820\toff';

describe('parseUapiGet', () => {
  it('reads the peer as `wg show dump` does (key, endpoint, handshake, bytes, keepalive, allowed IPs)', () => {
    const peers = parseUapiGet(uapi);
    expect(peers).toHaveLength(1);
    const fromDump = parseWgDump(`${dumpIface}\n${dumpPeer}\n`).peers[0]!;
    expect(peers[0]).toMatchObject({ publicKey: fromDump.publicKey, endpoint: fromDump.endpoint, rxBytes: 92, txBytes: 456, keepalive: 25, allowedIps: ['10.1.0.2/32', 'fd00::2/128'], hasPresharedKey: false });
    // wg prints whole seconds; UAPI has the nanoseconds too.
    expect(Math.floor(peers[0]!.latestHandshake! / 1000)).toBe(fromDump.latestHandshake! / 1000);
    expect(peers[0]!.latestHandshake! % 1000).toBe(289);
  });

  it('no handshake yet is null; IPv6 endpoints and several peers', () => {
    const k1 = '11'.repeat(32);
    const k2 = '22'.repeat(32);
    const text = `private_key=${'0'.repeat(64)}\nlisten_port=1\npublic_key=${k1}\nendpoint=[fd00::1]:51820\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\npublic_key=${k2}\npreshared_key=${'ab'.repeat(32)}\nlast_handshake_time_sec=10\nlast_handshake_time_nsec=5000000\nerrno=0\n\n`;
    const [a, b] = parseUapiGet(text);
    expect(a).toMatchObject({ publicKey: Buffer.from(k1, 'hex').toString('base64'), endpoint: { host: 'fd00::1', port: 51820 }, latestHandshake: null });
    expect(b).toMatchObject({ endpoint: null, latestHandshake: 10_005, hasPresharedKey: true });
  });

  it('refuses a cut or failed answer, and never quotes a value (the private key is in it)', () => {
    const secret = 'ab'.repeat(32);
    expect(() => parseUapiGet(`private_key=${secret}\nlisten_port=1\n`)).toThrow(/ended before errno/);
    expect(() => parseUapiGet('errno=2\n\n')).toThrow(/errno=2/);
    let err: Error | null = null;
    try {
      parseUapiGet(`private_key=${secret}\npublic_key=${'11'.repeat(32)}\nrx_bytes=${secret}\nerrno=0\n\n`);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/line 3: rx_bytes is malformed/);
    expect(err?.message).not.toContain(secret);
  });
});
