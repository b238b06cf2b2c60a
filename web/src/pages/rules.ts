// Rules and lists: each rule with its hits, each list with its size, source, last refresh and errors; a refresh button.
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api.js';
import { ago, html } from '../html.js';

export function RulesPage(p: { canChange: boolean }) {
  const [r, setR] = useState<api.RulesReport | null>(null);
  const [msg, setMsg] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const load = async (): Promise<void> => setR(await api.rules());
  useEffect(() => void load().catch((e: unknown) => setMsg((e as Error).message)), []);
  const refresh = async (): Promise<void> => {
    setBusy(true);
    try {
      const res = await api.refreshLists();
      setMsg(res.lists.length === 0 ? 'no URL lists in the config' : res.lists.map((l) => `${l.name}: ${l.ok ? (l.changed ? `updated (${l.entries ?? 0})` : 'not modified') : `failed: ${l.error ?? '?'}`}`).join('; '));
      await load();
    } catch (e) {
      setMsg((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  if (r === null) return html`<p>${msg ?? 'loading…'}</p>`;
  return html`
    <h2>Rules</h2>
    <table data-testid="rules">
      <thead><tr><th>#</th><th>label</th><th>via</th><th>hits</th><th>matches</th><th>where</th></tr></thead>
      <tbody>
        ${r.rules.map((x) => html`<tr><td>${x.index}</td><td>${x.label}</td><td>${x.via.join(' → ')}</td><td>${x.hits}</td>
          <td>${[x.domains && `${x.domains} domains`, x.cidrs && `${x.cidrs} CIDRs`, x.sources && `${x.sources} sources`, x.lists.length && `lists ${x.lists.join(', ')}`].filter(Boolean).join(', ')}</td><td><small>${x.at}</small></td></tr>`)}
        <tr><td>-</td><td>default</td><td>${r.default.via.join(' → ')}</td><td>${r.default.hits}</td><td>everything else</td><td></td></tr>
      </tbody>
    </table>
    <h2>Lists</h2>
    ${p.canChange && html`<button data-testid="refresh-lists" disabled=${busy} onClick=${() => void refresh()}>${busy ? 'refreshing…' : 'Refresh URL lists now'}</button>`}
    ${msg && html`<p class="note" data-testid="lists-msg">${msg}</p>`}
    <table data-testid="lists">
      <thead><tr><th>list</th><th>entries</th><th>format</th><th>source</th><th>last refresh</th><th>problems</th></tr></thead>
      <tbody>
        ${r.lists.map((l) => html`<tr><td>${l.name}</td><td>${l.entries}</td><td>${l.format}</td><td><small>${l.source}</small> (${l.origin})</td>
          <td>${l.lastRefresh === null ? '-' : html`${ago(l.lastRefresh.at)}: ${l.lastRefresh.status}${l.lastRefresh.error ? html` <span class="error">${l.lastRefresh.error}</span>` : ''}`}</td>
          <td>${l.problems || ''}</td></tr>`)}
      </tbody>
    </table>`;
}
