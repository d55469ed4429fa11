export * from './queue.contract';
export * from './redis-keys';
