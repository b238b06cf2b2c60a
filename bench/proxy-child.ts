// The splitwan side of `npm run bench -- proxy`, run as its own process (so
// its RSS and CPU are its own and the driver shares no event loop with it):
// TransparentProxy with the daemon's real kernel dependencies, in the network
// namespace the driver created and started it in, accepting and dialling the
// way the daemon does (the raw fd path, proxy/accept-linux.ts, unless
// SPLITWAN_PROXY_ACCEPT=node):
// - originalDst: SO_ORIGINAL_DST (on the raw fd: accept-linux.ts; on Node's
//   sockets: daemon/sockets-linux.ts), so connections arrive through the
//   driver's nft `redirect`, as in the daemon;
// - the dialer: the daemon's MarkedDialer (its markOf gives the raw path the
//   mark; over linuxPathSockets for the node path), so each dial is a
//   socket() + setsockopt(SO_MARK, 0x1000: the breakout's mark) before the
//   SYN; that mark is what keeps the proxy's own dials from being redirected
//   back to it;
// - policy: no rules, default [breakout], compiled by config/policy.ts;
//   pick: the first of the via list; a silent logger.
//
// argv[2]: JSON { host: string, port: number }
// IPC in:  { cmd: 'stats' | 'gc' | 'stop' }
// IPC out: { type: 'ready', port, accept, splicer } and { type: 'stats', ... } replies
// (--cpu-prof on this process's command line writes a profile at stop.)
import { compilePolicy } from '../config/policy.js';
import { silentLogger } from '../lib/logger.js';
import { MarkedDialer } from '../daemon/path-dialer.js';
import { linuxPathSockets, originalDst } from '../daemon/sockets-linux.js';
import { TransparentProxy } from '../proxy/server.js';

interface ChildArgs {
  host: string;
  port: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
const send = (m: object): void => void process.send?.(m);

const policy = compilePolicy({ rules: [], default: ['breakout'] }, new Map());
const dialer = new MarkedDialer(linuxPathSockets, () => ({ gateways: [], active: null }));
const proxy = new TransparentProxy(
  { policy: () => policy, pick: (via) => via[0]!, dialer, originalDst, logger: silentLogger },
  { peekTimeoutMs: 5000, idleTimeoutMs: 300_000 },
);
await proxy.listen([{ host: args.host, port: args.port }]);

function stats(): object {
  const m = process.memoryUsage();
  const t = proxy.traffic();
  return {
    type: 'stats',
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    proxy: { ...proxy.stats, paths: t },
  };
}

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await proxy.close();
  process.exit(0); // --cpu-prof writes its profile here
}

process.on('message', (m: { cmd?: string }) => {
  switch (m.cmd) {
    case 'stats':
      return send(stats());
    case 'gc':
      (globalThis as { gc?: () => void }).gc?.();
      return send(stats());
    case 'stop':
      return void stop();
  }
});
process.on('disconnect', () => void stop()); // the driver is gone: do not linger
process.on('SIGTERM', () => void stop());
send({ type: 'ready', port: proxy.addresses()[0]!.port, accept: proxy.acceptName, splicer: proxy.splicerName });
