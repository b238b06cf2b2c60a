// The built-in list of well-known public DNS-over-HTTPS endpoints, used by
// `dns.blockEncryptedDns` when `dns.dohLists` names none. Clash rule text,
// so it holds names (answered NXDOMAIN by the resolver) and addresses
// (HTTPS to them rejected by the data plane). Shipped in the code, not
// downloaded: splitwan needs no internet to start. Sources: the providers'
// own documentation of their DoH services.
import { parseList, type ParsedList } from './formats.js';

export const BUILTIN_DOH_LIST = 'builtin:doh-endpoints';

export const DOH_ENDPOINTS_TEXT = `# name: well-known public DoH endpoints
DOMAIN-SUFFIX,dns.google
DOMAIN,dns64.dns.google
DOMAIN-SUFFIX,cloudflare-dns.com
DOMAIN,one.one.one.one
DOMAIN,1dot1dot1dot1.cloudflare-dns.com
DOMAIN-SUFFIX,dns.quad9.net
DOMAIN-SUFFIX,doh.opendns.com
DOMAIN,dns.umbrella.com
DOMAIN-SUFFIX,dns.adguard-dns.com
DOMAIN-SUFFIX,dns.adguard.com
DOMAIN-SUFFIX,dns.nextdns.io
DOMAIN,doh.cleanbrowsing.org
DOMAIN,doh.mullvad.net
DOMAIN-SUFFIX,dns.mullvad.net
DOMAIN,freedns.controld.com
DOMAIN,doh.libredns.gr
DOMAIN,dns.alidns.com
DOMAIN,doh.pub
DOMAIN,doh.dns.sb
DOMAIN,dns.twnic.tw
DOMAIN,chrome.cloudflare-dns.com
DOMAIN,mozilla.cloudflare-dns.com
IP-CIDR,8.8.8.8/32
IP-CIDR,8.8.4.4/32
IP-CIDR6,2001:4860:4860::8888/128
IP-CIDR6,2001:4860:4860::8844/128
IP-CIDR,1.1.1.1/32
IP-CIDR,1.0.0.1/32
IP-CIDR6,2606:4700:4700::1111/128
IP-CIDR6,2606:4700:4700::1001/128
IP-CIDR,9.9.9.9/32
IP-CIDR,149.112.112.112/32
IP-CIDR6,2620:fe::fe/128
IP-CIDR6,2620:fe::9/128
IP-CIDR,208.67.222.222/32
IP-CIDR,208.67.220.220/32
IP-CIDR,94.140.14.14/32
IP-CIDR,94.140.15.15/32
IP-CIDR,185.228.168.9/32
IP-CIDR,194.242.2.2/32
IP-CIDR,76.76.2.0/32
IP-CIDR,223.5.5.5/32
IP-CIDR,223.6.6.6/32
`;

/** The built-in list, parsed (names and CIDRs). */
export function builtinDohList(): ParsedList {
  return parseList(DOH_ENDPOINTS_TEXT, 'clash', 'doh-endpoints');
}
