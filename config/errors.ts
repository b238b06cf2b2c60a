import type { SourcePos } from './types.js';

/**
 * Stable error codes. Every code here (and every `SPLITWAN_*` literal anywhere
 * in the sources) must be documented in docs/errors.md; a unit test enforces it.
 */
export const ConfigCodes = {
  FILE: 'SPLITWAN_CONFIG_FILE', // a file could not be read
  YAML: 'SPLITWAN_CONFIG_YAML', // YAML syntax
  TYPE: 'SPLITWAN_CONFIG_TYPE', // wrong type or shape
  UNKNOWN_KEY: 'SPLITWAN_CONFIG_UNKNOWN_KEY',
  MISSING_KEY: 'SPLITWAN_CONFIG_MISSING_KEY',
  VALUE: 'SPLITWAN_CONFIG_VALUE', // out of range, not one of the allowed values
  DURATION: 'SPLITWAN_CONFIG_DURATION',
  ADDRESS: 'SPLITWAN_CONFIG_ADDRESS', // IP, CIDR, host:port, upstream URL
  DOMAIN: 'SPLITWAN_CONFIG_DOMAIN',
  REGEXP: 'SPLITWAN_CONFIG_REGEXP',
  REFERENCE: 'SPLITWAN_CONFIG_REFERENCE', // an unknown gateway or list
  DUPLICATE: 'SPLITWAN_CONFIG_DUPLICATE',
  CRON: 'SPLITWAN_CONFIG_CRON',
  WGQUICK: 'SPLITWAN_CONFIG_WGQUICK', // a wg-quick file's syntax or content
  KEY: 'SPLITWAN_CONFIG_KEY', // a WireGuard key that is not 32 bytes of base64
  LIST: 'SPLITWAN_CONFIG_LIST', // a list file or download could not be parsed
  PERMISSIONS: 'SPLITWAN_CONFIG_PERMISSIONS', // a file others could rewrite (error) or read (a secret: warning)
  INSECURE: 'SPLITWAN_CONFIG_INSECURE', // a list fetched so that the network could rewrite it (plain http without a pin)
} as const;

export type ConfigCode = (typeof ConfigCodes)[keyof typeof ConfigCodes];

export type Severity = 'error' | 'warning';

/** One problem with the configuration, pinned to a place in a file. */
export interface ConfigIssue {
  code: ConfigCode;
  severity: Severity;
  message: string;
  /** `rules[0].via`, or '' for the document / a whole file. */
  keyPath: string;
  pos: SourcePos;
}

export function formatIssue(i: ConfigIssue): string {
  const where = `${i.pos.file}:${i.pos.line}:${i.pos.col}`;
  const key = i.keyPath ? ` ${i.keyPath}:` : '';
  const sev = i.severity === 'warning' ? ' warning:' : '';
  return `${where}:${key}${sev} ${i.message}`;
}

/** Thrown by loaders when a config cannot be used; carries every issue found. */
export class ConfigError extends Error {
  readonly code: ConfigCode;
  constructor(
    readonly issues: readonly ConfigIssue[],
    /** Files the failed load referred to (a reload watches them, to notice a missing one appear). */
    readonly files: readonly string[] = [],
  ) {
    const errors = issues.filter((i) => i.severity === 'error');
    super(errors.map(formatIssue).join('\n') || 'invalid configuration');
    this.name = 'ConfigError';
    this.code = errors[0]?.code ?? ConfigCodes.TYPE;
  }
}

/** Collects issues while a config is checked, so one run reports every mistake. */
/**
 * Hides anything shaped like key material (a long run of mixed-case base64)
 * in a message: a private key pasted into the wrong field must not be echoed
 * to a terminal or a log by the error that reports the mistake.
 */
export function redactSecrets(text: string): string {
  return text.replace(/[A-Za-z0-9+/]{20,}={0,2}/g, (m) => (/[a-z]/.test(m) && /[A-Z]/.test(m) && /[0-9+/]/.test(m) ? '(hidden: looks like a key)' : m));
}

export class IssueSink {
  readonly issues: ConfigIssue[] = [];
  error(code: ConfigCode, pos: SourcePos, keyPath: string, message: string): void {
    this.issues.push({ code, severity: 'error', message: redactSecrets(message), keyPath, pos: { ...pos, file: redactSecrets(pos.file) } });
  }
  warn(code: ConfigCode, pos: SourcePos, keyPath: string, message: string): void {
    this.issues.push({ code, severity: 'warning', message: redactSecrets(message), keyPath, pos: { ...pos, file: redactSecrets(pos.file) } });
  }
  get hasErrors(): boolean {
    return this.issues.some((i) => i.severity === 'error');
  }
}

/** "did you mean" by edit distance, for unknown keys and references. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  // A suggestion further than a third of the word away is noise.
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + cost);
      diag = up;
    }
  }
  return prev[b.length]!;
}
