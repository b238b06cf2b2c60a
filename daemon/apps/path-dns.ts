// The resolver of one pinned path (per-app split, issue 16): a pinned
// program's DNS (redirected by dataplane/app-rules.ts) is answered from its
// path's resolvers, whatever the rules say about the name, and nothing is
// tagged (the program's connections are routed by its cgroup, and a tag would
// move other programs' flows). A gateway or link that is down has no
// resolvers (SERVFAIL at once), as tunnel names get while the kill switch holds.
import { compilePolicy } from '../../config/policy.js';
import type { Config, PathName } from '../../config/types.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import { DnsCache } from '../../dns/cache.js';
import type { QueryLog } from '../../dns/query-log.js';
import { Resolver, type PathState, type Upstreams } from '../../dns/resolver.js';
import { DnsServer, type ListenAddress } from '../../dns/server.js';
import type { PathDns } from './app-pins.js';

export interface PathDnsOptions {
  path: PathName;
  config: () => Config;
  paths: PathState;
  healthy: (name: string) => boolean;
  upstreams: Upstreams;
  clock: Clock;
  logger: Logger;
  queryLog?: QueryLog | null;
}

/** Whether a path has no resolvers now: its gateway or link is down. */
export function pathDown(path: PathName, healthy: (name: string) => boolean): boolean {
  return (path.startsWith('gw:') && !healthy(path.slice(3))) || (path.startsWith('link:') && !healthy(path.slice(5)));
}

export async function startPathDns(o: PathDnsOptions): Promise<PathDns> {
  const c = o.config();
  const policy = compilePolicy({ rules: [], default: [o.path] }, new Map());
  const paths: PathState = { ...o.paths, upstreams: (p) => (pathDown(p, o.healthy) ? [] : o.paths.upstreams(p)) };
  const resolver = new Resolver({
    policy: () => policy,
    paths,
    upstreams: o.upstreams,
    tagger: null,
    cache: new DnsCache(c.dns.cache, o.clock),
    clock: o.clock,
    logger: o.logger,
    queryLog: o.queryLog ?? null,
    options: { tagTtlMs: c.dns.tagTtlMs, blockAnswer: c.dns.blockAnswer, minTtl: c.dns.cache.minTtl, maxTtl: c.dns.cache.maxTtl, negativeTtl: c.dns.cache.negativeTtl },
  });
  // Loopback only: what reaches it is this machine's (the nat rule sends pinned programs' DNS here).
  const make = (): DnsServer => new DnsServer({ handler: resolver, allows: () => true, logger: o.logger });
  const v4 = make();
  const bound4: ListenAddress[] = await v4.listen([{ host: '127.0.0.1', port: 0 }]);
  const v6 = make();
  // No ::1 (IPv6 off): that family's DNS from the program is refused instead.
  const bound6: ListenAddress[] = await v6.listen([{ host: '::1', port: 0 }]).catch(() => []);
  o.logger.info({ path: o.path, listen: [...bound4, ...bound6] }, 'a resolver for programs on their own path');
  return {
    v4: bound4[0]?.port ?? null,
    v6: bound6[0]?.port ?? null,
    close: async () => {
      await Promise.all([v4.close(), v6.close()]);
    },
  };
}
