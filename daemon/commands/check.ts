import { formatDuration } from '../../config/duration.js';
import { redactUrl } from '../../config/lists/fetch.js';
import { targetLabel } from '../../config/policy.js';
import type { Target } from '../../config/types.js';
import { Exit, type Io } from '../cli-io.js';
import { loadOrReport } from './load-or-report.js';
import { ruleConditions } from '../rule-conditions.js';
import type { ListSelection } from '../../config/types.js';
import { isTextContent } from '../../config/lists/list-content.js';


function selectionText(s: ListSelection | undefined): string {
  if (!s) return '';
  const parts = [...(s.categories ?? []).map((c) => `category ${c}`), ...(s.countries ?? []).map((c) => `country ${c}`), ...(s.asns ?? []).map((a) => `AS${a}`)];
  return parts.length ? `: ${parts.join(', ')}` : '';
}

export function viaText(via: readonly Target[]): string {
  return via.map(targetLabel).join(' → ');
}

/** `splitwan check`: validate everything, print a short summary. */
export async function checkCommand(opts: { config: string }, io: Io): Promise<number> {
  const loaded = await loadOrReport(opts.config, io);
  if (!loaded) return Exit.CONFIG;
  const { config: c, policy, lists } = loaded;
  const lines: string[] = [`${c.file}: OK`];
  lines.push(`  mode ${c.mode}${c.mode === 'router' ? ` (lan: ${c.lan.join(', ')})` : ''}, breakout ${c.breakout.interface}, kill switch ${c.tunnel.killSwitch ? 'on' : 'OFF'}`);
  lines.push(`  breakout dns: ${c.breakout.dns === 'auto' ? 'auto (the system resolvers)' : c.breakout.dns.map((u) => u.text).join(', ')}`);
  for (const g of c.tunnel.gateways) {
    const peer = g.wireguard.peers[0];
    const ep = peer?.endpoint ? `${peer.endpoint.host}:${peer.endpoint.port}` : 'no endpoint';
    lines.push(`  gateway ${g.name}: priority ${g.priority}, ${g.wireguard.addresses.join(' ')} → ${ep}, dns ${g.dns.map((u) => u.text).join(', ')}`);
  }
  lines.push(`  health: every ${formatDuration(c.health.intervalMs)}, down after ${c.health.failAfter} failures, up after ${c.health.recoverAfter}; probes ${c.health.probe.map((p) => p.kind).join('+')}`);
  for (const l of lists.values()) {
    const n = l.domains.length + l.cidrs.length;
    const url = redactUrl(l.source.url ?? '');
    const from = l.origin === 'file' ? l.file : l.origin === 'cache' ? `cached download of ${url}` : `${url} (not downloaded yet)`;
    // Rule files: their format and what was selected (geosite categories, countries, ASes); geodata databases.
    const kind = l.database ? ' (a geodata database)' : l.parsed && !isTextContent(l.parsed) ? ` (${l.parsed.format}${selectionText(l.source.select)})` : '';
    if (l.name.startsWith('geoip:') || l.name.startsWith('asn:')) lines.push(`  ${l.name}: ${n} cidr${n === 1 ? '' : 's'} from ${l.file}`);
    else lines.push(`  list ${l.name}: ${n} entr${n === 1 ? 'y' : 'ies'}${kind} from ${from}`);
  }
  for (const r of c.rules) {
    const extra = ruleConditions(r, Date.now());
    if (extra.length) lines.push(`  rule #${r.index} (${r.label}): only ${extra.join('; ')}`);
  }
  const s = policy.stats;
  lines.push(`  rules: ${c.rules.length} (${s.domains} names, ${s.keywords} keywords, ${s.regexps} regexps, ${s.cidrs} cidrs${s.sourceRules ? `, ${s.sourceRules} by source` : ''}); default ${viaText(c.default)}`);
  io.out(lines.join('\n') + '\n');
  return Exit.OK;
}
