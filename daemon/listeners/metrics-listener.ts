// The metrics endpoint (metrics.listen): bound, moved or closed by the config.
// The metrics themselves are made when an endpoint is first configured
// (issue 17: a router without one does not load prom-client); what happened
// before that (failovers, reloads) is not counted.
import type { Config } from '../../config/types.js';
import type { Logger } from '../../lib/logger.js';
import type { Metrics } from '../metrics.js';

export class MetricsListener {
  private at: string | null = null;
  private metrics: Pick<Metrics, 'listen' | 'close'> | null = null;

  constructor(
    /** Makes the metrics (called once, when an endpoint is first configured). */
    private readonly make: () => Pick<Metrics, 'listen' | 'close'>,
    private readonly logger: Logger,
  ) {}

  async serve(c: Config): Promise<void> {
    const want = c.metrics.listen ? `${c.metrics.listen.host}:${c.metrics.listen.port}` : null;
    if (want === this.at) return;
    await this.close();
    if (!c.metrics.listen) return;
    this.metrics ??= this.make();
    await this.metrics.listen(c.metrics.listen.host, c.metrics.listen.port);
    this.at = want;
    this.logger.info({ listen: want }, 'metrics listening');
  }

  async close(): Promise<void> {
    this.at = null;
    await this.metrics?.close();
  }
}
