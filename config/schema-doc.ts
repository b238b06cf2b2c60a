import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// Renders the configuration reference (docs/config-reference.md) from the JSON
// Schema (config/schema.json), so the reference cannot say something the
// validator does not enforce. renderConfigReference is pure: the same schema
// gives the same bytes. writeConfigReference is the generator's entry point
// (docs/gen-config-reference.mjs calls it from dist/ after `npm run build`).
//
// Key paths: `a.b` is key b inside a; `a[].b` is key b of each item of list a;
// `a.<name>.b` is key b of each entry of map a (additionalProperties). A
// `$ref` to a definition that has a description is shown as a link to its
// entry under "Shared types"; one without is inlined (its type and
// constraints are written out where it is used). Either way the keys of
// object-shaped definitions are listed in full at every place they can be
// written. A oneOf/anyOf variant that is just a list of another variant
// ("X or a list of X") adds no key paths of its own.

type Schema = Record<string, unknown>;

/** Where the generated reference lives, relative to the repository root. */
export const CONFIG_REFERENCE_FILE = 'docs/config-reference.md';
/** How to regenerate it. */
export const REGENERATE_COMMAND = 'npm run build && node docs/gen-config-reference.mjs';

interface Row {
  path: string;
  type: string;
  default: string;
  allowed: string;
  description: string;
}

const DEF_REF = /^#\/(?:definitions|\$defs)\/([^/]+)$/;

