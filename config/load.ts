import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import cron from 'node-cron';
import { normalizeDomain, parseDomainPattern } from './domain.js';
import { parseDuration } from './duration.js';
import { ConfigCodes, ConfigError, didYouMean, IssueSink, type ConfigIssue } from './errors.js';
import { cidrContains, parseCidr, parseHostPort, parseIp, type ParsedCidr } from '../lib/ip.js';
import { listCacheFile, ListFetcher, matchesPin, redactUrl } from './lists/fetch.js';
import type { ParsedList } from './lists/formats.js';
import { ListFormatError, type DecodedList } from './lists/decoded.js';
import { detectRuleFileFormat } from './lists/detect.js';
import { CompactCidrs, CompactDomains } from './lists/compact.js';
import { isTextContent, readListContent } from './lists/list-content.js';
import { buildGeodataLists, geodataLists, GEODATA_KINDS } from './lists/geodata.js';
import { matcherLabelParts, parseRuleMatchers } from './rule-matchers.js';
import { compilePolicy, type ListContent, type Policy } from './policy.js';
import { validateAgainstSchema } from './schema-validate.js';
import { cgroupPatternProblem } from './app-patterns.js';
import type {
  AppConfig,
  Config,
  DomainPattern,
  GatewayConfig,
  LinkConfig,
  ListFormat,
  ListSelection,
  ListSource,
  ProbeSpec,
  RuleConfig,
  SourcePos,
  Target,
  UnmanagedGatewayConfig,
  Upstream,
  WireGuardInterface,
} from './types.js';
import type { PortalConfig } from './types.js';
import { hasUpperCaseLiteral } from './safe-regexp.js';
import { parseUpstream } from './upstream.js';
import { isWireGuardKey, keyProblem, parseWgQuick } from './wgquick.js';
import { fileTrustProblems, type FileOwnership } from './file-trust.js';
import { keyPathString, YamlSource, type KeySeg } from './yaml-source.js';

export const DEFAULT_CONFIG_PATH = '/etc/splitwan/config.yaml';
/** Captive portals: the well-known endpoint that answers 204 when nothing is in the way (Android's). */
export const DEFAULT_PORTAL_PROBE = 'http://connectivitycheck.gstatic.com/generate_204';
/** Where LAN clients' names are usually found (queryLog.clientNames): hosts, dnsmasq, OpenWrt odhcpd/dnsmasq, ISC dhcpd. */
export const DEFAULT_CLIENT_NAME_FILES = ['/etc/hosts', '/var/lib/misc/dnsmasq.leases', '/tmp/dhcp.leases', '/var/lib/dhcp/dhcpd.leases'];

/**
 * Why the dashboard must not listen on `host`, or null. Only loopback and
 * private LAN ranges (RFC 1918, IPv6 ULA) are allowed: a wildcard includes
 * the WAN, and a public address (or 100.64/10, the ISP's CGNAT side) is one a
 * WAN can reach. The daemon also refuses an address of the breakout interface.
 */
export function webListenProblem(host: string): string | null {
  const ip = parseIp(host);
  if (ip === null) return `"${host}" is not an IP address`;
  const v4 = ip.family === 4 ? ip.w[3]! : null;
  if (v4 === 0 || (ip.family === 6 && ip.w.every((w) => w === 0))) return `${host} listens on every address, the WAN's too: use a LAN address (router) or 127.0.0.1 (laptop)`;
  const inNet = (net: string): boolean => cidrContains(parseCidr(net) as ParsedCidr, ip);
  const ok = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '::1/128', 'fc00::/7'].some(inNet);
  return ok ? null : `${host} is not a loopback or private LAN address (RFC 1918, fc00::/7): a WAN could reach it; the dashboard changes routing, so it only listens on the LAN or loopback`;
}
const RESERVED_NAMES = new Set(['breakout', 'tunnel', 'block', 'auto', 'default']);

/** What the loader needs from the outside world; tests pass fakes. */
export interface LoadDeps {
  readFile(path: string): Promise<string>;
  /** A list file as bytes: rule files are binary and never read as text. */
  readBytes(path: string): Promise<Uint8Array>;
  /** Mode bits and owner, or null when unknown: files others could rewrite are refused (config/file-trust.ts). */
  fileStat(path: string): Promise<FileOwnership | null>;
  /** The user splitwan runs as (the owner a file may have besides root). */
  uid: number;
  /** The last good download of a URL list, or null. */
  readListCache(source: ListSource, stateDir: string): Promise<{ bytes: Buffer; file: string } | null>;
}

export const nodeLoadDeps: LoadDeps = {
  readFile: (p) => fsp.readFile(p, 'utf8'),
  readBytes: (p) => fsp.readFile(p),
  fileStat: async (p) => {
    try {
      const st = await fsp.stat(p);
      return { mode: st.mode & 0o7777, uid: st.uid };
    } catch {
      return null;
    }
  },
  uid: process.geteuid?.() ?? 0,
  readListCache: async (source, stateDir) => {
    const entry = await new ListFetcher({ cacheDir: stateDir }).readCache(source.name);
    // A copy of another URL (the config changed) is not this list.
    if (!entry || entry.url !== source.url) return null;
    return { bytes: entry.bytes, file: listCacheFile(stateDir, source.name) };
  },
};

/** A parsed or decoded list without its entries (those are kept compact: lists/compact.ts). */
export type ListSummary = Omit<ParsedList, 'domains' | 'cidrs'> | Omit<DecodedList, 'domains' | 'cidrs'>;

/** A list as loaded: its entries, and where they came from. */
export interface LoadedList extends ListContent {
  source: ListSource;
  /** file: a list file; cache: the last good download; none: a URL list never downloaded. */
  origin: 'file' | 'cache' | 'none';
  /** What the parser or decoder said (format, problems...); its entries are `domains` and `cidrs`. */
  parsed: ListSummary | null;
  /** A `geodata` database (a geoip.dat or .mmdb without a selection): its bytes, which rules' geoip:/asn: select from. */
  database?: Uint8Array;
}

export interface LoadedConfig {
  config: Config;
  policy: Policy;
  lists: ReadonlyMap<string, LoadedList>;
  /** Warnings (errors throw). */
  warnings: readonly ConfigIssue[];
}

/**
 * Reads, validates and compiles a configuration. Throws ConfigError with every
 * issue found (not just the first) when the file cannot be used.
 */
export async function loadConfig(file: string, deps: LoadDeps = nodeLoadDeps): Promise<LoadedConfig> {
  const path = resolve(file);
  const sink = new IssueSink();
  const top: SourcePos = { file: path, line: 1, col: 1 };
  let text: string;
  try {
    text = await deps.readFile(path);
  } catch (e) {
    sink.error(ConfigCodes.FILE, top, '', `cannot read the config file: ${fsMessage(e)}`);
    throw new ConfigError(sink.issues);
  }
  const src = YamlSource.parse(path, text, sink);
  if (!src) throw new ConfigError(sink.issues);
  const data = src.toJS(sink);
  if (sink.hasErrors) throw new ConfigError(sink.issues);
  if (data === null || data === undefined) {
    sink.error(ConfigCodes.MISSING_KEY, top, '', 'the file is empty; it needs at least tunnel.gateways');
    throw new ConfigError(sink.issues);
  }
  if (typeof data !== 'object' || Array.isArray(data)) {
    sink.error(ConfigCodes.TYPE, src.pos([]), '', 'the file must be a mapping of keys (mode:, tunnel:, rules: ...)');
    throw new ConfigError(sink.issues);
  }
  const schemaOk = validateAgainstSchema(data, src, sink);
  // Go on after schema errors so one run reports every mistake (a missing
  // wg-quick file, an unknown gateway...), but drop what the schema already
  // said about the same keys; a crash on ill-typed data is no finding.
  const schemaIssues = sink.issues.length;
  const b = new Builder(path, src, data as Raw, deps, sink);
  let result: Awaited<ReturnType<Builder['build']>> = null;
  try {
    result = await b.build(text);
  } catch (e) {
    if (schemaOk) throw e;
  }
  if (!schemaOk) {
    // Document-level findings (a missing top-level key) hide nothing.
    const said = sink.issues.slice(0, schemaIssues).map((i) => i.keyPath).filter((k) => k !== '');
    const related = (k: string): boolean => said.some((s) => k === s || k.startsWith(s + '.') || k.startsWith(s + '['));
    const extra = sink.issues.splice(schemaIssues).filter((i) => !related(i.keyPath));
    sink.issues.push(...extra);
  }
  if (sink.hasErrors || !result) throw new ConfigError(sink.issues, b.referencedFiles);
  const policy = compilePolicy(result.config, result.lists);
  return { ...result, policy, warnings: sink.issues.filter((i) => i.severity === 'warning') };
}

