// The longest literal every match of a regular expression must contain, for
// the policy's prefilter: one alternation of plain strings answers "no
// pattern can match this name" far sooner than an alternation of the
// expressions themselves (geosite files carry ~200 of them, many starting
// with `.+`, which backtracks at every position of every name).
//
// Of the runs, the longest is taken, a bare TLD last. Only what is certain is taken: literal runs at the top level of the
// expression, outside groups, classes and alternations; a character made
// optional by a quantifier ends the run without itself. An expression with
// a top-level `|`, or without a run of 3 characters, gives null (it is then
// tried as it is).

const META = new Set(['.', '(', ')', '[', ']', '{', '}', '*', '+', '?', '|', '^', '$']);
/** Escapes that stand for themselves (`\.`, `\-`...); `\d`, `\w`, `\b`... are classes or assertions. */
const LITERAL_ESCAPE = /[^A-Za-z0-9]/;

export function requiredLiteral(source: string, minLength = 3): string | null {
  const runs: string[] = [];
  let run = '';
  const end = (): void => {
    if (run.length) runs.push(run);
    run = '';
  };
  let depth = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      const n = source[i + 1];
      if (n === undefined) return null;
      i++;
      if (depth > 0) continue;
      if (!LITERAL_ESCAPE.test(n)) {
        end();
        continue;
      }
      run += n;
      continue;
    }
    if (c === '[') {
      // Skip the class (a `]` first in it, or escaped, is part of it).
      let j = i + 1;
      if (source[j] === '^') j++;
      if (source[j] === ']') j++;
      while (j < source.length && source[j] !== ']') j += source[j] === '\\' ? 2 : 1;
      i = j;
      if (depth === 0) end();
      continue;
    }
    if (c === '(') {
      depth++;
      if (depth === 1) end();
      continue;
    }
    if (c === ')') {
      depth--;
      continue;
    }
    if (depth > 0) continue;
    if (c === '|') return null;
    if (c === '?' || c === '*' || (c === '{' && /^\{0*,|^\{0+\}/.test(source.slice(i)))) {
      // The character before is optional: the run ends before it.
      run = run.slice(0, -1);
      end();
      if (c === '{' && (i = source.indexOf('}', i)) < 0) return null;
      continue;
    }
    if (c === '+' || c === '{') {
      // Required at least once: the run ends after it.
      end();
      if (c === '{' && (i = source.indexOf('}', i)) < 0) return null;
      continue;
    }
    if (META.has(c)) {
      end();
      continue;
    }
    run += c;
  }
  if (depth !== 0) return null;
  end();
  // The longest run, except that a bare TLD (".com", ".net") is what nearly
  // every name holds: any other run of the minimum length tells names apart better.
  const score = (r: string): number => (/^\.[a-z0-9-]{2,6}\.?$/.test(r) ? 1 : r.length);
  let best: string | null = null;
  for (const r of runs) if (r.length >= minLength && (best === null || score(r) > score(best))) best = r;
  return best;
}
