import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { ComfyUiClientFactory } from '@app/comfyui';
import {
  ComfyUiHealthIndicator, ComfyUiProbe, FleetMonitor, GpuHealthIndicator, QueueHealthIndicator, RedisHealthIndicator,
  WorkersHealthIndicator,
} from '@app/health';
import { HealthController } from './health.controller';
import { OpsQueuesModule } from './ops-queues.module';
import { ReadinessService } from './readiness.service';
import { ShutdownState } from './shutdown-state';

/** /health, /health/live, /health/ready and the shutdown flag; the probes are shared with /metrics. */
@Module({
  // Terminus would log every failing probe; ReadinessService logs state changes instead.
  imports: [TerminusModule.forRoot({ logger: false }), OpsQueuesModule],
  controllers: [HealthController],
  providers: [
    ShutdownState,
    ReadinessService,
    ComfyUiClientFactory,
    ComfyUiProbe,
    FleetMonitor,
    RedisHealthIndicator,
    ComfyUiHealthIndicator,
    GpuHealthIndicator,
    WorkersHealthIndicator,
    QueueHealthIndicator,
  ],
  exports: [ShutdownState, ComfyUiProbe, FleetMonitor, OpsQueuesModule],
})
export class HealthModule {}
