// icmp probes: one `ping` through a path's mark (SO_MARK via `-m`), since
// Node has no raw sockets. Spawned once per probe round, not per packet of
// traffic; argv array, no shell.
import type { Runner } from '../exec-linux.js';

/** The RTT `ping` printed ("time=12.3 ms"), or null. */
export function parsePingRtt(out: string): number | null {
  const m = /time[=<]([\d.]+)\s*ms/.exec(out);
  return m ? Number(m[1]) : null;
}

export function linuxPing(run: Runner): (target: string, mark: number, timeoutMs: number) => Promise<number> {
  return async (target, mark, timeoutMs) => {
    const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
    const r = await run.run(['ping', '-n', '-c', '1', '-W', String(secs), '-m', String(mark), target], { timeoutMs: timeoutMs + 1000 }).catch((e: Error) => {
      throw new Error(`icmp ${target}: no reply (${e.message.split('\n')[0]})`);
    });
    const rtt = parsePingRtt(r.stdout);
    if (rtt === null) throw new Error(`icmp ${target}: no reply`);
    return rtt;
  };
}
