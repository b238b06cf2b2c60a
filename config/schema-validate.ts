import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ConfigCodes, didYouMean, IssueSink } from './errors.js';
import { keyPathString, type KeySeg, type YamlSource } from './yaml-source.js';

// The JSON Schema (config/schema.json) is the one contract: ajv enforces it,
// editors use it for completion, and the README's reference is generated from
// it. This module turns ajv's errors into messages pinned to file:line:col.

type Schema = Record<string, unknown>;

function loadSchema(): Schema {
  // Sources run from config/, the build from dist/config/; the schema ships in config/.
  for (const rel of ['./schema.json', '../../config/schema.json']) {
    try {
      return JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as Schema;
    } catch {
      /* try the next place */
    }
  }
  throw new Error('config/schema.json not found next to the config module');
}

export const configSchema: Schema = loadSchema();

let validator: ValidateFunction | undefined;
// validateSchema: false: the schema is ours and fixed; checking it against
// JSON Schema's meta-schema at every start compiled that one too (~0.1 s of
// a router's CPU). test/unit/config-schema.test.ts checks it once instead.
function getValidator(): ValidateFunction {
  validator ??= new Ajv({ allErrors: true, verbose: true, strict: false, validateSchema: false }).compile(configSchema);
  return validator;
}

function resolveRef(s: unknown): Schema | undefined {
  if (typeof s !== 'object' || s === null) return undefined;
  const ref = (s as Schema).$ref;
  if (typeof ref !== 'string') return s as Schema;
  let cur: unknown = configSchema;
  for (const seg of ref.replace(/^#\//, '').split('/')) cur = (cur as Schema)[seg];
  return resolveRef(cur);
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(branch: Schema | undefined, v: unknown): boolean {
  const t = branch?.type;
  if (t === undefined) return true;
  const actual = jsonType(v);
  const accepts = (x: unknown): boolean => x === actual || (x === 'number' && actual === 'integer');
  return Array.isArray(t) ? t.some(accepts) : accepts(t);
}

/** Every schema object reachable from `s` (following $ref), to tell which oneOf branch an error came from. */
function reachable(s: unknown, into = new Set<unknown>()): Set<unknown> {
  if (typeof s !== 'object' || s === null || into.has(s)) return into;
  into.add(s);
  const r = resolveRef(s);
  if (r && r !== s) reachable(r, into);
  for (const v of Object.values(s as Schema)) {
    if (typeof v === 'object' && v !== null) reachable(v, into);
  }
  return into;
}

function pathOf(instancePath: string): KeySeg[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function article(t: string): string {
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

function describeExpected(s: Schema | undefined): string {
  if (!s) return 'a valid value';
  if (Array.isArray(s.enum)) return `one of ${s.enum.map((x) => JSON.stringify(x)).join(', ')}`;
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.oneOf)) {
    return s.oneOf.map((b) => describeExpected(resolveRef(b))).join(' or ');
  }
  if (typeof s.type === 'string') return s.type === 'array' ? 'a list' : article(s.type === 'object' ? 'mapping' : s.type);
  return 'a valid value';
}

/** Validates the YAML's data against the schema; returns whether it passed. */
export function validateAgainstSchema(data: unknown, src: YamlSource, sink: IssueSink): boolean {
  const validate = getValidator();
  if (validate(data)) return true;
  let errors = [...(validate.errors ?? [])];

  // oneOf: keep only the errors of the branch whose type fits the data, so a
  // typo inside an object is reported as that typo, not as "must be a string".
  for (const e of errors.filter((x) => x.keyword === 'oneOf')) {
    const branches = (e.schema as unknown[]).map(resolveRef);
    const chosen = branches.findIndex((b) => typeMatches(b, e.data));
    const within = (x: ErrorObject): boolean => x.instancePath === e.instancePath || x.instancePath.startsWith(e.instancePath + '/');
    if (chosen < 0) {
      // No branch has the right type: one message that lists what fits.
      errors = errors.filter((x) => x === e || !within(x) || x.keyword === 'oneOf');
      continue;
    }
    // The chosen branch's type fits; the other branches' type complaints about this same value are noise.
    errors = errors.filter((x) => !(x.instancePath === e.instancePath && x.keyword === 'type' && x !== e));
    const keep = reachable(branches[chosen]);
    const others = new Set<unknown>();
    branches.forEach((b, i) => i !== chosen && reachable(b, others));
    errors = errors.filter((x) => {
      if (x === e) return !errors.some((y) => y !== e && within(y) && keep.has(y.parentSchema));
      if (!within(x)) return true;
      return keep.has(x.parentSchema) || !others.has(x.parentSchema);
    });
  }

  const seen = new Set<string>();
  for (const e of errors) {
    const path = pathOf(e.instancePath);
    const issue = toIssue(e, path, src);
    if (!issue) continue;
    const k = `${issue.path.join('/')}|${issue.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    sink.error(issue.code, issue.key ? src.keyPos(issue.path) : src.pos(issue.path), keyPathString(issue.path), issue.message);
  }
  return false;
}

interface Mapped {
  code: (typeof ConfigCodes)[keyof typeof ConfigCodes];
  path: KeySeg[];
  message: string;
  key?: boolean;
}

function toIssue(e: ErrorObject, path: KeySeg[], src: YamlSource): Mapped | null {
  const parent = e.parentSchema as Schema | undefined;
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const known = Object.keys((parent?.properties as Schema | undefined) ?? {});
      const hint = didYouMean(key, known);
      return {
        code: ConfigCodes.UNKNOWN_KEY,
        path: [...path, key],
        key: true,
        message: `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : known.length ? ` (expected one of: ${known.join(', ')})` : ''}`,
      };
    }
    case 'propertyNames':
      return null; // reported by the pattern error on the name itself
    case 'pattern': {
      if (e.propertyName !== undefined) {
        return { code: ConfigCodes.VALUE, path: [...path, e.propertyName], key: true, message: `name "${e.propertyName}" must be letters, digits, ".", "_" or "-"` };
      }
      const isDuration = typeof parent?.description === 'string' && parent.description.startsWith('A duration');
      if (isDuration) return { code: ConfigCodes.DURATION, path, message: `"${String(e.data)}" is not a duration (use e.g. 500ms, 1s, 5m)` };
      const desc = typeof parent?.description === 'string' ? ` (${parent.description})` : '';
      return { code: ConfigCodes.VALUE, path, message: `"${String(e.data)}" is not valid${desc}` };
    }
    case 'required': {
      const key = String(p.missingProperty);
      return { code: ConfigCodes.MISSING_KEY, path, message: `missing required key "${key}"` };
    }
    case 'type': {
      const expected = String(p.type);
      const isDuration = typeof parent?.description === 'string' && parent.description.startsWith('A duration');
      if (isDuration) return { code: ConfigCodes.DURATION, path, message: `a duration is a string such as "1s" or "500ms", not ${JSON.stringify(e.data)}` };
      return { code: ConfigCodes.TYPE, path, message: `must be ${expected === 'array' ? 'a list' : article(expected === 'object' ? 'mapping' : expected)}, not ${describeValue(e.data)}` };
    }
    case 'enum':
      return { code: ConfigCodes.VALUE, path, message: `${describeValue(e.data)} is not allowed; use ${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}` };
    case 'const':
      return { code: ConfigCodes.VALUE, path, message: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'oneOf':
      return { code: ConfigCodes.TYPE, path, message: `must be ${describeExpected(parent)}, not ${describeValue(e.data)}` };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { code: ConfigCodes.VALUE, path, message: `${String(e.data)} is out of range (${e.message ?? ''})` };
    case 'maxItems':
      return { code: ConfigCodes.VALUE, path, message: `at most ${String(p.limit)} items (splitwan gives each gateway its own mark and table)` };
    case 'minItems':
      return { code: ConfigCodes.VALUE, path, message: `needs at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}` };
    case 'minLength':
      return { code: ConfigCodes.VALUE, path, message: 'must not be empty' };
    case 'maxLength':
      return { code: ConfigCodes.VALUE, path, message: `"${String(e.data)}" is longer than ${String(p.limit)} characters` };
    default:
      void src;
      return { code: ConfigCodes.TYPE, path, message: e.message ?? 'is not valid' };
  }
}

function describeValue(v: unknown): string {
  const t = jsonType(v);
  if (t === 'null') return 'empty';
  if (t === 'object') return 'a mapping';
  if (t === 'array') return 'a list';
  return `${t === 'integer' ? 'the number' : article(t)} ${JSON.stringify(v)}`.replace(/^a string /, '');
}
