import { createHash, randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { inspectInputImage, sniffImageType } from '@app/storage';
import { WorkflowRegistry } from '@app/workflows';
import { ApiError } from '../common/api-error';
import { CreateJobDto } from '../jobs/dto/create-job.dto';
import { canonical, IdempotencyService } from '../jobs/idempotency.service';
import { type Caller, JobsService } from '../jobs/jobs.service';
import { Base64 } from '../jobs/json-with-data-urls';
import type { OpenAiEditImageDto, OpenAiGenerateImageDto, OpenAiImageOptionsDto } from './dto/openai-image-request.dto';
import type { OpenAiImageDataDto, OpenAiImagesResponseDto } from './dto/openai-responses.dto';
import { fieldProblem, maskFromOpenAi, openAiSize, openAiSteps } from './openai-mapping';

/** The answer as built: each b64_json a Base64, sent as its string (see sendJsonWithImages). */
export type OpenAiImagesAnswer = Omit<OpenAiImagesResponseDto, 'data'> & { data: (Omit<OpenAiImageDataDto, 'b64_json'> & { b64_json?: Base64 })[] };

export type OpenAiRoute = 'generations' | 'edits';

/** An edit's files as the multipart body carried them. */
export interface OpenAiEditFiles {
  image: Buffer;
  mask?: Buffer;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function dataUrl(bytes: Buffer): string {
  // A type the sniffer does not know is still sent as png: the common check then says invalid_image.
  return `data:${sniffImageType(bytes) ?? 'image/png'};base64,${bytes.toString('base64')}`;
}

/**
 * The OpenAI Images API over this server's jobs: a request is mapped to native parameters and
 * submitted through JobsService.submit (validation, content policy, quotas, result cache, capacity),
 * then awaited like POST /api/v1/images/generate. A retry of the same request (same Idempotency-Key,
 * or the same key and body within OPENAI_DEDUPE_WINDOW_SECONDS) attaches to the first one's job.
 */
@Injectable()
export class OpenAiImagesService {
  private readonly logger = new Logger('OpenAiImages');

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
    private readonly jobs: JobsService,
    private readonly idempotency: IdempotencyService,
  ) {}

  /** `onJob` learns the job id as soon as it is known (the X-Job-Id header). */
  async generate(dto: OpenAiGenerateImageDto, caller: Caller, base: string, idempotencyKey: string | undefined, onJob: (jobId: string) => void): Promise<OpenAiImagesAnswer> {
    const native = this.toNative(dto);
    const jobId = await this.runOnce('generations', { ...dto }, native, caller, base, idempotencyKey);
    onJob(jobId);
    return this.respond(jobId, dto, caller, base);
  }

  async edit(dto: OpenAiEditImageDto, files: OpenAiEditFiles, caller: Caller, base: string, idempotencyKey: string | undefined, onJob: (jobId: string) => void): Promise<OpenAiImagesAnswer> {
    let mask: Buffer | undefined;
    if (files.mask) {
      // The same checks as every input (type sniffed, decoded, size caps) before the mask is read.
      await inspectInputImage(files.mask, 'mask');
      mask = await maskFromOpenAi(files.mask);
    }
    const native = this.toNative(dto, { image: dataUrl(files.image), ...(mask ? { mask: dataUrl(mask) } : {}) });
    const fingerprint = { ...dto, image_sha256: sha256(files.image), ...(files.mask ? { mask_sha256: sha256(files.mask) } : {}) };
    const jobId = await this.runOnce('edits', fingerprint, native, caller, base, idempotencyKey);
    onJob(jobId);
    return this.respond(jobId, dto, caller, base);
  }

  /** OpenAI's fields as the native request; what has no native meaning is refused or dropped here, never guessed. */
  private toNative(dto: OpenAiImageOptionsDto & { strength?: number }, edit?: { image: string; mask?: string }): CreateJobDto {
    const model = dto.model ?? this.workflows.defaultId;
    if (!this.workflows.get(model)) {
      throw new DomainError(ErrorCode.UnknownModel, `The model '${model}' does not exist; GET /v1/models lists the models`, { model });
    }
    if (dto.background === 'transparent') {
      throw fieldProblem('background', `background transparent is not supported: model ${model} renders opaque images (use auto or opaque)`);
    }
    if (dto.stream === true) throw new ApiError(ErrorCode.NotSupported, 'stream is not supported: the answer comes when the images are ready', { field: 'stream' });
    const format = dto.output_format ?? 'png';
    const user = dto.safety_identifier ?? dto.user;
    const native: Partial<CreateJobDto> = {
      prompt: dto.prompt,
      negative_prompt: dto.negative_prompt,
      model,
      ...openAiSize(this.workflows, model, dto.size),
      num_inference_steps: openAiSteps(this.workflows, model, dto.quality),
      num_images: dto.n,
      seed: dto.seed,
      output_format: format,
      // OpenAI's 0–100 against our 1–100; png is lossless, so a compression for it means nothing.
      output_quality: format !== 'png' && dto.output_compression !== undefined ? Math.max(1, dto.output_compression) : undefined,
      metadata: user !== undefined ? { openai_user: user } : undefined,
      ...(edit ? { image: edit.image, mask: edit.mask, strength: dto.strength } : {}),
    };
    const out = new CreateJobDto();
    for (const [k, v] of Object.entries(native)) if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
    return out;
  }

  /**
   * The job of this request: a new one, or the job of the same request made before (a retry after a
   * timeout or a 5xx), which is then only awaited. A request refused before its job existed frees its claim.
   */
  private async runOnce(route: OpenAiRoute, fingerprint: object, native: CreateJobDto, caller: Caller, base: string, idempotencyKey?: string): Promise<string> {
    const body = { openai: route, body: fingerprint };
    const newJobId = randomUUID();
    const window = this.env.OPENAI_DEDUPE_WINDOW_SECONDS;
    const exists = (id: string): Promise<boolean> => this.jobs.claimedJobExists(id, caller, base);
    const claim =
      idempotencyKey !== undefined ? await this.idempotency.claim(caller.owner, idempotencyKey, body, newJobId, undefined, exists)
      : window > 0 ? await this.idempotency.claim(caller.owner, `openai-window:${sha256(canonical(body))}`, body, newJobId, window, exists)
      : undefined;
    const user = native.metadata?.openai_user;
    if (claim?.kind === 'replay') {
      await this.jobs.getReplayed(claim.jobId, caller, base);
      this.logger.log({ request_id: caller.requestId, job_id: claim.jobId, msg: `openai ${route}: a repeated request attaches to its job`, ...(user ? { openai_user: user } : {}) });
      return claim.jobId;
    }
    try {
      await this.jobs.submit(native, caller, { jobId: newJobId, requestBase: base, requireCapacity: true });
    } catch (e) {
      await claim?.release();
      throw e;
    }
    this.logger.log({ request_id: caller.requestId, job_id: newJobId, msg: `openai ${route}`, ...(user ? { openai_user: user } : {}) });
    return newJobId;
  }

  private async respond(jobId: string, dto: OpenAiImageOptionsDto, caller: Caller, base: string): Promise<OpenAiImagesAnswer> {
    if (!(await this.jobs.waitForEnd(jobId, this.env.SYNC_TIMEOUT_MS))) {
      throw new ApiError(
        ErrorCode.SyncTimeout,
        `The image is not ready after ${this.env.SYNC_TIMEOUT_MS} ms; the same request again waits for the same job (or poll /api/v1/images/jobs/${jobId})`,
        { job_id: jobId },
        { 'Retry-After': '1' },
      );
    }
    const { view, resource } = await this.jobs.succeeded(jobId, caller, base, { job_id: jobId });
    // One read of the job serves the answer and its images; b64 images are fetched side by side.
    const data: OpenAiImagesAnswer['data'] =
      dto.response_format === 'url'
        ? resource.images.map((link) => ({ url: link.signed_url ?? link.url, revised_prompt: null }))
        : await Promise.all(resource.images.map(async (link) => ({ b64_json: new Base64((await this.jobs.imageOfView(view, link.index)).bytes), revised_prompt: null })));
    if (!data.length) throw new ApiError(ErrorCode.InternalError, 'The job succeeded without an image', { job_id: jobId });
    const first = resource.images[0];
    return {
      created: Math.floor(Date.parse(resource.created_at) / 1000),
      data,
      size: `${first.width}x${first.height}`,
      output_format: resource.params.output_format ?? 'png',
      quality: dto.quality === 'low' ? 'low' : dto.quality === 'high' || dto.quality === 'hd' ? 'high' : 'medium',
      background: 'opaque',
    };
  }
}
