import { setFlagsFromString } from 'node:v8';

// User regexps (rules, v2fly and Clash lists from URLs) run on every name
// looked up. V8's default engine backtracks: `^(a+)+$` takes seconds on a
// 30-character name, so a published list could freeze the resolver. V8's
// linear-time engine (the `l` flag) runs any pattern it accepts in time
// linear in the name, and refuses backreferences and lookaround. It does not
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

/**
 * Simple patterns (no backreferences or lookaround, no repeated group, at
 * most one unbounded repetition) cannot backtrack catastrophically: at worst
 * quadratic in a name of at most 253 characters. They run on V8's fast
 * backtracking engine; everything else on the linear one, which is safe for
 * any pattern it accepts but several times slower.
 */
export function isSimpleRegexp(source: string): boolean {
  if (/\\[1-9]|\\k<|\(\?<?[=!]/.test(source)) return false;
  const s = source.replace(/\\./g, 'x').replace(/\[[^\]]*\]/g, 'x');
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
  if (isSimpleRegexp(source)) return { re: new RegExp(source), linear: false };
  if (!LINEAR) {
    return { error: `regular expression "${source}" repeats a group or has several unbounded repetitions, which can take exponential time on this Node.js` };
  }
  try {
    return { re: new RegExp(source, 'l'), linear: true };
  } catch {
    return { error: `regular expression "${source}" uses backreferences or lookaround, which cannot run in linear time` };
  }
}

/** Upper-case letters outside escapes never match: names are matched in lower case. */
export function hasUpperCaseLiteral(source: string): boolean {
  return /(?<!\\)(?:\\\\)*[A-Z]/.test(source.replace(/\\[pPkuxc]\{?[^}\s]*\}?/g, '').replace(/\\[A-Za-z]/g, ''));
}
