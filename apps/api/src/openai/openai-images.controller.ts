import { Body, Controller, Headers, HttpCode, Post, Req, Res, UseFilters } from '@nestjs/common';
import type { Response } from 'express';
import {
  ApiBadRequestResponse, ApiBearerAuth, ApiBody, ApiConsumes, ApiHeader, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiPayloadTooLargeResponse,
  ApiServiceUnavailableResponse, ApiTags, ApiTooManyRequestsResponse, ApiUnauthorizedResponse, ApiUnprocessableEntityResponse, getSchemaPath, ApiExtraModels,
} from '@nestjs/swagger';
import { DomainError, ErrorCode } from '@app/common';
import { apiValidationPipe } from '../common/validation';
import { sendJsonWithImages } from '../jobs/json-with-data-urls';
import { ApiRequest, callerOf, requestBase } from '../jobs/request-context';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { parseMultipart } from '../uploads/multipart';
import { OpenAiEditImageDto, OpenAiGenerateImageDto } from './dto/openai-image-request.dto';
import { OpenAiErrorDto, OpenAiImagesResponseDto } from './dto/openai-responses.dto';
import { OpenAiExceptionFilter } from './openai-error.filter';
import { OpenAiImagesService } from './openai-images.service';

/** Multipart text fields that are numbers in OpenAI's API (the form carries them as text). */
const NUMERIC_FIELDS = new Set(['n', 'output_compression', 'seed', 'strength']);
const BOOLEAN_FIELDS = new Set(['stream']);

/** The native job behind an answer (GET /api/v1/images/jobs/{id}: params, timings), also on its errors once it exists. */
const JOB_ID_HEADER = 'X-Job-Id';
const jobHeader = (res: Response) => (jobId: string) => void res.setHeader(JOB_ID_HEADER, jobId);
const JOB_ID_RESPONSE_HEADER = { [JOB_ID_HEADER]: { description: 'The job of this answer: GET /api/v1/images/jobs/{id} has its params and timings', schema: { type: 'string', format: 'uuid' } } };

const IDEMPOTENCY_HEADER = {
  name: 'Idempotency-Key',
  required: false,
  description: 'The same key and body again (an SDK retry) waits for the same job instead of starting another; without it the same key and body within OPENAI_DEDUPE_WINDOW_SECONDS do',
};

/** The text fields of a form as JSON-like values, for the same validation as a JSON body. */
function formFields(parts: Array<{ name: string; data: Buffer; filename?: string }>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of parts) {
    if (p.filename !== undefined) continue;
    const text = p.data.toString('utf8');
    if (p.name in out) throw new DomainError(ErrorCode.ValidationFailed, `${p.name} is given twice`, [{ field: p.name, message: `${p.name} is given twice` }]);
    out[p.name] =
      NUMERIC_FIELDS.has(p.name) && /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text)
      : BOOLEAN_FIELDS.has(p.name) && /^(true|false)$/.test(text) ? text === 'true'
      : text;
  }
  return out;
}

@ApiTags('openai')
@ApiBearerAuth()
@ApiExtraModels(OpenAiErrorDto)
@UseFilters(new OpenAiExceptionFilter())
@Controller('v1/images')
@ApiUnauthorizedResponse({ type: OpenAiErrorDto, description: '`invalid_api_key`: keys are configured and none valid was sent' })
@ApiTooManyRequestsResponse({ type: OpenAiErrorDto, description: '`rate_limit_exceeded` or `quota_exceeded` (jobs at once per key), with Retry-After' })
@ApiServiceUnavailableResponse({ type: OpenAiErrorDto, description: '`no_capacity` (no GPU worker now), `model_unavailable`, `queue_full`, `storage_full`, `redis_unavailable`; Retry-After' })
export class OpenAiImagesController {
  constructor(private readonly images: OpenAiImagesService) {}

  @Post('generations')
  @RateLimitAs('submit')
  @HttpCode(200)
  @ApiOperation({
    summary: "Generate images (OpenAI's Images API)",
    description: 'Waits for the images like POST /api/v1/images/generate (SYNC_TIMEOUT_MS, then 504 sync_timeout: the same request again waits for the same job). ' +
      'size maps to width/height, n to num_images, quality low/high to the model\'s steps, output_compression to output_quality; style and moderation are accepted and ignored.',
  })
  @ApiHeader(IDEMPOTENCY_HEADER)
  @ApiOkResponse({ type: OpenAiImagesResponseDto, headers: JOB_ID_RESPONSE_HEADER })
  @ApiBadRequestResponse({ type: OpenAiErrorDto, description: '`validation_failed` (param names the field; an unsupported size lists the supported ones), `not_supported` (stream)' })
  @ApiNotFoundResponse({ type: OpenAiErrorDto, description: '`model_not_found`' })
  @ApiUnprocessableEntityResponse({ type: OpenAiErrorDto, description: '`content_policy`, `idempotency_key_reused`' })
  // @Res() without passthrough: the answer is sent as bytes (sendJsonWithImages: no JSON pass over the base64); a throw still reaches the filter.
  async generations(
    @Body() dto: OpenAiGenerateImageDto,
    @Req() req: ApiRequest,
    @Res() res: Response,
    @Headers('idempotency-key') idempotencyKey?: string,
  ): Promise<void> {
    sendJsonWithImages(res, 200, await this.images.generate(dto, callerOf(req), requestBase(req), idempotencyKey, jobHeader(res)));
  }

