import createFetchClient, { type Client } from 'openapi-fetch';
import type { components, paths } from './generated/schema';
import { errorFromBody, errorFromResponse, FicturesError, parseRetryAfter } from './errors';
import { readEventStream } from './sse';

type Schemas = components['schemas'];
export type JobResource = Schemas['JobResourceDto'];
export type JobStatus = Schemas['JobStatus'];
export type JobList = Schemas['JobListDto'];
export type ModelResource = Schemas['ModelResourceDto'];
export type UploadResource = Schemas['UploadResourceDto'];
export type GenerateRequest = Schemas['GenerateImageDto'];
export type CreateJobRequest = Schemas['CreateJobDto'];
export type GenerateImageResponse = Schemas['GenerateImageResponseDto'];
export type JobStatusEvent = Schemas['JobStatusEventDto'];
export type JobProgressEvent = Schemas['JobProgressEventDto'];

export interface ClientOptions {
  /** The server's origin, e.g. `http://127.0.0.1:8000` (no `/api/v1`). */
  baseUrl: string;
  /** An API key `fk_…`; omit for a server without keys. */
  apiKey?: string;
  /** A fetch of your own (tests, proxies, Next.js's fetch); the global one by default. */
  fetch?: typeof fetch;
  /** Retries of a request answered 429 or 503, or lost to the network (default 3). */
  retries?: number;
  /** First backoff without a Retry-After, doubled per retry (default 500 ms). */
  retryBaseMs?: number;
  /** The longest wait between retries, whatever Retry-After says (default 30 s). */
  maxRetryDelayMs?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
}

/** What wait() reports while a job runs: its place in the queue, then its sampling steps. */
export type JobProgress =
  | { stage: 'queued'; position: number | null }
  | { stage: 'running'; step: number; total_steps: number; fraction: number }
  | { stage: 'downloading'; index: number; count: number };

export interface WaitOptions {
  /** Give up after this long (FicturesError `timeout`); default: no limit. */
  timeoutMs?: number;
  onProgress?: (p: JobProgress) => void;
  signal?: AbortSignal;
  /** `sse` (default): the job's event stream, falling back to long-polling if it breaks; `poll`: long-poll only. */
  via?: 'sse' | 'poll';
}

export interface SubmitOptions {
  /** Sent as Idempotency-Key (a fresh UUID by default): every retry of this submission carries the same one. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface DownloadedImage {
  index: number;
  bytes: Uint8Array;
  contentType: string;
  width: number;
  height: number;
  sha256: string;
}

export interface GenerateResult {
  job: JobResource;
  images: DownloadedImage[];
}

const TERMINAL: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];
const RETRY_STATUSES = new Set([429, 503]);
const LONG_POLL_S = 55;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError());
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

const abortError = () => new FicturesError('aborted', 'The operation was aborted', 0);
const isAbort = (e: unknown) => (e instanceof Error && e.name === 'AbortError') || (e instanceof FicturesError && e.code === 'aborted');

/**
 * A fetch that retries answers 429 and 503, and requests lost to the network, with the same
 * request (so the same Idempotency-Key): after Retry-After when the server gave one, else with
 * exponential backoff and jitter.
 */
export function retryingFetch(inner: typeof fetch, o: { retries: number; retryBaseMs: number; maxRetryDelayMs: number }): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined;
      let failure: unknown;
      try {
        res = await inner(request.clone());
      } catch (e) {
        if (isAbort(e) || request.signal?.aborted) throw e;
        failure = e;
      }
      // A request lost on the way may have been acted on: only resent when that cannot do it twice.
      const retryable = res === undefined ? resendable(request) : RETRY_STATUSES.has(res.status);
      if (!retryable || attempt >= o.retries) {
        if (res) return res;
        throw new FicturesError('network_error', `Could not reach ${new URL(request.url).origin}: ${(failure as Error)?.message ?? failure}`, 0, { cause: failure });
      }
      const after = res ? parseRetryAfter(res.headers.get('retry-after')) : undefined;
      const backoff = o.retryBaseMs * 2 ** attempt * (0.5 + Math.random() / 2);
      await res?.body?.cancel().catch(() => undefined);
      await sleep(Math.min(o.maxRetryDelayMs, after !== undefined ? after * 1000 : backoff), request.signal ?? undefined);
    }
  };
}

/** Safe to send again after a network failure: a read or delete, or a submission that carries an Idempotency-Key. */
function resendable(request: Request): boolean {
  return ['GET', 'HEAD', 'DELETE', 'PUT', 'OPTIONS'].includes(request.method) || request.headers.has('idempotency-key');
}

/** The typed client of the Fictures image API. `raw` is the generated openapi-fetch client for any route. */
export class FicturesClient {
  readonly raw: Client<paths>;
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;

