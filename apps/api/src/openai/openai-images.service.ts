import { createHash, randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import sharp from 'sharp';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { inspectInputImage, sniffImageType } from '@app/storage';
import { WorkflowRegistry } from '@app/workflows';
import { ApiError, STATUS_BY_CODE } from '../common/api-error';
import { CreateJobDto } from '../jobs/dto/create-job.dto';
import { canonical, IdempotencyService } from '../jobs/idempotency.service';
import { type Caller, JobsService } from '../jobs/jobs.service';
import type { OpenAiEditImageDto, OpenAiGenerateImageDto, OpenAiImageOptionsDto, OpenAiQuality } from './dto/openai-image-request.dto';
import type { OpenAiImagesResponseDto } from './dto/openai-responses.dto';

export type OpenAiRoute = 'generations' | 'edits';

/** An edit's files as the multipart body carried them. */
export interface OpenAiEditFiles {
  image: Buffer;
  mask?: Buffer;
}

const problem = (field: string, message: string) => new DomainError(ErrorCode.ValidationFailed, message, [{ field, message }]);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/**
 * OpenAI's mask: transparent pixels (alpha 0) are the ones to edit. Ours: white = repaint. A mask
 * with transparency becomes its inverted alpha as a grey PNG; one without is taken as ours. Runs
 * after the common checks (decoded, ≤ 4096 px), so its cost is bounded.
 */
export async function maskFromOpenAi(bytes: Buffer): Promise<Buffer> {
  const meta = await sharp(bytes).metadata();
  if (!meta.hasAlpha) return bytes;
  const { data, info } = await sharp(bytes).ensureAlpha().extractChannel(3).raw().toBuffer({ resolveWithObject: true });
  if (data.every((a) => a === 255)) return bytes;
  for (let i = 0; i < data.length; i++) data[i] = 255 - data[i];
  return sharp(data, { raw: { width: info.width, height: info.height, channels: 1 } }).png().toBuffer();
}

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
  async generate(dto: OpenAiGenerateImageDto, caller: Caller, base: string, idempotencyKey: string | undefined, onJob: (jobId: string) => void): Promise<OpenAiImagesResponseDto> {
    const native = this.toNative(dto);
    const jobId = await this.runOnce('generations', { ...dto }, native, caller, base, idempotencyKey);
    onJob(jobId);
    return this.respond(jobId, dto, caller, base);
  }

  async edit(dto: OpenAiEditImageDto, files: OpenAiEditFiles, caller: Caller, base: string, idempotencyKey: string | undefined, onJob: (jobId: string) => void): Promise<OpenAiImagesResponseDto> {
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
      throw problem('background', `background transparent is not supported: model ${model} renders opaque images (use auto or opaque)`);
    }
    if (dto.stream === true) throw new ApiError(ErrorCode.NotSupported, 'stream is not supported: the answer comes when the images are ready', { field: 'stream' });
    const format = dto.output_format ?? 'png';
    const user = dto.safety_identifier ?? dto.user;
    const native: Partial<CreateJobDto> = {
      prompt: dto.prompt,
      negative_prompt: dto.negative_prompt,
      model,
      ...this.size(model, dto.size),
      num_inference_steps: this.steps(model, dto.quality),
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

  /** `auto` is the model's default (an edit: its input's size); WIDTHxHEIGHT must be within the model's limits. */
  private size(model: string, size?: string): { width?: number; height?: number } {
    if (size === undefined || size === 'auto') return {};
    const [width, height] = size.split('x').map(Number);
    const lim = this.workflows.limits(model);
    const fixed = lim.fixed.includes('width') || lim.fixed.includes('height');
    const fits = (v: number, l: { min: number; max: number; multiple_of: number }) => v >= l.min && v <= l.max && v % l.multiple_of === 0;
    if (fixed ? width === lim.width.min && height === lim.height.min : fits(width, lim.width) && fits(height, lim.height) && width * height <= lim.max_pixels) {
      return fixed ? {} : { width, height };
    }
    const p = this.workflows.get(model)!.manifest.parameters;
    const native = [`${p.width.default ?? lim.width.min}x${p.height.default ?? lim.height.min}`, ...Object.values(this.workflows.aspectRatios(model)).map(([w, h]) => `${w}x${h}`)];
    const listed = [...new Set(native)].join(', ');
    const range = fixed
      ? ''
      : `, or any WIDTHxHEIGHT with sides ${lim.width.min}–${lim.width.max} in multiples of ${lim.width.multiple_of} and at most ${lim.max_pixels} pixels`;
    throw problem('size', `size ${size} is not supported by model ${model}; supported sizes: auto, ${listed}${range}`);
  }

  /** low: half the default steps; high/hd: twice; within the model's step limits, and only where its steps are adjustable. */
  private steps(model: string, quality?: OpenAiQuality): number | undefined {
    const lim = this.workflows.limits(model);
    if (lim.fixed.includes('num_inference_steps') || lim.num_inference_steps.min === lim.num_inference_steps.max) return undefined;
    const def = this.workflows.get(model)!.manifest.parameters.num_inference_steps.default ?? lim.num_inference_steps.min;
    if (quality === 'low') return Math.max(lim.num_inference_steps.min, Math.round(def / 2));
    if (quality === 'high' || quality === 'hd') return Math.min(lim.num_inference_steps.max, def * 2);
    return undefined;
  }

  /**
   * The job of this request: a new one, or the job of the same request made before (a retry after a
   * timeout or a 5xx), which is then only awaited. A request refused before its job existed frees its claim.
   */
  private async runOnce(route: OpenAiRoute, fingerprint: object, native: CreateJobDto, caller: Caller, base: string, idempotencyKey?: string): Promise<string> {
    const body = { openai: route, body: fingerprint };
    const newJobId = randomUUID();
    const window = this.env.OPENAI_DEDUPE_WINDOW_SECONDS;
    const claim =
      idempotencyKey !== undefined ? await this.idempotency.claim(caller.owner, idempotencyKey, body, newJobId)
      : window > 0 ? await this.idempotency.claim(caller.owner, `openai-window:${sha256(canonical(body))}`, body, newJobId, window)
      : undefined;
    const user = native.metadata?.openai_user;
    if (claim?.kind === 'replay') {
      await this.jobs.getWhenVisible(claim.jobId, caller, base);
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

  private async respond(jobId: string, dto: OpenAiImageOptionsDto, caller: Caller, base: string): Promise<OpenAiImagesResponseDto> {
    if (!(await this.jobs.waitForEnd(jobId, this.env.SYNC_TIMEOUT_MS))) {
      throw new ApiError(
        ErrorCode.SyncTimeout,
        `The image is not ready after ${this.env.SYNC_TIMEOUT_MS} ms; the same request again waits for the same job (or poll /api/v1/images/jobs/${jobId})`,
        { job_id: jobId },
        { 'Retry-After': '1' },
      );
    }
    const resource = await this.jobs.get(jobId, caller, base);
    if (resource.status !== 'succeeded') {
      const error = resource.error ?? { code: ErrorCode.InternalError, message: 'The job failed' };
      throw new ApiError(STATUS_BY_CODE[error.code] ? error.code : ErrorCode.InternalError, error.message, { job_id: jobId });
    }
    const data: OpenAiImagesResponseDto['data'] = [];
    for (const link of resource.images) {
      if (dto.response_format === 'url') data.push({ url: link.signed_url ?? link.url, revised_prompt: null });
      else data.push({ b64_json: (await this.jobs.image(jobId, link.index, caller)).bytes.toString('base64'), revised_prompt: null });
    }
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
