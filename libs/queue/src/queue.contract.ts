import type { Job, JobsOptions } from 'bullmq';

/** Queue names. Never rename a deployed value: workers and producers meet on it in Redis. */
export enum QueueName {
  Generation = 'generation',
  Webhook = 'webhook',
}

/**
 * The queue of one model's generation jobs: the default model keeps `generation` (what was
 * deployed before routing existed), every other model has `generation-<model id>`. A worker
 * consumes only the queues of the models its ComfyUI has the files of.
 */
export function generationQueueName(model: string, defaultModel: string): string {
  return model === defaultModel ? QueueName.Generation : `${QueueName.Generation}-${model}`;
}

/** Job names, one per kind of work; the map below ties each to its payload and result. */
export enum JobName {
  Generate = 'generate',
  DeliverWebhook = 'deliver-webhook',
}

export const OUTPUT_FORMATS = ['png', 'webp', 'jpeg'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export const ASPECT_RATIOS = ['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3'] as const;
export type AspectRatio = (typeof ASPECT_RATIOS)[number];

/**
 * Public generation parameters after defaults and limits of the model were applied. Everything
 * that changes the stored bytes is here: the result cache keys on the whole object.
 */
export interface GenerationParams {
  model: string;
  prompt: string;
  negative_prompt: string;
  width: number;
  height: number;
  num_inference_steps: number;
  guidance_scale: number;
  seed: number;
  /** Images of one ComfyUI run (the latent's batch size). Absent in jobs queued before it existed: 1. */
  num_images?: number;
  /** Absent in jobs queued before it existed: png. */
  output_format?: OutputFormat;
  /** jpeg/webp only. */
  output_quality?: number;
  /** The ratio width/height were resolved from, when the client asked by ratio (reported back). */
  aspect_ratio?: AspectRatio;
  /** Absent: text-to-image. Otherwise the job's data carries `inputs`. */
  mode?: 'img2img' | 'inpaint';
  /** 0..1, how much of the input image changes; only with a mode. */
  strength?: number;
}

/**
 * Where an input image of an edit lives until the worker uploads it to ComfyUI: in the result store
 * (an upload or a data: URL the API checked), or at an https URL the worker fetches through the SSRF
 * guard. Never the bytes themselves: a BullMQ job stays small.
 */
export type InputImageRef = { kind: 'stored'; id: string } | { kind: 'url'; url: string };

export interface GenerationInputs {
  image: InputImageRef;
  mask?: InputImageRef;
  /** The output size follows the input's, known only once the worker has fetched a URL input. */
  size_from_input?: boolean;
}

export type WebhookEvent = 'running' | 'succeeded' | 'failed' | 'canceled';
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = ['running', 'succeeded', 'failed', 'canceled'];
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEvent[] = ['succeeded', 'failed', 'canceled'];

export interface GenerationJobData {
  params: GenerationParams;
  /** Id of the API key that owns the job; absent when the server runs open. Never the key itself. */
  owner?: string;
  webhook?: { url: string; events: WebhookEvent[] };
  metadata?: Record<string, string>;
  /** The image (and mask) of an img2img or inpaint job. */
  inputs?: GenerationInputs;
  /** Epoch ms when the API accepted the job. */
  submitted_at: number;
  request_id?: string;
  /** Public origin the API was reached at; absolute links (webhook payloads) use it when PUBLIC_BASE_URL is unset. */
  base_url?: string;
  /** Result-cache key of this request (explicit seed, cache on): its success is indexed under it. */
  cache_key?: string;
}

export interface StoredImageRef {
  index: number;
  key: string;
  content_type: string;
  bytes: number;
  sha256: string;
  width: number;
  height: number;
}

export interface JobTimings {
  /** accepted → ComfyUI started its prompt (last attempt; a prompt held in ComfyUI's queue is still queued). */
  queue_ms: number;
  /** ComfyUI execution as ComfyUI timed it (execution_start → execution_success), when known. */
  comfyui_ms?: number;
  /** ComfyUI started the prompt → outputs stored. */
  execution_ms: number;
  /** accepted → result recorded. */
  total_ms: number;
}

export interface GenerationResult {
  images: StoredImageRef[];
  seed: number;
  model: string;
  prompt_id: string;
  comfyui: string;
  timings: JobTimings;
  warnings?: string[];
  /** Set on a result answered from the cache: the job whose stored images these are. */
  source_job_id?: string;
}

/** Progress as the processor reports it with job.updateProgress (and SSE streams it). */
export interface GenerationProgress {
  step: number;
  total_steps: number;
  fraction: number;
  /** ComfyUI prompt id in flight for this job, so a recovering worker can re-attach to it. */
  prompt_id?: string;
  comfyui?: string;
  started_at?: number;
  /**
   * The prompt is in ComfyUI's queue behind another one (pipelined dispatch) and has not started:
   * the job still shows as queued. Cleared when ComfyUI starts executing it.
   */
  held?: boolean;
}

export interface WebhookJobData {
  job_id: string;
  event: WebhookEvent;
  /** Stable per event: the same for every retry (receivers deduplicate on it). */
  webhook_id: string;
  url: string;
  /** The event body, serialised once so every attempt signs the same bytes. */
  body: string;
}

export interface WebhookJobResult {
  status: number;
  attempts: number;
}

/** Backoff type of webhook jobs: the webhook worker's backoffStrategy reads WEBHOOK_RETRY_SCHEDULE_MS. */
export const WEBHOOK_BACKOFF_TYPE = 'webhook-schedule';

export interface WebhookJobOptionsInput {
  generationJobId: string;
  event: WebhookEvent;
  /** The first attempt plus one per retry-schedule entry. */
  attempts: number;
  resultTtlSeconds: number;
}

/**
 * The one place where webhook job options are decided. The id is deterministic per job and event:
 * a generation job that runs again after a crash cannot enqueue the same event twice.
 */
export function webhookJobOptions(o: WebhookJobOptionsInput): JobsOptions {
  return {
    jobId: `wh-${o.generationJobId}-${o.event}`,
    attempts: o.attempts,
    backoff: { type: WEBHOOK_BACKOFF_TYPE },
    removeOnComplete: { age: o.resultTtlSeconds },
    removeOnFail: { age: o.resultTtlSeconds },
  };
}

/** One typed map from job name to payload and result: producer and processor cannot disagree. */
export interface JobMap {
  [JobName.Generate]: { data: GenerationJobData; result: GenerationResult };
  [JobName.DeliverWebhook]: { data: WebhookJobData; result: WebhookJobResult };
}
export type JobDataOf<N extends JobName> = JobMap[N]['data'];
export type JobResultOf<N extends JobName> = JobMap[N]['result'];

/** Lowest number = served first (BullMQ priorities run 1..2_097_151). Every job gets one explicitly. */
export const DEFAULT_PRIORITY = 100;

export interface GenerationJobOptionsInput {
  jobId: string;
  priority?: number;
  attempts: number;
  backoffMs: number;
  resultTtlSeconds: number;
}

/** The one place where generation job options are decided. */
export function generationJobOptions(o: GenerationJobOptionsInput): JobsOptions {
  return {
    jobId: o.jobId,
    priority: o.priority ?? DEFAULT_PRIORITY,
    attempts: o.attempts,
    backoff: { type: 'exponential', delay: o.backoffMs, jitter: 0.5 },
    // The job record lives as long as its images; failures a little longer for debugging.
    removeOnComplete: { age: o.resultTtlSeconds },
    removeOnFail: { age: o.resultTtlSeconds },
  };
}

/** A generation job as workers hold it, typed through the job map. */
export type GenerationJob = Job<JobDataOf<JobName.Generate>, JobResultOf<JobName.Generate>>;

/** Why a running job's AbortSignal fired: the user canceled it, or its worker is shutting down. */
export enum AbortReason {
  Canceled = 'canceled',
  Shutdown = 'shutdown',
}
