import cron from 'node-cron';
import type { Logger } from '../../lib/logger.js';
import { toLoadedList, type LoadedConfig } from '../load.js';
import type { ConfigStore } from '../store.js';
import type { ListSource } from '../types.js';
import { listCacheFile, ListFetcher, redactUrl, type ListFetchResult } from './fetch.js';

/** Runs a function on a cron schedule; node-cron in the daemon, a fake in tests. */
export interface CronScheduler {
  schedule(expression: string, fn: () => void): { stop(): void };
}

export const nodeCronScheduler: CronScheduler = {
  schedule(expression, fn) {
    const task = cron.schedule(expression, fn, { noOverlap: true });
    return { stop: () => void task.stop() };
  },
};

/**
 * Keeps URL lists fresh: a conditional download of each at start (so a list
 * never downloaded gets its first copy, and a stale one is refreshed), then
 * on each list's `refresh` schedule. A good download is swapped into the
 * running policy; a failed or malformed one keeps the last good copy and is
 * logged.
 */
export class ListRefresher {
  private tasks = new Map<string, { key: string; stop(): void }>();
  private unsubscribe: (() => void) | null = null;
  private inflight = new Map<string, Promise<ListFetchResult>>();
  /** Lists whose last download could not be applied. */
  private readonly unapplied = new Set<string>();
  /** Every download's outcome (metrics). */
  onResult: ((name: string, result: ListFetchResult) => void) | null = null;

  constructor(
    private readonly store: ConfigStore,
    private readonly logger: Logger,
    private readonly scheduler: CronScheduler = nodeCronScheduler,
    private readonly makeFetcher: (cacheDir: string) => ListFetcher = (cacheDir) => new ListFetcher({ cacheDir }),
  ) {}

  /** Schedules every URL list and starts a first refresh of each; resolves when those finish. */
  async start(): Promise<void> {
    this.unsubscribe = this.store.subscribe((_prev, next) => void this.reschedule(next));
    this.reschedule(this.store.current);
    await this.refreshAll();
  }

  stop(): void {
    this.unsubscribe?.();
    for (const t of this.tasks.values()) t.stop();
    this.tasks.clear();
  }

  /** Refreshes every URL list now (`splitwan lists refresh`). */
  async refreshAll(): Promise<Map<string, ListFetchResult>> {
    const out = new Map<string, ListFetchResult>();
    const urls = this.store.current.config.lists.filter((l) => l.url);
    await Promise.all(urls.map(async (l) => out.set(l.name, await this.refresh(l.name))));
    return out;
  }

  /** Refreshes one list; concurrent calls for the same list share a download. */
  refresh(name: string): Promise<ListFetchResult> {
    const running = this.inflight.get(name);
    if (running) return running;
    const p = this.doRefresh(name)
      .then((r) => {
        this.onResult?.(name, r);
        return r;
      })
      .finally(() => this.inflight.delete(name));
    this.inflight.set(name, p);
    return p;
  }

  private async doRefresh(name: string): Promise<ListFetchResult> {
    const { config } = this.store.current;
    const source = config.lists.find((l) => l.name === name);
    if (!source?.url) return { status: 'failed', entry: null, error: `no url list named "${name}"` };
    const result = await this.makeFetcher(config.stateDir).fetch(source);
    const log = this.logger.child({ list: name });
    if (result.status === 'failed') {
      // What routing keeps using is what the running policy holds, whatever the cache has.
      const inUse = this.store.current.lists.get(name);
      const kept = inUse !== undefined && inUse.origin !== 'none';
      const msg = `list "${name}" download failed: ${result.error ?? 'unknown error'}; ${kept ? 'keeping the last good copy' : 'no copy yet, its rules match nothing'}`;
      // Not the pinned content is no network hiccup: someone changed or tampered with the list.
      if (result.code !== undefined) log.error({ url: redactUrl(source.url), kept, code: result.code }, msg);
      else log.warn({ url: redactUrl(source.url), kept }, msg);
      return result;
    }
    // A copy downloaded before but never applied (the apply failed) is tried again even when the server says not modified.
    if ((result.status === 'updated' || (result.status === 'not-modified' && this.unapplied.has(name))) && result.entry) {
      try {
        const isDatabase = config.geodata?.country === name || config.geodata?.asn === name;
        const loaded = toLoadedList(source, result.entry.bytes, listCacheFile(config.stateDir, name), 'cache', isDatabase);
        if (await this.store.replaceList(loaded)) log.info({ domains: loaded.domains.length, cidrs: loaded.cidrs.length }, 'list updated');
        this.unapplied.delete(name);
      } catch (e) {
        this.unapplied.add(name);
        // Downloaded and cached, but the daemon could not apply it: the running list stays; the next refresh tries again.
        const error = `downloaded, but applying it failed: ${(e as Error).message}`;
        log.error({ err: e }, `list not updated: ${error}`);
        return { status: 'failed', entry: result.entry, error };
      }
    } else log.debug({}, 'list not modified');
    return result;
  }

  private reschedule(next: LoadedConfig): void {
    const want = new Map<string, ListSource>();
    for (const l of next.config.lists) if (l.url && l.refresh) want.set(l.name, l);
    for (const [name, t] of this.tasks) {
      const l = want.get(name);
      if (!l || `${l.url} ${l.refresh}` !== t.key) {
        t.stop();
        this.tasks.delete(name);
      }
    }
    for (const [name, l] of want) {
      if (this.tasks.has(name)) continue;
      const task = this.scheduler.schedule(l.refresh!, () => void this.refresh(name));
      this.tasks.set(name, { key: `${l.url} ${l.refresh}`, stop: () => task.stop() });
      // A list never downloaded (new to the config, or a new URL) is fetched now, not at the next tick.
      if (next.lists.get(name)?.origin === 'none') void this.refresh(name);
    }
  }
}
