const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/gy;

/** Parses `500ms`, `1s`, `1m30s`, `1.5h` into milliseconds; null when it is not a duration. */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (s === '') return null;
  PART.lastIndex = 0;
  let total = 0;
  let at = 0;
  for (;;) {
    while (s[at] === ' ') at++;
    if (at === s.length) break;
    PART.lastIndex = at;
    const m = PART.exec(s);
    if (!m) return null;
    total += parseFloat(m[1]!) * UNIT_MS[m[2]!]!;
    at = PART.lastIndex;
  }
  return Math.round(total);
}

/** The shortest readable form: 1500 → "1.5s", 90000 → "1m30s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(3)}s`;
  const parts: string[] = [];
  let rest = ms;
  for (const [u, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (rest >= n) {
      const q = Math.floor(rest / n);
      parts.push(`${q}${u}`);
      rest -= q * n;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}
