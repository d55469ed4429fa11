import { Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { ConfigModule, Env } from '@app/config';
import { bullConnection, QueueName } from '@app/queue';
import { StorageModule } from '@app/storage';
import { WorkflowsModule } from '@app/workflows';
import { GenerationProcessor } from './generation/generation.processor';
import { GenerationWorkerPool } from './generation/generation-worker.pool';
import { JobNotifier } from './generation/job-notifier';

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
          connection: bullConnection(env.REDIS_URL, 'worker'),
          prefix: env.QUEUE_PREFIX,
        }),
        BullModule.registerQueue({ name: QueueName.Webhook }),
      ],
      providers: [GenerationProcessor, GenerationWorkerPool, JobNotifier],
      exports: [GenerationWorkerPool],
    };
  }
}
