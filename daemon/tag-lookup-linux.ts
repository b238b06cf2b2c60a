// Where the running daemon's resolver has tagged an address: read from the
// kernel (`nft -j list table inet splitwan`), so `splitwan explain IP` can
// say which rule's answer routes it now, with no daemon connection. Needs
// root in the daemon's network namespace; says why not otherwise.
import type { Runner } from './exec-linux.js';
import { parseNftTable } from './os-parse.js';
import { TABLE_NAME } from './dataplane/plan.js';

/** The tag set holding an address, by the rule id in its name (tag4_<id>). */
export interface TagHit {
  ruleId: string;
  set: string;
  /** ms until the kernel drops it, when nft says. */
  expiresMs?: number;
}

export type TagLookup = (ip: string) => Promise<TagHit | null | { unknown: string }>;

export function linuxTagLookup(run: Runner): TagLookup {
  return async (ip) => {
    let json: string;
    try {
      json = (await run.run(['nft', '-j', 'list', 'table', 'inet', TABLE_NAME])).stdout;
    } catch (e) {
      const msg = (e as Error).message;
      if (/No such file or directory/.test(msg)) return { unknown: 'splitwan is not running here (no nft table)' };
      if (/Operation not permitted|permission denied/i.test(msg)) return { unknown: 'reading the kernel tags needs root' };
      return { unknown: `cannot read the kernel tags: ${msg.split('\n')[0]}` };
    }
    const t = parseNftTable(json);
    if (t === null) return { unknown: 'splitwan is not running here (no nft table)' };
    for (const s of t.sets) {
      const m = /^tag[46]_(\w+)$/.exec(s.name);
      if (!m) continue;
      const e = s.elements.find((x) => x.key === ip);
      if (e) return { ruleId: m[1]!, set: s.name, ...(e.expiresMs !== undefined ? { expiresMs: e.expiresMs } : {}) };
    }
    return null;
  };
}
