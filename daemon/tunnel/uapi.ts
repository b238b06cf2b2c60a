// WireGuard's cross-platform userspace API (wireguard.com/xplatform): what
// wireguard-go answers on /var/run/wireguard/IF.sock to `get=1\n\n`. Reading
// it is how status() learns handshakes and byte counts without spawning
// `wg show IF dump` every second (issue 17: the footprint on a router).
//
// The answer is `key=value` lines: interface keys first (private_key,
// listen_port, fwmark), then each peer from its `public_key=` line on; keys
// are hex; a blank line ends it, after `errno=N`. The private and preshared
// keys are never kept, and an error never quotes a value.
import type { WgEndpoint, WgPeerInfo } from '../os-parse.js';

export class UapiParseError extends Error {
  readonly code = 'SPLITWAN_OS_PARSE';
  constructor(message: string) {
    super(`wireguard uapi: ${message}`);
    this.name = 'UapiParseError';
  }
}

function endpointOf(v: string): WgEndpoint | null {
  const m = /^\[([0-9a-fA-F:.%a-zA-Z]+)\]:(\d+)$/.exec(v) ?? /^([0-9.]+):(\d+)$/.exec(v);
  if (!m) return null;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1]!, port } : null;
}

const uint = (v: string): number | null => (/^\d{1,16}$/.test(v) ? Number(v) : null);

/**
 * The peers of a `get=1` answer, keyed like `wg show dump` (publicKey in
 * base64). Throws UapiParseError when the answer is not complete (no
 * `errno=`), says an error (errno != 0), or a field is malformed (named, its
 * value not quoted).
 */
export function parseUapiGet(text: string): WgPeerInfo[] {
  const peers: WgPeerInfo[] = [];
  let peer: WgPeerInfo | null = null;
  let sec = 0;
  let nsec = 0;
  let errno: number | null = null;
  const finish = (): void => {
    if (peer === null) return;
    peer.latestHandshake = sec === 0 && nsec === 0 ? null : sec * 1000 + Math.floor(nsec / 1e6);
    peers.push(peer);
  };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') break;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new UapiParseError(`line ${i + 1}: not key=value`);
    const key = line.slice(0, eq);
    const v = line.slice(eq + 1);
    const bad = (): never => {
      throw new UapiParseError(`line ${i + 1}: ${key} is malformed`);
    };
    switch (key) {
      case 'public_key': {
        finish();
        if (!/^[0-9a-f]{64}$/.test(v)) bad();
        peer = { publicKey: Buffer.from(v, 'hex').toString('base64'), hasPresharedKey: false, endpoint: null, allowedIps: [], latestHandshake: null, rxBytes: 0, txBytes: 0, keepalive: null };
        sec = 0;
        nsec = 0;
        break;
      }
      case 'errno':
        errno = uint(v) ?? bad();
        break;
      default: {
        if (peer === null) break; // interface keys (private_key among them): not kept
        const p: WgPeerInfo = peer;
        if (key === 'preshared_key') p.hasPresharedKey = /[1-9a-f]/.test(v);
        else if (key === 'endpoint') p.endpoint = endpointOf(v) ?? bad();
        else if (key === 'last_handshake_time_sec') sec = uint(v) ?? bad();
        else if (key === 'last_handshake_time_nsec') nsec = uint(v) ?? bad();
        else if (key === 'rx_bytes') p.rxBytes = uint(v) ?? bad();
        else if (key === 'tx_bytes') p.txBytes = uint(v) ?? bad();
        else if (key === 'persistent_keepalive_interval') {
          const k = uint(v) ?? bad();
          p.keepalive = k === 0 ? null : k;
        } else if (key === 'allowed_ip') p.allowedIps.push(v);
      }
    }
  }
  finish();
  if (errno === null) throw new UapiParseError('the answer ended before errno=');
  if (errno !== 0) throw new UapiParseError(`errno=${errno}`);
  return peers;
}
