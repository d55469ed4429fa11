import type { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';
import { BullModule } from '@nestjs/bullmq';
import { Queue, type QueueOptions } from 'bullmq';
import { watchBullMq } from './dependency-state';

/**
 * Routes a queue's errors through the process's Redis state: an outage is one line when it
 * starts and one when it ends, whatever the number of queues and reconnects. Errors that are not
 * about the connection go to `warn`, each distinct message once in a row. Safe to call for the
 * same queue from several places (the first call wins).
 */
export function logQueueErrors(queue: EventEmitter & { getBackend?: () => unknown }, warn: (message: string) => void): void {
  let last: string | undefined;
  watchBullMq(queue, (err) => {
    if (err.message !== last) warn(`queue error: ${err.message}`);
    last = err.message;
  });
}

/**
 * The queue class @nestjs/bullmq instantiates. BullMQ dumps a multi-line stack for every 'error'
 * that finds no listener, and a queue's first reconnect errors come before any service that
 * injects it exists (the shared Redis client waits up to 5 s for Redis first): only a listener
 * installed in the constructor sees them all.
 */
export class ObservedQueue extends Queue {
  constructor(name: string, opts?: QueueOptions) {
    super(name, opts);
    const logger = new Logger(`Queue ${name}`);
    logQueueErrors(this, (m) => logger.warn(m));
  }
}

// registerQueue() reads the class when it is called, often while a module file is imported; every
// such call names a QueueName from this lib, so this line has run by then.
BullModule.queueClass = ObservedQueue;
