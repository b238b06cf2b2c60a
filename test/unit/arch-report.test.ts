// `npm run test:arch`'s reading of vitest's JSON report and its verdict
// against the known failures (scripts/arch/report.ts).
import { describe, expect, it } from 'vitest';
import { countsFromReport, failureKeys, judge, table } from '../../scripts/arch/report.js';

// The shape vitest 4's json reporter writes (fields the report reads, and a few it ignores).
const report = JSON.stringify({
  numTotalTests: 6,
  testResults: [
    {
      name: '/repo/test/integration/b.test.ts',
      status: 'failed',
      message: '',
      assertionResults: [
        { ancestorTitles: ['UDP', 'recvmmsg'], title: 'answers', fullName: 'UDP recvmmsg answers', status: 'failed' },
        { ancestorTitles: ['UDP'], title: 'binds', fullName: 'UDP binds', status: 'passed' },
        { ancestorTitles: [], title: 'later', fullName: 'later', status: 'skipped' },
        { ancestorTitles: [], title: 'some day', fullName: 'some day', status: 'todo' },
      ],
    },
    { name: '/repo/test/unit/a.test.ts', status: 'passed', message: '', assertionResults: [{ ancestorTitles: [], title: 'ok', status: 'passed' }] },
    // A file that did not load: no test ran.
    { name: '/repo/test/lab/c.test.ts', status: 'failed', message: "Error: Cannot find the native Koffi module; did you bundle it correctly?\n    at init", assertionResults: [] },
  ],
});

describe('countsFromReport', () => {
  it('counts passed, failed and skipped (todo too) per file, sorted by path, relative to the root', () => {
    expect(countsFromReport(report, '/repo').map(({ file, passed, failed, skipped }) => [file, passed, failed, skipped])).toEqual([
      ['test/integration/b.test.ts', 1, 1, 2],
      ['test/lab/c.test.ts', 0, 0, 0],
      ['test/unit/a.test.ts', 1, 0, 0],
    ]);
  });

  it('a file that failed without a failing test carries its first error line', () => {
    const c = countsFromReport(report, '/repo').find((f) => f.file === 'test/lab/c.test.ts')!;
    expect(c.error).toBe('Error: Cannot find the native Koffi module; did you bundle it correctly?');
    expect(countsFromReport(report, '/repo').find((f) => f.file === 'test/integration/b.test.ts')!.error).toBeNull();
  });

  it('failures are keyed "file > describe > test", a file error as "file > (file)"', () => {
    expect(failureKeys(countsFromReport(report, '/repo'))).toEqual(['test/integration/b.test.ts > UDP > recvmmsg > answers', 'test/lab/c.test.ts > (file)']);
  });
});

describe('judge', () => {
  const files = countsFromReport(report, '/repo');

  it('a failure not in the known list is unexpected; a known one is expected', () => {
    const v = judge(files, ['test/lab/c.test.ts > (file)']);
    expect(v.unexpected).toEqual(['test/integration/b.test.ts > UDP > recvmmsg > answers']);
    expect(v.expected).toEqual(['test/lab/c.test.ts > (file)']);
    expect(v.fixed).toEqual([]);
  });

  it('a flaky one is expected when it fails and not fixed when it passes', () => {
    const v = judge(files, [], ['test/integration/b.test.ts > UDP > recvmmsg > answers', 'test/integration/b.test.ts > UDP > binds']);
    expect(v.expected).toEqual(['test/integration/b.test.ts > UDP > recvmmsg > answers']);
    expect(v.fixed).toEqual([]);
    expect(v.unexpected).toEqual(['test/lab/c.test.ts > (file)']);
  });

  it('a known failure that ran and passed is reported fixed; one whose file did not run is neither', () => {
    const v = judge(files, ['test/integration/b.test.ts > UDP > binds', 'test/e2e/d.test.ts > x']);
    expect(v.fixed).toEqual(['test/integration/b.test.ts > UDP > binds']);
    expect(v.unexpected).toHaveLength(2);
  });
});

it('table: one aligned line per file, a file error shown after it', () => {
  const t = table(countsFromReport(report, '/repo'));
  expect(t[0]).toBe('  pass  fail  skip  file');
  expect(t[1]).toBe('     1     1     2  test/integration/b.test.ts');
  expect(t[2]).toContain('test/lab/c.test.ts  [file failed: Error: Cannot find the native Koffi module');
});
