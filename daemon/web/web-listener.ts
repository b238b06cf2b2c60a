// The dashboard (web:): started, moved or stopped by the config, like the
// metrics endpoint. Besides the check-time refusal of wildcard and public
// addresses (config/load.ts), an address of the breakout interface is
// refused here, where the interfaces are known: a router behind an ISP's
// modem has a private WAN address, and the dashboard must not listen there.
import { readFile } from 'node:fs/promises';
import type { Config } from '../../config/types.js';
import type { Clock, Logger } from '../../lib/logger.js';
import { formatIp, parseIp } from '../../lib/ip.js';
import type { ControlHandlers } from '../control/server.js';
import type { StatusReport } from '../control/protocol.js';
import type { IpAddrLink } from '../os-parse.js';
import { HealthHistory } from './history.js';
import { assetsDir, loadAssets, WebServer, type WebSettings } from './server.js';

const STATUS_REUSE_MS = 1000;

export interface WebListenerDeps {
  handlers: ControlHandlers;
  status: () => Promise<StatusReport>;
  /** The interfaces and their addresses, and the breakout's interface now. */
  links: () => Promise<IpAddrLink[]>;
  wan: () => string | null;
  clock: Clock;
  logger: Logger;
  /** Where the bundle is (default: dist/web-assets). */
  assets?: string;
}

export class WebListener {
  private server: WebServer | null = null;
  private key: string | null = null;
  private settings: WebSettings = { passwordHash: null, publicRead: false };
  private readonly history: HealthHistory;
  /** Where it listens now (the port the kernel chose for port 0). */
  address: { host: string; port: number } | null = null;

  private readonly handlers: ControlHandlers;

  constructor(private readonly d: WebListenerDeps) {
    // A status report reads the tunnels (ip, wg): one read a second serves every open page and the charts' sampler.
    let last: { at: number; report: Promise<StatusReport> } | null = null;
    const status = (): Promise<StatusReport> => {
      const now = d.clock.now();
      if (last === null || now - last.at >= STATUS_REUSE_MS) last = { at: now, report: d.status() };
      return last.report;
    };
    // A change is seen at once: the page reads the status back right after it.
    const changes = async <T>(fn: () => Promise<T> | T): Promise<T> => {
      try {
        return await fn();
      } finally {
        last = null;
      }
    };
    const h = d.handlers;
    this.handlers = {
      ...h,
      status,
      select: (g) => changes(() => h.select(g)),
      reload: (dryRun, file) => changes(() => h.reload(dryRun, file)),
      refreshLists: () => changes(() => h.refreshLists()),
    };
    this.history = new HealthHistory({ status, clock: d.clock, logger: d.logger });
  }

  /** Throws (SPLITWAN_WEB_LISTEN) for an address of the breakout interface, or when it cannot listen. */
  async serve(c: Config): Promise<void> {
    const w = c.web;
    this.settings = { passwordHash: w.passwordHash, publicRead: w.publicRead };
    const key = w.listen === null ? null : JSON.stringify([w.listen, w.tls]);
    if (w.listen !== null) await this.refuseWan(w.listen.host);
    if (key === this.key) return;
    await this.close();
    if (w.listen === null) return;
    const tls = w.tls === null ? null : { cert: await readFile(w.tls.cert, 'utf8'), key: await readFile(w.tls.key, 'utf8') };
    const server = new WebServer({
      handlers: this.handlers,
      history: this.history,
      settings: () => this.settings,
      assets: await loadAssets(this.d.assets ?? assetsDir()),
      clock: this.d.clock,
      logger: this.d.logger,
      tls,
    });
    this.address = await server.listen(w.listen.host, w.listen.port);
    this.server = server;
    this.key = key;
    this.history.start();
    const url = `${tls ? 'https' : 'http'}://${w.listen.host.includes(':') ? `[${w.listen.host}]` : w.listen.host}:${this.address.port}/`;
    this.d.logger.info({ url, publicRead: w.publicRead }, w.passwordHash === null ? 'dashboard listening, but no password is set (splitwan web passwd)' : 'dashboard listening');
  }

  private async refuseWan(host: string): Promise<void> {
    const wan = this.d.wan();
    if (wan === null) return;
    const want = formatIp(parseIp(host)!);
    const links = await this.d.links();
    const onWan = links.find((l) => l.ifname === wan)?.addresses.some((a) => {
      const ip = parseIp(a.local);
      return ip !== null && formatIp(ip) === want;
    });
    if (onWan) throw Object.assign(new Error(`web.listen ${host} is an address of the breakout interface ${wan}: the dashboard never listens where the WAN can reach it`), { code: 'SPLITWAN_WEB_LISTEN' });
  }

  async close(): Promise<void> {
    this.history.stop();
    const s = this.server;
    this.server = null;
    this.key = null;
    this.address = null;
    await s?.close();
  }
}
