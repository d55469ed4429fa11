import type { GenerationResult, JobStatus } from '@app/queue';

/**
 * What the job owner tells the rest of its process (metrics, heartbeats) when a job moves. Remote
 * processes learn the same through the JobEventBus; these carry more (timings, the GPU) and never
 * leave the process.
 */
export type JobTransition =
  | { kind: 'queued'; jobId: string; model: string; at: number }
  | { kind: 'running'; jobId: string; model: string; at: number; comfyui: string; attempt: number; queueMs: number }
  | { kind: 'progress'; jobId: string; model: string; at: number; comfyui: string; step: number; totalSteps: number }
  /** Back to the queue: a failed attempt to be retried, ComfyUI found down, or this worker shutting down. */
  | { kind: 'requeued'; jobId: string; model: string; at: number; comfyui?: string; reason: 'retry' | 'comfyui_down' | 'shutdown'; code?: string }
  | {
      kind: 'ended';
      jobId: string;
      model: string;
      at: number;
      status: Extract<JobStatus, 'succeeded' | 'failed' | 'canceled'>;
      /** The GPU it ended on; absent when it never reached one (canceled while queued). */
      comfyui?: string;
      code?: string;
      result?: GenerationResult;
      /** Answered from the result cache: no GPU ran it. */
      cached?: true;
    };
