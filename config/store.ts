import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { EventEmitter } from 'node:events';
import { ConfigError, formatIssue, type ConfigIssue } from './errors.js';
import { loadConfig, nodeLoadDeps, recompile, type LoadDeps, type LoadedConfig, type LoadedList } from './load.js';
import { systemClock, type Clock, type Logger } from '../lib/logger.js';

/**
 * Applies a change of config (previous → next). It throws when it could not
 * apply it; the store then calls the listeners that ran again with
 * (next, previous) to put the previous config back, and the reload is
 * reported `failed`.
 */
export type ConfigListener = (previous: LoadedConfig, next: LoadedConfig) => void | Promise<void>;

export interface ReloadResult {
  /**
   * applied: every listener took it; unchanged: the file is what runs;
   * rejected: the file has errors; failed: the file is good but applying it
   * failed (the previous config was put back; a later reload tries again).
   */
  status: 'applied' | 'unchanged' | 'rejected' | 'failed';
  /** Errors of a rejected file; warnings of an applied one. */
  issues: readonly ConfigIssue[];
  /** Why applying failed (status failed). */
  error?: string;
}

/** Applying a good config failed: the previous one was put back. */
export class ConfigApplyError extends Error {
  readonly code = 'SPLITWAN_CONFIG_APPLY';
  constructor(
    message: string,
    /** Whether putting the previous config back failed too (the daemon runs degraded until a reload succeeds). */
    readonly restoreFailed: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface ConfigStoreOptions {
  file: string;
  logger: Logger;
  deps?: LoadDeps;
  clock?: Clock;
  /** Quiet time after the last file event before reloading (editors write in bursts). */
  debounceMs?: number;
  /** Where SIGHUP comes from (process); omitted in tests that do not need it. */
  signals?: Pick<EventEmitter, 'on' | 'off'>;
  /**
   * `file` as the caller just loaded it (`splitwan run` checks the file
   * before its logger exists): used as is, not read and compiled a second
   * time (with a 100k-domain list that was half of the start-up's CPU).
   * Its warnings were the caller's to report.
   */
  initial?: LoadedConfig;
}

/**
 * Holds the running configuration. Reload validates and compiles first, then
 * swaps; a bad file is logged with its positions and the old config keeps
 * running. Listeners get (previous, next) to apply only the difference.
 */
export class ConfigStore {
  private loaded: LoadedConfig;
  private readonly listeners = new Set<ConfigListener>();
  private watchers = new Map<string, FSWatcher>();
  private watchedNames = new Map<string, Set<string>>();
  private timer: unknown = null;
  private running: Promise<ReloadResult> | null = null;
  private again = false;
  private closed = false;
  private readonly clock: Clock;
  private readonly deps: LoadDeps;
  private readonly onHup = (): void => void this.reload('SIGHUP').catch(() => {});
  /** Files a rejected edit referred to: watched too, so creating a missing one is noticed. */
  private attempted: readonly string[] = [];
  /** When the running config was loaded, for status. */
  loadedAt: number;
  /** A counter that increases with every swap, for status and metrics. */
  version = 1;
  /** The last reload's outcome (status, metrics); null before the first. */
  lastReload: { at: number; status: ReloadResult['status']; error?: string } | null = null;
  /** Every reload's outcome, whatever started it (file watch, SIGHUP, control API). */
  onReload: ((r: ReloadResult) => void) | null = null;

  private constructor(
    private readonly opts: ConfigStoreOptions,
    initial: LoadedConfig,
  ) {
    this.loaded = initial;
    this.clock = opts.clock ?? systemClock;
    this.deps = opts.deps ?? nodeLoadDeps;
    this.loadedAt = this.clock.wall();
  }

  /** Loads the file; throws ConfigError when it cannot be used (nothing to fall back to yet). */
  static async open(opts: ConfigStoreOptions): Promise<ConfigStore> {
    if (opts.initial) return new ConfigStore(opts, opts.initial);
    const loaded = await loadConfig(opts.file, opts.deps ?? nodeLoadDeps);
    for (const w of loaded.warnings) opts.logger.warn({ code: w.code }, formatIssue(w));
    return new ConfigStore(opts, loaded);
  }

  get current(): LoadedConfig {
    return this.loaded;
  }

  subscribe(fn: ConfigListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Starts watching the config and every file it includes, and SIGHUP. */
  start(): void {
    this.opts.signals?.on('SIGHUP', this.onHup);
    this.rewatch();
  }

  close(): void {
    this.closed = true;
    this.opts.signals?.off('SIGHUP', this.onHup);
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  /**
   * Re-reads the file now. Concurrent calls share one run, and a call during
   * a run schedules exactly one more, so the last edit always wins.
   */
  reload(reason = 'request'): Promise<ReloadResult> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.doReload(reason)
      .then((r) => {
        const firstError = r.error ?? (r.issues.find((i) => i.severity === 'error') ? formatIssue(r.issues.find((i) => i.severity === 'error')!) : undefined);
        this.lastReload = { at: this.clock.wall(), status: r.status, ...(firstError ? { error: firstError } : {}) };
        this.onReload?.(r);
        return r;
      })
      .finally(() => {
      this.running = null;
      if (this.again && !this.closed) {
        this.again = false;
        void this.reload(reason).catch(() => {});
      }
    });
    return this.running;
  }

  /** Resolves when no reload runs (one that is running, and the one it may have queued, finished). */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }

  /**
   * Swaps in a refreshed download of one list without re-reading the file.
   * Ignored when the running config no longer has that list at that URL (a
   * reload raced the download). Throws ConfigApplyError when applying it
   * failed (the previous list stays in force).
   */
  async replaceList(list: LoadedList): Promise<boolean> {
    const cur = this.loaded.lists.get(list.name);
    if (!cur || cur.source.url !== list.source.url) return false;
    const lists = new Map(this.loaded.lists);
    lists.set(list.name, list);
    await this.swap(recompile(this.loaded, lists));
    return true;
  }

  private async doReload(reason: string): Promise<ReloadResult> {
    const log = this.opts.logger;
    let next: LoadedConfig;
    try {
      next = await loadConfig(this.opts.file, this.deps);
    } catch (e) {
      if (!(e instanceof ConfigError)) {
        // A bug in the loader must not take the running config (and the daemon) down with it.
        log.error({ err: e, reason }, 'config not reloaded: internal error; the previous configuration keeps running');
        return { status: 'rejected', issues: [] };
      }
      this.attempted = e.files;
      const errors = e.issues.filter((i) => i.severity === 'error');
      for (const i of errors) log.error({ code: i.code, reason }, `config not reloaded: ${formatIssue(i)}`);
      log.warn({ reason, errors: errors.length }, 'the previous configuration keeps running');
      if (this.watchers.size > 0) this.rewatch();
      return { status: 'rejected', issues: e.issues };
    }
    const hadAttempt = this.attempted.length > 0;
    this.attempted = [];
    if (hadAttempt) this.rewatch();
    // `current` is only ever a config that was applied whole, so the same
    // file after a failed apply is not "unchanged": it is tried again.
    if (next.config.digest === this.loaded.config.digest) {
      log.debug({ reason }, 'config unchanged');
      return { status: 'unchanged', issues: next.warnings };
    }
    for (const w of next.warnings) log.warn({ code: w.code }, formatIssue(w));
    try {
      await this.swap(next);
    } catch (e) {
      if (!(e instanceof ConfigApplyError)) throw e;
      log.error({ err: e.cause ?? e, reason }, `config not applied: ${e.message}; ${e.restoreFailed ? 'restoring the previous configuration failed too: the daemon runs degraded until a reload succeeds' : 'the previous configuration was put back'}`);
      return { status: 'failed', issues: next.warnings, error: e.message };
    }
    log.info({ reason, version: this.version }, 'config reloaded');
    return { status: 'applied', issues: next.warnings };
  }

  /**
   * Hands previous → next to every listener in order, and makes `next`
   * current only when all of them took it. When one throws, the listeners
   * that ran (it included: it may have applied part) get next → previous in
   * reverse order, and ConfigApplyError says why.
   */
  private async swap(next: LoadedConfig): Promise<void> {
    const previous = this.loaded;
    const ran: ConfigListener[] = [];
    try {
      for (const fn of this.listeners) {
        ran.push(fn);
        await fn(previous, next);
      }
    } catch (e) {
      let restoreFailed = false;
      for (const fn of ran.reverse()) {
        try {
          await fn(next, previous);
        } catch (r) {
          restoreFailed = true;
          this.opts.logger.error({ err: r }, 'putting the previous configuration back failed');
        }
      }
      throw new ConfigApplyError((e as Error).message ?? String(e), restoreFailed, { cause: e });
    }
    this.loaded = next;
    this.version++;
    this.loadedAt = this.clock.wall();
    if (this.watchers.size > 0 || this.watchedNames.size > 0) this.rewatch();
  }

  /**
   * Watches directories, not files: editors that save by writing a temp file
   * and renaming it over the original replace the inode a file watch holds.
   */
  private rewatch(): void {
    if (this.closed) return;
    const want = new Map<string, Set<string>>();
    for (const f of [...this.loaded.config.files, ...this.attempted]) {
      const d = dirname(f);
      if (!want.has(d)) want.set(d, new Set());
      want.get(d)!.add(basename(f));
    }
    for (const [d, w] of this.watchers) {
      if (!want.has(d)) {
        w.close();
        this.watchers.delete(d);
      }
    }
    this.watchedNames = want;
    for (const d of want.keys()) {
      if (this.watchers.has(d)) continue;
      try {
        const w = watch(d, { persistent: false }, (_event, name) => {
          const n = name?.toString();
          if (n === undefined || this.watchedNames.get(d)?.has(n)) this.schedule();
        });
        w.on('error', (e) => this.opts.logger.warn({ err: e, dir: d }, 'watching config directory failed'));
        this.watchers.set(d, w);
      } catch (e) {
        this.opts.logger.warn({ err: e, dir: d }, 'cannot watch config directory; use SIGHUP or splitwan reload');
      }
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.reload('file changed').catch(() => {});
    }, this.opts.debounceMs ?? 300);
  }
}
