// MaxMind DB (.mmdb) country and ASN databases: GeoLite2/GeoIP2 Country and
// ASN, DB-IP's compatible ones, and the proxies' own country files
// (sing-geoip: a bare code per network; mihomo "Meta-geoip0": a code or a
// list of codes).
//
// mmdb-lib reads the file: metadata, address lookups and the data section
// decoder. It cannot list a database's networks, which is what turning "every
// network of country CN" into CIDRs needs. So we walk the search tree here:
// its layout is fixed by the MaxMind DB spec (nodes of two 24-, 28- or
// 32-bit records right after each other; a record below node_count is a
// node, equal to it is "no data", above it points into the data section).
// Each distinct data record is then decoded by mmdb-lib itself, through a
// lookup of the first address of the network that points at it; the prefix
// length mmdb-lib reports for that lookup must equal the depth our walk found,
// so the two readings of the tree check each other.
//
// In an IPv6 database IPv4 lives at ::/96; ::ffff:0:0/96 and 2002::/16
// usually point back into that subtree. Those aliases are skipped (as the
// maxminddb readers' network iterators do), and networks under ::/96 are
// written as IPv4 CIDRs.

import { Reader } from 'mmdb-lib';
import { didYouMean } from '../errors.js';
import { parseIp, formatIp } from '../../lib/ip.js';
import { Acc, LIMITS, fail, guarded, type DecodedList } from './decoded.js';
import { cidrText, type Family } from './ip-range.js';

export interface MmdbSelection {
  /** ISO country codes, any case ("cn", "DE"). */
  countries?: string[];
  /** Autonomous system numbers. */
  asns?: number[];
}

export interface MmdbHit {
  /** The network the address is in, as a CIDR. */
  network: string;
  countries: string[]; // upper case
  asn: number | null;
  organization: string | null;
}

/** The codes a record stands for, in the shapes real country databases use. */
function countriesOf(rec: unknown): string[] {
  if (typeof rec === 'string') return [rec.toUpperCase()];
  if (Array.isArray(rec)) return rec.filter((x): x is string => typeof x === 'string').map((x) => x.toUpperCase());
  if (typeof rec === 'object' && rec !== null) {
    const o = rec as { country?: { iso_code?: unknown }; registered_country?: { iso_code?: unknown } };
    // The located country; networks without one (anycast, satellite) have only the registered one.
    const code = o.country?.iso_code ?? o.registered_country?.iso_code;
    if (typeof code === 'string') return [code.toUpperCase()];
  }
  return [];
}

function asnOf(rec: unknown): { asn: number | null; organization: string | null } {
  if (typeof rec !== 'object' || rec === null) return { asn: null, organization: null };
  const o = rec as { autonomous_system_number?: unknown; autonomous_system_organization?: unknown; asn?: unknown; name?: unknown };
  let asn: number | null = null;
  if (typeof o.autonomous_system_number === 'number') asn = o.autonomous_system_number;
  // ipinfo's free ASN database: "AS13335".
  else if (typeof o.asn === 'string' && /^AS\d+$/i.test(o.asn)) asn = Number(o.asn.slice(2));
  const org = typeof o.autonomous_system_organization === 'string' ? o.autonomous_system_organization : typeof o.name === 'string' ? o.name : null;
  return { asn, organization: org };
}

interface Network {
  family: Family;
  value: bigint;
  prefix: number;
  record: number;
}

/** An opened database: parse once, then select and look up. */
export class MmdbDatabase {
  private readonly reader: Reader<never>;
  private readonly db: Buffer;
  readonly databaseType: string;
  readonly ipVersion: 4 | 6;
  private readonly nodeCount: number;
  private readonly recordSize: number;
  private readonly ipv4Start: number;

