export * from './queue.contract';
export * from './redis-keys';
export * from './redis-connection';
export * from './job-failure';
export * from './job-events';
export * from './job-resource';
export * from './queue-errors';
export * from './dependency-state';
