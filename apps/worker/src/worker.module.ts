import { Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { ComfyUiClientFactory } from '@app/comfyui';
import { workerHeartbeatStoreProvider } from '@app/health';
import { ConfigModule, Env } from '@app/config';
import { bullConnectionFor } from '@app/queue';
import { StorageModule } from '@app/storage';
import { webhookDnsLookupProvider } from '@app/webhooks';
import { WorkflowsModule } from '@app/workflows';
import { JobsModule } from '@app/jobs';
import { EditInputs } from './generation/edit-inputs';
import { GenerationProcessor } from './generation/generation.processor';
import { GenerationWorkerPool } from './generation/generation-worker.pool';
import { GpuReadiness } from './generation/gpu-readiness';
import { WorkerActivity } from './heartbeat/worker-activity';
import { WorkerHeartbeatService } from './heartbeat/worker-heartbeat.service';
import { WorkerMetrics } from './metrics/worker-metrics.service';
import { WorkerMetricsServer } from './metrics/worker-metrics-server';
import { WebhookProcessor } from './webhooks/webhook.processor';

/** The worker process: the only place that provides processors. */
@Module({})
export class WorkerModule {
  static forRoot(env: Env) {
    return {
      module: WorkerModule,
      imports: [
        ConfigModule.forRoot(env),
        WorkflowsModule,
        StorageModule.forRoot(),
        BullModule.forRoot({
          connection: bullConnectionFor(env, 'worker'),
          prefix: env.QUEUE_PREFIX,
        }),
        // The owner of every job's state and transitions (libs/jobs); registers the queues.
        JobsModule,
      ],
      providers: [
        ComfyUiClientFactory, EditInputs, GenerationProcessor, GpuReadiness, GenerationWorkerPool, WebhookProcessor, webhookDnsLookupProvider,
        // After the pool (they attach to its workers when they bootstrap): heartbeat and metrics.
        WorkerActivity, workerHeartbeatStoreProvider, WorkerHeartbeatService, WorkerMetrics, WorkerMetricsServer,
      ],
      exports: [GenerationWorkerPool],
    };
  }
}
