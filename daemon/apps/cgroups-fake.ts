// A model of cgroup v2 and /proc for unit tests (per-app split): cgroups by
// path with ids, processes with an executable and a cgroup.
import type { CgroupOps } from './cgroups.js';

export class FakeCgroups implements CgroupOps {
  mountPoint: string | null = '/sys/fs/cgroup';
  readonly dirs = new Map<string, number>([['', 1]]);
  /** pid → { exe, cgroup } */
  readonly procs = new Map<number, { exe: string; cgroup: string }>();
  private nextId = 100;
  moves: { pid: number; rel: string }[] = [];

  async mount(): Promise<string | null> {
    return this.mountPoint;
  }
  async ensure(rel: string): Promise<number> {
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (!this.dirs.has(p)) this.dirs.set(p, this.nextId++);
    }
    return this.dirs.get(rel)!;
  }
  async id(rel: string): Promise<number | null> {
    return this.dirs.get(rel) ?? null;
  }
  idNow(rel: string): number | null {
    return this.dirs.get(rel) ?? null;
  }
  async populated(rel: string): Promise<boolean> {
    return [...this.procs.values()].some((p) => p.cgroup === rel || p.cgroup.startsWith(rel + '/'));
  }
  async remove(rel: string): Promise<boolean> {
    if (!this.dirs.has(rel) || (await this.populated(rel)) || (await this.children(rel)).length) return false;
    this.dirs.delete(rel);
    return true;
  }
  async move(pid: number, rel: string): Promise<void> {
    const p = this.procs.get(pid);
    if (!p) throw Object.assign(new Error(`no process ${pid}`), { code: 'ESRCH' });
    if (!this.dirs.has(rel)) throw Object.assign(new Error(`no cgroup ${rel}`), { code: 'ENOENT' });
    p.cgroup = rel;
    this.moves.push({ pid, rel });
  }
  async cgroupOf(pid: number): Promise<string | null> {
    return this.procs.get(pid)?.cgroup ?? null;
  }
  async children(rel: string): Promise<string[]> {
    const prefix = rel === '' ? '' : rel + '/';
    return [...this.dirs.keys()].filter((d) => d !== rel && d.startsWith(prefix) && !d.slice(prefix.length).includes('/')).map((d) => d.slice(prefix.length));
  }
  async processes(): Promise<{ pid: number; exe: string }[]> {
    return [...this.procs].map(([pid, p]) => ({ pid, exe: p.exe }));
  }
}
