// Whether splitwan may act on a file others could have rewritten. A wg-quick
// file, a key file, the config and its list files decide where traffic goes
// (and hold keys): a file another user can write is a way to reroute or
// unblock traffic, or to swap in their own gateway, so it is refused, as
// ssh(1) refuses a config file with "Bad owner or permissions": the owner
// must be root or the user splitwan runs as, and neither the group nor
// other users may write it.
//
// Reading is another matter: a key readable by others is only a warning, as
// wg-quick(8) warns ("is world accessible"). The key may already be copied,
// and refusing would not un-leak it (rotating it would), whereas a file others
// can write is a live hazard every time it is read. ssh refuses a readable
// private key; wg-quick, the tool these files come from, does not, and
// providers' generators hand them out 0644, so refusing would break working
// setups for no gain.

/** What the trust check needs of stat(2). */
export interface FileOwnership {
  mode: number;
  uid: number;
}

export type TrustProblem = { severity: 'error'; message: string } | { severity: 'warning'; message: string };

const octal = (mode: number): string => (mode & 0o777).toString(8).padStart(4, '0');

/**
 * The problems of one file: at most one error (owner, then writers) and, for a
 * file holding a secret (`secret`: why it matters), a warning when others can read it.
 */
export function fileTrustProblems(file: string, st: FileOwnership, ownUid: number, secret: string | null): TrustProblem[] {
  const out: TrustProblem[] = [];
  if (st.uid !== 0 && st.uid !== ownUid) {
    out.push({
      severity: 'error',
      message: `${file} belongs to uid ${st.uid}, not to root or the user splitwan runs as (uid ${ownUid}): that user could rewrite it, and with it where your traffic goes; chown it to root`,
    });
  } else if ((st.mode & 0o022) !== 0) {
    const who = (st.mode & 0o002) !== 0 ? 'every user' : 'its group';
    out.push({
      severity: 'error',
      message: `${file} is writable by ${who} (mode ${octal(st.mode)}): they could rewrite it, and with it where your traffic goes; chmod go-w it${secret !== null ? ' (600: it holds a private key)' : ''}`,
    });
  }
  // After an error the fix it names (chmod 600, chown) covers readers too: one line is enough.
  if (out.length === 0 && secret !== null && (st.mode & 0o044) !== 0) {
    out.push({ severity: 'warning', message: `${file} is readable by other users (mode ${octal(st.mode)}); ${secret}: chmod 600 it` });
  }
  return out;
}
