// The Prometheus naming rules `promtool check metrics` applies (its promlint
// checks, and the _total rule for non-counters), over exposition text: so a
// scrape is checked where promtool is not installed too. Pure.

export interface Family {
  name: string;
  type: string;
  help: string | null;
  /** Label names seen on its samples. */
  labels: Set<string>;
}

/** Families of an exposition text by # TYPE / # HELP, with the label names of their samples. */
export function families(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const get = (name: string): Family => {
    let f = out.get(name);
    if (f === undefined) out.set(name, (f = { name, type: 'untyped', help: null, labels: new Set() }));
    return f;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (TYPE|HELP) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') get(meta[2]!).type = meta[3]!;
      else get(meta[2]!).help = meta[3]!;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+/.exec(line);
    if (!sample) continue;
    const name = sample[1]!;
    const base = out.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    const f = get(out.has(base) ? base : name);
    for (const l of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) f.labels.add(l[1]!);
  }
  return out;
}

/** Base units, and the prefixes that make other units of them (promlint's lists). */
const BASE_UNITS = ['amperes', 'bytes', 'celsius', 'grams', 'joules', 'kelvin', 'meters', 'metres', 'seconds', 'volts'];
const UNIT_PREFIXES = ['pico', 'nano', 'micro', 'milli', 'centi', 'deci', 'deca', 'hecto', 'kilo', 'kibi', 'mega', 'mebi', 'giga', 'gibi', 'tera', 'tebi', 'peta', 'pebi'];
/** Units with a base unit of another name. */
const OTHER_UNITS: Record<string, string> = { minutes: 'seconds', hours: 'seconds', days: 'seconds', bits: 'bytes', percent: 'ratio' };
const ABBREVIATED_UNITS = ['s', 'ms', 'us', 'ns', 'sec', 'b', 'kb', 'mb', 'gb', 'tb', 'pb', 'm', 'h', 'd'];

/** The base unit a name part should be in instead, or null when it is fine. */
function baseUnitFor(part: string): string | null {
  if (OTHER_UNITS[part] !== undefined) return OTHER_UNITS[part];
  for (const p of UNIT_PREFIXES) if (part.startsWith(p) && BASE_UNITS.includes(part.slice(p.length))) return part.slice(p.length);
  return null;
}

/** Every rule a family breaks, as "name: problem" lines; [] when the text is clean. */
export function promLint(text: string): string[] {
  const problems: string[] = [];
  for (const f of families(text).values()) {
    const say = (p: string): void => void problems.push(`${f.name}: ${p}`);
    const parts = f.name.split('_');
    if (f.help === null || f.help.trim() === '') say('no help text');
    if (f.type === 'counter' && !f.name.endsWith('_total')) say('counter metrics should have "_total" suffix');
    if (f.type !== 'counter' && f.name.endsWith('_total')) say('non-counter metrics should not have "_total" suffix');
    if (f.type !== 'histogram' && f.type !== 'summary') {
      for (const reserved of ['_bucket', '_count', '_sum']) if (f.name.endsWith(reserved)) say(`non-histogram and non-summary metrics should not have "${reserved}" suffix`);
    }
    if (f.labels.has('le') && f.type !== 'histogram') say('non-histogram metrics should not have "le" label');
    if (f.labels.has('quantile') && f.type !== 'summary') say('non-summary metrics should not have "quantile" label');
    if (f.name.includes(':')) say('metric names should not contain ":"');
    if (/[A-Z]/.test(f.name)) say("metric names should be written in 'snake_case' not 'camelCase'");
    for (const l of f.labels) if (/[A-Z]/.test(l)) say(`label names should be written in 'snake_case' not 'camelCase': ${l}`);
    if (f.type !== 'untyped' && parts.slice(1).includes(f.type)) say(`metric name should not include type '${f.type}'`);
    for (const p of parts.slice(1)) {
      const base = baseUnitFor(p);
      if (base !== null) say(`use base unit "${base}" instead of "${p}"`);
      if (ABBREVIATED_UNITS.includes(p)) say(`metric names should not contain abbreviated units: ${p}`);
    }
  }
  return problems;
}