/**
 * Recompiles the policy with fresh list contents (after a list download).
 * Throws ListFormatError when a new `geodata` database lacks what rules select.
 */
export function recompile(loaded: LoadedConfig, lists: ReadonlyMap<string, LoadedList>): LoadedConfig {
  const all = geodataLists(loaded.config, lists);
  return { ...loaded, lists: all, policy: compilePolicy(loaded.config, all) };
}

/**
 * Reads a list's content for the policy (rule files through their decoders,
 * text lists by their format); shared by the loader and the list refresher.
 * Throws ListFormatError (naming the list) when the content cannot be used.
 * A `geodata` database (`database`) keeps its bytes; rules select from them.
 */
export function toLoadedList(source: ListSource, body: Uint8Array | string | null, file: string, origin: LoadedList['origin'], database = false): LoadedList {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const base = { name: source.name, file, source, origin };
  if (bytes !== null && database) {
    const f = detectRuleFileFormat(bytes);
    if (f !== 'geoip' && f !== 'mmdb') throw new ListFormatError(source.name, f ?? 'unknown', `geodata names this list as a database, but it is ${f === null ? 'not a geoip.dat or .mmdb file' : `a ${f} file, not a geoip.dat or .mmdb`}`);
    return { ...base, parsed: null, database: bytes, domains: [], cidrs: [] };
  }
  const content = bytes === null ? null : readListContent(bytes, source);
  if (content === null) return { ...base, parsed: null, domains: [], cidrs: [] };
  // The entries are kept for the list's life (a refresh recompiles from every list): compact, not as parsed.
  const { domains, cidrs, ...parsed } = content;
  return { ...base, parsed, domains: new CompactDomains(domains), cidrs: new CompactCidrs(cidrs), ...('sections' in parsed && parsed.sections ? { sections: parsed.sections } : {}) };
}

type Raw = Record<string, unknown>;

function fsMessage(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') return 'no such file';
  if (err.code === 'EACCES') return 'permission denied';
  if (err.code === 'EISDIR') return 'is a directory';
  return err.message ?? String(e);
}

function asList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v.map(String) : [String(v)];
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

class Builder {
  private readonly dir: string;
  private readonly files = new Set<string>();
  get referencedFiles(): string[] {
    return [...this.files];
  }
  private readonly texts: (string | Uint8Array)[] = [];
  /** Gateways with interface or table, collected while tunnel.gateways is read. */
  private readonly unmanagedGateways: UnmanagedGatewayConfig[] = [];

  constructor(
    private readonly file: string,
    private readonly src: YamlSource,
    private readonly raw: Raw,
    private readonly deps: LoadDeps,
    private readonly sink: IssueSink,
  ) {
    this.dir = dirname(file);
    this.files.add(file);
  }

  private pos(path: KeySeg[]): SourcePos {
    return this.src.pos(path);
  }
  private err(code: Parameters<IssueSink['error']>[0], path: KeySeg[], message: string): void {
    this.sink.error(code, this.pos(path), keyPathString(path), message);
  }
  private warn(code: Parameters<IssueSink['warn']>[0], path: KeySeg[], message: string): void {
    this.sink.warn(code, this.pos(path), keyPathString(path), message);
  }
  private get(path: KeySeg[]): unknown {
    let cur: unknown = this.raw;
    for (const s of path) {
      if (cur === null || typeof cur !== 'object') return undefined;
      cur = (cur as Record<string, unknown>)[s as string];
    }
    return cur;
  }
  private rel(p: string): string {
    return isAbsolute(p) ? p : resolve(this.dir, p);
  }
  /** A duration within [min, max] (max defaults to what a timer can hold). */
  private duration(path: KeySeg[], def: string, min = '0ms', max = '24d'): number {
    const v = this.get(path);
    const ms = parseDuration(typeof v === 'string' ? v : def);
    if (ms === null) {
      this.err(ConfigCodes.DURATION, path, `"${String(v)}" is not a duration (use e.g. 500ms, 1s, 5m)`);
      return parseDuration(def)!;
    }
    const lo = parseDuration(min)!;
    const hi = Math.min(parseDuration(max)!, 2 ** 31 - 1);
    if (ms < lo || ms > hi) {
      this.err(ConfigCodes.DURATION, path, `${String(v)} is out of range (${min} to ${max})`);
      return parseDuration(def)!;
    }
    return ms;
  }

  private upstreams(path: KeySeg[], v: unknown): Upstream[] {
    const out: Upstream[] = [];
    asList(v).forEach((s, i) => {
      const u = parseUpstream(s);
      if ('error' in u) this.err(ConfigCodes.ADDRESS, [...path, i], u.error);
      else out.push(u);
    });
    return out;
  }

