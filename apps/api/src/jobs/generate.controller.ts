import { Body, Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { JobTimings } from '@app/queue';
import { WorkflowRegistry } from '@app/workflows';
import { ApiError } from '../common/api-error';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { ApiErrors, JOB_FAILURE_CODES } from '../docs/api-errors';
import { GENERATION_EXAMPLES } from '../docs/request-examples';
import { GenerateImageDto } from './dto/generate-image.dto';
import { GenerateImageResponseDto } from './dto/generate-image-response.dto';
import { SUBMIT_CODES } from './jobs.controller';
import { JobsService } from './jobs.service';
import { DataUrl, sendJsonWithImages } from './json-with-data-urls';
import { ApiRequest, callerOf, requestBase } from './request-context';

export interface GeneratedImage {
  image_url: string;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
}

export interface GenerateImageResponse {
  /** The first image, as the original service answered. */
  image_url: string;
  /** Every image of the job (num_images), the first included. */
  images: GeneratedImage[];
  cached: boolean;
  model: string;
  model_id: string;
  width: number;
  height: number;
  seed: number;
  job_id: string;
  timings: JobTimings | null;
}

/** The answer as built: each image_url a DataUrl, sent as its data: URL string. */
type BuiltAnswer = Omit<GenerateImageResponse, 'image_url' | 'images'> & {
  image_url: DataUrl;
  images: (Omit<GeneratedImage, 'image_url'> & { image_url: DataUrl })[];
};

@ApiTags('images')
@Controller('api/v1/images')
export class GenerateController {
  constructor(
    private readonly jobs: JobsService,
    private readonly workflows: WorkflowRegistry,
    private readonly env: Env,
  ) {}

  /** The original service's synchronous call: same request, same response, plus job_id and timings. */
  @Post('generate')
  @RateLimitAs('submit')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Generate an image and wait for it (synchronous)',
    description:
      'Answers `503 no_capacity` with `Retry-After` at once when no worker with a live ComfyUI exists, instead of waiting ' +
      'SYNC_TIMEOUT_MS. `POST /api/v1/images/jobs` still accepts jobs then: they wait in the queue and run when a GPU is back.',
  })
  @ApiBody({ type: GenerateImageDto, examples: GENERATION_EXAMPLES })
  @ApiOkResponse({ type: GenerateImageResponseDto, description: 'image_url is a data: URL of the first image (PNG unless output_format says otherwise); images[] has every image of num_images' })
  // A job that fails answers with its own code (502 comfyui_*, 409 canceled); 504 sync_timeout carries job_id and job_url in details.
  @ApiErrors(...SUBMIT_CODES, ErrorCode.NoCapacity, ErrorCode.SyncTimeout, ...JOB_FAILURE_CODES)
  // @Res() without passthrough: the answer is sent below as bytes (see sendJsonWithImages); a throw still reaches the filters.
  async generate(@Body() dto: GenerateImageDto, @Req() req: ApiRequest, @Res() res: Response): Promise<void> {
    const caller = callerOf(req);
    const base = requestBase(req);
    // 4xx for bad input first, then a cached answer (no GPU needed), then 503 no_capacity: all decided in submit().
    const jobId = await this.jobs.submit(dto, caller, { requestBase: base, requireCapacity: true });
    const ended = await this.jobs.waitForEnd(jobId, this.env.SYNC_TIMEOUT_MS);
    const location = `${this.jobs.baseUrl(base)}/api/v1/images/jobs/${jobId}`;
    if (!ended) {
      res.setHeader('Location', location);
      throw new ApiError(ErrorCode.SyncTimeout, `The image is not ready after ${this.env.SYNC_TIMEOUT_MS} ms; poll the job`, { job_id: jobId, job_url: location });
    }
    // One read of the job: the resource and the images come from the same view.
    const { view, resource } = await this.jobs.succeeded(jobId, caller, base, { job_id: jobId, job_url: location });
    const fetched = await Promise.all(resource.images.map((link) => this.jobs.imageOfView(view, link.index)));
    const images = resource.images.map((link, i) => ({
      image_url: new DataUrl(fetched[i].contentType, fetched[i].bytes),
      content_type: fetched[i].contentType,
      width: link.width,
      height: link.height,
      bytes: fetched[i].bytes.length,
      sha256: fetched[i].sha256,
    }));
    if (!images.length) throw new ApiError(ErrorCode.InternalError, 'The job succeeded without an image', { job_id: jobId });
    const params = resource.params;
    const answer: BuiltAnswer = {
      image_url: images[0].image_url,
      images,
      cached: resource.cached,
      model: this.workflows.get(params.model)?.manifest.display_name ?? params.model,
      model_id: params.model,
      width: resource.images[0]?.width ?? params.width,
      height: resource.images[0]?.height ?? params.height,
      seed: params.seed,
      job_id: jobId,
      timings: resource.timings,
    };
    // What res.json would send, built without a JSON pass over the base64.
    sendJsonWithImages(res, 200, answer);
  }
}
