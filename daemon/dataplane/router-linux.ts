// Applies a DataplanePlan to the kernel: the nft ruleset in one transaction,
// ip rules and routes by difference, forwarding sysctls. `set()` with the
// same plan twice runs nothing the second time; `reconcile()` notices a table,
// rule or route someone removed and puts it back; `cleanup()` needs no state:
// it finds splitwan's table, rule priorities and tables by their fixed
// numbers, so it also works after a crash.
import type { Logger } from '../../lib/logger.js';
import type { Runner } from '../exec-linux.js';
import { parseIpRoutes, parseIpRules, parseNftSets, parseNftTable, type IpRoute, type IpRule, type NftTableState } from '../os-parse.js';
import type { NftExec } from './nft-session-linux.js';
import { PORT_PATH_WINDOW, reservedPortsWith } from './port-paths.js';
import {
  activeElements,
  ipRuleSelector,
  renderActiveFlip,
  renderIpRules,
  renderLinkFlip,
  renderRoutes,
  renderRuleset,
  RULE_PRIORITY_FIRST,
  RULE_PRIORITY_LAST,
  TABLE_NAME,
  TABLE_TUNNEL,
  TABLE_BREAKOUT,
  MAX_GATEWAYS,
  MAX_LINKS,
  tunnelPathDevice,
  type DataplanePlan,
  type IpRuleSpec,
  type RouteSpec,
} from './plan.js';

/** What the daemon needs from the kernel's routing, as a desired-state interface. */
export interface Router {
  /** Makes the kernel match `plan`; a no-op when it already does. Returns whether anything ran. */
  set(plan: DataplanePlan): Promise<boolean>;
  /** Points the tunnel path at `active` (failover, kill switch, recovery): one small transaction. */
  setActive(active: string | null): Promise<void>;
  /** Moves breakout to the plan's links at once (pick_link, table 1200): a link failover before the re-plan. */
  setLinks?(plan: DataplanePlan): Promise<void>;
  /** Re-checks the kernel against the last plan and repairs what was removed; returns what it repaired. */
  reconcile(): Promise<string[]>;
  /** Removes everything splitwan installed (table, rules, routes). */
  cleanup(): Promise<void>;
}

const OUR_TABLES = [...Array.from({ length: MAX_GATEWAYS + 1 }, (_, i) => String(TABLE_TUNNEL + i)), ...Array.from({ length: MAX_LINKS + 1 }, (_, i) => String(TABLE_BREAKOUT + i))];

interface KernelState {
  table: NftTableState | null;
  /** Elements of the `active` map; null when not read (or no table). */
  activeElements: number | null;
  /** Our ip rules (priorities 5000-5099) and the default routes of our tables, per family. */
  rules: Record<4 | 6, IpRule[]>;
  routes: Record<4 | 6, IpRoute[]>;
}

function ruleKey(r: { priority: number; fwmark?: number; fwmask?: number; src?: string; iif?: string; table?: string; action: string; suppressPrefixLength?: number; sport?: string }): string {
  return [r.priority, r.fwmark ?? '', r.fwmask ?? '', r.src ?? '', r.iif ?? '', r.action === 'lookup' ? (r.table ?? '') : r.action, r.suppressPrefixLength ?? '', r.sport ?? ''].join('/');
}

function routeKey(r: { table: number | string; type: string; dev?: string; via?: string; metric?: number }): string {
  return [String(r.table), r.type, r.dev ?? '', r.metric ?? '', r.via ?? ''].join('/');
}

function ruleArgs(r: IpRuleSpec): string[] {
  return ['rule', 'add', 'pref', String(r.priority), ...ipRuleSelector(r)];
}

function routeArgs(r: RouteSpec): string[] {
  const dst = r.family === 4 ? '0.0.0.0/0' : '::/0';
  const a = ['route', 'replace'];
  if (r.type === 'prohibit') a.push('prohibit', dst);
  else a.push(dst, ...(r.via !== undefined ? ['via', r.via] : []), 'dev', r.dev!);
  a.push('table', String(r.table));
  if (r.metric !== undefined) a.push('metric', String(r.metric));
  return a;
}

export class LinuxRouter implements Router {
  private applied: { plan: DataplanePlan; ruleset: string } | null = null;

  /** What the `active` map holds now, as far as we know; null: unknown (table new or re-created). */
  private active: string | null | undefined = undefined;

