import { parseArgs, type ParseArgsConfig } from 'node:util';
import { explainCommand } from './commands/explain.js';
import type { TagLookup } from './tag-lookup-linux.js';
import { checkCommand } from './commands/check.js';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { Exit, processIo, UsageError, type Io } from './cli-io.js';

export { Exit, UsageError, type Io } from './cli-io.js';

const USAGE = `Usage: splitwan <command> [options]

Commands:
  check   [--config PATH]                  validate the config, its lists and wg-quick files
  explain [--config PATH] NAME|IP [--source IP] [--json]
                                           where traffic to NAME or IP goes, and why
  run     [--config PATH]                  run the daemon (root): tunnels, routing, reload on change
  status  [--json]                         the running daemon: gateways, active path, tags, DNS, failovers
  reload  [--dry-run [--file NEW.yaml]]    reload the config now; dry run: what the file (or NEW.yaml) would change
  select  NAME|auto                        pin the tunnel path to a gateway, or back to automatic
  lists refresh                            download the URL lists now
  dns flush                                empty the DNS cache
  demo    [--keep]                         build a lab of namespaces and show splitwan at work (root)
  cleanup                                  remove everything splitwan installed (after a crash)
  help                                     this text
  version                                  the version

Options:
  --config PATH   the config file (default ${DEFAULT_CONFIG_PATH})
  --socket PATH   the daemon's control socket (default: control.socket of the config)

explain asks the running daemon when there is one (its tags and cached
addresses too), else reads the config file; --offline always reads the file.

Exit codes: 0 ok, 1 config errors, 2 usage errors, 3 daemon not running, 4 needs root,
5 a valid config could not be applied (reload: the previous one runs).
`;

interface Command {
  options: ParseArgsConfig['options'];
  positionals: { min: number; max: number; names: string };
  run(args: { values: Record<string, string | boolean | undefined>; positionals: string[] }, io: Io, deps: CliDeps): Promise<number>;
}

const COMMON = { config: { type: 'string' as const, short: 'c' } };
const CONTROL = { ...COMMON, socket: { type: 'string' as const } };
type Values = Record<string, string | boolean | undefined>;
const socketOf = async (v: Values): Promise<string> => {
  const { controlSocket } = await import('./commands/control.js');
  return controlSocket({ socket: v.socket as string | undefined, config: v.config as string | undefined });
};

function needsRoot(what: string, io: Io): boolean {
  if (process.getuid?.() === 0) return false;
  io.err(`splitwan ${what} changes the kernel's routing and needs root (or CAP_NET_ADMIN): sudo splitwan ${what}\n`);
  return true;
}

