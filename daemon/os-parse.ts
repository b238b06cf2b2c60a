// Pure parsers of what `wg`, `ip` and `nft` print. No I/O: the Linux adapters
// run the commands and hand the text here. Tested on output captured from real
// runs (test/fixtures/os/, docs/design/dataplane-notes.md §9).
//
// Every parser ignores fields it does not know and throws a ParseError (code
// SPLITWAN_OS_PARSE) when the shape is not what it expects: a different tool
// version should fail loudly, not be misread. WireGuard private and preshared
// keys are never kept, returned or put into a message: `wg show dump` prints
// the private key in clear when run as root.
import { isIP } from 'node:net';
import { isWireGuardKey } from '../config/wgquick.js';

export const OS_PARSE_CODE = 'SPLITWAN_OS_PARSE';

/** The command whose output a parser reads; the first words of every ParseError message. */
export type OsTool =
  | 'wg show dump'
  | 'wg show all dump'
  | 'ip rule'
  | 'ip route'
  | 'ip link'
  | 'ip addr'
  | 'nft list table'
  | 'nft list set'
  | 'ip monitor route';

export class ParseError extends Error {
  readonly code = OS_PARSE_CODE;
  constructor(
    readonly tool: OsTool,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${tool}: ${detail}`, options);
    this.name = 'ParseError';
  }
}

// ---------------------------------------------------------------- wg

export interface WgEndpoint {
  /** An IP address; IPv6 without the brackets. */
  host: string;
  port: number;
}

export interface WgInterfaceInfo {
  /** null when the interface has no private key yet (`(none)`: created, not configured). */
  publicKey: string | null;
  /** 0 when not listening yet. */
  listenPort: number;
  /** null for `off` (wg prints `off` for 0). */
  fwmark: number | null;
}

export interface WgPeerInfo {
  publicKey: string;
  /** Whether a preshared key is set. The key itself is never kept. */
  hasPresharedKey: boolean;
  /** null for `(none)`: no endpoint known yet. */
  endpoint: WgEndpoint | null;
  /** CIDRs as wg prints them; [] for `(none)`. */
  allowedIps: string[];
  /** Milliseconds since the epoch; null when there was never a handshake (wg prints 0). */
  latestHandshake: number | null;
  rxBytes: number;
  txBytes: number;
  /** Persistent keepalive in seconds; null for `off`. */
  keepalive: number | null;
}

export interface WgDump {
  iface: WgInterfaceInfo;
  peers: WgPeerInfo[];
}

/** `wg show IF dump`: an interface line (4 fields), then one line per peer (8 fields). */
export function parseWgDump(text: string): WgDump {
  const tool = 'wg show dump';
  const lines = dumpLines(text);
  const first = lines[0];
  if (!first) throw new ParseError(tool, 'no interface line');
  if (first.fields.length !== 4) {
    const got = first.fields.length;
    throw new ParseError(tool, `line ${first.no}: expected 4 tab-separated fields for the interface, got ${got}`);
  }
  const iface = wgInterface(tool, first.no, first.fields);
  const peers: WgPeerInfo[] = [];
  for (const l of lines.slice(1)) {
    if (l.fields.length !== 8) {
      throw new ParseError(tool, `line ${l.no}: expected 8 tab-separated fields for a peer, got ${l.fields.length}`);
    }
    peers.push(wgPeer(tool, l.no, l.fields));
  }
  return { iface, peers };
}

interface DumpLine {
  no: number;
  fields: string[];
}

function dumpLines(text: string): DumpLine[] {
  const out: DumpLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() !== '') out.push({ no: i + 1, fields: line.split('\t') });
  });
  return out;
}

// Messages name the line and the field, never a value: a shifted field could be a key.
function wgInterface(tool: OsTool, no: number, f: string[]): WgInterfaceInfo {
  // f[0] is the private key (or "(hidden)"/"(none)"): deliberately not read.
  const [, pub = '', port = '', fwmark = ''] = f;
  let publicKey: string | null = null;
  if (pub !== '(none)') {
    if (!isWireGuardKey(pub)) throw new ParseError(tool, `line ${no}: the public key is not a WireGuard key`);
    publicKey = pub;
  }
  const listenPort = decimal(port);
  if (listenPort === undefined || listenPort > 65535) {
    throw new ParseError(tool, `line ${no}: the listen port is not a port number`);
  }
  let mark: number | null = null;
  if (fwmark !== 'off') {
    const m = u32(fwmark);
    if (m === undefined) throw new ParseError(tool, `line ${no}: the fwmark is neither "off" nor a number`);
    mark = m === 0 ? null : m;
  }
  return { publicKey, listenPort, fwmark: mark };
}

function wgPeer(tool: OsTool, no: number, f: string[]): WgPeerInfo {
  const [pub = '', psk = '', endpoint = '', allowed = '', handshake = '', rx = '', tx = '', keepalive = ''] = f;
  if (!isWireGuardKey(pub)) throw new ParseError(tool, `line ${no}: the peer's public key is not a WireGuard key`);
  const ep = endpoint === '(none)' ? null : parseEndpoint(endpoint);
  if (ep === undefined) throw new ParseError(tool, `line ${no}: the endpoint is not "(none)" or host:port`);
  let allowedIps: string[] = [];
  if (allowed !== '(none)') {
    allowedIps = allowed.split(',');
    if (allowedIps.some((c) => !isCidr(c))) {
      throw new ParseError(tool, `line ${no}: allowed-ips is not "(none)" or a comma-separated list of CIDRs`);
    }
  }
  const hs = decimal(handshake);
  if (hs === undefined) throw new ParseError(tool, `line ${no}: latest-handshake is not a number of seconds`);
  const rxBytes = decimal(rx);
  const txBytes = decimal(tx);
  if (rxBytes === undefined || txBytes === undefined) {
    throw new ParseError(tool, `line ${no}: the transfer counters are not numbers`);
  }
  let ka: number | null = null;
  if (keepalive !== 'off') {
    const k = decimal(keepalive);
    if (k === undefined || k > 65535) {
      throw new ParseError(tool, `line ${no}: persistent-keepalive is neither "off" nor seconds`);
    }
    ka = k === 0 ? null : k;
  }
  return {
    publicKey: pub,
    hasPresharedKey: psk !== '(none)',
    endpoint: ep,
    allowedIps,
    latestHandshake: hs === 0 ? null : hs * 1000,
    rxBytes,
    txBytes,
    keepalive: ka,
  };
}

/** `1.2.3.4:51820` or `[fd00::1]:51820`; undefined when malformed. */
function parseEndpoint(s: string): WgEndpoint | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]]+):(\d+)$/.exec(s);
  if (!m) return undefined;
  const host = m[1] ?? '';
  const port = decimal(m[2] ?? '');
  const bare = host.split('%')[0] ?? ''; // fe80::1%eth0
  if (port === undefined || port > 65535 || isIP(bare) === 0) return undefined;
  return { host, port };
}

