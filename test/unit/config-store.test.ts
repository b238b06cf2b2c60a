import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Logger } from '../../lib/logger.js';
import type { LoadedConfig } from '../../config/load.js';
import { ConfigStore } from '../../config/store.js';

/** A logger that keeps what was logged, to assert what an operator would read. */
function recordingLogger(): Logger & { lines: { level: string; msg: string; obj: object }[] } {
  const lines: { level: string; msg: string; obj: object }[] = [];
  const mk = (level: string) => (obj: object, msg?: string) => void lines.push({ level, msg: msg ?? '', obj });
  const l = { lines, trace: mk('trace'), debug: mk('debug'), info: mk('info'), warn: mk('warn'), error: mk('error'), child: () => l };
  return l;
}

const key = (): string => randomBytes(32).toString('base64');

function wgConf(dns = '10.64.0.1'): string {
  return `[Interface]\nPrivateKey = ${key()}\nAddress = 10.64.0.2/32\nDNS = ${dns}\n\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.10:51820\nAllowedIPs = 0.0.0.0/0\n`;
}

function configYaml(via: string): string {
  return ['mode: host', 'tunnel:', '  gateways:', '    - name: gw1', '      config: gw1.conf', 'lists:', '  mine: { file: mine.txt }', 'rules:', '  - domains: [stream.test]', `    via: ${via}`, '  - list: mine', '    via: breakout', ''].join('\n');
}