  /**
   * The desired state (desiredKey) the last whole set() installed, while only
   * set() has changed our state since (a flip, a link move, a repair in
   * progress or a failed step clear it): the same plan again then reads
   * nothing. Every gateway's change of health re-plans, mostly to the same
   * plan, and each read was 6 processes (issue 17: a router's CPU). What
   * someone else removes meanwhile is reconcile()'s to put back (the damage
   * watch's events, its backstop timer).
   */
  private installed: string | null = null;

  /** rp_filter of WAN links as it was before we made it loose (restored by cleanup). */
  private readonly rpFilter = new Map<string, string>();

  /** ip_local_reserved_ports before we reserved the port paths' window (restored by cleanup); null: not changed. */
  private reservedBefore: string | null = null;

  constructor(
    private readonly run: Runner,
    private readonly nft: NftExec,
    private readonly logger: Logger,
  ) {}

  async set(plan: DataplanePlan): Promise<boolean> {
    const key = desiredKey(plan);
    if (this.applied && this.installed === key) {
      this.applied = { plan, ruleset: this.applied.ruleset };
      return false;
    }
    this.installed = null;
    const k = await this.readKernel();
    const current = k.table;
    const ruleset = renderRuleset(plan, current ? { chains: current.chains.map((c) => c.name), sets: current.sets.map((s) => s.name) } : undefined);
    const rules = this.ruleChanges(plan, k);
    const routes = this.routeChanges(plan, k);
    const nftWork = async (): Promise<boolean> => {
      let ran = false;
      if (!current || !this.applied || this.applied.ruleset !== ruleset || this.missingObjects(plan, current).length > 0) {
        await this.run.run(['nft', '-f', '-'], { input: ruleset });
        ran = true;
        if (!current) this.active = undefined;
      }
      if (this.active !== plan.active) {
        await this.nft.exec(renderActiveFlip(plan));
        this.active = plan.active;
        ran = true;
      }
      return ran;
    };
    // nftables, ip rules and routes are independent: one after the other only within each.
    const done = await Promise.all([nftWork(), this.writeRules(rules), this.writeRoutes(routes), plan.mode === 'router' ? this.sysctls() : Promise.resolve(false), this.looseLinks(plan), plan.portPaths ? this.reservePortPaths() : Promise.resolve(false)]);
    const ran = done.some(Boolean);
    this.applied = { plan, ruleset };
    this.installed = key;
    if (ran) this.logger.debug({ rules: plan.rules.length, active: plan.active }, 'data plane applied');
    return ran;
  }

  async setActive(active: string | null): Promise<void> {
    if (!this.applied) throw new Error('setActive before set');
    // The whole plan was in and this flip goes through: the flipped plan is in (the re-plan that
    // follows a failover reads nothing then: issue 17).
    const whole = this.installed !== null && this.installed === desiredKey(this.applied.plan);
    this.installed = null;
    const plan = { ...this.applied.plan, active };
    const before = tunnelPathDevice(this.applied.plan);
    // nftables first: it steers every marked packet, so the flip is done here.
    await this.nft.exec(renderActiveFlip(plan));
    this.applied = { plan, ruleset: this.applied.ruleset };
    this.active = active;
    // Then the tunnel path's table (unmarked traffic, the kernel's own packets from a tunnel address).
    const dev = tunnelPathDevice(plan);
    let routed = true;
    if (dev !== null && dev !== before) {
      const batch = [4, 6].map((f) => routeArgs({ family: f as 4 | 6, table: TABLE_TUNNEL, type: 'unicast', dev }).join(' '));
      // -force: a missing link must not stop the other family; the repair puts it back with the link.
      routed = (await this.run.run(['ip', '-force', '-batch', '-'], { input: batch.join('\n') + '\n', allowFail: true })).code === 0;
    }
    if (whole && routed) this.installed = desiredKey(plan);
  }

  async setLinks(plan: DataplanePlan): Promise<void> {
    if (!this.applied || !plan.links?.length || !this.applied.plan.links?.length) return;
    this.installed = null;
    // nftables first, on the session: new flows take the new link from here on.
    await this.nft.exec(renderLinkFlip(plan));
    // Then table 1200 (splitwan's own breakout sockets, WireGuard's UDP).
    const routes = renderRoutes(plan).filter((r) => r.table === TABLE_BREAKOUT && r.type === 'unicast');
    await Promise.all(
      ([4, 6] as const).map((f) => {
        const lines = routes.filter((r) => r.family === f).map((r) => routeArgs(r).join(' '));
        // -force: a link that is gone must not stop the other family; the re-plan follows anyway.
        return lines.length ? this.run.run(['ip', `-${f}`, '-force', '-batch', '-'], { input: lines.join('\n') + '\n', allowFail: true }) : null;
      }),
    );
  }