function isCidr(s: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const family = isIP(m[1] ?? '');
  const len = Number(m[2]);
  return (family === 4 && len <= 32) || (family === 6 && len <= 128);
}

// ---------------------------------------------------------------- ip -j

export interface IpRule {
  priority: number;
  /** Not in the JSON: set from parseIpRules' second argument. */
  family?: 4 | 6;
  fwmark?: number;
  /** 0xffffffff when the rule has an fwmark and ip printed no mask (ip omits the full mask). */
  fwmask?: number;
  /** "main", "local", "default" or the number as a string ("1101"). */
  table?: string;
  /** 'lookup' when the rule looks up a table; otherwise what ip prints ('prohibit', 'goto', 'nop'...). */
  action: 'lookup' | 'prohibit' | 'blackhole' | 'unreachable' | (string & {});
  suppressPrefixLength?: number;
  /** Absent for `from all`; an address or CIDR otherwise. */
  src?: string;
  /** Absent when the rule has no destination selector. */
  dst?: string;
  iif?: string;
  /** `sport A-B` (ip -j: sport_start, sport_end). */
  sport?: string;
}

/**
 * `ip -j rule` or `ip -j -6 rule`. The JSON does not say the family; pass it to
 * have it set on every rule. Empty output gives [].
 */
export function parseIpRules(json: string, family?: 4 | 6): IpRule[] {
  const tool = 'ip rule';
  return jsonArray(tool, json).map((r, i) => {
    const where = `rule #${i}`;
    const priority = get(r, 'priority');
    if (!isUint(priority)) throw new ParseError(tool, `${where}: no numeric "priority"`);
    const table = optName(tool, where, r, 'table');
    const actionField = optString(tool, where, r, 'action');
    const action = actionField ?? (table !== undefined ? 'lookup' : undefined);
    if (action === undefined) {
      throw new ParseError(tool, `${where} (priority ${priority}): neither "table" nor "action"`);
    }
    const rule: IpRule = { priority, action };
    if (family !== undefined) rule.family = family;
    const fwmark = optMark(tool, where, r, 'fwmark');
    const fwmask = optMark(tool, where, r, 'fwmask');
    if (fwmark !== undefined) {
      rule.fwmark = fwmark;
      rule.fwmask = fwmask ?? 0xffffffff;
    } else if (fwmask !== undefined) {
      rule.fwmask = fwmask;
    }
    if (table !== undefined) rule.table = table;
    const spl = get(r, 'suppress_prefixlen');
    if (spl !== undefined) {
      if (!isUint(spl)) throw new ParseError(tool, `${where}: "suppress_prefixlen" is not a number`);
      rule.suppressPrefixLength = spl;
    }
    const src = selector(tool, where, r, 'src', 'srclen');
    if (src !== undefined && src !== 'all') rule.src = src;
    const dst = selector(tool, where, r, 'dst', 'dstlen');
    if (dst !== undefined && dst !== 'all') rule.dst = dst;
    const iif = optString(tool, where, r, 'iif');
    if (iif !== undefined) rule.iif = iif;
    const sport = [get(r, 'sport_start'), get(r, 'sport_end')];
    if (isUint(sport[0]) && isUint(sport[1])) rule.sport = sport[0] === sport[1] ? String(sport[0]) : `${sport[0]}-${sport[1]}`;
    return rule;
  });
}

