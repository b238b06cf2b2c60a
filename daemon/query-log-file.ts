// The query log's optional file (`queryLog.file`): records are appended as
// JSON lines once a second, off the resolver's path (it only fills the ring),
// and the file is rotated at `maxBytes` (FILE → FILE.1 → ... → FILE.keep).
// Records the ring overwrote before a write (a burst beyond its size in one
// second) are counted in a line of their own rather than silently lost.
// The file is created 0600: it says who asked for what.
import type { Clock, Logger } from '../lib/logger.js';
import type { QueryLog } from '../dns/query-log.js';
import type { ClientNamer } from './query-log-view.js';

const FLUSH_MS = 1000;

export interface LogFileFs {
  append(path: string, text: string): Promise<void>;
  /** Size in bytes, or 0 when missing. */
  size(path: string): Promise<number>;
  /** Renames; a missing `from` is no error. */
  rename(from: string, to: string): Promise<void>;
}

export const nodeLogFileFs: LogFileFs = {
  append: async (path, text) => {
    const { appendFile } = await import('node:fs/promises');
    await appendFile(path, text, { mode: 0o600 });
  },
  size: async (path) => {
    const { stat } = await import('node:fs/promises');
    return stat(path).then((s) => s.size, () => 0);
  },
  rename: async (from, to) => {
    const { rename } = await import('node:fs/promises');
    await rename(from, to).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  },
};

export class QueryLogFile {
  private next: number;
  private timer: unknown = null;
  private busy: Promise<void> = Promise.resolve();
  private size = -1;

  constructor(
    private readonly log: QueryLog,
    private target: { path: string; maxBytes: number; keep: number },
    private readonly d: { fs: LogFileFs; clock: Clock; logger: Logger; names: ClientNamer | null },
  ) {
    this.next = log.nextSeq;
  }

  setTarget(t: { path: string; maxBytes: number; keep: number }): void {
    if (t.path !== this.target.path) this.size = -1;
    this.target = t;
  }

  start(): void {
    const tick = (): void => {
      this.busy = this.busy.then(() => this.flush()).catch((e: unknown) => this.d.logger.warn({ err: e, file: this.target.path }, 'writing the query log file failed'));
      this.timer = this.d.clock.setTimeout(tick, FLUSH_MS);
    };
    this.timer = this.d.clock.setTimeout(tick, FLUSH_MS);
  }

  /** Stops the timer and writes what is left. */
  async stop(): Promise<void> {
    if (this.timer !== null) this.d.clock.clearTimeout(this.timer);
    this.timer = null;
    await this.busy.then(() => this.flush()).catch(() => undefined);
  }

  /** Appends every record since the last write. */
  async flush(): Promise<void> {
    const { entries, next, missed } = this.log.since(this.next, 1 << 20);
    this.next = next;
    if (entries.length === 0 && missed === 0) return;
    const anonymous = this.log.settings.privacy !== 'full';
    let text = missed > 0 ? JSON.stringify({ at: this.d.clock.wall(), missed }) + '\n' : '';
    for (const e of entries) {
      if (!anonymous && this.d.names !== null) e.clientName = this.d.names(e.client);
      text += JSON.stringify(e) + '\n';
    }
    const t = this.target;
    if (this.size < 0) this.size = await this.d.fs.size(t.path);
    if (this.size > 0 && this.size + Buffer.byteLength(text) > t.maxBytes) {
      for (let i = t.keep - 1; i >= 1; i--) await this.d.fs.rename(`${t.path}.${i}`, `${t.path}.${i + 1}`);
      await this.d.fs.rename(t.path, `${t.path}.1`);
      this.size = 0;
    }
    await this.d.fs.append(t.path, text);
    this.size += Buffer.byteLength(text);
  }
}
