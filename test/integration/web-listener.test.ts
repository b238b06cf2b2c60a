// The dashboard's listener (daemon/web/web-listener.ts): an address of the
// breakout interface is refused where the interfaces are known (check time
// cannot know them); a LAN or loopback address is served, and a reload
// that clears web.listen closes it.
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { silentLogger, systemClock } from '../../lib/logger.js';
import type { Config } from '../../config/types.js';
import type { ControlHandlers } from '../../daemon/control/server.js';
import type { StatusReport } from '../../daemon/control/protocol.js';
import { WebListener } from '../../daemon/web/web-listener.js';

const web = (listen: { host: string; port: number } | null): Config => ({ web: { listen, passwordHash: null, publicRead: false, tls: null } }) as unknown as Config;
const links = async () => [
  { ifname: 'wan0', addresses: [{ family: 4 as const, local: '192.168.0.20', prefixlen: 24, scope: 'global', cidr: '192.168.0.20/24' }] },
  { ifname: 'lo', addresses: [{ family: 4 as const, local: '127.0.0.1', prefixlen: 8, scope: 'host', cidr: '127.0.0.1/8' }] },
];

function listener(): WebListener {
  return new WebListener({ handlers: {} as ControlHandlers, status: async () => ({}) as StatusReport, links, wan: () => 'wan0', clock: systemClock, logger: silentLogger });
}

const get = (port: number): Promise<number> =>
  new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (r) => (r.resume(), resolve(r.statusCode ?? 0))).on('error', reject));

describe('WebListener', () => {
  it('refuses an address of the breakout interface (SPLITWAN_WEB_LISTEN), even a private one', async () => {
    const l = listener();
    await expect(l.serve(web({ host: '192.168.0.20', port: 0 }))).rejects.toMatchObject({ code: 'SPLITWAN_WEB_LISTEN', message: expect.stringContaining('breakout interface wan0') });
    expect(l.address).toBeNull();
  });

  it('serves on loopback and closes when a reload clears web.listen', async () => {
    const l = listener();
    try {
      await l.serve(web({ host: '127.0.0.1', port: 0 }));
      const port = l.address!.port;
      expect(await get(port)).toBe(200);
      await l.serve(web(null));
      expect(l.address).toBeNull();
      await expect(get(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    } finally {
      await l.close();
    }
  });
});
