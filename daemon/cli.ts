import { parseArgs, type ParseArgsConfig } from 'node:util';
import { explainCommand } from './commands/explain.js';
import type { TagLookup } from './tag-lookup-linux.js';
import { checkCommand } from './commands/check.js';
import { didYouMean } from '../config/errors.js';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { Exit, processIo, UsageError, type Io } from './cli-io.js';

export { Exit, UsageError, type Io } from './cli-io.js';

/**
 * One option of a command: what parseArgs needs, and what its usage says.
 * `arg` names the value of a string option (`--config PATH`).
 */
interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  arg?: string;
  help: string;
}

interface Command {
  /** What follows `splitwan NAME` in the usage line; lists every option (a test checks it against `options`). */
  synopsis: string;
  /** One line for the command list. */
  summary: string;
  options: Record<string, OptionSpec>;
  positionals: { min: number; max: number; names: string };
  run(args: { values: Record<string, string | boolean | undefined>; positionals: string[] }, io: Io, deps: CliDeps): Promise<number>;
}

const CONFIG: Record<string, OptionSpec> = { config: { type: 'string', short: 'c', arg: 'PATH', help: `the config file (default ${DEFAULT_CONFIG_PATH})` } };
/** The commands that talk to the running daemon find its socket by --socket, else the config's control.socket. */
const CONTROL: Record<string, OptionSpec> = {
  config: { type: 'string', short: 'c', arg: 'PATH', help: `the config file whose control.socket to use (default ${DEFAULT_CONFIG_PATH})` },
  socket: { type: 'string', arg: 'PATH', help: "the daemon's control socket (default: control.socket of the config, else /run/splitwan/control.sock)" },
};
const JSON_OUT: Record<string, OptionSpec> = { json: { type: 'boolean', help: 'print one JSON object (fields are added over time, never renamed)' } };
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

