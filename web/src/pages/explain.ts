// Explain: a name or address in; the rule, list line and path out (what `splitwan explain` prints).
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api.js';
import { html } from '../html.js';

export function ExplainPage(p: { initial: URLSearchParams }) {
  const [q, setQ] = useState(p.initial.get('q') ?? '');
  const [source, setSource] = useState(p.initial.get('source') ?? '');
  const [r, setR] = useState<(api.ExplainReport & { text: string }) | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const run = async (target: string, src: string): Promise<void> => {
    if (!target) return;
    try {
      setR(await api.explain(target, src || undefined));
      setErr(null);
    } catch (e) {
      setR(null);
      setErr((e as Error).message);
    }
  };
  useEffect(() => void run(q, source), []);
  return html`
    <h2>Explain</h2>
    <form class="filters" onSubmit=${(e: Event) => {
      e.preventDefault();
      void run(q, source);
    }}>
      <label>name or address <input name="q" value=${q} onInput=${(e: Event) => setQ((e.target as HTMLInputElement).value.trim())} /></label>
      <label>as client (optional) <input name="source" value=${source} onInput=${(e: Event) => setSource((e.target as HTMLInputElement).value.trim())} /></label>
      <button type="submit">Explain</button>
    </form>
    ${err && html`<p class="error" data-testid="explain-error">${err}</p>`}
    ${r &&
    html`<div data-testid="explain-result">
      <p>path <b data-testid="explain-via">${r.via}</b>${r.candidates.length > 1 ? ` (candidates ${r.candidates.join(', ')})` : ''}; rule <b data-testid="explain-rule">${r.rule === null ? 'default' : `#${r.rule} ${r.ruleLabel ?? ''}`}</b></p>
      <pre>${r.text}</pre>
    </div>`}`;
}