  async build(mainText: string): Promise<{ config: Config; lists: Map<string, LoadedList> } | null> {
    this.texts.push(mainText);
    await this.checkFile(this.file, [], null);
    const mode = (this.get(['mode']) as Config['mode'] | undefined) ?? 'router';
    const lan = asList(this.get(['lan']));
    if (mode === 'router' && lan.length === 0) {
      this.err(ConfigCodes.MISSING_KEY, this.get(['lan']) === undefined ? [] : ['lan'], 'router mode needs lan: the LAN interfaces to serve (or set mode: host)');
    }
    if (mode === 'host' && lan.length > 0) this.warn(ConfigCodes.VALUE, ['lan'], 'lan is ignored in host mode');

    const bdns = this.get(['breakout', 'dns']);
    const links = this.links(mode, lan);
    const breakout: Config['breakout'] = {
      interface: (this.get(['breakout', 'interface']) as string | undefined) ?? 'auto',
      dns: bdns === undefined || bdns === 'auto' ? 'auto' : this.upstreams(['breakout', 'dns'], bdns),
      ...(links.length > 0 ? { links, balance: (this.get(['breakout', 'balance']) as boolean | undefined) ?? false } : {}),
    };
    if (links.length > 0) {
      // The single-WAN keys, as the rest of the daemon reads them: the preferred link, every link's resolvers.
      breakout.interface = [...links].sort((a, b) => a.priority - b.priority)[0]!.interface;
      const listed = links.flatMap((l) => (l.dns === 'auto' ? [] : l.dns));
      breakout.dns = listed.length === 0 ? 'auto' : listed.filter((u, i) => listed.findIndex((x) => x.text === u.text) === i);
    } else if (this.get(['breakout', 'balance']) !== undefined) {
      this.warn(ConfigCodes.VALUE, ['breakout', 'balance'], 'balance applies to breakout.links only; with one WAN it does nothing');
    }
    const tdnsRaw = this.get(['tunnel', 'dns']);
    const tunnelDns = tdnsRaw === undefined ? null : this.upstreams(['tunnel', 'dns'], tdnsRaw);

    const health = {
      intervalMs: this.duration(['health', 'interval'], '1s', '100ms', '1h'),
      timeoutMs: this.duration(['health', 'timeout'], '1s', '50ms', '1m'),
      failAfter: (this.get(['health', 'failAfter']) as number | undefined) ?? 3,
      recoverAfter: (this.get(['health', 'recoverAfter']) as number | undefined) ?? 5,
      probe: this.probes(['health', 'probe']) ?? [{ kind: 'dns' as const }, { kind: 'handshake' as const }],
      window: (this.get(['health', 'window']) as number | undefined) ?? 30,
      degradeFactor: (this.get(['health', 'degradeFactor']) as number | undefined) ?? 3,
      failbackHoldMs: this.duration(['health', 'failbackHold'], '30s', '0ms', '1d'),
    };
    if (health.timeoutMs > health.intervalMs) {
      this.warn(ConfigCodes.VALUE, ['health', 'timeout'], 'a probe timeout longer than the interval delays failure detection');
    }

    const gateways = await this.gateways(tunnelDns);
    const lists = await this.lists();
    const dns = this.dns();
    const rules = this.rules(mode);
    const geodata = this.geodata(lists, rules);
    const def = this.via(['default'], this.get(['default']) ?? 'tunnel');
    const apps = this.apps(); // issue 16: per-app split

    const metricsListen = this.get(['metrics', 'listen']);
    let metrics: Config['metrics'] = { listen: null };
    if (typeof metricsListen === 'string') {
      const hp = parseHostPort(metricsListen);
      if ('error' in hp || !isIP(hp.host)) this.err(ConfigCodes.ADDRESS, ['metrics', 'listen'], 'error' in hp ? hp.error : `"${metricsListen}": use an IP address and port, e.g. 127.0.0.1:9464`);
      else metrics = { listen: hp };
    }
    const queryLog = this.queryLog(mode);
    const web = this.web();
    const socket = (this.get(['control', 'socket']) as string | undefined) ?? '/run/splitwan/control.sock';
    if (!isAbsolute(socket)) this.err(ConfigCodes.VALUE, ['control', 'socket'], 'the control socket must be an absolute path');
    const group = this.get(['control', 'group']) === undefined ? 'splitwan' : (this.get(['control', 'group']) as string | null);
    // A name as groupadd takes it, or a number: it is looked up in /etc/group at start.
    if (group !== null && !/^([a-z_][a-z0-9_-]{0,31}\$?|\d{1,10})$/.test(group)) this.err(ConfigCodes.VALUE, ['control', 'group'], `"${group}" is not a group name (lower case letters, digits, _ and -) or a group id`);

    const portal = this.portal(); // issue 16: captive portals
    const proxyRaw = (this.get(['proxy']) ?? {}) as Raw;
    const proxy: Config['proxy'] = {
      enabled: (proxyRaw.enabled as boolean | undefined) ?? false,
      ports: (proxyRaw.ports as number[] | undefined) ?? [80, 443],
      listenPort: (proxyRaw.listenPort as number | undefined) ?? 15001,
      peekTimeoutMs: this.duration(['proxy', 'peekTimeout'], '5s', '100ms', '1m'),
      idleTimeoutMs: this.duration(['proxy', 'idleTimeout'], '5m', '1s', '1d'),
      maxConnectionsPerClient: (proxyRaw.maxConnectionsPerClient as number | undefined) ?? 1024,
      blockQuic: (proxyRaw.blockQuic as boolean | undefined) ?? true,
    };

    if (this.sink.hasErrors) return null;
    const digest = createHash('sha256');
    for (const t of this.texts) digest.update(t).update('\0');
    const config: Config = {
      file: this.file,
      digest: digest.digest('hex'),
      mode,
      lan,
      breakout,
      tunnel: { killSwitch: (this.get(['tunnel', 'killSwitch']) as boolean | undefined) ?? true, allowLan: (this.get(['tunnel', 'allowLan']) as boolean | undefined) ?? true, dns: tunnelDns, gateways, ...(this.unmanagedGateways.length ? { unmanaged: this.unmanagedGateways } : {}) },
      health,
      dns,
      proxy,
      control: { socket, group },
      portal,
      metrics,
      queryLog,
      web,
      log: { level: (this.get(['log', 'level']) as Config['log']['level'] | undefined) ?? 'info' },
      stateDir: this.stateDir(),
      lists: [...lists.values()].map((l) => l.source),
      geodata: geodata.config,
      ...(this.get(['devices', 'files']) !== undefined ? { deviceFiles: asList(this.get(['devices', 'files'])).map((f) => this.rel(f)) } : {}),
      rules,
      default: def,
      ...(apps.length ? { apps } : {}),
      files: [...this.files],
    };
    return { config: deepFreeze(config), lists: geodata.lists };
  }

  /**
   * `geodata:` (the databases rules' geoip:/asn: select from) and the lists
   * of the countries and ASes the rules name; an unknown country or AS, or a
   * rule whose database is missing, is an error at the rule's entry.
   */
  private geodata(lists: Map<string, LoadedList>, rules: RuleConfig[]): { config: NonNullable<Config['geodata']>; lists: Map<string, LoadedList> } {
    const config = { country: null as string | null, asn: null as string | null };
    for (const kind of GEODATA_KINDS) {
      const v = this.get(['geodata', kind]);
      if (v === undefined) continue;
      const name = String(v);
      if (!lists.has(name)) {
        // A list that failed to load is reported there; only a name under no list is reported here.
        const declared = Object.keys((this.get(['lists']) as Raw | undefined) ?? {});
        if (!declared.includes(name)) {
          const hint = didYouMean(name, declared);
          this.err(ConfigCodes.REFERENCE, ['geodata', kind], `no list named "${name}" under lists${hint ? ` (did you mean "${hint}"?)` : ''}`);
        }
        continue;
      }
      config[kind] = name;
    }
    const declared = (kind: 'country' | 'asn'): boolean => this.get(['geodata', kind]) !== undefined;
    const raw = (this.get(['rules']) as Raw[] | undefined) ?? [];
    const at = (rule: number, key: 'geoip' | 'asn', item: number): KeySeg[] => (Array.isArray(raw[rule]?.[key]) ? ['rules', rule, key, item] : ['rules', rule, key]);
    for (const r of rules) {
      if ((r.geoip?.length ?? 0) > 0 && !declared('country')) this.err(ConfigCodes.REFERENCE, ['rules', r.index, 'geoip'], 'geoip: needs a country database: name a list (a geoip.dat or a country .mmdb) in geodata.country');
      if ((r.asns?.length ?? 0) > 0 && !declared('asn')) this.err(ConfigCodes.REFERENCE, ['rules', r.index, 'asn'], 'asn: needs an ASN database: name a list (an ASN .mmdb, e.g. GeoLite2-ASN) in geodata.asn');
    }
    const built = buildGeodataLists({ rules, geodata: config }, lists);
    for (const p of built.problems) this.err(ConfigCodes.LIST, at(p.rule, p.key === 'asns' ? 'asn' : 'geoip', p.item), p.error.message);
    return { config, lists: built.lists };
  }

