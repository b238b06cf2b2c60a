// The splitwan dashboard: a preact app (htm templates, uPlot charts) served
// by the daemon itself. Hash routes: #/overview, #/log, #/explain, #/rules,
// #/actions. Without a session it shows the login form (one password field),
// unless the config allows the read-only pages without login. When a
// session ends under an open page (any call answered 401, or the live log
// told so), the login form takes its place with the server's reason, and
// the same page (its hash route, with its query) comes back after login.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import * as api from './api.js';
import { html, route } from './html.js';
import { ActionsPage } from './pages/actions.js';
import { ExplainPage } from './pages/explain.js';
import { QueryLogPage } from './pages/log.js';
import { Overview } from './pages/overview.js';
import { RulesPage } from './pages/rules.js';

function Login(p: { onDone: (s: api.Session) => void; passwordSet: boolean; ended: string | null }) {
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const input = (e.target as HTMLFormElement).elements.namedItem('password') as HTMLInputElement;
    setBusy(true);
    try {
      p.onDone(await api.login(input.value));
    } catch (x) {
      setErr((x as Error).message);
      input.value = '';
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="login" method="post" action="/api/login" onSubmit=${submit} data-testid="login">
    <h2>splitwan</h2>
    ${p.ended && html`<p class="note" data-testid="login-why">${p.ended[0]!.toUpperCase() + p.ended.slice(1)}. Log in again to go back to the page.</p>`}
    ${!p.passwordSet && html`<p class="error">No password is set: run <code>splitwan web passwd</code> on the router.</p>`}
    <label>Password <input type="password" name="password" autocomplete="current-password" autofocus required /></label>
    <button type="submit" disabled=${busy}>Log in</button>
    ${err && html`<p class="error" data-testid="login-error">${err}</p>`}
  </form>`;
}

const PAGES: [string, string][] = [
  ['overview', 'Overview'],
  ['log', 'Query log'],
  ['explain', 'Explain'],
  ['rules', 'Rules & lists'],
  ['actions', 'Actions'],
];

function App() {
  const [s, setS] = useState<api.Session | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [[page, query], setRoute] = useState(route());
  const [loggingIn, setLoggingIn] = useState(false);
  /** Why the session ended under an open page: said on the login form. */
  const [ended, setEnded] = useState<string | null>(null);
  useEffect(() => {
    const on = (): void => setRoute(route());
    addEventListener('hashchange', on);
    api.whenLoggedOut((why) => {
      // The login form at once, even with publicRead (the user was logged in and meant to stay so), and even when the daemon cannot be asked now.
      setEnded(why);
      setLoggingIn(true);
      void api.session().then((x) => {
        setS(x);
        // A late 401 (a request sent before the login that just happened): nothing to ask for.
        if (x.authenticated) {
          setLoggingIn(false);
          setEnded(null);
        }
      }, () => undefined);
    });
    void api.session().then(setS, (e: unknown) => setErr((e as Error).message));
    return () => removeEventListener('hashchange', on);
  }, []);
  if (s === null) return html`<p>${err ?? 'loading…'}</p>`;
  if ((!s.authenticated && !s.publicRead) || loggingIn)
    return html`<${Login} passwordSet=${s.passwordSet} ended=${ended} onDone=${(x: api.Session) => {
      setLoggingIn(false);
      setEnded(null);
      // Back to where the user was: the hash (a page may have put its filter there since the last hashchange).
      setRoute(route());
      setS(x);
    }} />`;
  const canChange = s.authenticated;
  const body =
    page === 'log' ? html`<${QueryLogPage} initial=${query} />`
    : page === 'explain' ? html`<${ExplainPage} key=${query.toString()} initial=${query} />`
    : page === 'rules' ? html`<${RulesPage} canChange=${canChange} />`
    : page === 'actions' ? (canChange ? html`<${ActionsPage} />` : html`<p>Log in to change anything.</p>`)
    : html`<${Overview} />`;
  return html`
    <header>
      <h1>splitwan</h1>
      <nav>${PAGES.map(([id, label]) => html`<a href=${`#/${id}`} class=${id === page ? 'here' : ''} data-testid=${`nav-${id}`}>${label}</a>`)}</nav>
      ${canChange
        ? html`<button class="link" data-testid="logout" onClick=${() => void api.logout().then(() => api.session().then(setS))}>Log out</button>`
        : html`<button class="link" data-testid="login-link" onClick=${() => setLoggingIn(true)}>Log in</button>`}
    </header>
    <main>${body}</main>`;
}

render(html`<${App} />`, document.getElementById('app')!);
