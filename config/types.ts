// The validated, normalised configuration. Everything here is plain data:
// durations are milliseconds, paths are absolute, defaults are filled in, and
// the loader freezes the whole tree. Later modules read it, never write it.

/** Where a value came from in a file, for error messages and `explain`. */
export interface SourcePos {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
}

/** A named path traffic can take. `gw:<name>` pins one gateway, `link:<name>` one WAN link (breakout.links). */
export type PathName = 'breakout' | 'tunnel' | `gw:${string}` | `link:${string}`;
/** What a rule sends traffic to: a path or `block`. */
export type Target = PathName | 'block';

export type Mode = 'router' | 'host';

/** A DNS upstream: plain (udp, tcp fallback), DoH or DoT. */
export type Upstream =
  | { kind: 'plain'; host: string; port: number; text: string }
  | { kind: 'doh'; url: string; text: string }
  | { kind: 'tls'; host: string; port: number; servername: string; text: string };

export interface WireGuardPeer {
  publicKey: string;
  /** Secret: never logged or printed. */
  presharedKey?: string;
  /** `host:port` as written; host may be a name resolved through breakout DNS. */
  endpoint?: { host: string; port: number };
  allowedIPs: string[];
  persistentKeepalive?: number; // seconds
}

export interface WireGuardInterface {
  /** Secret: never logged or printed. */
  privateKey: string;
  /** CIDRs, e.g. 10.64.0.2/32, fc00::2/128 */
  addresses: string[];
  dns: string[];
  mtu?: number;
  peers: WireGuardPeer[];
  /** Where it came from (a wg-quick file, or inline in the config). */
  source: SourcePos;
}

export type ProbeKind = 'handshake' | 'dns' | 'http' | 'tcp' | 'icmp';

export interface ProbeSpec {
  kind: ProbeKind;
  /** http: the URL to GET (through the tunnel). */
  url?: string;
  /** http: expected status (default 200-399; 204 for generate_204 urls). */
  expect?: number;
  /** tcp: host:port; icmp: address. */
  target?: string;
  /** dns: the name to query (default: `.` NS, answered by any resolver). */
  name?: string;
}

export interface GatewayConfig {
  name: string;
  /** The path that pins this gateway: `gw:<name>`. */
  path: `gw:${string}`;
  /** Interface name, `swg-<name>`, <= 15 chars. */
  ifname: string;
  priority: number;
  wireguard: WireGuardInterface;
  /** Resolvers reached through this gateway (tunnel.dns, else the wg-quick DNS=). */
  dns: Upstream[];
  /** Probes override for this gateway; null: use health.probe. */
  probe: ProbeSpec[] | null;
  pos: SourcePos;
}

/** One WAN link of `breakout.links` (the SD-WAN underlay). */
export interface LinkConfig {
  name: string;
  /** The path that pins this link: `link:<name>`. */
  path: `link:${string}`;
  interface: string;
  /** Next hops (one per family at most) where the link has no default route of its own; empty: its own (main table). */
  gateway: string[];
  /** This link's resolvers; auto: the system's (probed through the link). */
  dns: Upstream[] | 'auto';
  /** Lower is preferred. */
  priority: number;
  /** With breakout.balance: the share of new flows. */
  weight: number;
  /** Only rules that name it use it, or failover when no other link is up. */
  metered: boolean;
  pos: SourcePos;
}

/**
 * A gateway another program made (tunnel.gateways with `interface` or
 * `table`): splitwan routes into it, probes through it and fails over to and
 * from it, but never creates, configures or removes it.
 */
export interface UnmanagedGatewayConfig {
  name: string;
  path: `gw:${string}`;
  /** interface: a tunnel interface (AmneziaWG, OpenVPN...); table: a routing table another program fills (Tailscale's 52). */
  kind: 'interface' | 'table';
  /** kind interface: its name; kind table: ''. */
  ifname: string;
  /** kind table: the table; null for interface. */
  table: number | null;
  priority: number;
  dns: Upstream[];
  probe: ProbeSpec[] | null;
  /** Its position in tunnel.gateways (config order, for ties). */
  index: number;
  pos: SourcePos;
}

