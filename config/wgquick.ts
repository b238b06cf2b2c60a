// A parser for wg-quick(8) configuration files, the format every VPN provider
// hands out. It reads the file the way wg-quick and wg(8) do (case-insensitive
// keys and sections, `#` comments anywhere, comma lists, repeated list keys
// accumulate) and returns plain data; it never runs anything, so the hook keys
// (PreUp, PostUp, ...) are reported and dropped, never executed.
//
// Positions: an issue about a value points at the value (for list keys, at the
// offending item); an issue about the key itself (unknown, duplicated, no
// value, outside any section) points at the key; an issue about a whole section
// points at its header, column 1.
//
// Secrecy: PrivateKey and PresharedKey values are never put in a message, and
// no other value is echoed when it looks like key material (a long base64 run),
// because a key pasted on the wrong line is a common mistake and error text
// ends up in logs, terminals and bug reports.

import { ConfigCodes, didYouMean, type ConfigCode, type IssueSink } from './errors.js';
import { normalizeDomain } from './domain.js';
import { formatIp, isCidrError, parseCidr, parseIp } from '../lib/ip.js';
import type { WireGuardInterface, WireGuardPeer } from './types.js';

/** The smallest MTU accepted. 576 is the IPv4 minimum datagram every host must take. */
export const WG_MTU_MIN = 576;
/**
 * The largest MTU accepted. Linux would take up to 65535 on a wg device, but
 * the tunnel rides over a WAN link; above jumbo-frame size it is a typo.
 */
export const WG_MTU_MAX = 9000;
/** Linux removes IPv6 from a link whose MTU is below this. */
const IPV6_MIN_MTU = 1280;

const INTERFACE_KEYS = [
  'PrivateKey',
  'Address',
  'DNS',
  'MTU',
  'ListenPort',
  'Table',
  'FwMark',
  'PreUp',
  'PostUp',
  'PreDown',
  'PostDown',
  'SaveConfig',
] as const;
const PEER_KEYS = ['PublicKey', 'PresharedKey', 'Endpoint', 'AllowedIPs', 'PersistentKeepalive'] as const;

type InterfaceKey = (typeof INTERFACE_KEYS)[number];
type PeerKey = (typeof PEER_KEYS)[number];

/** Why each ignored key is ignored: splitwan owns routing, marks and the file. */
const IGNORED: Partial<Record<InterfaceKey, string>> = {
  Table: 'splitwan manages routing itself and picks its own routing tables',
  FwMark: 'splitwan manages routing itself and sets its own firewall marks',
  PreUp: 'splitwan manages routing itself and never runs hook commands',
  PostUp: 'splitwan manages routing itself and never runs hook commands',
  PreDown: 'splitwan manages routing itself and never runs hook commands',
  PostDown: 'splitwan manages routing itself and never runs hook commands',
  SaveConfig: 'splitwan never writes to this file',
};

/** Keys whose value may be empty: wg-quick and wg treat an empty list as "none". */
const MAY_BE_EMPTY = new Set<string>(['Address', 'DNS', 'AllowedIPs', 'ListenPort', ...Object.keys(IGNORED)]);
/**
 * Keys that may appear more than once: lists accumulate (as in wg-quick), and
 * keys splitwan ignores cannot conflict. Any other key set twice is an error,
 * because wg would silently keep the last value.
 */
const REPEATABLE = new Set<string>(['Address', 'DNS', 'AllowedIPs', 'ListenPort', ...Object.keys(IGNORED)]);

const INTERFACE_BY_LOWER = new Map<string, InterfaceKey>(INTERFACE_KEYS.map((k) => [k.toLowerCase(), k]));
const PEER_BY_LOWER = new Map<string, PeerKey>(PEER_KEYS.map((k) => [k.toLowerCase(), k]));

/**
 * 32 bytes in base64 are 43 characters and one `=`; the 43rd carries only 4
 * bits, so its lowest 2 must be zero. wg(8) rejects anything else, including
 * non-canonical encodings that Buffer.from would silently accept.
 */
const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
/** Text that may be echoed as a key or section name: letters only, shorter than any key. */
const SAFE_NAME = /^[A-Za-z]{1,24}$/;
/** A key inside other text, for redaction. */
const KEY_TOKEN_RE = /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=(?![A-Za-z0-9+/=])/g;

