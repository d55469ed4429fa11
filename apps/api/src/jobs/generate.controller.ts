import { Body, Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiGatewayTimeoutResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { JobTimings } from '@app/queue';
import { WorkflowRegistry } from '@app/workflows';
import { ApiError, STATUS_BY_CODE } from '../common/api-error';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { GenerateImageDto } from './dto/generate-image.dto';
import { JobsService } from './jobs.service';
import { ApiRequest, callerOf, requestBase } from './request-context';

export interface GenerateImageResponse {
  image_url: string;
  model: string;
  model_id: string;
  width: number;
  height: number;
  seed: number;
  job_id: string;
  timings: JobTimings | null;
}

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
  @ApiOperation({ summary: 'Generate an image and wait for it (synchronous)' })
  @ApiOkResponse({ description: 'image_url is a data: URL with the PNG' })
  @ApiGatewayTimeoutResponse({ description: 'Still running after SYNC_TIMEOUT_MS; poll the job_id in details' })
  async generate(@Body() dto: GenerateImageDto, @Req() req: ApiRequest, @Res({ passthrough: true }) res: Response): Promise<GenerateImageResponse> {
    const caller = callerOf(req);
    const base = requestBase(req);
    const jobId = await this.jobs.submit(dto, caller, { requestBase: base });
    const ended = await this.jobs.waitForEnd(jobId, this.env.SYNC_TIMEOUT_MS);
    const location = `${this.jobs.baseUrl(base)}/api/v1/images/jobs/${jobId}`;
    if (!ended) {
      res.setHeader('Location', location);
      throw new ApiError(ErrorCode.SyncTimeout, `The image is not ready after ${this.env.SYNC_TIMEOUT_MS} ms; poll the job`, { job_id: jobId, job_url: location });
    }
    const resource = await this.jobs.get(jobId, caller, base);
    if (resource.status !== 'succeeded') {
      const error = resource.error ?? { code: ErrorCode.InternalError, message: 'The job failed' };
      const code = STATUS_BY_CODE[error.code] ? error.code : ErrorCode.InternalError;
      throw new ApiError(code, error.message, { job_id: jobId, job_url: location });
    }
    const image = await this.jobs.image(jobId, 0, caller);
    const params = resource.params;
    return {
      image_url: `data:${image.contentType};base64,${image.bytes.toString('base64')}`,
      model: this.workflows.get(params.model)?.manifest.display_name ?? params.model,
      model_id: params.model,
      width: resource.images[0]?.width ?? params.width,
      height: resource.images[0]?.height ?? params.height,
      seed: params.seed,
      job_id: jobId,
      timings: resource.timings,
    };
  }
}