  @Post('edits')
  @RateLimitAs('submit')
  @HttpCode(200)
  @ApiOperation({
    summary: "Edit an image: img2img, or inpainting with a mask (OpenAI's Images API)",
    description: 'multipart/form-data as the SDKs send it: the file `image` (or exactly one `image[]`; several are refused), optional `mask` ' +
      "(OpenAI's convention: transparent = edit; a mask without transparency is read as white = repaint), and the text fields of generations. " +
      'Inputs are checked like uploads (PNG/JPEG/WebP, decoded, ≤ 20 MB, ≤ 4096 px a side; the mask of the image\'s size). One image per edit (n 1).',
  })
  @ApiHeader(IDEMPOTENCY_HEADER)
  @ApiConsumes('multipart/form-data')
  @ApiBody({
    schema: {
      allOf: [
        { $ref: getSchemaPath(OpenAiEditImageDto) },
        {
          type: 'object',
          required: ['image'],
          properties: { image: { type: 'string', format: 'binary' }, mask: { type: 'string', format: 'binary' } },
        },
      ],
    },
  })
  @ApiExtraModels(OpenAiEditImageDto)
  @ApiOkResponse({ type: OpenAiImagesResponseDto, headers: JOB_ID_RESPONSE_HEADER })
  @ApiBadRequestResponse({ type: OpenAiErrorDto, description: '`validation_failed`, `invalid_image` (not a PNG/JPEG/WebP that decodes), `not_supported` (several images)' })
  @ApiNotFoundResponse({ type: OpenAiErrorDto, description: '`model_not_found`' })
  @ApiPayloadTooLargeResponse({ type: OpenAiErrorDto, description: '`image_too_large`, `payload_too_large`' })
  @ApiUnprocessableEntityResponse({ type: OpenAiErrorDto, description: '`mask_size_mismatch`, `content_policy`, `idempotency_key_reused`' })
  async edits(@Req() req: ApiRequest, @Res() res: Response, @Headers('idempotency-key') idempotencyKey?: string): Promise<void> {
    if (!req.is('multipart/form-data')) {
      throw new DomainError(ErrorCode.UnsupportedMediaType, 'The body must be multipart/form-data with the file in the field "image"');
    }
    const parts = parseMultipart(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), req.headers['content-type']);
    if (!parts) throw new DomainError(ErrorCode.ValidationFailed, 'The multipart body could not be read', [{ field: 'image', message: 'The multipart body could not be read' }]);
    const files = parts.filter((p) => p.filename !== undefined);
    const images = files.filter((p) => p.name === 'image' || p.name === 'image[]');
    const masks = files.filter((p) => p.name === 'mask');
    const other = files.find((p) => p.name !== 'image' && p.name !== 'image[]' && p.name !== 'mask');
    if (other) throw new DomainError(ErrorCode.ValidationFailed, `${other.name} is not a known file field (image, mask)`, [{ field: other.name, message: `${other.name} is not a known file field` }]);
    if (!images.length) throw new DomainError(ErrorCode.InvalidImage, 'image is required: the picture to edit, as a file', { field: 'image' });
    if (images.length > 1) {
      const message = `this server edits one image per request; ${images.length} were sent (several image[] files compose references, which no model here does)`;
      throw new DomainError(ErrorCode.NotSupported, message, { field: 'image' });
    }
    if (masks.length > 1) throw new DomainError(ErrorCode.ValidationFailed, 'mask is given twice', [{ field: 'mask', message: 'mask is given twice' }]);
    const dto = (await apiValidationPipe().transform(formFields(parts), { type: 'body', metatype: OpenAiEditImageDto })) as OpenAiEditImageDto;
    sendJsonWithImages(res, 200, await this.images.edit(dto, { image: images[0].data, mask: masks[0]?.data }, callerOf(req), requestBase(req), idempotencyKey, jobHeader(res)));
  }

  @Post('variations')
  @RateLimitAs('submit')
  @HttpCode(200)
  @ApiOperation({ summary: 'Not supported: answers 400 not_supported (use /v1/images/edits with a prompt: img2img)' })
  @ApiOkResponse({ type: OpenAiImagesResponseDto, description: 'Never: variations are refused' })
  @ApiBadRequestResponse({ type: OpenAiErrorDto, description: '`not_supported`' })
  variations(): never {
    throw new DomainError(ErrorCode.NotSupported, 'Image variations are not supported; POST /v1/images/edits with a prompt redraws an image (img2img)', { field: 'image' });
  }
}
