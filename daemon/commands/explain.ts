import { parseIp } from '../../config/ip.js';
import { describePattern, normalizeDomain } from '../../config/domain.js';
import { targetLabel, type MatchEntry, type PolicyMatch } from '../../config/policy.js';
import type { Policy } from '../../config/policy.js';
import { Exit, UsageError, type Io } from '../cli.js';
import { loadOrReport } from './load-or-report.js';

export interface ExplainResult {
  input: string;
  kind: 'name' | 'ip';
  /** The path taken when every candidate is healthy: the first of `candidates`. */
  via: string;
  candidates: string[];
  /** 0-based index in `rules`, or null for the default. */
  rule: number | null;
  ruleLabel: string | null;
  match: MatchEntry | null;
  /** Where the rule itself is written. */
  rulePos: { file: string; line: number; col: number } | null;
}

/** Pure: what the policy says about one destination. */
export function explain(policy: Policy, input: string, source?: string): ExplainResult {
  const trimmed = input.trim();
  const ip = parseIp(trimmed);
  let m: PolicyMatch;
  let kind: ExplainResult['kind'];
  if (ip) {
    kind = 'ip';
    m = policy.matchIp(ip, source);
  } else {
    const n = normalizeDomain(trimmed);
    if ('error' in n) throw new UsageError(`${n.error}; give a domain name or an IP address`);
    kind = 'name';
    m = policy.matchName(n.name, source);
  }
  const rule = m.rule === null ? null : policy.rules[m.rule]!;
  return {
    input: trimmed,
    kind,
    via: targetLabel(m.via[0]!),
    candidates: m.via.map(targetLabel),
    rule: m.rule,
    ruleLabel: rule?.label ?? null,
    match: m.entry,
    rulePos: rule?.pos ?? null,
  };
}

function entryText(e: MatchEntry): string {
  const what =
    e.kind === 'cidr'
      ? `${e.value} contains the address`
      : e.kind === 'source'
        ? `the client is in ${e.value}`
        : describePattern({ kind: e.kind, value: e.value } as Parameters<typeof describePattern>[0]);
  const where = `${e.pos.file}:${e.pos.line}:${e.pos.col}`;
  return e.list ? `list "${e.list}" entry at ${where}: ${what}` : `${e.keyPath} at ${where}: ${what}`;
}

export function formatExplain(r: ExplainResult): string {
  const lines = [`${r.input} → ${r.candidates.join(' | ')}`];
  if (r.rule === null) {
    lines.push(`  no rule matches; the default applies (default: ${r.candidates.join(', ')})`);
  } else {
    lines.push(`  rule #${r.rule} (${r.ruleLabel}) at ${r.rulePos!.file}:${r.rulePos!.line}:${r.rulePos!.col}`);
    if (r.match) lines.push(`  matched by ${entryText(r.match)}`);
  }
  if (r.candidates.length > 1) lines.push(`  the first healthy of ${r.candidates.join(', ')} is used`);
  if (r.kind === 'name' && r.via !== 'block') {
    lines.push(`  addresses answered for this name are routed via ${r.via === 'tunnel' ? 'the active gateway' : r.via}`);
  }
  return lines.join('\n') + '\n';
}

export async function explainCommand(opts: { config: string; target: string; json: boolean; source?: string | undefined }, io: Io): Promise<number> {
  if (opts.source !== undefined && !parseIp(opts.source)) throw new UsageError(`--source "${opts.source}" is not an IP address`);
  const loaded = await loadOrReport(opts.config, io);
  if (!loaded) return Exit.CONFIG;
  const r = explain(loaded.policy, opts.target, opts.source);
  io.out(opts.json ? JSON.stringify(r) + '\n' : formatExplain(r));
  return Exit.OK;
}
