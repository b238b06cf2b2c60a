// htm bound to preact's h: tagged templates instead of JSX, no build-time transform.
import htm from 'htm';
import { h } from 'preact';

export const html = htm.bind(h);

/** "12:04:05" local time of a unix ms. */
export const clock = (ms: number): string => new Date(ms).toLocaleTimeString([], { hour12: false });
/** "3m ago" */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}
/** The page's hash route and its query: #/explain?q=x → ['explain', {q: 'x'}]. */
export function route(): [string, URLSearchParams] {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return [path || 'overview', new URLSearchParams(query ?? '')];
}
