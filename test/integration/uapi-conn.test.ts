// The long-lived UAPI connection (issue 17) against a unix socket server
// that answers as wireguard-go does: any number of `get=1` on one
// connection, each answer ending in `errno=0` and a blank line.
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UapiConnection } from '../../daemon/tunnel/uapi-conn-linux.js';

const dir = mkdtempSync(join(tmpdir(), 'splitwan-uapi-'));
const path = join(dir, 'swg-t.sock');
let server: net.Server;
let conns = 0;
let answers = 0;
/** true: the next request is not answered (a hung wireguard-go). */
let hang = false;
const live: net.Socket[] = [];

beforeAll(async () => {
  server = net.createServer((s) => {
    conns++;
    live.push(s);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      while (buf.includes('get=1\n\n')) {
        buf = buf.slice(buf.indexOf('get=1\n\n') + 7);
        if (hang) continue;
        answers++;
        // In two writes, as a stream may deliver it.
        s.write(`private_key=00\nlisten_port=51820\npublic_key=ab\nrx_bytes=${answers}\n`);
        setTimeout(() => s.write('errno=0\n\n'), 5);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(path, r));
});
afterAll(async () => {
  for (const s of live) s.destroy();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('UapiConnection', () => {
  it('asks again and again on one connection, each answer whole', async () => {
    const c = new UapiConnection(path, 1000);
    const texts = await Promise.all([c.get(), c.get(), c.get()]);
    for (const t of texts) expect(t).toMatch(/rx_bytes=\d+\nerrno=0\n\n$/);
    expect(new Set(texts).size).toBe(3);
    expect(c.connects).toBe(1);
    expect(conns).toBe(1);
    c.close();
  });

  it('connects again after wireguard-go closed the connection (a restart)', async () => {
    const c = new UapiConnection(path, 1000);
    await c.get();
    for (const s of live) s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(await c.get()).toMatch(/errno=0\n\n$/);
    expect(c.connects).toBe(2);
    c.close();
  });

  it('a request not answered in time fails, and the next one starts on a new connection', async () => {
    const c = new UapiConnection(path, 200);
    hang = true;
    await expect(c.get()).rejects.toThrow(/no answer .* within 200 ms/);
    hang = false;
    expect(await c.get()).toMatch(/errno=0\n\n$/);
    expect(c.connects).toBe(2);
    c.close();
  });

  it('no socket there: an error naming the path, never the answer', async () => {
    const c = new UapiConnection(join(dir, 'none.sock'), 500);
    await expect(c.get()).rejects.toThrow(/none\.sock: ENOENT/);
  });
});