  /** breakout.links: several WAN links (empty for the single-WAN form). */
  private links(mode: Config['mode'], lan: readonly string[]): LinkConfig[] {
    const raw = this.get(['breakout', 'links']) as Raw[] | undefined;
    if (raw === undefined) return [];
    for (const k of ['interface', 'dns'] as const) {
      if (this.get(['breakout', k]) !== undefined) this.err(ConfigCodes.VALUE, ['breakout', k], `use either breakout.${k} (one WAN) or breakout.links, not both: each link has its own interface and dns`);
    }
    const out: LinkConfig[] = [];
    const names = new Map<string, number>();
    const ifaces = new Map<string, number>();
    raw.forEach((l, i) => {
      const path: KeySeg[] = ['breakout', 'links', i];
      if (l === null || typeof l !== 'object') return;
      const name = String(l.name);
      if (RESERVED_NAMES.has(name.toLowerCase())) this.err(ConfigCodes.VALUE, [...path, 'name'], `"${name}" is reserved (breakout, tunnel, block, auto, default); choose another link name`);
      const prev = names.get(name.toLowerCase());
      if (prev !== undefined) this.err(ConfigCodes.DUPLICATE, [...path, 'name'], `link "${name}" is already defined at breakout.links[${prev}]`);
      names.set(name.toLowerCase(), i);
      const iface = String(l.interface);
      const prevIf = ifaces.get(iface);
      if (prevIf !== undefined) this.err(ConfigCodes.DUPLICATE, [...path, 'interface'], `interface ${iface} is already link breakout.links[${prevIf}]; one link per interface`);
      ifaces.set(iface, i);
      if (mode === 'router' && lan.includes(iface)) this.err(ConfigCodes.VALUE, [...path, 'interface'], `${iface} is a LAN interface (lan); a WAN link must be another one`);
      const gateway: string[] = [];
      const gws = asList(l.gateway);
      gws.forEach((g, j) => {
        const at: KeySeg[] = Array.isArray(l.gateway) ? [...path, 'gateway', j] : [...path, 'gateway'];
        const fam = isIP(g.trim());
        if (fam === 0) this.err(ConfigCodes.ADDRESS, at, `"${g}" is not an IP address (the link's next hop)`);
        else if (gateway.some((x) => isIP(x) === fam)) this.err(ConfigCodes.VALUE, at, `one next hop per family: ${gateway.find((x) => isIP(x) === fam)} is already this link's IPv${fam} gateway`);
        else gateway.push(g.trim());
      });
      const dnsRaw = l.dns;
      out.push({
        name,
        path: `link:${name}`,
        interface: iface,
        gateway,
        dns: dnsRaw === undefined || dnsRaw === 'auto' ? 'auto' : this.upstreams([...path, 'dns'], dnsRaw),
        priority: (l.priority as number | undefined) ?? 100,
        weight: (l.weight as number | undefined) ?? 1,
        metered: (l.metered as boolean | undefined) ?? false,
        pos: this.pos(path),
      });
      if (l.weight !== undefined && this.get(['breakout', 'balance']) !== true) this.warn(ConfigCodes.VALUE, [...path, 'weight'], 'weight applies with breakout.balance: true only');
    });
    if (out.length > 0 && out.every((l) => l.metered)) this.warn(ConfigCodes.VALUE, ['breakout', 'links'], 'every link is metered: unpinned breakout traffic uses them anyway (there is no other)');
    return out;
  }

  /** queryLog: (the query log, dns/query-log.ts). */
  private queryLog(mode: Config['mode']): Config['queryLog'] {
    const r = (this.get(['queryLog']) ?? {}) as Raw;
    const file = r.file as string | undefined;
    const names = r.clientNames === undefined ? DEFAULT_CLIENT_NAME_FILES : asList(r.clientNames).map((f) => this.rel(f));
    return {
      privacy: (r.privacy as Config['queryLog']['privacy'] | undefined) ?? 'full',
      // A router has 256 MB to 1 GB for years (issue 17): 2000 records there, a laptop keeps more.
      size: (r.size as number | undefined) ?? (mode === 'router' ? 2000 : 10_000),
      file: file === undefined ? null : { path: this.rel(file), maxBytes: (r.fileMaxSize as number | undefined) ?? 10 << 20, keep: (r.fileKeep as number | undefined) ?? 3 },
      clientNames: names,
    };
  }

  /** portal: (issue 16, daemon/portal/): the probe URL must be plain HTTP (a portal answers it; TLS would only fail). */
  private portal(): PortalConfig {
    const r = (this.get(['portal']) ?? {}) as Raw;
    const probeUrl = (r.probeUrl as string | undefined) ?? DEFAULT_PORTAL_PROBE;
    let url: URL | null = null;
    try {
      url = new URL(probeUrl);
    } catch {
      /* said below */
    }
    if (url === null || url.protocol !== 'http:' || url.username !== '' || url.password !== '') {
      this.err(ConfigCodes.VALUE, ['portal', 'probeUrl'], `"${probeUrl}": use a plain http:// URL that answers 204 (e.g. ${DEFAULT_PORTAL_PROBE}): a portal intercepts plain HTTP, TLS would only fail`);
    }
    return {
      enabled: (r.enabled as boolean | undefined) ?? true,
      probeUrl,
      openForMs: this.duration(['portal', 'openFor'], '5m', '5s', '1h'),
      intervalMs: this.duration(['portal', 'interval'], '30s', '1s', '1h'),
    };
  }

  /** web: (the dashboard, daemon/web/). Refuses addresses a WAN could reach: checked here, before anything listens. */
  private web(): Config['web'] {
    const r = (this.get(['web']) ?? {}) as Raw;
    let listen: Config['web']['listen'] = null;
    if (typeof r.listen === 'string') {
      const hp = parseHostPort(r.listen);
      if ('error' in hp || !isIP(hp.host)) this.err(ConfigCodes.ADDRESS, ['web', 'listen'], 'error' in hp ? hp.error : `"${r.listen}": use an IP address and port, e.g. 192.168.1.1:8080 or 127.0.0.1:8080`);
      else {
        const problem = webListenProblem(hp.host);
        if (problem !== null) this.err(ConfigCodes.ADDRESS, ['web', 'listen'], problem);
        else listen = hp;
      }
    }
    const hash = r.passwordHash as string | undefined;
    if (hash !== undefined && !/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(hash)) {
      this.err(ConfigCodes.VALUE, ['web', 'passwordHash'], 'not a hash made by `splitwan web passwd` (scrypt$N$r$p$salt$hash)');
    }
    if (listen !== null && hash === undefined) this.warn(ConfigCodes.VALUE, ['web'], 'web.listen is set but no web.passwordHash: nobody can log in (set one with: splitwan web passwd)');
    const tls = r.tls as { cert?: string; key?: string } | undefined;
    return {
      listen,
      passwordHash: hash ?? null,
      publicRead: (r.publicRead as boolean | undefined) ?? false,
      tls: tls?.cert !== undefined && tls.key !== undefined ? { cert: this.rel(tls.cert), key: this.rel(tls.key) } : null,
    };
  }

  private stateDir(): string {
    return this.rel((this.get(['stateDir']) as string | undefined) ?? '/var/lib/splitwan');
  }

  private probes(path: KeySeg[]): ProbeSpec[] | null {
    const v = this.get(path);
    if (v === undefined) return null;
    const items = Array.isArray(v) ? v : [v];
    const out: ProbeSpec[] = [];
    items.forEach((item, i) => {
      const p = Array.isArray(v) ? [...path, i] : path;
      const spec: ProbeSpec = typeof item === 'string' ? { kind: item as ProbeSpec['kind'] } : { ...(item as ProbeSpec) };
      if (spec.kind === 'http') {
        let url: URL | null = null;
        try {
          url = new URL(spec.url ?? '');
        } catch {
          url = null;
        }
        // Probes dial through the gateway's tunnel by address (no resolver is asked for a probe).
        if (url === null || !/^https?:$/.test(url.protocol)) this.err(ConfigCodes.VALUE, p, 'an http probe needs url: an http:// or https:// URL');
        else if (!isIP(url.hostname.replace(/^\[|\]$/g, ''))) this.err(ConfigCodes.ADDRESS, p, `an http probe's URL names its server by IP address (it is dialled through the tunnel, with no lookup), e.g. http://192.0.2.10/generate_204`);
      } else if (spec.kind === 'tcp') {
        const hp = parseHostPort(spec.target ?? '');
        if (!spec.target || 'error' in hp) this.err(ConfigCodes.ADDRESS, p, 'a tcp probe needs target: host:port');
        else if (!isIP(hp.host)) this.err(ConfigCodes.ADDRESS, p, 'a tcp probe\'s target is an IP address and port (it is dialled through the tunnel, with no lookup)');
      } else if (spec.kind === 'icmp') {
        if (!spec.target || !isIP(spec.target)) this.err(ConfigCodes.ADDRESS, p, 'an icmp probe needs target: an IP address');
      }
      out.push(spec);
    });
    return out;
  }

