// A real systemd-resolved (and, on request, a real NetworkManager) inside a
// network namespace of a lab, for tests and `splitwan demo`: never on the
// machine itself (installing systemd-resolved rewrites the machine's own
// /etc/resolv.conf, and NetworkManager takes over its interfaces).
//
//   netns NS (given: e.g. a lab's router) ── plus a mount namespace of our own,
//   (and a UTS namespace), held by one `sleep infinity` (the holder) started with
//   `ip netns exec NS unshare --mount --uts --propagation private`:
//     /run              tmpfs (private: /run/dbus, /run/systemd/resolve, /run/NetworkManager)
//     /etc/passwd,group bind mounts of copies with a systemd-resolve user added
//     /etc/resolv.conf  bind mount of a copy naming the stub (127.0.0.53)
//     /var/lib, /sys    (NetworkManager only) tmpfs; /sys bind-remounted read-only
//     dbus-daemon       --config-file=<tmp>/bus.conf: a system bus on /run/dbus/system_bus_socket
//     systemd-resolved  the Debian package's binary, unpacked from the cache
//     NetworkManager    the same, dns=systemd-resolved, its keyfiles in <tmp>/nm
//   Every command of the lab runs with `nsenter -t HOLDER -m -u -n`: resolved, the
//   bus, resolvectl, nmcli and a daemon started later all see the same /run.
//
// Packages: `apt-get download` once into a cache (SPLITWAN_LAB_CACHE, default
// ~/.cache/splitwan-lab), unpacked there with `dpkg -x`, never installed:
// systemd-resolved with the libsystemd-shared of the same version;
// network-manager, libnm0, libndp0; dbus-daemon only when the machine has
// none. Checked against Debian 12 (systemd 252, NetworkManager 1.42).
//
// NetworkManager in a namespace: it waits for udev to "initialize" every
// device unless /sys is read-only (it then takes it for a container), so /sys
// is bind-remounted read-only in this mount namespace; it keeps state in
// /var/lib/NetworkManager, so /var/lib is a tmpfs here.
//
// Safety: the machine's /etc/resolv.conf, /run and system bus are never
// touched: every mount is made inside the private mount namespace (propagation
// private, under `ip netns exec`'s slave mounts). Processes are stopped by the
// pids we spawned; stop() runs in finally paths and at process exit.
import type { ChildProcess } from 'node:child_process';
import { Message, sessionBus, type MessageBus } from '@jellybrick/dbus-next';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { killCommands, LabCommandError, must, run, Supervised, which, type ExecOptions, type ExecResult } from './lab.js';

export interface ResolvedLabOptions {
  /** The network namespace (`ip netns` name) to run in. */
  netns: string;
  /** Also run NetworkManager (its packages are downloaded when missing). */
  networkManager?: boolean | NetworkManagerOptions;
  /** Package cache; default $SPLITWAN_LAB_CACHE, else ~/.cache/splitwan-lab. */
  cacheDir?: string;
  /** Lines for resolved.conf's [Resolve], over the lab's defaults (FallbackDNS= empty, LLMNR=no, MulticastDNS=no). */
  resolvedConf?: Record<string, string>;
  /** Readiness timeouts (default 15 s each). */
  timeoutMs?: number;
  /** Bus names root may own on the lab's bus besides the services' (a test's stand-in for logind: org.freedesktop.login1). */
  busOwners?: string[];
}

export interface NetworkManagerOptions {
  /** Keyfile connections (file name → content), written 0600 before NetworkManager starts. */
  connections?: Record<string, string>;
  /** Extra lines for NetworkManager.conf, by section. */
  conf?: Record<string, Record<string, string>>;
}

