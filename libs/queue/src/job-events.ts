export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

/** A live job event on Redis pub/sub; any API instance relays them (SSE, sync wait). */
export type JobEvent =
  | { type: 'status'; job_id: string; status: JobStatus; at: number }
  | { type: 'progress'; job_id: string; step: number; total_steps: number; fraction: number; at: number };