function selector(tool: OsTool, where: string, r: JsonObject, key: string, lenKey: string): string | undefined {
  const addr = optString(tool, where, r, key);
  if (addr === undefined) return undefined;
  const len = get(r, lenKey);
  if (len === undefined) return addr;
  if (!isUint(len)) throw new ParseError(tool, `${where}: "${lenKey}" is not a number`);
  return `${addr}/${len}`;
}

export interface IpNexthop {
  gateway?: string;
  dev?: string;
  weight?: number;
}

export interface IpRoute {
  /** 'default', a CIDR or a single address. */
  dst: string;
  /** 'unicast' when ip prints no type. */
  type: 'unicast' | 'prohibit' | 'blackhole' | 'unreachable' | 'local' | 'broadcast' | (string & {});
  dev?: string;
  gateway?: string;
  /** 'main' when ip prints no table. */
  table: string;
  metric?: number;
  protocol?: string;
  prefsrc?: string;
  scope?: string;
  /** Multipath routes: the hops (the route itself then has no gateway/dev). */
  nexthops?: IpNexthop[];
}

/** `ip -j [-6] route [show table all]`. Empty output gives []. */
export function parseIpRoutes(json: string): IpRoute[] {
  const tool = 'ip route';
  return jsonArray(tool, json).map((r, i) => {
    const where = `route #${i}`;
    const dst = get(r, 'dst');
    if (typeof dst !== 'string' || dst === '') throw new ParseError(tool, `${where}: no "dst"`);
    const route: IpRoute = {
      dst,
      type: optString(tool, where, r, 'type') ?? 'unicast',
      table: optName(tool, where, r, 'table') ?? 'main',
    };
    const hop = nexthop(tool, where, r);
    if (hop.dev !== undefined) route.dev = hop.dev;
    if (hop.gateway !== undefined) route.gateway = hop.gateway;
    const metric = get(r, 'metric');
    if (metric !== undefined) {
      if (!isUint(metric)) throw new ParseError(tool, `${where}: "metric" is not a number`);
      route.metric = metric;
    }
    const protocol = optName(tool, where, r, 'protocol');
    if (protocol !== undefined) route.protocol = protocol;
    const prefsrc = optString(tool, where, r, 'prefsrc');
    if (prefsrc !== undefined) route.prefsrc = prefsrc;
    const scope = optName(tool, where, r, 'scope');
    if (scope !== undefined) route.scope = scope;
    const hops = get(r, 'nexthops');
    if (hops !== undefined) {
      if (!Array.isArray(hops)) throw new ParseError(tool, `${where}: "nexthops" is not a list`);
      route.nexthops = hops.map((h, j) => {
        if (!isObject(h)) throw new ParseError(tool, `${where}: nexthop #${j} is not an object`);
        const nh = nexthop(tool, `${where} nexthop #${j}`, h);
        const weight = get(h, 'weight');
        if (weight !== undefined) {
          if (!isUint(weight)) throw new ParseError(tool, `${where}: nexthop #${j} "weight" is not a number`);
          nh.weight = weight;
        }
        return nh;
      });
    }
    return route;
  });
}