  async reconcile(): Promise<string[]> {
    if (!this.applied) return [];
    const plan = this.applied.plan;
    // Back to what it was only when the repair went through (then the kernel is `plan` again).
    const installed = this.installed;
    this.installed = null;
    // Every read at once: a repair's time is the time the kernel runs without our state.
    const k = await this.readKernel(true);
    const current = k.table;
    const missing = current ? this.missingObjects(plan, current) : ['table'];
    const nftWork = async (): Promise<string[]> => {
      const done: string[] = [];
      if (missing.length) {
        await this.run.run(['nft', '-f', '-'], { input: renderRuleset(plan, current ? { chains: current.chains.map((c) => c.name), sets: current.sets.map((s) => s.name) } : undefined) });
        done.push(...missing.map((m) => `nft ${m}`));
      }
      // A re-created table has an empty `active` map: put the default path back.
      const activeNow = k.activeElements ?? 0;
      if (!current || (activeNow === 0) !== (activeElements(plan) === '')) {
        await this.nft.exec(renderActiveFlip(plan));
        this.active = plan.active;
        if (current) done.push('nft active');
      }
      return done;
    };
    const [nftDone, rules, routes] = await Promise.all([nftWork(), this.writeRules(this.ruleChanges(plan, k)), this.writeRoutes(this.routeChanges(plan, k)), this.looseLinks(plan)]);
    const repaired = [...nftDone, ...(rules ? ['ip rules'] : []), ...(routes ? ['routes'] : [])];
    if (repaired.length) this.logger.warn({ repaired }, 'repaired routing state someone removed');
    this.installed = installed;
    return repaired;
  }

  async cleanup(): Promise<void> {
    await this.run.run(['nft', 'delete', 'table', 'inet', TABLE_NAME], { allowFail: true });
    // One `ip -batch` a family: a command each for every rule and table was ~50
    // processes at every start and stop (issue 17: seconds on a router's core).
    // -force: a line that fails (a table with nothing to flush) does not stop the rest.
    await Promise.all(
      ([4, 6] as const).map(async (family) => {
        const rules = parseIpRules((await this.run.run(['ip', '-j', `-${family}`, 'rule', 'show'])).stdout, family);
        const lines = [
          ...rules.filter((r) => r.priority >= RULE_PRIORITY_FIRST && r.priority <= RULE_PRIORITY_LAST).map((r) => `rule del pref ${r.priority}`),
          ...OUR_TABLES.map((t) => `route flush table ${t}`),
        ];
        await this.run.run(['ip', `-${family}`, '-force', '-batch', '-'], { input: lines.join('\n') + '\n', allowFail: true });
      }),
    );
    // What we changed of the links' reverse-path filter goes back (after a crash the value is lost: loose stays).
    for (const [ifname, value] of this.rpFilter) await this.run.run(['sysctl', '-q', '-w', `${rpFilterKey(ifname)}=${value}`], { allowFail: true });
    this.rpFilter.clear();
    // After a crash the value before is lost: the reservation stays (it only keeps the kernel's own port picks out of the window).
    if (this.reservedBefore !== null) await this.run.run(['sysctl', '-q', '-w', `${RESERVED_PORTS}=${this.reservedBefore}`], { allowFail: true });
    this.reservedBefore = null;
    this.applied = null;
    this.installed = null;
    this.active = undefined;
  }

  /**
   * What the kernel holds of ours, read all at once: the table (terse: a
   * tag set may hold 100k addresses, not needed here), with `activeMap` the
   * `active` map's element count, our ip rules and the default routes of our
   * tables, per family.
   */
  private async readKernel(activeMap = false): Promise<KernelState> {
    const ok = { allowFail: true } as const;
    const [t, m, r4, r6, rt4, rt6] = await Promise.all([
      this.run.run(['nft', '-j', '-t', 'list', 'table', 'inet', TABLE_NAME], ok),
      activeMap ? this.run.run(['nft', '-j', 'list', 'map', 'inet', TABLE_NAME, 'active'], ok) : null,
      this.run.run(['ip', '-j', '-4', 'rule', 'show']),
      this.run.run(['ip', '-j', '-6', 'rule', 'show']),
      this.run.run(['ip', '-j', '-4', 'route', 'show', 'table', 'all']),
      this.run.run(['ip', '-j', '-6', 'route', 'show', 'table', 'all']),
    ]);
    const ours = (r: IpRule) => r.priority >= RULE_PRIORITY_FIRST && r.priority <= RULE_PRIORITY_LAST;
    const defaults = (routes: IpRoute[]) => routes.filter((r) => OUR_TABLES.includes(r.table) && r.dst === 'default');
    return {
      table: t.code === 0 ? parseNftTable(t.stdout) : null,
      activeElements: m && m.code === 0 ? (parseNftSets(m.stdout).find((x) => x.name === 'active')?.elements.length ?? 0) : null,
      rules: { 4: parseIpRules(r4.stdout, 4).filter(ours), 6: parseIpRules(r6.stdout, 6).filter(ours) },
      routes: { 4: defaults(parseIpRoutes(rt4.stdout)), 6: defaults(parseIpRoutes(rt6.stdout)) },
    };
  }

