import { isIPv6 } from 'node:net';

/** An address as numbers: IPv4 in w[3] (w[0..2] = 0), IPv6 as four 32-bit words. */
export interface ParsedIp {
  family: 4 | 6;
  /** Four unsigned 32-bit words, most significant first. */
  w: [number, number, number, number];
}

export interface ParsedCidr extends ParsedIp {
  prefix: number;
  /** Normalised text, host bits cleared: 10.0.0.0/8, 2001:db8::/32. */
  text: string;
}

/** Dotted quad to a number; a hand loop because lists hold hundreds of thousands of these. */
export function parseIPv4(s: string): number | null {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      // No leading zeros (010 is octal to some parsers, decimal to others).
      if (digits === 1 && part === 0) return null;
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return null;
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return null;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else return null;
  }
  if (dots !== 3 || digits === 0) return null;
  return (value * 256 + part) >>> 0;
}

/** Parses an IPv4 or IPv6 address (IPv4-mapped IPv6 stays IPv6). */
export function parseIp(s: string): ParsedIp | null {
  const v4 = parseIPv4(s);
  if (v4 !== null) return { family: 4, w: [0, 0, 0, v4] };
  const zone = s.indexOf('%');
  const a = zone >= 0 ? s.slice(0, zone) : s;
  if (!isIPv6(a)) return null;
  return { family: 6, w: ipv6Words(a) };
}

function ipv6Words(a: string): [number, number, number, number] {
  let head = a;
  let tail = '';
  const dbl = a.indexOf('::');
  if (dbl >= 0) {
    head = a.slice(0, dbl);
    tail = a.slice(dbl + 2);
  }
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = parseIPv4(g)!;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = toGroups(head);
  const t = toGroups(tail);
  const groups = dbl >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  const w: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) w[i] = ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0;
  return w;
}

/**
 * ::ffff:a.b.c.d as the IPv4 address it is. A dual-stack socket reports IPv4
 * clients this way; rules about 192.168.1.0/24 must still match them.
 */
export function unmapIp(ip: ParsedIp): ParsedIp {
  if (ip.family === 6 && ip.w[0] === 0 && ip.w[1] === 0 && ip.w[2] === 0xffff) return { family: 4, w: [0, 0, 0, ip.w[3]] };
  return ip;
}

export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) {
    const v = ip.w[3];
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const g: number[] = [];
  for (const x of ip.w) g.push(x >>> 16, x & 0xffff);
  // RFC 5952: compress the longest run of two or more zero groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Mask of the top `bits` bits of a 32-bit word (0..32). */
function wordMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

/**
 * Parses `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128). Host bits
 * are cleared rather than rejected, because real lists often carry them.
 */
export function parseCidr(s: string): ParsedCidr | { error: string } {
  const t = s.trim();
  const slash = t.indexOf('/');
  const addrText = slash >= 0 ? t.slice(0, slash) : t;
  const ip = parseIp(addrText);
  if (!ip) return { error: `"${s}" is not an IP address or CIDR` };
  const max = ip.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || +p > max) return { error: `"${s}" has a bad prefix length (0-${max})` };
    prefix = +p;
  }
  // ::ffff:a.b.c.d/N (N >= 96) is an IPv4 range as clients on dual-stack sockets appear.
  if (ip.family === 6 && prefix >= 96 && ip.w[0] === 0 && ip.w[1] === 0 && ip.w[2] === 0xffff) {
    return parseCidr(`${formatIp({ family: 4, w: [0, 0, 0, ip.w[3]] })}/${prefix - 96}`);
  }
  const w = ip.w;
  if (ip.family === 4) w[3] = (w[3] & wordMask(prefix)) >>> 0;
  else for (let i = 0; i < 4; i++) w[i] = (w[i]! & wordMask(prefix - 32 * i)) >>> 0;
  return { family: ip.family, w, prefix, text: `${formatIp(ip)}/${prefix}` };
}

export function isCidrError(c: ParsedCidr | { error: string }): c is { error: string } {
  return 'error' in c;
}

/** Does `ip` fall inside `cidr`? */
export function cidrContains(cidr: ParsedCidr, ip: ParsedIp): boolean {
  if (cidr.family !== ip.family) return false;
  if (cidr.family === 4) return ((ip.w[3] & wordMask(cidr.prefix)) >>> 0) === cidr.w[3];
  for (let i = 0; i < 4; i++) {
    const m = wordMask(cidr.prefix - 32 * i);
    if (((ip.w[i]! & m) >>> 0) !== cidr.w[i]) return false;
  }
  return true;
}

/** Parses `host:port`, `[v6]:port`, or a bare host with a default port. */
export function parseHostPort(s: string, defaultPort?: number): { host: string; port: number } | { error: string } {
  const t = s.trim();
  let host: string;
  let portText: string | undefined;
  if (t.startsWith('[')) {
    const end = t.indexOf(']');
    if (end < 0) return { error: `"${s}": missing "]"` };
    host = t.slice(1, end);
    const rest = t.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return { error: `"${s}": expected ":port" after "]"` };
      portText = rest.slice(1);
    }
  } else if (isIPv6(t)) {
    host = t;
  } else {
    const c = t.lastIndexOf(':');
    if (c >= 0) {
      host = t.slice(0, c);
      portText = t.slice(c + 1);
    } else host = t;
  }
  if (host === '') return { error: `"${s}": missing host` };
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || +portText < 1 || +portText > 65535) {
      return { error: `"${s}": bad port "${portText}" (1-65535)` };
    }
    port = +portText;
  }
  if (port === undefined) return { error: `"${s}": missing port` };
  return { host, port };
}
