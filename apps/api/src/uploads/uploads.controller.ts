import { Controller, HttpCode, Post, Req } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiCreatedResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiErrors, KEYED_ROUTE_CODES } from '../docs/api-errors';
import { UploadResourceDto } from './dto/upload-resource.dto';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { ApiRequest, callerOf } from '../jobs/request-context';
import { InputImagesService } from './input-images.service';
import { parseMultipart } from './multipart';

export interface UploadResource {
  id: string;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  expires_at: string;
}

/** Input images for img2img and inpainting: upload once, refer to it by id in any number of jobs. */
@ApiTags('uploads')
@Controller('api/v1/uploads')
export class UploadsController {
  constructor(
    private readonly env: Env,
    private readonly images: InputImagesService,
  ) {}

  @Post()
  @RateLimitAs('submit')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Upload an input image (img2img, inpainting mask)',
    description: 'The raw image as the body (Content-Type image/png, image/jpeg or image/webp), or multipart/form-data with the file in the field `image`. ' +
      'Decoded to prove it; at most 20 MB and 4096 px a side. Kept RESULT_TTL_SECONDS and usable only with the API key that uploaded it: pass its id as `image` or `mask`.',
  })
  @ApiConsumes('image/png', 'image/jpeg', 'image/webp', 'multipart/form-data')
  // The multipart form's own schema (field `image`) is set in docs/openapi.ts: ApiBody has one schema for every type.
  @ApiBody({ required: true, schema: { type: 'string', format: 'binary' } })
  @ApiCreatedResponse({ type: UploadResourceDto, description: 'The stored input image' })
  @ApiErrors(...KEYED_ROUTE_CODES, ErrorCode.InvalidImage, ErrorCode.ImageTooLarge, ErrorCode.PayloadTooLarge, ErrorCode.StorageFull)
  async upload(@Req() req: ApiRequest): Promise<UploadResource> {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let bytes = body;
    if (req.is('multipart/form-data')) {
      const parts = parseMultipart(body, req.headers['content-type']);
      const file = parts?.find((p) => p.name === 'image' && p.filename !== undefined) ?? parts?.find((p) => p.filename !== undefined);
      if (!file) throw new DomainError(ErrorCode.InvalidImage, 'The multipart body has no file in the field "image"', { field: 'image' });
      bytes = file.data;
    }
    if (!bytes.length) throw new DomainError(ErrorCode.InvalidImage, 'The body is empty; send the image bytes', { field: 'image' });
    const up = await this.images.upload(bytes, callerOf(req).owner);
    return {
      id: up.id, content_type: up.content_type, width: up.width, height: up.height, bytes: up.bytes, sha256: up.sha256,
      expires_at: new Date(up.created_at + this.env.RESULT_TTL_SECONDS * 1000).toISOString(),
    };
  }
}
