// `splitwan reload --dry-run`: what a new file would change, in words, before
// anything is applied. Pure: two loaded configs (and the routing each would
// install) in, lines out. Private keys are never printed, only that they changed.
import type { LoadedConfig } from '../../config/load.js';
import { targetLabel } from '../../config/policy.js';
import type { Config, GatewayConfig, RuleConfig } from '../../config/types.js';
import { ipRuleSelector, planDataplane, renderIpRules, renderRoutes, ruleId } from '../dataplane/plan.js';

const SECTIONS = ['mode', 'lan', 'breakout', 'dns', 'health', 'proxy', 'control', 'metrics', 'log', 'stateDir', 'default'] as const;

function show(v: unknown): string {
  if (v === undefined) return '(unset)';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** Leaf differences between two plain values, as `key.path: old → new`. */
function leafDiff(path: string, a: unknown, b: unknown, out: string[]): void {
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObj(a) && isObj(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) leafDiff(path ? `${path}.${k}` : k, a[k], b[k], out);
    return;
  }
  out.push(`${path}: ${show(a)} → ${show(b)}`);
}

function ruleText(r: RuleConfig): string {
  return `${r.label} via ${r.via.map(targetLabel).join(', ')}`;
}

function gatewayView(g: GatewayConfig): Record<string, unknown> {
  const peer = g.wireguard.peers[0];
  return {
    priority: g.priority,
    ifname: g.ifname,
    addresses: g.wireguard.addresses,
    mtu: g.wireguard.mtu,
    dns: g.dns.map((u) => u.text),
    endpoint: peer?.endpoint ? `${peer.endpoint.host}:${peer.endpoint.port}` : undefined,
    publicKey: peer?.publicKey,
    allowedIPs: peer?.allowedIPs,
    probe: g.probe,
  };
}

function planOf(c: LoadedConfig) {
  return planDataplane({
    config: c.config,
    listCidrs: new Map([...c.lists].map(([n, l]) => [n, Array.from(l.cidrs, (x) => x.cidr)])),
    wan: 'wan',
    active: c.config.tunnel.gateways[0]?.name ?? null,
    healthy: () => true,
    dnsPort: 53,
  });
}

export function diffConfigs(prev: LoadedConfig, next: LoadedConfig): string[] {
  const out: string[] = [];
  const p: Config = prev.config;
  const n: Config = next.config;

  for (const s of SECTIONS) {
    const lines: string[] = [];
    leafDiff(s, p[s], n[s], lines);
    out.push(...lines);
  }

  // Rules, by identity (what they match), so an edit elsewhere does not read as "every rule changed".
  const pIds = p.rules.map(ruleId);
  const nIds = n.rules.map(ruleId);
  for (const [i, r] of n.rules.entries()) {
    const was = pIds.indexOf(nIds[i]!);
    if (was < 0) out.push(`rule #${i} added: ${ruleText(r)}`);
    else {
      const old = p.rules[was]!;
      if (old.via.join() !== r.via.join()) out.push(`rule #${i} (${r.label}): via ${old.via.map(targetLabel).join(', ')} → ${r.via.map(targetLabel).join(', ')}`);
      if (was !== i) out.push(`rule ${r.label}: moved from #${was} to #${i} (rules match in order)`);
    }
  }
  for (const [i, r] of p.rules.entries()) if (!nIds.includes(pIds[i]!)) out.push(`rule #${i} removed: ${ruleText(r)}`);

  // Lists: source and size.
  const names = [...new Set([...prev.lists.keys(), ...next.lists.keys(), ...p.lists.map((l) => l.name), ...n.lists.map((l) => l.name)])].sort();
  for (const name of names) {
    const a = p.lists.find((l) => l.name === name);
    const b = n.lists.find((l) => l.name === name);
    if (!a && b) out.push(`list ${name} added (${b.url ?? b.file})`);
    else if (a && !b) out.push(`list ${name} removed`);
    else if (a && b) {
      if ((a.url ?? a.file) !== (b.url ?? b.file)) out.push(`list ${name}: source ${a.url ?? a.file} → ${b.url ?? b.file}`);
      const la = prev.lists.get(name);
      const lb = next.lists.get(name);
      const size = (l: typeof la) => (l ? l.domains.length + l.cidrs.length : 0);
      if (la && lb && size(la) !== size(lb)) out.push(`list ${name}: ${size(la)} → ${size(lb)} entries`);
    }
  }

  // Gateways.
  for (const g of n.tunnel.gateways) {
    const old = p.tunnel.gateways.find((x) => x.name === g.name);
    if (!old) {
      out.push(`gateway ${g.name} added (${show(gatewayView(g).endpoint)}, priority ${g.priority})`);
      continue;
    }
    const lines: string[] = [];
    leafDiff(`gateway ${g.name}`, gatewayView(old), gatewayView(g), lines);
    out.push(...lines);
    if (old.wireguard.privateKey !== g.wireguard.privateKey) out.push(`gateway ${g.name}: private key changed`);
    if (old.wireguard.peers[0]?.presharedKey !== g.wireguard.peers[0]?.presharedKey) out.push(`gateway ${g.name}: preshared key changed`);
  }
  for (const g of p.tunnel.gateways) if (!n.tunnel.gateways.some((x) => x.name === g.name)) out.push(`gateway ${g.name} removed (its tunnel goes down)`);
  if (p.tunnel.killSwitch !== n.tunnel.killSwitch) out.push(`tunnel.killSwitch: ${p.tunnel.killSwitch} → ${n.tunnel.killSwitch}`);
  if (p.tunnel.allowLan !== n.tunnel.allowLan) out.push(`tunnel.allowLan: ${p.tunnel.allowLan} → ${n.tunnel.allowLan}`);

  // Routing the kernel would get: ip rules and per-gateway tables.
  const pp = planOf(prev);
  const np = planOf(next);
  const rules = (x: ReturnType<typeof planOf>) =>
    renderIpRules(x).map((r) => `ip${r.family === 6 ? ' -6' : ''} rule pref ${r.priority} ${ipRuleSelector(r).join(' ')}`);
  const routes = (x: ReturnType<typeof planOf>) => renderRoutes(x).map((r) => `ip${r.family === 6 ? ' -6' : ''} route table ${r.table} ${r.type === 'prohibit' ? 'prohibit default' : `default dev ${r.dev}`}`);
  for (const [what, a, b] of [['ip rule', rules(pp), rules(np)], ['route', routes(pp), routes(np)]] as const) {
    for (const x of b) if (!a.includes(x)) out.push(`${what} added: ${x}`);
    for (const x of a) if (!b.includes(x)) out.push(`${what} removed: ${x}`);
  }
  return out;
}
