// Reading the query log: `splitwan log` over a real control socket (in a
// temp dir) whose handler reads a real QueryLog ring, its filters and
// --follow; client names from leases and hosts files; the rotated log file.
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { QueryLog } from '../../dns/query-log.js';
import { TYPE } from '../../dns/wire.js';
import { ClientNames, nodeClientNamesFs, parseClientNames } from '../../daemon/client-names.js';
import { logCommand } from '../../daemon/commands/control.js';
import { ControlServer, type ControlHandlers } from '../../daemon/control/server.js';
import { nodeLogFileFs, QueryLogFile } from '../../daemon/query-log-file.js';
import { namePattern, readLog } from '../../daemon/query-log-view.js';
import type { Io } from '../../daemon/cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splitwan-qlog-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const clock = { t: 0, now(): number { return this.t; }, wall(): number { return Date.UTC(2026, 0, 1, 12) + this.t; }, boot(): number { return this.t; }, setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms), clearTimeout: (h: unknown): void => clearTimeout(h as NodeJS.Timeout) };
const policy = { rules: [{ label: 'video' }, { label: 'work' }] };

function capture(): Io & { text: () => string } {
  let out = '';
  return { out: (t) => void (out += t), err: (t) => void (out += t), text: () => out };
}

describe('client names', () => {
  it('reads dnsmasq/odhcpd leases, ISC dhcpd leases and hosts files', () => {
    expect([...parseClientNames('1767268800 aa:bb:cc:dd:ee:ff 192.168.1.20 laptop 01:aa:bb\n1767268800 11:22:33:44:55:66 192.168.1.21 * *\n')]).toEqual([['192.168.1.20', 'laptop']]);
    expect([...parseClientNames('lease 192.168.1.30 {\n  starts 4 2026/01/01 10:00:00;\n  client-hostname "tv";\n}\nlease 192.168.1.31 {\n}\n')]).toEqual([['192.168.1.30', 'tv']]);
    expect([...parseClientNames('127.0.0.1 localhost\n::1 localhost ip6-localhost\n# comment\n192.168.1.40 nas nas.lan\n2001:DB8::0:5 printer\nbad line here\n')]).toEqual([
      ['192.168.1.40', 'nas'],
      ['2001:db8::5', 'printer'],
    ]);
  });

  it('names an address from the first file that knows it, read in the background', async () => {
    await writeFile(join(dir, 'hosts'), '192.168.1.20 desk\n');
    await writeFile(join(dir, 'leases'), '1767268800 aa:bb:cc:dd:ee:ff 192.168.1.20 laptop *\n1767268800 aa:bb:cc:dd:ee:00 192.168.1.21 phone *\n');
    const names = new ClientNames([join(dir, 'hosts'), join(dir, 'missing'), join(dir, 'leases')], { readFile: nodeClientNamesFs, clock });
    await names.refresh();
    expect([names.name('192.168.1.20'), names.name('192.168.1.21'), names.name('192.168.1.99')]).toEqual(['desk', 'phone', null]);
  });
});