function nexthop(tool: OsTool, where: string, r: JsonObject): IpNexthop {
  const out: IpNexthop = {};
  const dev = optString(tool, where, r, 'dev');
  if (dev !== undefined) out.dev = dev;
  const gw = optString(tool, where, r, 'gateway');
  if (gw !== undefined) out.gateway = gw;
  else {
    // `via inet6 fe80::1` (an IPv4 route over an IPv6 next hop) prints {"via": {"family", "host"}}.
    const via = get(r, 'via');
    if (via !== undefined) {
      const host = isObject(via) ? get(via, 'host') : undefined;
      if (typeof host !== 'string') throw new ParseError(tool, `${where}: "via" has no "host"`);
      out.gateway = host;
    }
  }
  return out;
}

export interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  /** The flags include UP (administratively up; see operstate for the carrier). */
  up: boolean;
  /** "UP", "DOWN", "UNKNOWN" (tun devices: wireguard-go)... */
  operstate: string;
  /** linkinfo.info_kind, only with `ip -d`. wireguard-go links are "tun", not "wireguard". */
  kind?: string;
  master?: string;
}

/** `ip -j [-d] link [show DEV]`. Empty output gives []. */
export function parseIpLinks(json: string): IpLink[] {
  const tool = 'ip link';
  return jsonArray(tool, json).map((l, i) => {
    const where = `link #${i}`;
    const ifname = get(l, 'ifname');
    const ifindex = get(l, 'ifindex');
    const mtu = get(l, 'mtu');
    const flags = get(l, 'flags');
    if (typeof ifname !== 'string' || ifname === '') throw new ParseError(tool, `${where}: no "ifname"`);
    if (!isUint(ifindex)) throw new ParseError(tool, `${where} (${ifname}): no numeric "ifindex"`);
    if (!isUint(mtu)) throw new ParseError(tool, `${where} (${ifname}): no numeric "mtu"`);
    if (!Array.isArray(flags) || !flags.every((f) => typeof f === 'string')) {
      throw new ParseError(tool, `${where} (${ifname}): "flags" is not a list of strings`);
    }
    const link: IpLink = {
      ifname,
      ifindex,
      mtu,
      up: flags.includes('UP'),
      operstate: optString(tool, where, l, 'operstate') ?? 'UNKNOWN',
    };
    const info = get(l, 'linkinfo');
    if (info !== undefined) {
      if (!isObject(info)) throw new ParseError(tool, `${where} (${ifname}): "linkinfo" is not an object`);
      const kind = optString(tool, where, info, 'info_kind');
      if (kind !== undefined) link.kind = kind;
    }
    const master = optString(tool, where, l, 'master');
    if (master !== undefined) link.master = master;
    return link;
  });
}

