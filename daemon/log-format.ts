// Readable log lines for a terminal. Under systemd (and whenever stdout is
// not a terminal) the daemon writes pino's JSON lines, which journald keeps
// structured; on a terminal the same records are shown as one readable line:
//
//   14:02:11.204 INFO  health: gateway gw1 down  rtt=null loss=1
//
// Pure: a JSON line in, a text line out (anything that is not JSON passes through).
const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'module']);

function value(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (v && typeof v === 'object' && 'message' in v && typeof (v as { message: unknown }).message === 'string') {
    const e = v as { message: string; code?: unknown };
    return JSON.stringify(typeof e.code === 'string' ? `${e.message} (${e.code})` : e.message);
  }
  return JSON.stringify(v);
}

export function formatLogLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const t = typeof rec.time === 'number' ? new Date(rec.time).toISOString().slice(11, 23) : '';
  const level = (LEVELS[rec.level as number] ?? String(rec.level)).padEnd(5);
  const mod = typeof rec.module === 'string' ? `${rec.module}: ` : '';
  const fields = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${value(v)}`)
    .join(' ');
  return `${t} ${level} ${mod}${String(rec.msg ?? '')}${fields ? `  ${fields}` : ''}\n`;
}

/** JSON for journald, pipes and files; text for a person at a terminal. SPLITWAN_LOG_FORMAT=json|text overrides. */
export function wantTextLogs(env: NodeJS.ProcessEnv, stdoutIsTty: boolean): boolean {
  if (env.SPLITWAN_LOG_FORMAT === 'json') return false;
  if (env.SPLITWAN_LOG_FORMAT === 'text') return true;
  return stdoutIsTty && !env.JOURNAL_STREAM;
}
