// A rule's matchers beyond its destinations, as `explain` and `check` say
// them: "for tcp 443", "from devices kids-tablet", "when mon-fri
// 08:00-17:00 (Europe/Berlin): on now". Pure.
import { portsText, scheduleText } from '../config/rule-matchers.js';
import type { RuleConfig } from '../config/types.js';
import { scheduleActive } from './rule-scheduler.js';

/** `wallMs`: judge the schedule at that time; absent: say it without its state. */
export function ruleConditions(rule: RuleConfig, wallMs?: number): string[] {
  const out: string[] = [];
  if (rule.ports?.length || rule.protocol) out.push(`for ${rule.protocol ?? 'tcp and udp'}${rule.ports?.length ? ` port${rule.ports.length > 1 || rule.ports[0]!.from !== rule.ports[0]!.to ? 's' : ''} ${portsText(rule.ports)}` : ''}`);
  if (rule.devices?.length) out.push(`from device${rule.devices.length > 1 ? 's' : ''} ${rule.devices.map((d) => d.device).join(', ')} (by MAC address, in the kernel)`);
  if (rule.when) {
    const state = wallMs === undefined ? '' : scheduleActive(rule.when, wallMs) ? ': on now' : ': off now';
    out.push(`when ${scheduleText(rule.when)}${state}${rule.reroute ? ' (running flows move at each boundary)' : ''}`);
  }
  return out;
}