  /** Chains and sets the plan needs that the kernel's table lacks. */
  private missingObjects(plan: DataplanePlan, current: NftTableState): string[] {
    const have = new Set([...current.chains.map((c) => `chain ${c.name}`), ...current.sets.map((s) => `set ${s.name}`)]);
    const want: string[] = [];
    const text = renderRuleset(plan);
    for (const m of text.matchAll(/^\t(chain|set|map) (\S+) /gm)) want.push(`${m[1] === 'map' ? 'set' : m[1]} ${m[2]}`);
    const missing = want.filter((w) => !have.has(w));
    // A flushed chain (rules deleted by hand) is as broken as a missing one.
    for (const c of current.chains) if (c.rules === 0 && want.includes(`chain ${c.name}`) && c.name !== 'reject_flow') missing.push(`rules of ${c.name}`);
    return missing;
  }

  /** `ip -batch` lines per family that make our rules the plan's. */
  private ruleChanges(plan: DataplanePlan, k: KernelState): Record<4 | 6, string[]> {
    const out: Record<4 | 6, string[]> = { 4: [], 6: [] };
    for (const family of [4, 6] as const) {
      const want = renderIpRules(plan).filter((r) => r.family === family);
      const have = k.rules[family];
      const wantKeys = new Set(want.map(ruleKey));
      const haveKeys = new Set(have.map(ruleKey));
      // By priority and selector: a port-path rule shares its mark rule's priority (port-paths.ts).
      for (const r of have) if (!wantKeys.has(ruleKey(r))) out[family].push(`rule del pref ${r.priority}${r.action === 'lookup' || r.action === 'prohibit' ? ` ${ipRuleSelector(r as IpRuleSpec).join(' ')}` : ''}`);
      for (const r of want) if (!haveKeys.has(ruleKey(r))) out[family].push(ruleArgs(r).join(' '));
    }
    return out;
  }

  private async writeRules(batches: Record<4 | 6, string[]>): Promise<boolean> {
    const runs = ([4, 6] as const).filter((f) => batches[f].length).map((f) => this.run.run(['ip', `-${f}`, '-batch', '-'], { input: batches[f].join('\n') + '\n' }));
    await Promise.all(runs);
    return runs.length > 0;
  }

  /** `ip -batch` lines per family that make the default routes of our tables the plan's. */
  private routeChanges(plan: DataplanePlan, k: KernelState): Record<4 | 6, string[]> {
    const out: Record<4 | 6, string[]> = { 4: [], 6: [] };
    const keyOf = (r: IpRoute) => routeKey({ table: r.table, type: r.type, dev: r.type === 'unicast' ? r.dev : undefined, via: r.type === 'unicast' ? r.gateway : undefined, metric: r.type === 'prohibit' ? r.metric : undefined });
    for (const family of [4, 6] as const) {
      const want = renderRoutes(plan).filter((r) => r.family === family);
      const have = k.routes[family];
      const haveKeys = new Set(have.map(keyOf));
      const wantKeys = new Set(want.map(routeKey));
      for (const r of have) {
        // Named by type, device and metric: a bare `route del` may take the prohibit backstop instead.
        if (!wantKeys.has(keyOf(r))) out[family].push(`route del ${r.type === 'prohibit' ? 'prohibit ' : ''}${family === 4 ? '0.0.0.0/0' : '::/0'}${r.type === 'unicast' && r.gateway ? ` via ${r.gateway}` : ''}${r.type === 'unicast' && r.dev ? ` dev ${r.dev}` : ''} table ${r.table}${r.metric !== undefined ? ` metric ${r.metric}` : ''}`);
      }
      for (const r of want) if (!haveKeys.has(routeKey(r))) out[family].push(routeArgs(r).join(' '));
    }
    return out;
  }