export const COMMANDS: Readonly<Record<string, Command>> = {
  check: {
    synopsis: '[--config PATH]',
    summary: 'validate the config, its lists and wg-quick files',
    options: { ...CONFIG },
    positionals: { min: 0, max: 0, names: '' },
    run: ({ values }, io) => checkCommand({ config: (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH }, io),
  },
  explain: {
    synopsis: '[--config PATH] [--socket PATH] NAME|IP [--source IP] [--json] [--offline]',
    summary: 'where traffic to NAME or IP goes, and why',
    options: {
      config: { type: 'string', short: 'c', arg: 'PATH', help: `the config file (default ${DEFAULT_CONFIG_PATH}): explained from when no daemon runs, or with --offline` },
      socket: CONTROL.socket!,
      source: { type: 'string', arg: 'IP', help: 'ask as this LAN client (rules with sources)' },
      ...JSON_OUT,
      offline: { type: 'boolean', help: 'read the config file even when a daemon runs (kernel tags are still read when root)' },
    },
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
  run: {
    synopsis: '[--config PATH]',
    summary: 'run the daemon (root): tunnels, routing, reload on change',
    options: { ...CONFIG },
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
        await runDaemon({ configPath, loaded: first, logger, setLogLevel: setLevel, signals: process, version: await version() });
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
  status: {
    synopsis: '[--config PATH] [--socket PATH] [--json]',
    summary: 'the running daemon: gateways, active path, tags, DNS, failovers',
    options: { ...CONTROL, ...JSON_OUT },
    positionals: { min: 0, max: 0, names: '' },
    run: async ({ values }, io) => (await import('./commands/control.js')).statusCommand({ socket: await socketOf(values), json: values.json === true }, io),
  },
  reload: {
    synopsis: '[--config PATH] [--socket PATH] [--dry-run [--file NEW.yaml]] [--json]',
    summary: 'reload the config now; dry run: what the file (or NEW.yaml) would change',
    options: {
      ...CONTROL,
      'dry-run': { type: 'boolean', help: 'say what would change, apply nothing' },
      file: { type: 'string', arg: 'NEW.yaml', help: 'with --dry-run: compare this file instead (the daemon reads it: keep it under /etc/splitwan)' },
      ...JSON_OUT,
    },
    positionals: { min: 0, max: 0, names: '' },
    run: async ({ values }, io) => {
      if (values.file !== undefined && values['dry-run'] !== true) throw new UsageError('--file goes with --dry-run (to apply a file, put it in place: the daemon reloads it)');
      return (await import('./commands/control.js')).reloadCommand({ socket: await socketOf(values), dryRun: values['dry-run'] === true, json: values.json === true, file: values.file as string | undefined }, io);
    },
  },
  select: {
    synopsis: '[--config PATH] [--socket PATH] NAME|auto',
    summary: 'pin the tunnel path to a gateway, or back to automatic',
    options: { ...CONTROL },
    positionals: { min: 1, max: 1, names: 'NAME|auto' },
    run: async ({ values, positionals }, io) => (await import('./commands/control.js')).selectCommand({ socket: await socketOf(values), gateway: positionals[0]! }, io),
  },
  lists: {
    synopsis: 'refresh [--config PATH] [--socket PATH] [--json]',
    summary: 'download the URL lists now',
    options: { ...CONTROL, ...JSON_OUT },
    positionals: { min: 1, max: 1, names: 'refresh' },
    run: async ({ values, positionals }, io) => {
      if (positionals[0] !== 'refresh') throw new UsageError(unknownSub('lists', positionals[0]!, ['refresh']));
      return (await import('./commands/control.js')).listsRefreshCommand({ socket: await socketOf(values), json: values.json === true }, io);
    },
  },
  dns: {
    synopsis: 'flush [--config PATH] [--socket PATH]',
    summary: 'empty the DNS cache',
    options: { ...CONTROL },
    positionals: { min: 1, max: 1, names: 'flush' },
    run: async ({ values, positionals }, io) => {
      if (positionals[0] !== 'flush') throw new UsageError(unknownSub('dns', positionals[0]!, ['flush']));
      return (await import('./commands/control.js')).dnsFlushCommand({ socket: await socketOf(values) }, io);
    },
  },
  log: {
    synopsis: '[--config PATH] [--socket PATH] [--follow] [--client IP] [--name PATTERN] [--path P] [--limit N] [--json]',
    summary: 'the query log: which rule and path each DNS question took',
    options: {
      ...CONTROL,
      follow: { type: 'boolean', short: 'f', help: 'keep printing new records (Ctrl-C ends)' },
      client: { type: 'string', arg: 'IP', help: "only this client (an address, or part of the client's name)" },
      name: { type: 'string', arg: 'PATTERN', help: 'only names matching PATTERN (*.example.com; without * any part of the name)' },
      path: { type: 'string', arg: 'P', help: 'only questions sent to path P (breakout, tunnel, gw:NAME, block)' },
      limit: { type: 'string', arg: 'N', help: 'how many of the newest records to print first (default 50)' },
      ...JSON_OUT,
    },
    positionals: { min: 0, max: 0, names: '' },
    run: async ({ values }, io) => {
      const limit = values.limit === undefined ? 50 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 5000) throw new UsageError('--limit takes a whole number from 1 to 5000');
      let stop = false;
      const onInt = (): void => void (stop = true);
      process.once('SIGINT', onInt);
      try {
        return await (await import('./commands/control.js')).logCommand(
          { socket: await socketOf(values), follow: values.follow === true, json: values.json === true, client: values.client as string | undefined, name: values.name as string | undefined, path: values.path as string | undefined, limit, stopped: () => stop },
          io,
        );
      } finally {
        process.off('SIGINT', onInt);
      }
    },
  },
  web: {
    synopsis: 'passwd [--config PATH]',
    summary: "set the dashboard's password (read from stdin) in the config file",
    options: { ...CONFIG },
    positionals: { min: 1, max: 1, names: 'passwd' },
    run: async ({ values, positionals }, io) => {
      if (positionals[0] !== 'passwd') throw new UsageError(unknownSub('web', positionals[0]!, ['passwd']));
      const { webPasswdCommand } = await import('./commands/web-passwd.js');
      return webPasswdCommand({ config: (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH }, io);
    },
  },
  demo: {
    synopsis: '[--keep]',
    summary: 'build a lab of namespaces and show splitwan at work (root)',
    options: { keep: { type: 'boolean', help: 'leave the lab and its daemon up (removed on Ctrl-C)' } },
    positionals: { min: 0, max: 0, names: '' },
    // demo checks root itself (and loads the lab only when it runs).
    run: async ({ values }, io) => (await import('./commands/demo.js')).demoCommand({ keep: values.keep === true, io }),
  },
  cleanup: {
    synopsis: '',
    summary: 'remove everything splitwan installed (after a crash; root)',
    options: {},
    positionals: { min: 0, max: 0, names: '' },
    run: async (_args, io) => {
      if (needsRoot('cleanup', io)) return Exit.NEEDS_ROOT;
      const { createLogger } = await import('./logger.js');
      const { cleanupAll } = await import('./run.js');
      const { linuxRunner } = await import('./exec-linux.js');
      await cleanupAll(linuxRunner, createLogger('info'));
      io.out('splitwan: removed its nftables table, ip rules, routes, tunnels, wireguard-go processes and key files left in the temp directory (if any)\n');
      return Exit.OK;
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

/** What commands take from outside besides the terminal (tests pass fakes). */
export interface CliDeps {
  /** explain IP: where the running daemon's resolver tagged an address. */
  tags?: TagLookup;
}

/** `help` and `version` are answered by main() itself; they are in the list for suggestions. */
const BUILTIN = ['help', 'version'];
const COLUMN = 50;

/** The line of the command list for one command: the synopsis, then the summary in a column (on its own line when the synopsis is long). */
function commandLine(name: string, c: Command): string {
  const head = `  ${name.padEnd(7)} ${c.synopsis}`.trimEnd();
  return head.length < COLUMN - 1 ? `${head.padEnd(COLUMN)}${c.summary}\n` : `${head}\n${' '.repeat(COLUMN)}${c.summary}\n`;
}

function usage(): string {
  return [
    'Usage: splitwan <command> [options]\n',
    '\nCommands:\n',
    ...Object.entries(COMMANDS).map(([name, c]) => commandLine(name, c)),
    `  ${'help [COMMAND]'.padEnd(COLUMN - 2)}this text, or a command's options\n`,
    `  ${'version'.padEnd(COLUMN - 2)}the version\n`,
    '\n"splitwan COMMAND --help" lists the options of that command.\n',
    '\nexplain asks the running daemon when there is one (its tags and cached\n',
    'addresses too), else reads the config file; --offline always reads the file.\n',
    '\nExit codes: 0 ok, 1 config errors, 2 usage errors, 3 daemon not running, 4 needs root,\n5 a valid config could not be applied (reload: the previous one runs).\n',
  ].join('');
}

/** `splitwan COMMAND --help`: its usage line, what it does, and each option. */
export function commandUsage(name: string): string {
  const c = COMMANDS[name]!;
  const flags = Object.entries(c.options).map(([long, o]) => [`${o.short ? `-${o.short}, ` : ''}--${long}${o.arg ? ` ${o.arg}` : ''}`, o.help] as const);
  flags.push(['-h, --help', 'this text']);
  const width = Math.max(...flags.map(([f]) => f.length)) + 2;
  return [
    `Usage: splitwan ${name}${c.synopsis ? ` ${c.synopsis}` : ''}\n`,
    `\n${c.summary[0]!.toUpperCase()}${c.summary.slice(1)}.\n`,
    '\nOptions:\n',
    ...flags.map(([f, h]) => `  ${f.padEnd(width)}${h}\n`),
  ].join('');
}

/** "unknown command" with the nearest one, if one is near. */
function unknownCommand(name: string): string {
  const hint = didYouMean(name, [...Object.keys(COMMANDS), ...BUILTIN]);
  return `splitwan: unknown command "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}\nRun "splitwan help" for the commands.\n`;
}

function unknownSub(cmd: string, sub: string, subs: readonly string[]): string {
  const hint = didYouMean(sub, subs);
  return `unknown ${cmd} command "${sub}" ${hint ? `(did you mean "${hint}"?)` : `(try: splitwan ${cmd} ${subs.join('|')})`}`;
}

/** parseArgs' message, shorter, with the nearest option of this command when one is near. */
function optionError(e: Error, c: Command): string {
  const msg = e.message.split('. To specify')[0]!;
  const unknown = /^Unknown option '(-{1,2})([^'=]+)'/.exec(msg);
  if (unknown === null) return msg;
  const hint = didYouMean(unknown[2]!, Object.keys(c.options));
  return hint === undefined ? msg : `${msg} (did you mean --${hint}?)`;
}

/** Runs the CLI; resolves to the exit code. Never throws for user mistakes. */
export async function main(argv: string[], io: Io = processIo, deps: CliDeps = {}): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic !== undefined && topic !== 'help') {
      if (!Object.hasOwn(COMMANDS, topic)) {
        io.err(unknownCommand(topic));
        return Exit.USAGE;
      }
      io.out(commandUsage(topic));
      return Exit.OK;
    }
    (name === undefined ? io.err : io.out)(usage());
    return name === undefined ? Exit.USAGE : Exit.OK;
  }
  if (name === 'version' || name === '--version') {
    io.out(`splitwan ${await version()}\n`);
    return Exit.OK;
  }
  // Own properties only: "constructor" or "toString" is no command.
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name]! : undefined;
  if (!cmd) {
    io.err(unknownCommand(name));
    return Exit.USAGE;
  }
  const hint = `Run "splitwan ${name} --help" for usage.\n`;
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' } };
  for (const [long, o] of Object.entries(cmd.options)) options[long] = o.short ? { type: o.type, short: o.short } : { type: o.type };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (e) {
    io.err(`splitwan ${name}: ${optionError(e as Error, cmd)}\n${hint}`);
    return Exit.USAGE;
  }
  if (parsed.values.help === true) {
    io.out(commandUsage(name));
    return Exit.OK;
  }
  const { min, max, names } = cmd.positionals;
  if (parsed.positionals.length < min || parsed.positionals.length > max) {
    io.err(`splitwan ${name}: ${parsed.positionals.length < min ? `missing ${names}` : `unexpected argument "${parsed.positionals[max]}"`}\n${hint}`);
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