const commands: Record<string, Command> = {
  run: {
    options: { ...COMMON },
    positionals: { min: 0, max: 0, names: '' },
    run: async ({ values }, io) => {
      if (needsRoot('run', io)) return Exit.NEEDS_ROOT;
      const configPath = (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH;
      const { loadOrReport } = await import('./commands/load-or-report.js');
      const first = await loadOrReport(configPath, io);
      if (!first) return Exit.CONFIG;
      const { createReloadableLogger } = await import('./logger.js');
      const { runDaemon } = await import('./run.js');
      try {
        const { logger, setLevel } = createReloadableLogger(first.config.log.level);
        await runDaemon({ configPath, logger, setLogLevel: setLevel, signals: process, version: await version() });
        // Everything is cleaned up. Exit now rather than at the end of the event loop: Node's
        // teardown was seen spinning forever on a libuv request left by a native (koffi) call,
        // which kept a stopped daemon alive under systemd's TimeoutStopSec.
        await new Promise<void>((r) => process.stdout.write('', () => r()));
        process.exit(0);
      } catch (e) {
        // What the operator can fix (a port in use, another daemon running) is said plainly; bugs keep their stack.
        const code = (e as { code?: unknown }).code;
        if (typeof code !== 'string' || !code.startsWith('SPLITWAN_')) throw e;
        io.err(`splitwan run: ${(e as Error).message} (${code})\n`);
        return Exit.CONFIG;
      }
      return Exit.OK;
    },
  },
  demo: {
    options: { keep: { type: 'boolean' } },
    positionals: { min: 0, max: 0, names: '' },
    // demo checks root itself (and loads the lab only when it runs).
    run: async ({ values }, io) => (await import('./commands/demo.js')).demoCommand({ keep: values.keep === true, io }),
  },
  cleanup: {
    options: {},
    positionals: { min: 0, max: 0, names: '' },
    run: async (_args, io) => {
      if (needsRoot('cleanup', io)) return Exit.NEEDS_ROOT;
      const { createLogger } = await import('./logger.js');
      const { cleanupAll } = await import('./run.js');
      const { linuxRunner } = await import('./exec-linux.js');
      await cleanupAll(linuxRunner, createLogger('info'));
      io.out('splitwan: removed its nftables table, ip rules, routes, tunnels and wireguard-go processes (if any)\n');
      return Exit.OK;
    },
  },
  check: {
    options: { ...COMMON },
    positionals: { min: 0, max: 0, names: '' },
    run: ({ values }, io) => checkCommand({ config: (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH }, io),
  },
  status: {
    options: { ...CONTROL, json: { type: 'boolean' } },
    positionals: { min: 0, max: 0, names: '' },
    run: async ({ values }, io) => (await import('./commands/control.js')).statusCommand({ socket: await socketOf(values), json: values.json === true }, io),
  },
  reload: {
    options: { ...CONTROL, 'dry-run': { type: 'boolean' }, file: { type: 'string' }, json: { type: 'boolean' } },
    positionals: { min: 0, max: 0, names: '' },
    run: async ({ values }, io) => {
      if (values.file !== undefined && values['dry-run'] !== true) throw new UsageError('--file goes with --dry-run (to apply a file, put it in place: the daemon reloads it)');
      return (await import('./commands/control.js')).reloadCommand({ socket: await socketOf(values), dryRun: values['dry-run'] === true, json: values.json === true, file: values.file as string | undefined }, io);
    },
  },
  select: {
    options: { ...CONTROL },
    positionals: { min: 1, max: 1, names: 'NAME|auto' },
    run: async ({ values, positionals }, io) => (await import('./commands/control.js')).selectCommand({ socket: await socketOf(values), gateway: positionals[0]! }, io),
  },
  lists: {
    options: { ...CONTROL, json: { type: 'boolean' } },
    positionals: { min: 1, max: 1, names: 'refresh' },
    run: async ({ values, positionals }, io) => {
      if (positionals[0] !== 'refresh') throw new UsageError(`unknown lists command "${positionals[0]}" (try: splitwan lists refresh)`);
      return (await import('./commands/control.js')).listsRefreshCommand({ socket: await socketOf(values), json: values.json === true }, io);
    },
  },
  dns: {
    options: { ...CONTROL },
    positionals: { min: 1, max: 1, names: 'flush' },
    run: async ({ values, positionals }, io) => {
      if (positionals[0] !== 'flush') throw new UsageError(`unknown dns command "${positionals[0]}" (try: splitwan dns flush)`);
      return (await import('./commands/control.js')).dnsFlushCommand({ socket: await socketOf(values) }, io);
    },
  },
  explain: {
    options: { ...CONTROL, json: { type: 'boolean' }, source: { type: 'string' }, offline: { type: 'boolean' } },
    positionals: { min: 1, max: 1, names: 'NAME|IP' },
    run: async ({ values, positionals }, io, deps) => {
      if (values.offline !== true && deps.tags === undefined) {
        const { explainViaDaemon } = await import('./commands/control.js');
        const viaDaemon = await explainViaDaemon({ socket: await socketOf(values), target: positionals[0]!, source: values.source as string | undefined, json: values.json === true }, io);
        if (viaDaemon !== null) return viaDaemon;
      }
      return explainCommand(
        {
          config: (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH,
          target: positionals[0]!,
          json: values.json === true,
          source: values.source as string | undefined,
        },
        io,
        deps.tags,
      );
    },
  },
};

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return (JSON.parse(await readFile(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      /* next */
    }
  }
  return 'unknown';
}

/** Runs the CLI; resolves to the exit code. Never throws for user mistakes. */
/** What commands take from outside besides the terminal (tests pass fakes). */
export interface CliDeps {
  /** explain IP: where the running daemon's resolver tagged an address. */
  tags?: TagLookup;
}

export async function main(argv: string[], io: Io = processIo, deps: CliDeps = {}): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    (name === undefined ? io.err : io.out)(USAGE);
    return name === undefined ? Exit.USAGE : Exit.OK;
  }
  if (name === 'version' || name === '--version') {
    io.out(`splitwan ${await version()}\n`);
    return Exit.OK;
  }
  const cmd = commands[name];
  if (!cmd) {
    io.err(`splitwan: unknown command "${name}"\n\n${USAGE}`);
    return Exit.USAGE;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = (e as Error).message.split('. To specify')[0]!;
    io.err(`splitwan ${name}: ${msg}\nRun "splitwan help" for usage.\n`);
    return Exit.USAGE;
  }
  const { min, max, names } = cmd.positionals;
  if (parsed.positionals.length < min || parsed.positionals.length > max) {
    io.err(`splitwan ${name}: ${parsed.positionals.length < min ? `missing ${names}` : `unexpected argument "${parsed.positionals[max]}"`}\nRun "splitwan help" for usage.\n`);
    return Exit.USAGE;
  }
  try {
    return await cmd.run({ values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals }, io, deps);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`splitwan ${name}: ${e.message}\n`);
      return Exit.USAGE;
    }
    throw e;
  }
}