/** True when `s` is a WireGuard key: 44 characters of base64 that decode to exactly 32 bytes. */
export function isWireGuardKey(s: string): boolean {
  return KEY_RE.test(s);
}

/**
 * Why `s` is not a key, in words that reveal nothing of its value (so they
 * may follow a private key): "44 characters of base64" alone left a 44-character
 * key with a wrong last character unexplained.
 */
export function keyProblem(s: string): string {
  if (s.length !== 44) return `44 characters of base64; this one has ${s.length} characters`;
  if (!/^[A-Za-z0-9+/]{43}=$/.test(s)) return 'base64 letters, digits, + and /, ending in one =; this one has other characters';
  return 'the character before the = must be one of AEIMQUYcgkosw048, so that it decodes to exactly 32 bytes';
}

/**
 * The same text with the values of PrivateKey and PresharedKey replaced by
 * `(hidden)`, for debug output. Anything else shaped like a key is hidden too,
 * except the value of a PublicKey line: private keys turn up in hook commands
 * (`PostUp = wg set %i private-key <(echo ...)`) and in comments.
 */
export function redactWgQuick(text: string): string {
  // Splitting on the line ending (kept by the capture group) preserves CRLF, LF and a BOM as they were.
  const parts = text.split(/(\r\n|\n|\r)/);
  for (let i = 0; i < parts.length; i += 2) {
    parts[i] = redactLine(parts[i]!);
  }
  return parts.join('');
}

