// Pure helpers shared by the tunnel backends: validation, comparison, the
// wg(8) config text and endpoint formatting. No I/O.
import { isIP } from 'node:net';
import { parseCidr } from '../../lib/ip.js';
import { isWireGuardKey } from '../../config/wgquick.js';
import type { TunnelSpec } from './types.js';

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function isCidr(s: string): boolean {
  return s.includes('/') && !('error' in parseCidr(s));
}

/**
 * Throws a TypeError naming the first problem of the list, or returns. Messages
 * name the tunnel and the field, never a key's value.
 */
export function validateSpecs(specs: readonly TunnelSpec[]): void {
  const seen = new Set<string>();
  for (const s of specs) {
    const where = `tunnel ${JSON.stringify(s.name)}`;
    if (!IFNAME_RE.test(s.ifname) || s.ifname === '.' || s.ifname === '..')
      throw new TypeError(`${where}: ifname ${JSON.stringify(s.ifname)} is not a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)`);
    if (seen.has(s.ifname)) throw new TypeError(`${where}: ifname ${s.ifname} is used twice`);
    seen.add(s.ifname);
    if (!isWireGuardKey(s.privateKey)) throw new TypeError(`${where}: privateKey is not a WireGuard key`);
    if (!isWireGuardKey(s.peer.publicKey)) throw new TypeError(`${where}: peer.publicKey is not a WireGuard key`);
    if (s.peer.presharedKey !== undefined && !isWireGuardKey(s.peer.presharedKey))
      throw new TypeError(`${where}: peer.presharedKey is not a WireGuard key`);
    if (!Number.isInteger(s.mtu) || s.mtu < 576 || s.mtu > 65535) throw new TypeError(`${where}: mtu ${s.mtu} is not in 576-65535`);
    if (!Number.isInteger(s.fwmark) || s.fwmark < 0 || s.fwmark > 0xffffffff) throw new TypeError(`${where}: fwmark is not a 32-bit number`);
    for (const a of s.addresses) if (!isCidr(a)) throw new TypeError(`${where}: address ${JSON.stringify(a)} is not a CIDR`);
    for (const a of s.peer.allowedIPs) if (!isCidr(a)) throw new TypeError(`${where}: allowed IP ${JSON.stringify(a)} is not a CIDR`);
    const ep = s.peer.endpoint;
    if (isIP(ep.host) === 0) throw new TypeError(`${where}: endpoint host ${JSON.stringify(ep.host)} is not an IP address (resolve names before set())`);
    if (!Number.isInteger(ep.port) || ep.port < 1 || ep.port > 65535) throw new TypeError(`${where}: endpoint port ${ep.port} is not a port`);
    const ka = s.peer.persistentKeepalive;
    if (ka !== undefined && (!Number.isInteger(ka) || ka < 0 || ka > 65535)) throw new TypeError(`${where}: persistentKeepalive is not 0-65535 seconds`);
  }
}

/** A deep copy, so the caller mutating its objects later changes nothing here. */
export function cloneSpec(s: TunnelSpec): TunnelSpec {
  return structuredClone(s);
}

/** The spec with its secrets replaced, for logs and the fake's exposed state. */
export function redactSpec(s: TunnelSpec): TunnelSpec {
  const out = cloneSpec(s);
  out.privateKey = '(hidden)';
  if (out.peer.presharedKey !== undefined) out.peer.presharedKey = '(hidden)';
  return out;
}

/** IPv6 in its canonical (RFC 5952) form, IPv4 as is; anything else unchanged. */
export function canonicalHost(host: string): string {
  if (isIP(host) !== 6) return host;
  try {
    return new URL(`http://[${host}]/`).hostname.slice(1, -1);
  } catch {
    return host;
  }
}

/** `1.2.3.4:51820`, `[fd00::1]:51820`: as wg(8) prints and reads it. */
export function formatEndpoint(ep: { host: string; port: number }): string {
  const h = canonicalHost(ep.host);
  return isIP(h) === 6 ? `[${h}]:${ep.port}` : `${h}:${ep.port}`;
}

/** Everything `wg setconf` sets except the endpoint, which `wg set ... endpoint` can change alone. */
function wgConfigKey(s: TunnelSpec): string {
  const p = s.peer;
  return JSON.stringify([s.privateKey, s.fwmark, p.publicKey, p.presharedKey ?? null, p.allowedIPs, p.persistentKeepalive ?? 0]);
}

export interface SpecDiff {
  /** Key, fwmark, peer key, preshared key, allowed IPs or keepalive changed: `wg setconf`. */
  wgConfig: boolean;
  /** Only the endpoint changed (false when wgConfig is true: setconf sets it too). */
  endpoint: boolean;
  mtu: boolean;
  addAddresses: string[];
  removeAddresses: string[];
}

export function diffSpec(old: TunnelSpec, next: TunnelSpec): SpecDiff {
  const wgConfig = wgConfigKey(old) !== wgConfigKey(next);
  const endpoint = !wgConfig && formatEndpoint(old.peer.endpoint) !== formatEndpoint(next.peer.endpoint);
  const oldA = new Set(old.addresses);
  const newA = new Set(next.addresses);
  return {
    wgConfig,
    endpoint,
    mtu: old.mtu !== next.mtu,
    addAddresses: next.addresses.filter((a) => !oldA.has(a)),
    removeAddresses: old.addresses.filter((a) => !newA.has(a)),
  };
}

export function isNoop(d: SpecDiff): boolean {
  return !d.wgConfig && !d.endpoint && !d.mtu && d.addAddresses.length === 0 && d.removeAddresses.length === 0;
}

/** The text for `wg setconf IF FILE`. Holds the private key: write it to a 0600 file only. */
export function renderWgConfig(s: TunnelSpec): string {
  const p = s.peer;
  const lines = ['[Interface]', `PrivateKey = ${s.privateKey}`, `FwMark = ${s.fwmark === 0 ? 'off' : `0x${s.fwmark.toString(16)}`}`, '', '[Peer]', `PublicKey = ${p.publicKey}`];
  if (p.presharedKey !== undefined) lines.push(`PresharedKey = ${p.presharedKey}`);
  lines.push(`Endpoint = ${formatEndpoint(p.endpoint)}`);
  if (p.allowedIPs.length > 0) lines.push(`AllowedIPs = ${p.allowedIPs.join(', ')}`);
  if (p.persistentKeepalive) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  return lines.join('\n') + '\n';
}

/** Replaces every occurrence of the given secrets (and nothing else) with `(hidden)`. */
export function redactSecrets(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('(hidden)');
  return out;
}

/** The secrets of a list of specs, for redactSecrets. */
export function secretsOf(specs: Iterable<TunnelSpec | null | undefined>): string[] {
  const out: string[] = [];
  for (const s of specs) {
    if (!s) continue;
    out.push(s.privateKey);
    if (s.peer.presharedKey) out.push(s.peer.presharedKey);
  }
  return out;
}