// ---------------------------------------------------------------- ip addr

export interface IpAddr {
  family: 4 | 6;
  local: string;
  prefixlen: number;
  /** "global", "link", "host"... */
  scope: string;
  /** The subnet in CIDR form, host bits as they are (192.168.77.1/24). */
  cidr: string;
}

export interface IpAddrLink {
  ifname: string;
  addresses: IpAddr[];
}

/** `ip -j addr [show dev DEV]`: each link's addresses (tentative and DAD-failed ones included: ip prints them). */
export function parseIpAddrs(json: string): IpAddrLink[] {
  const tool = 'ip addr';
  return jsonArray(tool, json).map((l, i) => {
    const ifname = get(l, 'ifname');
    if (typeof ifname !== 'string' || ifname === '') throw new ParseError(tool, `link #${i}: no "ifname"`);
    const info = get(l, 'addr_info') ?? [];
    if (!Array.isArray(info)) throw new ParseError(tool, `${ifname}: "addr_info" is not a list`);
    const addresses: IpAddr[] = [];
    info.forEach((a: unknown, j: number) => {
      const where = `${ifname} address #${j}`;
      if (!isObject(a)) throw new ParseError(tool, `${where} is not an object`);
      const family = get(a, 'family');
      const local = get(a, 'local');
      const prefixlen = get(a, 'prefixlen');
      if (family !== 'inet' && family !== 'inet6') return; // other families (none today) are not ours
      if (typeof local !== 'string' || !isUint(prefixlen)) throw new ParseError(tool, `${where}: no "local"/"prefixlen"`);
      addresses.push({ family: family === 'inet' ? 4 : 6, local, prefixlen, scope: optString(tool, where, a, 'scope') ?? 'global', cidr: `${local}/${prefixlen}` });
    });
    return { ifname, addresses };
  });
}

// ---------------------------------------------------------------- nft -j

export interface NftElement {
  /**
   * An address, a prefix ("10.0.0.0/8"), an interval ("40000-40999"), a mark or
   * port in decimal ("7936"), a concatenation ("10.0.0.1 . 443").
   */
  key: string;
  /** Maps only: marks and ports as numbers, verdicts as "accept", "jump CHAIN"... */
  value?: number | string;
  /** The element's timeout (nft -j prints whole seconds). */
  timeoutMs?: number;
  /** Time left until the element expires. */
  expiresMs?: number;
}

export interface NftChain {
  name: string;
  /** Base chains only. */
  hook?: string;
  /** Base chains only: nft -j prints the number (mangle = -150, dstnat = -100, srcnat = 100...). */
  priority?: number;
  type?: string;
  policy?: string;
  /** How many rules the chain has. */
  rules: number;
}

export interface NftSet {
  name: string;
  /** "ipv4_addr", or a list for concatenations. */
  type: string | string[];
  /** Maps only: the data type ("mark"). */
  map?: string;
  flags: string[];
  elements: NftElement[];
}

export interface NftTableState {
  family: string;
  name: string;
  chains: NftChain[];
  /** Sets and maps, in nft's order. */
  sets: NftSet[];
}

/**
 * `nft -j list table inet splitwan`. null when the table does not exist: nft
 * then prints an error on stderr and nothing on stdout.
 */
