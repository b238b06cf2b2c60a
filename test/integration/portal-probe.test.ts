// The captive portal probe (daemon/portal/probe.ts) against real HTTP servers
// on loopback: a hotel-like portal that redirects every request to its login
// page, a free network's 204, a page with a meta refresh, no server at all.
// Names are looked up by a table here (the breakout's resolvers in the daemon);
// sockets are plain loopback connections (the breakout's mark in the daemon).
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probePortal, type ProbeIo } from '../../daemon/portal/probe.js';

describe('probePortal', () => {
  let server: http.Server;
  let port = 0;
  let mode: 'portal' | 'free' | 'refresh' | 'https' | 'loop' = 'portal';
  const seen: string[] = [];
  const lookups: string[] = [];
  const io: ProbeIo = {
    lookup: (name) => {
      lookups.push(name);
      return Promise.resolve(name.endsWith('.test') ? ['127.0.0.1'] : []);
    },
    dial: (address, p) =>
      new Promise((resolve, reject) => {
        const s = net.connect(p, address, () => resolve(s));
        s.once('error', reject);
      }),
    timeoutMs: 3000,
    now: () => 42,
  };

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push(`${req.headers.host}${req.url}`);
      const host = req.headers.host!.split(':')[0];
      if (mode === 'free') return void res.writeHead(204).end();
      if (mode === 'refresh') return void res.end(`<html><meta http-equiv="refresh" content="0;url=http://login.test:${port}/form"></html>`);
      if (mode === 'loop') return void res.writeHead(302, { location: `http://hop${seen.length}.test:${port}/` }).end();
      if (host === 'probe.test') return void res.writeHead(302, { location: mode === 'https' ? 'https://secure.test/login' : `http://portal.test:${port}/login?from=probe` }).end();
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hotel login</html>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('a portal: the redirect followed to its login page, every host on the way, names looked up by the given resolver', async () => {
    mode = 'portal';
    seen.length = 0;
    const r = await probePortal(`http://probe.test:${port}/generate_204`, io);
    expect(r).toEqual({ kind: 'portal', at: 42, url: `http://portal.test:${port}/login?from=probe`, hosts: ['probe.test', 'portal.test'], status: 302 });
    expect(seen).toEqual([`probe.test:${port}/generate_204`, `portal.test:${port}/login?from=probe`]);
    expect(lookups).toEqual(expect.arrayContaining(['probe.test', 'portal.test']));
  });

  it('a free network: 204, nothing followed', async () => {
    mode = 'free';
    seen.length = 0;
    expect(await probePortal(`http://probe.test:${port}/generate_204`, io)).toEqual({ kind: 'online', at: 42 });
    expect(seen).toHaveLength(1);
  });

  it('a page with a meta refresh: its target is the portal', async () => {
    mode = 'refresh';
    const r = await probePortal(`http://probe.test:${port}/generate_204`, io);
    expect(r).toMatchObject({ kind: 'portal', hosts: ['probe.test', 'login.test'], status: 200 });
  });

  it('an https hop is recorded, not fetched', async () => {
    mode = 'https';
    seen.length = 0;
    const r = await probePortal(`http://probe.test:${port}/generate_204`, io);
    expect(r).toMatchObject({ kind: 'portal', url: 'https://secure.test/login', hosts: ['probe.test', 'secure.test'] });
    expect(seen).toHaveLength(1);
  });

  it('an endless chain of redirects stops after a few hops', async () => {
    mode = 'loop';
    seen.length = 0;
    const r = await probePortal(`http://probe.test:${port}/generate_204`, io);
    expect(r.kind).toBe('portal');
    expect(seen.length).toBeLessThanOrEqual(6);
  });

  it('no server, or no address: failed, with the reason', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const dead = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    expect(await probePortal(`http://probe.test:${dead}/generate_204`, io)).toMatchObject({ kind: 'failed', error: expect.stringMatching(/ECONNREFUSED/) });
    expect(await probePortal('http://nowhere.example/generate_204', io)).toMatchObject({ kind: 'failed', error: 'nowhere.example has no address through the breakout\'s resolvers' });
  });
});
