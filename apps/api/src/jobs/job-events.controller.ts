import { Controller, Get, Param, ParseUUIDPipe, Req, Res } from '@nestjs/common';
import { ApiExtraModels, ApiOkResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { JobLifecycle } from '@app/jobs';
import { JobEvent, JobResource, TERMINAL_STATUSES } from '@app/queue';
import { ApiError } from '../common/api-error';
import { ApiErrors, KEYED_ROUTE_CODES } from '../docs/api-errors';
import { JobProgressEventDto, JobResourceDto, JobStatusEventDto } from './dto/job-resource.dto';
import { JobsService } from './jobs.service';
import { ApiRequest, callerOf, requestBase } from './request-context';

const POLL_MS = 2_000;

@ApiTags('jobs')
@Controller('api/v1/images/jobs')
export class JobEventsController {
  constructor(
    private readonly jobs: JobsService,
    private readonly lifecycle: JobLifecycle,
    private readonly env: Env,
  ) {}

  /**
   * Server-sent events: `status` on every state change, `progress` per sampling step, a final `job`
   * event with the whole resource, then the stream closes. Driven by Redis pub/sub (any API instance
   * hears any worker) with a poll of the job as the safety net, and heartbeats while waiting.
   */
  @Get(':id/events')
  @ApiOperation({
    summary: 'Server-sent events: status changes and sampling progress until the job ends',
    description:
      'A `text/event-stream` (EventSource or any SSE reader). Events, each with an `id` and JSON `data`: ' +
      '`status` (JobStatusEventDto) on every state or queue-position change, the first at once; `progress` (JobProgressEventDto) ' +
      'per sampling step; `job` (JobResourceDto) once the job has ended, then the server closes the stream. ' +
      'Comment lines (`: heartbeat`) keep proxies from closing an idle stream.',
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiExtraModels(JobStatusEventDto, JobProgressEventDto, JobResourceDto)
  @ApiOkResponse({
    description: 'The event stream',
    content: {
      'text/event-stream': {
        schema: { type: 'string', description: 'Server-sent events: `status`, `progress`, then `job`' },
        example: 'id: 1\nevent: status\ndata: {"job_id":"…","status":"running","queue_position":null,"progress":{"step":0,"total_steps":4,"fraction":0}}\n\n' +
          'id: 2\nevent: progress\ndata: {"job_id":"…","step":1,"total_steps":4,"fraction":0.25}\n\n',
      },
    },
  })
  @ApiErrors(...KEYED_ROUTE_CODES, ErrorCode.JobNotFound, ErrorCode.JobExpired)
  async events(
    @Param('id', new ParseUUIDPipe({ version: '4', exceptionFactory: () => new ApiError(ErrorCode.JobNotFound, 'No such job') })) id: string,
    @Req() req: ApiRequest,
    @Res() res: Response,
  ): Promise<void> {
    const caller = callerOf(req);
    const base = requestBase(req);
    // Before any byte is written: unknown or foreign jobs are an ordinary 404.
    let current = await this.jobs.get(id, caller, base);
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    let seq = 0;
    let closed = false;
    const send = (event: string, data: unknown) => {
      if (!closed) res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const timers: NodeJS.Timeout[] = [];
    let stopListening = () => undefined as void;
    const finish = (resource: JobResource) => {
      if (closed) return;
      send('job', resource);
      close();
    };
    const close = () => {
      if (closed) return;
      closed = true;
      stopListening();
      timers.forEach(clearInterval);
      res.end();
    };
    req.on('close', close);

    send('status', { job_id: id, status: current.status, queue_position: current.queue_position, progress: current.progress });
    if (TERMINAL_STATUSES.includes(current.status)) return finish(current);

    let refreshing = false;
    const refresh = async () => {
      if (refreshing || closed) return;
      refreshing = true;
      try {
        const next = await this.jobs.get(id, caller, base);
        if (next.status !== current.status || next.queue_position !== current.queue_position) {
          send('status', { job_id: id, status: next.status, queue_position: next.queue_position, progress: next.progress });
        }
        current = next;
        if (TERMINAL_STATUSES.includes(next.status)) finish(next);
      } catch {
        // Redis blinking or the job expired mid-stream: keep the stream until the next poll.
      } finally {
        refreshing = false;
      }
    };
    stopListening = this.lifecycle.listen(id, (e: JobEvent) => {
      if (e.type === 'progress') send('progress', { job_id: id, step: e.step, total_steps: e.total_steps, fraction: e.fraction });
      else void refresh();
    });
    timers.push(setInterval(() => void refresh(), POLL_MS));
    timers.push(setInterval(() => !closed && res.write(': heartbeat\n\n'), this.env.SSE_HEARTBEAT_MS));
    // The subscription may have missed what happened between the first read and subscribing.
    void refresh();
  }
}
