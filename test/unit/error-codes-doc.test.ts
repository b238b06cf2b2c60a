import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigCodes } from '../../config/errors.js';

const root = join(import.meta.dirname, '..', '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('error codes are documented', () => {
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  const documented = new Set(doc.match(/SPLITWAN_[A-Z0-9_]+/g) ?? []);

  it('every code in ConfigCodes appears in docs/errors.md', () => {
    const missing = Object.values(ConfigCodes).filter((c) => !documented.has(c));
    expect(missing).toEqual([]);
  });

  it('every SPLITWAN_* literal in the sources appears in docs/errors.md', () => {
    const used = new Set<string>();
    for (const dir of ['lib', 'sys', 'config', 'dns', 'proxy', 'daemon', 'lab']) {
      if (!existsSync(join(root, dir))) continue;
      for (const f of sources(join(root, dir))) {
        for (const m of readFileSync(f, 'utf8').match(/SPLITWAN_[A-Z0-9_]+/g) ?? []) used.add(m);
      }
    }
    expect(used.size).toBeGreaterThan(Object.keys(ConfigCodes).length);
    expect([...used].filter((c) => !documented.has(c))).toEqual([]);
  });
});