  private async gateways(tunnelDns: Upstream[] | null): Promise<GatewayConfig[]> {
    const raw = (this.get(['tunnel', 'gateways']) as Raw[] | undefined) ?? [];
    const out: GatewayConfig[] = [];
    const seen = new Map<string, number>();
    for (let i = 0; i < raw.length; i++) {
      const g = raw[i]!;
      const path: KeySeg[] = ['tunnel', 'gateways', i];
      const name = String(g.name);
      if (RESERVED_NAMES.has(name.toLowerCase())) {
        this.err(ConfigCodes.VALUE, [...path, 'name'], `"${name}" is reserved (breakout, tunnel, block, auto, default); choose another gateway name`);
      }
      const prev = seen.get(name.toLowerCase());
      if (prev !== undefined) {
        this.err(ConfigCodes.DUPLICATE, [...path, 'name'], `gateway "${name}" is already defined at tunnel.gateways[${prev}]`);
      }
      seen.set(name.toLowerCase(), i);
      const link = this.linkNamed(name);
      if (link !== null) this.err(ConfigCodes.DUPLICATE, [...path, 'name'], `"${name}" is already a WAN link at breakout.links[${link}]; a rule's via must name one path`);
      if (g.interface !== undefined || g.table !== undefined) {
        const un = this.unmanaged(g, path, name, tunnelDns, i);
        if (un) this.unmanagedGateways.push(un);
        continue;
      }
      const wg = await this.wireguard(g, path);
      if (!wg) continue;
      // Problems with a wg-quick file's content point into that file, at its [Interface].
      const fromFile = g.config !== undefined;
      const wgErr = (code: Parameters<IssueSink['error']>[0], message: string): void =>
        fromFile ? this.sink.error(code, wg.source, 'Interface', message) : this.err(code, path, message);
      if (wg.addresses.length === 0) wgErr(ConfigCodes.MISSING_KEY, `gateway "${name}" has no tunnel address (Address=)`);
      if (wg.peers.length !== 1) {
        wgErr(ConfigCodes.WGQUICK, `gateway "${name}" must have exactly one [Peer] (it has ${wg.peers.length}); define one gateway per server`);
      } else if (!wg.peers[0]!.endpoint) {
        wgErr(ConfigCodes.MISSING_KEY, `gateway "${name}" has no peer Endpoint; splitwan dials its gateways`);
      }
      const dns = tunnelDns ?? this.gatewayDns(wg, path);
      if (dns.length === 0 && !(tunnelDns !== null && asList(this.get(['tunnel', 'dns'])).length > 0)) {
        this.err(ConfigCodes.MISSING_KEY, path, `gateway "${name}" has no resolver: set DNS= in its wg-quick file or tunnel.dns`);
      }
      out.push({
        name,
        path: `gw:${name}`,
        ifname: `swg-${name}`,
        priority: (g.priority as number | undefined) ?? 100,
        wireguard: wg,
        dns,
        probe: this.probes([...path, 'probe']),
        pos: this.pos(path),
      });
    }
    return out;
  }

  /** The index of the link named `name` (any case) in breakout.links, or null. */
  private linkNamed(name: string): number | null {
    const raw = this.get(['breakout', 'links']);
    if (!Array.isArray(raw)) return null;
    const i = raw.findIndex((l: unknown) => l !== null && typeof l === 'object' && String((l as Raw).name).toLowerCase() === name.toLowerCase());
    return i < 0 ? null : i;
  }

  /**
   * A gateway another program made: an interface (AmneziaWG, OpenVPN...) or
   * a routing table (Tailscale's 52). splitwan never creates, configures or
   * removes it, so nothing of WireGuard's may be set here.
   */
  private unmanaged(g: Raw, path: KeySeg[], name: string, tunnelDns: Upstream[] | null, index: number): UnmanagedGatewayConfig | null {
    const errorsBefore = this.sink.issues.filter((i) => i.severity === 'error').length;
    if (g.interface !== undefined && g.table !== undefined) this.err(ConfigCodes.VALUE, [...path, 'table'], 'use either interface or table, not both');
    const managedKeys = ['config', 'privateKey', 'privateKeyFile', 'address', 'mtu', 'peer'].filter((k) => g[k] !== undefined);
    if (managedKeys.length > 0) {
      this.err(ConfigCodes.VALUE, [...path, managedKeys[0]!], `${managedKeys[0]} configures a WireGuard tunnel splitwan runs; a gateway with ${g.interface !== undefined ? 'interface' : 'table'} is made by another program (drop one of them)`);
    }
    const kind: UnmanagedGatewayConfig['kind'] = g.interface !== undefined ? 'interface' : 'table';
    const ifname = kind === 'interface' ? String(g.interface) : '';
    if (kind === 'interface') {
      if (ifname.startsWith('swg-')) this.err(ConfigCodes.VALUE, [...path, 'interface'], `${ifname}: names starting with swg- are splitwan's own tunnels (removed at start); rename the interface`);
      const lan = asList(this.get(['lan']));
      if (lan.includes(ifname)) this.err(ConfigCodes.VALUE, [...path, 'interface'], `${ifname} is a LAN interface (lan)`);
      const links = (this.get(['breakout', 'links']) as Raw[] | undefined) ?? [];
      const wan = [this.get(['breakout', 'interface']), ...(Array.isArray(links) ? links.map((l) => l?.interface) : [])];
      if (wan.includes(ifname)) this.err(ConfigCodes.VALUE, [...path, 'interface'], `${ifname} is a WAN interface (breakout); a gateway is a tunnel`);
    }
    let table: number | null = null;
    if (kind === 'table') {
      table = Number(g.table);
      // main/default/local, and the tables splitwan fills itself.
      if ([253, 254, 255].includes(table) || (table >= 1100 && table <= 1113) || (table >= 1200 && table <= 1208)) {
        this.err(ConfigCodes.VALUE, [...path, 'table'], `table ${table} is ${table >= 253 && table <= 255 ? "the kernel's own (default, main, local)" : "one of splitwan's (1100-1113, 1200-1208)"}; name the table the other program fills`);
      }
    }
    const dns = g.dns !== undefined ? this.upstreams(Array.isArray(g.dns) ? [...path, 'dns'] : [...path, 'dns'], g.dns) : (tunnelDns ?? []);
    if (dns.length === 0 && g.dns === undefined) this.err(ConfigCodes.MISSING_KEY, path, `gateway "${name}" has no resolver: set dns (the resolvers reached through ${kind === 'interface' ? ifname : `table ${String(g.table)}`}) or tunnel.dns`);
    if (this.sink.issues.filter((i) => i.severity === 'error').length > errorsBefore) return null;
    return {
      name,
      path: `gw:${name}`,
      kind,
      ifname,
      table,
      priority: (g.priority as number | undefined) ?? 100,
      dns,
      probe: this.probes([...path, 'probe']),
      index,
      pos: this.pos(path),
    };
  }

  private gatewayDns(wg: WireGuardInterface, path: KeySeg[]): Upstream[] {
    const out: Upstream[] = [];
    for (const d of wg.dns) {
      const u = parseUpstream(d);
      if ('error' in u) this.err(ConfigCodes.ADDRESS, path, `DNS ${u.error}`);
      else out.push(u);
    }
    return out;
  }

