// Stateless crash recovery for tunnels: finds splitwan's links (`swg-` names)
// in this network namespace and the wireguard-go processes serving them, and
// removes both, and the key files a killed run left (key-dirs-linux.ts). wireguard-go's control sockets are shared by every namespace
// (/var/run/wireguard), so a name alone is not proof: a process counts as ours
// only when it runs in our namespace (the same /proc/PID/ns/net).
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Logger } from '../../lib/logger.js';
import type { Runner } from '../exec-linux.js';
import { parseIpLinks } from '../os-parse.js';
import { sweepKeyDirs } from './key-dirs-linux.js';

export const IFNAME_PREFIX = 'swg-';

async function netnsOf(pid: number | 'self'): Promise<string | null> {
  try {
    return await fsp.readlink(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

/** wireguard-go processes for `swg-*` interfaces in this process's namespace: pid → ifname. */
export async function findOrphanWireguardGo(): Promise<Map<number, string>> {
  const ours = await netnsOf('self');
  const out = new Map<number, string>();
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const argv = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    const bin = argv[0]?.split('/').pop();
    const ifname = argv[argv.length - 1];
    if (bin !== 'wireguard-go' || !ifname?.startsWith(IFNAME_PREFIX)) continue;
    if ((await netnsOf(pid)) === ours) out.set(pid, ifname);
  }
  return out;
}

/**
 * Stops orphaned wireguard-go processes, deletes leftover `swg-` links, and
 * removes key files a killed run left in `tmpParent` (the tunnels' temp directory).
 */
export async function cleanupTunnels(run: Runner, logger: Logger, tmpParent: string = tmpdir()): Promise<string[]> {
  sweepKeyDirs(tmpParent, logger); // logs what it removed
  const done: string[] = [];
  for (const [pid, ifname] of await findOrphanWireguardGo()) {
    try {
      process.kill(pid, 'SIGTERM');
      done.push(`wireguard-go ${ifname} (pid ${pid})`);
    } catch {
      /* already gone */
    }
  }
  const links = parseIpLinks((await run.run(['ip', '-j', 'link', 'show'])).stdout);
  for (const l of links) {
    if (!l.ifname.startsWith(IFNAME_PREFIX)) continue;
    await run.run(['ip', 'link', 'del', l.ifname], { allowFail: true });
    done.push(`link ${l.ifname}`);
  }
  if (done.length) logger.info({ removed: done }, 'removed tunnels left by an earlier run');
  return done;
}
