// `apps:` cgroup patterns (issue 16): a cgroup v2 path relative to the
// cgroup2 root whose levels may hold `*` (any run of characters) and `?`
// (one character), never across a `/`. Pure: the loader checks them, the
// daemon (daemon/apps/) matches the cgroups it finds against them.

/** Why a pattern cannot be used, or null. */
export function cgroupPatternProblem(pattern: string): string | null {
  const p = pattern.replace(/^\/+|\/+$/g, '');
  if (p === '') return 'a cgroup pattern names a cgroup below the root (e.g. user.slice/user-1000.slice/app-*.scope)';
  if (p.length > 4096) return 'a cgroup pattern is at most 4096 characters';
  for (const level of p.split('/')) {
    if (level === '' || level === '.' || level === '..') return `"${pattern}": each level of a cgroup path is a name (no empty, "." or ".." levels)`;
    if (/[\0\n]/.test(level)) return `"${pattern}": a cgroup name has no NUL or newline`;
    if (/[[\]{}\\]/.test(level)) return `"${pattern}": only * and ? are wildcards (no [..], {..} or \\)`;
  }
  return null;
}

/** The pattern's levels, without leading or trailing slashes. */
export function cgroupPatternLevels(pattern: string): string[] {
  return pattern.replace(/^\/+|\/+$/g, '').split('/');
}

/** Whether one level of a pattern matches one cgroup name. Linear: a `*` run never backtracks more than once per position. */
export function levelMatches(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === name[n])) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** Whether a cgroup path (relative to the cgroup2 root) matches the pattern level by level (same depth). */
export function cgroupPatternMatches(pattern: string, path: string): boolean {
  const pl = cgroupPatternLevels(pattern);
  const nl = path.replace(/^\/+|\/+$/g, '').split('/');
  return pl.length === nl.length && pl.every((l, i) => levelMatches(l, nl[i]!));
}
