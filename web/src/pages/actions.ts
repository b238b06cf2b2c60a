// Actions: pin a gateway or go back to automatic; reload the config, with
// the dry run's diff shown first and applied only when confirmed.
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api.js';
import { html } from '../html.js';

export function ActionsPage() {
  const [s, setS] = useState<api.StatusReport | null>(null);
  const [msg, setMsg] = useState<string | null>(null);
  const [dry, setDry] = useState<api.ReloadReport | null>(null);
  const load = async (): Promise<void> => setS(await api.status());
  useEffect(() => void load().catch((e: unknown) => setMsg((e as Error).message)), []);
  const act = async (fn: () => Promise<string>): Promise<void> => {
    try {
      setMsg(await fn());
    } catch (e) {
      setMsg(`refused: ${(e as Error).message}`);
    }
    await load().catch(() => undefined);
  };
  if (s === null) return html`<p>${msg ?? 'loading…'}</p>`;
  return html`
    <h2>Gateway</h2>
    <p>Tunnel path now: <b data-testid="actions-active">${s.active ?? 'none'}</b> ${s.pinned ? `(pinned to ${s.pinned})` : '(automatic)'}</p>
    <div class="buttons">
      <button data-testid="select-auto" disabled=${s.pinned === null} onClick=${() => void act(async () => { const r = await api.select(null); return `automatic: now ${r.active ?? 'none'}`; })}>Automatic</button>
      ${s.gateways.map((g) => html`<button data-testid=${`select-${g.name}`} disabled=${s.pinned === g.name} onClick=${() => void act(async () => { const r = await api.select(g.name); return `pinned to ${r.pinned}; tunnel path now ${r.active ?? 'none'}`; })}>Use ${g.name}</button>`)}
    </div>
    <h2>Reload the config</h2>
    <p>First see what the file on disk would change; nothing is applied until you confirm.</p>
    <div class="buttons">
      <button data-testid="reload-dry" onClick=${() => void act(async () => { const r = await api.reload(true); setDry(r); return r.status === 'rejected' ? 'the file has errors: nothing would be applied' : 'dry run done: nothing applied'; })}>Dry run</button>
      ${dry && dry.status === 'dry-run' && html`<button data-testid="reload-apply" onClick=${() => void act(async () => { const r = await api.reload(false); setDry(null); return `reload: ${r.status}${r.error ? ` (${r.error})` : ''}${r.issues.length ? `: ${r.issues.join('; ')}` : ''}`; })}>Apply</button>`}
    </div>
    ${dry && html`<div data-testid="reload-diff">
      <p>${dry.status === 'dry-run' ? (dry.changes?.length ? 'the file would change:' : 'the file changes nothing that matters') : `rejected: ${dry.status}`}</p>
      <ul>${(dry.changes ?? []).map((c) => html`<li>${c}</li>`)}${dry.issues.map((i) => html`<li class="error">${i}</li>`)}</ul>
    </div>`}
    ${msg && html`<p class="note" data-testid="actions-msg">${msg}</p>`}`;
}
