// cgroup v2 and /proc on Linux (per-app split, issue 16): mkdir/rmdir in the
// cgroup2 mount, writes to cgroup.procs, reads of cgroup.events and
// /proc/PID/{exe,cgroup}. The mount is found in /proc/self/mounts (unified:
// /sys/fs/cgroup; hybrid: /sys/fs/cgroup/unified), or given (tests).
import { promises as fsp, statSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount, v2CgroupOf, type CgroupOps } from './cgroups.js';

export class LinuxCgroups implements CgroupOps {
  /** The mount found last (idNow needs it at once). */
  private known: string | null;

  constructor(private readonly fixedMount: string | null = null) {
    this.known = fixedMount;
  }

  async mount(): Promise<string | null> {
    if (this.fixedMount !== null) return this.fixedMount;
    this.known = cgroup2Mount(await fsp.readFile('/proc/self/mounts', 'utf8').catch(() => ''));
    return this.known;
  }

  private async dir(rel: string): Promise<string> {
    const m = await this.mount();
    if (m === null) throw Object.assign(new Error('no cgroup2 mount (/proc/self/mounts): per-app split needs cgroup v2'), { code: 'SPLITWAN_APPS_NO_CGROUP2' });
    return join(m, rel);
  }

  async ensure(rel: string): Promise<number> {
    const d = await this.dir(rel);
    await fsp.mkdir(d, { recursive: true });
    return (await fsp.stat(d)).ino;
  }

  async id(rel: string): Promise<number | null> {
    return fsp.stat(await this.dir(rel)).then((s) => s.ino, () => null);
  }

  idNow(rel: string): number | null {
    if (this.known === null) return null;
    try {
      return statSync(join(this.known, rel)).ino;
    } catch {
      return null;
    }
  }

  async populated(rel: string): Promise<boolean> {
    const text = await fsp.readFile(join(await this.dir(rel), 'cgroup.events'), 'utf8').catch(() => '');
    return /^populated 1$/m.test(text);
  }

  async remove(rel: string): Promise<boolean> {
    return fsp.rmdir(await this.dir(rel)).then(() => true, () => false);
  }

  async move(pid: number, rel: string): Promise<void> {
    await fsp.writeFile(join(await this.dir(rel), 'cgroup.procs'), `${pid}\n`);
  }

  async cgroupOf(pid: number): Promise<string | null> {
    return fsp.readFile(`/proc/${pid}/cgroup`, 'utf8').then(v2CgroupOf, () => null);
  }

  async children(rel: string): Promise<string[]> {
    const d = await this.dir(rel);
    const ents = await fsp.readdir(d, { withFileTypes: true }).catch(() => []);
    return ents.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  async processes(): Promise<{ pid: number; exe: string }[]> {
    const names = await fsp.readdir('/proc').catch(() => [] as string[]);
    const out: { pid: number; exe: string }[] = [];
    await Promise.all(
      names
        .filter((n) => /^\d+$/.test(n))
        .map(async (n) => {
          // Kernel threads have no exe (ENOENT); a process may be gone by now.
          const exe = await fsp.readlink(`/proc/${n}/exe`).catch(() => null);
          if (exe !== null) out.push({ pid: Number(n), exe: exe.replace(/ \(deleted\)$/, '') });
        }),
    );
    return out;
  }
}