  private async writeRoutes(batches: Record<4 | 6, string[]>): Promise<boolean> {
    // -force: a route whose device is gone must not stop the others.
    const runs = ([4, 6] as const).filter((f) => batches[f].length).map((f) => this.run.run(['ip', `-${f}`, '-force', '-batch', '-'], { input: batches[f].join('\n') + '\n', allowFail: true }));
    await Promise.all(runs);
    return runs.length > 0;
  }

  /**
   * Several links: reverse-path filtering loose on each (2), so a reply that
   * comes in on a link other than main's default route is not dropped (strict
   * checks the source against main). The value before is kept for cleanup.
   */
  private async looseLinks(plan: DataplanePlan): Promise<boolean> {
    let ran = false;
    // Links, and other programs' tunnel interfaces: their addresses are not in our `from` rules, so
    // under strict filtering their answers would be dropped. An interface made again starts strict:
    // read each time (the value before is kept from the first read).
    const ifnames = [...(plan.links ?? []).map((l) => l.ifname), ...plan.gateways.filter((g) => g.unmanaged === 'interface').map((g) => g.ifname)];
    for (const ifname of ifnames) {
      const key = rpFilterKey(ifname);
      const r = await this.run.run(['sysctl', '-n', key], { allowFail: true });
      // An interface that does not exist (yet): the next apply or repair sets it.
      if (r.code !== 0) continue;
      const cur = r.stdout.trim();
      if (!this.rpFilter.has(ifname)) this.rpFilter.set(ifname, cur);
      if (cur === '2') continue;
      await this.run.run(['sysctl', '-q', '-w', `${key}=2`], { allowFail: true });
      ran = true;
    }
    return ran;
  }

  /**
   * Source-port paths (port-paths.ts): the kernel must never pick one of
   * their ports for another socket (an unmarked socket from such a port
   * would take that path: a tunnel-bound flow out of the WAN). Above the
   * default ephemeral range already; reserved too, for a machine whose range
   * was widened. Per network namespace.
   */
  private async reservePortPaths(): Promise<boolean> {
    const r = await this.run.run(['sysctl', '-n', RESERVED_PORTS], { allowFail: true });
    const cur = r.stdout.trim();
    const next = r.code === 0 ? reservedPortsWith(cur, PORT_PATH_WINDOW) : cur;
    if (next === null) return false;
    const w = r.code === 0 ? await this.run.run(['sysctl', '-q', '-w', `${RESERVED_PORTS}=${next}`], { allowFail: true }) : r;
    // Not fatal (a container may forbid it): the window is outside the default ephemeral range.
    if (w.code !== 0) {
      this.logger.warn({ sysctl: RESERVED_PORTS, ports: `${PORT_PATH_WINDOW.first}-${PORT_PATH_WINDOW.last}`, error: w.stderr.trim() }, 'cannot reserve the source-port paths\' ports: a socket the kernel gives one of them takes that path');
      return false;
    }
    this.reservedBefore ??= cur;
    return true;
  }

  /**
   * Router mode forwards; src_valid_mark lets rp_filter see our marks (as
   * wg-quick does). Read with one `sysctl` (every apply does: one process,
   * not three) and written only when one differs.
   */
  private async sysctls(): Promise<boolean> {
    const want = ROUTER_SYSCTLS;
    const r = await this.run.run(['sysctl', '-n', ...want.map(([k]) => k)], { allowFail: true });
    const cur = r.stdout.split('\n').map((l) => l.trim());
    const wrong = want.filter(([, v], i) => r.code !== 0 || cur[i] !== v);
    if (wrong.length === 0) return false;
    await this.run.run(['sysctl', '-q', '-w', ...wrong.map(([k, v]) => `${k}=${v}`)]);
    return true;
  }
}

/** Everything set() makes of a plan: equal keys, equal kernel state. */
function desiredKey(plan: DataplanePlan): string {
  const loose = [...(plan.links ?? []).map((l) => l.ifname), ...plan.gateways.filter((g) => g.unmanaged === 'interface').map((g) => g.ifname)];
  return JSON.stringify([plan.mode, plan.active, renderRuleset(plan), renderIpRules(plan), renderRoutes(plan), loose]);
}

const ROUTER_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.ipv4.ip_forward', '1'],
  ['net.ipv6.conf.all.forwarding', '1'],
  ['net.ipv4.conf.all.src_valid_mark', '1'],
];

/** IPv4's name, for both families. */
const RESERVED_PORTS = 'net.ipv4.ip_local_reserved_ports';

/** An interface's IPv4 rp_filter, by path (a VLAN's name has a dot: wan0.10). */
function rpFilterKey(ifname: string): string {
  return `net/ipv4/conf/${ifname}/rp_filter`;
}
