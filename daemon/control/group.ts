// control.group → a gid, from /etc/group's text (pure). The read-only control
// socket is given to that group; a group that does not exist means no such
// socket, not an error: the daemon runs the same without it.

/** The gid of `group` (a name, or a number as it is) in an /etc/group text; null: no such group. */
export function groupIdOf(etcGroup: string, group: string): number | null {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of etcGroup.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return null;
}
