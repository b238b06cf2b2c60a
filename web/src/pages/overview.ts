// Overview: every path (WAN links, gateways) with its state, RTT and loss
// over the last hour, the active gateway and the link breakout takes, recent
// failovers of both, tagged addresses per path, DNS queries
// per second and hit ratio, proxy connections, a captive portal (suspected or open). Status every 2 s (a failover
// shows within that), the charts' history every 10 s.
import { useEffect, useState } from 'preact/hooks';
import * as api from '../api.js';
import { Chart } from '../chart.js';
import { ago, clock, html } from '../html.js';
import { linkKey } from '../../../daemon/web/history.js';

const pct = (x: number | null): string => (x === null ? '-' : `${Math.round(x * 100)}%`);
const ms = (x: number | null): string => (x === null ? '-' : `${Math.round(x * 10) / 10} ms`);

/** Switches, most recent first: the gateways' behind the tunnel path, or the links' behind breakout. */
function Failovers(p: { list: api.StatusReport['failovers']; testid: string }) {
  return p.list.length === 0
    ? html`<p data-testid=${p.testid}>none since start</p>`
    : html`<ul data-testid=${p.testid}>${p.list.slice(0, 10).map((f) => html`<li><time>${clock(f.at)}</time> ${f.from ?? 'none'} → ${f.to ?? 'none'} (${f.reason})</li>`)}</ul>`;
}

/** A WAN link's row: which one breakout takes now (★), its weight when not the default and whether it is metered. */
function LinkRow(p: { l: NonNullable<api.StatusReport['links']>[number] }) {
  const l = p.l;
  const extra = [`prio ${l.priority}`, ...(l.weight !== 1 ? [`weight ${l.weight}`] : []), ...(l.metered ? ['metered'] : [])].join(', ');
  return html`<tr data-testid=${`path-link-${l.name}`} class=${l.active ? 'active' : ''}>
    <td>${l.active ? '★ ' : ''}link:${l.name} (${l.ifname}, ${extra})</td>
    <td class=${`state-${l.state}`}>${l.state}</td><td>${ms(l.rttMs)}</td><td>${pct(l.loss)}</td>
    <td>-</td><td>${l.state !== 'up' && l.lastError ? l.lastError : '-'}</td></tr>`;
}