  private async wireguard(g: Raw, path: KeySeg[]): Promise<WireGuardInterface | null> {
    const inlineKeys = ['privateKey', 'privateKeyFile', 'address', 'dns', 'mtu', 'peer'].filter((k) => g[k] !== undefined);
    if (g.config !== undefined) {
      if (inlineKeys.length > 0) {
        this.err(ConfigCodes.VALUE, [...path, inlineKeys[0]!], `use either config (a wg-quick file) or inline keys, not both`);
        return null;
      }
      const file = this.rel(String(g.config));
      this.files.add(file);
      let text: string;
      try {
        text = await this.deps.readFile(file);
      } catch (e) {
        this.err(ConfigCodes.FILE, [...path, 'config'], `cannot read ${file}: ${fsMessage(e)}`);
        return null;
      }
      this.texts.push(text);
      await this.checkFile(file, [...path, 'config'], 'this wg-quick file holds a private key');
      return parseWgQuick(text, file, this.sink);
    }
    if (inlineKeys.length === 0) {
      this.err(ConfigCodes.MISSING_KEY, path, 'a gateway needs config (a wg-quick file) or inline privateKey, address and peer');
      return null;
    }
    const errorsBefore = this.sink.issues.filter((i) => i.severity === 'error').length;
    let privateKey = g.privateKey as string | undefined;
    if (g.privateKeyFile !== undefined) {
      if (privateKey !== undefined) {
        this.err(ConfigCodes.VALUE, [...path, 'privateKeyFile'], 'use privateKey or privateKeyFile, not both');
        return null;
      }
      const file = this.rel(String(g.privateKeyFile));
      this.files.add(file);
      try {
        privateKey = (await this.deps.readFile(file)).trim();
        this.texts.push(privateKey);
      } catch (e) {
        this.err(ConfigCodes.FILE, [...path, 'privateKeyFile'], `cannot read ${file}: ${fsMessage(e)}`);
        return null;
      }
      await this.checkFile(file, [...path, 'privateKeyFile'], 'this file holds a private key');
    } else if (privateKey !== undefined) {
      // Who may write the config itself is checked once, at its top.
      await this.checkFile(this.file, [...path, 'privateKey'], 'this file holds a private key inline', false);
    }
    if (privateKey === undefined) {
      this.err(ConfigCodes.MISSING_KEY, path, 'missing privateKey (or privateKeyFile)');
      return null;
    }
    const keyAt: KeySeg[] = [...path, g.privateKeyFile !== undefined ? 'privateKeyFile' : 'privateKey'];
    if (!isWireGuardKey(privateKey)) this.err(ConfigCodes.KEY, keyAt, `is not a WireGuard key (${keyProblem(privateKey)})`);
    const addresses: string[] = [];
    asList(g.address).forEach((a, j) => {
      // An interface address keeps its host bits (10.64.0.2/32), unlike a route.
      const c = parseCidr(a);
      if ('error' in c) this.err(ConfigCodes.ADDRESS, Array.isArray(g.address) ? [...path, 'address', j] : [...path, 'address'], c.error);
      else addresses.push(a.includes('/') ? a.trim() : `${a.trim()}/${c.prefix}`);
    });
    const peerRaw = g.peer as Raw | undefined;
    const peers: WireGuardInterface['peers'] = [];
    if (!peerRaw) this.err(ConfigCodes.MISSING_KEY, path, 'missing peer: { publicKey, endpoint }');
    else {
      const pp: KeySeg[] = [...path, 'peer'];
      const publicKey = String(peerRaw.publicKey);
      // Never echo it: a private key pasted here by mistake must not reach a terminal or a log.
      if (!isWireGuardKey(publicKey)) this.err(ConfigCodes.KEY, [...pp, 'publicKey'], `is not a WireGuard key (${keyProblem(publicKey)})`);
      const presharedKey = peerRaw.presharedKey as string | undefined;
      if (presharedKey !== undefined && !isWireGuardKey(presharedKey)) {
        this.err(ConfigCodes.KEY, [...pp, 'presharedKey'], `is not a WireGuard key (${keyProblem(presharedKey)})`);
      }
      let ep = parseHostPort(String(peerRaw.endpoint));
      if (!('error' in ep) && !isIP(ep.host) && 'error' in normalizeDomain(ep.host)) {
        ep = { error: `"${String(peerRaw.endpoint)}": "${ep.host}" is neither an IP address nor a host name` };
      }
      if ('error' in ep) this.err(ConfigCodes.ADDRESS, [...pp, 'endpoint'], ep.error);
      const allowed = peerRaw.allowedIPs === undefined ? ['0.0.0.0/0', '::/0'] : asList(peerRaw.allowedIPs);
      const allowedIPs: string[] = [];
      allowed.forEach((a, j) => {
        const c = parseCidr(a);
        if ('error' in c) this.err(ConfigCodes.ADDRESS, Array.isArray(peerRaw.allowedIPs) ? [...pp, 'allowedIPs', j] : [...pp, 'allowedIPs'], c.error);
        else allowedIPs.push(c.text);
      });
      peers.push({
        publicKey,
        ...(presharedKey !== undefined ? { presharedKey } : {}),
        ...('error' in ep ? {} : { endpoint: ep }),
        allowedIPs,
        ...(peerRaw.persistentKeepalive !== undefined ? { persistentKeepalive: peerRaw.persistentKeepalive as number } : {}),
      });
    }
    const dns = asList(g.dns);
    dns.forEach((d, j) => {
      const u = parseUpstream(d);
      if ('error' in u) this.err(ConfigCodes.ADDRESS, Array.isArray(g.dns) ? [...path, 'dns', j] : [...path, 'dns'], u.error);
    });
    // A gateway with errors goes no further, so one mistake is not reported twice.
    if (this.sink.issues.filter((i) => i.severity === 'error').length > errorsBefore) return null;
    return {
      privateKey,
      addresses,
      dns,
      ...(g.mtu !== undefined ? { mtu: g.mtu as number } : {}),
      peers,
      source: this.pos(path),
    };
  }

  /**
   * Refuses a file another user could rewrite; warns when a file holding a
   * secret (`secret`: why it matters) is readable by others. `writers`: false
   * when only readability is in question here (the config file, whose writers
   * are checked at its top).
   */
  private async checkFile(file: string, path: KeySeg[], secret: string | null, writers = true): Promise<void> {
    const st = await this.deps.fileStat(file);
    if (st === null) return;
    for (const p of fileTrustProblems(file, st, this.deps.uid, secret)) {
      if (p.severity === 'error') {
        if (writers) this.err(ConfigCodes.PERMISSIONS, path, p.message);
      } else this.warn(ConfigCodes.PERMISSIONS, path, p.message);
    }
  }

