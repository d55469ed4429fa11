import { Module } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { QueueName } from '@app/queue';

// Their connection errors go to the process's Redis state (ObservedQueue); the redis check reports the outage.
const queues = BullModule.registerQueue({ name: QueueName.Generation }, { name: QueueName.Webhook });

/** The queues that health, metrics and the dashboard read (counts, heads); never used to add jobs. */
@Module({ imports: [queues], exports: [queues] })
export class OpsQueuesModule {}
