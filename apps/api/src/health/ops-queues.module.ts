import { Module, OnModuleInit } from '@nestjs/common';
import { BullModule, InjectQueue } from '@nestjs/bullmq';
import { Queue } from 'bullmq';
import { QueueName } from '@app/queue';

const queues = BullModule.registerQueue({ name: QueueName.Generation }, { name: QueueName.Webhook });

/** The queues that health, metrics and the dashboard read (counts, heads); never used to add jobs. */
@Module({ imports: [queues], exports: [queues] })
export class OpsQueuesModule implements OnModuleInit {
  constructor(
    @InjectQueue(QueueName.Generation) private readonly generation: Queue,
    @InjectQueue(QueueName.Webhook) private readonly webhook: Queue,
  ) {}

  onModuleInit(): void {
    // While Redis is away BullMQ emits connection errors; the redis check reports the outage.
    for (const q of [this.generation, this.webhook]) q.on('error', () => undefined);
  }
}