export function parseNftTable(json: string): NftTableState | null {
  const tool = 'nft list table';
  if (json.trim() === '') return null;
  const doc = parseJson(tool, json);
  const items = isObject(doc) ? get(doc, 'nftables') : undefined;
  if (!Array.isArray(items)) throw new ParseError(tool, 'no "nftables" list');
  let table: { family: string; name: string } | undefined;
  const chains: NftChain[] = [];
  const sets: NftSet[] = [];
  const ruleCounts = new Map<string, number>();
  items.forEach((item, i) => {
    if (!isObject(item)) throw new ParseError(tool, `item #${i} is not an object`);
    const t = get(item, 'table');
    if (t !== undefined) {
      if (!isObject(t)) throw new ParseError(tool, `item #${i}: "table" is not an object`);
      const family = get(t, 'family');
      const name = get(t, 'name');
      if (typeof family !== 'string' || typeof name !== 'string') {
        throw new ParseError(tool, `item #${i}: the table has no family or name`);
      }
      if (table) throw new ParseError(tool, `item #${i}: a second table`);
      table = { family, name };
    }
    const c = get(item, 'chain');
    if (c !== undefined) chains.push(nftChain(tool, `item #${i}`, c));
    const r = get(item, 'rule');
    if (r !== undefined) {
      const chain = isObject(r) ? get(r, 'chain') : undefined;
      if (typeof chain !== 'string') throw new ParseError(tool, `item #${i}: a rule without "chain"`);
      ruleCounts.set(chain, (ruleCounts.get(chain) ?? 0) + 1);
    }
    for (const kind of ['set', 'map'] as const) {
      const s = get(item, kind);
      if (s !== undefined) sets.push(nftSet(tool, `item #${i} (${kind})`, s));
    }
  });
  if (!table) return null;
  for (const c of chains) c.rules = ruleCounts.get(c.name) ?? 0;
  return { family: table.family, name: table.name, chains, sets };
}

/** The sets and maps of `nft -j list set|map ...` (no table item: the listing is one object's). */
export function parseNftSets(json: string): NftSet[] {
  const tool = 'nft list set';
  const doc = parseJson(tool, json);
  const items = isObject(doc) ? get(doc, 'nftables') : undefined;
  if (!Array.isArray(items)) throw new ParseError(tool, 'no "nftables" list');
  const sets: NftSet[] = [];
  items.forEach((item, i) => {
    if (!isObject(item)) throw new ParseError(tool, `item #${i} is not an object`);
    for (const kind of ['set', 'map'] as const) {
      const s = get(item, kind);
      if (s !== undefined) sets.push(nftSet(tool, `item #${i} (${kind})`, s));
    }
  });
  return sets;
}

function nftChain(tool: OsTool, where: string, c: unknown): NftChain {
  if (!isObject(c)) throw new ParseError(tool, `${where}: "chain" is not an object`);
  const name = get(c, 'name');
  if (typeof name !== 'string') throw new ParseError(tool, `${where}: a chain without a name`);
  const chain: NftChain = { name, rules: 0 };
  const hook = optString(tool, where, c, 'hook');
  if (hook !== undefined) chain.hook = hook;
  const prio = get(c, 'prio');
  if (prio !== undefined) {
    if (typeof prio !== 'number' || !Number.isInteger(prio)) {
      throw new ParseError(tool, `${where}: chain ${name}: "prio" is not a number`);
    }
    chain.priority = prio;
  }
  const type = optString(tool, where, c, 'type');
  if (type !== undefined) chain.type = type;
  const policy = optString(tool, where, c, 'policy');
  if (policy !== undefined) chain.policy = policy;
  return chain;
}