  constructor(opts: ClientOptions) {
    if (!opts.baseUrl) throw new FicturesError('invalid_options', 'baseUrl is required', 0);
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.headers = { ...(opts.headers ?? {}), ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}) };
    const base = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.fetchImpl = retryingFetch(base, { retries: opts.retries ?? 3, retryBaseMs: opts.retryBaseMs ?? 500, maxRetryDelayMs: opts.maxRetryDelayMs ?? 30_000 });
    this.raw = createFetchClient<paths>({ baseUrl: this.baseUrl, fetch: this.fetchImpl, headers: this.headers });
  }

  /** Submits a job (POST /api/v1/images/jobs, 202) with an Idempotency-Key, so retries never start a second run. */
  async submit(request: CreateJobRequest, opts: SubmitOptions = {}): Promise<JobResource> {
    const result = await this.raw.POST('/api/v1/images/jobs', {
      body: request,
      params: { header: { 'idempotency-key': opts.idempotencyKey ?? crypto.randomUUID() } },
      signal: opts.signal,
    });
    return this.ok(result);
  }

  /** The job now, or (with `waitSeconds`) once it has ended or after that many seconds. */
  async getJob(id: string, opts: { waitSeconds?: number; signal?: AbortSignal } = {}): Promise<JobResource> {
    const result = await this.raw.GET('/api/v1/images/jobs/{id}', {
      params: { path: { id }, query: opts.waitSeconds !== undefined ? { wait: opts.waitSeconds } : {} },
      signal: opts.signal,
    });
    return this.ok(result);
  }

  /**
   * Resolves with the job once it has ended (succeeded, failed or canceled: look at `status`),
   * reporting its queue position and sampling steps on the way. Follows the job's event stream, and
   * long-polls (`?wait=`) when the stream is unavailable or breaks.
   */
  async wait(jobOrId: string | JobResource, opts: WaitOptions = {}): Promise<JobResource> {
    const id = typeof jobOrId === 'string' ? jobOrId : jobOrId.id;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    if (opts.signal?.aborted) controller.abort();
    opts.signal?.addEventListener('abort', onAbort);
    const timer = opts.timeoutMs !== undefined ? setTimeout(() => controller.abort(new FicturesError('timeout', `Job ${id} did not end within ${opts.timeoutMs} ms`, 0)), opts.timeoutMs) : undefined;
    try {
      if (opts.via !== 'poll') {
        const ended = await this.followEvents(id, controller.signal, opts.onProgress).catch((e: unknown) => {
          if (controller.signal.aborted) throw e;
          // A stream refused for what it is (404, 401) is the answer; a broken one falls back to polling.
          if (e instanceof FicturesError && e.status >= 400 && !RETRY_STATUSES.has(e.status)) throw e;
          return undefined;
        });
        if (ended) return ended;
      }
      return await this.poll(id, controller.signal, opts.onProgress);
    } catch (e) {
      if (controller.signal.aborted && controller.signal.reason instanceof FicturesError) throw controller.signal.reason;
      if (controller.signal.aborted) throw abortError();
      throw e;
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The image bytes of a succeeded job (GET …/images/{index}; redirects to a CDN or signed link are followed). */
  async download(jobOrId: string | JobResource, index = 0, opts: { signal?: AbortSignal } = {}): Promise<DownloadedImage> {
    const job = typeof jobOrId === 'string' ? await this.getJob(jobOrId, opts) : jobOrId;
    const link = job.images.find((i) => i.index === index);
    const result = await this.raw.GET('/api/v1/images/jobs/{id}/images/{index}', {
      params: { path: { id: job.id, index } },
      parseAs: 'arrayBuffer',
      signal: opts.signal,
    });
    const { data, response } = result;
    if (!response.ok || data === undefined) throw errorFromBody(response.status, result.error, parseRetryAfter(response.headers.get('retry-after')), response.headers.get('x-request-id') ?? undefined);
    return {
      index,
      bytes: new Uint8Array(data as ArrayBuffer),
      contentType: response.headers.get('content-type') ?? link?.content_type ?? 'application/octet-stream',
      width: link?.width ?? 0,
      height: link?.height ?? 0,
      sha256: link?.sha256 ?? (response.headers.get('etag') ?? '').replace(/"/g, ''),
    };
  }

  /**
   * submit → wait → download every image. Throws FicturesError with the job's error code when it
   * fails, `canceled` when it is canceled (the job is in `error.job`).
   */
  async generate(request: CreateJobRequest, opts: WaitOptions & SubmitOptions & { onSubmitted?: (job: JobResource) => void } = {}): Promise<GenerateResult> {
    const submitted = await this.submit(request, opts);
    opts.onSubmitted?.(submitted);
    const job = TERMINAL.includes(submitted.status) ? submitted : await this.wait(submitted, opts);
    if (job.status !== 'succeeded') throw jobError(job);
    const images: DownloadedImage[] = [];
    for (const link of job.images) {
      opts.onProgress?.({ stage: 'downloading', index: link.index, count: job.images.length });
      images.push(await this.download(job, link.index, opts));
    }
    return { job, images };
  }

  /** The synchronous route (POST /api/v1/images/generate): one request, images as data: URLs. Not retried on network errors (it has no idempotency key). */
  async generateSync(request: GenerateRequest, opts: { signal?: AbortSignal } = {}): Promise<GenerateImageResponse> {
    const result = await this.raw.POST('/api/v1/images/generate', { body: request, signal: opts.signal });
    return this.ok(result);
  }

  /** Cancels a queued or running job; the job as it then is. */
  async cancel(id: string, opts: { signal?: AbortSignal } = {}): Promise<JobResource> {
    const result = await this.raw.DELETE('/api/v1/images/jobs/{id}', { params: { path: { id } }, signal: opts.signal });
    return this.ok(result);
  }

  /** The caller's jobs, newest first; pass `next_cursor` back as `cursor` for the next page. */
  async listJobs(opts: { limit?: number; cursor?: string; signal?: AbortSignal } = {}): Promise<JobList> {
    const query: { limit?: number; cursor?: string } = {};
    if (opts.limit !== undefined) query.limit = opts.limit;
    if (opts.cursor !== undefined) query.cursor = opts.cursor;
    const result = await this.raw.GET('/api/v1/images/jobs', { params: { query }, signal: opts.signal });
    return this.ok(result);
  }

  async models(opts: { signal?: AbortSignal } = {}): Promise<ModelResource[]> {
    const result = await this.raw.GET('/api/v1/models', { signal: opts.signal });
    return this.ok(result).data;
  }

  /** Uploads an input image (PNG, JPEG or WebP bytes) for img2img or inpainting; pass its id as `image` or `mask`. */
  async upload(bytes: Uint8Array | ArrayBuffer, opts: { contentType?: string; signal?: AbortSignal } = {}): Promise<UploadResource> {
    const body = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const result = await this.raw.POST('/api/v1/uploads', {
      // The route takes the raw bytes: no JSON serialisation.
      body: body as unknown as string,
      bodySerializer: (b: unknown) => b as NonNullable<RequestInit['body']>,
      headers: { 'content-type': opts.contentType ?? sniffImageType(body) },
      signal: opts.signal,
    });
    return this.ok(result);
  }

  /** The data of a 2xx answer, or the FicturesError of the error answer (its code, status, Retry-After). */
  private ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
    const { data, error, response } = result;
    if (response.ok && data !== undefined) return data;
    if (response.ok) throw new FicturesError('bad_response', `HTTP ${response.status} without a body`, response.status);
    throw errorFromBody(response.status, error, parseRetryAfter(response.headers.get('retry-after')), response.headers.get('x-request-id') ?? undefined);
  }

  /** The job's SSE stream until its final `job` event; undefined when the stream ended without one. */
  private async followEvents(id: string, signal: AbortSignal, onProgress?: (p: JobProgress) => void): Promise<JobResource | undefined> {
    const res = await this.fetchImpl(`${this.baseUrl}/api/v1/images/jobs/${encodeURIComponent(id)}/events`, {
      headers: { ...this.headers, accept: 'text/event-stream' },
      signal,
    });
    if (!res.ok || !res.body) throw await errorFromResponse(res);
    for await (const ev of readEventStream(res.body, signal)) {
      let data: unknown;
      try {
        data = JSON.parse(ev.data);
      } catch {
        continue;
      }
      if (ev.event === 'status') {
        const s = data as JobStatusEvent;
        if (s.status === 'queued') onProgress?.({ stage: 'queued', position: s.queue_position });
        else if (s.status === 'running') onProgress?.({ stage: 'running', step: s.progress?.step ?? 0, total_steps: s.progress?.total_steps ?? 0, fraction: s.progress?.fraction ?? 0 });
      } else if (ev.event === 'progress') {
        const p = data as JobProgressEvent;
        onProgress?.({ stage: 'running', step: p.step, total_steps: p.total_steps, fraction: p.fraction });
      } else if (ev.event === 'job') {
        return data as JobResource;
      }
    }
    return undefined;
  }

  private async poll(id: string, signal: AbortSignal, onProgress?: (p: JobProgress) => void): Promise<JobResource> {
    let job = await this.getJob(id, { signal });
    for (;;) {
      report(job, onProgress);
      if (TERMINAL.includes(job.status)) return job;
      // Queued: a short wait, so the position is reported as it moves; running: until it ends.
      job = await this.getJob(id, { waitSeconds: job.status === 'queued' ? 2 : LONG_POLL_S, signal });
    }
  }
}

function report(job: JobResource, onProgress?: (p: JobProgress) => void): void {
  if (job.status === 'queued') onProgress?.({ stage: 'queued', position: job.queue_position });
  else if (job.status === 'running' && job.progress) onProgress?.({ stage: 'running', ...job.progress });
}

/** The FicturesError of a job that ended without images. */
export function jobError(job: JobResource): FicturesError {
  if (job.status === 'canceled') return new FicturesError('canceled', `Job ${job.id} was canceled`, 0, { job });
  return new FicturesError(job.error?.code ?? 'job_failed', job.error?.message ?? `Job ${job.id} ${job.status}`, 0, { job });
}

function sniffImageType(b: Uint8Array): string {
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45) return 'image/webp';
  return 'application/octet-stream';
}

export function createClient(opts: ClientOptions): FicturesClient {
  return new FicturesClient(opts);
}