export function Overview() {
  const [s, setS] = useState<api.StatusReport | null>(null);
  const [h, setH] = useState<api.HistorySample[]>([]);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    const poll = async (): Promise<void> => {
      try {
        setS(await api.status());
        setErr(null);
      } catch (e) {
        setErr((e as Error).message);
      }
    };
    const pollHistory = async (): Promise<void> => setH((await api.history().catch(() => ({ samples: [] }))).samples);
    void poll();
    void pollHistory();
    const a = setInterval(() => !stop && void poll(), 2000);
    const b = setInterval(() => !stop && void pollHistory(), 10_000);
    return () => {
      stop = true;
      clearInterval(a);
      clearInterval(b);
    };
  }, []);
  if (s === null) return html`<p>${err ?? 'loading…'}</p>`;
  const times = h.map((x) => x.at);
  const links = s.links ?? [];
  // Chart series by their key in a history sample: gateways by name, links as link:NAME.
  const lossy = [...links.map((l) => linkKey(l.name)), ...s.gateways.map((g) => g.name)];
  const rtt = ['breakout', ...lossy].map((n) => ({ label: n, values: h.map((x) => x.paths[n]?.rttMs ?? null) }));
  const loss = lossy.map((n) => ({ label: n, values: h.map((x) => (x.paths[n] ? x.paths[n]!.loss * 100 : null)) }));
  const carrier = links.find((l) => l.active);
  // With links, breakout is the link it takes now: that link's figures (breakout's own health is not measured apart).
  const br = carrier
    ? { via: `by link:${carrier.name}`, state: carrier.state, rttMs: carrier.rttMs, loss: pct(carrier.loss) }
    : { via: s.breakout.interface ?? 'no route', state: s.breakout.state, rttMs: s.breakout.rttMs, loss: '-' };
  const qps = [{ label: 'queries/s', values: h.map((x) => x.qps) }];
  const lastQps = h.length ? h[h.length - 1]!.qps : null;
  return html`
    ${err && html`<p class="error">${err}</p>`}
    <section>
      <h2>Paths</h2>
      <p data-testid="active">Tunnel path: <b>${s.active ?? 'none'}</b>${s.pinned ? html` (pinned to ${s.pinned})` : ' (automatic)'}${s.active === null && s.killSwitch.engaged ? ' — kill switch engaged' : ''}</p>
      ${s.portal && (s.portal.state === 'open' || s.portal.state === 'suspected') && html`<p data-testid="portal">Captive portal: ${s.portal.state === 'open' && s.portal.window ? html`<b>open</b> until ${clock(s.portal.window.until)} (${s.portal.window.hosts.map((x) => x.name).join(', ')})` : html`<b>suspected</b> (${s.portal.url ?? '?'}): <code>sudo splitwan portal</code> opens it`}</p>`}
      ${links.length > 0 && html`<p data-testid="active-link">Breakout link: <b>${carrier?.name ?? 'none'}</b>${carrier && carrier.state !== 'up' ? ` (${carrier.state})` : ''}</p>`}
      <table data-testid="paths">
        <thead><tr><th>path</th><th>state</th><th>RTT</th><th>loss</th><th>handshake</th><th>endpoint</th></tr></thead>
        <tbody>
          <tr data-testid="path-breakout"><td>breakout (${br.via})</td><td class=${`state-${br.state}`}>${br.state}</td><td>${ms(br.rttMs)}</td><td>${br.loss}</td><td>-</td><td>${s.breakout.dns.join(' ')}</td></tr>
          ${links.map((l) => html`<${LinkRow} l=${l} />`)}
          ${s.gateways.map(
            (g) => html`<tr data-testid=${`path-gw-${g.name}`} class=${g.active ? 'active' : ''}>
              <td>${g.active ? '★ ' : ''}gw:${g.name} (${g.ifname}, prio ${g.priority}${g.unmanaged ? ', unmanaged' : ''})</td>
              <td class=${`state-${g.state}`}>${g.state}</td><td>${ms(g.rttMs)}</td><td>${pct(g.loss)}</td>
              <td>${g.unmanaged ? '-' : g.lastHandshake === null ? 'never' : ago(g.lastHandshake)}</td><td>${g.endpoint ?? '-'}</td></tr>`,
          )}
        </tbody>
      </table>
      <div class="charts">
        <${Chart} title="RTT, last hour" unit="ms" times=${times} series=${rtt} testid="chart-rtt" />
        <${Chart} title="Loss, last hour" unit="%" times=${times} series=${loss} testid="chart-loss" />
      </div>
    </section>
    <section class="cols">
      <div>
        <h2>Recent failovers${links.length > 0 ? ' (gateways)' : ''}</h2>
        <${Failovers} list=${s.failovers} testid="failovers" />
      </div>
      ${links.length > 0 && html`<div>
        <h2>Recent failovers (links)</h2>
        <${Failovers} list=${s.linkFailovers ?? []} testid="link-failovers" />
      </div>`}
    </section>
    <section class="cols">
      <div>
        <h2>Tagged addresses</h2>
        <table data-testid="tagged"><tbody>${Object.entries(s.tagged).map(([p, n]) => html`<tr><td>${p}</td><td>${n}</td></tr>`)}</tbody></table>
      </div>
      <div>
        <h2>DNS</h2>
        <p data-testid="dns">${lastQps === null ? '-' : lastQps.toFixed(1)} queries/s, hit ratio ${pct(s.dns.hitRatio)}; ${s.dns.queries} queries, ${s.dns.cacheEntries} cached, ${s.dns.servfail} servfail, ${s.dns.blocked} blocked</p>
        <${Chart} title="DNS queries/s" unit="q/s" times=${times} series=${qps} testid="chart-qps" />
      </div>
      <div>
        <h2>Proxy</h2>
        ${s.proxy === null
          ? html`<p data-testid="proxy">off</p>`
          : html`<table data-testid="proxy"><tbody>${Object.entries(s.proxy.paths).map(([p, t]) => html`<tr><td>${p}</td><td>${t.active} open</td><td>${t.connections} in all</td></tr>`)}</tbody></table>`}
      </div>
    </section>`;
}
