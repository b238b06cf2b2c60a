// The OS side of the systemd-resolved takeover (daemon/resolved.ts):
//
// - LinuxResolvedApi talks D-Bus (the system bus: $DBUS_SYSTEM_BUS_ADDRESS,
//   else /run/dbus/system_bus_socket) to org.freedesktop.resolve1 and to
//   org.freedesktop.NetworkManager, through @jellybrick/dbus-next (a kept fork
//   of dbus-next: the original's last release pulls xml2js 0.4 and
//   event-stream 3.3). Calls are message-level with explicit signatures, so
//   nothing depends on introspection. Reading (running, link, state) needs
//   no root: resolved's bus policy lets anyone read.
// - The link splitwan owns for the takeover (a TUN device, or a link made with
//   `ip` without native code) is in resolved-link-linux.ts.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import type { Message, MessageBus } from '@jellybrick/dbus-next';
import { dbusNext, unwrapVariant } from './dbus-next-lazy.js';
import type { Logger } from '../lib/logger.js';
import {
  type LinkDomain,
  type ResolvedApi,
  type ResolvedLink,
  type ResolvedServer,
  type ResolvedState,
  type TakeoverSettings,
  type Watcher,
} from './resolved.js';

const RESOLVE1 = 'org.freedesktop.resolve1';
const RESOLVE1_PATH = '/org/freedesktop/resolve1';
const MANAGER = 'org.freedesktop.resolve1.Manager';
const LINK = 'org.freedesktop.resolve1.Link';
const NM = 'org.freedesktop.NetworkManager';
const NM_PATH = '/org/freedesktop/NetworkManager';
const PROPS = 'org.freedesktop.DBus.Properties';

/** A D-Bus call that failed: what was called and what the bus said. */
export class ResolvedBusError extends Error {
  readonly code = 'SPLITWAN_RESOLVED_BUS';
  constructor(
    readonly call: string,
    readonly dbusName: string,
    message: string,
  ) {
    super(`${call}: ${dbusName ? `${dbusName}: ` : ''}${message}`);
    this.name = 'ResolvedBusError';
  }
}

// ---------------------------------------------------------------------------
// Pure: D-Bus values → the takeover's types

/** `ay` of 4 or 16 bytes → text. */
export function addressText(family: number, bytes: Uint8Array): string | null {
  if (family === 2 && bytes.length === 4) return Array.from(bytes).join('.');
  if (family === 10 && bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
    // the longest run of zero groups (two or more) becomes ::
    let best = -1;
    let bestLen = 0;
    for (let i = 0; i < 8; ) {
      if (groups[i] !== '0') {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && groups[j] === '0') j++;
      if (j - i > bestLen && j - i >= 2) {
        best = i;
        bestLen = j - i;
      }
      i = j;
    }
    if (best < 0) return groups.join(':');
    return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
  }
  return null;
}

/** text → `ay` (the inverse of addressText). */
export function addressBytes(address: string): { family: 2 | 10; bytes: Buffer } {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(address)) return { family: 2, bytes: Buffer.from(address.split('.').map(Number)) };
  const [head = '', tail] = address.split('::');
  const part = (s: string | undefined) => (s ? s.split(':') : []);
  const h = part(head);
  const t = part(tail);
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  const groups = [...h, ...fill, ...t];
  if (groups.length !== 8) throw new Error(`not an IP address: ${address}`);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return { family: 10, bytes: b };
}

type Raw = unknown[];

/** DNSEx entries: `a(iayqs)` on a link, `a(iiayqs)` on the manager (with the ifindex first). */
export function parseServers(raw: unknown, withIfindex: boolean, linkIfindex = 0): ResolvedServer[] {
  if (!Array.isArray(raw)) return [];
  const out: ResolvedServer[] = [];
  for (const e of raw as Raw[]) {
    if (!Array.isArray(e)) continue;
    const [ifindex, family, bytes, port, name] = withIfindex ? e : [linkIfindex, ...e];
    const addr = addressText(Number(family), toBytes(bytes));
    if (addr === null) continue;
    out.push({ family: Number(family) === 10 ? 6 : 4, address: addr, port: Number(port ?? 0), serverName: typeof name === 'string' ? name : '', ifindex: Number(ifindex) });
  }
  return out;
}

