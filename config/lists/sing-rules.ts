// What splitwan can take from a sing-box rule-set, binary or source: the
// rule items that say where traffic goes by name or address. A sing-box
// default rule ORs its destination items (domain, domain_suffix,
// domain_keyword, domain_regex, ip_cidr) and ANDs every other item onto
// them, so a rule that also names a port, a process, a network type... is
// narrower than its names. splitwan cannot check those conditions, and
// applying the names alone would route more than the rule says: such a rule
// is skipped, counted in `ignored`, and reported with the field that caused
// it. The same goes for `invert` and for logical `and` rules; a logical `or`
// of usable rules is flattened. A rule-set of which no rule is usable is an
// error, not an empty list.

import { fail, type Acc, type BinaryListFormat } from './decoded.js';

export type HeadlessRule =
  | {
      type: 'default';
      /** JSON names of the items splitwan cannot apply, in file order. */
      unsupported: string[];
      invert: boolean;
      /** Adds the rule's names and CIDRs. */
      emit: (acc: Acc) => void;
    }
  | { type: 'logical'; mode: 'and' | 'or'; invert: boolean; rules: HeadlessRule[] };

/** Logical rules nest; real rule-sets use one level, hostile ones could use thousands. */
export const MAX_LOGICAL_DEPTH = 32;

/** Why a rule cannot be applied, or null when it can. */
function whyNot(r: HeadlessRule): string | null {
  if (r.invert) return '"invert": true cannot be applied by splitwan';
  if (r.type === 'default') {
    if (r.unsupported.length === 0) return null;
    const f = r.unsupported.map((x) => `"${x}"`).join(', ');
    return `${f} cannot be applied by splitwan (it routes by name and address only; the names of this rule would match more than the rule does)`;
  }
  if (r.mode === 'and') return 'a logical "and" rule cannot be applied by splitwan';
  for (const sub of r.rules) {
    const w = whyNot(sub);
    if (w) return `inside a logical "or": ${w}`;
  }
  return null;
}

function emitAll(r: HeadlessRule, acc: Acc): void {
  if (r.type === 'default') r.emit(acc);
  else for (const sub of r.rules) emitAll(sub, acc);
}

export function applyHeadlessRules(rules: HeadlessRule[], acc: Acc, list: string, format: BinaryListFormat): void {
  let used = 0;
  let firstReason: string | null = null;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    const why = whyNot(r);
    if (why) {
      acc.ignored++;
      acc.problem(i + 1, `rule ${i + 1}: ${why}; rule skipped`);
      firstReason ??= `rule ${i + 1}: ${why}`;
      continue;
    }
    used++;
    emitAll(r, acc);
  }
  if (used === 0 && firstReason) fail(list, format, `no rule of this rule-set can be used: ${firstReason}`);
}
