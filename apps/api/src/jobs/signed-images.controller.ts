import { pipeline } from 'node:stream/promises';
import { Controller, Get, Param, ParseUUIDPipe, Query, Req, Res } from '@nestjs/common';
import { ApiForbiddenResponse, ApiFoundResponse, ApiGoneResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiParam, ApiProduces, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { SIGNED_IMAGE_PATH } from '@app/jobs';
import { Public } from '../auth/public-route';
import { ApiError } from '../common/api-error';
import { matchesIfNoneMatch } from './jobs.controller';
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
  @ApiQuery({ name: 'expires', description: 'Unix seconds, as issued', required: true })
  @ApiQuery({ name: 'signature', description: 'HMAC-SHA256 (base64url), as issued', required: true })
  @ApiProduces('image/png', 'image/jpeg', 'image/webp')
  @ApiOkResponse({ description: 'The image bytes', content: { 'image/png': { schema: { type: 'string', format: 'binary' } }, 'image/jpeg': { schema: { type: 'string', format: 'binary' } }, 'image/webp': { schema: { type: 'string', format: 'binary' } } } })
  @ApiFoundResponse({ description: 'RESULT_STORE=s3 with RESULT_PUBLIC_BASE_URL or presigned links: where the bytes are' })
  @ApiForbiddenResponse({ description: '`signed_url_invalid` (tampered or malformed) or `signed_url_expired`' })
  @ApiNotFoundResponse({ description: '`image_not_found`, `job_not_found`' })
  @ApiGoneResponse({ description: '`job_expired`: the job outlived its retention (RESULT_TTL_SECONDS)' })
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
    const etag = `"${sha256}"`;
    res.setHeader('ETag', etag);
    // Cached no longer than the link works; private: whoever holds the link, not everyone behind a proxy.
    const maxAge = Math.max(0, exp - Math.floor(Date.now() / 1000));
    res.setHeader('Cache-Control', `private, max-age=${maxAge}, immutable`);
    if (matchesIfNoneMatch(req.headers['if-none-match'], etag)) {
      res.status(304).end();
      return;
    }
    const source = await this.jobs.imageSource(stored_by, index);
    if ('link' in source) {
      if (source.link.expires) res.setHeader('Cache-Control', 'private, no-store');
      res.redirect(302, source.link.url);
      return;
    }
    const { body, contentType, contentLength } = source.stream;
    res.setHeader('Content-Type', contentType);
    if (contentLength !== undefined) res.setHeader('Content-Length', String(contentLength));
    res.status(200);
    await pipeline(body, res).catch(() => res.destroy());
  }
}
