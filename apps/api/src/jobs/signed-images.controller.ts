import { Controller, Get, Param, ParseUUIDPipe, Query, Req, Res } from '@nestjs/common';
import { ApiFoundResponse, ApiHeader, ApiNotModifiedResponse, ApiOkResponse, ApiOperation, ApiParam, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { SIGNED_IMAGE_PATH } from '@app/jobs';
import { Public } from '../auth/public-route';
import { ApiError } from '../common/api-error';
import { ApiErrors } from '../docs/api-errors';
import { sendJobImage } from './image-response';
import { JobsService } from './jobs.service';
import { ApiRequest } from './request-context';
import { SignedLinks } from './signed-links.service';

const jobIdPipe = new ParseUUIDPipe({
  version: '4',
  exceptionFactory: () => new ApiError(ErrorCode.SignedUrlInvalid, 'This image link is not valid'),
});

/**
 * Downloads by signed link: no API key, the signature is the permission (images[].signed_url, and
 * the url results of POST /v1/images/generations). Public, so outside the per-key rate limits: a
 * request without a valid signature costs one HMAC and reads nothing.
 */
@ApiTags('jobs')
@Public()
@Controller(SIGNED_IMAGE_PATH.slice(1))
export class SignedImagesController {
  constructor(
    private readonly jobs: JobsService,
    private readonly links: SignedLinks,
  ) {}

  @Get(':job_id/:index')
  @ApiOperation({
    summary: 'An image by signed link (no API key)',
    // No security requirement: the signature in the query is the permission.
    security: [],
    description: 'The links in images[].signed_url of a job: valid SIGNED_URL_TTL_SECONDS (default 3600) from when the job was read. ' +
      'With RESULT_STORE=s3 and a CDN or presigned links configured, a 302 to them, as the keyed download does.',
  })
  @ApiParam({ name: 'job_id', format: 'uuid' })
  @ApiParam({ name: 'index', schema: { type: 'integer', minimum: 0 } })
  @ApiQuery({ name: 'expires', description: 'Unix seconds, as issued', required: true, schema: { type: 'integer' } })
  @ApiQuery({ name: 'signature', description: 'HMAC-SHA256 (base64url), as issued', required: true, schema: { type: 'string' } })
  @ApiHeader({ name: 'If-None-Match', required: false, description: 'The ETag of a copy you have: 304 when it matches' })
  @ApiOkResponse({
    description: 'The image bytes (Cross-Origin-Resource-Policy: cross-origin, cached while the link lives)',
    content: Object.fromEntries(['image/png', 'image/jpeg', 'image/webp'].map((t) => [t, { schema: { type: 'string', format: 'binary' } }])),
    headers: { ETag: { schema: { type: 'string' } }, 'Cache-Control': { schema: { type: 'string' } } },
  })
  @ApiNotModifiedResponse({ description: 'If-None-Match matched' })
  @ApiFoundResponse({ description: 'RESULT_STORE=s3 with RESULT_PUBLIC_BASE_URL or presigned links: where the bytes are', headers: { Location: { schema: { type: 'string' } } } })
  // 403: tampered, malformed or expired; 404/410 as the keyed download.
  @ApiErrors(ErrorCode.SignedUrlInvalid, ErrorCode.SignedUrlExpired, ErrorCode.JobNotFound, ErrorCode.ImageNotFound, ErrorCode.JobExpired, ErrorCode.StorageUnavailable, ErrorCode.RedisUnavailable, ErrorCode.InternalError)
  async image(
    @Param('job_id', jobIdPipe) id: string,
    @Param('index') indexParam: string,
    @Query('expires') expires: unknown,
    @Query('signature') signature: unknown,
    @Req() req: ApiRequest,
    @Res() res: Response,
  ): Promise<void> {
    if (!/^\d{1,3}$/.test(indexParam)) throw new ApiError(ErrorCode.SignedUrlInvalid, 'This image link is not valid');
    const index = Number(indexParam);
    const exp = this.links.verify(id, index, expires, signature);
    const { sha256, stored_by } = await this.jobs.imageRef(id, index, 'signed-link');
    // Made for <img src> on the web app's pages, wherever they are served from (helmet says same-site).
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    // Cached no longer than the link works; private: whoever holds the link, not everyone behind a proxy.
    const maxAge = Math.max(0, exp - Math.floor(Date.now() / 1000));
    await sendJobImage(this.jobs, req, res, { sha256, stored_by, index }, `private, max-age=${maxAge}, immutable`);
  }
}