export interface ListSource {
  name: string;
  format: ListFormat;
  /** Exactly one of file / url. */
  file?: string;
  url?: string;
  /** cron expression (node-cron), only for url lists. */
  refresh?: string;
  /** url lists: the sha256 (lower-case hex) the downloaded body must have; none: the URL must be https. */
  sha256?: string;
  maxBytes: number;
  timeoutMs: number;
  /**
   * Rule files (geosite.dat, geoip.dat, .mmdb): what to take from them.
   * Absent: the whole file (.srs, .mrs, sing-box JSON), or a database that
   * `geodata` names for rules' `geoip:` / `asn:`.
   */
  select?: ListSelection;
  pos: SourcePos;
}

/** `category:` (geosite, with @attr / @!attr), `country:` (geoip.dat, country .mmdb), `asn:` (ASN .mmdb). */
export interface ListSelection {
  categories?: string[];
  countries?: string[];
  asns?: number[];
}

export type ListFormat = TextListFormat | RuleFileFormat;
export type TextListFormat = 'auto' | 'plain' | 'hosts' | 'dnsmasq' | 'clash' | 'v2fly' | 'cidr';
/** Binary and JSON rule files (config/lists/rule-files.ts); `srs` takes sing-box's source JSON too. */
export type RuleFileFormat = 'geosite' | 'geoip' | 'srs' | 'mrs' | 'mmdb';

/** One domain pattern, as the user meant it. */
export type DomainPattern =
  | { kind: 'domain'; value: string } // the name and all subdomains
  | { kind: 'subdomain'; value: string } // `*.x`: only subdomains
  | { kind: 'full'; value: string } // exact
  | { kind: 'keyword'; value: string } // substring
  | { kind: 'regexp'; value: string }; // as written

/** Where a list entry or a rule entry came from. */
export interface EntryOrigin {
  /** Rule entries: the key path, e.g. rules[0].domains[2]. List entries: undefined. */
  keyPath?: string;
  /** The list, for list entries. */
  list?: string;
  pos: SourcePos;
}

export interface RuleConfig {
  index: number;
  domains: { pattern: DomainPattern; origin: EntryOrigin }[];
  cidrs: { cidr: string; origin: EntryOrigin }[];
  sources: { cidr: string; origin: EntryOrigin }[];
  lists: string[];
  // Matchers of issue 21. Optional so rules built by hand (tests, the DoH
  // rule) need not name them; the loader always fills them in.
  /** Destination ports and ranges ({from, to}); they need `protocol` or match tcp and udp. */
  ports?: { from: number; to: number; origin: EntryOrigin }[];
  /** tcp or udp; null: both (or any, without ports). */
  protocol?: 'tcp' | 'udp' | null;
  /** Destination countries, from the `geodata.country` database (upper case, or `!CN`). */
  geoip?: { code: string; origin: EntryOrigin }[];
  /** Destination autonomous systems, from the `geodata.asn` database. */
  asns?: { asn: number; origin: EntryOrigin }[];
  /** router mode: LAN devices by MAC address, or by a host name from DHCP leases or /etc/ethers. */
  devices?: { device: string; mac: string | null; origin: EntryOrigin }[];
  /** When the rule applies; null: always. */
  when?: Schedule | null;
  /** At a schedule boundary, flows the rule starts or stops matching move too (else they keep their path until they end). */
  reroute?: boolean;
  /** Candidates in order; the first healthy one wins. */
  via: Target[];
  /** A short human label, for logs and metrics. */
  label: string;
  pos: SourcePos;
}

/** `when:` of a rule: on these days, in these time ranges, in this time zone. */
export interface Schedule {
  /** 0 = Sunday ... 6 = Saturday. */
  days: number[];
  /** Minutes since midnight, [from, to); to < from: the range runs past midnight (into the next day). */
  ranges: { from: number; to: number }[];
  /** IANA time zone, e.g. Europe/Berlin; 'local': the machine's. */
  timeZone: string;
  pos: SourcePos;
}

export interface HealthConfig {
  intervalMs: number;
  timeoutMs: number;
  failAfter: number;
  recoverAfter: number;
  probe: ProbeSpec[];
  /** Samples kept for RTT/loss/jitter. */
  window: number;
  degradeFactor: number;
  failbackHoldMs: number;
}

