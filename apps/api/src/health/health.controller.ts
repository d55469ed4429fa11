import { Controller, Get, Header, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { HealthCheckResult } from '@nestjs/terminus';
import type { Response } from 'express';
import { ReadinessService } from './readiness.service';

/**
 * Load-balancer probes. Liveness ("restart me?") touches nothing but this process; readiness
 * ("send me traffic?") runs the dependency checks, answers 503 with terminus's details when one is
 * down, and 503 `shutting_down` from the moment SIGTERM arrives.
 */
@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(private readonly readiness: ReadinessService) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Readiness (same as /health/ready)' })
  @ApiOkResponse({ description: 'Every check is up' })
  @ApiServiceUnavailableResponse({ description: 'A check is down, or the instance is shutting down' })
  check(@Res({ passthrough: true }) res: Response): Promise<HealthCheckResult> {
    return this.ready(res);
  }

  @Get('ready')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Readiness: Redis, ComfyUI, GPU, workers, queue' })
  @ApiOkResponse({ description: 'Every check is up' })
  @ApiServiceUnavailableResponse({ description: 'A check is down, or the instance is shutting down' })
  async ready(@Res({ passthrough: true }) res: Response): Promise<HealthCheckResult> {
    const { httpStatus, body } = await this.readiness.check();
    res.status(httpStatus);
    return body;
  }

  @Get('live')
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Liveness: the process answers (no dependency is touched)' })
  @ApiOkResponse({ description: 'The process is running' })
  live(): { status: 'ok'; uptime_s: number } {
    return { status: 'ok', uptime_s: Math.round(process.uptime()) };
  }
}
