// The policy's regexp prefilter literal (config/regexp-literal.ts): what
// every match must contain, never more; and the policy answers the same
// with it as each expression tried on its own.
import { describe, expect, it } from 'vitest';
import { requiredLiteral } from '../../config/regexp-literal.js';
import { compilePolicy } from '../../config/policy.js';
import type { RuleConfig } from '../../config/types.js';

describe('requiredLiteral', () => {
  it('takes the longest top-level literal run, escapes read as the character', () => {
    expect(requiredLiteral('^adservice\\.google\\.([a-z]{2}|com?)(\\.[a-z]{2})?$')).toBe('adservice.google.');
    expect(requiredLiteral('.+\\.awsdns-cn-[0-9][0-9]\\.(biz|com|net|top)$')).toBe('.awsdns-cn-');
    expect(requiredLiteral('^r+[0-9]+(---|\\.)sn-(2x3|ni5|j5o)\\w{5}\\.xn--ngstr-lra8j\\.com$')).toBe('.xn--ngstr-lra8j.com');
    expect(requiredLiteral('(^|\\.)bilibili3(0[1-9]|1[0-2])\\.xyz$')).toBe('bilibili3');
    expect(requiredLiteral('^ad[0-9]+\\.')).toBeNull(); // "ad" is too short
    // A bare TLD is what nearly every name holds: a shorter run that tells names apart comes first.
    expect(requiredLiteral('(^|\\.)91p[0-9][0-9]?\\.com$')).toBe('91p');
    expect(requiredLiteral('(^|\\.)[a-z][1-9][0-9][a-z]\\.com$')).toBe('.com');
  });

  it('a quantifier that makes a character optional cuts it off; + and {n,} keep it', () => {
    expect(requiredLiteral('abcdx?yz')).toBe('abcd');
    expect(requiredLiteral('abcdx*')).toBe('abcd');
    expect(requiredLiteral('abcx{0,3}defg')).toBe('defg');
    expect(requiredLiteral('abcx+yz')).toBe('abcx');
    expect(requiredLiteral('abcx{2,}')).toBe('abcx');
    expect(requiredLiteral('abc[x-z]?defg')).toBe('defg');
  });

  it('gives up on a top-level alternation or a broken expression; \\d \\w \\b break a run', () => {
    expect(requiredLiteral('foobar|bazqux')).toBeNull();
    expect(requiredLiteral('foo(bar')).toBeNull();
    expect(requiredLiteral('abc{2')).toBeNull();
    expect(requiredLiteral('ab\\dcd\\wefgh')).toBe('efgh');
    expect(requiredLiteral('(?:longliteral)x')).toBeNull();
  });
});

describe('the prefilter changes no answer', () => {
  const POS = { file: '/c.yaml', line: 1, col: 1 };
  const patterns = ['.+\\.awsdns-cn-[0-9][0-9]\\.(biz|com|net|top)$', '^adservice\\.google\\.([a-z]{2}|com?)(\\.[a-z]{2})?$', '^cdn\\d-epicgames-\\d+\\.file\\.myqcloud\\.com$', '^.+-mihayo\\.akamaized\\.net$', 'x?yz+abc'];
  const rules: RuleConfig[] = patterns.map((p, index) => ({ index, domains: [{ pattern: { kind: 'regexp', value: p }, origin: { keyPath: `rules[${index}].domains[0]`, pos: POS } }], cidrs: [], sources: [], lists: [], via: ['breakout'], label: '', pos: POS }));
  const policy = compilePolicy({ rules, default: ['tunnel'] }, new Map());
  const names = ['a.awsdns-cn-12.com', 'x.awsdns-cn-1.net', 'adservice.google.de', 'adservice.google.com.br', 'adservice.google.fr.x', 'cdn1-epicgames-23.file.myqcloud.com', 'abc-mihayo.akamaized.net', '-mihayo.akamaized.net', 'zzzabc', 'yzabc', 'example.com', 'google.com'];
  it('each name gets the rule whose expression matches it, first in order', () => {
    for (const n of names) {
      const want = patterns.findIndex((p) => new RegExp(p).test(n));
      expect([n, policy.ruleForName(n)]).toEqual([n, want]);
    }
  });
});