  constructor(
    bytes: Uint8Array,
    private readonly list: string,
  ) {
    this.db = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const r = guarded(list, 'mmdb', 'MaxMind database (.mmdb)', () => new Reader<never>(this.db));
    this.reader = r;
    const m = r.metadata;
    this.databaseType = String(m.databaseType);
    this.nodeCount = m.nodeCount;
    this.recordSize = m.recordSize;
    if (m.ipVersion !== 4 && m.ipVersion !== 6) fail(list, 'mmdb', `not a usable .mmdb: ip_version ${String(m.ipVersion)}`);
    this.ipVersion = m.ipVersion;
    if (![24, 28, 32].includes(this.recordSize)) fail(list, 'mmdb', `not a usable .mmdb: record size ${String(this.recordSize)}`);
    if (!Number.isSafeInteger(this.nodeCount) || this.nodeCount < 1 || (this.nodeCount * this.recordSize) / 4 + 16 > this.db.length) {
      fail(list, 'mmdb', `not a usable .mmdb: a search tree of ${String(this.nodeCount)} nodes does not fit in ${this.db.length} bytes`);
    }
    this.ipv4Start = this.findIpv4Start();
  }

  private records(node: number): [number, number] {
    const db = this.db;
    switch (this.recordSize) {
      case 24: {
        const o = node * 6;
        return [db.readUIntBE(o, 3), db.readUIntBE(o + 3, 3)];
      }
      case 28: {
        const o = node * 7;
        return [((db[o + 3]! & 0xf0) << 20) | db.readUIntBE(o, 3), ((db[o + 3]! & 0x0f) << 24) | db.readUIntBE(o + 4, 3)];
      }
      default: {
        const o = node * 8;
        return [db.readUInt32BE(o), db.readUInt32BE(o + 4)];
      }
    }
  }

  private findIpv4Start(): number {
    if (this.ipVersion === 4) return 0;
    let node = 0;
    for (let i = 0; i < 96 && node < this.nodeCount; i++) node = this.records(node)[0];
    return node;
  }

  /** Every network that has data, with its data record (aliases of the IPv4 subtree skipped). */
  private *networks(): Generator<Network> {
    const bits = this.ipVersion === 6 ? 128 : 32;
    // A data entry on the stack (record > nodeCount) is yielded when popped, so networks come out in address order.
    const stack: { node: number; depth: number; value: bigint }[] = [{ node: 0, depth: 0, value: 0n }];
    let steps = 0;
    while (stack.length > 0) {
      const { node, depth, value } = stack.pop()!;
      if (node > this.nodeCount) {
        yield* this.toNetworks(value, depth, node);
        continue;
      }
      if (++steps > LIMITS.maxMmdbNetworks) fail(this.list, 'mmdb', `the search tree has more than ${LIMITS.maxMmdbNetworks} nodes to visit (corrupt, or aliased in a loop)`);
      const recs = this.records(node);
      // Right first onto the stack, so the left (lower) half is popped first.
      for (const bit of [1, 0] as const) {
        const rec = recs[bit];
        if (rec === this.nodeCount) continue; // no data
        const d = depth + 1;
        const v = bit ? value | (1n << BigInt(bits - d)) : value;
        if (rec < this.nodeCount) {
          if (d >= bits) fail(this.list, 'mmdb', `not a usable .mmdb: the search tree is deeper than ${bits} bits`);
          const canonicalV4 = d === 96 && v === 0n;
          if (this.ipVersion === 6 && this.ipv4Start > 0 && rec === this.ipv4Start && !canonicalV4) continue;
        }
        stack.push({ node: rec, depth: d, value: v });
      }
    }
  }

  private *toNetworks(value: bigint, depth: number, record: number): Generator<Network> {
    if (this.ipVersion === 4) {
      yield { family: 4, value, prefix: depth, record };
      return;
    }
    if (value >> 32n === 0n && depth >= 96) {
      yield { family: 4, value, prefix: depth - 96, record };
      return;
    }
    yield { family: 6, value, prefix: depth, record };
    // A network around ::/96 covers every IPv4 address too.
    if (value === 0n && depth < 96) yield { family: 4, value: 0n, prefix: 0, record };
  }

