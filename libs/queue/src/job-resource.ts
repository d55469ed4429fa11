import { decodeFailure, type JobError } from './job-failure';
import type { JobStatus } from './job-events';
import type { GenerationJobData, GenerationParams, GenerationProgress, GenerationResult, JobTimings } from './queue.contract';

/** The parts of a BullMQ generation job the public resource is made of. */
export interface JobSnapshot {
  id: string;
  /** BullMQ state: waiting, prioritized, delayed, active, completed, failed, … or 'canceled' (ours). */
  state: string;
  data: GenerationJobData;
  progress?: GenerationProgress | number | object | string | boolean;
  result?: GenerationResult | null;
  failedReason?: string;
  attemptsMade: number;
  timestamp: number;
  processedOn?: number;
  finishedOn?: number;
  canceled?: boolean;
  queuePosition?: number | null;
}

export interface ImageLink {
  index: number;
  url: string;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
}

export interface WebhookEventState {
  status: 'pending' | 'delivered' | 'failed' | 'gave_up';
  attempts: number;
  last_status_code?: number | null;
  last_error?: string | null;
  delivered_at?: string | null;
}

export interface WebhookState {
  url: string;
  events: string[];
  deliveries: Record<string, WebhookEventState>;
}

/** The public job resource (snake_case, DESIGN §2). */
export interface JobResource {
  id: string;
  status: JobStatus;
  model: string;
  params: GenerationParams;
  queue_position: number | null;
  progress: { step: number; total_steps: number; fraction: number } | null;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  timings: JobTimings | null;
  images: ImageLink[];
  error: JobError | null;
  metadata: Record<string, string>;
  webhook: WebhookState | null;
  links: { self: string; events: string };
}

export function statusOf(s: Pick<JobSnapshot, 'state' | 'failedReason' | 'canceled'>): JobStatus {
  if (s.canceled || s.state === 'canceled') return 'canceled';
  switch (s.state) {
    case 'active':
      return 'running';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return decodeFailure(s.failedReason).code === 'canceled' ? 'canceled' : 'failed';
    default:
      return 'queued';
  }
}

const iso = (ms?: number) => (ms ? new Date(ms).toISOString() : null);

function progressOf(p: JobSnapshot['progress'], status: JobStatus, params: GenerationParams): JobResource['progress'] {
  if (status === 'succeeded') return { step: params.num_inference_steps, total_steps: params.num_inference_steps, fraction: 1 };
  if (p && typeof p === 'object' && 'step' in p && 'total_steps' in p) {
    const g = p as GenerationProgress;
    return { step: g.step, total_steps: g.total_steps, fraction: g.fraction };
  }
  return status === 'running' ? { step: 0, total_steps: params.num_inference_steps, fraction: 0 } : null;
}

/** Builds the job resource; `baseUrl` is the public API origin ('' for relative links). */
export function buildJobResource(s: JobSnapshot, baseUrl: string, webhook: WebhookState | null = null): JobResource {
  const status = statusOf(s);
  const self = `${baseUrl}/api/v1/images/jobs/${s.id}`;
  const result = status === 'succeeded' ? s.result ?? null : null;
  let error: JobError | null = null;
  if (status === 'failed') error = decodeFailure(s.failedReason);
  if (status === 'canceled') error = { code: 'canceled', message: 'The job was canceled' };
  const progress = s.progress && typeof s.progress === 'object' ? (s.progress as GenerationProgress) : undefined;
  return {
    id: s.id,
    status,
    model: s.data.params.model,
    params: s.data.params,
    queue_position: status === 'queued' ? s.queuePosition ?? null : null,
    progress: progressOf(s.progress, status, s.data.params),
    attempts: s.attemptsMade + (status === 'running' ? 1 : 0),
    created_at: new Date(s.data.submitted_at ?? s.timestamp).toISOString(),
    started_at: iso(progress?.started_at ?? s.processedOn),
    finished_at: status === 'succeeded' || status === 'failed' || status === 'canceled' ? iso(s.finishedOn ?? Date.now()) : null,
    timings: result?.timings ?? null,
    images: (result?.images ?? []).map((img) => ({
      index: img.index,
      url: `${self}/images/${img.index}`,
      content_type: img.content_type,
      width: img.width,
      height: img.height,
      bytes: img.bytes,
      sha256: img.sha256,
    })),
    error,
    metadata: s.data.metadata ?? {},
    webhook,
    links: { self, events: `${self}/events` },
  };
}
