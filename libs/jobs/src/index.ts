export * from './job-view';
export * from './job-resource';
export * from './job-transitions';
export * from './job-event-bus';
export * from './generation-queues';
export * from './job-lifecycle.service';
export * from './jobs.module';
export * from './result-cache-key';
