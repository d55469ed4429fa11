import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Env } from '@app/config';
import { PrometheusServer } from '@app/health';
import { WorkerMetrics } from './worker-metrics.service';

/** The worker's /metrics on WORKER_METRICS_PORT; nothing is served when it is unset. */
@Injectable()
export class WorkerMetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Metrics');
  readonly server: PrometheusServer;

  constructor(
    private readonly env: Env,
    metrics: WorkerMetrics,
  ) {
    this.server = new PrometheusServer(metrics.registry);
  }

  async onApplicationBootstrap(): Promise<void> {
    if (this.env.WORKER_METRICS_PORT === undefined) return;
    await this.server.listen(this.env.WORKER_METRICS_PORT, this.env.HOST);
    this.logger.log(`worker metrics on http://${this.env.HOST}:${this.server.port}/metrics`);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.server.close();
  }
}
