// The temp directories that carry a tunnel's private key to `wg setconf`
// (tunnels-linux.ts setconf: a 0600 file in a 0700 directory, removed right
// after the command). A daemon killed with -9 between the two leaves one
// behind, key and all; the next start and `splitwan cleanup` sweep them.
//
// Only splitwan's own directories are touched, and only when nothing can
// still be using them:
// - the name is `splitwan-wg-<pid>-XXXXXX` (or `splitwan-wg-XXXXXX`, as
//   versions before the pid was in the name made them), directly in the
//   temp directory;
// - it is a real directory (lstat: a symlink is never followed), owned by
//   the user splitwan runs as, with no access for group or others (mode 0700,
//   as mkdtemp makes it): in a sticky /tmp nobody else can have made or
//   swapped such a directory;
// - its creator is gone: that pid is not alive, or it is older than
//   STALE_MS (a pid reused since, or a directory without a pid), far longer
//   than the one `wg setconf` it is made for;
// - it holds nothing but regular files named `*.conf`; anything else, and
//   the directory is left alone (and said in the log).
import { lstatSync, readdirSync, rmdirSync, unlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../lib/logger.js';

/** The prefix setconf's directories get: the pid of the process that made them comes next. */
export const KEY_DIR_PREFIX = 'splitwan-wg-';
/** One `wg setconf` holds a directory for milliseconds; this much older, its maker is not using it. */
export const STALE_MS = 60_000;

const NAME = /^splitwan-wg-(?:(\d+)-)?[A-Za-z0-9]{6}$/;
const FILE = /^[A-Za-z0-9_.-]+\.conf$/;

/** The name mkdtemp gets for this process's setconf directories. */
export function keyDirPrefix(pid: number = process.pid): string {
  return `${KEY_DIR_PREFIX}${pid}-`;
}

/** What decides whether an entry of the temp directory is a leftover to remove. */
export interface KeyDirFacts {
  name: string;
  isDirectory: boolean;
  uid: number;
  mode: number;
  mtimeMs: number;
}

/** Why a leftover may go, or null to leave the entry alone. Pure. */
export function staleKeyDir(f: KeyDirFacts, o: { ownUid: number; ownPid: number; now: number; alive(pid: number): boolean }): string | null {
  const m = NAME.exec(f.name);
  if (m === null || !f.isDirectory || f.uid !== o.ownUid || (f.mode & 0o077) !== 0) return null;
  const old = o.now - f.mtimeMs > STALE_MS;
  if (m[1] === undefined) return old ? 'made by an earlier version, unused since' : null;
  const pid = Number(m[1]);
  if (pid === o.ownPid) return null;
  if (!o.alive(pid)) return `its process ${pid} is gone`;
  return old ? `older than ${STALE_MS / 1000} s (pid ${pid} is another process now)` : null;
}

/** Whether a process with this pid exists (EPERM: it does, someone else's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the key directories a killed splitwan left in `tmpParent`; returns
 * the paths removed. Never throws: what it cannot remove is logged and left.
 */
export function sweepKeyDirs(tmpParent: string, logger: Logger, o: { now?: number; alive?: (pid: number) => boolean } = {}): string[] {
  const facts = { ownUid: process.geteuid?.() ?? 0, ownPid: process.pid, now: o.now ?? Date.now(), alive: o.alive ?? pidAlive };
  let names: string[];
  try {
    names = readdirSync(tmpParent).filter((n) => n.startsWith(KEY_DIR_PREFIX));
  } catch (e) {
    logger.warn({ dir: tmpParent, err: (e as Error).message }, 'cannot read the temp directory to sweep key files');
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const dir = join(tmpParent, name);
    let st: Stats;
    try {
      st = lstatSync(dir);
    } catch {
      continue; // gone meanwhile
    }
    const why = staleKeyDir({ name, isDirectory: st.isDirectory(), uid: st.uid, mode: st.mode, mtimeMs: st.mtimeMs }, facts);
    if (why === null) continue;
    try {
      const entries = readdirSync(dir);
      const foreign = entries.filter((e) => !FILE.test(e) || !lstatSync(join(dir, e)).isFile());
      if (foreign.length > 0) {
        logger.warn({ dir, unexpected: foreign }, 'a key directory holds something splitwan never puts there: left alone');
        continue;
      }
      for (const e of entries) unlinkSync(join(dir, e));
      rmdirSync(dir);
      removed.push(dir);
    } catch (e) {
      logger.warn({ dir, err: (e as Error).message }, 'could not remove a key directory left by a killed run');
    }
  }
  if (removed.length > 0) logger.info({ removed }, 'removed WireGuard key files left by a killed run');
  return removed;
}
