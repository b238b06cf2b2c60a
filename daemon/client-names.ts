// Names of LAN clients for the query log, from the files a router already
// has: dnsmasq's and OpenWrt's leases (`expiry mac ip name clientid`), ISC
// dhcpd's leases (`lease IP { ... client-hostname "name"; }`) and hosts files.
// Parsing is pure; the files are read again at most every REREAD_MS, in the
// background, when someone reads the log (never on the resolver's path).
import type { Clock } from '../lib/logger.js';
import { formatIp, parseIp } from '../lib/ip.js';

const REREAD_MS = 10_000;
/** A file bigger than this is not read (a leases file of a home LAN is a few KB). */
const MAX_FILE_BYTES = 4 << 20;
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$/;

/** The canonical text of an address (so 2001:DB8::1 and 2001:db8:0::1 meet), or null. */
const canon = (a: string): string | null => {
  const ip = parseIp(a);
  return ip === null ? null : formatIp(ip);
};

/** address → name from one file's text, whatever of the known formats it is in. Later lines win. */
export function parseClientNames(text: string): Map<string, string> {
  const out = new Map<string, string>();
  // ISC dhcpd: blocks `lease ADDR { ... client-hostname "NAME"; ... }`.
  if (/^\s*lease\s+\S+\s*\{/m.test(text)) {
    for (const m of text.matchAll(/lease\s+(\S+)\s*\{([^}]*)\}/g)) {
      const name = /client-hostname\s+"([^"]*)"/.exec(m[2]!)?.[1];
      const a = canon(m[1]!);
      if (a !== null && name !== undefined && NAME.test(name)) out.set(a, name);
    }
    return out;
  }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const f = line.split(/\s+/);
    // dnsmasq / odhcpd leases: expiry (a number) mac ip name [clientid]; the name `*` means none.
    if (/^\d+$/.test(f[0]!) && f.length >= 4) {
      const a = canon(f[2]!);
      if (a !== null && f[3] !== '*' && NAME.test(f[3]!)) out.set(a, f[3]!);
      continue;
    }
    // hosts: ip name [aliases]; loopback names say nothing about LAN clients.
    const a = canon(f[0]!);
    if (a === null || f.length < 2 || !NAME.test(f[1]!)) continue;
    if (a === '127.0.0.1' || a === '::1' || a.startsWith('127.') || f[1] === 'localhost') continue;
    out.set(a, f[1]!);
  }
  return out;
}

export interface ClientNamesDeps {
  /** The file's text, or null when it is missing, unreadable or too big. */
  readFile(path: string): Promise<string | null>;
  clock: Pick<Clock, 'now'>;
}

export const nodeClientNamesFs = async (path: string): Promise<string | null> => {
  const { open } = await import('node:fs/promises');
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > MAX_FILE_BYTES) return null;
      return await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
};

export class ClientNames {
  private names = new Map<string, string>();
  private readAt = -Infinity;
  private reading: Promise<void> | null = null;

  constructor(
    private files: readonly string[],
    private readonly d: ClientNamesDeps,
  ) {}

  setFiles(files: readonly string[]): void {
    this.files = files;
    this.readAt = -Infinity;
  }

  /** The name of `address`, as last read; starts a re-read when the last one is old (the next call sees it). */
  name(address: string): string | null {
    if (this.d.clock.now() - this.readAt >= REREAD_MS) void this.refresh();
    const a = canon(address.split('%')[0]!);
    return a === null ? null : (this.names.get(a) ?? null);
  }

  /** Reads the files now (the first file naming an address wins: hosts files are listed first). */
  refresh(): Promise<void> {
    if (this.reading !== null) return this.reading;
    this.readAt = this.d.clock.now();
    this.reading = (async () => {
      const next = new Map<string, string>();
      for (const f of this.files) {
        const text = await this.d.readFile(f);
        if (text === null) continue;
        for (const [a, n] of parseClientNames(text)) if (!next.has(a)) next.set(a, n);
      }
      this.names = next;
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }
}
