// The boundaries of ../shared/architecture.md, checked on the source: which
// top-level folder may import which, where koffi may be loaded, and that
// product code never imports tests.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const ALLOWED: Record<string, readonly string[]> = {
  lib: [],
  sys: ['lib'],
  config: ['lib'],
  dns: ['config', 'sys', 'lib'],
  proxy: ['config', 'sys', 'lib'],
  daemon: ['dns', 'proxy', 'config', 'sys', 'lib', 'lab'],
  lab: ['lib'],
  bench: ['daemon', 'dns', 'proxy', 'config', 'sys', 'lib', 'lab'],
};

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|mjs)$/.test(name)) out.push(p);
  }
  return out;
}

/** Every relative import of a file, as the top-level folder it lands in. */
function importsOf(file: string): { spec: string; top: string }[] {
  const text = readFileSync(file, 'utf8');
  const out: { spec: string; top: string }[] = [];
  for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = relative(ROOT, resolve(dirname(file), m[1]!));
    out.push({ spec: m[1]!, top: target.split('/')[0]! });
  }
  return out;
}

describe('layout (architecture.md: boundaries)', () => {
  for (const [top, allowed] of Object.entries(ALLOWED)) {
    it(`${top}/ imports only ${allowed.length ? allowed.join(', ') : 'nothing of the project'}`, () => {
      const bad: string[] = [];
      for (const f of walk(join(ROOT, top))) {
        for (const i of importsOf(f)) if (i.top !== top && !allowed.includes(i.top)) bad.push(`${relative(ROOT, f)} imports ${i.spec}`);
      }
      expect(bad).toEqual([]);
    });
  }

  it('koffi is loaded only by *-linux.ts files outside config/ (and the libc in sys/libc-linux.ts only)', () => {
    const bad: string[] = [];
    for (const top of Object.keys(ALLOWED)) {
      for (const f of walk(join(ROOT, top))) {
        const text = readFileSync(f, 'utf8');
        const rel = relative(ROOT, f);
        if (/from 'koffi'/.test(text) && (top === 'config' || (!rel.endsWith('-linux.ts') && top !== 'bench'))) bad.push(`${rel} imports koffi`);
        if (/koffi\.load\(\s*'libc/.test(text)) bad.push(`${rel} loads libc itself (use sys/libc-linux.ts)`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('config/ holds no *-linux.ts file', () => {
    expect(walk(join(ROOT, 'config')).filter((f) => f.endsWith('-linux.ts')).map((f) => relative(ROOT, f))).toEqual([]);
  });
});
