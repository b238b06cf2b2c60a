// Rule matchers beyond names and CIDRs: `ports` and `protocol`, `geoip` and
// `asn` (destinations from the geodata databases), `devices` (LAN clients by
// MAC address or host name) and `when` (a schedule). Parsed here, pure, for
// the loader; the kernel enforces them (daemon/dataplane/rule-match.ts).

import type { ConfigCode } from './errors.js';
import { ConfigCodes } from './errors.js';
import type { EntryOrigin, Mode, RuleConfig, Schedule, SourcePos } from './types.js';
import { keyPathString, type KeySeg } from './yaml-source.js';

export interface MatcherReport {
  err(code: ConfigCode, at: KeySeg[], message: string): void;
  warn(code: ConfigCode, at: KeySeg[], message: string): void;
  pos(at: KeySeg[]): SourcePos;
}

type Raw = Record<string, unknown>;
type Matchers = Required<Pick<RuleConfig, 'ports' | 'protocol' | 'geoip' | 'asns' | 'devices' | 'when' | 'reroute'>>;

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const MAC = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;
/** A host name as DHCP leases and /etc/ethers carry it. */
const HOST = /^[A-Za-z0-9]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9_-]{0,62}))*$/;

/** Items of a key that may be one value or a list, with the key path of each. */
function items(r: Raw, key: string, path: KeySeg[]): { v: unknown; at: KeySeg[] }[] {
  const v = r[key];
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map((x, j) => ({ v: x, at: [...path, key, j] }));
  // "443, 8443" as one string is a list too.
  if (typeof v === 'string' && v.includes(',')) return v.split(',').map((x) => ({ v: x.trim(), at: [...path, key] }));
  return [{ v, at: [...path, key] }];
}

/** MAC address in the form nft and ip neigh print: lower case, colons. */
export function normalizeMac(v: string): string | null {
  const t = v.trim();
  return MAC.test(t) ? t.toLowerCase().replace(/-/g, ':') : null;
}

/** "443", 443, "27000-27050" → {from, to}; null when not a port or range. */
export function parsePortRange(v: unknown): { from: number; to: number } | null {
  const t = String(v).trim();
  const m = /^(\d{1,5})(?:\s*-\s*(\d{1,5}))?$/.exec(t);
  if (!m) return null;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || to < from) return null;
  return { from, to };
}

/** "08:00" → 480; "24:00" is the end of the day. */
function minutes(t: string): number | null {
  const m = /^(\d{1,2}):(\d{2})$/.exec(t.trim());
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (min > 59 || h > 24 || (h === 24 && min !== 0)) return null;
  return h * 60 + min;
}

/** Whether the runtime knows an IANA time zone. */
export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function parseDays(v: unknown, at: KeySeg[], report: MatcherReport): number[] | null {
  const parts = (Array.isArray(v) ? v.map(String) : String(v).split(',')).map((d) => d.trim().toLowerCase()).filter((d) => d !== '');
  const days = new Set<number>();
  for (const p of parts) {
    const dayOf = (d: string): number => DAYS.indexOf(d.slice(0, 3));
    const valid = (d: string): boolean => dayOf(d) >= 0 && (d.length === 3 || DAYS_LONG[dayOf(d)] === d);
    if (p === 'weekdays' || p === 'weekends' || p === 'daily' || p === 'every day') {
      for (const d of p === 'weekdays' ? [1, 2, 3, 4, 5] : p === 'weekends' ? [0, 6] : [0, 1, 2, 3, 4, 5, 6]) days.add(d);
      continue;
    }
    const range = p.split('-').map((x) => x.trim());
    if (range.length > 2 || !range.every(valid)) {
      report.err(ConfigCodes.VALUE, at, `"${p}" is not a day or a range of days (mon, tue-fri, weekdays, weekends)`);
      return null;
    }
    const a = dayOf(range[0]!);
    const b = dayOf(range[range.length - 1]!);
    // sat-mon wraps over the week's end.
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  if (days.size === 0) {
    report.err(ConfigCodes.VALUE, at, 'names no day');
    return null;
  }
  return [...days].sort((x, y) => x - y);
}
const DAYS_LONG = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];

/** `when: { days, time, timezone }`; null after an error (reported). */
export function parseSchedule(v: unknown, path: KeySeg[], report: MatcherReport): Schedule | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    report.err(ConfigCodes.TYPE, path, 'when: is a mapping: { days: mon-fri, time: "08:00-17:00", timezone: Europe/Berlin }');
    return null;
  }
  const w = v as Raw;
  const days = w.days === undefined ? [0, 1, 2, 3, 4, 5, 6] : parseDays(w.days, [...path, 'days'], report);
  if (days === null) return null;
  const ranges: Schedule['ranges'] = [];
  for (const t of items(w, 'time', path)) {
    const m = /^\s*([^-]+?)\s*-\s*([^-]+?)\s*$/.exec(String(t.v));
    const from = m ? minutes(m[1]!) : null;
    const to = m ? minutes(m[2]!) : null;
    if (from === null || to === null || from === to || from === 24 * 60) {
      report.err(ConfigCodes.VALUE, t.at, `"${String(t.v)}" is not a time range (HH:MM-HH:MM, e.g. "08:00-17:30" or "22:00-06:00" past midnight)`);
      return null;
    }
    ranges.push({ from, to });
  }
  if (ranges.length === 0) ranges.push({ from: 0, to: 24 * 60 });
  const tz = w.timezone === undefined ? 'local' : String(w.timezone);
  if (tz !== 'local' && !isTimeZone(tz)) {
    report.err(ConfigCodes.VALUE, [...path, 'timezone'], `"${tz}" is not a time zone (an IANA name, e.g. Europe/Berlin, UTC)`);
    return null;
  }
  return { days, ranges, timeZone: tz, pos: report.pos(path) };
}

