// sing-box source rule-sets (.json): {"version": 1-4, "rules": [headless
// rule...]}, as option/rule_set.go reads them. Each list field takes a string
// or a list of strings (badoption.Listable).
//
// Taken: domain (exact), domain_suffix ("x": x and its subdomains, ".x":
// subdomains only, as both srs encodings match them), domain_keyword,
// domain_regex, ip_cidr (a CIDR or a bare address), and logical "or" rules
// of those. Every other field of a headless rule is understood but narrows
// the rule to a condition splitwan cannot check, so the rule is skipped and
// reported with the field (see sing-rules.ts). A field sing-box does not know
// is an error, as sing-box's own strict decoding makes it.

import { Acc, fail, guarded, type DecodedList } from './decoded.js';
import { SRS_MAX_VERSION } from './srs.js';
import { MAX_LOGICAL_DEPTH, applyHeadlessRules, type HeadlessRule } from './sing-rules.js';

/** Fields of a default headless rule that splitwan cannot apply (option/rule_set.go). */
const UNSUPPORTED_FIELDS = new Set([
  'query_type', 'network', 'source_ip_cidr', 'source_port', 'source_port_range', 'port', 'port_range',
  'process_name', 'process_path', 'process_path_regex', 'package_name', 'network_type', 'network_is_expensive',
  'network_is_constrained', 'wifi_ssid', 'wifi_bssid', 'network_interface_address', 'default_interface_address',
]);
const SUPPORTED_FIELDS = new Set(['type', 'domain', 'domain_suffix', 'domain_keyword', 'domain_regex', 'ip_cidr', 'invert']);

export interface DecodedSrsJson extends DecodedList {
  version: number;
}

const utf8 = new TextDecoder('utf-8');

export function decodeSrsJson(input: Uint8Array | string, list: string): DecodedSrsJson {
  return guarded(list, 'srs-json', 'sing-box source rule-set', () => {
    const text = typeof input === 'string' ? input : utf8.decode(input);
    let doc: unknown;
    try {
      doc = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    } catch (e) {
      fail(list, 'srs-json', `not a sing-box source rule-set: invalid JSON (${(e as Error).message})`);
    }
    if (!isObject(doc) || !Array.isArray(doc.rules)) fail(list, 'srs-json', 'not a sing-box source rule-set: no "rules" list');
    const version = doc.version;
    if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > SRS_MAX_VERSION) {
      fail(list, 'srs-json', `sing-box rule-set "version" must be 1-${SRS_MAX_VERSION}, not ${JSON.stringify(version) ?? 'missing'}`);
    }
    const rules = doc.rules.map((r, i) => toRule(r, `rules[${i}]`, 0, list));
    const acc = new Acc(list, 'srs-json');
    applyHeadlessRules(rules, acc, list, 'srs-json');
    return { ...acc.finish(), version };
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function toRule(raw: unknown, where: string, depth: number, list: string): HeadlessRule {
  if (depth > MAX_LOGICAL_DEPTH) fail(list, 'srs-json', `${where}: logical rules nested deeper than ${MAX_LOGICAL_DEPTH}`);
  if (!isObject(raw)) fail(list, 'srs-json', `${where} is not an object`);
  const invert = raw.invert === true;
  if (raw.invert !== undefined && typeof raw.invert !== 'boolean') fail(list, 'srs-json', `${where}.invert must be true or false`);
  if (raw.type === 'logical') {
    const mode = raw.mode;
    if (mode !== 'and' && mode !== 'or') fail(list, 'srs-json', `${where}.mode must be "and" or "or"`);
    if (!Array.isArray(raw.rules)) fail(list, 'srs-json', `${where}.rules must be a list`);
    for (const k of Object.keys(raw)) {
      if (!['type', 'mode', 'rules', 'invert'].includes(k)) fail(list, 'srs-json', `${where}: unknown field "${k}" in a logical rule`);
    }
    return { type: 'logical', mode, invert, rules: raw.rules.map((r, i) => toRule(r, `${where}.rules[${i}]`, depth + 1, list)) };
  }
  if (raw.type !== undefined && raw.type !== 'default' && raw.type !== '') fail(list, 'srs-json', `${where}.type "${String(raw.type)}" is not "default" or "logical"`);
  const unsupported: string[] = [];
  for (const k of Object.keys(raw)) {
    if (UNSUPPORTED_FIELDS.has(k)) unsupported.push(k);
    else if (!SUPPORTED_FIELDS.has(k)) fail(list, 'srs-json', `${where}: unknown field "${k}" (not a sing-box headless rule field)`);
  }
  const strings = (k: string): string[] => {
    const v = raw[k];
    if (v === undefined || v === null) return [];
    if (typeof v === 'string') return [v];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    return fail(list, 'srs-json', `${where}.${k} must be a string or a list of strings`);
  };
  const domain = strings('domain');
  const suffix = strings('domain_suffix');
  const keyword = strings('domain_keyword');
  const regex = strings('domain_regex');
  const cidr = strings('ip_cidr');
  return {
    type: 'default',
    unsupported,
    invert,
    emit: (acc: Acc) => {
      for (const d of domain) acc.name('full', d);
      for (const s of suffix) {
        if (s.startsWith('.')) acc.name('subdomain', s.slice(1));
        else acc.name('domain', s);
      }
      for (const k of keyword) acc.pattern('keyword', k);
      for (const r of regex) acc.pattern('regexp', r);
      for (const c of cidr) acc.cidr(c);
    },
  };
}
