// A Router for unit tests of the daemon's logic: it models the kernel state a
// plan produces (the rendered ruleset, rules, routes, the active path) rather
// than recording commands, and lets a test break that state the way an admin
// or another tool might.
import { activeElements, renderIpRules, renderRoutes, renderRuleset, type DataplanePlan, type IpRuleSpec, type RouteSpec } from './plan.js';
import type { Router } from './router-linux.js';

export interface FakeKernelState {
  ruleset: string | null;
  rules: IpRuleSpec[];
  routes: RouteSpec[];
  /** The `active` map's content, e.g. "0x1f00 : 0x1100"; '' is the kill switch. */
  active: string;
  forwarding: boolean;
}

export class FakeRouter implements Router {
  readonly state: FakeKernelState = { ruleset: null, rules: [], routes: [], active: '', forwarding: false };
  private plan: DataplanePlan | null = null;
  /** How many times set() changed something. */
  changes = 0;

  async set(plan: DataplanePlan): Promise<boolean> {
    const next = this.render(plan);
    const same = JSON.stringify(next) === JSON.stringify(this.state);
    this.plan = plan;
    if (same) return false;
    Object.assign(this.state, next);
    this.changes++;
    return true;
  }

  async setActive(active: string | null): Promise<void> {
    if (!this.plan) throw new Error('setActive before set');
    this.plan = { ...this.plan, active };
    this.state.active = activeElements(this.plan);
    // The tunnel path's table follows the active gateway (as LinuxRouter's route replace does).
    this.state.routes = renderRoutes(this.plan);
  }

  async reconcile(): Promise<string[]> {
    if (!this.plan) return [];
    const want = this.render(this.plan);
    const repaired: string[] = [];
    if (this.state.ruleset !== want.ruleset) repaired.push('nft table');
    else if (this.state.active !== want.active) repaired.push('nft active');
    if (JSON.stringify(this.state.rules) !== JSON.stringify(want.rules)) repaired.push('ip rules');
    if (JSON.stringify(this.state.routes) !== JSON.stringify(want.routes)) repaired.push('routes');
    Object.assign(this.state, want);
    return repaired;
  }

  async cleanup(): Promise<void> {
    Object.assign(this.state, { ruleset: null, rules: [], routes: [], active: '' });
    this.plan = null;
  }

  /** What an admin running `nft delete table inet splitwan` does. */
  deleteTable(): void {
    this.state.ruleset = null;
    this.state.active = '';
  }

  private render(plan: DataplanePlan): FakeKernelState {
    return {
      ruleset: renderRuleset(plan),
      rules: renderIpRules(plan),
      routes: renderRoutes(plan),
      active: activeElements(plan),
      forwarding: plan.mode === 'router' || this.state.forwarding,
    };
  }
}
