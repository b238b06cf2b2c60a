import { isIP } from 'node:net';
import { parseHostPort } from '../lib/ip.js';
import type { Upstream } from './types.js';

/**
 * Parses a resolver address: `1.1.1.1`, `1.1.1.1:5353`, `[2001:db8::1]:53`,
 * `https://9.9.9.9/dns-query` (DoH) or `tls://9.9.9.9[:853]#dns.quad9.net`
 * (DoT; the name after `#` is the certificate to expect). Every kind takes
 * an address, not a name: the daemon dials its resolvers through a path's
 * marked sockets before any name can be resolved (the system resolver may be
 * splitwan itself), so a name would fail every query at run time.
 */
export function parseUpstream(text: string): Upstream | { error: string } {
  const s = text.trim();
  if (/^https:\/\//i.test(s)) {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return { error: `"${text}" is not a valid https URL` };
    }
    if (u.username || u.password) return { error: `"${u.host}": credentials in a DoH URL are not supported` };
    if (!isIP(u.hostname.replace(/^\[|\]$/g, ''))) return { error: `"${text}": a DoH resolver must be given by IP address, e.g. https://9.9.9.9/dns-query (splitwan cannot look up its own resolver's name)` };
    return { kind: 'doh', url: u.toString(), text: s };
  }
  if (/^http:\/\//i.test(s)) return { error: `"${text}": DoH needs https://, not http://` };
  if (/^tls:\/\//i.test(s)) {
    const rest = s.slice(6);
    const hash = rest.indexOf('#');
    const hp = parseHostPort(hash >= 0 ? rest.slice(0, hash) : rest, 853);
    if ('error' in hp) return { error: `DoT upstream ${hp.error}` };
    if (!isIP(hp.host)) return { error: `"${text}": a DoT resolver must be given by IP address, with the certificate's name after #, e.g. tls://9.9.9.9#dns.quad9.net (splitwan cannot look up its own resolver's name)` };
    const servername = hash >= 0 ? rest.slice(hash + 1) : hp.host;
    return { kind: 'tls', host: hp.host, port: hp.port, servername, text: s };
  }
  if (/^[a-z]+:\/\//i.test(s)) return { error: `"${text}": unknown scheme (use an address, https:// or tls://)` };
  const hp = parseHostPort(s, 53);
  if ('error' in hp) return hp;
  // A plain resolver must be an address: resolving its name would need a resolver.
  if (!isIP(hp.host)) return { error: `"${text}": a plain resolver must be an IP address` };
  return { kind: 'plain', host: hp.host, port: hp.port, text: s };
}
