// The query log as the daemon runs it: the ring (one for every resolver a
// reload makes), the client names, the optional file, all following
// `queryLog:` of the config. One object so the composition root wires it in
// a few lines.
import type { Config } from '../config/types.js';
import type { Clock, Logger } from '../lib/logger.js';
import { QueryLog } from '../dns/query-log.js';
import { ClientNames, nodeClientNamesFs } from './client-names.js';
import { nodeLogFileFs, QueryLogFile, type LogFileFs } from './query-log-file.js';
import { ListRefreshBook } from './rules-report.js';

export class QueryLogService {
  readonly log: QueryLog;
  readonly names: ClientNames;
  /** The last download of each URL list, for the rules page. */
  readonly refreshes = new ListRefreshBook();
  private file: QueryLogFile | null = null;

  constructor(private readonly d: { clock: Clock; logger: Logger; readFile?: (path: string) => Promise<string | null>; fs?: LogFileFs }) {
    // Off until the config says otherwise (configure runs before the resolver serves).
    this.log = new QueryLog(d.clock, { privacy: 'off', size: 0 });
    this.names = new ClientNames([], { readFile: d.readFile ?? nodeClientNamesFs, clock: d.clock });
  }

  /** The name of a client, unless privacy hides it. */
  readonly clientName = (address: string): string | null => (this.log.settings.privacy === 'full' ? this.names.name(address) : null);

  configure(c: Config): void {
    const q = c.queryLog;
    this.log.configure({ privacy: q.privacy, size: q.size });
    this.names.setFiles(q.clientNames);
    const target = q.privacy === 'off' ? null : q.file;
    if (target === null) {
      const f = this.file;
      this.file = null;
      void f?.stop();
    } else if (this.file === null) {
      this.file = new QueryLogFile(this.log, target, { fs: this.d.fs ?? nodeLogFileFs, clock: this.d.clock, logger: this.d.logger, names: this.clientName });
      this.file.start();
    } else this.file.setTarget(target);
  }

  async close(): Promise<void> {
    const f = this.file;
    this.file = null;
    await f?.stop();
  }
}
