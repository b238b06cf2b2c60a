import { ConfigError, formatIssue } from '../../config/errors.js';
import { loadConfig, nodeLoadDeps, type LoadDeps, type LoadedConfig } from '../../config/load.js';
import type { Io } from '../cli-io.js';

/** Loads the config for a command; on errors prints them all and returns null. */
export async function loadOrReport(file: string, io: Io, deps: LoadDeps = nodeLoadDeps): Promise<LoadedConfig | null> {
  try {
    const loaded = await loadConfig(file, deps);
    for (const w of loaded.warnings) io.err(`${formatIssue(w)}\n`);
    return loaded;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const sorted = [...e.issues].sort((a, b) => (a.pos.file === b.pos.file ? a.pos.line - b.pos.line || a.pos.col - b.pos.col : a.pos.file < b.pos.file ? -1 : 1));
    for (const i of sorted) io.err(`${formatIssue(i)}\n`);
    const n = e.issues.filter((i) => i.severity === 'error').length;
    io.err(`${n} error${n === 1 ? '' : 's'}\n`);
    return null;
  }
}