const SECRET_LINE = /^([\s\uFEFF]*(?:PrivateKey|PresharedKey)\s*=\s*)([^#]*?)(\s*(?:#.*)?)$/i;
const PUBLIC_LINE = /^([\s\uFEFF]*PublicKey\s*=[^#]*)(#.*)?$/i;

function redactLine(line: string): string {
  const secret = SECRET_LINE.exec(line);
  if (secret) {
    const [, head, value, tail] = secret;
    return `${head}${value ? '(hidden)' : ''}${(tail ?? '').replace(KEY_TOKEN_RE, '(hidden)')}`;
  }
  const pub = PUBLIC_LINE.exec(line);
  if (pub) return `${pub[1]}${(pub[2] ?? '').replace(KEY_TOKEN_RE, '(hidden)')}`;
  return line.replace(KEY_TOKEN_RE, '(hidden)');
}

interface PeerDraft {
  index: number;
  header: number;
  /** Canonical key → line it was first set on, to catch duplicates. */
  seen: Map<string, number>;
  publicKey?: string;
  presharedKey?: string;
  endpoint?: { host: string; port: number };
  allowedIPs: string[];
  persistentKeepalive?: number;
}

interface InterfaceDraft {
  header: number;
  seen: Map<string, number>;
  privateKey?: string;
  addresses: string[];
  dns: string[];
  mtu?: number;
  mtuAt?: { line: number; col: number };
}

type Section =
  | { kind: 'none' }
  | { kind: 'interface'; draft: InterfaceDraft }
  | { kind: 'peer'; draft: PeerDraft }
  // After a bad header: its keys are skipped, the header error says enough.
  | { kind: 'skip' };

/** One `Key = Value` line, with 1-based columns into the original line. */
interface Entry<K extends string> {
  line: number;
  key: K;
  keyCol: number;
  value: string;
  valueCol: number;
}

interface Reporter {
  error(code: ConfigCode, line: number, col: number, keyPath: string, message: string): void;
  warn(line: number, col: number, keyPath: string, message: string): void;
}

/**
 * Parses the text of a wg-quick file. Every problem goes to `sink` with the
 * file, line, column and a key path such as `Interface.Address` or
 * `Peer[0].Endpoint` (peers counted from 0). Returns null when the file has an
 * error (after reporting them all); warnings still give a result.
 */
export function parseWgQuick(text: string, file: string, sink: IssueSink): WireGuardInterface | null {
  let errors = 0;
  const report: Reporter = {
    error(code, line, col, keyPath, message) {
      errors++;
      sink.error(code, { file, line, col }, keyPath, message);
    },
    warn(line, col, keyPath, message) {
      sink.warn(ConfigCodes.WGQUICK, { file, line, col }, keyPath, message);
    },
  };

  // Windows editors save UTF-16, which read as UTF-8 is full of NULs; nothing below would make sense of it.
  if (text.includes('\0')) {
    report.error(ConfigCodes.FILE, 1, 1, '', 'is not a UTF-8 text file (saved as UTF-16? re-save it as UTF-8)');
    return null;
  }

  const lines = (text.startsWith('\uFEFF') ? text.slice(1) : text).split(/\r\n|\n|\r/);
  let section: Section = { kind: 'none' };
  let iface: InterfaceDraft | undefined;
  const peers: PeerDraft[] = [];
  let reportedOutside = false;

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!;
    // wg and wg-quick both cut at the first '#'; base64 has no '#', so keys are safe.
    const hash = raw.indexOf('#');
    const content = hash >= 0 ? raw.slice(0, hash) : raw;
    const trimmed = content.trim();
    if (trimmed === '') continue;
    const lead = content.length - content.trimStart().length;

    if (trimmed.startsWith('[')) {
      const name = parseHeader(trimmed);
      if (name === 'interface') {
        if (iface) {
          report.error(
            ConfigCodes.WGQUICK,
            lineNo,
            lead + 1,
            'Interface',
            `a second [Interface] section (the first is on line ${iface.header}); a file has exactly one`,
          );
        } else {
          iface = { header: lineNo, seen: new Map(), addresses: [], dns: [] };
        }
        section = { kind: 'interface', draft: iface };
      } else if (name === 'peer') {
        const draft: PeerDraft = { index: peers.length, header: lineNo, seen: new Map(), allowedIPs: [] };
        peers.push(draft);
        section = { kind: 'peer', draft };
      } else {
        report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, '', name.error);
        section = { kind: 'skip' };
      }
      continue;
    }

    if (section.kind === 'skip') continue;
    if (section.kind === 'none') {
      // One error is enough: a file with no header at all is usually the wrong file.
      if (!reportedOutside) {
        reportedOutside = true;
        const message = 'is outside any section; settings go under [Interface] or [Peer]';
        report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, '', message);
      }
      continue;
    }

    const eq = content.indexOf('=');
    const where = section.kind === 'interface' ? 'Interface' : `Peer[${section.draft.index}]`;
    if (eq < 0) {
      report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, where, 'expected "Key = Value"');
      continue;
    }
    const keyText = content.slice(0, eq).trim();
    const afterEq = content.slice(eq + 1);
    const value = afterEq.trim();
    const valueCol = eq + 2 + (afterEq.length - afterEq.trimStart().length);
    if (keyText === '') {
      report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, where, 'expected "Key = Value" (no key before "=")');
      continue;
    }

    const own = section.kind === 'interface' ? INTERFACE_BY_LOWER : PEER_BY_LOWER;
    const key = own.get(keyText.toLowerCase());
    if (key === undefined) {
      // The key goes into the path only when it looks like a key name, never like pasted key material.
      const path = SAFE_NAME.test(keyText) ? `${where}.${keyText}` : where;
      report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, path, unknownKeyMessage(keyText, section.kind));
      continue;
    }
    const keyPath = `${where}.${key}`;
    const seen = section.draft.seen;
    const first = seen.get(key);
    if (first !== undefined && !REPEATABLE.has(key)) {
      report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, keyPath, `is set twice (first on line ${first})`);
      continue;
    }
    if (first === undefined) seen.set(key, lineNo);
    if (value === '' && !MAY_BE_EMPTY.has(key)) {
      report.error(ConfigCodes.WGQUICK, lineNo, lead + 1, keyPath, 'has no value');
      continue;
    }

    const at = { line: lineNo, keyCol: lead + 1, value, valueCol };
    // `key` came from the map of this section's keys, so the narrowing casts hold.
    if (section.kind === 'interface') {
      interfaceEntry(section.draft, { ...at, key: key as InterfaceKey }, keyPath, report);
    } else {
      peerEntry(section.draft, { ...at, key: key as PeerKey }, keyPath, report);
    }
  }

  if (!iface) {
    report.error(ConfigCodes.WGQUICK, 1, 1, 'Interface', 'no [Interface] section');
  } else {
    if (!iface.seen.has('PrivateKey')) {
      report.error(ConfigCodes.WGQUICK, iface.header, 1, 'Interface.PrivateKey', 'is missing');
    }
    if (iface.mtu !== undefined && iface.mtu < IPV6_MIN_MTU && iface.mtuAt) {
      const v6 = iface.addresses.some((a) => a.includes(':'));
      if (v6) {
        report.warn(
          iface.mtuAt.line,
          iface.mtuAt.col,
          'Interface.MTU',
          `is below ${IPV6_MIN_MTU}, so Linux will drop the IPv6 addresses of this tunnel`,
        );
      }
    }
  }
  if (peers.length === 0) {
    report.error(ConfigCodes.WGQUICK, iface?.header ?? 1, 1, 'Peer', 'no [Peer] section; the server must be a peer');
  }
  const byPublicKey = new Map<string, number>();
  for (const p of peers) {
    if (!p.seen.has('PublicKey')) {
      report.error(ConfigCodes.WGQUICK, p.header, 1, `Peer[${p.index}].PublicKey`, 'is missing');
    } else if (p.publicKey !== undefined) {
      const other = byPublicKey.get(p.publicKey);
      // wg would merge the two sections into one peer; that is never what was meant.
      if (other !== undefined) {
        report.error(
          ConfigCodes.WGQUICK,
          p.header,
          1,
          `Peer[${p.index}].PublicKey`,
          `is the same as the PublicKey of Peer[${other}]`,
        );
      } else byPublicKey.set(p.publicKey, p.index);
    }
  }

  if (errors > 0 || !iface || iface.privateKey === undefined) return null;
  const result: WireGuardInterface = {
    privateKey: iface.privateKey,
    addresses: iface.addresses,
    dns: iface.dns,
    peers: peers.map(finishPeer),
    source: { file, line: iface.header, col: 1 },
  };
  if (iface.mtu !== undefined) result.mtu = iface.mtu;
  return result;
}