function nftSet(tool: OsTool, where: string, s: unknown): NftSet {
  if (!isObject(s)) throw new ParseError(tool, `${where} is not an object`);
  const name = get(s, 'name');
  if (typeof name !== 'string') throw new ParseError(tool, `${where}: no name`);
  const at = `${where} ${name}`;
  const type = get(s, 'type');
  if (!(typeof type === 'string' || (Array.isArray(type) && type.every((x) => typeof x === 'string')))) {
    throw new ParseError(tool, `${at}: "type" is not a string or a list of strings`);
  }
  const set: NftSet = { name, type, flags: [], elements: [] };
  const map = get(s, 'map');
  if (map !== undefined) {
    if (typeof map === 'string') set.map = map;
    else if (Array.isArray(map) && map.every((x) => typeof x === 'string')) set.map = map.join(' . ');
    else throw new ParseError(tool, `${at}: "map" is not a type name`);
  }
  const flags = get(s, 'flags');
  if (typeof flags === 'string') set.flags = [flags];
  else if (Array.isArray(flags) && flags.every((x) => typeof x === 'string')) set.flags = flags;
  else if (flags !== undefined) throw new ParseError(tool, `${at}: "flags" is not a list of strings`);
  const elem = get(s, 'elem');
  if (elem !== undefined) {
    if (!Array.isArray(elem)) throw new ParseError(tool, `${at}: "elem" is not a list`);
    set.elements = elem.map((e, j) => nftElement(tool, `${at} element #${j}`, e));
  }
  return set;
}

function nftElement(tool: OsTool, where: string, e: unknown): NftElement {
  // Map elements are [key, value]; the key may carry {"elem": {val, timeout, expires}}.
  let keyPart: unknown = e;
  let valuePart: unknown;
  let isPair = false;
  if (Array.isArray(e)) {
    if (e.length !== 2) throw new ParseError(tool, `${where}: a map element is not a [key, value] pair`);
    [keyPart, valuePart] = e;
    isPair = true;
  }
  let val = keyPart;
  let timeoutMs: number | undefined;
  let expiresMs: number | undefined;
  const wrapped = isObject(keyPart) ? get(keyPart, 'elem') : undefined;
  if (wrapped !== undefined) {
    if (!isObject(wrapped)) throw new ParseError(tool, `${where}: "elem" is not an object`);
    val = get(wrapped, 'val');
    const timeout = get(wrapped, 'timeout');
    const expires = get(wrapped, 'expires');
    if (timeout !== undefined) timeoutMs = seconds(tool, where, 'timeout', timeout);
    if (expires !== undefined) expiresMs = seconds(tool, where, 'expires', expires);
  }
  const out: NftElement = { key: nftExpr(tool, where, val) };
  if (isPair) out.value = nftValue(tool, where, valuePart);
  if (timeoutMs !== undefined) out.timeoutMs = timeoutMs;
  if (expiresMs !== undefined) out.expiresMs = expiresMs;
  return out;
}

function seconds(tool: OsTool, where: string, what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new ParseError(tool, `${where}: "${what}" is not seconds`);
  }
  return Math.round(v * 1000);
}

function nftValue(tool: OsTool, where: string, v: unknown): number | string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new ParseError(tool, `${where}: the value is not a finite number`);
    return v;
  }
  if (isObject(v)) {
    for (const verdict of ['accept', 'drop', 'continue', 'return']) {
      if (Object.hasOwn(v, verdict)) return verdict;
    }
    for (const verdict of ['jump', 'goto']) {
      const j = get(v, verdict);
      if (j !== undefined) {
        const target = isObject(j) ? get(j, 'target') : undefined;
        if (typeof target !== 'string') throw new ParseError(tool, `${where}: "${verdict}" without a target`);
        return `${verdict} ${target}`;
      }
    }
  }
  return nftExpr(tool, where, v);
}

