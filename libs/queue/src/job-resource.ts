import type { JobError } from './job-failure';
import type { JobStatus } from './job-events';
import type { GenerationParams, JobTimings } from './queue.contract';

export interface ImageLink {
  index: number;
  url: string;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  /**
   * The same image behind a signed, expiring link that needs no API key (an `<img src>`); the API
   * and the webhook payloads add it when the deployment shares a link secret (SIGNED_URL_SECRET or WEBHOOK_SECRET).
   */
  signed_url?: string;
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

/** The public job resource (snake_case, DESIGN §2); rendered only by libs/jobs renderJobResource. */
export interface JobResource {
  id: string;
  status: JobStatus;
  /** True when answered from an earlier job's identical seeded result, without a GPU run. */
  cached: boolean;
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
