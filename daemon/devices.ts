// LAN devices by host name, for rules' `devices:`. A name becomes the MAC
// addresses that the DHCP server's leases (dnsmasq, OpenWrt's odhcpd/dnsmasq
// `/tmp/dhcp.leases`, ISC dhcpd's `dhcpd.leases`) and /etc/ethers give it.
// The kernel matches the MAC, so a device stays matched whatever address it
// has; the files are re-read on a timer, and when a name's MACs change (a new
// lease of a device that was not seen before) `onChange` re-renders the
// ruleset. Parsing is pure; reading goes through an injected function.
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { normalizeMac } from '../config/rule-matchers.js';

/** Where names come from unless the config says: /etc/ethers, dnsmasq (Debian), OpenWrt, ISC dhcpd. */
export const DEFAULT_DEVICE_FILES = ['/etc/ethers', '/var/lib/misc/dnsmasq.leases', '/tmp/dhcp.leases', '/var/lib/dhcp/dhcpd.leases'];

/**
 * name (lower case) → MACs, from one file's text. Lines are recognised by
 * shape, so one parser reads every format: `MAC name` (ethers), `expiry MAC
 * IP name clientid` (dnsmasq leases; name `*` is none), and ISC `lease IP {
 * hardware ethernet MAC; client-hostname "name"; }` blocks.
 */
export function parseDeviceNames(text: string, into: Map<string, Set<string>> = new Map()): Map<string, Set<string>> {
  const add = (name: string, mac: string | null): void => {
    const n = name.trim().toLowerCase();
    if (!mac || n === '' || n === '*') return;
    let s = into.get(n);
    if (!s) into.set(n, (s = new Set()));
    s.add(mac);
  };
  let isc: { mac: string | null; name: string | null } | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    if (/^lease\s+\S+\s*\{/.test(line)) {
      isc = { mac: null, name: null };
      continue;
    }
    if (isc) {
      const hw = /^hardware\s+ethernet\s+([0-9a-fA-F:]+)\s*;/.exec(line);
      if (hw) isc.mac = normalizeMac(hw[1]!);
      const hn = /^client-hostname\s+"([^"]*)"\s*;/.exec(line);
      if (hn) isc.name = hn[1]!;
      if (line.startsWith('}')) {
        if (isc.name !== null) add(isc.name, isc.mac);
        isc = null;
      }
      continue;
    }
    const f = line.split(/\s+/);
    if (f.length === 2) add(f[1]!, normalizeMac(f[0]!)); // ethers: MAC name (an IP in place of the name is no name we match: it has dots and digits only)
    else if (f.length >= 4 && /^\d+$/.test(f[0]!)) add(f[3]!, normalizeMac(f[1]!)); // dnsmasq: expiry MAC IP name [clientid]
  }
  return into;
}

export class DeviceDirectory {
  private names = new Map<string, string[]>();
  private timer: unknown = null;
  private files: readonly string[] = [];
  private stopped = false;

  constructor(
    private readonly read: (paths: readonly string[]) => Promise<(string | null)[]>,
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** A name's MACs changed: re-render the ruleset. */
    private readonly onChange: () => void,
    private readonly intervalMs = 10_000,
  ) {}

  /** The MACs `name` has now (sorted); [] when no file names it. */
  macsOf(name: string): string[] {
    return this.names.get(name.toLowerCase()) ?? [];
  }

  /** Reads the files now; keeps re-reading them while any rule names a device by name. */
  async configure(files: readonly string[], wanted: boolean): Promise<void> {
    this.files = files;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    if (!wanted) {
      this.names = new Map();
      return;
    }
    await this.refresh();
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.refresh().then(
        (changed) => {
          if (changed) this.onChange();
          this.arm();
        },
        (e: unknown) => {
          this.logger.warn({ err: e }, 'reading device names failed');
          this.arm();
        },
      );
    }, this.intervalMs);
  }

  /** Re-reads the files; true when a name's MACs changed. */
  async refresh(): Promise<boolean> {
    const texts = await this.read(this.files);
    const merged = new Map<string, Set<string>>();
    for (const t of texts) if (t !== null) parseDeviceNames(t, merged);
    const next = new Map([...merged].map(([n, s]) => [n, [...s].sort()]));
    const same = next.size === this.names.size && [...next].every(([n, m]) => this.names.get(n)?.join() === m.join());
    if (!same) this.logger.info({ devices: next.size }, 'device names changed');
    this.names = next;
    return !same;
  }
}
