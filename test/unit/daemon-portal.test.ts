// Captive portals through the composition root (issue 16), over fake OS
// adapters (test/helpers/fake-deps.ts): the probe goes by the breakout (its
// socket carries the breakout's mark, its name asked of the breakout's
// resolver), status shows the portal, `portal` puts the window into the nft
// session, the resolver answers the portal's name from the breakout while it
// is open (the default path is the tunnel), and --close empties the sets.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { MARK_BREAKOUT } from '../../daemon/dataplane/plan.js';
import type { FakePathSockets } from '../../daemon/sockets.js';
import { configDir, fakeOs, type ConfigDir, type FakeOs } from '../helpers/fake-deps.js';
import { until } from '../helpers/daemon.js';
import { dig } from '../helpers/dig.js';
import { startTinyUpstream, type TinyUpstream } from '../helpers/dns-upstream.js';

let cd: ConfigDir;
let os: FakeOs;
let d: Daemon;
let up: TinyUpstream;
let web: http.Server;
let port = 0;

beforeEach(async () => {
  web = http.createServer((req, res) => {
    if (req.headers.host?.startsWith('portal.test')) return void res.end('<html>hotel login</html>');
    res.writeHead(302, { location: `http://portal.test:${port}/login` }).end();
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  port = (web.address() as AddressInfo).port;
  up = await startTinyUpstream({ records: (n, t) => (t === 1 && (n === 'probe.test' || n === 'portal.test') ? [{ name: n, type: 'A', ttl: 60, data: '127.0.0.1' }] : null) });
  cd = await configDir();
  writeFileSync(
    cd.file,
    readFileSync(cd.file, 'utf8').replace(/^ {2}dns: \[127\.0\.0\.1:\d+\]$/m, `  dns: [127.0.0.1:${up.port}]`) + `portal: { probeUrl: "http://probe.test:${port}/generate_204", openFor: 1m }\n`,
  );
  os = fakeOs();
  d = createDaemon(os.deps, { configPath: cd.file });
});
afterEach(async () => {
  await d.stop('test end');
  await up.close();
  await new Promise<void>((r) => web.close(() => r()));
  cd.remove();
});

describe('createDaemon: captive portals', () => {
  it('probed by the breakout at start; `portal` opens a window in the kernel and detours its names; --close ends it', async () => {
    await d.start();
    await until(async () => (await d.handlers.status()).portal?.state === 'suspected', 10_000, 'the portal suspected');
    const s = await d.handlers.status();
    expect(s.portal!.url).toBe(`http://portal.test:${port}/login`);
    const sockets = os.deps.pathSockets as FakePathSockets;
    expect(sockets.opened.filter((o) => o.kind === 'tcp' && o.port === port).map((o) => o.mark)).toEqual(expect.arrayContaining([MARK_BREAKOUT]));
    expect(sockets.opened.filter((o) => o.kind === 'tcp' && o.port === port).every((o) => o.mark === MARK_BREAKOUT)).toBe(true);
    expect(up.asked).toEqual(expect.arrayContaining(['probe.test', 'portal.test']));

    // A tunnel name (the default) is not answered by the breakout's resolver before the window...
    const portalAsked = (): number => up.asked.filter((n) => n === 'portal.test').length;
    const before = portalAsked();
    await dig(cd.dnsPort, ['@127.0.0.1', 'portal.test', 'A']);
    expect(portalAsked()).toBe(before);

    const r = await d.handlers.portal!(false);
    expect(r.state).toBe('open');
    expect(r.window!.hosts.map((h) => h.name)).toEqual(['probe.test', 'portal.test']);
    expect(os.nft!.has('portal4', '127.0.0.1 . tcp . 80')).toBe(true);
    expect(os.nft!.has('portal4', '127.0.0.1 . tcp . 443')).toBe(true);
    expect(os.nft!.has('portal4', `127.0.0.1 . udp . ${up.port}`)).toBe(true);
    // ...and is while it is open.
    const opened = portalAsked();
    expect((await dig(cd.dnsPort, ['@127.0.0.1', 'portal.test', 'A'])).answer.map((a) => a.data)).toEqual(['127.0.0.1']);
    expect(portalAsked()).toBeGreaterThan(opened);

    const closed = await d.handlers.portal!(true);
    expect(closed.message).toBe('closed');
    expect(closed.state).toBe('suspected');
    expect(os.nft!.has('portal4', '127.0.0.1 . tcp . 80')).toBe(false);
    // Closed: a tunnel name again (with a gateway up, nothing probes after the close).
    const shut = portalAsked();
    await dig(cd.dnsPort, ['@127.0.0.1', 'portal.test', 'A']);
    expect(portalAsked()).toBe(shut);
  });
});
