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

/** Compiles a domain regexp to run in linear time, or says why it cannot. */
export function compileNameRegexp(source: string): { re: RegExp } | { error: string } {
  try {
    new RegExp(source);
  } catch (e) {
    return { error: `bad regular expression: ${(e as Error).message}` };
  }
  if (!LINEAR) {
    // Only on a Node whose V8 lacks the engine: refuse the classic catastrophic shapes.
    if (/\([^)]*[+*}][^)]*\)[+*{]/.test(source) || /\([^)]*\|[^)]*\)[+*{]/.test(source)) {
      return { error: `regular expression "${source}" nests repetition, which can take exponential time` };
    }
    return { re: new RegExp(source) };
  }
  try {
    return { re: new RegExp(source, 'l') };
  } catch {
    return { error: `regular expression "${source}" uses backreferences or lookaround, which cannot run in linear time` };
  }
}

/** Upper-case letters outside escapes never match: names are matched in lower case. */
export function hasUpperCaseLiteral(source: string): boolean {
  return /(?<!\\)(?:\\\\)*[A-Z]/.test(source.replace(/\\[pPkuxc]\{?[^}\s]*\}?/g, '').replace(/\\[A-Za-z]/g, ''));
}
