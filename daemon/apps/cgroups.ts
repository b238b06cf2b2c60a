// What per-app split (issue 16) needs of cgroup v2 and /proc: one interface,
// Linux in cgroups-linux.ts, a model in cgroups-fake.ts. Paths given here are
// relative to the cgroup2 root ('' is the root); nothing outside it is touched.
import { posix } from 'node:path';

export interface CgroupOps {
  /** Where cgroup2 is mounted (from /proc/self/mounts), or null: none (no per-app split). */
  mount(): Promise<string | null>;
  /** Makes the cgroup (and its parents) if missing; its id (the directory's inode, what nft matches). */
  ensure(rel: string): Promise<number>;
  /** The cgroup's id, or null when it does not exist. */
  id(rel: string): Promise<number | null>;
  /** The same, at once: checked before every ruleset render (nft refuses a rule naming a cgroup that is gone). */
  idNow(rel: string): number | null;
  /** `populated` of its cgroup.events: a process is in it or below. False when it is gone. */
  populated(rel: string): Promise<boolean>;
  /** Removes an empty cgroup; false when it is busy or gone. */
  remove(rel: string): Promise<boolean>;
  /** Moves a process (all its threads) into the cgroup. */
  move(pid: number, rel: string): Promise<void>;
  /** The cgroup a process is in (its `0::` line), or null when it is gone. */
  cgroupOf(pid: number): Promise<string | null>;
  /** The names of a cgroup's child cgroups ([] when it is gone). */
  children(rel: string): Promise<string[]>;
  /** Running processes and their executables (kernel threads and unreadable ones left out). */
  processes(): Promise<{ pid: number; exe: string }[]>;
}

/**
 * The cgroup2 mount point in a /proc/self/mounts text; the first of several.
 * Mount points there escape space, tab, newline and backslash as octal.
 */
export function cgroup2Mount(mountsText: string): string | null {
  for (const line of mountsText.split('\n')) {
    const f = line.split(' ');
    if (f.length >= 3 && f[2] === 'cgroup2') return f[1]!.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  }
  return null;
}

/** nft's name for a cgroup: its directory relative to /sys/fs/cgroup (where nft looks it up; see dataplane/app-rules.ts). */
export function nftCgroupPath(mount: string, rel: string): string {
  return posix.relative('/sys/fs/cgroup', posix.join(mount, rel));
}

/** The path in a `0::/PATH` line of /proc/PID/cgroup (cgroup v2), without the leading slash. */
export function v2CgroupOf(procCgroupText: string): string | null {
  for (const line of procCgroupText.split('\n')) if (line.startsWith('0::/')) return line.slice(4).trim();
  return null;
}
