import { INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { Express, Request, Response } from 'express';
import { Env } from '@app/config';
import { AllExceptionsFilter, bodyParserErrorHandler, requireJsonBody } from './common/all-exceptions.filter';
import { requestIdMiddleware } from './common/request-id.middleware';
import { routeMethodsOf } from './common/route-methods';
import { apiValidationPipe } from './common/validation';
import { mountQueueBoard } from './admin/queue-board';
import { httpMetricsMiddleware } from './metrics/http-metrics.middleware';
import { corsOptions, rejectPrototypeKeys, securityHeaders } from './security/http-hardening';

/** Everything main.ts and the e2e tests share: parsing, validation, errors, docs. */
export function setupApp(app: INestApplication, env: Env): void {
  const express = app as NestExpressApplication;
  express.set('trust proxy', 'loopback, linklocal, uniquelocal');
  express.disable('x-powered-by');
  // helmet before every other middleware, so even early errors carry the security headers.
  express.use(securityHeaders());
  express.use(requestIdMiddleware);
  express.use(httpMetricsMiddleware(app));
  // Bull Board at /admin/queues behind ADMIN_TOKEN (nothing mounted without it).
  mountQueueBoard(app, env);
  express.useBodyParser('json', { limit: env.BODY_LIMIT_BYTES, strict: true, reviver: rejectPrototypeKeys });
  express.use(bodyParserErrorHandler);
  express.use(requireJsonBody);
  if (env.CORS_ORIGINS.length) app.enableCors(corsOptions(env.CORS_ORIGINS));
  app.useGlobalFilters(new AllExceptionsFilter(routeMethodsOf(express.getHttpAdapter().getInstance() as Express)));
  app.useGlobalPipes(apiValidationPipe());
  const doc = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Fictures AI Server')
      .setDescription('Image generation on ComfyUI GPUs: synchronous, polled jobs, server-sent events or signed webhooks.')
      .setVersion('1')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'API key: fk_… (docs/security.md)' })
      .addApiKey({ type: 'apiKey', in: 'header', name: 'X-API-Key' }, 'api-key')
      .addSecurityRequirements('bearer')
      .addSecurityRequirements('api-key')
      .build(),
  );
  SwaggerModule.setup('docs', app, doc, { jsonDocumentUrl: 'docs-json' });
  (express.getHttpAdapter().getInstance() as Express).get('/redoc', (_req: Request, res: Response) => {
    res.type('html').send(
      '<!doctype html><html><head><title>Fictures AI Server API</title><meta charset="utf-8"/></head><body>' +
        '<redoc spec-url="/docs-json"></redoc><script src="https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js"></script></body></html>',
    );
  });
}