  private decodeCache = new Map<number, unknown>();

  /** The data record of a network, decoded by mmdb-lib through a lookup; the tree walk and mmdb-lib must agree. */
  private recordOf(n: Network): unknown {
    if (this.decodeCache.has(n.record)) return this.decodeCache.get(n.record);
    const addr = n.family === 4 ? formatIp({ family: 4, w: [0, 0, 0, Number(n.value)] }) : cidrText(6, n.value, 128).slice(0, -4);
    const [rec, prefix] = this.reader.getWithPrefixLength(addr);
    if (prefix !== n.prefix) {
      fail(this.list, 'mmdb', `not a usable .mmdb: the search tree reads two ways at ${addr} (/${n.prefix} walking, /${prefix} looking up)`);
    }
    this.decodeCache.set(n.record, rec);
    return rec;
  }

  /** CIDRs of the networks whose country or ASN is selected (the union of both). */
  select(sel: MmdbSelection): DecodedList {
    const countries = new Set((sel.countries ?? []).map((c) => c.trim().toUpperCase()));
    const asns = new Set(sel.asns ?? []);
    if (countries.size === 0 && asns.size === 0) fail(this.list, 'mmdb', 'no country code or ASN selected');
    return guarded(this.list, 'mmdb', 'MaxMind database (.mmdb)', () => {
      const acc = new Acc(this.list, 'mmdb');
      const seenCountries = new Set<string>();
      const found = new Set<string | number>();
      let anyAsn = false;
      for (const n of this.networks()) {
        const rec = this.recordOf(n);
        let hit = false;
        if (countries.size > 0) {
          for (const c of countriesOf(rec)) {
            seenCountries.add(c);
            if (countries.has(c)) {
              hit = true;
              found.add(c);
            }
          }
        }
        if (asns.size > 0) {
          const { asn } = asnOf(rec);
          if (asn !== null) anyAsn = true;
          if (asn !== null && asns.has(asn)) {
            hit = true;
            found.add(asn);
          }
        }
        if (hit) acc.cidr(cidrText(n.family, n.value, n.prefix));
      }
      for (const c of countries) {
        if (found.has(c)) continue;
        if (seenCountries.size === 0) fail(this.list, 'mmdb', `this database (${this.databaseType}) has no country data`);
        const hint = didYouMean(c, seenCountries);
        fail(this.list, 'mmdb', `no network in this database (${this.databaseType}) has country '${c}'${hint ? ` (did you mean '${hint}'?)` : ''}`);
      }
      for (const a of asns) {
        if (found.has(a)) continue;
        fail(this.list, 'mmdb', anyAsn ? `no network in this database (${this.databaseType}) has ASN ${a}` : `this database (${this.databaseType}) has no ASN data`);
      }
      return acc.finish();
    });
  }

  /** What the database says of one address, or null when it has nothing for it (or it is no address). */
  lookup(address: string): MmdbHit | null {
    const ip = parseIp(address.trim());
    if (!ip) return null;
    const text = formatIp(ip);
    return guarded(this.list, 'mmdb', 'MaxMind database (.mmdb)', () => {
      const [rec, prefix] = this.reader.getWithPrefixLength(text);
      if (rec === null || rec === undefined) return null;
      const network = ip.family === 4 ? cidrText(4, BigInt(ip.w[3]), prefix) : cidrText(6, words128(ip.w), prefix);
      return { network, countries: countriesOf(rec), ...asnOf(rec) };
    });
  }
}

function words128(w: [number, number, number, number]): bigint {
  return (BigInt(w[0]) << 96n) | (BigInt(w[1]) << 64n) | (BigInt(w[2]) << 32n) | BigInt(w[3]);
}

/** One-shot: open and select. Keep an MmdbDatabase to select or look up repeatedly. */
export function decodeMmdb(bytes: Uint8Array, selection: MmdbSelection, list: string): DecodedList {
  return new MmdbDatabase(bytes, list).select(selection);
}
