// The link splitwan owns for the systemd-resolved takeover (daemon/resolved.ts;
// docs/design/laptop-resolved.md, "Which link, and why"). resolved uses a link
// for DNS only while it is up, has carrier and holds an address. Two ways to
// have one:
//
// - TunDnsLink (the default): a TUN device this process opens (/dev/net/tun,
//   TUNSETIFF through koffi, O_CLOEXEC, TUNSETPERSIST 0). The kernel removes
//   it, and resolved forgets its settings, when the process exits in any way,
//   SIGKILL included.
// - IpDnsLink (no native code: SPLITWAN_NATIVE=off, no koffi build or C
//   library, no /dev/net/tun): an `ifb` link (else `dummy`) made with `ip`.
//   Both have carrier with nobody holding them (a TUN made by `ip tuntap` has
//   none, and resolved ignores it), so they outlive the process: removed at
//   stop; after a crash by the next start's cleanup (systemd restarts a
//   crashed daemon: Restart=on-failure) or `splitwan cleanup`, which find it
//   by its name.
//
// dnsLinkFor() chooses, and says once why when it is the second. The address
// and state of either go through `ip` (argv, the Runner).
import { existsSync, readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import type { Logger } from '../lib/logger.js';
import { errnoName } from '../sys/errno.js';
import { koffi } from '../sys/koffi-linux.js'; // loaded by loadLibc(), before any use
import { loadLibc } from '../sys/libc-linux.js';
import { IFF_NO_PI, IFF_TUN, IFF_UP, IFNAMSIZ, IFREQ_SIZE, O_CLOEXEC, O_RDWR, TUNSETIFF, TUNSETPERSIST } from '../sys/linux-abi.js';
import { fastPathOr, type FallbackReport } from '../sys/native-fallback.js';
import type { Runner } from './exec-linux.js';
import { parseIpAddrs } from './os-parse.js';
import { DNS_LINK_ADDRESS, DNS_LINK_NAME, type DnsLink } from './resolved.js';

/** A failed step of making the link: which, and the errno name or the command's error. */
export class DnsLinkError extends Error {
  readonly code = 'SPLITWAN_RESOLVED_LINK';
  constructor(ifname: string, step: string, why: string) {
    super(`${ifname}: ${step}: ${why}`);
    this.name = 'DnsLinkError';
  }
}

export interface DnsLinkOptions {
  runner: Runner;
  logger: Logger;
  ifname?: string;
  address?: string;
}

// ---------------------------------------------------------------------------
// What both kinds share: the link's address and state, a leftover's removal

/** The link's ifindex now; 0 when there is no link of that name (this process's network namespace). */
function ifindexOf(ifname: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

function checkName(ifname: string): void {
  if (Buffer.byteLength(ifname) >= IFNAMSIZ) throw new DnsLinkError(ifname, 'name', `longer than ${IFNAMSIZ - 1} bytes`);
}

/** Up, with its address (scope site), no IPv6 link-local address; `up` carries extra `ip link set` arguments. */
async function configureLink(run: Runner, ifname: string, address: string, up: readonly string[] = []): Promise<void> {
  // No IPv6 link-local address: nothing is ever sent on this link. Fails where IPv6 is off: harmless.
  await run.run(['ip', 'link', 'set', 'dev', ifname, 'addrgenmode', 'none'], { allowFail: true });
  await run.run(['ip', 'address', 'replace', `${address}/32`, 'dev', ifname, 'scope', 'site']);
  await run.run(['ip', 'link', 'set', 'dev', ifname, ...up, 'up']);
}

async function linkHealthy(run: Runner, ifname: string, address: string): Promise<boolean> {
  try {
    const flags = parseInt(readFileSync(`/sys/class/net/${ifname}/flags`, 'utf8').trim(), 16);
    if (!(flags & IFF_UP)) return false;
    const links = parseIpAddrs((await run.run(['ip', '-j', 'addr', 'show', 'dev', ifname])).stdout);
    return links.some((l) => l.addresses.some((a) => a.local === address));
  } catch {
    return false;
  }
}

/** Deletes a link of this name (any kind: a run of either kind may have left it). */
async function removeLeftover(run: Runner, logger: Logger, ifname: string): Promise<void> {
  if (ifindexOf(ifname) === 0) return;
  // A TUN device held by a live process cannot be deleted (EOPNOTSUPP); a persistent one, an ifb or a dummy can.
  const r = await run.run(['ip', 'link', 'delete', 'dev', ifname], { allowFail: true });
  if (r.code !== 0) logger.warn({ ifname, stderr: r.stderr.trim() }, "a link named like splitwan's DNS link exists and could not be deleted (held by another process?)");
  else logger.info({ ifname }, "removed splitwan's DNS link a previous run left");
}

// ---------------------------------------------------------------------------
// The TUN link

interface TunLibc {
  open(path: string, flags: number): number;
  ioctlPtr(fd: number, req: number, arg: Buffer): number;
  ioctlInt(fd: number, req: number, arg: number): number;
  close(fd: number): number;
}

let tunLibc: TunLibc | null = null;

function tunLib(): TunLibc {
  if (tunLibc) return tunLibc;
  const l = loadLibc();
  // ioctl is variadic in C; the third argument is passed with its own type each call.
  const ioctl = l.func('int ioctl(int fd, unsigned long req, ...)');
  tunLibc = {
    open: l.func('int open(const char *path, int flags, ...)') as TunLibc['open'],
    ioctlPtr: (fd, req, arg) => ioctl(fd, req, 'uint8_t *', arg) as number,
    ioctlInt: (fd, req, arg) => ioctl(fd, req, 'int', arg) as number,
    close: l.func('int close(int fd)') as TunLibc['close'],
  };
  return tunLibc;
}

/**
 * Throws why a TUN link cannot be had here: koffi or the C library does not
 * load (their own errors: SPLITWAN_NATIVE_KOFFI, SPLITWAN_NATIVE_LIBC), or
 * the kernel offers no TUN device. Makes nothing.
 */
export function tunUsable(): void {
  tunLib();
  if (!existsSync('/dev/net/tun')) throw new Error('no /dev/net/tun (a kernel without TUN, or a container without the device)');
}

export class TunDnsLink implements DnsLink {
  readonly ifname: string;
  private readonly address: string;
  private fd = -1;
  private ifindex = 0;

  constructor(private readonly o: DnsLinkOptions) {
    this.ifname = o.ifname ?? DNS_LINK_NAME;
    this.address = o.address ?? DNS_LINK_ADDRESS;
    checkName(this.ifname);
  }

  async open(): Promise<{ ifindex: number }> {
    if (this.fd >= 0) return { ifindex: this.ifindex };
    const c = tunLib();
    const fd = c.open('/dev/net/tun', O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new DnsLinkError(this.ifname, 'open /dev/net/tun', errnoName(koffi.errno()));
    try {
      const req = Buffer.alloc(IFREQ_SIZE);
      req.write(this.ifname, 0, 'utf8');
      const flags = IFF_TUN | IFF_NO_PI;
      if (endianness() === 'LE') req.writeUInt16LE(flags, IFNAMSIZ);
      else req.writeUInt16BE(flags, IFNAMSIZ);
      // EBUSY: another process holds a device of that name (a second daemon); EINVAL: the name is not a TUN device.
      if (c.ioctlPtr(fd, TUNSETIFF, req) !== 0) throw new DnsLinkError(this.ifname, 'TUNSETIFF', errnoName(koffi.errno()));
      // A persistent device of that name (left by someone) is attached to now: make it go with us.
      if (c.ioctlInt(fd, TUNSETPERSIST, 0) !== 0) throw new DnsLinkError(this.ifname, 'TUNSETPERSIST 0', errnoName(koffi.errno()));
      this.fd = fd;
    } catch (e) {
      c.close(fd);
      throw e;
    }
    try {
      this.ifindex = ifindexOf(this.ifname);
      if (this.ifindex === 0) throw new Error(`no /sys/class/net/${this.ifname}`);
      await configureLink(this.o.runner, this.ifname, this.address);
    } catch (e) {
      await this.close();
      throw e instanceof DnsLinkError ? e : new DnsLinkError(this.ifname, 'configure', (e as Error).message);
    }
    this.o.logger.info({ ifname: this.ifname, ifindex: this.ifindex, address: this.address, kind: 'tun' }, 'splitwan-dns link up');
    return { ifindex: this.ifindex };
  }

  async repair(): Promise<boolean> {
    if (this.fd < 0) return false;
    if (await linkHealthy(this.o.runner, this.ifname, this.address)) return false;
    await configureLink(this.o.runner, this.ifname, this.address);
    return true;
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    tunLib().close(this.fd);
    this.fd = -1;
    this.ifindex = 0;
  }

  async removeStale(): Promise<void> {
    if (this.fd >= 0) return;
    await removeLeftover(this.o.runner, this.o.logger, this.ifname);
  }
}

// ---------------------------------------------------------------------------
// The link made with ip (no native code)

/**
 * Kinds that have carrier with no process holding them, in order: ifb first
 * (NetworkManager 1.42 leaves an ifb unmanaged by itself and `networking
 * off` does not touch its address: seen in the lab), dummy for a kernel
 * built without ifb (the lab's kernel has no dummy: not tested here).
 */
export const IP_DNS_LINK_KINDS: readonly string[] = Object.freeze(['ifb', 'dummy']);

/** What `ip link` shows on it (`alias`): whose it is and how it goes. */
export const IP_DNS_LINK_ALIAS = 'splitwan: systemd-resolved takeover (removed at stop; after a crash by the next start or splitwan cleanup)';

/** `ip link add` stderr when the kernel has no such kind (not built, module missing): the next kind is tried. */
const NO_SUCH_KIND = /Unknown device type|Operation not supported|not supported/i;

export class IpDnsLink implements DnsLink {
  readonly ifname: string;
  private readonly address: string;
  private readonly kinds: readonly string[];
  /** Between an open() that worked and close(): the link is this process's to keep (and to make again). */
  private held = false;
  /** The ifindex of the link this process made last (0: none). */
  private ifindex = 0;
  /** The kind `ip link add` made ('' before the first open). */
  kind = '';

  constructor(private readonly o: DnsLinkOptions & { kinds?: readonly string[] }) {
    this.ifname = o.ifname ?? DNS_LINK_NAME;
    this.address = o.address ?? DNS_LINK_ADDRESS;
    this.kinds = o.kinds ?? IP_DNS_LINK_KINDS;
    checkName(this.ifname);
  }

  async open(): Promise<{ ifindex: number }> {
    if (this.held && this.ifindex !== 0 && ifindexOf(this.ifname) === this.ifindex) return { ifindex: this.ifindex };
    this.ifindex = 0;
    this.kind = await this.create();
    try {
      const ifindex = ifindexOf(this.ifname);
      if (ifindex === 0) throw new Error('gone right after it was made');
      await configureLink(this.o.runner, this.ifname, this.address, ['alias', IP_DNS_LINK_ALIAS]);
      this.ifindex = ifindex;
      this.held = true;
    } catch (e) {
      await this.delete();
      throw e instanceof DnsLinkError ? e : new DnsLinkError(this.ifname, 'configure', (e as Error).message);
    }
    this.o.logger.info({ ifname: this.ifname, ifindex: this.ifindex, address: this.address, kind: this.kind }, 'splitwan-dns link up');
    return { ifindex: this.ifindex };
  }

  /**
   * Unlike a TUN, this link can be deleted under the daemon (`splitwan
   * cleanup` while it runs, someone): it is made again, with a new ifindex,
   * which the takeover reads from open().
   */
  async repair(): Promise<boolean> {
    if (!this.held) return false;
    if (this.ifindex === 0 || ifindexOf(this.ifname) !== this.ifindex) {
      // (ifindex 0: the last try to make it again failed; this one tries again)
      if (this.ifindex !== 0) this.o.logger.warn({ ifname: this.ifname, ifindex: this.ifindex }, 'splitwan-dns link was deleted: made again');
      await this.open();
      return true;
    }
    if (await linkHealthy(this.o.runner, this.ifname, this.address)) return false;
    await configureLink(this.o.runner, this.ifname, this.address, ['alias', IP_DNS_LINK_ALIAS]);
    return true;
  }

  async close(): Promise<void> {
    if (!this.held) return;
    const mine = this.ifindex !== 0 && ifindexOf(this.ifname) === this.ifindex;
    this.held = false;
    this.ifindex = 0;
    if (mine) await this.delete();
  }

  async removeStale(): Promise<void> {
    if (this.held) return;
    await removeLeftover(this.o.runner, this.o.logger, this.ifname);
  }

  /** `ip link add NAME type KIND` with the first kind this kernel has; returns the kind. */
  private async create(): Promise<string> {
    const missing: string[] = [];
    for (const kind of this.kinds) {
      const r = await this.o.runner.run(['ip', 'link', 'add', this.ifname, 'type', kind], { allowFail: true });
      if (r.code === 0) return kind;
      const why = r.stderr.trim();
      // EEXIST: a link of this name (another splitwan, or a killed run's that no cleanup removed yet).
      if (/File exists/i.test(why)) throw new DnsLinkError(this.ifname, `ip link add type ${kind}`, `${why} (a killed run's? \`splitwan cleanup\` removes it)`);
      if (!NO_SUCH_KIND.test(why)) throw new DnsLinkError(this.ifname, `ip link add type ${kind}`, why || `exit ${r.code}`);
      missing.push(`${kind}: ${why}`);
    }
    throw new DnsLinkError(this.ifname, 'ip link add', `the kernel has none of ${this.kinds.join(', ')} (${missing.join('; ')})`);
  }

  private async delete(): Promise<void> {
    const r = await this.o.runner.run(['ip', 'link', 'delete', 'dev', this.ifname], { allowFail: true });
    if (r.code !== 0 && ifindexOf(this.ifname) !== 0) this.o.logger.warn({ ifname: this.ifname, stderr: r.stderr.trim() }, 'splitwan-dns link could not be deleted; `splitwan cleanup` tries again');
  }
}

// ---------------------------------------------------------------------------
// The choice

/**
 * The TUN link where native code runs, else the link made with ip; the
 * reason is logged once (`report`; cleanup passes none: it only removes a
 * leftover, which either kind does). `usable` stands in for tunUsable() in
 * tests.
 */
export function dnsLinkFor(o: DnsLinkOptions & { report?: FallbackReport; usable?: () => void }): DnsLink {
  const { report = {}, usable = tunUsable, ...opts } = o;
  return fastPathOr<DnsLink>(
    { what: 'systemd-resolved link: a TUN device held open', instead: 'an ifb (else dummy) link made with ip, which a crash leaves until the next start or `splitwan cleanup`', report, turnedOff: null },
    () => {
      usable();
      return new TunDnsLink(opts);
    },
    new IpDnsLink(opts),
  );
}
