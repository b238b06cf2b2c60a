import { describe, expect, it } from 'vitest';
import { formatLogLine, wantTextLogs } from '../../daemon/log-format.js';

describe('terminal log lines', () => {
  it('turns a pino JSON record into one readable line with its fields', () => {
    const line = JSON.stringify({ level: 40, time: Date.UTC(2026, 10, 23, 14, 2, 11, 204), pid: 7, module: 'health', msg: 'gateway down', gateway: 'gw1', rtt: null, err: { message: 'timed out', code: 'SPLITWAN_X' } });
    expect(formatLogLine(line)).toBe('14:02:11.204 WARN  health: gateway down  gateway=gw1 rtt=null err="timed out (SPLITWAN_X)"\n');
  });
  it('passes anything that is not JSON through', () => {
    expect(formatLogLine('plain text')).toBe('plain text\n');
  });
  it('JSON under systemd and in pipes; text on a terminal; the env var overrides', () => {
    expect(wantTextLogs({}, true)).toBe(true);
    expect(wantTextLogs({ JOURNAL_STREAM: '8:1' }, true)).toBe(false);
    expect(wantTextLogs({}, false)).toBe(false);
    expect(wantTextLogs({ SPLITWAN_LOG_FORMAT: 'text' }, false)).toBe(true);
    expect(wantTextLogs({ SPLITWAN_LOG_FORMAT: 'json' }, true)).toBe(false);
  });
});
