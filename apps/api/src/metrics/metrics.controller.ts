import { Controller, Get, Header, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ApiMetrics } from './api-metrics.service';

/** Prometheus text on the public port (when METRICS_PORT is unset). */
@ApiTags('operations')
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: ApiMetrics) {}

  @Get()
  @ApiOperation({ summary: 'Prometheus metrics (here only when METRICS_PORT is unset; docs/operations.md)' })
  @ApiOkResponse({ description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } })
  @Header('Cache-Control', 'no-store')
  async scrape(@Res({ passthrough: true }) res: Response): Promise<string> {
    const text = await this.metrics.render();
    res.type(this.metrics.contentType);
    return text;
  }
}
