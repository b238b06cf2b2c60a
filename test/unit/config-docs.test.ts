// The configuration reference (docs/config-reference.md) is generated from
// config/schema.json; these tests keep the two, and the examples, in step:
//   (a) the committed reference is exactly what the renderer makes now;
//   (b) every key path of the schema has a row in it;
//   (c) every example YAML starts with the yaml-language-server $schema line;
//   (d) every key written in an example is a key the schema accepts.
// The key-path walker here is written apart from the renderer's on purpose.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_REFERENCE_FILE, REGENERATE_COMMAND, renderConfigReference } from '../../config/schema-doc.js';

type Schema = Record<string, unknown>;

const root = join(import.meta.dirname, '..', '..');
const schemaFile = join(root, 'config', 'schema.json');
const schema = JSON.parse(readFileSync(schemaFile, 'utf8')) as Schema;
const reference = readFileSync(join(root, CONFIG_REFERENCE_FILE), 'utf8');

const isObj = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): Schema[] => (Array.isArray(v) ? v.filter(isObj) : []);

function deref(s: Schema, top: Schema = schema): Schema {
  let cur = s;
  for (let hops = 0; typeof cur.$ref === 'string'; hops++) {
    if (hops > 32) throw new Error(`$ref loop at ${cur.$ref}`);
    let next: unknown = top;
    for (const seg of cur.$ref.replace(/^#\/?/, '').split('/').filter((x) => x !== '')) {
      next = isObj(next) ? next[seg.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
    }
    if (!isObj(next)) throw new Error(`unresolved $ref ${cur.$ref}`);
    cur = next;
  }
  return cur;
}

const alternatives = (s: Schema): Schema[] => [...list(s.oneOf), ...list(s.anyOf), ...list(s.allOf)];

/**
 * Every key path the schema accepts, in the reference's notation: `a.b`,
 * `a[].b` (items of a list), `a.<name>.b` (entries of a map). "X or a list of
 * X" is written once, as X.
 */
function schemaKeyPaths(s: Schema, path = '', out = new Set<string>(), depth = 0): Set<string> {
  if (depth > 20) return out;
  const r = deref(s);
  for (const [k, v] of Object.entries(isObj(r.properties) ? r.properties : {})) {
    if (!isObj(v)) continue;
    const p = path === '' ? k : `${path}.${k}`;
    out.add(p);
    schemaKeyPaths(v, p, out, depth + 1);
  }
  if (isObj(r.additionalProperties)) {
    out.add(`${path}.<name>`);
    schemaKeyPaths(r.additionalProperties, `${path}.<name>`, out, depth + 1);
  }
  if (isObj(r.items)) schemaKeyPaths(r.items, `${path}[]`, out, depth + 1);
  const alts = alternatives(r);
  for (const v of alts) {
    const items = deref(v).items;
    const listOfSibling = isObj(items) && alts.some((o) => o !== v && JSON.stringify(o) === JSON.stringify(items));
    if (!listOfSibling) schemaKeyPaths(v, path, out, depth + 1);
  }
  return out;
}

/** A schema and, flattened, every oneOf/anyOf/allOf alternative inside it. */
function shapes(s: Schema, depth = 0): Schema[] {
  const r = deref(s);
  return depth > 20 ? [r] : [r, ...alternatives(r).flatMap((a) => shapes(a, depth + 1))];
}

/** Key paths in a parsed YAML document that no schema alternative accepts. */
function unknownKeys(value: unknown, candidates: Schema[], path = '', out: string[] = []): string[] {
  const all = candidates.flatMap((c) => shapes(c));
  if (Array.isArray(value)) {
    const items = all.flatMap((x) => (isObj(x.items) ? [x.items] : []));
    value.forEach((v, i) => unknownKeys(v, items, `${path}[${i}]`, out));
  } else if (isObj(value)) {
    for (const [k, v] of Object.entries(value)) {
      const p = path === '' ? k : `${path}.${k}`;
      const next = all.flatMap((x): Schema[] => {
        const props = isObj(x.properties) ? x.properties : {};
        if (isObj(props[k])) return [props[k]];
        if (isObj(x.additionalProperties)) return [x.additionalProperties];
        const open = x.additionalProperties === undefined || x.additionalProperties === true;
        return open && (x.type === 'object' || isObj(x.properties)) ? [{}] : [];
      });
      if (next.length === 0) out.push(p);
      else unknownKeys(v, next, p, out);
    }
  }
  return out;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}
const examples = yamlFiles(join(root, 'docs', 'examples'));

describe('docs/config-reference.md', () => {
  it('(a) is what renderConfigReference makes from config/schema.json now', () => {
    expect(
      renderConfigReference(schema),
      `${CONFIG_REFERENCE_FILE} is out of date with config/schema.json: regenerate it with \`${REGENERATE_COMMAND}\``,
    ).toBe(reference);
  });

  it('(b) has a row for every key path in the schema', () => {
    const paths = [...schemaKeyPaths(schema)];
    // The walker itself reaches the nested, listed, mapped and oneOf-ed keys.
    expect(paths).toEqual(
      expect.arrayContaining([
        'dns.cache.size',
        'tunnel.gateways[].peer.endpoint',
        'lists.<name>.url',
        'health.probe.url',
        'tunnel.gateways[].probe.kind',
        'rules[].via',
        'default',
      ]),
    );
    const missing = paths.filter((p) => !reference.includes(`| \`${p}\` |`));
    expect(missing, `key paths without a row in ${CONFIG_REFERENCE_FILE}; regenerate with \`${REGENERATE_COMMAND}\``).toEqual([]);
  });

  it('says it is generated and how to regenerate it', () => {
    expect(reference.split('\n').slice(0, 5).join('\n')).toContain(`Generated from`);
    expect(reference).toContain(REGENERATE_COMMAND);
  });
});

describe('renderConfigReference', () => {
  const tiny = {
    title: 'tiny',
    type: 'object',
    required: ['a'],
    definitions: {
      dur: { type: 'string', pattern: '^(ms|s)$', description: 'A duration.' },
      kind: { type: 'string', enum: ['x', 'null'] },
      thing: {
        oneOf: [
          { $ref: '#/definitions/kind' },
          { type: 'object', required: ['kind'], properties: { kind: { $ref: '#/definitions/kind' }, n: { type: 'integer', minimum: 1, maximum: 9 } } },
        ],
      },
    },
    properties: {
      a: { type: 'object', properties: { t: { $ref: '#/definitions/dur', default: '1s', description: 'Pipe | and <tag>.' } } },
      m: { type: 'object', additionalProperties: { type: 'object', properties: { f: { type: 'string' } } } },
      l: { type: 'array', items: { type: 'object', properties: { g: { type: 'boolean', default: false } } } },
      p: { oneOf: [{ $ref: '#/definitions/thing' }, { type: 'array', minItems: 1, items: { $ref: '#/definitions/thing' } }] },
    },
  };

  it('is deterministic and leaves its input alone', () => {
    const before = JSON.stringify(tiny);
    expect(renderConfigReference(tiny)).toBe(renderConfigReference(JSON.parse(before) as object));
    expect(JSON.stringify(tiny)).toBe(before);
  });

  it('walks $refs, maps, lists and oneOf, and escapes table cells', () => {
    const md = renderConfigReference(tiny);
    expect(md).toContain('| `a` | object |  |  | **Required.** |');
    expect(md).toContain('| `a.t` | [dur](#dur) | `1s` |  | Pipe \\| and \\<tag>. |');
    expect(md).toContain('| `m.<name>.f` | string |');
    expect(md).toContain('| `l[].g` | boolean | `false` |');
    // "thing or a list of things": the keys once, under p, not p[].
    expect(md).toContain('| `p.kind` | string |  | `x`, `"null"` | **Required.** |');
    expect(md).toContain('| `p.n` | integer |  | 1–9 |  |');
    expect(md).not.toContain('p[].');
    expect(md).toContain('- Allowed values: pattern `^(ms|s)$`');
  });

  it('refuses a $ref it cannot resolve', () => {
    expect(() => renderConfigReference({ properties: { a: { $ref: '#/definitions/nope' } } })).toThrow(/nope/);
    expect(() => renderConfigReference({ properties: { a: { $ref: 'other.json#/x' } } })).toThrow(/local/);
  });
});

describe('docs/examples', () => {
  it('has YAML examples', () => {
    expect(examples.length).toBeGreaterThan(0);
  });

  it.each(examples.map((f) => [relative(root, f), f]))(
    '(c) %s starts with a yaml-language-server $schema line pointing at config/schema.json',
    (_name, file) => {
      const want = `# yaml-language-server: $schema=${relative(dirname(file), schemaFile)}`;
      const first = readFileSync(file, 'utf8').split('\n')[0] ?? '';
      const m = /^# yaml-language-server: \$schema=(\S+)\s*$/.exec(first);
      expect(m, `first line of ${relative(root, file)} must be: ${want}`).not.toBeNull();
      const target = m?.[1] ?? '';
      const ok = target === schema.$id || resolve(dirname(file), target) === schemaFile;
      expect(ok, `${relative(root, file)}: $schema=${target} is not config/schema.json; use: ${want}`).toBe(true);
    },
  );

  it.each(examples.map((f) => [relative(root, f), f]))('(d) every key in %s is a key of the schema', (_name, file) => {
    const doc: unknown = parse(readFileSync(file, 'utf8'));
    expect(unknownKeys(doc, [schema]), `${relative(root, file)}: keys the schema does not have`).toEqual([]);
  });

  it('(d) the key check does catch unknown keys', () => {
    const doc = parse(readFileSync(join(root, 'docs', 'examples', 'config.yaml'), 'utf8')) as Schema;
    const bad = {
      ...doc,
      health: { interval: '1s', intervall: '2s', probe: [{ kind: 'http', uri: 'x' }] },
      lists: { mine: { file: 'a', fromat: 'plain' } },
      rules: [{ via: 'breakout', domain: ['x'] }],
      nope: 1,
    };
    expect(unknownKeys(bad, [schema]).sort()).toEqual(
      ['health.intervall', 'health.probe[0].uri', 'lists.mine.fromat', 'nope', 'rules[0].domain'].sort(),
    );
  });
});
