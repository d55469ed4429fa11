import { AsyncLocalStorage } from 'node:async_hooks';

/** The job a piece of worker code runs for; the logger stamps its id on every line logged inside. */
export interface JobContext {
  job_id: string;
}

export const jobContext = new AsyncLocalStorage<JobContext>();

export function runWithJobContext<T>(jobId: string | undefined, fn: () => T): T {
  return jobId ? jobContext.run({ job_id: jobId }, fn) : fn();
}
