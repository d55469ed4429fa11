import { Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { QueueName } from '@app/queue';
import { WebhookEventsService } from './webhook-events.service';

/** The API's side of webhooks: enqueues the events it witnesses (delivery is the worker's). */
@Module({
  imports: [BullModule.registerQueue({ name: QueueName.Webhook })],
  providers: [WebhookEventsService],
  exports: [WebhookEventsService],
})
export class WebhooksModule {}
