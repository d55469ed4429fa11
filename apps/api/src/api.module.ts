import { DynamicModule, Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { TerminusModule } from '@nestjs/terminus';
import { ConfigModule, Env } from '@app/config';
import { ComfyUiHealthIndicator, RedisHealthIndicator } from '@app/health';
import { bullConnection, QueueName } from '@app/queue';
import { StorageModule } from '@app/storage';
import { WorkflowsModule } from '@app/workflows';
import { HealthController } from './health/health.controller';
import { GenerateController } from './jobs/generate.controller';
import { JobEventsController } from './jobs/job-events.controller';
import { JobEventsService } from './jobs/job-events.service';
import { JobsController } from './jobs/jobs.controller';
import { IdempotencyService } from './jobs/idempotency.service';
import { JobsService } from './jobs/jobs.service';
import { WebhookUrlPolicy } from './jobs/webhook-url.policy';
import { ModelsController } from './models/models.controller';
import { ModelsService } from './models/models.service';

@Module({})
export class ApiModule {
  static forRoot(env: Env): DynamicModule {
    return {
      module: ApiModule,
      imports: [
        ConfigModule.forRoot(env),
        WorkflowsModule,
        StorageModule.forRoot(),
        // Fail fast while Redis is away (503), instead of queueing commands and hanging requests.
        BullModule.forRoot({
          connection: bullConnection(env.REDIS_URL, 'producer'),
          prefix: env.QUEUE_PREFIX,
        }),
        BullModule.registerQueue({ name: QueueName.Generation }),
        TerminusModule,
      ],
      controllers: [GenerateController, JobsController, JobEventsController, ModelsController, HealthController],
      providers: [JobsService, JobEventsService, IdempotencyService, WebhookUrlPolicy, ModelsService, RedisHealthIndicator, ComfyUiHealthIndicator],
    };
  }
}