function isSchema(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function entries(v: unknown): [string, Schema][] {
  return isSchema(v) ? Object.entries(v).filter((e): e is [string, Schema] => isSchema(e[1])) : [];
}

function schemaList(v: unknown): Schema[] {
  return Array.isArray(v) ? v.filter(isSchema) : [];
}

function defName(s: Schema): string | undefined {
  if (typeof s.$ref !== 'string') return undefined;
  const m = DEF_REF.exec(s.$ref);
  return m?.[1] === undefined ? undefined : decodeSegment(m[1]);
}

function decodeSegment(seg: string): string {
  return decodeURIComponent(seg).replace(/~1/g, '/').replace(/~0/g, '~');
}

/** JSON with sorted keys, to compare two subschemas. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isSchema(v)) {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}

// ---- Markdown helpers ------------------------------------------------------

/** A code span that survives backticks in its text. */
function code(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/**
 * Prose from the schema: backtick code spans are kept, everything else is
 * escaped so `<name>` is not taken for HTML nor `*.x` for emphasis.
 */
function prose(text: string): string {
  const flat = text.replace(/\s*\n\s*/g, ' ').trim();
  let out = '';
  let last = 0;
  for (const m of flat.matchAll(/`[^`]*`/g)) {
    out += escapeProse(flat.slice(last, m.index)) + m[0];
    last = m.index + m[0].length;
  }
  out += escapeProse(flat.slice(last));
  // A paragraph must not start like a heading, quote or list item.
  return out.replace(/^([#>+=-])/, '\\$1').replace(/^(\d+)([.)])/, '$1\\$2');
}

function escapeProse(s: string): string {
  return s
    .replace(/[\\*[\]<&]/g, '\\$&')
    .replace(/(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])/g, '\\_');
}

/** A table cell: one line, pipes escaped (GFM unescapes them inside code spans too). */
function cell(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

/** GitHub's heading anchors, with its -1, -2 suffixes for repeats. */
class Slugger {
  private readonly seen = new Map<string, number>();
  slug(heading: string): string {
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = this.seen.get(base);
    this.seen.set(base, (n ?? 0) + 1);
    return n === undefined ? base : `${base}-${n}`;
  }
}

// ---- YAML values -----------------------------------------------------------

const YAML_KEYWORD = /^(?:~|null|true|false|yes|no|on|off|y|n)$/i;
const YAML_NUMBER = /^(?:[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|0x[0-9a-fA-F]+|0o[0-7]+|[-+]?\.inf|\.nan)$/i;

/** A value as one would write it in the YAML config (flow style). */
function yaml(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.map(yaml).join(', ')}]`;
  if (isSchema(v)) return `{${Object.entries(v).map(([k, x]) => `${yaml(k)}: ${yaml(x)}`).join(', ')}}`;
  if (typeof v === 'string') {
    const plain = /^[A-Za-z0-9_./][A-Za-z0-9_./+@-]*$/.test(v) && !YAML_KEYWORD.test(v) && !YAML_NUMBER.test(v);
    return plain ? v : JSON.stringify(v);
  }
  return String(v);
}

// ---- The renderer ----------------------------------------------------------

function range(min: unknown, max: unknown, xmin: unknown, xmax: unknown, unit = ''): string | undefined {
  const lo = typeof min === 'number' ? `${min}` : undefined;
  const hi = typeof max === 'number' ? `${max}` : undefined;
  if (lo !== undefined && hi !== undefined) return `${lo}–${hi}${unit}`;
  const parts: string[] = [];
  if (lo !== undefined) parts.push(`≥ ${lo}${unit}`);
  if (typeof xmin === 'number') parts.push(`> ${xmin}${unit}`);
  if (hi !== undefined) parts.push(`≤ ${hi}${unit}`);
  if (typeof xmax === 'number') parts.push(`< ${xmax}${unit}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

class Renderer {
  private readonly anchors = new Map<string, string>();

  constructor(private readonly root: Schema) {}

  private definitions(): [string, Schema][] {
    return [...entries(this.root.definitions), ...entries(this.root.$defs)];
  }

  /** The definition a `$ref` names, when it gets its own entry under Shared types. */
  private linkedDef(s: Schema): string | undefined {
    const name = defName(s);
    return name !== undefined && this.anchors.has(name) ? name : undefined;
  }

  private lookup(ref: string): Schema {
    if (!ref.startsWith('#')) throw new Error(`schema-doc: only local $refs are supported, not ${ref}`);
    let cur: unknown = this.root;
    const pointer = ref.slice(1);
    if (pointer !== '') {
      if (!pointer.startsWith('/')) throw new Error(`schema-doc: unsupported $ref ${ref}`);
      for (const seg of pointer.slice(1).split('/')) {
        cur = isSchema(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[decodeSegment(seg)] : undefined;
      }
    }
    if (!isSchema(cur)) throw new Error(`schema-doc: $ref ${ref} does not point at a schema`);
    return cur;
  }

  /** Follows `$ref`s to the schema that has the structure (type, properties, ...). */
  private resolve(s: Schema): Schema {
    const seen = new Set<string>();
    let cur = s;
    while (typeof cur.$ref === 'string') {
      if (seen.has(cur.$ref)) throw new Error(`schema-doc: $ref cycle through ${cur.$ref}`);
      seen.add(cur.$ref);
      cur = this.lookup(cur.$ref);
    }
    return cur;
  }

  /** An annotation (default), from the key itself first, then along its `$ref`s. */
  private annotation(s: Schema, key: string): unknown {
    const seen = new Set<string>();
    let cur: Schema | undefined = s;
    while (cur !== undefined) {
      if (key in cur) return cur[key];
      const ref: unknown = cur.$ref;
      if (typeof ref !== 'string' || seen.has(ref)) return undefined;
      seen.add(ref);
      cur = this.lookup(ref);
    }
    return undefined;
  }

  private link(name: string): string {
    const anchor = this.anchors.get(name);
    return anchor === undefined ? code(name) : `[${name}](#${anchor})`;
  }

  // -- types

  typeText(s: Schema): string {
    const name = this.linkedDef(s);
    if (name !== undefined) return this.link(name);
    return this.bodyType(this.resolve(s));
  }

  /** The type of a schema that is not itself a `$ref`. */
  private bodyType(s: Schema): string {
    if ('const' in s) return code(yaml(s.const));
    const alts = [...schemaList(s.oneOf), ...schemaList(s.anyOf)];
    if (alts.length > 0) return alts.map((v) => this.typeText(v)).join(' or ');
    const all = schemaList(s.allOf);
    if (all.length > 0 && s.type === undefined) return all.map((v) => this.typeText(v)).join(' and ');
    const type = s.type;
    if (Array.isArray(type)) return type.map((t) => this.simpleType(String(t), s)).join(' or ');
    if (typeof type === 'string') return this.simpleType(type, s);
    if (isSchema(s.properties) || isSchema(s.additionalProperties)) return this.simpleType('object', s);
    if (Array.isArray(s.enum)) {
      return [...new Set(s.enum.map((v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v)))].join(' or ');
    }
    return 'any';
  }

  private simpleType(type: string, s: Schema): string {
    const paren = (t: string): string => (t.includes(' or ') || t.includes(' and ') ? `(${t})` : t);
    if (type === 'array') return isSchema(s.items) ? `list of ${paren(this.typeText(s.items))}` : 'list';
    if (type === 'object' && !isSchema(s.properties) && isSchema(s.additionalProperties)) {
      return `map of ${paren(this.typeText(s.additionalProperties))}`;
    }
    return type;
  }

  // -- constraints ("allowed values")

  /** The constraints a schema (not a `$ref`) puts on its value, in a fixed order. */
  private constraints(s: Schema): string[] {
    const out: string[] = [];
    if (Array.isArray(s.enum)) out.push(s.enum.map((v) => code(yaml(v))).join(', '));
    const num = range(s.minimum, s.maximum, s.exclusiveMinimum, s.exclusiveMaximum);
    if (num !== undefined) out.push(num);
    if (typeof s.multipleOf === 'number') out.push(`multiple of ${s.multipleOf}`);
    const len = range(s.minLength, s.maxLength, undefined, undefined);
    if (len !== undefined) out.push(`length ${len}`);
    if (typeof s.pattern === 'string') out.push(`pattern ${code(s.pattern)}`);
    if (typeof s.format === 'string') out.push(`format ${s.format}`);
    if (typeof s.minItems === 'number' || typeof s.maxItems === 'number') {
      if (typeof s.minItems === 'number' && typeof s.maxItems === 'number') out.push(`${s.minItems}–${s.maxItems} items`);
      else if (typeof s.minItems === 'number') out.push(`at least ${s.minItems} item${s.minItems === 1 ? '' : 's'}`);
      else out.push(`at most ${String(s.maxItems)} items`);
    }
    if (s.uniqueItems === true) out.push('no duplicates');
    if (isSchema(s.items)) {
      const each = this.refConstraints(s.items);
      if (each.length > 0) out.push(`each: ${each.join(', ')}`);
    }
    const props = range(s.minProperties, s.maxProperties, undefined, undefined, ' entries');
    if (props !== undefined) out.push(props);
    if (isSchema(s.propertyNames)) {
      const names = this.refConstraints(s.propertyNames);
      if (names.length > 0) out.push(`names: ${names.join(', ')}`);
    }
    const alts = [...schemaList(s.oneOf), ...schemaList(s.anyOf)];
    for (const v of alts) {
      if (this.linkedDef(v) !== undefined) continue; // its constraints are under Shared types
      const sub = this.refConstraints(v);
      if (sub.length === 0) continue;
      const r = this.resolve(v);
      out.push(`${r.type === 'array' ? 'list' : typeof r.type === 'string' ? r.type : this.typeText(v)}: ${sub.join(', ')}`);
    }
    return out;
  }

  /**
   * Constraints of a subschema. A `$ref` to a linked definition only brings its
   * allowed values (enum); its patterns and ranges are under Shared types.
   */
  private refConstraints(s: Schema): string[] {
    if (typeof s.$ref !== 'string') return this.constraints(s);
    const own = this.constraints(Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$ref')));
    const target = this.resolve(s);
    const values = Array.isArray(target.enum) ? [target.enum.map((v) => code(yaml(v))).join(', ')] : [];
    return this.linkedDef(s) === undefined ? [...own, ...this.constraints(target)] : [...values, ...own];
  }

  // -- key paths

  /** The variants whose keys are listed: "X or a list of X" lists X once. */
  private keyVariants(s: Schema): Schema[] {
    const alts = [...schemaList(s.oneOf), ...schemaList(s.anyOf)];
    const listOfSibling = (v: Schema): boolean => {
      const r = this.resolve(v);
      const items = r.items;
      return r.type === 'array' && isSchema(items) && alts.some((o) => o !== v && canonical(o) === canonical(items));
    };
    return [...alts.filter((v) => !listOfSibling(v)), ...schemaList(s.allOf)];
  }

  private row(path: string, s: Schema, required: boolean, out: Row[], seen: Set<string>, refs: string[]): void {
    if (seen.has(path)) return;
    seen.add(path);
    const def = this.annotation(s, 'default');
    const description = typeof s.description === 'string' ? prose(s.description) : '';
    out.push({
      path,
      type: this.typeText(s),
      default: def === undefined ? '' : code(yaml(def)),
      allowed: this.refConstraints(s).join('; '),
      description: required ? `**Required.**${description === '' ? '' : ` ${description}`}` : description,
    });
    this.children(path, s, out, seen, refs);
  }

  private children(path: string, raw: Schema, out: Row[], seen: Set<string>, refs: string[]): void {
    if (typeof raw.$ref === 'string') {
      if (refs.includes(raw.$ref)) return; // a recursive schema: its keys are listed once
      refs = [...refs, raw.$ref];
    }
    const s = this.resolve(raw);
    const required = Array.isArray(s.required) ? s.required : [];
    for (const [key, sub] of entries(s.properties)) {
      this.row(path === '' ? key : `${path}.${key}`, sub, required.includes(key), out, seen, refs);
    }
    if (isSchema(s.additionalProperties)) this.row(`${path}.<name>`, s.additionalProperties, false, out, seen, refs);
    if (isSchema(s.items)) this.children(`${path}[]`, s.items, out, seen, refs);
    for (const v of this.keyVariants(s)) this.children(path, v, out, seen, refs);
  }

  /** Keys an object-shaped definition accepts (its own and its variants'), for Shared types. */
  private definitionKeys(s: Schema, refs: string[] = []): string[] {
    if (typeof s.$ref === 'string') {
      if (refs.includes(s.$ref)) return [];
      refs = [...refs, s.$ref];
    }
    const r = this.resolve(s);
    const keys = Object.keys(isSchema(r.properties) ? r.properties : {});
    for (const v of this.keyVariants(r)) keys.push(...this.definitionKeys(v, refs));
    return [...new Set(keys)];
  }

  // -- the document

  render(): string {
    const title = typeof this.root.title === 'string' ? `${this.root.title} reference` : 'Configuration reference';
    const top = entries(this.root.properties);
    const defs = this.definitions();
    const required = Array.isArray(this.root.required) ? this.root.required.filter((r) => typeof r === 'string') : [];

    // Anchors first: tables link to Shared types before those headings are written.
    const slugger = new Slugger();
    slugger.slug(title);
    const keyAnchors = new Map(top.map(([key]) => [key, slugger.slug(key)]));
    const typesAnchor = slugger.slug('Shared types');
    // Only definitions with a description get an entry; the others are inlined.
    const linked = defs.filter(([, def]) => typeof def.description === 'string');
    for (const [name] of linked) this.anchors.set(name, slugger.slug(name));

    const lines: string[] = [
      `# ${title}`,
      '',
      `> Generated from [config/schema.json](../config/schema.json) by \`config/schema-doc.ts\`; do not edit by hand. Regenerate: \`${REGENERATE_COMMAND}\`.`,
      '',
    ];
    if (typeof this.root.description === 'string') lines.push(prose(this.root.description), '');
    lines.push(
      'Key paths: `a.b` is key `b` inside `a`; `a[].b` is key `b` of each item of the list `a`; ' +
        '`a.<name>.b` is key `b` of each entry of the map `a`, under a name you choose.' +
        (linked.length > 0 ? ` Linked types are described under [Shared types](#${typesAnchor}).` : ''),
      '',
      'Editors that use yaml-language-server check and complete a config file that starts with ' +
        '`# yaml-language-server: $schema=<path or URL of config/schema.json>`.',
      '',
      `Top-level keys: ${top.map(([key]) => `[${code(key)}](#${keyAnchors.get(key) ?? key})`).join(', ')}.` +
        (required.length > 0 ? ` Required: ${required.map((r) => code(r)).join(', ')}.` : ''),
    );

    for (const [key, sub] of top) {
      const rows: Row[] = [];
      this.row(key, sub, required.includes(key), rows, new Set(), []);
      lines.push('', `## ${code(key)}`, '', '| Key | Type | Default | Allowed values | Description |', '| --- | --- | --- | --- | --- |');
      for (const r of rows) {
        lines.push(`| ${[code(r.path), r.type, r.default, r.allowed, r.description].map(cell).join(' | ')} |`);
      }
    }

    if (linked.length > 0) {
      lines.push('', '## Shared types');
      for (const [name, def] of linked) {
        lines.push('', `### ${code(name)}`, '');
        if (typeof def.description === 'string') lines.push(prose(def.description), '');
        const body = typeof def.$ref === 'string' ? this.typeText(def) : this.bodyType(def);
        lines.push(`- Type: ${body}`);
        const allowed = this.refConstraints(def);
        if (allowed.length > 0) lines.push(`- Allowed values: ${allowed.join('; ')}`);
        const d = this.annotation(def, 'default');
        if (d !== undefined) lines.push(`- Default: ${code(yaml(d))}`);
        const keys = this.definitionKeys(def);
        if (keys.length > 0) lines.push(`- Keys (object form): ${keys.map((k) => code(k)).join(', ')}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }
}

/** The Markdown configuration reference for a JSON Schema (draft-07, local `$ref`s). Pure. */
export function renderConfigReference(schema: object): string {
  if (!isSchema(schema)) throw new TypeError('renderConfigReference: the schema must be an object');
  return new Renderer(schema).render();
}

/**
 * The generator: renders `<rootDir>/config/schema.json` into
 * `<rootDir>/docs/config-reference.md`. With `check`, writes nothing and only
 * reports whether the file is up to date.
 */
export function writeConfigReference(rootDir: string, opts: { check?: boolean } = {}): { file: string; upToDate: boolean } {
  const schema = JSON.parse(readFileSync(join(rootDir, 'config', 'schema.json'), 'utf8')) as object;
  const text = renderConfigReference(schema);
  const file = join(rootDir, CONFIG_REFERENCE_FILE);
  let current: string | undefined;
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    current = undefined;
  }
  const upToDate = current === text;
  if (!upToDate && opts.check !== true) writeFileSync(file, text);
  return { file, upToDate };
}
