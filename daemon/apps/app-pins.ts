// Per-app split (issue 16): which cgroups are pinned to which path, kept
// true while the daemon runs. Three sources:
// - `splitwan exec --via PATH`: the CLI's own process is moved into PATH's
//   cgroup (`<root>/via-<path>`, made on demand), then it starts the program;
// - `apps: [{exe: ...}]`: running processes of that executable are moved
//   into the same cgroup (a scan of /proc every second);
// - `apps: [{cgroup: PATTERN}]`: cgroups that match (another program's, a
//   desktop's app scopes) are pinned where they are; nothing is moved.
// The ruleset matches sockets by cgroup (dataplane/app-rules.ts), so every
// change here re-plans; each pinned path gets its own resolver (PathDns).
// Our cgroups go when their last process has exited (cgroup.events
// `populated 0`, read on every tick). OS effects: CgroupOps (cgroups-linux.ts).
import type { Config, PathName } from '../../config/types.js';
import { cgroupPatternLevels, cgroupPatternMatches, levelMatches } from '../../config/app-patterns.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import { NFT_SAFE_CGROUP, type AppCgroupInput } from '../dataplane/app-rules.js';
import { nftCgroupPath, type CgroupOps } from './cgroups.js';

/** Where our cgroups go, under the cgroup2 root (SPLITWAN_CGROUP_ROOT overrides it: tests). */
export const DEFAULT_CGROUP_ROOT = 'splitwan.slice';
const TICK_MS = 1000;
/** Pattern entries are looked for every this many ticks. */
const PATTERN_EVERY = 2;
/** A cgroup we made that never held a process (the CLI died before the move) goes after this long. */
const UNUSED_MS = 10_000;
/** At most this many cgroups pinned by patterns (a pattern as wide as `*` must not make a ruleset of thousands). */
export const MAX_PATTERN_CGROUPS = 256;

/** The resolver of one pinned path: its ports on 127.0.0.1 and ::1 (null: none on that family). */
export interface PathDns {
  v4: number | null;
  v6: number | null;
  close(): Promise<void>;
}

export class AppPinError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Pinned {
  rel: string;
  path: PathName;
  /** exec: `splitwan exec`; exe: an `apps:` exe entry; cgroup: an `apps:` cgroup pattern (not ours: never removed). */
  kinds: Set<'exec' | 'exe' | 'cgroup'>;
  id: number;
  madeAt: number;
  seenPopulated: boolean;
}

export interface AppPinReport {
  path: string;
  cgroup: string;
  kind: string[];
  /** Refused now: its gateway or link is down (dataplane/app-rules.ts). */
  refused?: boolean;
}

export interface AppPinsOptions {
  cgroups: CgroupOps;
  clock: Clock;
  logger: Logger;
  config: () => Config;
  /** Our cgroups' parent, relative to the cgroup2 root. */
  root?: string;
  /** Re-plans and applies the ruleset (it reads inputs()); resolves when the kernel has it. */
  apply: () => Promise<void>;
  /** Starts the resolver of a pinned path. */
  dns: (path: PathName) => Promise<PathDns>;
}

/** `gw:vps` → `via-gw-vps`: a cgroup name for a path. */
export function cgroupNameOf(path: PathName): string {
  return `via-${path.replace(':', '-')}`;
}

/** A path by the name a person gives (breakout, tunnel, a gateway's or a link's name; case does not matter); throws naming the known ones. */
export function pathByName(c: Config, name: string): PathName {
  const lower = name.toLowerCase().replace(/^(gw|link):/, '');
  if (lower === 'breakout' || lower === 'tunnel') return lower;
  const gw = [...c.tunnel.gateways, ...(c.tunnel.unmanaged ?? [])].find((g) => g.name.toLowerCase() === lower);
  if (gw) return `gw:${gw.name}`;
  const link = c.breakout.links?.find((l) => l.name.toLowerCase() === lower);
  if (link) return `link:${link.name}`;
  throw new AppPinError('SPLITWAN_APPS_UNKNOWN_PATH', `no path named "${name}": the paths are ${knownPaths(c).join(', ')}`);
}

