import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, type OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { ErrorCode } from '@app/common';
import { QUEUE_BOARD_PATH } from '../admin/queue-board';
import { isPublicPath } from '../auth/public-route';
import { ErrorResponseDto } from '../common/dto/error-response.dto';
import { WebhookEventStateDto, WebhookPayloadDto } from '../jobs/dto/job-resource.dto';
import { MODEL_EXTRA_MODELS } from '../models/dto/model-resource.dto';

/** Its multipart form has a field `image`; its raw bodies are the bytes themselves. */
const UPLOAD_PATH = '/api/v1/uploads';

const DESCRIPTION = [
  'Image generation on ComfyUI GPUs: synchronous, polled jobs (long-poll `?wait=`), server-sent events or signed webhooks.',
  'Try it in a browser: [the playground](/playground).',
  '',
  'Every error has one shape, `ErrorResponseDto`: `{"error": {"code", "message", "details"?}, "request_id"}`. The `code` is stable',
  '(see the `ErrorCode` enum), the message is for people. Each operation lists the codes it can answer per status; a method a',
  'path does not support answers `405 method_not_allowed` with an `Allow` header, an unknown path `404 not_found`. 429 and 503',
  'carry `Retry-After`.',
  '',
  'Authentication: an API key as `Authorization: Bearer fk_…` or `X-API-Key: fk_…` (required once any key exists). Health,',
  'metrics and these documents are public; `ADMIN_TOKEN` adds details to health and opens the queue board.',
].join('\n');

/** The API's OpenAPI 3 document, from the controllers' decorators plus what lives outside Nest's routing. */
export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Fictures AI Server')
    .setDescription(DESCRIPTION)
    .setVersion('1')
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'API key: fk_… (docs/security.md)' })
    .addApiKey({ type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'The same API key in its own header' }, 'api-key')
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN (docs/operations.md)' }, 'admin')
    .addBasicAuth({ type: 'http', scheme: 'basic', description: 'Any user name, ADMIN_TOKEN as the password (browsers)' }, 'admin-basic')
    .addSecurityRequirements('bearer')
    .addSecurityRequirements('api-key')
    .build();
  const doc = SwaggerModule.createDocument(app, config, {
    extraModels: [ErrorResponseDto, WebhookEventStateDto, WebhookPayloadDto, ...MODEL_EXTRA_MODELS],
    // `Jobs_create`, `Models_list`…: stable names for generated clients.
    operationIdFactory: (controllerKey, methodKey) => `${controllerKey.replace(/Controller$/, '')}_${methodKey}`,
  });
  // Every answer names its request (yours, when you sent X-Request-Id); the log lines carry the same id.
  doc.components = { ...doc.components, headers: { ...doc.components?.headers, 'X-Request-Id': { description: 'The request id: the one you sent, or a new UUID', schema: { type: 'string' } } } };
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item)) {
      if (!op || typeof op !== 'object' || !('responses' in op)) continue;
      for (const res of Object.values(op.responses as Record<string, { headers?: Record<string, unknown> }>)) {
        if (!('$ref' in res)) res.headers = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' }, ...res.headers };
      }
    }
  }
  for (const [path, item] of Object.entries(doc.paths)) {
    if (!isPublicPath(path)) continue;
    for (const op of Object.values(item)) {
      if (!op || typeof op !== 'object' || !('responses' in op)) continue;
      // Public: no key needed; an admin token, where the route reads one, is optional ({} first).
      op.security = [{}, ...(op.security ?? []).filter((s: Record<string, string[]>) => 'admin' in s).flatMap(() => [{ admin: [] }, { 'admin-basic': [] }])];
    }
  }
  const upload = doc.paths[UPLOAD_PATH]?.post?.requestBody;
  if (upload && 'content' in upload && upload.content['multipart/form-data']) {
    upload.content['multipart/form-data'] = { schema: { type: 'object', required: ['image'], properties: { image: { type: 'string', format: 'binary' } } } };
  }
  doc.paths[QUEUE_BOARD_PATH] = {
    get: {
      tags: ['admin'],
      operationId: 'Admin_queueBoard',
      summary: 'Bull Board: the generation and webhook queues (mounted only when ADMIN_TOKEN is set)',
      security: [{ admin: [] }, { 'admin-basic': [] }],
      responses: {
        200: { description: 'The board (HTML page and its assets below this path)', content: { 'text/html': { schema: { type: 'string' } } } },
        401: {
          description: `\`${ErrorCode.Unauthorized}\`: no or a wrong ADMIN_TOKEN`,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorResponseDto' } } },
        },
      },
    },
  };
  return doc;
}
