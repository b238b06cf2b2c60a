// The control API: the server on a real unix socket (in a temp dir) with fake
// handlers, the client and the CLI commands against it, the pure renderers
// (status, reload) and the dry-run config diff.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../config/load.js';
import type { Io } from '../../daemon/cli.js';
import { controlRequest, ControlRequestError, NotRunningError } from '../../daemon/control/client.js';
import { diffConfigs } from '../../daemon/control/config-diff.js';
import type { ReloadReport, StatusReport } from '../../daemon/control/protocol.js';
import { ControlListenError, ControlServer, readSocketPath, type ControlHandlers } from '../../daemon/control/server.js';
import { groupIdOf } from '../../daemon/control/group.js';
import { formatReload, formatStatus, selectCommand, statusCommand } from '../../daemon/commands/control.js';

let dir: string;
let seq = 0;
/** A fresh socket path in the temp dir (short: unix socket paths are limited to 107 bytes). */
const sockPath = (): string => join(dir, `s${++seq}.sock`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitwan-ctl-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Fixtures

const NOW = Date.UTC(2024, 5, 1, 12, 0, 0);

function gateway(o: Partial<StatusReport['gateways'][number]> & { name: string }): StatusReport['gateways'][number] {
  return {
    ifname: `swg-${o.name}`,
    priority: 1,
    state: 'up',
    active: false,
    rttMs: null,
    loss: 0,
    lastHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    endpoint: null,
    lastError: null,
    changedAt: NOW - 60_000,
    ...o,
  };
}

function report(o: Partial<StatusReport> = {}): StatusReport {
  return {
    version: '0.1.0',
    pid: 4242,
    startedAt: NOW - 2 * 3600_000,
    mode: 'host',
    config: { file: '/etc/splitwan/config.yaml', digest: 'abcdef12', version: 3, loadedAt: NOW - 600_000, lastReload: null },
    active: 'gw1',
    pinned: null,
    killSwitch: { enabled: true, engaged: false },
    gateways: [
      gateway({ name: 'gw1', priority: 1, active: true, state: 'up', rttMs: 12.5, loss: 0.1, lastHandshake: NOW - 30_000, rxBytes: 1536, txBytes: 500, endpoint: '192.0.2.12:51820' }),
      gateway({ name: 'gw2', priority: 2, state: 'down', rttMs: null, loss: 1, lastHandshake: null, rxBytes: 3 * 1024 * 1024, txBytes: 0, lastError: 'handshake timed out' }),
    ],
    breakout: { interface: 'eth0', state: 'up', rttMs: 4.4, dns: ['192.0.2.1'] },
    tagged: { breakout: 3, 'gw:gw2': 1 },
    dns: { listen: ['127.0.0.53:53'], queries: 100, hits: 40, misses: 60, hitRatio: 0.4, servfail: 2, blocked: 1, cacheEntries: 17 },
    proxy: null,
    failovers: [],
    ...o,
  };
}

interface Fake extends ControlHandlers {
  selected: (string | null)[];
  reloads: { dryRun: boolean; file: string | undefined }[];
  explained: { target: string; source: string | undefined }[];
  selectError: Error | null;
}

function fakeHandlers(): Fake {
  const f: Fake = {
    selected: [],
    reloads: [],
    explained: [],
    selectError: null,
    status: () => report(),
    reload: async (dryRun, file) => {
      f.reloads.push({ dryRun, file });
      return { status: dryRun ? 'dry-run' : 'applied', issues: [], ...(dryRun ? { changes: [] } : {}) };
    },
    select: (g) => {
      if (f.selectError) throw f.selectError;
      f.selected.push(g);
      return { active: g ?? 'gw1', pinned: g };
    },
    explain: (target, source) => {
      f.explained.push({ target, source });
      return { target } as unknown as Awaited<ReturnType<ControlHandlers['explain']>>;
    },
    refreshLists: async () => ({ lists: [{ name: 'stream', ok: true, entries: 3, changed: true }] }),
    flushDns: () => ({ flushed: 7 }),
    queryLog: () => ({ privacy: 'full', size: 0, entries: [], next: 0, missed: 0 }),
    rules: () => ({ rules: [], default: { via: ['tunnel'], hits: 0 }, lists: [] }),
  };
  return f;
}

function codedError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** One raw HTTP request on the socket: status and parsed JSON body (null when the connection dropped). */
function raw(socketPath: string, method: string, path: string, body?: string | Buffer): Promise<{ status: number; json: unknown } | { dropped: string }> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, method, path, headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch {
          /* keep the text */
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ dropped: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ dropped: e.code ?? e.message }));
    req.end(body);
  });
}

async function requestError(p: Promise<unknown>): Promise<ControlRequestError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ControlRequestError);
  return e as ControlRequestError;
}

function captureIo(): Io & { outText: () => string; errText: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    outText: () => out,
    errText: () => err,
  };
}

