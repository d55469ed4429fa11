import type { INestApplication } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { ApiMetrics } from './api-metrics.service';

/**
 * The route pattern Express matched (`/api/v1/images/jobs/:id`), never the raw path, so a label
 * cannot grow with job ids; requests no route matched share one label.
 */
export function routeLabel(req: Request): string {
  const pattern = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof pattern === 'string') return `${req.baseUrl ?? ''}${pattern}` || '/';
  if (req.baseUrl) return `${req.baseUrl}/*`;
  return 'unmatched';
}

/** Counts and times every request once it is answered (or its client went away). */
export function httpMetricsMiddleware(app: INestApplication) {
  const metrics = app.get(ApiMetrics, { strict: false });
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    let done = false;
    const record = () => {
      if (done) return;
      done = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // A client that hung up before the answer was sent: 499, as nginx logs it.
      const status = res.writableFinished ? res.statusCode : 499;
      metrics.observeHttp(req.method, routeLabel(req), status, seconds);
    };
    res.once('finish', record);
    res.once('close', record);
    next();
  };
}

/** The liveness fast path's requests, counted under the route the controller declares. */
export function livenessObserver(app: INestApplication): (status: number, seconds: number) => void {
  const metrics = app.get(ApiMetrics, { strict: false });
  return (status, seconds) => metrics.observeHttp('GET', '/health/live', status, seconds);
}