/** Waits until `cond` holds, polling; file watching is asynchronous. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for condition');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ConfigStore', () => {
  let dir: string;
  let file: string;
  let store: ConfigStore | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'splitwan-store-'));
    file = join(dir, 'config.yaml');
    writeFileSync(join(dir, 'gw1.conf'), wgConf(), { mode: 0o600 });
    writeFileSync(join(dir, 'mine.txt'), 'netflix.test\n');
    writeFileSync(file, configYaml('breakout'));
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies a good edit and hands (previous, next) to listeners', async () => {
    const log = recordingLogger();
    store = await ConfigStore.open({ file, logger: log });
    const seen: [LoadedConfig, LoadedConfig][] = [];
    store.subscribe((a, b) => void seen.push([a, b]));
    expect(store.current.policy.matchName('stream.test').via).toEqual(['breakout']);

    writeFileSync(file, configYaml('gw1'));
    const r = await store.reload();
    expect(r.status).toBe('applied');
    expect(store.current.policy.matchName('stream.test').via).toEqual(['gw:gw1']);
    expect(seen).toHaveLength(1);
    expect(seen[0]![0].policy.matchName('stream.test').via).toEqual(['breakout']);
    expect(seen[0]![1]).toBe(store.current);
    expect(store.version).toBe(2);
  });

  it('a listener that fails: the reload is failed (not applied), the listeners that ran get the previous config back, the same file is tried again', async () => {
    const log = recordingLogger();
    store = await ConfigStore.open({ file, logger: log });
    const before = store.current;
    const seen: string[] = [];
    const via = (c: LoadedConfig): string => String(c.policy.matchName('stream.test').via);
    store.subscribe((a, b) => void seen.push(`first ${via(a)}→${via(b)}`));
    let fail = true;
    store.subscribe((a, b) => {
      seen.push(`second ${via(a)}→${via(b)}`);
      if (fail && via(b) === 'gw:gw1') throw new Error('binding 127.0.0.1:53: EADDRINUSE');
    });
    store.subscribe(() => void seen.push('third'));
    writeFileSync(file, configYaml('gw1'));
    const r = await store.reload();
    expect(r.status).toBe('failed');
    expect(r.error).toBe('binding 127.0.0.1:53: EADDRINUSE');
    expect(store.current).toBe(before);
    expect(store.version).toBe(1);
    // The third never ran; the second (which failed midway) and the first got the previous config back, last first.
    expect(seen).toEqual(['first breakout→gw:gw1', 'second breakout→gw:gw1', 'second gw:gw1→breakout', 'first gw:gw1→breakout']);
    expect(store.lastReload).toMatchObject({ status: 'failed', error: 'binding 127.0.0.1:53: EADDRINUSE' });
    expect(log.lines.some((l) => l.level === 'error' && l.msg.includes('config not applied: binding 127.0.0.1:53: EADDRINUSE; the previous configuration was put back'))).toBe(true);
    // The same file: tried again (not "unchanged"), and applied once the cause is gone.
    expect((await store.reload()).status).toBe('failed');
    fail = false;
    seen.length = 0;
    expect((await store.reload()).status).toBe('applied');
    expect(seen).toEqual(['first breakout→gw:gw1', 'second breakout→gw:gw1', 'third']);
    expect(store.version).toBe(2);
    expect((await store.reload()).status).toBe('unchanged');
  });

  it('a restore that fails too is said in the log', async () => {
    const log = recordingLogger();
    store = await ConfigStore.open({ file, logger: log });
    store.subscribe(() => {
      throw new Error('nft: no such table');
    });
    writeFileSync(file, configYaml('gw1'));
    const r = await store.reload();
    expect(r.status).toBe('failed');
    expect(log.lines.some((l) => l.level === 'error' && l.msg.includes('restoring the previous configuration failed too'))).toBe(true);
  });

  it('keeps the old config running after a bad edit and logs the line', async () => {
    const log = recordingLogger();
    store = await ConfigStore.open({ file, logger: log });
    const before = store.current;
    let calls = 0;
    store.subscribe(() => void calls++);
    writeFileSync(file, configYaml('gw9'));
    const r = await store.reload();
    expect(r.status).toBe('rejected');
    expect(r.issues.map((i) => [i.code, i.keyPath, i.pos.line])).toEqual([['SPLITWAN_CONFIG_REFERENCE', 'rules[0].via', 10]]);
    expect(store.current).toBe(before);
    expect(calls).toBe(0);
    const err = log.lines.find((l) => l.level === 'error');
    expect(err?.msg).toContain(`${file}:10:10: rules[0].via:`);
    expect(log.lines.some((l) => l.level === 'warn' && l.msg.includes('previous configuration keeps running'))).toBe(true);
  });

  it('does nothing when the content did not change', async () => {
    store = await ConfigStore.open({ file, logger: recordingLogger() });
    let calls = 0;
    store.subscribe(() => void calls++);
    writeFileSync(file, configYaml('breakout'));
    expect((await store.reload()).status).toBe('unchanged');
    expect(calls).toBe(0);
  });

  it('reloads when an included file changes (wg-quick, list)', async () => {
    store = await ConfigStore.open({ file, logger: recordingLogger(), debounceMs: 50 });
    store.start();
    const before = store.current;
    expect(before.policy.matchName('netflix.test').rule).toBe(1);
    writeFileSync(join(dir, 'mine.txt'), 'hulu.test\n');
    await until(() => store!.current !== before);
    expect(store.current.policy.matchName('netflix.test').rule).toBeNull();
    expect(store.current.policy.matchName('hulu.test').rule).toBe(1);
  });

  it('notices an editor that saves by writing a temp file and renaming it', async () => {
    store = await ConfigStore.open({ file, logger: recordingLogger(), debounceMs: 50 });
    store.start();
    const before = store.current;
    const tmp = join(dir, '.config.yaml.swp');
    writeFileSync(tmp, configYaml('gw1'));
    renameSync(tmp, file);
    await until(() => store!.current !== before);
    expect(store.current.policy.matchName('stream.test').via).toEqual(['gw:gw1']);
    // The watch survives the rename: a second save is seen too.
    const second = store.current;
    const tmp2 = join(dir, 'config.yaml.new');
    writeFileSync(tmp2, configYaml('block'));
    renameSync(tmp2, file);
    await until(() => store!.current !== second);
    expect(store.current.policy.matchName('stream.test').via).toEqual(['block']);
  });

  it('debounces a burst of writes into one reload', async () => {
    const log = recordingLogger();
    store = await ConfigStore.open({ file, logger: log, debounceMs: 150 });
    store.start();
    let calls = 0;
    store.subscribe(() => void calls++);
    for (const via of ['gw1', 'block', 'breakout', 'gw1']) writeFileSync(file, configYaml(via));
    await until(() => calls > 0);
    await new Promise((r) => setTimeout(r, 400));
    expect(calls).toBe(1);
    expect(store.current.policy.matchName('stream.test').via).toEqual(['gw:gw1']);
  });

  it('reloads on SIGHUP', async () => {
    const signals = new EventEmitter();
    const log = recordingLogger();
    // A debounce far beyond the test's wait: only the signal can cause this reload.
    store = await ConfigStore.open({ file, logger: log, signals, debounceMs: 600_000 });
    store.start();
    const before = store.current;
    writeFileSync(file, configYaml('block'));
    await new Promise((r) => setTimeout(r, 200));
    expect(store.current).toBe(before);
    signals.emit('SIGHUP');
    await until(() => store!.current !== before, 2000);
    expect(store.current.policy.matchName('stream.test').via).toEqual(['block']);
    expect(log.lines.find((l) => l.msg === 'config reloaded')?.obj).toMatchObject({ reason: 'SIGHUP' });
    store.close();
    expect(signals.listenerCount('SIGHUP')).toBe(0);
  });

  it('notices when a file a rejected edit needs is created', async () => {
    store = await ConfigStore.open({ file, logger: recordingLogger(), debounceMs: 50 });
    store.start();
    const before = store.current;
    writeFileSync(file, configYaml('breakout').replace('mine.txt', 'lists/new.txt'));
    expect((await store.reload()).status).toBe('rejected');
    expect(store.current).toBe(before);
    mkdirSync(join(dir, 'lists'));
    writeFileSync(join(dir, 'lists', 'new.txt'), 'hulu.test\n');
    await until(() => store!.current !== before);
    expect(store.current.policy.matchName('hulu.test').rule).toBe(1);
  });

  it('an edit that breaks YAML aliases is rejected, and the daemon keeps running', async () => {
    const signals = new EventEmitter();
    store = await ConfigStore.open({ file, logger: recordingLogger(), signals });
    store.start();
    const before = store.current;
    writeFileSync(file, configYaml('breakout').replace('domains: [stream.test]', 'domains: [*typo]'));
    signals.emit('SIGHUP');
    const r = await store.reload();
    expect(r.status).toBe('rejected');
    expect(r.issues[0]).toMatchObject({ code: 'SPLITWAN_CONFIG_YAML', pos: { line: 9 } });
    expect(r.issues[0]!.message).toContain('unknown alias');
    expect(store.current).toBe(before);
  });

  it('a bad wg-quick edit is rejected with its own file and line, secrets not shown', async () => {
    const log = recordingLogger();
    store = await ConfigStore.open({ file, logger: log });
    const secret = key();
    writeFileSync(join(dir, 'gw1.conf'), `[Interface]\nPrivateKey = ${secret.slice(0, 30)}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n[Peer]\nPublicKey = ${key()}\nEndpoint = 192.0.2.10:51820\n`);
    chmodSync(join(dir, 'gw1.conf'), 0o600);
    const r = await store.reload();
    expect(r.status).toBe('rejected');
    const e = r.issues.find((i) => i.severity === 'error')!;
    expect(e.code).toBe('SPLITWAN_CONFIG_KEY');
    expect(e.pos.file).toBe(join(dir, 'gw1.conf'));
    expect(e.pos.line).toBe(2);
    expect(JSON.stringify(log.lines)).not.toContain(secret.slice(0, 30));
  });

  it('concurrent reloads share one run and the last edit wins', async () => {
    store = await ConfigStore.open({ file, logger: recordingLogger() });
    writeFileSync(file, configYaml('gw1'));
    const a = store.reload();
    writeFileSync(file, configYaml('block'));
    const b = store.reload();
    expect(a).toBe(b);
    await a;
    await until(() => store!.current.policy.matchName('stream.test').via[0] === 'block');
  });
});
