import { DynamicModule, Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { ComfyUiClientFactory } from '@app/comfyui';
import { ConfigModule, Env } from '@app/config';
import { QueueName } from '@app/queue';
import type { Redis } from 'ioredis';
import { REDIS_CLIENT, StorageModule } from '@app/storage';
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
import { PlaygroundModule } from './playground/playground.module';
import { SignedImagesController } from './jobs/signed-images.controller';
import { SignedLinks } from './jobs/signed-links.service';
import { OPENAI_CONTROLLERS, OPENAI_PROVIDERS } from './openai';

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
        // The API's queues only add and read: they share the process's fail-fast client. BullMQ never
        // QUITs a shared connection, so closing a queue while Redis is away cannot fail the shutdown
        // (ioredis refuses QUIT on a reconnecting fail-fast connection); StorageModule closes the client.
        BullModule.forRootAsync({
          inject: [REDIS_CLIENT],
          useFactory: (client: Redis) => ({ connection: client, prefix: env.QUEUE_PREFIX }),
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
        // GET /playground: the page to try it in a browser.
        PlaygroundModule,
      ],
      controllers: [GenerateController, JobsController, JobEventsController, ModelsController, UploadsController, SignedImagesController, ...OPENAI_CONTROLLERS],
      providers: [JobsService, InputImagesService, IdempotencyService, WebhookUrlPolicy, webhookHostResolverProvider, ModelsService, ComfyUiClientFactory, SignedLinks, ...OPENAI_PROVIDERS],
    };
  }
}