export interface ResolvedLab {
  netns: string;
  /** The process holding the mount and UTS namespaces: `nsenter -t PID -m -u -n`. */
  holderPid: number;
  /** The private system bus, reachable from outside the namespace (root): for dbus clients in this process. */
  busAddress: string;
  /** Private to this lab (0700), removed by stop(). */
  tmpDir: string;
  /** Whether NetworkManager runs. */
  networkManager: boolean;
  /** Runs argv inside (netns + mount namespace). Never throws on a non-zero exit. */
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-running process inside; stopped by stop() if still running. */
  spawn(name: string, argv: readonly string[], env?: NodeJS.ProcessEnv): Supervised;
  /** The unpacked resolvectl, inside. */
  resolvectl(...args: string[]): Promise<ExecResult>;
  /** The unpacked nmcli, inside (NetworkManager only). */
  nmcli(...args: string[]): Promise<ExecResult>;
  /** systemd-resolved's pid while it runs. */
  resolvedPid(): number | null;
  /** SIGTERM to resolved, waits for its exit. */
  stopResolved(): Promise<void>;
  /** Starts resolved again; with `forgetState`, first removes what it saved under /run/systemd/resolve (a reboot). */
  startResolved(o?: { forgetState?: boolean }): Promise<void>;
  stopNetworkManager(): Promise<void>;
  startNetworkManager(): Promise<void>;
  /** Writes a keyfile (0600) and reloads NetworkManager's connections. */
  addConnection(file: string, content: string): Promise<void>;
  /** Pids of every process the lab started that runs. */
  pids(): number[];
  /** Stops everything it started (by pid) and removes its files. Idempotent. */
  stop(): Promise<void>;
}

export interface UnpackedPackages {
  /** LD_LIBRARY_PATH for the unpacked binaries. */
  libraryPath: string;
  resolved: string;
  resolvectl: string;
  /** The bus policy files to include (resolve1's, NetworkManager's). */
  busPolicies: string[];
  dbusDaemon: string;
  networkManager?: string;
  nmcli?: string;
  /** Versions unpacked, for the log. */
  versions: Record<string, string>;
}

const TRIPLETS: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', arm: 'arm-linux-gnueabihf', ia32: 'i386-linux-gnu', s390x: 's390x-linux-gnu', ppc64: 'powerpc64le-linux-gnu', riscv64: 'riscv64-linux-gnu' };

const SETS = {
  resolved: ['systemd-resolved', 'libsystemd-shared'],
  nm: ['network-manager', 'libnm0', 'libndp0'],
  dbus: ['dbus-daemon', 'libdbus-1-3'],
} as const;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The multiarch directory of the unpacked packages: `apt-get download` fetched
 * them for this machine's own architecture, which is not process.arch when
 * the test runs in an emulated Node (`npm run test:arch`: process.arch is
 * `arm`, the packages are x86-64, and NetworkManager did not find libndp.so.0
 * under arm-linux-gnueabihf). process.arch's triplet only when none is there.
 */
function unpackedTriplet(root: string): string {
  const dir = join(root, 'usr', 'lib');
  const found = existsSync(dir) ? readdirSync(dir).filter((d) => /^[a-z0-9_]+-linux-gnu[a-z]*$/.test(d)) : [];
  return found[0] ?? TRIPLETS[process.arch] ?? `${process.arch}-linux-gnu`;
}

