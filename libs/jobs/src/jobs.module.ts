import { Global, Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { QueueName, redisKeysProvider, RedisKeys } from '@app/queue';
import { WebhookEnqueuer, webhookEnqueuerProvider, WebhookStateStore, webhookStateStoreProvider } from '@app/webhooks';
import { GenerationQueues, generationQueuesProvider } from './generation-queues';
import { JobEventBus } from './job-event-bus';
import { JobLifecycle } from './job-lifecycle.service';

/**
 * The job owner and its ports, for the API and the worker alike. Global: imported once by each app's
 * root module, after ConfigModule, StorageModule and BullModule.forRoot.
 */
@Global()
@Module({
  imports: [BullModule.registerQueue({ name: QueueName.Generation }, { name: QueueName.Webhook })],
  providers: [redisKeysProvider, webhookStateStoreProvider, webhookEnqueuerProvider, generationQueuesProvider, JobEventBus, JobLifecycle],
  exports: [RedisKeys, GenerationQueues, WebhookStateStore, WebhookEnqueuer, JobEventBus, JobLifecycle, BullModule],
})
export class JobsModule {}