export interface DnsConfig {
  /** `host:port` strings; 'auto' = 127.0.0.53:53 in host mode, the LAN addresses in router mode. */
  listen: { host: string; port: number }[] | 'auto';
  timeoutMs: number;
  tagTtlMs: number;
  blockEncryptedDns: boolean;
  /** Lists (names in `lists`) of well-known DoH endpoints to reject when blockEncryptedDns. */
  dohLists: string[];
  blockAnswer: 'null' | 'nxdomain';
  cache: {
    size: number;
    minTtl: number; // seconds
    maxTtl: number; // seconds
    negativeTtl: number; // seconds, cap for RFC 2308 negative caching
    serveStale: boolean;
    staleTtl: number; // seconds an expired answer may be served when every upstream fails
  };
}

export interface ProxyConfig {
  enabled: boolean;
  ports: number[];
  listenPort: number;
  peekTimeoutMs: number;
  idleTimeoutMs: number;
  /** Connections one client address may have open through the proxy at once. */
  maxConnectionsPerClient: number;
  blockQuic: boolean;
}

/** The query log (dns/query-log.ts): every DNS decision, for `splitwan log` and the dashboard. */
export interface QueryLogConfig {
  /** off: nothing recorded; anonymize: clients as their /24 or /48, never named; full: addresses and names. */
  privacy: 'off' | 'anonymize' | 'full';
  /** Records kept in memory (the oldest are overwritten). */
  size: number;
  /** Also appended to this file as JSON lines, rotated at maxBytes, `keep` old files; null: memory only. */
  file: { path: string; maxBytes: number; keep: number } | null;
  /** Files that name LAN clients (dnsmasq/odhcpd/ISC leases, hosts files); missing ones are skipped. */
  clientNames: string[];
}

/** The web dashboard (daemon/web/). */
export interface WebConfig {
  /** null: off. */
  listen: { host: string; port: number } | null;
  /** scrypt hash from `splitwan web passwd`; null: nobody can log in. */
  passwordHash: string | null;
  /** Read-only pages without login (changes still need it). */
  publicRead: boolean;
  /** HTTPS with this certificate and key (PEM files); null: plain HTTP. */
  tls: { cert: string; key: string } | null;
}

export interface Config {
  /** Absolute path of the main file. */
  file: string;
  /** sha256 of the main file and everything it includes: a reload with the same digest is a no-op. */
  digest: string;
  mode: Mode;
  lan: string[];
  breakout: {
    /** With links: the preferred link's interface. */
    interface: string | 'auto';
    /** With links: every link's resolvers (each link's own are in its entry). */
    dns: Upstream[] | 'auto';
    /** Several WAN links (unset or empty: the single-WAN form, `interface` and `dns`). */
    links?: LinkConfig[];
    /** Spread new breakout flows over the usable links by weight (false: the best usable link). */
    balance?: boolean;
  };
  tunnel: {
    killSwitch: boolean;
    /** Host mode: this machine's own networks take the breakout (daemon/local-nets.ts). */
    allowLan: boolean;
    dns: Upstream[] | null;
    gateways: GatewayConfig[];
    /** Gateways another program made (tunnel.gateways with interface or table); unset: none. */
    unmanaged?: UnmanagedGatewayConfig[];
  };
  health: HealthConfig;
  dns: DnsConfig;
  proxy: ProxyConfig;
  /** group: members may read status/explain/rules through a second, read-only socket beside `socket`; null: none. */
  control: { socket: string; group: string | null };
  metrics: { listen: { host: string; port: number } | null };
  queryLog: QueryLogConfig;
  web: WebConfig;
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' };
  stateDir: string;
  lists: ListSource[];
  /** Files that name LAN devices (DHCP leases, /etc/ethers) for rules' `devices:`; absent: the usual places. */
  deviceFiles?: string[];
  /** Databases (list names) rules' `geoip:` and `asn:` select from; null: none. */
  geodata?: { country: string | null; asn: string | null };
  rules: RuleConfig[];
  default: Target[];
  /** Files the config depends on (itself, wg-quick files, list files): the store watches them. */
  files: string[];
}