/** Root, Linux, the tools; apt-get and dpkg when the cache is empty. */
export function resolvedLabSupported(cacheDir = defaultCacheDir()): { ok: true } | { ok: false; why: string } {
  if (process.platform !== 'linux') return { ok: false, why: `needs Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, why: 'needs root (namespaces, mounts)' };
  const missing = ['ip', 'unshare', 'nsenter', 'mount', 'sleep'].filter((t) => which(t) === null);
  if (missing.length) return { ok: false, why: `missing on PATH: ${missing.join(', ')}` };
  if (!existsSync(join(cacheDir, 'resolved', 'ok')) && (which('apt-get') === null || which('dpkg') === null))
    return { ok: false, why: `no unpacked systemd-resolved in ${cacheDir} and no apt-get/dpkg to fetch it` };
  return { ok: true };
}

export function defaultCacheDir(): string {
  return process.env.SPLITWAN_LAB_CACHE || join(homedir(), '.cache', 'splitwan-lab');
}

/**
 * The Debian packages, unpacked once into the cache (a second call finds them).
 * Two processes filling the cache at once each unpack into a temp dir; the
 * first rename wins.
 */
export async function ensurePackages(o: { cacheDir?: string; networkManager?: boolean } = {}): Promise<UnpackedPackages> {
  const cache = o.cacheDir ?? defaultCacheDir();
  mkdirSync(cache, { recursive: true, mode: 0o755 });
  const versions: Record<string, string> = {};
  const rootOf = async (set: keyof typeof SETS): Promise<string> => {
    const dir = join(cache, set);
    if (!existsSync(join(dir, 'ok'))) await fetchSet(cache, set);
    Object.assign(versions, JSON.parse(readFileSync(join(dir, 'ok'), 'utf8')) as Record<string, string>);
    return join(dir, 'root');
  };
  const r = await rootOf('resolved');
  const triplet = unpackedTriplet(r);
  const firstOf = (...paths: string[]) => paths.find((p) => existsSync(p)) ?? paths[0]!;
  const libs = [join(r, 'usr', 'lib', triplet, 'systemd'), join(r, 'usr', 'lib', triplet)];
  const out: UnpackedPackages = {
    libraryPath: '',
    resolved: firstOf(join(r, 'lib', 'systemd', 'systemd-resolved'), join(r, 'usr', 'lib', 'systemd', 'systemd-resolved')),
    resolvectl: join(r, 'usr', 'bin', 'resolvectl'),
    busPolicies: [join(r, 'usr', 'share', 'dbus-1', 'system.d', 'org.freedesktop.resolve1.conf')],
    dbusDaemon: which('dbus-daemon') ?? '',
    versions,
  };
  if (!out.dbusDaemon) {
    const d = await rootOf('dbus');
    out.dbusDaemon = join(d, 'usr', 'bin', 'dbus-daemon');
    libs.push(join(d, 'usr', 'lib', triplet), join(d, 'lib', triplet));
  }
  if (o.networkManager) {
    const n = await rootOf('nm');
    out.networkManager = join(n, 'usr', 'sbin', 'NetworkManager');
    out.nmcli = join(n, 'usr', 'bin', 'nmcli');
    out.busPolicies.push(join(n, 'usr', 'share', 'dbus-1', 'system.d', 'org.freedesktop.NetworkManager.conf'));
    libs.push(join(n, 'usr', 'lib', triplet));
  }
  out.libraryPath = libs.filter((p) => existsSync(p)).join(':');
  for (const p of [out.resolved, out.resolvectl, out.dbusDaemon, ...out.busPolicies, ...(o.networkManager ? [out.networkManager!, out.nmcli!] : [])])
    if (!existsSync(p)) throw new Error(`resolved lab: ${p} is missing from the unpacked packages (a different Debian layout?)`);
  return out;
}

async function fetchSet(cache: string, set: keyof typeof SETS): Promise<void> {
  const work = mkdtempSync(join(cache, `.${set}-${process.pid}-`));
  try {
    const dl = ['apt-get', '-q', '-o', 'APT::Sandbox::User=root', 'download', ...SETS[set]];
    let r = await run(dl, { timeoutMs: 180_000, cwd: work });
    if (r.code !== 0 && /Unable to locate|Can't select|has no installation candidate/i.test(r.stderr)) {
      // A machine whose package lists were never fetched.
      await must(['apt-get', 'update', '-qq'], { timeoutMs: 300_000 });
      r = await run(dl, { timeoutMs: 180_000, cwd: work });
    }
    if (r.code !== 0) throw new LabCommandError(dl, r.code, r.stderr);
    const debs = readdirSync(work).filter((f) => f.endsWith('.deb'));
    const versions: Record<string, string> = {};
    for (const d of debs) {
      await must(['dpkg', '-x', join(work, d), join(work, 'root')], { timeoutMs: 60_000 });
      const m = /^([^_]+)_([^_]+)_/.exec(d);
      if (m) versions[m[1]!] = decodeURIComponent(m[2]!.replace(/%3a/gi, ':'));
      rmSync(join(work, d));
    }
    writeFileSync(join(work, 'ok'), JSON.stringify(versions));
    try {
      renameSync(work, join(cache, set));
    } catch {
      // another process was first: its copy is as good
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

let seq = 0;

export async function startResolvedLab(opts: ResolvedLabOptions): Promise<ResolvedLab> {
  const support = resolvedLabSupported(opts.cacheDir);
  if (!support.ok) throw new Error(`resolved lab not supported: ${support.why}`);
  const nmOpts: NetworkManagerOptions | null = opts.networkManager ? (opts.networkManager === true ? {} : opts.networkManager) : null;
  const pk = await ensurePackages({ ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}), networkManager: nmOpts !== null });
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const tmpDir = mkdtempSync(join(tmpdir(), `splitwan-resolved-${process.pid}-${seq++}-`)); // 0700
  const procs: Supervised[] = [];
  const commands = new Set<ChildProcess>();
  let holder: Supervised | null = null;
  let resolved: Supervised | null = null;
  let nm: Supervised | null = null;
  let stopping: Promise<void> | null = null;
  const libEnv = { ...process.env, LD_LIBRARY_PATH: pk.libraryPath };

  const syncCleanup = () => {
    for (const p of procs) p.signal('SIGKILL');
    rmSync(tmpDir, { recursive: true, force: true });
  };
  process.on('exit', syncCleanup);

  const inside = (argv: readonly string[]) => {
    if (!holder) throw new Error('resolved lab: no holder');
    return ['nsenter', '-t', String(holder.pid), '-m', '-u', '-n', '--', ...argv];
  };
  const exec = (argv: readonly string[], o: ExecOptions = {}) => {
    if (stopping) return Promise.reject(new Error('resolved lab is stopped'));
    return run(inside(argv), o, commands);
  };
  const mustIn = async (argv: readonly string[], o: ExecOptions = {}) => {
    const r = await exec(argv, o);
    if (r.code !== 0) throw new LabCommandError(argv, r.code, r.stderr);
    return r;
  };
  const spawnIn = (name: string, argv: readonly string[], env: NodeJS.ProcessEnv = process.env) => {
    if (stopping) throw new Error('resolved lab is stopped');
    const p = new Supervised(name, 'resolved-lab', inside(argv), env);
    procs.push(p);
    return p;
  };
  /** A path inside the mount namespace, seen from here. */
  const within = (p: string) => `/proc/${holder!.pid}/root${p}`;

  const busAddress = () => `unix:path=${within('/run/dbus/system_bus_socket')}`;
  // One connection of ours to the lab's bus, for readiness checks.
  let watchBus: MessageBus | null = null;
  const hasOwner = async (name: string): Promise<boolean> => {
    if (!watchBus) {
      const b = sessionBus({ busAddress: busAddress() });
      (b as unknown as NodeJS.EventEmitter).on('error', () => {
        if (watchBus === b) watchBus = null;
      });
      watchBus = b;
    }
    const call = watchBus.call(new Message({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameHasOwner', signature: 's', body: [name] }));
    const reply = await Promise.race([call, sleep(2000).then(() => null)]);
    return reply?.body[0] === true;
  };
  const waitName = async (name: string, proc: Supervised) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await hasOwner(name).catch(() => false)) return;
      if (!proc.running) throw new Error(`waiting for ${name} on the lab's bus: ${proc.describeExit()}`);
      if (Date.now() > deadline) throw new Error(`${name} did not appear on the lab's bus within ${timeoutMs} ms; output: ${proc.tail.trim().slice(-800)}`);
      await sleep(50);
    }
  };

  const startResolvedNow = async (o: { forgetState?: boolean } = {}) => {
    if (resolved?.running) return;
    // resolved creates /run/systemd/resolve itself, owned by its user; it refuses one owned by root.
    if (o.forgetState) rmSync(within('/run/systemd/resolve'), { recursive: true, force: true });
    resolved = spawnIn('systemd-resolved', [pk.resolved], { ...libEnv, SYSTEMD_LOG_TARGET: 'console', SYSTEMD_LOG_LEVEL: process.env.SPLITWAN_LAB_DEBUG ? 'debug' : 'info' });
    await waitName('org.freedesktop.resolve1', resolved);
  };

  const nmArgs = () => [
    pk.networkManager!,
    '--no-daemon',
    '--debug', // logs to stderr (kept in the process's tail)
    `--config=${join(tmpDir, 'nm', 'NetworkManager.conf')}`,
    `--config-dir=${join(tmpDir, 'nm', 'conf.d')}`,
    `--system-config-dir=${join(tmpDir, 'nm', 'system-conf.d')}`,
    `--intern-config=${join(tmpDir, 'nm', 'intern.conf')}`,
    `--state-file=${join(tmpDir, 'nm', 'NetworkManager.state')}`,
    '--pid-file=/run/NetworkManager/NetworkManager.pid',
  ];
  const startNmNow = async () => {
    if (!nmOpts) throw new Error('resolved lab: started without networkManager');
    if (nm?.running) return;
    nm = spawnIn('NetworkManager', nmArgs(), libEnv);
    await waitName('org.freedesktop.NetworkManager', nm);
    // "startup complete": devices assumed or activated, DNS pushed
    const deadline = Date.now() + timeoutMs;
    while (!/startup complete/.test(nm.tail)) {
      if (!nm.running) throw new Error(nm.describeExit());
      if (Date.now() > deadline) break; // a connection still activating: not an error of the lab
      await sleep(50);
    }
  };

  const stopImpl = async () => {
    const errors: string[] = [];
    watchBus?.disconnect();
    watchBus = null;
    await killCommands(commands);
    // Clients first (a daemon under test, NetworkManager), then resolved, the bus, the holder last.
    const order = (p: Supervised) => (p === holder ? 3 : p.name === 'dbus-daemon' ? 2 : p.name === 'systemd-resolved' ? 1 : 0);
    for (const rank of [0, 1, 2, 3]) await Promise.all(procs.filter((p) => order(p) === rank).map((p) => p.stop(3000)));
    for (const p of procs) if (p.running) errors.push(`${p.name} (pid ${p.pid}) survived SIGKILL`);
    rmSync(tmpDir, { recursive: true, force: true });
    process.removeListener('exit', syncCleanup);
    if (errors.length) throw new Error(`resolved lab: stop: ${errors.join('; ')}`);
  };
  const stop = () => (stopping ??= stopImpl());

  try {
    // 1. The mount namespace, held by `sleep infinity` (ip netns exec → unshare → sleep: one pid).
    if (!existsSync(`/run/netns/${opts.netns}`)) throw new Error(`resolved lab: no network namespace ${opts.netns}`);
    const ownMnt = readlinkSync('/proc/self/ns/mnt');
    // A UTS namespace too: nothing in the lab can set the machine's hostname.
    holder = new Supervised('holder', 'resolved-lab', ['ip', 'netns', 'exec', opts.netns, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sleep', 'infinity'], process.env);
    procs.push(holder);
    const h = holder;
    await h.waitUntil('the mount namespace', () => {
      try {
        return readlinkSync(`/proc/${h.pid}/exe`).endsWith('/sleep') && readlinkSync(`/proc/${h.pid}/ns/mnt`) !== ownMnt;
      } catch {
        return false;
      }
    }, timeoutMs);

    // 2. Files: passwd/group with the service users, resolv.conf, the bus config.
    const passwd = readFileSync('/etc/passwd', 'utf8');
    const group = readFileSync('/etc/group', 'utf8');
    const used = new Set([...passwd.matchAll(/^[^:]*:[^:]*:(\d+):/gm)].map((m) => Number(m[1])));
    const usedG = new Set([...group.matchAll(/^[^:]*:[^:]*:(\d+):/gm)].map((m) => Number(m[1])));
    let id = 999;
    while (used.has(id) || usedG.has(id)) id--;
    const addUser = !/^systemd-resolve:/m.test(passwd);
    writeFileSync(join(tmpDir, 'passwd'), passwd + (passwd.endsWith('\n') ? '' : '\n') + (addUser ? `systemd-resolve:x:${id}:${id}:systemd Resolver (splitwan lab):/:/usr/sbin/nologin\n` : ''), { mode: 0o644 });
    writeFileSync(join(tmpDir, 'group'), group + (group.endsWith('\n') ? '' : '\n') + (addUser && !/^systemd-resolve:/m.test(group) ? `systemd-resolve:x:${id}:\n` : ''), { mode: 0o644 });
    writeFileSync(join(tmpDir, 'resolv.conf'), '# splitwan resolved lab: the stub, as /run/systemd/resolve/stub-resolv.conf has it\nnameserver 127.0.0.53\noptions edns0 trust-ad\n', { mode: 0o644 });
    mkdirSync(join(tmpDir, 'bus.d'), { mode: 0o755 });
    for (const p of pk.busPolicies) writeFileSync(join(tmpDir, 'bus.d', p.split('/').pop()!), readFileSync(p));
    writeFileSync(join(tmpDir, 'bus.conf'), busConfig(join(tmpDir, 'bus.d'), opts.busOwners ?? []), { mode: 0o644 });

    // 3. Mounts, inside only.
    await mustIn(['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=32m', 'splitwan-lab-run', '/run']);
    for (const f of ['passwd', 'group', 'resolv.conf']) await mustIn(['mount', '--bind', join(tmpDir, f), `/etc/${f}`]);
    if (nmOpts) {
      await mustIn(['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=16m', 'splitwan-lab-varlib', '/var/lib']);
      // NetworkManager uses udev unless /sys is read-only; no udev runs here, so it would wait forever.
      await mustIn(['mount', '-o', 'remount,bind,ro', '/sys']);
    }
    mkdirSync(within('/run/dbus'), { mode: 0o755 });
    mkdirSync(within('/run/systemd/resolved.conf.d'), { recursive: true, mode: 0o755 });
    const conf = { FallbackDNS: '', LLMNR: 'no', MulticastDNS: 'no', ...opts.resolvedConf };
    writeFileSync(within('/run/systemd/resolved.conf.d/splitwan-lab.conf'), `[Resolve]\n${Object.entries(conf).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);

    // 4. The bus.
    const bus = spawnIn('dbus-daemon', [pk.dbusDaemon, `--config-file=${join(tmpDir, 'bus.conf')}`, '--nofork', '--nopidfile', '--print-address=1'], libEnv);
    await bus.waitUntil('the lab bus', () => /unix:path=\/run\/dbus\/system_bus_socket/.test(bus.tail), timeoutMs);

    // 5. resolved.
    await startResolvedNow();

    // 6. NetworkManager.
    if (nmOpts) {
      const nmDir = join(tmpDir, 'nm');
      for (const d of ['', 'conf.d', 'system-conf.d']) mkdirSync(join(nmDir, d), { recursive: true, mode: 0o755 });
      mkdirSync(join(nmDir, 'connections'), { mode: 0o700 });
      mkdirSync(within('/run/NetworkManager'), { mode: 0o755 });
      const sections: Record<string, Record<string, string>> = {
        // hostname-mode=none: no hostname from DHCP (the lab's UTS namespace is private anyway).
        main: { plugins: 'keyfile', dns: 'systemd-resolved', 'rc-manager': 'unmanaged', 'auth-polkit': 'false', 'no-auto-default': '*', 'hostname-mode': 'none' },
        keyfile: { path: join(nmDir, 'connections') },
        logging: { level: 'INFO', domains: 'DNS:DEBUG,CORE,DEVICE,DHCP4' },
      };
      for (const [s, kv] of Object.entries(nmOpts.conf ?? {})) sections[s] = { ...sections[s], ...kv };
      writeFileSync(join(nmDir, 'NetworkManager.conf'), Object.entries(sections).map(([s, kv]) => `[${s}]\n${Object.entries(kv).map(([k, v]) => `${k}=${v}`).join('\n')}\n`).join('\n'));
      for (const [f, text] of Object.entries(nmOpts.connections ?? {})) writeFileSync(join(nmDir, 'connections', f), text, { mode: 0o600 });
      await startNmNow();
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  const h = holder!;
  return {
    netns: opts.netns,
    holderPid: h.pid,
    busAddress: busAddress(),
    tmpDir,
    networkManager: nmOpts !== null,
    exec,
    spawn: spawnIn,
    resolvectl: (...args) => exec([pk.resolvectl, '--no-pager', ...args], { env: libEnv }),
    nmcli: (...args) => {
      if (!pk.nmcli) return Promise.reject(new Error('resolved lab: started without networkManager'));
      return exec([pk.nmcli, ...args], { env: libEnv, timeoutMs: 30_000 });
    },
    resolvedPid: () => (resolved?.running ? resolved.pid : null),
    stopResolved: async () => {
      await resolved?.stop(5000);
    },
    startResolved: (o) => startResolvedNow(o),
    stopNetworkManager: async () => {
      await nm?.stop(5000);
    },
    startNetworkManager: () => startNmNow(),
    addConnection: async (file, content) => {
      if (!nmOpts) throw new Error('resolved lab: started without networkManager');
      writeFileSync(join(tmpDir, 'nm', 'connections', file), content, { mode: 0o600 });
      const r = await exec([pk.nmcli!, 'connection', 'reload'], { env: libEnv, timeoutMs: 30_000 });
      if (r.code !== 0) throw new LabCommandError(['nmcli', 'connection', 'reload'], r.code, r.stderr);
    },
    pids: () => procs.filter((p) => p.running).map((p) => p.pid),
    stop,
  };
}

/** One link as `resolvectl status IF` shows it, the lines that matter. */
export interface ResolvectlLink {
  scopes: string;
  dns: string[];
  domains: string[];
  defaultRoute: boolean;
}

/** `resolvectl status IF` inside the lab; null when resolved does not know the link. */
export async function resolvectlLink(lab: Pick<ResolvedLab, 'resolvectl'>, ifname: string): Promise<ResolvectlLink | null> {
  const r = await lab.resolvectl('status', ifname);
  if (r.code !== 0) return null;
  const field = (k: string) => new RegExp(`^\\s*${k}:\\s*(.*)$`, 'm').exec(r.stdout)?.[1]?.trim() ?? '';
  return {
    scopes: field('Current Scopes'),
    dns: field('DNS Servers').split(/\s+/).filter(Boolean),
    domains: field('DNS Domain').split(/\s+/).filter(Boolean),
    defaultRoute: /\+DefaultRoute/.test(field('Protocols')),
  };
}

/** A system bus like Debian's system.conf (default deny, the services' own policies included), on the lab's /run. */
function busConfig(includeDir: string, owners: readonly string[]): string {
  const own = owners.filter((n) => /^[A-Za-z0-9_.-]+$/.test(n)).map((n) => `\n  <policy user="root"><allow own="${n}"/><allow send_destination="${n}"/></policy>`).join('');
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <includedir>${includeDir}</includedir>${own}
</busconfig>
`;
}
