import { DynamicModule, Module } from '@nestjs/common';
import { Env } from '@app/config';
import { HealthModule } from '../health/health.module';
import { ApiMetricsServer } from './api-metrics-server';
import { ApiMetrics } from './api-metrics.service';
import { JobCounters } from './job-counters';
import { MetricsController } from './metrics.controller';
import { RedisMemoryProbe } from './redis-memory';

/** Prometheus metrics of the API: GET /metrics on the public port, or on METRICS_PORT when set. */
@Module({})
export class MetricsModule {
  static forRoot(env: Env): DynamicModule {
    const ownPort = env.METRICS_PORT !== undefined;
    return {
      module: MetricsModule,
      imports: [HealthModule],
      controllers: ownPort ? [] : [MetricsController],
      providers: [ApiMetrics, RedisMemoryProbe, JobCounters, ...(ownPort ? [ApiMetricsServer] : [])],
      // RedisMemoryProbe: also the submissions' admission control (jobs.service.ts), so both share one cached INFO.
      exports: [ApiMetrics, RedisMemoryProbe],
    };
  }
}
