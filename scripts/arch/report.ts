// Reading vitest's JSON report into counts per file, and comparing the
// failures with the architecture's known ones (scripts/arch/known-failures.json):
// pure functions, tested in test/unit/arch-report.test.ts.
import { relative } from 'node:path';

export interface FileCounts {
  file: string;
  passed: number;
  failed: number;
  skipped: number;
  /** The file itself failed (did not load, a hook threw) apart from its tests. */
  error: string | null;
  /** Full names ("describe > test") of the failed tests. */
  failures: string[];
}

interface JsonReport {
  testResults?: {
    name: string;
    status?: string;
    message?: string;
    assertionResults?: { fullName?: string; title?: string; ancestorTitles?: string[]; status: string }[];
  }[];
}

/** Counts per file from vitest's `--reporter=json` output; paths relative to `root`. */
export function countsFromReport(json: string, root: string): FileCounts[] {
  const r = JSON.parse(json) as JsonReport;
  const out: FileCounts[] = [];
  for (const f of r.testResults ?? []) {
    const c: FileCounts = { file: relative(root, f.name), passed: 0, failed: 0, skipped: 0, error: null, failures: [] };
    for (const a of f.assertionResults ?? []) {
      if (a.status === 'passed') c.passed++;
      else if (a.status === 'failed') {
        c.failed++;
        c.failures.push(testName(a));
      } else c.skipped++; // skipped, pending, todo
    }
    // A file that failed with no failed test: it did not load, or a hook threw.
    if (f.status === 'failed' && c.failed === 0) c.error = (f.message ?? 'failed').split('\n')[0]!.slice(0, 300);
    out.push(c);
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

function testName(a: { fullName?: string; title?: string; ancestorTitles?: string[] }): string {
  if (a.ancestorTitles && a.title !== undefined) return [...a.ancestorTitles, a.title].join(' > ');
  return a.fullName ?? a.title ?? '?';
}

/** Failures as "file > test name" keys; a file error as "file > (file)". */
export function failureKeys(files: readonly FileCounts[]): string[] {
  const keys: string[] = [];
  for (const f of files) {
    for (const t of f.failures) keys.push(`${f.file} > ${t}`);
    if (f.error !== null) keys.push(`${f.file} > (file)`);
  }
  return keys;
}

export interface Verdict {
  /** Failed and not known to: a regression. */
  unexpected: string[];
  /** Known to fail and failed. */
  expected: string[];
  /** Known to fail, ran, and passed: fixed, the list must shrink. */
  fixed: string[];
}

/**
 * Compares failures with the known ones. A known failure whose file did not
 * run at all (not selected) is neither expected nor fixed; a `flaky` one
 * (emulation speed: it fails on a loaded machine, passes on a quiet one) is
 * expected when it fails and not "fixed" when it passes.
 */
export function judge(files: readonly FileCounts[], known: readonly string[], flaky: readonly string[] = []): Verdict {
  const failed = new Set(failureKeys(files));
  const ran = new Set(files.map((f) => f.file));
  const k = new Set([...known, ...flaky]);
  return {
    unexpected: [...failed].filter((x) => !k.has(x)),
    expected: [...failed].filter((x) => k.has(x)),
    fixed: known.filter((x) => !failed.has(x) && ran.has(x.split(' > ')[0]!)),
  };
}

/** One line per file, aligned: passed, failed, skipped, then the file (and its error). */
export function table(files: readonly FileCounts[]): string[] {
  const lines = ['  pass  fail  skip  file'];
  for (const f of files) {
    const n = (x: number): string => String(x).padStart(6);
    lines.push(`${n(f.passed)}${n(f.failed)}${n(f.skipped)}  ${f.file}${f.error !== null ? `  [file failed: ${f.error}]` : ''}`);
  }
  return lines;
}