  private async lists(): Promise<Map<string, LoadedList>> {
    const raw = (this.get(['lists']) as Record<string, Raw> | undefined) ?? {};
    const out = new Map<string, LoadedList>();
    // Lists `geodata` names are databases: rules' geoip:/asn: select from them.
    const databases = new Set(GEODATA_KINDS.map((k) => this.get(['geodata', k])).filter((v): v is string => typeof v === 'string'));
    for (const [name, l] of Object.entries(raw)) {
      const path: KeySeg[] = ['lists', name];
      const isDatabase = databases.has(name);
      // A rule file that cannot be used (corrupt, another format, an unknown category) is an error at the list.
      const content = (make: () => LoadedList, at: KeySeg[]): LoadedList | null => {
        try {
          return make();
        } catch (e) {
          if (!(e instanceof ListFormatError)) throw e;
          // A selection the file does not have is reported at the selection (category:, country:, asn:).
          const key = /category/.test(e.detail) ? 'category' : /country/.test(e.detail) ? 'country' : /\bASN\b/.test(e.detail) ? 'asn' : null;
          this.err(ConfigCodes.LIST, key !== null && l[key] !== undefined ? [...path, key] : at, e.message);
          return null;
        }
      };
      const hasFile = l.file !== undefined;
      const hasUrl = l.url !== undefined;
      if (hasFile === hasUrl) {
        this.err(hasFile ? ConfigCodes.VALUE : ConfigCodes.MISSING_KEY, path, 'a list needs exactly one of file or url');
        continue;
      }
      const source: ListSource = {
        name,
        format: (l.format as ListFormat | undefined) ?? 'auto',
        maxBytes: (l.maxSize as number | undefined) ?? 32 * 1024 * 1024,
        timeoutMs: this.duration([...path, 'timeout'], '30s', '1s', '1h'),
        pos: this.pos(path),
      };
      const select = this.listSelection(l, path);
      if (select === false) continue;
      if (select) {
        if (isDatabase) {
          this.err(ConfigCodes.VALUE, path, `list "${name}" is a geodata database: rules select from it with geoip:/asn:, so it takes no category, country or asn`);
          continue;
        }
        source.select = select;
      }
      if (hasUrl) {
        const url = String(l.url);
        let ok = false;
        try {
          ok = /^https?:$/.test(new URL(url).protocol);
        } catch {
          ok = false;
        }
        if (!ok) {
          this.err(ConfigCodes.ADDRESS, [...path, 'url'], `"${redactUrl(url)}" is not an http:// or https:// URL`);
          continue;
        }
        const pin = typeof l.sha256 === 'string' ? l.sha256.toLowerCase() : undefined;
        // A list decides routing: fetched in the clear, anyone on the way could rewrite it.
        if (pin === undefined && new URL(url).protocol !== 'https:') {
          this.err(
            ConfigCodes.INSECURE,
            [...path, 'url'],
            `"${redactUrl(url)}" is plain http: anyone on the network path could rewrite this list, and with it your routing; use an https:// URL, or pin the content with sha256: (the output of sha256sum on the file)`,
          );
          continue;
        }
        source.url = url;
        if (pin !== undefined) source.sha256 = pin;
        source.refresh = (l.refresh as string | undefined) ?? '0 4 * * *';
        if (!cron.validate(source.refresh)) {
          this.err(ConfigCodes.CRON, [...path, 'refresh'], `"${source.refresh}" is not a cron expression (e.g. "0 4 * * *": daily at 04:00)`);
        }
        const found = await this.deps.readListCache(source, this.stateDir());
        // A copy that is not the pinned content (downloaded before the pin, or for another pin) is not this list.
        const cached = found && matchesPin(found.bytes, pin) ? found : null;
        const loaded = content(() => (cached ? toLoadedList(source, cached.bytes, cached.file, 'cache', isDatabase) : toLoadedList(source, null, url, 'none', isDatabase)), path);
        if (!loaded) continue;
        out.set(name, loaded);
        if (found && !cached) this.warn(ConfigCodes.LIST, [...path, 'sha256'], `the cached copy of list "${name}" does not match its sha256 pin; the list matches nothing until a download does`);
        else if (!cached) this.warn(ConfigCodes.LIST, path, `list "${name}" has not been downloaded yet; its rules match nothing until the daemon fetches it`);
        continue;
      }
      if (l.refresh !== undefined) this.warn(ConfigCodes.VALUE, [...path, 'refresh'], 'refresh applies to url lists only; a file list is re-read on reload');
      if (l.sha256 !== undefined) this.warn(ConfigCodes.VALUE, [...path, 'sha256'], 'sha256 pins a url list\'s download; a file list is read as it is');
      const file = this.rel(String(l.file));
      source.file = file;
      this.files.add(file);
      let bytes: Uint8Array;
      try {
        bytes = await this.deps.readBytes(file);
      } catch (e) {
        this.err(ConfigCodes.FILE, [...path, 'file'], `cannot read ${file}: ${fsMessage(e)}`);
        continue;
      }
      this.texts.push(bytes);
      await this.checkFile(file, [...path, 'file'], null);
      const loaded = content(() => toLoadedList(source, bytes, file, 'file', isDatabase), [...path, 'file']);
      if (!loaded) continue;
      const binary = loaded.parsed !== null && !isTextContent(loaded.parsed);
      for (const p of loaded.parsed?.problems ?? []) {
        // A binary file has no lines: its problems are at the list, numbered by entry.
        if (binary) this.warn(ConfigCodes.LIST, [...path, 'file'], `list "${name}": ${p.line > 0 ? `entry ${p.line}: ` : ''}${p.message} (skipped)`);
        else this.sink.warn(ConfigCodes.LIST, { file, line: p.line, col: p.col }, `lists.${name}`, `${p.message} (line skipped)`);
      }
      out.set(name, loaded);
    }
    return out;
  }

  /**
   * `category:` (geosite.dat), `country:` (geoip.dat, country .mmdb) and
   * `asn:` (ASN .mmdb): undefined when none is given, false after an error.
   */
  private listSelection(l: Raw, path: KeySeg[]): ListSelection | undefined | false {
    const out: ListSelection = {};
    let ok = true;
    const items = (key: string): { v: string; at: KeySeg[] }[] =>
      asList(l[key]).map((v, j) => ({ v: v.trim(), at: Array.isArray(l[key]) ? [...path, key, j] : [...path, key] }));
    const categories = items('category');
    for (const c of categories) {
      if (c.v === '' || c.v.startsWith('@')) {
        this.err(ConfigCodes.VALUE, c.at, `"${c.v}" names no category (e.g. "netflix", "google@cn", "netflix@!cn")`);
        ok = false;
      }
    }
    if (categories.length) out.categories = categories.map((c) => c.v);
    const countries = items('country');
    for (const c of countries) {
      if (!/^!?[A-Za-z][A-Za-z0-9_-]{1,31}$/.test(c.v)) {
        this.err(ConfigCodes.VALUE, c.at, `"${c.v}" is not a country code (e.g. RU, cn, "!cn", private)`);
        ok = false;
      }
    }
    if (countries.length) out.countries = countries.map((c) => c.v);
    const asns = items('asn').map((a) => ({ ...a, n: parseAsn(a.v) }));
    for (const a of asns) {
      if (a.n === null) {
        this.err(ConfigCodes.VALUE, a.at, `"${a.v}" is not an AS number (e.g. 13335 or AS13335)`);
        ok = false;
      }
    }
    if (asns.length) out.asns = asns.map((a) => a.n!);
    if (!ok) return false;
    return categories.length + countries.length + asns.length > 0 ? out : undefined;
  }

  private dns(): Config['dns'] {
    const listenRaw = this.get(['dns', 'listen']) as string[] | undefined;
    let listen: Config['dns']['listen'] = 'auto';
    if (listenRaw !== undefined) {
      listen = [];
      listenRaw.forEach((l, i) => {
        const hp = parseHostPort(l, 53);
        if ('error' in hp) this.err(ConfigCodes.ADDRESS, ['dns', 'listen', i], hp.error);
        else if (!isIP(hp.host)) this.err(ConfigCodes.ADDRESS, ['dns', 'listen', i], `"${l}": listen on an IP address, not a name`);
        else (listen as { host: string; port: number }[]).push(hp);
      });
    }
    const dohLists = asList(this.get(['dns', 'dohLists']));
    const listNames = Object.keys((this.get(['lists']) as Raw | undefined) ?? {});
    dohLists.forEach((n, i) => {
      if (!listNames.includes(n)) {
        const hint = didYouMean(n, listNames);
        this.err(ConfigCodes.REFERENCE, ['dns', 'dohLists', i], `no list named "${n}" under lists${hint ? ` (did you mean "${hint}"?)` : ''}`);
      }
    });
    const c = (this.get(['dns', 'cache']) ?? {}) as Raw;
    const cache = {
      size: (c.size as number | undefined) ?? 10000,
      minTtl: (c.minTtl as number | undefined) ?? 0,
      maxTtl: (c.maxTtl as number | undefined) ?? 86400,
      negativeTtl: (c.negativeTtl as number | undefined) ?? 900,
      serveStale: (c.serveStale as boolean | undefined) ?? false,
      staleTtl: (c.staleTtl as number | undefined) ?? 86400,
    };
    if (cache.minTtl > cache.maxTtl) this.err(ConfigCodes.VALUE, ['dns', 'cache', 'minTtl'], `minTtl (${cache.minTtl}) is above maxTtl (${cache.maxTtl})`);
    return {
      listen,
      timeoutMs: this.duration(['dns', 'timeout'], '2s', '50ms', '1m'),
      tagTtlMs: this.duration(['dns', 'tagTtl'], '10m', '1s', '7d'),
      blockEncryptedDns: (this.get(['dns', 'blockEncryptedDns']) as boolean | undefined) ?? false,
      dohLists,
      blockAnswer: (this.get(['dns', 'blockAnswer']) as 'null' | 'nxdomain' | undefined) ?? 'null',
      cache,
    };
  }