/** The matchers of one rule; errors and warnings go to `report`. */
export function parseRuleMatchers(r: Raw, path: KeySeg[], mode: Mode, report: MatcherReport): Matchers {
  const origin = (at: KeySeg[]): EntryOrigin => ({ keyPath: keyPathString(at), pos: report.pos(at) });
  const out: Matchers = { ports: [], protocol: null, geoip: [], asns: [], devices: [], when: null, reroute: false };
  for (const p of items(r, 'ports', path)) {
    const range = parsePortRange(p.v);
    if (range === null) report.err(ConfigCodes.VALUE, p.at, `"${String(p.v)}" is not a port (1-65535) or a range of ports ("27000-27050")`);
    else out.ports.push({ ...range, origin: origin(p.at) });
  }
  if (r.protocol !== undefined) {
    const p = String(r.protocol).toLowerCase();
    if (p === 'tcp' || p === 'udp') out.protocol = p;
    else report.err(ConfigCodes.VALUE, [...path, 'protocol'], `"${String(r.protocol)}" is not tcp or udp`);
  }
  for (const g of items(r, 'geoip', path)) {
    const code = String(g.v).trim();
    if (!/^!?[A-Za-z][A-Za-z0-9_-]{1,31}$/.test(code)) report.err(ConfigCodes.VALUE, g.at, `"${code}" is not a country code (e.g. RU, DE, private)`);
    else out.geoip.push({ code: code.toUpperCase(), origin: origin(g.at) });
  }
  for (const a of items(r, 'asn', path)) {
    const m = /^(?:AS)?(\d{1,10})$/i.exec(String(a.v).trim());
    const n = m ? Number(m[1]) : 0;
    if (n < 1 || n > 4294967295) report.err(ConfigCodes.VALUE, a.at, `"${String(a.v)}" is not an AS number (e.g. 13335 or AS13335)`);
    else out.asns.push({ asn: n, origin: origin(a.at) });
  }
  for (const d of items(r, 'devices', path)) {
    const text = String(d.v).trim();
    const mac = normalizeMac(text);
    if (mac === null && !HOST.test(text)) report.err(ConfigCodes.VALUE, d.at, `"${text}" is neither a MAC address (aa:bb:cc:dd:ee:ff) nor a host name from DHCP leases or /etc/ethers`);
    else out.devices.push({ device: mac ?? text, mac, origin: origin(d.at) });
  }
  if (out.devices.length > 0 && mode === 'host') {
    report.warn(ConfigCodes.VALUE, [...path, 'devices'], 'devices match LAN clients; in host mode there are none, so this rule never matches');
  }
  if (r.when !== undefined) out.when = parseSchedule(r.when, [...path, 'when'], report);
  if (r.reroute !== undefined) {
    out.reroute = r.reroute === true;
    if (out.when === null) report.warn(ConfigCodes.VALUE, [...path, 'reroute'], 'reroute applies at a schedule boundary; this rule has no when:');
  }
  return out;
}

function hhmm(m: number): string {
  return `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

/** A schedule as a person reads it: "mon-fri 08:00-17:00 (Europe/Berlin)". */
export function scheduleText(s: Schedule): string {
  const days = s.days.length === 7 ? 'daily' : s.days.map((d) => DAYS[d]).join(',');
  const times = s.ranges.length === 1 && s.ranges[0]!.from === 0 && s.ranges[0]!.to === 1440 ? 'all day' : s.ranges.map((r) => `${hhmm(r.from)}-${hhmm(r.to)}`).join(',');
  return `${days} ${times}${s.timeZone === 'local' ? '' : ` (${s.timeZone})`}`;
}

/** Ports as written back: 443, 27000-27050. */
export function portsText(ports: readonly { from: number; to: number }[]): string {
  return ports.map((p) => (p.from === p.to ? String(p.from) : `${p.from}-${p.to}`)).join(',');
}

/** Label pieces for a rule's matchers (logs, metrics). */
export function matcherLabelParts(r: RuleConfig): string[] {
  const parts: string[] = [];
  if (r.geoip?.length) parts.push(`geoip ${r.geoip.map((g) => g.code).join(',')}`);
  if (r.asns?.length) parts.push(`asn ${r.asns.map((a) => a.asn).join(',')}`);
  if (r.ports?.length || r.protocol) parts.push(`${r.protocol ?? 'tcp/udp'}${r.ports?.length ? ` ${portsText(r.ports)}` : ''}`);
  if (r.devices?.length) parts.push(`device ${r.devices[0]!.device}${r.devices.length > 1 ? `+${r.devices.length - 1}` : ''}`);
  if (r.when) parts.push(`when ${scheduleText(r.when)}`);
  return parts;
}