describe('splitwan log', () => {
  it('prints the newest records with their rule and path, filters by client, name and path, and follows', async () => {
    const log = new QueryLog(clock, { privacy: 'full', size: 100 });
    const names = (a: string): string | null => (a === '192.168.1.20' ? 'laptop' : null);
    log.record(1, '192.168.1.20', 'www.video.test', TYPE.A, policy, 0, 'gw:gw2', false, ['198.51.100.7'], 0, 12.34, 'answered');
    log.record(2, '192.168.1.21', 'mail.work.test', TYPE.AAAA, policy, 1, 'breakout', true, [], 0, -1, 'answered');
    log.record(3, '192.168.1.20', 'other.test', TYPE.A, policy, -1, 'tunnel', false, null, 2, -1, 'servfail');
    const handlers = { queryLog: (q) => readLog(log, names, q) } as Partial<ControlHandlers> as ControlHandlers;
    const server = new ControlServer(handlers);
    const socket = join(dir, 'c.sock');
    await server.listen(socket);
    try {
      const io = capture();
      expect(await logCommand({ socket, follow: false, json: false, limit: 50 }, io)).toBe(0);
      const lines = io.text().trimEnd().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3}  192\.168\.1\.20 \(laptop\)  A www\.video\.test  → gw:gw2 \(rule 0 "video"\)  198\.51\.100\.7  12\.3 ms  NOERROR$/);
      expect(lines[1]).toContain('AAAA mail.work.test  → breakout (rule 1 "work")  -  cached  NOERROR');
      expect(lines[2]).toContain('other.test  → tunnel (default)  -  -  servfail SERVFAIL');

      const only = async (o: { client?: string; name?: string; path?: string }): Promise<string[]> => {
        const c = capture();
        await logCommand({ socket, follow: false, json: true, limit: 50, ...o }, c);
        return c.text().trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { name: string }).name);
      };
      expect(await only({ client: '192.168.1.20' })).toEqual(['www.video.test', 'other.test']);
      expect(await only({ client: 'lap' })).toEqual(['www.video.test', 'other.test']);
      expect(await only({ name: '*.test' })).toEqual(['www.video.test', 'mail.work.test', 'other.test']);
      expect(await only({ name: '*.work.test' })).toEqual(['mail.work.test']);
      expect(await only({ name: 'video' })).toEqual(['www.video.test']);
      expect(await only({ path: 'breakout' })).toEqual(['mail.work.test']);

      // --follow: what arrives after the first page, nothing twice, until stopped.
      const f = capture();
      let polls = 0;
      const following = logCommand({ socket, follow: true, json: true, limit: 1, path: 'gw:gw2', pollMs: 20, stopped: () => polls++ > 6 }, f);
      await new Promise((r) => setTimeout(r, 50));
      log.record(4, '192.168.1.22', 'new.video.test', TYPE.A, policy, 0, 'gw:gw2', false, ['198.51.100.8'], 0, 3, 'answered');
      log.record(5, '192.168.1.22', 'skip.test', TYPE.A, policy, 1, 'breakout', false, [], 0, 3, 'answered');
      expect(await following).toBe(0);
      expect(f.text().trimEnd().split('\n').map((l) => (JSON.parse(l) as { name: string; client: string }).name)).toEqual(['www.video.test', 'new.video.test']);
    } finally {
      await server.close();
    }
  });

  it('a name pattern is a glob or a substring, never a regular expression', () => {
    expect(namePattern('*.example.com')('a.b.example.com')).toBe(true);
    expect(namePattern('*.example.com')('example.com')).toBe(false);
    expect(namePattern('a.c')('abc')).toBe(false);
    expect(namePattern('(x+)+$')('xxxx')).toBe(false);
  });
});

describe('the query log file', () => {
  it('appends JSON lines (0600) and rotates at maxBytes, keeping `keep` old files', async () => {
    const log = new QueryLog(clock, { privacy: 'full', size: 1000 });
    const path = join(dir, 'q.log');
    const file = new QueryLogFile(log, { path, maxBytes: 1000, keep: 2 }, { fs: nodeLogFileFs, clock, logger: silentLogger, names: null });
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 3; i++) log.record(round * 10 + i, '192.168.1.20', `r${round}-${i}.test`, TYPE.A, policy, 0, 'breakout', false, ['192.0.2.1'], 0, 1, 'answered');
      await file.flush();
    }
    expect((await readdir(dir)).filter((f) => f.startsWith('q.log')).sort()).toEqual(['q.log', 'q.log.1', 'q.log.2']);
    for (const f of ['q.log', 'q.log.1', 'q.log.2']) expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(1000);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const last = (await readFile(path, 'utf8')).trimEnd().split('\n').map((l) => (JSON.parse(l) as { name: string }).name);
    expect(last.at(-1)).toBe('r7-2.test');
    const older = (await readFile(`${path}.1`, 'utf8')).trimEnd().split('\n').map((l) => (JSON.parse(l) as { name: string }).name);
    expect(older[0]! < last[0]!).toBe(true);
  });
});
