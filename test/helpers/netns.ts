// Interfaces for kernel tests in a namespace of their own. This kernel has no
// dummy driver: veth pairs with both ends inside the namespace stand in.
import { execFileSync } from 'node:child_process';

/** Adds each named interface to `ns` as a veth pair (`NAME`, `NAME-p`), both ends up. */
export function addLinks(ns: string, names: readonly string[]): void {
  for (const d of names) {
    execFileSync('ip', ['-n', ns, 'link', 'add', d, 'type', 'veth', 'peer', 'name', `${d}-p`]);
    execFileSync('ip', ['-n', ns, 'link', 'set', d, 'up']);
    execFileSync('ip', ['-n', ns, 'link', 'set', `${d}-p`, 'up']);
  }
}