function finishPeer(p: PeerDraft): WireGuardPeer {
  // Only reached without errors, so every peer has its PublicKey.
  const peer: WireGuardPeer = { publicKey: p.publicKey!, allowedIPs: p.allowedIPs };
  if (p.presharedKey !== undefined) peer.presharedKey = p.presharedKey;
  if (p.endpoint !== undefined) peer.endpoint = p.endpoint;
  if (p.persistentKeepalive !== undefined) peer.persistentKeepalive = p.persistentKeepalive;
  return peer;
}

function interfaceEntry(d: InterfaceDraft, e: Entry<InterfaceKey>, keyPath: string, report: Reporter): void {
  switch (e.key) {
    case 'PrivateKey':
      if (checkKey(e, keyPath, report)) d.privateKey = e.value;
      return;
    case 'Address':
      for (const item of splitWords(e.value, e.valueCol)) {
        const a = parseAddress(item.text);
        if ('error' in a) report.error(ConfigCodes.ADDRESS, e.line, item.col, keyPath, a.error);
        else d.addresses.push(a.text);
      }
      return;
    case 'DNS':
      for (const item of splitWords(e.value, e.valueCol)) {
        if (parseIp(item.text)) {
          d.dns.push(item.text);
        } else if (/^[\d.]+$/.test(item.text) || item.text.includes(':')) {
          // wg-quick would take a mistyped address for a search domain; say what it is instead.
          report.error(ConfigCodes.ADDRESS, e.line, item.col, keyPath, `${shown(item.text)} is not an IP address`);
        } else {
          report.warn(
            e.line,
            item.col,
            keyPath,
            `${shown(item.text)} is a search domain; splitwan ignores those and uses only the resolver addresses`,
          );
        }
      }
      return;
    case 'MTU': {
      const n = /^\d{1,6}$/.test(e.value) ? Number(e.value) : NaN;
      if (!(n >= WG_MTU_MIN && n <= WG_MTU_MAX)) {
        report.error(
          ConfigCodes.WGQUICK,
          e.line,
          e.valueCol,
          keyPath,
          `${shown(e.value)} is not an MTU (a whole number, ${WG_MTU_MIN}-${WG_MTU_MAX})`,
        );
      } else {
        d.mtu = n;
        d.mtuAt = { line: e.line, col: e.valueCol };
      }
      return;
    }
    case 'ListenPort':
      // A client's port is picked by the kernel; splitwan has no use for a fixed one.
      return;
    default: {
      const why = IGNORED[e.key];
      if (why !== undefined) report.warn(e.line, e.keyCol, keyPath, `is ignored: ${why}`);
    }
  }
}

