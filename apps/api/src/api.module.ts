import { DynamicModule, Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { ComfyUiClientFactory } from '@app/comfyui';
import { ConfigModule, Env } from '@app/config';
import { bullConnection, QueueName } from '@app/queue';
import { StorageModule } from '@app/storage';
import { webhookHostResolverProvider } from '@app/webhooks';
import { WorkflowsModule } from '@app/workflows';
import { JobsModule } from '@app/jobs';
import { HealthModule } from './health/health.module';
import { GenerateController } from './jobs/generate.controller';
import { JobEventsController } from './jobs/job-events.controller';
import { JobsController } from './jobs/jobs.controller';
import { IdempotencyService } from './jobs/idempotency.service';
import { JobsService } from './jobs/jobs.service';
import { WebhookUrlPolicy } from './jobs/webhook-url.policy';
import { ModelsController } from './models/models.controller';
import { InputImagesService } from './uploads/input-images.service';
import { UploadsController } from './uploads/uploads.controller';
import { ModelsService } from './models/models.service';
import { LoggingModule } from './logging/logging.module';
import { MetricsModule } from './metrics/metrics.module';
import { SecurityModule } from './security/security.module';

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
        // The owner of every job's state and transitions (libs/jobs).
        JobsModule,
        // Operations (docs/operations.md): JSON logs, /health*, /metrics.
        LoggingModule.forRoot(env),
        HealthModule,
        MetricsModule.forRoot(env),
        // API keys, rate limit, quotas, content policy (docs/security.md).
        SecurityModule.forRoot(),
      ],
      controllers: [GenerateController, JobsController, JobEventsController, ModelsController, UploadsController],
      providers: [JobsService, InputImagesService, IdempotencyService, WebhookUrlPolicy, webhookHostResolverProvider, ModelsService, ComfyUiClientFactory],
    };
  }
}
