import { randomUUID } from 'node:crypto';
import { Body, Controller, Delete, Get, Headers, HttpCode, Param, ParseUUIDPipe, Post, Query, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBody, ApiFoundResponse, ApiHeader, ApiNotModifiedResponse, ApiOkResponse, ApiOperation, ApiParam, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { JobResource } from '@app/queue';
import { ApiError } from '../common/api-error';
import { ApiErrors, KEYED_ROUTE_CODES } from '../docs/api-errors';
import { JOB_EXAMPLES } from '../docs/request-examples';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { CreateJobDto } from './dto/create-job.dto';
import { JobListDto, JobResourceDto } from './dto/job-resource.dto';
import { IdempotencyService } from './idempotency.service';
import { isReplicationUnconfirmed, JobsService } from './jobs.service';
import { ApiRequest, callerOf, requestBase } from './request-context';
import { WebhookUrlPolicy } from './webhook-url.policy';
import { clientGone, MAX_WAIT_SECONDS, requestedWaitMs } from './long-poll';
import { sendJobImage } from './image-response';

/** The page size of GET /api/v1/images/jobs. */
const LIST_DEFAULT_LIMIT = 20;
const LIST_MAX_LIMIT = 100;

/** A page's next_cursor: the submission time (ms) and id of its last job. */
const LIST_CURSOR = /^(\d{1,16})\.([0-9a-f-]{36})$/;

/** `limit` and `cursor` of the job list: both optional, each given once. */
export function listQuery(limit: unknown, cursor: unknown): { limit: number; cursor?: { at: number; id: string } } {
  const once = (v: unknown, field: string): string | undefined => {
    if (v !== undefined && typeof v !== 'string') throw new ApiError(ErrorCode.ValidationFailed, `${field} must be given once`, { field });
    return v;
  };
  const l = once(limit, 'limit');
  const c = once(cursor, 'cursor');
  const n = l === undefined ? LIST_DEFAULT_LIMIT : /^\d{1,3}$/.test(l) ? Number(l) : NaN;
  if (!(n >= 1 && n <= LIST_MAX_LIMIT)) throw new ApiError(ErrorCode.ValidationFailed, `limit must be a whole number from 1 to ${LIST_MAX_LIMIT}`, { field: 'limit' });
  if (c === undefined) return { limit: n };
  const m = LIST_CURSOR.exec(c);
  if (!m) throw new ApiError(ErrorCode.ValidationFailed, 'cursor must be the next_cursor of a previous page', { field: 'cursor' });
  return { limit: n, cursor: { at: Number(m[1]), id: m[2] } };
}

/** Codes of every route that names a job. */
const JOB_ROUTE_CODES = [...KEYED_ROUTE_CODES, ErrorCode.JobNotFound, ErrorCode.JobExpired];
const JOB_ID_PARAM = { name: 'id', format: 'uuid', description: 'The job id (from the 202 of POST /api/v1/images/jobs)' } as const;

/** What a submission can be refused with (the synchronous route adds its own). */
export const SUBMIT_CODES = [
  ...KEYED_ROUTE_CODES,
  ErrorCode.ValidationFailed, ErrorCode.InvalidJson, ErrorCode.UnknownModel, ErrorCode.InvalidImage,
  ErrorCode.PayloadTooLarge, ErrorCode.ImageTooLarge, ErrorCode.UnsupportedMediaType,
  ErrorCode.MaskSizeMismatch, ErrorCode.InvalidImageUrl, ErrorCode.ContentPolicy, ErrorCode.QuotaExceeded,
  ErrorCode.ModelUnavailable, ErrorCode.QueueFull, ErrorCode.StorageFull, ErrorCode.ReplicationUnconfirmed,
];

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
  @ApiOperation({
    summary: 'Submit a generation job (asynchronous)',
    description:
      "503 `model_unavailable` when workers are live and none has the model's files (QUEUE_UNSERVED_MODELS=true queues it); " +
      '503 `replication_unconfirmed` when the job was written but REDIS_MIN_REPLICAS_ACK replicas did not confirm it in time: retry with the same Idempotency-Key to get that job. ' +
      'The same Idempotency-Key with the same body answers the first job again (`Idempotent-Replayed: true`), so a retry never renders twice.',
  })
  @ApiAcceptedResponse({
    type: JobResourceDto,
    description: 'The job resource; Location points at it',
    headers: {
      Location: { description: 'The job URL', schema: { type: 'string' } },
      'Idempotent-Replayed': { description: '`true` when an earlier request with this Idempotency-Key made the job', schema: { type: 'string' } },
      'Preference-Applied': { description: '`wait=N` when the Prefer header was honoured', schema: { type: 'string' } },
    },
  })
  @ApiBody({ type: CreateJobDto, examples: JOB_EXAMPLES })
  @ApiErrors(...SUBMIT_CODES, ErrorCode.IdempotencyKeyReused, ErrorCode.InvalidWebhookUrl, ErrorCode.WebhooksDisabled)
  @ApiHeader({ name: 'idempotency-key', required: false, description: 'Up to 255 characters; a retry with the same key and body gets the same job' })
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
        const resource = await this.jobs.getReplayed(claim.jobId, caller, base);
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

  @Get()
  @RateLimitAs('read')
  @ApiOperation({ summary: "The caller's jobs, newest first", description: 'Jobs of the API key (all jobs on an open server) within the retention time, a page at a time.' })
  @ApiQuery({ name: 'limit', required: false, schema: { type: 'integer', minimum: 1, maximum: LIST_MAX_LIMIT, default: LIST_DEFAULT_LIMIT } })
  @ApiQuery({ name: 'cursor', required: false, schema: { type: 'string', pattern: LIST_CURSOR.source }, description: 'next_cursor of the previous page' })
  @ApiOkResponse({ type: JobListDto })
  @ApiErrors(...KEYED_ROUTE_CODES, ErrorCode.ValidationFailed)
  async list(@Req() req: ApiRequest, @Query('limit') limit?: unknown, @Query('cursor') cursor?: unknown): Promise<JobListDto> {
    const q = listQuery(limit, cursor);
    return this.jobs.list(callerOf(req), requestBase(req), q.limit, q.cursor);
  }

  @Get(':id')
  @ApiOperation({ summary: 'The job: status, queue position, progress, timings, image links, error' })
  @ApiParam(JOB_ID_PARAM)
  @ApiQuery({ name: 'wait', required: false, schema: { type: 'number', minimum: 0, maximum: MAX_WAIT_SECONDS }, description: `Long-poll: answer once the job has ended, or after this many seconds (0–${MAX_WAIT_SECONDS}) with its state then. Also as the header Prefer: wait=N` })
  @ApiHeader({ name: 'Prefer', required: false, description: 'wait=N, like the wait query' })
  @ApiOkResponse({ type: JobResourceDto, headers: { 'Preference-Applied': { description: '`wait=N` when the Prefer header was honoured', schema: { type: 'string' } } } })
  @ApiErrors(...JOB_ROUTE_CODES, ErrorCode.ValidationFailed)
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
  @ApiOperation({ summary: 'Cancel: removes a queued job, interrupts a running one', description: 'Answers once a running job has stopped, or after 2 s with its state then.' })
  @ApiParam(JOB_ID_PARAM)
  @ApiOkResponse({ type: JobResourceDto, description: 'The job, `canceled` (or still `running` for a moment while its GPU stops)' })
  @ApiErrors(...JOB_ROUTE_CODES, ErrorCode.JobFinished)
  cancel(@Param('id', jobIdPipe) id: string, @Req() req: ApiRequest): Promise<JobResource> {
    return this.jobs.cancel(id, callerOf(req), requestBase(req));
  }

  @Get(':id/images/:index')
  @ApiOperation({ summary: 'The image bytes (or, with a CDN or signed links configured, a 302 to them)' })
  @ApiParam(JOB_ID_PARAM)
  @ApiParam({ name: 'index', schema: { type: 'integer', minimum: 0 }, description: 'images[].index' })
  @ApiHeader({ name: 'If-None-Match', required: false, description: 'The ETag of a copy you have: 304 when it matches' })
  @ApiOkResponse({
    description: 'The image; Content-Type as stored (output_format), ETag = "sha256", private immutable caching',
    content: Object.fromEntries(['image/png', 'image/jpeg', 'image/webp'].map((t) => [t, { schema: { type: 'string', format: 'binary' } }])),
    headers: { ETag: { schema: { type: 'string' } }, 'Cache-Control': { schema: { type: 'string' } } },
  })
  @ApiNotModifiedResponse({ description: 'If-None-Match matched' })
  @ApiFoundResponse({ description: 'The bytes are elsewhere (CDN, signed link): follow Location', headers: { Location: { schema: { type: 'string' } } } })
  @ApiErrors(...JOB_ROUTE_CODES, ErrorCode.ImageNotFound, ErrorCode.StorageUnavailable)
  async image(
    @Param('id', jobIdPipe) id: string,
    @Param('index') indexParam: string,
    @Req() req: ApiRequest,
    @Res() res: Response,
  ): Promise<void> {
    if (!/^\d{1,3}$/.test(indexParam)) throw new ApiError(ErrorCode.ImageNotFound, `No image ${indexParam}`);
    const index = Number(indexParam);
    const { sha256, stored_by } = await this.jobs.imageRef(id, index, callerOf(req));
    // Private: images belong to the key that made them; immutable: a job's image never changes.
    await sendJobImage(this.jobs, req, res, { sha256, stored_by, index }, `private, max-age=${this.env.RESULT_TTL_SECONDS}, immutable`);
  }
}