/** A unix socket file whose process died without removing it (SIGKILL): what a crashed daemon leaves. */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the socket child exited early (${code})`)));
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await exited;
}

// ---------------------------------------------------------------------------

describe('control server', () => {
  // Root may give a file any group; anyone else only one of their own.
  const otherGid = process.getuid?.() === 0 ? 4242 : process.getgid!();
  const servers: ControlServer[] = [];
  async function start(handlers: ControlHandlers = fakeHandlers(), path = sockPath()): Promise<{ server: ControlServer; path: string }> {
    const server = new ControlServer(handlers);
    await server.listen(path);
    servers.push(server);
    return { server, path };
  }
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  it('the socket is mode 0600 and the directory it creates is 0700', async () => {
    const path = join(dir, 'newdir', 'nested', 'control.sock');
    await start(fakeHandlers(), path);
    const s = await stat(path);
    expect(s.isSocket()).toBe(true);
    expect(s.mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'newdir', 'nested'))).mode & 0o777).toBe(0o700);
  });

  it('the read-only socket: 0660 in its group, its private directory traversable by the group; status/explain/rules only', async () => {
    const h = fakeHandlers();
    const path = join(dir, 'ro', 'control.sock');
    await start(h, path);
    const reader = new ControlServer(h, () => {}, { readOnly: true });
    servers.push(reader);
    const gid = otherGid;
    await reader.listen(readSocketPath(path), { group: gid });
    const s = await stat(join(dir, 'ro', 'read.sock'));
    expect([s.mode & 0o777, s.gid]).toEqual([0o660, gid]);
    const d = await stat(join(dir, 'ro'));
    expect([d.mode & 0o777, d.gid]).toEqual([0o710, gid]);
    // The control socket beside it stays root only.
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const ro = readSocketPath(path);
    expect(await controlRequest<StatusReport>(ro, { method: 'GET', path: '/v1/status' })).toEqual(report());
    for (const [route, body] of [
      [{ method: 'POST', path: '/v1/select' }, { gateway: 'x' }],
      [{ method: 'POST', path: '/v1/reload' }, {}],
      [{ method: 'POST', path: '/v1/lists/refresh' }, {}],
      [{ method: 'POST', path: '/v1/dns/flush' }, {}],
      [{ method: 'GET', path: '/v1/log' }, undefined],
    ] as const) {
      const e = await requestError(controlRequest(ro, route, body));
      expect([route.path, e.status, e.code]).toEqual([route.path, 403, 'SPLITWAN_CONTROL_READONLY']);
    }
    expect(h.selected).toEqual([]);
  });

  it('the read-only socket never changes a shared directory (one others can enter)', async () => {
    const shared = join(dir, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o755);
    const reader = new ControlServer(fakeHandlers(), () => {}, { readOnly: true });
    servers.push(reader);
    const before = await stat(shared);
    await reader.listen(join(shared, 'read.sock'), { group: otherGid });
    const d = await stat(shared);
    expect([d.mode & 0o777, d.gid]).toEqual([0o755, before.gid]);
  });

  it('control.group → gid from /etc/group; a number as it is; unknown → null', () => {
    const etc = 'root:x:0:\nusers:x:100:alice,bob\nsplitwan:x:998:alice\n#bad\n';
    expect(groupIdOf(etc, 'splitwan')).toBe(998);
    expect(groupIdOf(etc, 'users')).toBe(100);
    expect(groupIdOf(etc, '1234')).toBe(1234);
    expect(groupIdOf(etc, 'wheel')).toBeNull();
    expect(groupIdOf(etc, 'split')).toBeNull();
  });

  it('GET /v1/status returns the handler report as JSON', async () => {
    const { path } = await start();
    expect(await controlRequest<StatusReport>(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
  });

  it('POST /v1/select passes a name, or null for automatic', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    expect(await controlRequest(path, { method: 'POST', path: '/v1/select' }, { gateway: 'x' })).toEqual({ active: 'x', pinned: 'x' });
    expect(await controlRequest(path, { method: 'POST', path: '/v1/select' }, { gateway: null })).toEqual({ active: 'gw1', pinned: null });
    expect(h.selected).toEqual(['x', null]);
  });

  it('POST /v1/select with a gateway that is not a string or null → 400 SPLITWAN_CONTROL_REQUEST, the handler not called', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    for (const gateway of [5, true, ['x'], { name: 'x' }, undefined]) {
      const e = await requestError(controlRequest(path, { method: 'POST', path: '/v1/select' }, { gateway }));
      expect([e.status, e.code]).toEqual([400, 'SPLITWAN_CONTROL_REQUEST']);
    }
    expect(h.selected).toEqual([]);
  });

  it("a handler's own SPLITWAN_ error → 400 with that code and message", async () => {
    const h = fakeHandlers();
    h.selectError = codedError('no gateway named "nope"', 'SPLITWAN_CONTROL_SELECT');
    const { path } = await start(h);
    const e = await requestError(controlRequest(path, { method: 'POST', path: '/v1/select' }, { gateway: 'nope' }));
    expect([e.status, e.code, e.message]).toEqual([400, 'SPLITWAN_CONTROL_SELECT', 'no gateway named "nope"']);
  });

  it('a plain Error from a handler → 500 SPLITWAN_CONTROL_FAILED (a code not starting SPLITWAN_ too)', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    h.selectError = new Error('boom');
    const e = await requestError(controlRequest(path, { method: 'POST', path: '/v1/select' }, { gateway: 'x' }));
    expect([e.status, e.code, e.message]).toEqual([500, 'SPLITWAN_CONTROL_FAILED', 'boom']);
    h.selectError = codedError('no such file', 'ENOENT');
    const e2 = await requestError(controlRequest(path, { method: 'POST', path: '/v1/select' }, { gateway: 'x' }));
    expect([e2.status, e2.code]).toEqual([500, 'SPLITWAN_CONTROL_FAILED']);
  });

  it('an async handler that rejects is answered the same way', async () => {
    const h = fakeHandlers();
    h.refreshLists = async () => {
      throw codedError('lists busy', 'SPLITWAN_LISTS_BUSY');
    };
    h.reload = async () => {
      throw new Error('disk on fire');
    };
    const { path } = await start(h);
    const e = await requestError(controlRequest(path, { method: 'POST', path: '/v1/lists/refresh' }, {}));
    expect([e.status, e.code]).toEqual([400, 'SPLITWAN_LISTS_BUSY']);
    const e2 = await requestError(controlRequest(path, { method: 'POST', path: '/v1/reload' }, {}));
    expect([e2.status, e2.code]).toEqual([500, 'SPLITWAN_CONTROL_FAILED']);
  });

  it('an unknown route, or a known path with the wrong method → 404 SPLITWAN_CONTROL_REQUEST', async () => {
    const { path } = await start();
    for (const [m, p] of [
      ['GET', '/v1/nope'],
      ['POST', '/v1/status'],
      ['GET', '/v1/select'],
      ['GET', '/'],
    ] as const) {
      const e = await requestError(controlRequest(path, { method: m, path: p }));
      expect([e.status, e.code]).toEqual([404, 'SPLITWAN_CONTROL_REQUEST']);
      expect(e.message).toContain(`${m} ${p}`);
    }
  });

  it('reload, explain, lists refresh and dns flush reach their handlers', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    expect(await controlRequest<ReloadReport>(path, { method: 'POST', path: '/v1/reload' }, { dryRun: true, file: '/tmp/x.yaml' })).toEqual({ status: 'dry-run', issues: [], changes: [] });
    expect(await controlRequest<ReloadReport>(path, { method: 'POST', path: '/v1/reload' }, {})).toEqual({ status: 'applied', issues: [] });
    expect(h.reloads).toEqual([
      { dryRun: true, file: '/tmp/x.yaml' },
      { dryRun: false, file: undefined },
    ]);
    const bad = await requestError(controlRequest(path, { method: 'POST', path: '/v1/reload' }, { file: 5 }));
    expect([bad.status, bad.code]).toEqual([400, 'SPLITWAN_CONTROL_REQUEST']);
    expect(h.reloads).toHaveLength(2);

    expect(await controlRequest(path, { method: 'GET', path: '/v1/explain?q=example.com&source=192.168.1.5' })).toEqual({ target: 'example.com' });
    expect(await controlRequest(path, { method: 'GET', path: '/v1/explain?q=1.2.3.4' })).toEqual({ target: '1.2.3.4' });
    expect(h.explained).toEqual([
      { target: 'example.com', source: '192.168.1.5' },
      { target: '1.2.3.4', source: undefined },
    ]);
    const noQ = await requestError(controlRequest(path, { method: 'GET', path: '/v1/explain' }));
    expect([noQ.status, noQ.code]).toEqual([400, 'SPLITWAN_CONTROL_REQUEST']);

    expect(await controlRequest(path, { method: 'POST', path: '/v1/lists/refresh' }, {})).toEqual({ lists: [{ name: 'stream', ok: true, entries: 3, changed: true }] });
    expect(await controlRequest(path, { method: 'POST', path: '/v1/dns/flush' }, {})).toEqual({ flushed: 7 });
  });

  it('a body that is not JSON → 400 SPLITWAN_CONTROL_REQUEST', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    for (const body of ['{"gateway": ', 'gateway=x', '\u0000\u0001']) {
      const r = await raw(path, 'POST', '/v1/select', body);
      expect(r).toEqual({ status: 400, json: { error: 'the body is not JSON', code: 'SPLITWAN_CONTROL_REQUEST' } });
    }
    expect(h.selected).toEqual([]);
  });

  it('a JSON body that is not an object (null, a number) → 400 SPLITWAN_CONTROL_REQUEST, no handler called', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    const got: unknown[] = [];
    for (const [route, body] of [
      ['/v1/select', 'null'],
      ['/v1/reload', 'null'],
      ['/v1/reload', '5'],
      ['/v1/reload', '["dryRun"]'],
    ] as const) {
      const r = await raw(path, 'POST', route, body);
      got.push({ route, body, status: 'status' in r ? r.status : r.dropped, code: 'status' in r ? (r.json as { code?: string }).code : undefined });
    }
    expect(got).toEqual([
      { route: '/v1/select', body: 'null', status: 400, code: 'SPLITWAN_CONTROL_REQUEST' },
      { route: '/v1/reload', body: 'null', status: 400, code: 'SPLITWAN_CONTROL_REQUEST' },
      { route: '/v1/reload', body: '5', status: 400, code: 'SPLITWAN_CONTROL_REQUEST' },
      { route: '/v1/reload', body: '["dryRun"]', status: 400, code: 'SPLITWAN_CONTROL_REQUEST' },
    ]);
    // A reload asked with a malformed body must never be applied for real.
    expect(h.reloads).toEqual([]);
  });

  it('a body over 64 KiB → 413 or a dropped connection, and the server keeps serving', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    const big = JSON.stringify({ gateway: 'x', pad: 'a'.repeat(70 * 1024) });
    const r = await raw(path, 'POST', '/v1/select', big);
    if ('status' in r) expect(r).toEqual({ status: 413, json: { error: 'request body over 64 KiB', code: 'SPLITWAN_CONTROL_REQUEST' } });
    else expect(r.dropped).toMatch(/ECONNRESET|EPIPE|socket hang up/);
    expect(h.selected).toEqual([]);
    // Exactly 64 KiB is still accepted.
    const edge = JSON.stringify({ gateway: 'y', pad: '' });
    const fill = 64 * 1024 - Buffer.byteLength(edge);
    expect(await raw(path, 'POST', '/v1/select', JSON.stringify({ gateway: 'y', pad: 'b'.repeat(fill) }))).toEqual({ status: 200, json: { active: 'y', pinned: 'y' } });
    expect(await controlRequest(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
  });

  it('garbage bytes on the raw socket never crash it: a later request still works', async () => {
    const errors: Error[] = [];
    const server = new ControlServer(fakeHandlers(), (e) => errors.push(e));
    const path = sockPath();
    await server.listen(path);
    servers.push(server);
    const payloads = [randomBytes(4096), randomBytes(17), Buffer.from('GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n'), Buffer.from('POST /v1/select HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'), Buffer.from('\r\n\r\n\r\n')];
    for (const p of payloads) {
      await new Promise<void>((resolve) => {
        const s = net.connect(path);
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('data', () => {});
        s.on('connect', () => {
          s.write(p);
          // Half-open clients are not our problem: give up after a moment.
          setTimeout(() => s.destroy(), 200).unref();
        });
      });
    }
    // A client that connects and vanishes mid-request.
    await new Promise<void>((resolve) => {
      const s = net.connect(path, () => {
        s.write('POST /v1/select HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"gat');
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 50);
      });
    });
    expect(await controlRequest(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
    expect(errors).toEqual([]);
  });

  it('a stale socket file (a plain file) is replaced on listen', async () => {
    const path = sockPath();
    await writeFile(path, 'left over');
    await start(fakeHandlers(), path);
    expect((await stat(path)).isSocket()).toBe(true);
    expect(await controlRequest(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
  });

  it('a stale socket file (its process died) is replaced on listen', async () => {
    const path = sockPath();
    await staleSocket(path);
    expect((await stat(path)).isSocket()).toBe(true);
    // Nothing answers on it: the client says "not running".
    await expect(controlRequest(path, { method: 'GET', path: '/v1/status' })).rejects.toBeInstanceOf(NotRunningError);
    await start(fakeHandlers(), path);
    expect(await controlRequest(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
  });

  it('a socket a closed ControlServer left (if any) is no obstacle to the next one', async () => {
    const path = sockPath();
    const first = new ControlServer(fakeHandlers());
    await first.listen(path);
    await first.close();
    await start(fakeHandlers(), path);
    expect(await controlRequest(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
  });

  it('a second server on a path one answers on throws ControlListenError SPLITWAN_CONTROL_LISTEN and leaves the first alone', async () => {
    const { path } = await start();
    const second = new ControlServer(fakeHandlers());
    const e = await second.listen(path).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(ControlListenError);
    expect((e as ControlListenError).code).toBe('SPLITWAN_CONTROL_LISTEN');
    expect((e as Error).message).toContain('another splitwan is running');
    await second.close();
    expect((await stat(path)).isSocket()).toBe(true);
    expect(await controlRequest(path, { method: 'GET', path: '/v1/status' })).toEqual(report());
  });

  it('close() is idempotent and the client then sees "not running"', async () => {
    const { server, path } = await start();
    await server.close();
    await server.close();
    await expect(controlRequest(path, { method: 'GET', path: '/v1/status' })).rejects.toBeInstanceOf(NotRunningError);
  });

  it('statusCommand against a live server prints JSON with --json and the table without', async () => {
    const { path } = await start();
    const j = captureIo();
    expect(await statusCommand({ socket: path, json: true }, j, NOW)).toBe(0);
    expect(JSON.parse(j.outText())).toEqual(report());
    const t = captureIo();
    expect(await statusCommand({ socket: path, json: false }, t, NOW)).toBe(0);
    expect(t.outText()).toBe(formatStatus(report(), NOW));
    expect(t.errText()).toBe('');
  });

  it('selectCommand maps a SPLITWAN_CONTROL_SELECT refusal to exit 2 and a handler crash to exit 70', async () => {
    const h = fakeHandlers();
    const { path } = await start(h);
    h.selectError = codedError('no gateway named "nope"', 'SPLITWAN_CONTROL_SELECT');
    const io = captureIo();
    expect(await selectCommand({ socket: path, gateway: 'nope' }, io)).toBe(2);
    expect(io.errText()).toBe('splitwan select: no gateway named "nope" (SPLITWAN_CONTROL_SELECT)\n');
    h.selectError = new Error('boom');
    const io2 = captureIo();
    expect(await selectCommand({ socket: path, gateway: 'gw1' }, io2)).toBe(70);
    h.selectError = null;
    const io3 = captureIo();
    expect(await selectCommand({ socket: path, gateway: 'auto' }, io3)).toBe(0);
    expect(h.selected).toEqual([null]);
    expect(io3.outText()).toBe('automatic: the best healthy gateway carries the tunnel (now gw1)\n');
  });
});

describe('control client with no daemon', () => {
  it('controlRequest on a path with nothing → NotRunningError (SPLITWAN_NOT_RUNNING)', async () => {
    const path = join(dir, 'nothing-here.sock');
    const e = await controlRequest(path, { method: 'GET', path: '/v1/status' }).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(NotRunningError);
    expect((e as NotRunningError).code).toBe('SPLITWAN_NOT_RUNNING');
    expect((e as Error).message).toContain(path);
  });

  it('controlRequest on a missing directory → NotRunningError too', async () => {
    await expect(controlRequest(join(dir, 'no-such-dir', 'c.sock'), { method: 'POST', path: '/v1/select' }, { gateway: null })).rejects.toBeInstanceOf(NotRunningError);
  });

  it('statusCommand on such a path → exit 3 and "splitwan is not running" on stderr, nothing on stdout', async () => {
    const io = captureIo();
    expect(await statusCommand({ socket: join(dir, 'nothing-here.sock'), json: false }, io)).toBe(3);
    expect(io.errText()).toContain('splitwan is not running');
    expect(io.errText().startsWith('splitwan status: ')).toBe(true);
    expect(io.outText()).toBe('');
  });
});

// ---------------------------------------------------------------------------

describe('formatStatus', () => {
  const lines = (s: StatusReport): string[] => formatStatus(s, NOW).split('\n');

  it('renders the header, the config, and the gateway table with the active row starred', () => {
    const L = lines(report());
    expect(L[0]).toBe('splitwan 0.1.0 (pid 4242), host mode, up 2h');
    expect(L[1]).toBe('config /etc/splitwan/config.yaml v3 (abcdef12), loaded 10m ago');
    expect(L[2]).toBe('tunnel path: gw1');
    const header = L.find((l) => l.includes('GATEWAY'))!;
    expect(header.trim().split(/\s+/)).toEqual(['GATEWAY', 'STATE', 'RTT', 'LOSS', 'HANDSHAKE', 'RX', 'TX', 'ENDPOINT']);
    const gw1 = L.find((l) => l.includes('gw1 (swg-gw1, prio 1)'))!;
    const gw2 = L.find((l) => l.includes('gw2 (swg-gw2, prio 2)'))!;
    expect(gw1.startsWith('*')).toBe(true);
    expect(gw2.startsWith('*')).toBe(false);
    expect(gw1.slice(1).trim().split(/\s{2,}/)).toEqual(['gw1 (swg-gw1, prio 1)', 'up', '12.5 ms', '10%', '30s ago', '1.5 KiB', '500 B', '192.0.2.12:51820']);
    expect(gw2.trim().split(/\s{2,}/)).toEqual(['gw2 (swg-gw2, prio 2)', 'down', '-', '100%', 'never', '3.0 MiB', '0 B', '-']);
    // Columns line up: every row has the same offset for each column.
    expect(gw1.indexOf('up')).toBe(header.indexOf('STATE'));
    expect(gw2.indexOf('down')).toBe(header.indexOf('STATE'));
    // The error of a gateway that is not up.
    expect(L).toContain('  gw2: handshake timed out');
    expect(L).toContain('breakout: eth0, up, rtt 4 ms, resolvers 192.0.2.1');
    expect(L).toContain('tagged addresses: breakout 3, gw:gw2 1');
    expect(L).toContain('dns: 127.0.0.53:53; 100 queries, hit ratio 40%, 17 cached, 2 servfail, 1 blocked');
    expect(L).toContain('failovers: none since start');
  });

  it('handshake ago in minutes, hours and days', () => {
    const at = (ms: number): string => lines(report({ gateways: [gateway({ name: 'g', lastHandshake: NOW - ms })] })).find((l) => l.includes('g (swg-g'))!;
    expect(at(119_000)).toContain('119s ago');
    expect(at(5 * 60_000)).toContain('5m ago');
    expect(at(3 * 3600_000)).toContain('3h ago');
    expect(at(3 * 86_400_000)).toContain('3d ago');
    // A clock step backwards never prints a negative age.
    expect(at(-10_000)).toContain('0s ago');
  });

  it('no active gateway with the kill switch on: the kill switch is engaged', () => {
    const L = lines(report({ active: null, killSwitch: { enabled: true, engaged: true }, gateways: [gateway({ name: 'gw1', state: 'down' })] }));
    expect(L[2]).toBe('tunnel path: NONE — kill switch engaged: tunnel traffic is blocked');
    expect(L.some((l) => l.startsWith('*'))).toBe(false);
  });

  it('no active gateway with the kill switch off: traffic leaves via the breakout', () => {
    expect(lines(report({ active: null, killSwitch: { enabled: false, engaged: false } }))[2]).toBe('tunnel path: none — kill switch off: tunnel traffic leaves via the breakout');
  });

  it('a pinned gateway says how to undo it', () => {
    expect(lines(report({ pinned: 'gw1' }))[2]).toBe('tunnel path: gw1 (pinned by select; "splitwan select auto" to undo)');
    expect(lines(report())[2]).not.toContain('pinned');
  });

  it('the last reload, with its error', () => {
    const L = lines(report({ config: { file: '/c.yaml', digest: 'd', version: 2, loadedAt: NOW - 60_000, lastReload: { at: NOW - 5_000, status: 'rejected', error: 'bad rule' } } }));
    expect(L[1]).toBe('config /c.yaml v2 (d), loaded 60s ago; last reload 5s ago: rejected (bad rule)');
  });

  it('failovers newest first (as the report gives them), at most 5', () => {
    const failovers = [
      { at: NOW - 1_000, from: 'gw2', to: 'gw1', reason: 'gw1 is back' },
      { at: NOW - 60_000, from: null, to: 'gw2', reason: 'gw2 up' },
      { at: NOW - 120_000, from: 'gw1', to: null, reason: 'gw1 down' },
    ];
    const L = lines(report({ failovers }));
    const i = L.indexOf('recent failovers:');
    expect(i).toBeGreaterThan(0);
    expect(L.slice(i + 1, i + 4)).toEqual([
      `  ${new Date(NOW - 1_000).toISOString()}  gw2 → gw1  (gw1 is back)`,
      `  ${new Date(NOW - 60_000).toISOString()}  none → gw2  (gw2 up)`,
      `  ${new Date(NOW - 120_000).toISOString()}  gw1 → none  (gw1 down)`,
    ]);
    const many = Array.from({ length: 8 }, (_, k) => ({ at: NOW - k * 1000, from: 'a', to: 'b', reason: `r${k}` }));
    const M = lines(report({ failovers: many }));
    expect(M.filter((l) => l.includes(' a → b '))).toHaveLength(5);
    expect(M.some((l) => l.includes('(r0)'))).toBe(true);
    expect(M.some((l) => l.includes('(r5)'))).toBe(false);
  });

  it('the proxy line only when the proxy runs', () => {
    expect(lines(report()).some((l) => l.startsWith('proxy:'))).toBe(false);
    const L = lines(report({ proxy: { listen: ['127.0.0.1:15001'], paths: { breakout: { connections: 4, active: 1, bytesUp: 2048, bytesDown: 5 } } } }));
    expect(L).toContain('proxy: 127.0.0.1:15001; breakout 4 conns (1 open) ↑2.0 KiB ↓5 B');
    expect(lines(report({ proxy: { listen: ['127.0.0.1:15001'], paths: {} } }))).toContain('proxy: 127.0.0.1:15001; no connections yet');
  });

  it('ends with one newline and holds no "undefined" or "NaN"', () => {
    const t = formatStatus(report({ proxy: { listen: [], paths: {} }, breakout: { interface: null, state: 'unknown', rttMs: null, dns: [] }, tagged: {}, dns: { listen: [], queries: 0, hits: 0, misses: 0, hitRatio: null, servfail: 0, blocked: 0, cacheEntries: 0 } }), NOW);
    expect(t.endsWith('\n')).toBe(true);
    expect(t.endsWith('\n\n')).toBe(false);
    expect(t).not.toMatch(/undefined|NaN|null/);
    expect(t).toContain('breakout: no default route, unknown, resolvers none');
    expect(t).toContain('tagged addresses: none');
    expect(t).toContain('hit ratio -,');
  });
});

describe('formatReload', () => {
  it('dry run with changes lists them indented', () => {
    expect(formatReload({ status: 'dry-run', issues: [], changes: ['dns.timeoutMs: 2000 → 5000', 'gateway gw3 added'] })).toBe(
      ['the new file would change:', '  dns.timeoutMs: 2000 → 5000', '  gateway gw3 added', '(dry run: nothing applied)', ''].join('\n'),
    );
  });

  it('dry run without changes (empty or absent)', () => {
    const want = ['the new file changes nothing that matters', '(dry run: nothing applied)', ''].join('\n');
    expect(formatReload({ status: 'dry-run', issues: [], changes: [] })).toBe(want);
    expect(formatReload({ status: 'dry-run', issues: [] })).toBe(want);
  });

  it('rejected, with its errors', () => {
    expect(formatReload({ status: 'rejected', issues: ['/c.yaml:3:5: rules[0].via: "x" is unknown'] })).toBe('rejected: the running configuration is kept\n/c.yaml:3:5: rules[0].via: "x" is unknown\n');
  });

  it('applied, with its warnings; unchanged', () => {
    expect(formatReload({ status: 'applied', issues: ['/c.yaml:1:1: a warning'] })).toBe('reloaded: the new configuration is running\n/c.yaml:1:1: a warning\n');
    expect(formatReload({ status: 'unchanged', issues: [] })).toBe('unchanged: the file is the same as the running configuration\n');
  });
});

// ---------------------------------------------------------------------------

describe('diffConfigs', () => {
  /** Keys per gateway name, stable across configs unless a test changes one. */
  const privKeys = new Map<string, string>();
  const pubKeys = new Map<string, string>();
  const keyOf = (m: Map<string, string>, name: string): string => {
    if (!m.has(name)) m.set(name, randomBytes(32).toString('base64'));
    return m.get(name)!;
  };
  let n = 0;

  interface Gw {
    name: string;
    priority?: number;
    privateKey?: string;
  }
  const RULES = ['  - domains: [a.test]', '    via: breakout', '  - domains: [b.test]', '    via: gw2', '  - cidrs: [100.64.7.0/24]', '    via: [gw2, gw1]'];

  /** A minimal host-mode config with inline gateways (private key in a 0600 file), loaded. */
  async function config(o: { gateways?: Gw[]; rules?: string[]; extra?: string[] } = {}): Promise<LoadedConfig> {
    const d = join(dir, `cfg${++n}`);
    await mkdir(d);
    const lines = ['mode: host', 'breakout:', '  dns: ["192.0.2.1"]', 'tunnel:', '  gateways:'];
    for (const [i, g] of (o.gateways ?? [{ name: 'gw1', priority: 1 }, { name: 'gw2', priority: 2 }]).entries()) {
      const kf = join(d, `${g.name}.key`);
      await writeFile(kf, (g.privateKey ?? keyOf(privKeys, g.name)) + '\n');
      await chmod(kf, 0o600);
      lines.push(
        `    - name: ${g.name}`,
        `      privateKeyFile: ${g.name}.key`,
        ...(g.priority === undefined ? [] : [`      priority: ${g.priority}`]),
        `      address: 10.64.0.${i + 2}/32`,
        '      dns: ["10.64.0.1"]',
        '      peer:',
        `        publicKey: "${keyOf(pubKeys, g.name)}"`,
        `        endpoint: 192.0.2.${12 + i}:51820`,
      );
    }
    lines.push(...(o.extra ?? []), 'rules:', ...(o.rules ?? RULES));
    const f = join(d, 'config.yaml');
    await writeFile(f, lines.join('\n') + '\n');
    return loadConfig(f);
  }

  let base: LoadedConfig;
  beforeAll(async () => {
    base = await config();
  });

  it('identical configs (two files with the same content) → []', async () => {
    expect(diffConfigs(base, base)).toEqual([]);
    expect(diffConfigs(base, await config())).toEqual([]);
  });

  it('a rule added', async () => {
    const next = await config({ rules: [...RULES, '  - domains: [c.test]', '    via: block'] });
    expect(diffConfigs(base, next)).toEqual(['rule #3 added: c.test via block']);
  });

  it('a rule removed (the rules after it move up)', async () => {
    const next = await config({ rules: [RULES[0]!, RULES[1]!, RULES[4]!, RULES[5]!] });
    const d = diffConfigs(base, next);
    expect(d).toContain('rule #1 removed: b.test via gw2');
    expect(d.filter((l) => l.includes('added'))).toEqual([]);
  });

  it('a via changed', async () => {
    const next = await config({ rules: [RULES[0]!, RULES[1]!, RULES[2]!, '    via: [gw1, breakout]', RULES[4]!, RULES[5]!] });
    expect(diffConfigs(base, next)).toEqual(['rule #1 (b.test): via gw2 → gw1, breakout']);
  });

  it('a rule moved', async () => {
    const next = await config({ rules: [RULES[2]!, RULES[3]!, RULES[0]!, RULES[1]!, RULES[4]!, RULES[5]!] });
    const d = diffConfigs(base, next);
    expect(d).toContain('rule b.test: moved from #1 to #0 (rules match in order)');
    expect(d).toContain('rule a.test: moved from #0 to #1 (rules match in order)');
    expect(d.some((l) => / (added|removed)/.test(l))).toBe(false);
    expect(d.some((l) => l.includes('via'))).toBe(false);
  });

  it('a gateway added: listed with endpoint and priority, with its ip rules and routes', async () => {
    const next = await config({ gateways: [{ name: 'gw1', priority: 1 }, { name: 'gw2', priority: 2 }, { name: 'gw3', priority: 5 }] });
    const d = diffConfigs(base, next);
    expect(d).toContain('gateway gw3 added (192.0.2.14:51820, priority 5)');
    expect(d.some((l) => /^ip rule added: ip rule pref \d+ fwmark 0x[0-9a-f]+\/0xff00 lookup \d+$/.test(l))).toBe(true);
    expect(d.some((l) => /^ip rule added: ip -6 rule pref \d+ fwmark 0x[0-9a-f]+\/0xff00 lookup \d+$/.test(l))).toBe(true);
    expect(d).toContainEqual(expect.stringMatching(/^route added: ip route table \d+ default dev swg-gw3$/));
    expect(d).toContainEqual(expect.stringMatching(/^route added: ip -6 route table \d+ default dev swg-gw3$/));
    expect(d.some((l) => l.includes('removed'))).toBe(false);
  });

  it('a gateway removed: its tunnel goes down, its rules and routes go', async () => {
    const next = await config({ gateways: [{ name: 'gw1', priority: 1 }], rules: [RULES[0]!, RULES[1]!] });
    const d = diffConfigs(base, next);
    expect(d).toContain('gateway gw2 removed (its tunnel goes down)');
    expect(d).toContainEqual(expect.stringMatching(/^ip rule removed: ip rule pref \d+ fwmark 0x[0-9a-f]+\/0xff00 lookup \d+$/));
    expect(d).toContainEqual(expect.stringMatching(/^route removed: ip route table \d+ default dev swg-gw2$/));
  });

  it('a gateway priority change', async () => {
    const next = await config({ gateways: [{ name: 'gw1', priority: 3 }, { name: 'gw2', priority: 2 }] });
    expect(diffConfigs(base, next)).toEqual(['gateway gw1.priority: 1 → 3']);
  });

  it('dns.timeout, under the key path the loaded Config uses (dns.timeoutMs, in ms)', async () => {
    const next = await config({ extra: ['dns:', '  timeout: 5s'] });
    const d = diffConfigs(base, next);
    expect(d).toEqual([`dns.timeoutMs: ${base.config.dns.timeoutMs} → 5000`]);
  });

  it('a private key change prints "private key changed" and never the key', async () => {
    const secret = randomBytes(32).toString('base64');
    const next = await config({ gateways: [{ name: 'gw1', priority: 1, privateKey: secret }, { name: 'gw2', priority: 2 }] });
    const d = diffConfigs(base, next);
    expect(d).toEqual(['gateway gw1: private key changed']);
    const old = base.config.tunnel.gateways[0]!.wireguard.privateKey;
    for (const l of d) {
      expect(l).not.toContain(secret);
      expect(l).not.toContain(old);
    }
    // Nor in any other diff: every line of every diff so far and back.
    for (const l of diffConfigs(next, base)) {
      expect(l).not.toContain(secret);
      expect(l).not.toContain(old);
    }
  });

  it('a gateway removed and another added in its place: both named, no key printed', async () => {
    const secret = randomBytes(32).toString('base64');
    const next = await config({ gateways: [{ name: 'gw1', priority: 1 }, { name: 'gw9', priority: 2, privateKey: secret }], rules: [RULES[0]!, RULES[1]!] });
    const d = diffConfigs(base, next);
    expect(d).toContain('gateway gw9 added (192.0.2.13:51820, priority 2)');
    expect(d).toContain('gateway gw2 removed (its tunnel goes down)');
    expect(d.join('\n')).not.toContain(secret);
  });
});
