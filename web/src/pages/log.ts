// The live query log: server-sent events with the filter applied by the
// daemon; each name links to explain. The filter is kept in the page's hash
// (#/log?client=…), so a login in between or a reload brings it back.
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api.js';
import { clock, html } from '../html.js';

const KEEP = 500;

export function QueryLogPage(p: { initial: URLSearchParams }) {
  const [filter, setFilter] = useState({ client: p.initial.get('client') ?? '', name: p.initial.get('name') ?? '', path: p.initial.get('path') ?? '' });
  const [rows, setRows] = useState<api.QueryLogEntry[]>([]);
  const [note, setNote] = useState<string>('connecting…');
  useEffect(() => {
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== ''));
    // replaceState: no hashchange, so the page is not made anew for its own filter.
    history.replaceState(null, '', `#/log${q.toString() ? `?${q.toString()}` : ''}`);
    setRows([]);
    const close = api.logStream(
      filter,
      (r) => {
        setNote(r.privacy === 'off' ? 'the query log is off (queryLog.privacy: off)' : `live · ${r.privacy === 'anonymize' ? 'clients anonymized' : 'clients shown'} · ring of ${r.size}`);
        if (r.entries.length) setRows((old) => [...r.entries.slice().reverse(), ...old].slice(0, KEEP));
      },
      setNote,
    );
    return close;
  }, [filter.client, filter.name, filter.path]);
  const field = (k: 'client' | 'name' | 'path', label: string, hint: string) =>
    html`<label>${label} <input name=${k} placeholder=${hint} value=${filter[k]} onChange=${(e: Event) => setFilter({ ...filter, [k]: (e.target as HTMLInputElement).value.trim() })} /></label>`;
  return html`
    <h2>Query log</h2>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      ${field('client', 'client', 'IP or name')} ${field('name', 'name', '*.example.com')} ${field('path', 'path', 'breakout, tunnel, gw:NAME')}
    </form>
    <p class="note" data-testid="log-note">${note}</p>
    <table class="log" data-testid="log">
      <thead><tr><th>time</th><th>client</th><th>type</th><th>name</th><th>rule</th><th>path</th><th>answers</th><th>cache</th><th>result</th></tr></thead>
      <tbody>
        ${rows.map(
          // Keyed by seq: new rows come in on top, and a row must stay the record it shows (a click lands where it was aimed).
          (e) => html`<tr key=${e.seq} data-testid="log-row" data-name=${e.name}>
            <td>${clock(e.at)}</td><td>${e.client}${e.clientName ? html` <small>${e.clientName}</small>` : ''}</td><td>${e.type}</td>
            <td><a href=${`#/explain?q=${encodeURIComponent(e.name)}${e.client.includes('.') || e.client.includes(':') ? `&source=${encodeURIComponent(e.client)}` : ''}`}>${e.name}</a></td>
            <td class="rule">${e.rule !== null ? `#${e.rule} ${e.ruleLabel ?? ''}` : (e.ruleLabel ?? '-')}</td><td class="path">${e.path ?? '-'}</td>
            <td>${e.answers.slice(0, 3).join(' ')}${e.answers.length > 3 ? ` +${e.answers.length - 3}` : ''}</td>
            <td>${e.cached ? 'hit' : e.upstreamMs !== null ? `${e.upstreamMs} ms` : '-'}</td><td class=${`result-${e.result}`}>${e.result === 'answered' ? e.rcode : `${e.result} ${e.rcode}`}</td></tr>`,
        )}
      </tbody>
    </table>`;
}