export function knownPaths(c: Config): string[] {
  return ['breakout', 'tunnel', ...c.tunnel.gateways.map((g) => g.name), ...(c.tunnel.unmanaged ?? []).map((g) => g.name), ...(c.breakout.links ?? []).map((l) => l.name)];
}

export class AppPins {
  private readonly pinned = new Map<string, Pinned>();
  private readonly dns = new Map<PathName, PathDns>();
  private mountPoint: string | null = null;
  private timer: unknown = null;
  private ticks = 0;
  private stopped = true;
  /** One change at a time: a pin, a tick, a stop. */
  private chain: Promise<unknown> = Promise.resolve();
  readonly root: string;

  constructor(private readonly o: AppPinsOptions) {
    this.root = (o.root ?? DEFAULT_CGROUP_ROOT).replace(/^\/+|\/+$/g, '');
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Finds the cgroup2 mount and removes empty cgroups a previous run left; then ticks. */
  async start(): Promise<void> {
    this.stopped = false;
    this.mountPoint = await this.o.cgroups.mount();
    if (this.mountPoint !== null) await this.serial(() => this.removeStale());
    this.arm();
  }

  /** `splitwan exec`: `pid` (the CLI) into `via`'s cgroup, after the rules for it are in the kernel. */
  exec(via: string, pid: number): Promise<{ path: PathName; cgroup: string }> {
    const path = pathByName(this.o.config(), via);
    if (!Number.isSafeInteger(pid) || pid <= 1) throw new AppPinError('SPLITWAN_APPS_PID', `${pid} is not a process to move`);
    return this.serial(async () => {
      const rel = await this.ensurePath(path, 'exec');
      try {
        await this.o.cgroups.move(pid, rel);
      } catch (e) {
        throw new AppPinError('SPLITWAN_APPS_MOVE', `cannot move process ${pid} into ${rel}: ${(e as Error).message}`);
      }
      this.pinned.get(rel)!.seenPopulated = true;
      this.o.logger.info({ pid, path, cgroup: rel }, 'a program takes its own path (splitwan exec)');
      return { path, cgroup: rel };
    });
  }

  /** What the ruleset matches now: cgroups that still have the id they were pinned with. */
  inputs(): AppCgroupInput[] {
    if (this.mountPoint === null) return [];
    const out: AppCgroupInput[] = [];
    for (const p of this.pinned.values()) {
      // A cgroup gone (or made again) since: nft would refuse the whole ruleset for it.
      if (this.o.cgroups.idNow(p.rel) !== p.id) continue;
      const d = this.dns.get(p.path);
      out.push({ path: p.path, nftPath: nftCgroupPath(this.mountPoint, p.rel), level: p.rel.split('/').length, id: p.id, dns4: d?.v4 ?? null, dns6: d?.v6 ?? null });
    }
    return out;
  }

  status(refused: (path: PathName) => boolean): AppPinReport[] {
    return [...this.pinned.values()].map((p) => ({ path: p.path, cgroup: p.rel, kind: [...p.kinds].sort(), ...(refused(p.path) ? { refused: true } : {}) }));
  }

  /** One pass now (the timer's; tests call it): removes our empty cgroups, moves exe entries' processes, looks for pattern cgroups. */
  tick(): Promise<void> {
    return this.serial(async () => {
      if (this.mountPoint === null) return;
      let changed = await this.sweep();
      const apps = this.o.config().apps ?? [];
      changed = (await this.moveExes(apps)) || changed;
      if (this.ticks++ % PATTERN_EVERY === 0 || changed) changed = (await this.scanPatterns(apps)) || changed;
      if (changed) await this.o.apply();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    await this.serial(async () => {
      for (const d of this.dns.values()) await d.close().catch(() => undefined);
      this.dns.clear();
      // Programs still running keep their cgroup (the rules are gone with the table): removed when empty, or by the next start.
      for (const p of this.pinned.values()) if (!p.kinds.has('cgroup')) await this.o.cgroups.remove(p.rel);
      if (this.mountPoint !== null) await this.o.cgroups.remove(this.root);
      this.pinned.clear();
    });
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.tick()
        .catch((e: unknown) => this.o.logger.warn({ err: e }, 'per-app split: a pass failed'))
        .finally(() => this.arm());
    }, TICK_MS);
  }

  /** Our cgroup for `path`: made (and its resolver started, the rules loaded) when missing. */
  private async ensurePath(path: PathName, kind: 'exec' | 'exe'): Promise<string> {
    if (this.mountPoint === null) throw new AppPinError('SPLITWAN_APPS_NO_CGROUP2', 'per-app split needs cgroup v2, and no cgroup2 file system is mounted (see /proc/self/mounts)');
    const rel = `${this.root}/${cgroupNameOf(path)}`;
    if (!NFT_SAFE_CGROUP.test(rel)) throw new AppPinError('SPLITWAN_APPS_NAME', `"${rel}" is not a cgroup name nft can match (letters, digits, . _ - @ : + , = ~)`);
    const known = this.pinned.get(rel);
    const id = this.o.cgroups.idNow(rel);
    if (known && id === known.id) {
      known.kinds.add(kind);
      return rel;
    }
    // New, or made again (by someone else after we removed it): a new id, so the rules are loaded again.
    const made = await this.o.cgroups.ensure(rel);
    this.pinned.set(rel, { rel, path, kinds: new Set([kind]), id: made, madeAt: this.o.clock.now(), seenPopulated: false });
    if (!this.dns.has(path)) this.dns.set(path, await this.o.dns(path));
    await this.o.apply();
    return rel;
  }

  /** Removes our cgroups whose last process exited; true when any went. */
  private async sweep(): Promise<boolean> {
    let changed = false;
    for (const p of [...this.pinned.values()]) {
      if (p.kinds.has('cgroup')) continue;
      if (await this.o.cgroups.populated(p.rel)) {
        p.seenPopulated = true;
        continue;
      }
      if (!p.seenPopulated && this.o.clock.now() - p.madeAt < UNUSED_MS) continue;
      if (!(await this.o.cgroups.remove(p.rel)) && this.o.cgroups.idNow(p.rel) !== null) continue;
      this.pinned.delete(p.rel);
      changed = true;
      this.o.logger.info({ path: p.path, cgroup: p.rel }, 'the last program on its own path exited: its cgroup is removed');
      await this.closeUnusedDns();
    }
    return changed;
  }

  /** `apps: [{exe}]`: processes of those executables not yet in their path's cgroup are moved there. */
  private async moveExes(apps: NonNullable<Config['apps']>): Promise<boolean> {
    const byExe = new Map(apps.filter((a) => a.exe !== null).map((a) => [a.exe!, a.via]));
    if (byExe.size === 0) return false;
    let changed = false;
    for (const proc of await this.o.cgroups.processes()) {
      const path = byExe.get(proc.exe);
      if (path === undefined || proc.pid === process.pid) continue;
      const rel = `${this.root}/${cgroupNameOf(path)}`;
      const now = await this.o.cgroups.cgroupOf(proc.pid);
      if (now === null || now === rel || now.startsWith(rel + '/')) continue;
      const had = this.pinned.get(rel)?.id;
      await this.ensurePath(path, 'exe');
      changed ||= had === undefined;
      await this.o.cgroups.move(proc.pid, rel).then(
        () => this.o.logger.info({ pid: proc.pid, exe: proc.exe, path }, 'moved a program to its own path (apps: exe)'),
        (e: unknown) => this.o.logger.warn({ err: e, pid: proc.pid, exe: proc.exe }, 'could not move a program to its own path'),
      );
    }
    return changed;
  }

  /** `apps: [{cgroup}]`: the cgroups that match now; true when the set (or an id) changed. */
  private async scanPatterns(apps: NonNullable<Config['apps']>): Promise<boolean> {
    const found = new Map<string, PathName>();
    for (const a of apps) {
      if (a.cgroup === null) continue;
      for (const rel of await this.walk(cgroupPatternLevels(a.cgroup))) if (!found.has(rel) && cgroupPatternMatches(a.cgroup, rel)) found.set(rel, a.via);
    }
    let changed = false;
    for (const p of [...this.pinned.values()]) {
      if (!p.kinds.has('cgroup')) continue;
      const via = found.get(p.rel);
      if (via === p.path && this.o.cgroups.idNow(p.rel) === p.id) continue;
      this.pinned.delete(p.rel);
      changed = true;
    }
    for (const [rel, via] of found) {
      if (this.pinned.has(rel)) continue;
      if (!NFT_SAFE_CGROUP.test(rel)) {
        this.o.logger.warn({ cgroup: rel }, 'a cgroup matches an apps: pattern but its name has characters nft cannot match: left out');
        continue;
      }
      if (this.pinned.size >= MAX_PATTERN_CGROUPS) {
        this.o.logger.warn({ cgroup: rel, max: MAX_PATTERN_CGROUPS }, 'too many cgroups match apps: patterns: left out');
        break;
      }
      const id = this.o.cgroups.idNow(rel);
      if (id === null) continue;
      this.pinned.set(rel, { rel, path: via, kinds: new Set(['cgroup']), id, madeAt: this.o.clock.now(), seenPopulated: true });
      if (!this.dns.has(via)) this.dns.set(via, await this.o.dns(via));
      changed = true;
    }
    if (changed) await this.closeUnusedDns();
    return changed;
  }

  /** The cgroups whose levels match the pattern's levels, one directory listing per matching level. */
  private async walk(levels: readonly string[]): Promise<string[]> {
    let at = [''];
    for (const l of levels) {
      const next: string[] = [];
      for (const dir of at) {
        if (!/[*?]/.test(l)) {
          const rel = dir === '' ? l : `${dir}/${l}`;
          if (this.o.cgroups.idNow(rel) !== null) next.push(rel);
          continue;
        }
        for (const name of await this.o.cgroups.children(dir)) if (levelMatches(l, name)) next.push(dir === '' ? name : `${dir}/${name}`);
      }
      if (next.length > MAX_PATTERN_CGROUPS * 4) next.length = MAX_PATTERN_CGROUPS * 4;
      at = next;
    }
    return at;
  }

  private async closeUnusedDns(): Promise<void> {
    const used = new Set([...this.pinned.values()].map((p) => p.path));
    for (const [path, d] of [...this.dns]) {
      if (used.has(path)) continue;
      this.dns.delete(path);
      await d.close().catch(() => undefined);
    }
  }

  /** After a crash: our empty cgroups (and the root) go; populated ones are pinned again. */
  private async removeStale(): Promise<void> {
    for (const name of await this.o.cgroups.children(this.root)) {
      const rel = `${this.root}/${name}`;
      if (await this.o.cgroups.remove(rel)) continue;
      const path = this.pathOfName(name);
      if (path === null) continue;
      const id = await this.o.cgroups.id(rel);
      if (id === null) continue;
      this.pinned.set(rel, { rel, path, kinds: new Set(['exec']), id, madeAt: this.o.clock.now(), seenPopulated: true });
      if (!this.dns.has(path)) this.dns.set(path, await this.o.dns(path));
    }
  }

  private pathOfName(name: string): PathName | null {
    try {
      const c = this.o.config();
      const m = /^via-(breakout|tunnel|gw-(.+)|link-(.+))$/.exec(name);
      if (!m) return null;
      return pathByName(c, m[2] ?? m[3] ?? m[1]!);
    } catch {
      return null;
    }
  }
}
