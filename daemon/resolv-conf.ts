// `breakout.dns: auto`: the resolvers the system was given (DHCP, the ISP),
// read from resolv.conf. Pure: the daemon reads the files.
//
// A stub resolver (systemd-resolved's 127.0.0.53, or splitwan's own listen
// address) is not an upstream: forwarding to it would loop or hide the real
// servers. systemd-resolved writes the real ones to
// /run/systemd/resolve/resolv.conf, which the daemon reads in that case.
import { isIP } from 'node:net';

/** `nameserver` addresses in order (IPv6 zone ids kept), comments and other keywords ignored. */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)$/.exec(line);
    if (!m) continue;
    const addr = m[1]!;
    if (isIP(addr.replace(/%.*$/, '')) !== 0 && !out.includes(addr)) out.push(addr);
  }
  return out;
}

/** The files to try, in order, for the real upstreams. */
export const RESOLV_CONF_FILES = ['/etc/resolv.conf', '/run/systemd/resolve/resolv.conf'] as const;

/**
 * The first file's nameservers that are not stubs: not loopback and not one
 * of `own` (splitwan's listen addresses). Empty when every one is a stub.
 */
export function upstreamNameservers(texts: readonly (string | null)[], own: readonly string[]): string[] {
  for (const t of texts) {
    if (t === null) continue;
    const real = parseResolvConf(t).filter((a) => !isLoopback(a) && !own.includes(a));
    if (real.length) return real;
  }
  return [];
}

function isLoopback(a: string): boolean {
  return a.startsWith('127.') || a === '::1';
}
