// Who may ask the resolver: loopback and the LAN subnets, nobody else, so
// splitwan is never an open resolver. Pure; the daemon supplies the subnets
// (router mode: the LAN interfaces' prefixes, read at start, on every reload
// and whenever the LAN's addresses change: `ip monitor address`).
import { cidrContains, parseCidr, parseIp, unmapIp, type ParsedCidr } from '../lib/ip.js';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];
/** Answers per address are memoised; the bound keeps a spray of sources from growing it. */
const MEMO_MAX = 4096;

export class ClientAcl {
  private readonly cidrs: ParsedCidr[];
  private readonly memo = new Map<string, boolean>();

  /** `subnets`: CIDRs whose hosts may ask, besides loopback. Bad entries throw. */
  constructor(subnets: readonly string[]) {
    this.cidrs = [...LOOPBACK, ...subnets].map((s) => {
      const c = parseCidr(s);
      if ('error' in c) throw new TypeError(`not a subnet: ${s}: ${c.error}`);
      return c;
    });
  }

  /** The subnets this ACL admits (loopback first), for logs and status. */
  get subnets(): string[] {
    return this.cidrs.map((c) => c.text);
  }

  allows(address: string): boolean {
    const m = this.memo.get(address);
    if (m !== undefined) return m;
    const ip = parseIp(address);
    const ok = ip !== null && this.cidrs.some((c) => cidrContains(c, unmapIp(ip)));
    if (this.memo.size >= MEMO_MAX) this.memo.clear();
    this.memo.set(address, ok);
    return ok;
  }
}