function peerEntry(d: PeerDraft, e: Entry<PeerKey>, keyPath: string, report: Reporter): void {
  switch (e.key) {
    case 'PublicKey':
      if (checkKey(e, keyPath, report)) d.publicKey = e.value;
      return;
    case 'PresharedKey':
      if (checkKey(e, keyPath, report)) d.presharedKey = e.value;
      return;
    case 'Endpoint': {
      const ep = parseEndpoint(e.value);
      if ('error' in ep) report.error(ConfigCodes.ADDRESS, e.line, e.valueCol, keyPath, ep.error);
      else d.endpoint = ep;
      return;
    }
    case 'AllowedIPs': {
      // An empty value means "no allowed IPs" to wg, but an empty item inside a list is an error to it.
      if (e.value === '') return;
      for (const item of splitList(e.value, e.valueCol)) {
        if (item.text === '') {
          report.error(ConfigCodes.ADDRESS, e.line, item.col, keyPath, 'has an empty item in the list');
          continue;
        }
        const c = item.text.includes('%') ? null : parseCidr(item.text);
        if (c === null || isCidrError(c)) {
          report.error(ConfigCodes.ADDRESS, e.line, item.col, keyPath, `${shown(item.text)} is not a CIDR`);
        } else d.allowedIPs.push(c.text);
      }
      return;
    }
    case 'PersistentKeepalive': {
      if (e.value.toLowerCase() === 'off') return;
      const n = /^\d{1,5}$/.test(e.value) ? Number(e.value) : NaN;
      if (!(n >= 0 && n <= 65535)) {
        report.error(
          ConfigCodes.WGQUICK,
          e.line,
          e.valueCol,
          keyPath,
          `${shown(e.value)} is not a keepalive interval (seconds, 1-65535, or off)`,
        );
      } else if (n > 0) {
        d.persistentKeepalive = n;
      }
      return;
    }
  }
}

function checkKey(e: Entry<string>, keyPath: string, report: Reporter): boolean {
  if (isWireGuardKey(e.value)) return true;
  // The length is the only thing about the value that is safe to say.
  report.error(
    ConfigCodes.KEY,
    e.line,
    e.valueCol,
    keyPath,
    `${e.key} is not a WireGuard key (${keyProblem(e.value)})`,
  );
  return false;
}

/** `interface`, `peer`, or why the header is bad. Section names are case-insensitive, as in wg(8). */
function parseHeader(trimmed: string): 'interface' | 'peer' | { error: string } {
  if (!trimmed.includes(']')) return { error: 'section header is missing "]"' };
  if (!trimmed.endsWith(']')) return { error: 'unexpected text after the section header' };
  const name = trimmed.slice(1, -1).trim();
  const lower = name.toLowerCase();
  if (lower === 'interface' || lower === 'peer') return lower;
  const hint = didYouMean(name, ['Interface', 'Peer']);
  const label = SAFE_NAME.test(name.replace(/ /g, '')) ? ` [${name}]` : '';
  const suggestion = hint ? ` (did you mean [${hint}]?)` : '';
  return { error: `unknown section${label}; a wg-quick file has [Interface] and [Peer]${suggestion}` };
}

function unknownKeyMessage(keyText: string, section: 'interface' | 'peer'): string {
  // A key pasted on a line of its own splits at its trailing '=' into key "<43 characters>" and no value.
  if (isWireGuardKey(`${keyText}=`)) {
    return 'a WireGuard key on a line of its own; write "PrivateKey = ..." or, under [Peer], "PublicKey = ..."';
  }
  // `PrivateKey: ...` or `PrivateKey ...=`: the '=' found was the key's padding, not the separator.
  const word = /^([A-Za-z]+)[\s:]/.exec(keyText)?.[1]?.toLowerCase();
  const meant = word === undefined ? undefined : (INTERFACE_BY_LOWER.get(word) ?? PEER_BY_LOWER.get(word));
  if (meant !== undefined) return `expected "${meant} = value"`;
  const lower = keyText.toLowerCase();
  if (section === 'interface' && PEER_BY_LOWER.has(lower)) {
    return `${PEER_BY_LOWER.get(lower)} belongs in a [Peer] section, not [Interface]`;
  }
  if (section === 'peer' && INTERFACE_BY_LOWER.has(lower)) {
    return `${INTERFACE_BY_LOWER.get(lower)} belongs in the [Interface] section, not [Peer]`;
  }
  const candidates = section === 'interface' ? INTERFACE_KEYS : PEER_KEYS;
  const hint = didYouMean(keyText, candidates);
  const sectionName = section === 'interface' ? '[Interface]' : '[Peer]';
  // A key name is echoed only when it looks like one: a pasted key line reads as key "<secret>" with an empty value.
  const name = SAFE_NAME.test(keyText) ? ` "${keyText}"` : '';
  return `unknown key${name} in ${sectionName}${hint ? ` (did you mean ${hint}?)` : ''}`;
}

