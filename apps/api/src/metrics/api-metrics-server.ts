import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Env } from '@app/config';
import { PrometheusServer } from '@app/health';
import { ApiMetrics } from './api-metrics.service';

/** /metrics on METRICS_PORT, away from the public port (only provided when METRICS_PORT is set). */
@Injectable()
export class ApiMetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Metrics');
  readonly server: PrometheusServer;

  constructor(
    private readonly env: Env,
    metrics: ApiMetrics,
  ) {
    this.server = new PrometheusServer(metrics.registry);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.server.listen(this.env.METRICS_PORT ?? 0, this.env.HOST);
    this.logger.log(`metrics on http://${this.env.HOST}:${this.server.port}/metrics`);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.server.close();
  }
}
