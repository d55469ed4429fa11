import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Body, Controller, Delete, Get, Headers, HttpCode, Param, ParseUUIDPipe, Post, Query, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiHeader, ApiOkResponse, ApiOperation, ApiProduces, ApiQuery, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { JobResource } from '@app/queue';
import { ApiError } from '../common/api-error';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { CreateJobDto } from './dto/create-job.dto';
import { IdempotencyService } from './idempotency.service';
import { isReplicationUnconfirmed, JobsService } from './jobs.service';
import { ApiRequest, callerOf, requestBase } from './request-context';
import { WebhookUrlPolicy } from './webhook-url.policy';
import { clientGone, MAX_WAIT_SECONDS, requestedWaitMs } from './long-poll';

/** If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/ prefixes ignored, lists and * allowed. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

const jobIdPipe = new ParseUUIDPipe({
  version: '4',
  exceptionFactory: () => new ApiError(ErrorCode.JobNotFound, 'No such job'),
});

@ApiTags('jobs')
@Controller('api/v1/images/jobs')
export class JobsController {
  constructor(
    private readonly jobs: JobsService,
    private readonly webhookUrls: WebhookUrlPolicy,
    private readonly idempotency: IdempotencyService,
    private readonly env: Env,
  ) {}

  @Post()
  @RateLimitAs('submit')
  @HttpCode(202)
  @ApiOperation({ summary: 'Submit a generation job (asynchronous)' })
  @ApiAcceptedResponse({ description: 'The job resource; Location points at it' })
  @ApiServiceUnavailableResponse({ description: "`model_unavailable`: workers are live and none has the model's files (see Retry-After; QUEUE_UNSERVED_MODELS=true queues it); `replication_unconfirmed`: the job was written but REDIS_MIN_REPLICAS_ACK replicas did not confirm it in time (see Retry-After; retry with the same Idempotency-Key to get that job); or `redis_unavailable`, `queue_full`" })
  @ApiHeader({ name: 'Prefer', required: false, description: `wait=N (0–${MAX_WAIT_SECONDS} s): answer once the job has ended, or after N s with its state then` })
  async create(
    @Body() dto: CreateJobDto,
    @Req() req: ApiRequest,
    @Res({ passthrough: true }) res: Response,
    @Headers('idempotency-key') idempotencyKey?: string,
  ): Promise<JobResource> {
    const caller = callerOf(req);
    const base = requestBase(req);
    const waitMs = requestedWaitMs(req, res, undefined);
    // `!== undefined`: an empty webhook_url is a bad URL (422), not "no webhook".
    const webhookUrl = dto.webhook_url !== undefined ? await this.webhookUrls.check(dto.webhook_url) : undefined;
    let jobId: string = randomUUID();
    if (idempotencyKey !== undefined) {
      const claim = await this.idempotency.claim(caller.owner, idempotencyKey, dto, jobId, undefined, (id) => this.jobs.claimedJobExists(id, caller, base));
      if (claim.kind === 'replay') {
        res.setHeader('Idempotent-Replayed', 'true');
        const resource = await this.jobs.getWhenVisible(claim.jobId, caller, base);
        res.setHeader('Location', resource.links.self);
        return resource;
      }
      try {
        jobId = await this.jobs.submit(dto, caller, { webhookUrl, jobId, requestBase: base });
      } catch (e) {
        // Bad input or Redis trouble: the key stays free, nothing changed. Unconfirmed replication: the
        // job exists, so the key keeps pointing at it and the client's retry answers that job.
        if (!isReplicationUnconfirmed(e)) await claim.release();
        throw e;
      }
    } else {
      jobId = await this.jobs.submit(dto, caller, { webhookUrl, jobId, requestBase: base });
    }
    const resource = await this.jobs.getAfterWait(jobId, caller, base, waitMs, clientGone(req, res));
    res.setHeader('Location', resource.links.self);
    return resource;
  }

  @Get(':id')
  @ApiOperation({ summary: 'The job: status, queue position, progress, timings, image links, error' })
  @ApiQuery({ name: 'wait', required: false, description: `Long-poll: answer once the job has ended, or after this many seconds (0–${MAX_WAIT_SECONDS}) with its state then. Also as the header Prefer: wait=N` })
  @ApiOkResponse()
  get(
    @Param('id', jobIdPipe) id: string,
    @Req() req: ApiRequest,
    @Res({ passthrough: true }) res: Response,
    @Query('wait') wait?: unknown,
  ): Promise<JobResource> {
    const waitMs = requestedWaitMs(req, res, wait);
    return this.jobs.getAfterWait(id, callerOf(req), requestBase(req), waitMs, clientGone(req, res));
  }

  @Delete(':id')
  // Cancel only ever frees capacity: it shares the cheap budget, so a client can always cancel.
  @RateLimitAs('read')
  @ApiOperation({ summary: 'Cancel: removes a queued job, interrupts a running one' })
  cancel(@Param('id', jobIdPipe) id: string, @Req() req: ApiRequest): Promise<JobResource> {
    return this.jobs.cancel(id, callerOf(req), requestBase(req));
  }

  @Get(':id/images/:index')
  @ApiOperation({ summary: 'The image bytes (or, with a CDN or signed links configured, a 302 to them)' })
  @ApiProduces('image/png', 'image/jpeg', 'image/webp')
  async image(
    @Param('id', jobIdPipe) id: string,
    @Param('index') indexParam: string,
    @Req() req: ApiRequest,
    @Res() res: Response,
  ): Promise<void> {
    if (!/^\d{1,3}$/.test(indexParam)) throw new ApiError(ErrorCode.ImageNotFound, `No image ${indexParam}`);
    const index = Number(indexParam);
    const { sha256, stored_by } = await this.jobs.imageRef(id, index, callerOf(req));
    const etag = `"${sha256}"`;
    res.setHeader('ETag', etag);
    // Private: images belong to the key that made them; immutable: a job's image never changes.
    res.setHeader('Cache-Control', `private, max-age=${this.env.RESULT_TTL_SECONDS}, immutable`);
    // The record knows the image's hash, so a client that has it is answered without touching the store.
    if (matchesIfNoneMatch(req.headers['if-none-match'], etag)) {
      res.status(304).end();
      return;
    }
    const source = await this.jobs.imageSource(stored_by, index);
    if ('link' in source) {
      // A signed link dies before the job: a cached redirect would outlive it.
      if (source.link.expires) res.setHeader('Cache-Control', 'private, no-store');
      res.redirect(302, source.link.url);
      return;
    }
    const { body, contentType, contentLength } = source.stream;
    res.setHeader('Content-Type', contentType);
    if (contentLength !== undefined) res.setHeader('Content-Length', String(contentLength));
    res.status(200);
    // A body that fails half-way (bucket gone mid-download) can only end the connection: the status is sent.
    await pipeline(body, res).catch(() => res.destroy());
  }
}