/**
 * Items of an Address or DNS value with their 1-based columns. wg-quick reads
 * these as shell words after turning commas into spaces, so either separates
 * items and empty items vanish.
 */
function splitWords(value: string, valueCol: number): { text: string; col: number }[] {
  return [...value.matchAll(/[^\s,]+/g)].map((m) => ({ text: m[0], col: valueCol + (m.index ?? 0) }));
}

/** Items of an AllowedIPs value with their 1-based columns; wg(8) splits on commas only. */
function splitList(value: string, valueCol: number): { text: string; col: number }[] {
  const out: { text: string; col: number }[] = [];
  let offset = 0;
  for (const part of value.split(',')) {
    const lead = part.length - part.trimStart().length;
    out.push({ text: part.trim(), col: valueCol + offset + lead });
    offset += part.length + 1;
  }
  return out;
}

/**
 * An interface address keeps its host bits (10.64.0.2/24 is the address
 * 10.64.0.2 on a /24, not the network), unlike an AllowedIPs entry. Without a
 * prefix it is a single address, as wg-quick assumes.
 */
function parseAddress(s: string): { text: string } | { error: string } {
  const slash = s.indexOf('/');
  const ip = s.includes('%') ? null : parseIp(slash >= 0 ? s.slice(0, slash) : s);
  if (!ip) return { error: `${shown(s)} is not an IP address or address/prefix` };
  const c = parseCidr(s);
  if (isCidrError(c)) return { error: `${shown(s)} has a bad prefix length (0-${ip.family === 4 ? 32 : 128})` };
  return { text: `${formatIp(ip)}/${c.prefix}` };
}

/**
 * `host:port`, `[v6]:port` or `name:port`; the host is kept as written (a name
 * is resolved later, through the breakout path). A bare IPv6 address with a
 * port is refused: `fc00::1:51820` is ambiguous to a reader even if not to wg.
 */
function parseEndpoint(v: string): { host: string; port: number } | { error: string } {
  let host: string;
  let portText: string;
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    if (end < 0) return { error: 'is missing "]" after the IPv6 address' };
    host = v.slice(1, end).trim();
    const rest = v.slice(end + 1).trim();
    if (!rest.startsWith(':')) return { error: 'has no port; write [address]:port' };
    portText = rest.slice(1).trim();
    if (parseIp(host)?.family !== 6) return { error: `${shown(host)} in [ ] is not an IPv6 address` };
  } else {
    const colon = v.lastIndexOf(':');
    if (colon < 0) return { error: `${shown(v)} has no port; write host:port` };
    host = v.slice(0, colon).trim();
    portText = v.slice(colon + 1).trim();
    if (host === '') return { error: 'has no host before ":port"' };
    if (host.includes(':')) return { error: 'an IPv6 endpoint is written [address]:port' };
    if (!parseIp(host)) {
      if (/^[\d.]+$/.test(host)) return { error: `${shown(host)} is not an IPv4 address` };
      if ('error' in normalizeDomain(host)) return { error: `${shown(host)} is not an IP address or host name` };
    }
  }
  if (!/^\d{1,5}$/.test(portText) || +portText < 1 || +portText > 65535) {
    return { error: `has a bad port ${shown(portText)} (1-65535)` };
  }
  return { host, port: +portText };
}

/**
 * A value quoted for a message, unless it could be (part of) a key. Addresses
 * and ports never hold a run of 20 base64 characters and host names rarely do;
 * hiding one of those costs a little clarity, echoing a key costs the key.
 */
function shown(v: string): string {
  if (v.length > 80 || /[A-Za-z0-9+/]{20,}/.test(v)) return 'the value';
  return `"${v}"`;
}
