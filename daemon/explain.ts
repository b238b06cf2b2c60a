// `explain`: what the policy says about a name or address, and what the
// running daemon's tags add. Pure; the CLI command and the control server use it.
import { parseIp } from '../lib/ip.js';
import type { RuleConfig } from '../config/types.js';
import { UsageError } from './cli-io.js';
import { ruleId } from './dataplane/plan.js';
import type { TagHit } from './tag-lookup-linux.js';
import { describePattern, normalizeDomain } from '../config/domain.js';
import { targetLabel, type MatchEntry, type PolicyMatch } from '../config/policy.js';
import type { Policy } from '../config/policy.js';
import { ruleConditions } from './rule-conditions.js';

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
  /**
   * What else the rule needs, matched in the kernel per flow (protocol and
   * ports, devices, a schedule and whether it is on now); absent: nothing.
   */
  conditions?: string[];
  /**
   * IP inputs: the resolver's tag on this address in the running daemon (the
   * rule of the most recent name answered with it); null: none; a string:
   * why it is not known. Absent for names.
   */
  tagged?: { rule: number; ruleLabel: string; via: string; expiresInSeconds: number | null } | null | string;
  /** IP inputs with a tag: the path connections to it take now (a tag of an earlier rule wins). */
  effectiveVia?: string;
  /**
   * Name inputs asked of the running daemon: the addresses its cache holds
   * for the name, each with the kernel's tag on it (null: none).
   */
  addresses?: { address: string; tagged: { rule: number; via: string; expiresInSeconds: number | null } | null | string }[];
  /** Per-app split (issue 16), asked of the running daemon: programs in these cgroups take their own path, whatever the above says. */
  apps?: { path: string; cgroup: string }[];
}

/** Pure: what the policy says about one destination (`wallMs`: the time a schedule is judged at; absent: not judged). */
export function explain(policy: Policy, input: string, source?: string, wallMs?: number): ExplainResult {
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
    ...(rule && ruleConditions(rule, wallMs).length ? { conditions: ruleConditions(rule, wallMs) } : {}),
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
  // Countries and ASes of rules' geoip:/asn: are lists named geoip:XX / asn:N, from the geodata database.
  const geo = e.list?.startsWith('geoip:') ? `country ${e.list.slice(6)}` : e.list?.startsWith('asn:') ? `AS${e.list.slice(4)}` : null;
  if (geo) return `${geo} in the database ${e.pos.file}: ${what}`;
  // A rule file has no lines: its entries are numbered; the section is the geosite category (or country) it came from.
  if (e.list && e.section !== undefined) return `list "${e.list}", ${e.section}, entry ${e.pos.line} of ${e.pos.file}: ${what}`;
  return e.list ? `list "${e.list}" entry at ${where}: ${what}` : `${e.keyPath} at ${where}: ${what}`;
}

export function formatExplain(r: ExplainResult): string {
  const lines = [`${r.input} → ${r.candidates.join(' | ')}`];
  if (r.rule === null) {
    lines.push(`  no rule matches; the default applies (default: ${r.candidates.join(', ')})`);
  } else {
    lines.push(`  rule #${r.rule} (${r.ruleLabel}) at ${r.rulePos!.file}:${r.rulePos!.line}:${r.rulePos!.col}`);
    if (r.match) lines.push(`  matched by ${entryText(r.match)}`);
    for (const c of r.conditions ?? []) lines.push(`  only ${c}`);
  }
  if (r.candidates.length > 1) lines.push(`  the first healthy of ${r.candidates.join(', ')} is used`);
  if (r.tagged !== undefined) {
    if (r.tagged === null) lines.push('  not tagged by the resolver now');
    else if (typeof r.tagged === 'string') lines.push(`  tags: not known (${r.tagged})`);
    else {
      const ttl = r.tagged.expiresInSeconds === null ? '' : ` for another ${r.tagged.expiresInSeconds} s`;
      lines.push(`  tagged now by the resolver for rule #${r.tagged.rule} (${r.tagged.ruleLabel}, via ${r.tagged.via})${ttl}: the most recent name answered with it`);
      lines.push(`  connections to it take: ${r.effectiveVia}`);
    }
  }
  if (r.addresses !== undefined) {
    if (r.addresses.length === 0) lines.push('  the running resolver has no cached address for it (not asked lately)');
    for (const a of r.addresses) {
      const t = a.tagged;
      const how = t === null ? 'not tagged in the kernel' : typeof t === 'string' ? `tag not known (${t})` : `tagged in the kernel for rule #${t.rule} (via ${t.via})${t.expiresInSeconds === null ? '' : ` for another ${t.expiresInSeconds} s`}`;
      lines.push(`  ${a.address}: ${how}`);
    }
  }
  if (r.kind === 'name' && r.via !== 'block') {
    lines.push(`  addresses answered for this name are routed via ${r.via === 'tunnel' ? 'the active gateway' : r.via}`);
  }
  // Per-app split: pinned programs are the exception to every rule.
  for (const a of r.apps ?? []) lines.push(`  except for programs in cgroup ${a.cgroup}: they take ${a.path} (per-app split), and ask its resolvers`);
  return lines.join('\n') + '\n';
}

/**
 * Adds what the running daemon's tags say about an IP: the rule whose
 * answer tagged it, and the path that wins (the data plane checks rules in
 * order, a rule's tags where the rule stands).
 */
export function withTag(r: ExplainResult, rules: readonly RuleConfig[], hit: TagHit | null | { unknown: string }): ExplainResult {
  if (hit === null) return { ...r, tagged: null };
  if ('unknown' in hit) return { ...r, tagged: hit.unknown };
  const index = rules.findIndex((x) => ruleId(x) === hit.ruleId);
  if (index < 0) return { ...r, tagged: `tagged for a rule that is no longer in the config (set ${hit.set})` };
  const rule = rules[index]!;
  const via = targetLabel(rule.via[0]!);
  const tagged = { rule: index, ruleLabel: rule.label, via, expiresInSeconds: hit.expiresMs === undefined ? null : Math.round(hit.expiresMs / 1000) };
  const wins = r.rule === null || index < r.rule;
  return { ...r, tagged, effectiveVia: wins ? via : r.via };
}
