// The content of one `lists:` entry, from the bytes of its file or download:
// a rule file (geosite.dat, geoip.dat, .srs and sing-box JSON, .mrs, .mmdb)
// through its decoder, anything else as a text list (formats.ts). Shared by
// the loader, the downloader's check of a new body and the refresher, so a
// list means the same wherever it is read.
//
// A binary file is never read as text: content that is not UTF-8, or holds
// NUL bytes, and is no rule file we know is refused, as is a list that yields
// no entries (it would match nothing, silently).

import type { ListSource, RuleFileFormat } from '../types.js';
import { ListFormatError, type BinaryListFormat, type DecodedList } from './decoded.js';
import { detectRuleFileFormat } from './detect.js';
import { parseList, type ParsedList } from './formats.js';
import { decodeRuleFile, type RuleFileSelection } from './rule-files.js';

const RULE_FILE_FORMATS: readonly string[] = ['geosite', 'geoip', 'srs', 'mrs', 'mmdb'] satisfies RuleFileFormat[];

export function isRuleFileFormat(f: string): f is RuleFileFormat {
  return RULE_FILE_FORMATS.includes(f);
}

const TEXT_FORMATS: readonly string[] = ['plain', 'hosts', 'dnsmasq', 'clash', 'v2fly', 'cidr'];

/** Whether list content came from the text parsers (lines) rather than a rule-file decoder (entries). */
export function isTextContent(p: { format: ParsedList['format'] | DecodedList['format'] }): boolean {
  return TEXT_FORMATS.includes(p.format);
}

/** Formats whose files are databases a selection is taken from (no selection: `geodata` databases). */
export function needsSelection(f: BinaryListFormat): boolean {
  return f === 'geosite' || f === 'geoip' || f === 'mmdb';
}

function selectionOf(source: ListSource): RuleFileSelection {
  const s = source.select ?? {};
  const out: RuleFileSelection = {};
  if (s.categories) out.categories = s.categories;
  if (s.countries) out.codes = s.countries;
  if (s.asns) out.asns = s.asns;
  return out;
}

/** Whether bytes can be a text list: UTF-8 without NUL bytes. */
function isText(bytes: Uint8Array): boolean {
  if (bytes.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** The format the content has, for a list whose `format` is `given`: a rule-file format, or null for text. */
export function contentFormat(bytes: Uint8Array, given: ListSource['format']): BinaryListFormat | null {
  const detected = detectRuleFileFormat(bytes);
  if (given === 'srs' && detected === 'srs-json') return 'srs-json';
  if (isRuleFileFormat(given)) return given;
  // A text format given explicitly: a rule file is not read as one.
  return detected;
}

/**
 * The list's entries, or a ListFormatError whose message starts with the
 * list's name. `shown` is the file or URL the messages name.
 */
export function readListContent(bytes: Uint8Array, source: ListSource): ParsedList | DecodedList {
  const name = source.name;
  const binary = contentFormat(bytes, source.format);
  if (binary !== null) {
    if (!isRuleFileFormat(source.format) && source.format !== 'auto') {
      throw new ListFormatError(name, binary, `format: ${source.format} was given, but the file is ${binary === 'srs-json' ? 'a sing-box source rule-set (JSON)' : `a ${binary} rule file`}; use format: auto or the file's format`);
    }
    if (!needsSelection(binary) && source.select !== undefined) {
      throw new ListFormatError(name, binary, `a ${binary} file is used whole: category, country and asn select from geosite.dat, geoip.dat and .mmdb files only`);
    }
    const d = decodeRuleFile(bytes, binary === 'srs-json' ? 'srs-json' : binary, selectionOf(source), name);
    if (d.domains.length === 0 && d.cidrs.length === 0) {
      const why = d.problems[0] ? ` (${d.problems[0].message})` : d.ignored > 0 ? ` (${d.ignored} entries cannot be applied to routing)` : '';
      throw new ListFormatError(name, binary, `yields no entries${why}`);
    }
    return d;
  }
  if (!isText(bytes)) throw new ListFormatError(name, 'unknown', 'not a list: binary data that is no rule file splitwan reads (geosite.dat, geoip.dat, .srs, .mrs, .mmdb)');
  if (source.select !== undefined) throw new ListFormatError(name, 'unknown', 'category, country and asn select from geosite.dat, geoip.dat and .mmdb files; this is a text list');
  const textFormat = isRuleFileFormat(source.format) ? null : source.format;
  if (textFormat === null) throw new ListFormatError(name, source.format as BinaryListFormat, `not ${source.format === 'srs' ? 'a sing-box rule-set' : `a ${source.format} file`}: it looks like text`);
  const parsed = parseList(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'), textFormat, source.file ?? source.url);
  if (parsed.domains.length === 0 && parsed.cidrs.length === 0) {
    const first = parsed.problems[0];
    throw new ListFormatError(name, 'unknown', `no entries found: not a ${parsed.format} list?${first ? ` (line ${first.line}: ${first.message})` : ''}`);
  }
  return parsed;
}
