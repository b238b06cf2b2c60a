// The host-mode config the laptop benches (roam, resume, portal) run splitwan
// with in the lab: both lab gateways from their wg-quick files, everything to
// the tunnel by default. Writes the files (0600) and returns the config's path.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../lab/lab.js';

export function writeHostConfig(lab: Lab, dir: string, o: { gateways: readonly [string, string]; breakoutInterface: string; health: string; extra?: readonly string[] }): string {
  writeFileSync(join(dir, 'gw1.conf'), lab.gateways[0].configText, { mode: 0o600 });
  writeFileSync(join(dir, 'gw2.conf'), lab.gateways[1].configText, { mode: 0o600 });
  const cfg = join(dir, 'config.yaml');
  const lines = [
    'mode: host',
    `breakout: { interface: ${o.breakoutInterface}, dns: [${lab.addr.ispResolver.v4}] }`,
    'tunnel:',
    '  gateways:',
    `    - { name: ${o.gateways[0]}, config: gw1.conf, priority: 1 }`,
    `    - { name: ${o.gateways[1]}, config: gw2.conf, priority: 2 }`,
    `stateDir: ${join(dir, 'state')}`,
    `control: { socket: ${join(dir, 'control.sock')} }`,
    `health: ${o.health}`,
    ...(o.extra ?? []),
    'rules: []',
    'default: tunnel',
    '',
  ];
  writeFileSync(cfg, lines.join('\n'), { mode: 0o600 });
  return cfg;
}
