import { ErrorCode } from '@app/common';
import {
  decodeFailure, type GenerationJobData, type GenerationProgress, type GenerationResult, type JobError, type JobStatus,
  TERMINAL_STATUSES, type WebhookState,
} from '@app/queue';

/** Sampling progress as the job shows it: the last step a GPU reached. */
export interface StepProgress {
  step: number;
  total_steps: number;
}

/**
 * What the service knows about one generation job, as data (epoch ms, no links, no wording). The
 * job owner (JobLifecycle) produces it; the API renders it into the public resource.
 */
export interface JobView {
  id: string;
  status: JobStatus;
  data: GenerationJobData;
  /** 0 = next to run; only while queued. */
  queue_position: number | null;
  progress: StepProgress | null;
  /** Attempts begun so far (a running attempt counts). */
  attempts: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  result: GenerationResult | null;
  error: JobError | null;
  webhook: WebhookState | null;
  /** Answered from an earlier job's result (the result cache) without a GPU run. */
  cached?: boolean;
}

/** A finished job as stored in the result store (RESULT_TTL_SECONDS): data only, never a rendering. */
export interface TerminalRecord {
  v: 1;
  id: string;
  status: Extract<JobStatus, 'succeeded' | 'failed' | 'canceled'>;
  data: GenerationJobData;
  progress: StepProgress | null;
  attempts: number;
  started_at: number | null;
  finished_at: number;
  result: GenerationResult | null;
  error: JobError | null;
  /** A result-cache answer: its images are another job's, which are gone after expires_at. */
  cached?: true;
  /** Epoch ms after which this record must not be served (its images may be gone); absent: the store's TTL. */
  expires_at?: number;
}

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

export function isTerminalRecord(v: unknown): v is TerminalRecord {
  const r = v as Partial<TerminalRecord> | null;
  return !!r && typeof r === 'object' && r.v === 1 && typeof r.id === 'string' && typeof r.status === 'string' && !!r.data && typeof r.data === 'object';
}

export const CANCELED_ERROR: JobError = { code: ErrorCode.Canceled, message: 'The job was canceled' };

/** The BullMQ side of a live job, as read from Redis. */
export interface QueueSnapshot {
  id: string;
  /** BullMQ state: waiting, prioritized, delayed, active, completed, failed, … */
  state: string;
  data: GenerationJobData;
  progress: unknown;
  result: GenerationResult | null | undefined;
  failedReason: string | undefined;
  attemptsMade: number;
  timestamp: number;
  processedOn: number | undefined;
  finishedOn: number | undefined;
  /** The user asked to cancel it (the flag); a worker holding it is about to stop it. */
  cancelRequested: boolean;
  queuePosition: number | null;
}

export function asGenerationProgress(p: unknown): GenerationProgress | undefined {
  if (!p || typeof p !== 'object') return undefined;
  const g = p as Partial<GenerationProgress>;
  return typeof g.step === 'number' && typeof g.total_steps === 'number' ? (g as GenerationProgress) : undefined;
}

/**
 * An active job whose prompt ComfyUI has started (this attempt's start on record, not held). An
 * earlier attempt's start counts until this attempt records its prompt: a stalled job re-attaching
 * to its running prompt stays running.
 */
export function hasStarted(p: unknown): boolean {
  const g = asGenerationProgress(p);
  return !!g && g.started_at !== undefined && g.held !== true;
}

function stepOf(p: GenerationProgress | undefined): StepProgress | null {
  return p ? { step: p.step, total_steps: p.total_steps } : null;
}

/**
 * The status of a job BullMQ still holds and no terminal record exists for. A finished BullMQ job
 * without a record is one no processor saw end (given up after stalls), or one whose record write
 * was lost: its failure reason still says what happened.
 */
export function statusFromQueue(s: Pick<QueueSnapshot, 'state' | 'failedReason' | 'cancelRequested'> & { progress?: unknown }): JobStatus {
  switch (s.state) {
    case 'active':
      // Taken by a worker but its prompt not started by ComfyUI yet (held behind the running one by
      // pipelined dispatch, or about to be submitted): still queued, with no start time.
      return hasStarted(s.progress) ? 'running' : 'queued';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return decodeFailure(s.failedReason).code === ErrorCode.Canceled ? 'canceled' : 'failed';
    default:
      // Queued with the flag set: the API is removing it, or a worker is about to see the flag.
      return s.cancelRequested ? 'canceled' : 'queued';
  }
}

/** The view of a job BullMQ still holds. Timestamps and progress say only what happened. */
export function viewFromQueue(s: QueueSnapshot, webhook: WebhookState | null): JobView {
  const status = statusFromQueue(s);
  const progress = asGenerationProgress(s.progress);
  const steps = s.data.params.num_inference_steps;
  const terminal = isTerminal(status);
  let view: StepProgress | null = null;
  if (status === 'running') view = stepOf(progress) ?? { step: 0, total_steps: steps };
  else if (status === 'succeeded') view = { step: steps, total_steps: steps };
  else if (terminal) view = stepOf(progress);
  let error: JobError | null = null;
  if (status === 'failed') error = decodeFailure(s.failedReason);
  if (status === 'canceled') error = CANCELED_ERROR;
  return {
    id: s.id,
    status,
    data: s.data,
    queue_position: status === 'queued' ? s.queuePosition : null,
    progress: view,
    attempts: s.attemptsMade + (status === 'running' ? 1 : 0),
    created_at: s.data.submitted_at ?? s.timestamp,
    // A queued job has not started, even when an earlier attempt did (it is waiting for a retry).
    started_at: status === 'queued' || (status === 'canceled' && s.state !== 'failed') ? null : progress?.started_at ?? s.processedOn ?? null,
    finished_at: terminal ? s.finishedOn ?? null : null,
    result: status === 'succeeded' ? s.result ?? null : null,
    error,
    webhook,
  };
}

export function viewFromRecord(r: TerminalRecord, webhook: WebhookState | null): JobView {
  return {
    id: r.id,
    status: r.status,
    data: r.data,
    queue_position: null,
    progress: r.progress,
    attempts: r.attempts,
    created_at: r.data.submitted_at,
    started_at: r.started_at,
    finished_at: r.finished_at,
    result: r.status === 'succeeded' ? r.result : null,
    error: r.error,
    webhook,
    cached: r.cached === true,
  };
}
