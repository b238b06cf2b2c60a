import { setFlagsFromString } from 'node:v8';

// User regexps (rules, v2fly and Clash lists from URLs) run on every name
// looked up. V8's default engine backtracks: `^(a+)+$` takes seconds on a
// 30-character name, so a published list could freeze the resolver. V8's
// linear-time engine (the `l` flag) runs any pattern it accepts in time
// linear in the name, and refuses backreferences (and, before Node 22,
// lookbehind: splitwan refuses all lookaround, see unportable()). It does not
// take the `i` flag: names are matched in lower case, as they are compared.
setFlagsFromString('--enable-experimental-regexp-engine');

const LINEAR = ((): boolean => {
  try {
    new RegExp('a', 'l');
    return true;
  } catch {
    return false;
  }
})();

/** The pattern with escapes and character classes blanked out, so that only its structure is left. */
function structure(source: string): string {
  return source.replace(/\\./g, 'x').replace(/\[[^\]]*\]/g, 'x');
}

/**
 * Syntax refused whatever the running Node.js can do, so that a config (or a
 * list) is valid or not the same way on every Node.js splitwan runs on (>= 20.18;
 * the packages ship 24). Lookaround: the linear-time engine of Node 22 and later
 * runs lookbehind, Node 20's refuses it. Modifier groups `(?i:...)` and duplicate
 * group names are syntax only from Node 24 (ES2025); names are matched in lower
 * case, so neither is ever needed.
 */
function unportable(source: string): string | null {
  const s = structure(source);
  if (/\(\?<?[=!]/.test(s)) return 'uses lookaround, which splitwan refuses (Node.js 20 cannot run it in linear time)';
  if (/\(\?[a-z-]+:/.test(s)) return 'uses a modifier group such as (?i:...), which Node.js before 24 does not know (names are matched in lower case anyway)';
  const names = [...s.matchAll(/\(\?<([^=!>][^>]*)>/g)].map((m) => m[1]);
  if (new Set(names).size !== names.length) return 'names two groups alike, which Node.js before 24 does not allow';
  return null;
}

/**
 * Simple patterns (no backreferences or lookaround, no repeated group, at
 * most one unbounded repetition) cannot backtrack catastrophically: at worst
 * quadratic in a name of at most 253 characters. They run on V8's fast
 * backtracking engine; everything else on the linear one, which is safe for
 * any pattern it accepts but several times slower.
 */
export function isSimpleRegexp(source: string): boolean {
  if (/\\[1-9]|\\k<|\(\?<?[=!]/.test(source)) return false;
  const s = structure(source);
  if (/\)\s*[*+?{]/.test(s)) return false;
  return (s.match(/[*+]|\{\d+,\}/g) ?? []).length <= 1;
}

/** Compiles a domain regexp so that it cannot hang a lookup, or says why it cannot. */
export function compileNameRegexp(source: string): { re: RegExp; linear: boolean } | { error: string } {
  try {
    new RegExp(source);
  } catch (e) {
    return { error: `bad regular expression: ${(e as Error).message}` };
  }
  const refused = unportable(source);
  if (refused !== null) return { error: `regular expression "${source}" ${refused}` };
  if (isSimpleRegexp(source)) return { re: new RegExp(source), linear: false };
  if (!LINEAR) {
    return { error: `regular expression "${source}" repeats a group or has several unbounded repetitions, which can take exponential time on this Node.js` };
  }
  try {
    return { re: new RegExp(source, 'l'), linear: true };
  } catch {
    return { error: `regular expression "${source}" uses backreferences (or another construct that cannot run in linear time)` };
  }
}

/** Upper-case letters outside escapes never match: names are matched in lower case. */
export function hasUpperCaseLiteral(source: string): boolean {
  return /(?<!\\)(?:\\\\)*[A-Z]/.test(source.replace(/\\[pPkuxc]\{?[^}\s]*\}?/g, '').replace(/\\[A-Za-z]/g, ''));
}
