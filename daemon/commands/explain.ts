import { formatIp, parseIp } from '../../lib/ip.js';
import { linuxRunner } from '../exec-linux.js';
import { linuxTagLookup, type TagLookup } from '../tag-lookup-linux.js';
import { explain, formatExplain, withTag } from '../explain.js';
import { Exit, UsageError, type Io } from '../cli-io.js';
import { loadOrReport } from './load-or-report.js';

export async function explainCommand(
  opts: { config: string; target: string; json: boolean; source?: string | undefined },
  io: Io,
  tags: TagLookup = linuxTagLookup(linuxRunner),
): Promise<number> {
  if (opts.source !== undefined && !parseIp(opts.source)) throw new UsageError(`--source "${opts.source}" is not an IP address`);
  const loaded = await loadOrReport(opts.config, io);
  if (!loaded) return Exit.CONFIG;
  let r = explain(loaded.policy, opts.target, opts.source, Date.now());
  if (r.kind === 'ip') r = withTag(r, loaded.config.rules, await tags(formatIp(parseIp(r.input)!)));
  io.out(opts.json ? JSON.stringify(r) + '\n' : formatExplain(r));
  return Exit.OK;
}
