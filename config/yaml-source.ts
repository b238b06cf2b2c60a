import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigCodes, IssueSink } from './errors.js';
import type { SourcePos } from './types.js';

export type KeySeg = string | number;

/** A parsed YAML file that can say where any key path is. */
export class YamlSource {
  private constructor(
    readonly file: string,
    readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly text: string,
  ) {}

  /** Parses `text`; syntax errors go to `sink` and yield null. */
  static parse(file: string, text: string, sink: IssueSink): YamlSource | null {
    const lines = new LineCounter();
    // merge: `<<: *defaults` is common in hand-written YAML.
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, strict: true, merge: true });
    const src = new YamlSource(file, doc, lines, text);
    for (const e of doc.errors) {
      const at = e.pos?.[0] ?? 0;
      const lc = lines.linePos(at);
      // The yaml library's messages end with a code excerpt on later lines; keep the first.
      let msg = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      if (/parseAllDocuments/.test(msg)) msg = 'the file holds several YAML documents (---); splitwan reads exactly one';
      sink.error(ConfigCodes.YAML, { file, line: lc.line, col: lc.col }, '', msg);
    }
    return doc.errors.length > 0 ? null : src;
  }

  /** The data; an unknown alias or an alias bomb is a config error, not a crash. */
  toJS(sink: IssueSink): unknown {
    try {
      return this.doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0]!;
      const alias = /Unresolved alias[^:]*: (\*?\S+)/.exec(msg);
      let at = 0;
      if (alias) {
        const i = this.text.indexOf(alias[1]!.startsWith('*') ? alias[1]! : `*${alias[1]}`);
        if (i >= 0) at = i;
      }
      const lc = this.lines.linePos(at);
      sink.error(ConfigCodes.YAML, { file: this.file, line: lc.line, col: lc.col }, '', alias ? `unknown alias ${alias[1]}` : msg);
      return undefined;
    }
  }

  posAtOffset(offset: number): SourcePos {
    const lc = this.lines.linePos(offset);
    return { file: this.file, line: lc.line, col: lc.col };
  }

  /** Position of the value at `path`, or of its nearest existing ancestor. */
  pos(path: readonly KeySeg[]): SourcePos {
    const n = this.nodeAt(path, false);
    return this.posAtOffset(n?.range?.[0] ?? 0);
  }

  /** Position of the key that names `path`'s last segment (for unknown keys). */
  keyPos(path: readonly KeySeg[]): SourcePos {
    const n = this.nodeAt(path, true);
    return this.posAtOffset(n?.range?.[0] ?? 0);
  }

  private nodeAt(path: readonly KeySeg[], wantKey: boolean): Node | null {
    let node: unknown = this.doc.contents;
    let found: Node | null = isNodeLike(node) ? node : null;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]!;
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) return found;
        if (last && wantKey && isNodeLike(pair.key)) return pair.key;
        node = pair.value;
        // `key:` with no value (yaml gives an empty null scalar): point at the key.
        const empty = node == null || (isScalar(node) && node.value === null && node.range?.[0] === node.range?.[1]);
        if (empty) return isNodeLike(pair.key) ? pair.key : found;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
      } else return found;
      if (isNodeLike(node)) found = node;
      else return found;
    }
    return found;
  }
}

function isNodeLike(n: unknown): n is Node {
  return typeof n === 'object' && n !== null && 'range' in n;
}

/** rules[0].domains[2] from ['rules', 0, 'domains', 2]. */
export function keyPathString(path: readonly KeySeg[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? seg : `.${seg}`;
  }
  return s;
}