/** Domains: `a(sb)` on a link, `a(isb)` on the manager. */
export function parseDomains(raw: unknown, withIfindex: boolean): { ifindex: number; domain: LinkDomain }[] {
  if (!Array.isArray(raw)) return [];
  const out: { ifindex: number; domain: LinkDomain }[] = [];
  for (const e of raw as Raw[]) {
    if (!Array.isArray(e)) continue;
    const [ifindex, domain, routingOnly] = withIfindex ? e : [0, ...e];
    if (typeof domain === 'string') out.push({ ifindex: Number(ifindex), domain: { domain, routingOnly: Boolean(routingOnly) } });
  }
  return out;
}

/** The socket of a `unix:path=...` bus address; null for other kinds (abstract, tcp). */
export function socketPath(address: string): string | null {
  const m = /(?:^|;)unix:(?:[^;]*,)?path=([^,;]+)/.exec(address);
  return m ? decodeURIComponent(m[1]!) : null;
}

function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return Uint8Array.from(v as number[]);
  return new Uint8Array();
}

function unwrap(v: unknown): unknown {
  return unwrapVariant(v);
}

/** The kernel's interface names by index, from /sys/class/net (this process's network namespace). */
export function linkNames(): Map<number, string> {
  const out = new Map<number, string>();
  let names: string[] = [];
  try {
    names = readdirSync('/sys/class/net');
  } catch {
    return out;
  }
  for (const n of names) {
    try {
      out.set(Number(readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8').trim()), n);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// D-Bus

interface NameWatch {
  name: string;
  cb: (running: boolean) => void;
}

export interface LinuxResolvedApiOptions {
  logger: Logger;
  /** A bus address (`unix:path=...`); default $DBUS_SYSTEM_BUS_ADDRESS, else the system bus socket. */
  busAddress?: string;
  /** Per call (default 5 s): a bus that stopped answering is dropped and dialled again. */
  callTimeoutMs?: number;
}

export class LinuxResolvedApi implements ResolvedApi {
  private bus: MessageBus | null = null;
  /** Per connection: the calls waiting on it, failed at once when it breaks. */
  private readonly waiting = new WeakMap<MessageBus, Set<(e: Error) => void>>();
  private readonly watches = new Set<NameWatch>();
  private closed = false;

  constructor(private readonly o: LinuxResolvedApiOptions) {}

  /** false at once without a system bus (a router, a container): no 5 s wait for a socket that is not there. */
  async running(): Promise<boolean> {
    const path = socketPath(this.address());
    if (path !== null && !existsSync(path)) return false;
    return this.hasOwner(RESOLVE1);
  }

  private address(): string {
    return this.o.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? 'unix:path=/var/run/dbus/system_bus_socket';
  }

  async link(ifindex: number): Promise<ResolvedLink | null> {
    let path: string;
    try {
      path = String((await this.call('GetLink', RESOLVE1, RESOLVE1_PATH, MANAGER, 'GetLink', 'i', [ifindex])).body[0]);
    } catch (e) {
      // resolved does not know the link (gone, or never seen): no settings to compare
      if (e instanceof ResolvedBusError && /NoSuchLink|UnknownObject|No link/i.test(`${e.dbusName} ${e.message}`)) return null;
      throw e;
    }
    const all = (await this.call('Link.GetAll', RESOLVE1, path, PROPS, 'GetAll', 's', [LINK])).body[0] as Record<string, unknown>;
    const p = (k: string) => unwrap(all[k]);
    return {
      ifindex,
      ifname: linkNames().get(ifindex) ?? '',
      // DNSEx (resolved ≥ 246) has the port; DNS is the older property.
      dns: p('DNSEx') !== undefined ? parseServers(p('DNSEx'), false, ifindex) : parseServers(((p('DNS') as Raw[] | undefined) ?? []).map((e) => [...(e as Raw), 0, '']), false, ifindex),
      domains: parseDomains(p('Domains'), false).map((d) => d.domain),
      defaultRoute: Boolean(p('DefaultRoute')),
      llmnr: String(p('LLMNR') ?? ''),
      mdns: String(p('MulticastDNS') ?? ''),
    };
  }

  async state(): Promise<ResolvedState> {
    const all = (await this.call('Manager.GetAll', RESOLVE1, RESOLVE1_PATH, PROPS, 'GetAll', 's', [MANAGER])).body[0] as Record<string, unknown>;
    const p = (k: string) => unwrap(all[k]);
    const servers = p('DNSEx') !== undefined ? parseServers(p('DNSEx'), true) : parseServers(((p('DNS') as Raw[] | undefined) ?? []).map((e) => [...(e as Raw), 0, '']), true);
    const fallback = p('FallbackDNSEx') !== undefined ? parseServers(p('FallbackDNSEx'), true) : parseServers(((p('FallbackDNS') as Raw[] | undefined) ?? []).map((e) => [...(e as Raw), 0, '']), true);
    const domains = parseDomains(p('Domains'), true);
    // Every link with a server or a domain, and every link the kernel has (the
    // takeover's own link may have neither left): their per-link properties.
    const names = linkNames();
    const indexes = new Set<number>([...servers.map((s) => s.ifindex), ...domains.map((d) => d.ifindex), ...names.keys()]);
    indexes.delete(0);
    const links: ResolvedLink[] = [];
    for (const i of [...indexes].sort((a, b) => a - b)) {
      try {
        const l = await this.link(i);
        if (l) links.push(l);
      } catch (e) {
        // one link resolved will not describe (loopback, gone meanwhile) does not hide the others
        this.o.logger.debug({ ifindex: i, err: (e as Error).message }, 'systemd-resolved: link not readable');
      }
    }
    return { links, global: servers.filter((s) => s.ifindex === 0), fallback };
  }

  async apply(ifindex: number, s: TakeoverSettings): Promise<void> {
    const plain = s.servers.every((x) => x.port === 53 || x.port === 0);
    if (plain) {
      await this.call('SetLinkDNS', RESOLVE1, RESOLVE1_PATH, MANAGER, 'SetLinkDNS', 'ia(iay)', [ifindex, s.servers.map((x) => { const a = addressBytes(x.address); return [a.family, a.bytes]; })]);
    } else {
      // A port other than 53 needs SetLinkDNSEx (resolved ≥ 246).
      await this.call('SetLinkDNSEx', RESOLVE1, RESOLVE1_PATH, MANAGER, 'SetLinkDNSEx', 'ia(iayqs)', [ifindex, s.servers.map((x) => { const a = addressBytes(x.address); return [a.family, a.bytes, x.port, '']; })]);
    }
    await this.call('SetLinkDomains', RESOLVE1, RESOLVE1_PATH, MANAGER, 'SetLinkDomains', 'ia(sb)', [ifindex, s.domains.map((d) => [d.domain, d.routingOnly])]);
    await this.call('SetLinkDefaultRoute', RESOLVE1, RESOLVE1_PATH, MANAGER, 'SetLinkDefaultRoute', 'ib', [ifindex, s.defaultRoute]);
    await this.call('SetLinkLLMNR', RESOLVE1, RESOLVE1_PATH, MANAGER, 'SetLinkLLMNR', 'is', [ifindex, s.llmnr]);
    await this.call('SetLinkMulticastDNS', RESOLVE1, RESOLVE1_PATH, MANAGER, 'SetLinkMulticastDNS', 'is', [ifindex, s.mdns]);
  }

  async revert(ifindex: number): Promise<void> {
    await this.call('RevertLink', RESOLVE1, RESOLVE1_PATH, MANAGER, 'RevertLink', 'i', [ifindex]);
  }

  async flushCaches(): Promise<void> {
    await this.call('FlushCaches', RESOLVE1, RESOLVE1_PATH, MANAGER, 'FlushCaches', '', []);
  }

  watchResolved(onChange: (running: boolean) => void): Watcher {
    return this.watchName(RESOLVE1, onChange);
  }

  async unmanage(ifname: string): Promise<'unmanaged' | 'absent' | 'pending'> {
    if (!(await this.hasOwner(NM))) return 'absent';
    let dev: string;
    try {
      dev = String((await this.call('NM.GetDeviceByIpIface', NM, NM_PATH, NM, 'GetDeviceByIpIface', 's', [ifname])).body[0]);
    } catch (e) {
      // NetworkManager has not seen the device yet: asked again shortly.
      if (e instanceof ResolvedBusError && /UnknownDevice/i.test(e.dbusName)) return 'pending';
      throw e;
    }
    await this.call('NM Device.Managed=false', NM, dev, PROPS, 'Set', 'ssv', ['org.freedesktop.NetworkManager.Device', 'Managed', new (dbusNext().Variant)('b', false)]);
    return 'unmanaged';
  }

  watchNetworkManager(onChange: (running: boolean) => void): Watcher {
    return this.watchName(NM, onChange);
  }

  close(): void {
    this.closed = true;
    this.watches.clear();
    this.drop();
  }

  // --- connection

  private connect(): MessageBus {
    if (this.closed) throw new ResolvedBusError('connect', '', 'closed');
    if (this.bus) return this.bus;
    const bus = dbusNext().sessionBus({ busAddress: this.address() });
    // 'error' is emitted but missing from the library's event map.
    (bus as unknown as NodeJS.EventEmitter).on('error', (err: Error) => {
      // An unhandled 'error' would throw; the calls waiting on this connection fail now; the next call dials again.
      this.o.logger.debug({ err: err.message }, 'system bus connection failed');
      for (const fail of this.waiting.get(bus) ?? []) fail(err);
      if (this.bus === bus) this.drop();
    });
    bus.on('message', (m: Message) => {
      if (m.type !== 4 /* SIGNAL */ || m.member !== 'NameOwnerChanged' || m.interface !== 'org.freedesktop.DBus') return;
      const [name, , owner] = m.body as [string, string, string];
      for (const w of this.watches) if (w.name === name) w.cb(owner !== '');
    });
    // dbus-next does not pass the stream's end on to the bus: a dbus-daemon that went away is seen here.
    const conn = (bus as unknown as { _connection?: { on?: (ev: string, f: () => void) => void } })._connection;
    conn?.on?.('end', () => {
      for (const fail of this.waiting.get(bus) ?? []) fail(new Error('the bus closed the connection'));
      if (this.bus === bus) this.drop();
    });
    this.bus = bus;
    for (const name of new Set([...this.watches].map((w) => w.name))) void this.addMatch(bus, name);
    return bus;
  }

  private drop(): void {
    const b = this.bus;
    this.bus = null;
    try {
      b?.disconnect();
    } catch {
      // already closed
    }
  }

  private async addMatch(bus: MessageBus, name: string): Promise<void> {
    const rule = `type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${name}'`;
    try {
      await this.callOn(bus, 'AddMatch', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch', 's', [rule]);
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message, name }, 'could not subscribe to bus name changes; the periodic check still follows them');
    }
  }

  private watchName(name: string, cb: (running: boolean) => void): Watcher {
    const w: NameWatch = { name, cb };
    const first = ![...this.watches].some((x) => x.name === name);
    this.watches.add(w);
    if (first && this.bus) void this.addMatch(this.bus, name);
    else if (!this.bus && !this.closed) {
      try {
        this.connect(); // subscribes every watched name
      } catch {
        // the next call dials again
      }
    }
    return { stop: () => this.watches.delete(w) };
  }

  private async hasOwner(name: string): Promise<boolean> {
    const r = await this.call('NameHasOwner', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'NameHasOwner', 's', [name]);
    return r.body[0] === true;
  }

  private call(what: string, destination: string, path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<Message> {
    return this.callOn(this.connect(), what, destination, path, iface, member, signature, body);
  }

  private callOn(bus: MessageBus, what: string, destination: string, path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<Message> {
    const ms = this.o.callTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (this.bus === bus) this.drop();
        reject(new ResolvedBusError(what, '', `no answer from the system bus within ${ms} ms`));
      }, ms);
    });
    let waiters = this.waiting.get(bus);
    if (!waiters) this.waiting.set(bus, (waiters = new Set()));
    let fail: ((e: Error) => void) | undefined;
    const broken = new Promise<never>((_, reject) => {
      fail = (e) => reject(new ResolvedBusError(what, '', `the system bus connection failed: ${e.message}`));
    });
    waiters.add(fail!);
    const call = bus.call(new (dbusNext().Message)({ destination, path, interface: iface, member, signature, body })).then(
      (m) => {
        if (!m) throw new ResolvedBusError(what, '', 'no reply');
        return m;
      },
      (e: unknown) => {
        if (e instanceof dbusNext().DBusError) throw new ResolvedBusError(what, e.type, e.text ?? e.message);
        throw new ResolvedBusError(what, '', (e as Error).message);
      },
    );
    return Promise.race([call, timeout, broken]).finally(() => {
      clearTimeout(timer);
      waiters.delete(fail!);
    });
  }
}