  private via(path: KeySeg[], v: unknown): Target[] {
    const items = Array.isArray(v) ? v.map(String) : [String(v)];
    const out: Target[] = [];
    // Names as declared, so a gateway whose file failed to load is not also "unknown" here.
    const declared = ((this.get(['tunnel', 'gateways']) as Raw[] | undefined) ?? []).map((g) => String(g?.name));
    const names = new Map(declared.map((n) => [n.toLowerCase(), n]));
    const linksRaw = this.get(['breakout', 'links']);
    const links = new Map((Array.isArray(linksRaw) ? linksRaw : []).map((l: unknown) => String((l as Raw | null)?.name)).map((n) => [n.toLowerCase(), n]));
    items.forEach((t, i) => {
      const p = Array.isArray(v) ? [...path, i] : path;
      const lower = t.toLowerCase();
      let target: Target | null = null;
      if (lower === 'breakout' || lower === 'tunnel' || lower === 'block') target = lower;
      else if (names.has(lower)) target = `gw:${names.get(lower)!}`;
      else if (links.has(lower)) target = `link:${links.get(lower)!}`;
      if (!target) {
        const hint = didYouMean(t, ['breakout', 'tunnel', 'block', ...names.values(), ...links.values()]);
        this.err(ConfigCodes.REFERENCE, p, `"${t}" is not breakout, tunnel, block${links.size ? ', a gateway or a link' : ' or a gateway'} name${hint ? ` (did you mean "${hint}"?)` : ''}`);
        return;
      }
      if (out.includes(target)) this.warn(ConfigCodes.DUPLICATE, p, `"${t}" is listed twice`);
      else if (out.includes('block')) this.warn(ConfigCodes.VALUE, p, `"${t}" comes after block, which is always usable: it is never used`);
      else out.push(target);
    });
    return out;
  }

  /** `apps:` (issue 16): each entry an exe or a cgroup pattern, and one path that is not block. */
  private apps(): AppConfig[] {
    const raw = this.get(['apps']);
    if (!Array.isArray(raw)) return [];
    const out: AppConfig[] = [];
    raw.forEach((a: Raw | null, i) => {
      const path: KeySeg[] = ['apps', i];
      if (a === null || typeof a !== 'object') return; // the schema said so
      const exe = typeof a.exe === 'string' ? a.exe : null;
      const cgroup = typeof a.cgroup === 'string' ? a.cgroup : null;
      if ((exe === null) === (cgroup === null)) return this.err(ConfigCodes.VALUE, path, 'an app entry names either exe: (an executable) or cgroup: (a cgroup pattern), one of them');
      if (exe !== null && (!isAbsolute(exe) || exe.includes('\0'))) return this.err(ConfigCodes.VALUE, [...path, 'exe'], `"${exe}" is not an absolute path (as /proc/PID/exe shows it, e.g. /usr/bin/firefox)`);
      if (cgroup !== null) {
        const problem = cgroupPatternProblem(cgroup);
        if (problem) return this.err(ConfigCodes.VALUE, [...path, 'cgroup'], problem);
      }
      if (a.via === undefined) return;
      if (Array.isArray(a.via)) return this.err(ConfigCodes.VALUE, [...path, 'via'], 'an app takes one path, not a list');
      const via = this.via([...path, 'via'], a.via)[0];
      if (via === undefined) return;
      if (via === 'block') return this.err(ConfigCodes.VALUE, [...path, 'via'], 'an app takes breakout, tunnel, a gateway or a link (block is for rules)');
      out.push({ index: i, exe, cgroup: cgroup === null ? null : cgroup.replace(/^\/+|\/+$/g, ''), via, pos: this.pos(path) });
    });
    return out;
  }

  private rules(mode: Config['mode']): RuleConfig[] {
    const raw = (this.get(['rules']) as Raw[] | undefined) ?? [];
    const listNames = Object.keys((this.get(['lists']) as Raw | undefined) ?? {});
    return raw.map((r, i) => {
      const path: KeySeg[] = ['rules', i];
      const rule: RuleConfig = {
        index: i,
        domains: [],
        cidrs: [],
        sources: [],
        lists: [],
        via: this.via([...path, 'via'], r.via),
        label: '',
        pos: this.pos(path),
      };
      if (MATCHER_KEYS.every((k) => r[k] === undefined)) {
        this.err(ConfigCodes.MISSING_KEY, path, 'a rule needs domains, cidrs, sources, list, ports, protocol, geoip, asn or devices');
      }
      asList(r.domains).forEach((d, j) => {
        const kp: KeySeg[] = [...path, 'domains', j];
        const parsed = parseDomainPattern(d);
        if ('error' in parsed) {
          this.err(parsed.error.startsWith('bad regular') ? ConfigCodes.REGEXP : ConfigCodes.DOMAIN, kp, parsed.error);
        } else {
          if (parsed.pattern.kind === 'regexp' && hasUpperCaseLiteral(parsed.pattern.value)) {
            this.warn(ConfigCodes.REGEXP, kp, 'names are matched in lower case: upper-case letters in this expression never match');
          }
          rule.domains.push({ pattern: parsed.pattern, origin: { keyPath: keyPathString(kp), pos: this.pos(kp) } });
        }
      });
      for (const key of ['cidrs', 'sources'] as const) {
        asList(r[key]).forEach((c, j) => {
          const kp: KeySeg[] = [...path, key, j];
          const parsed = parseCidr(c);
          if ('error' in parsed) this.err(ConfigCodes.ADDRESS, kp, parsed.error);
          else rule[key].push({ cidr: parsed.text, origin: { keyPath: keyPathString(kp), pos: this.pos(kp) } });
        });
      }
      if (rule.sources.length > 0 && mode === 'host') {
        this.warn(ConfigCodes.VALUE, [...path, 'sources'], 'sources match LAN clients; in host mode there are none, so this rule never matches');
      }
      const listPathOf = (j: number): KeySeg[] => (Array.isArray(r.list) ? [...path, 'list', j] : [...path, 'list']);
      asList(r.list).forEach((n, j) => {
        if (!listNames.includes(n)) {
          const hint = didYouMean(n, listNames);
          this.err(ConfigCodes.REFERENCE, listPathOf(j), `no list named "${n}" under lists${hint ? ` (did you mean "${hint}"?)` : ''}`);
        } else rule.lists.push(n);
      });
      // Matchers of issue 21 (config/rule-matchers.ts).
      Object.assign(rule, parseRuleMatchers(r, path, mode, { err: (code, at, m) => this.err(code, at, m), warn: (code, at, m) => this.warn(code, at, m), pos: (at) => this.pos(at) }));
      rule.label = typeof r.name === 'string' ? r.name : ruleLabel(rule);
      return rule;
    });
  }
}

/** 13335 or AS13335 → 13335; null when it is not an AS number. */
export function parseAsn(v: string): number | null {
  const m = /^(?:AS)?(\d{1,10})$/i.exec(v.trim());
  if (!m) return null;
  const n = Number(m[1]);
  return n >= 1 && n <= 4294967295 ? n : null;
}

const MATCHER_KEYS = ['domains', 'cidrs', 'sources', 'list', 'ports', 'protocol', 'geoip', 'asn', 'devices'] as const;

function ruleLabel(r: RuleConfig): string {
  const parts: string[] = [];
  if (r.lists.length) parts.push(`list ${r.lists.join(',')}`);
  const sample = [...r.domains.map((d) => patternText(d.pattern)), ...r.cidrs.map((c) => c.cidr)];
  if (sample.length) parts.push(sample.slice(0, 2).join(',') + (sample.length > 2 ? `+${sample.length - 2}` : ''));
  if (r.sources.length) parts.push(`from ${r.sources[0]!.cidr}${r.sources.length > 1 ? `+${r.sources.length - 1}` : ''}`);
  parts.push(...matcherLabelParts(r));
  return parts.join(' ').slice(0, 60) || `rule ${r.index}`;
}

/** A domain pattern as a user writes it. */
export function patternText(p: DomainPattern): string {
  switch (p.kind) {
    case 'domain':
      return p.value;
    case 'subdomain':
      return `*.${p.value}`;
    default:
      return `${p.kind}:${p.value}`;
  }
}

