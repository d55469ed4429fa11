import type { IncomingMessage, Server } from 'node:http';
import { INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { SwaggerModule } from '@nestjs/swagger';
import { json, raw, type Express, type Request, type Response } from 'express';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { AllExceptionsFilter, bodyParserErrorHandler, requireJsonBody, sendError } from './common/all-exceptions.filter';
import { ETAG_MAX_BYTES, weakEtagUpTo } from './common/etag';
import { requestIdMiddleware } from './common/request-id.middleware';
import { ApiLogger } from './logging/logging.module';
import { requestLogMiddleware } from './logging/request-log';
import { routeMethodsOf } from './common/route-methods';
import { apiValidationPipe } from './common/validation';
import { mountQueueBoard } from './admin/queue-board';
import { buildOpenApiDocument } from './docs/openapi';
import { mountRedoc } from './docs/redoc';
import { installLivenessFastPath } from './health/liveness-fast-path';
import { httpMetricsMiddleware, livenessObserver } from './metrics/http-metrics.middleware';
import { corsOptions, rejectPrototypeKeys, securityHeaders, staticHeadersOf } from './security/http-hardening';
import { OPENAI_PATH, OpenAiExceptionFilter } from './openai';
import { mountOpenAiBodyChecks, mountOpenAiBodyParsers } from './openai/openai-http';

const DOCS_TITLE = 'Fictures AI Server API';
/** Submissions that may carry an image and a mask as data: URLs (20 MB each, base64). */
const EDIT_ROUTES = ['/api/v1/images/jobs', '/api/v1/images/generate'];
const EDIT_BODY_LIMIT_BYTES = 64 * 1024 * 1024;
/** Raw image or multipart body: a 20 MB image plus its multipart framing, a little over so it is told image_too_large. */
const UPLOAD_ROUTE = '/api/v1/uploads';
const UPLOAD_BODY_LIMIT_BYTES = 21 * 1024 * 1024;

/** Beyond `image` and `mask`, a submission is held to BODY_LIMIT_BYTES like every other body. */
function imageFieldsOnlyMayBeLarge(limit: number) {
  return (req: Request & { bodyBytes?: number; id?: string }, res: Response, next: (e?: unknown) => void): void => {
    const body: unknown = req.body;
    if (req.bodyBytes === undefined || typeof body !== 'object' || body === null) return next();
    const fields = body as { image?: unknown; mask?: unknown };
    const imageBytes = [fields.image, fields.mask].reduce<number>((n, v) => n + (typeof v === 'string' ? Buffer.byteLength(v) : 0), 0);
    if (req.bodyBytes - imageBytes > limit) return sendError(res, req, 413, ErrorCode.PayloadTooLarge, 'The body is too large');
    next();
  };
}

/** Everything main.ts and the e2e tests share: parsing, validation, errors, docs. */
export function setupApp(app: INestApplication, env: Env): void {
  const express = app as NestExpressApplication;
  express.set('trust proxy', 'loopback, linklocal, uniquelocal');
  express.disable('x-powered-by');
  // Express's weak ETags, except on answers that carry images as base64 (see common/etag.ts).
  express.set('etag', weakEtagUpTo(ETAG_MAX_BYTES));
  // helmet before every other middleware, so even early errors carry the security headers.
  const helmetHeaders = securityHeaders();
  express.use(helmetHeaders);
  // Liveness skips Express and Nest (health/liveness-fast-path.ts), with the same headers.
  installLivenessFastPath(app.getHttpServer() as Server, staticHeadersOf([helmetHeaders], '/health/live'), livenessObserver(app));
  express.use(requestIdMiddleware);
  // The request's line and its child logger (request_id on every line logged while serving it).
  express.use(requestLogMiddleware(app.get(ApiLogger, { strict: false }).root));
  express.use(httpMetricsMiddleware(app));
  // Bull Board at /admin/queues behind ADMIN_TOKEN (nothing mounted without it).
  mountQueueBoard(app, env);
  // Routes that take an image get room for it; every other route keeps BODY_LIMIT_BYTES.
  express.use(EDIT_ROUTES, json({
    limit: EDIT_BODY_LIMIT_BYTES, strict: true, reviver: rejectPrototypeKeys,
    verify: (req, _res, buf) => void ((req as IncomingMessage & { bodyBytes?: number }).bodyBytes = buf.length),
  }), imageFieldsOnlyMayBeLarge(env.BODY_LIMIT_BYTES));
  express.use(UPLOAD_ROUTE, raw({ type: () => true, limit: UPLOAD_BODY_LIMIT_BYTES }));
  mountOpenAiBodyParsers(express.getHttpAdapter().getInstance() as Express);
  express.useBodyParser('json', { limit: env.BODY_LIMIT_BYTES, strict: true, reviver: rejectPrototypeKeys });
  // The OpenAI-compatible /v1 answers body errors in OpenAI's shape.
  mountOpenAiBodyChecks(express.getHttpAdapter().getInstance() as Express);
  express.use(bodyParserErrorHandler);
  express.use(requireJsonBody);
  if (env.CORS_ORIGINS.length) app.enableCors(corsOptions(env.CORS_ORIGINS));
  const routeMethods = routeMethodsOf(express.getHttpAdapter().getInstance() as Express);
  // /v1 errors (even on paths no route takes) in OpenAI's shape; every other path in ours.
  app.useGlobalFilters(new AllExceptionsFilter(routeMethods, [[OPENAI_PATH, new OpenAiExceptionFilter(routeMethods)]]));
  app.useGlobalPipes(apiValidationPipe());
  const doc = buildOpenApiDocument(app);
  const server = express.getHttpAdapter().getInstance() as Express;
  // Before Swagger UI's static files, which are mounted under the same /docs prefix.
  mountRedoc(server, '/docs-json', DOCS_TITLE);
  SwaggerModule.setup('docs', app, doc, { jsonDocumentUrl: 'docs-json', customSiteTitle: DOCS_TITLE });
}