/** A key or value expression as nft would print it, marks and ports in decimal. */
function nftExpr(tool: OsTool, where: string, v: unknown, depth = 0): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (isObject(v) && depth < 4) {
    const range = get(v, 'range');
    if (Array.isArray(range) && range.length === 2) {
      return `${nftExpr(tool, where, range[0], depth + 1)}-${nftExpr(tool, where, range[1], depth + 1)}`;
    }
    const prefix = get(v, 'prefix');
    if (isObject(prefix)) {
      const addr = get(prefix, 'addr');
      const len = get(prefix, 'len');
      if (typeof addr === 'string' && isUint(len)) return `${addr}/${len}`;
    }
    const concat = get(v, 'concat');
    if (Array.isArray(concat) && concat.length > 0) {
      return concat.map((x) => nftExpr(tool, where, x, depth + 1)).join(' . ');
    }
  }
  throw new ParseError(tool, `${where}: an element expression nft -j was not expected to print`);
}

// ---------------------------------------------------------------- helpers

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function get(o: JsonObject, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseJson(tool: OsTool, json: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new ParseError(tool, `the output is not JSON (${(err as Error).message})`, { cause: err });
  }
}

/** An ip -j list of objects; empty output counts as an empty list. */
function jsonArray(tool: OsTool, json: string): JsonObject[] {
  if (json.trim() === '') return [];
  const doc = parseJson(tool, json);
  if (!Array.isArray(doc)) throw new ParseError(tool, 'the output is not a JSON list');
  doc.forEach((x, i) => {
    if (!isObject(x)) throw new ParseError(tool, `entry #${i} is not an object`);
  });
  return doc as JsonObject[];
}

function optString(tool: OsTool, where: string, o: JsonObject, k: string): string | undefined {
  const v = get(o, k);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ParseError(tool, `${where}: "${k}" is not a string`);
  return v;
}

/** Names ip may print as a number when it has no name for them (tables, protocols, scopes). */
function optName(tool: OsTool, where: string, o: JsonObject, k: string): string | undefined {
  const v = get(o, k);
  if (v === undefined) return undefined;
  if (typeof v === 'string' && v !== '') return v;
  if (isUint(v)) return String(v);
  throw new ParseError(tool, `${where}: "${k}" is not a name or number`);
}

/** ip prints marks as "0x1000"; accept decimal strings and numbers too. */
function optMark(tool: OsTool, where: string, o: JsonObject, k: string): number | undefined {
  const v = get(o, k);
  if (v === undefined) return undefined;
  let n: number | undefined;
  if (typeof v === 'number') n = isUint(v) && v <= 0xffffffff ? v : undefined;
  else if (typeof v === 'string') n = u32(v);
  if (n === undefined) throw new ParseError(tool, `${where}: "${k}" is not a 32-bit mark`);
  return n;
}

/** A non-negative decimal integer; undefined otherwise. */
function decimal(s: string): number | undefined {
  if (!/^\d{1,16}$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** "0x1000" or "4096", at most 32 bits; undefined otherwise. */
function u32(s: string): number | undefined {
  let n: number | undefined;
  if (/^0x[0-9a-f]{1,8}$/i.test(s)) n = parseInt(s.slice(2), 16);
  else n = decimal(s);
  return n !== undefined && n <= 0xffffffff ? n : undefined;
}

/**
 * The original destination of the first entry `conntrack -L` printed (its
 * first `dst=` and `dport=`: the original direction comes first), e.g.
 * `tcp 6 431999 ESTABLISHED src=10.9.0.2 dst=198.51.100.7 sport=40000 dport=443 src=10.9.0.1 dst=10.9.0.2 sport=3129 dport=40000 [ASSURED] mark=0 use=1`.
 * null when there is none.
 */
export function parseConntrackOriginalDst(stdout: string): { address: string; port: number } | null {
  const line = stdout.split('\n').find((l) => /\bdst=\S+/.test(l) && /\bdport=\d+/.test(l));
  if (line === undefined) return null;
  const address = /\bdst=(\S+)/.exec(line)![1]!;
  const port = Number(/\bdport=(\d+)/.exec(line)![1]);
  return isIP(address) !== 0 && port > 0 && port < 65536 ? { address, port } : null;
}
