import type { EventEmitter } from 'node:events';

const watched = new WeakSet<object>();

/**
 * BullMQ prints every reconnect failure of a queue that has no 'error' listener (a multi-line dump
 * a second while Redis is away). Log each distinct error once per outage instead; callers answer
 * 503 meanwhile. Safe to call for the same queue from several places.
 */
export function logQueueErrors(queue: EventEmitter, warn: (message: string) => void): void {
  if (watched.has(queue)) return;
  watched.add(queue);
  let last: string | undefined;
  queue.on('error', (err: Error) => {
    if (err?.message !== last) warn(`queue connection: ${err?.message}`);
    last = err?.message;
  });
}
