import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner, ModulesContainer } from '@nestjs/core';
import request from 'supertest';
import { STATUS_BY_CODE } from '../apps/api/src/common/api-error';
import { isPublicPath } from '../apps/api/src/auth/public-route';
import { Stack } from './support/stack';

type Operation = { responses: Record<string, { content?: Record<string, { schema?: Record<string, unknown>; examples?: Record<string, { value: { error: { code: string } } }> }> }>; security?: unknown[] };
type Document = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> } };

/** swagger-parser and openapi-typescript are ESM only: they run in a child node (test/support/openapi-tools.mjs). */
function openapiTool(command: 'validate' | 'types', document: unknown): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(__dirname, 'support', 'openapi-tools.mjs'), command], { input: JSON.stringify(document), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ERROR_REF = '#/components/schemas/ErrorResponseDto';
/** Content types whose body is not JSON: what a 2xx of them must say about its schema. */
const NON_JSON_2XX: Array<[RegExp, (s: Record<string, unknown>) => boolean]> = [
  [/^image\//, (s) => s.type === 'string' && s.format === 'binary'],
  [/^text\/event-stream$/, (s) => s.type === 'string'],
  [/^text\/(plain|html|javascript|css)$/, (s) => s.type === 'string'],
];

/** Every route of every Nest controller, from the framework's own metadata (not a list kept here). */
function controllerRoutes(stack: Stack): Array<{ method: string; path: string; handler: string }> {
  const discovery = new DiscoveryService(stack.api.get(ModulesContainer));
  const scanner = new MetadataScanner();
  const routes: Array<{ method: string; path: string; handler: string }> = [];
  const list = (v: unknown): string[] => (Array.isArray(v) ? v : [v ?? '']).map(String);
  for (const wrapper of discovery.getControllers()) {
    const type = wrapper.metatype as (new (...a: unknown[]) => unknown) | undefined;
    if (!type) continue;
    const prototype = type.prototype as Record<string, unknown>;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const fn = prototype[name] as object;
      const method = Reflect.getMetadata(METHOD_METADATA, fn) as RequestMethod | undefined;
      if (method === undefined) continue;
      for (const base of list(Reflect.getMetadata(PATH_METADATA, type))) {
        for (const sub of list(Reflect.getMetadata(PATH_METADATA, fn))) {
          const path = `/${[base, sub].map((p) => p.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/')}`.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
          routes.push({ method: RequestMethod[method].toLowerCase(), path, handler: `${type.name}.${name}` });
        }
      }
    }
  }
  return routes;
}

describe('the OpenAPI document at /docs-json', () => {
  let stack: Stack;
  let doc: Document;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false });
    doc = (await request(stack.url).get('/docs-json').expect(200)).body as Document;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('is a valid OpenAPI 3 document (swagger-parser)', async () => {
    expect(doc.openapi).toMatch(/^3\./);
    expect(openapiTool('validate', doc)).toEqual({ status: 0, stdout: 'valid\n', stderr: '' });
    // The validator can fail: a document with an operation that has no responses is refused.
    const broken = structuredClone(doc);
    broken.paths['/health/live'].get.responses = undefined as never;
    expect(openapiTool('validate', broken).status).toBe(1);
  });

  it('has every controller route, each with a 2xx schema (JSON, or binary image, SSE or text described as such)', () => {
    const routes = controllerRoutes(stack);
    // The job, model, upload and health controllers at least: an enumeration that finds nothing proves nothing.
    expect(routes.length).toBeGreaterThanOrEqual(13);
    const problems: string[] = [];
    for (const r of routes) {
      const op = doc.paths[r.path]?.[r.method];
      if (!op) {
        problems.push(`${r.method.toUpperCase()} ${r.path} (${r.handler}) is missing`);
        continue;
      }
      const ok2xx = Object.entries(op.responses).filter(([status]) => /^2\d\d$/.test(status));
      const described = ok2xx.some(([, res]) =>
        Object.entries(res.content ?? {}).some(([type, media]) => {
          const schema = media.schema;
          if (!schema) return false;
          if (type === 'application/json') return typeof schema.$ref === 'string' || typeof schema.type === 'string';
          return NON_JSON_2XX.some(([re, check]) => re.test(type) && check(schema));
        }),
      );
      if (!described) problems.push(`${r.method.toUpperCase()} ${r.path} (${r.handler}) has no 2xx response with a schema`);
    }
    expect(problems).toEqual([]);
  });

  it('routes behind the API key list 401; native error answers use the one error schema, each example code under its own status', () => {
    const problems: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const where = `${method.toUpperCase()} ${path}`;
        // Public: a public path, or an operation whose security is none ([]) or optional ({}); the admin board has its own token.
        const security = op.security as Array<Record<string, unknown>> | undefined;
        const open = isPublicPath(path) || (security !== undefined && (security.length === 0 || security.some((r) => Object.keys(r).length === 0)));
        const keyed = !open && !path.startsWith('/admin/');
        if (keyed && !op.responses['401']) problems.push(`${where}: no 401`);
        for (const [status, res] of Object.entries(op.responses)) {
          // The native routes share one error schema; the OpenAI-compatible /v1 routes answer in OpenAI's shape.
          if (!/^[45]\d\d$/.test(status) || !path.startsWith('/api/')) continue;
          const json = res.content?.['application/json'];
          if (json?.schema?.$ref !== ERROR_REF) {
            problems.push(`${where} ${status}: not the error schema`);
            continue;
          }
          for (const ex of Object.values(json.examples ?? {})) {
            if (String(STATUS_BY_CODE[ex.value.error.code]) !== status) problems.push(`${where} ${status}: example ${ex.value.error.code} is answered with ${STATUS_BY_CODE[ex.value.error.code]}`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('declares the security schemes: API key as Bearer or X-API-Key, the admin token; public routes need none', () => {
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['admin', 'admin-basic', 'api-key', 'bearer']);
    expect(doc.paths['/health/live'].get.security).toEqual([{}]);
    expect(doc.paths['/health/ready'].get.security).toEqual([{}, { admin: [] }, { 'admin-basic': [] }]);
    expect(doc.paths['/admin/queues'].get.security).toEqual([{ admin: [] }, { 'admin-basic': [] }]);
    // Keyed routes inherit the global requirement.
    expect(doc.paths['/api/v1/images/jobs'].post.security).toBeUndefined();
  });

  it('describes downloads as binary images, events as text/event-stream, and the job resource in full', () => {
    const image = doc.paths['/api/v1/images/jobs/{id}/images/{index}'].get.responses['200'].content ?? {};
    expect(Object.keys(image).sort()).toEqual(['image/jpeg', 'image/png', 'image/webp']);
    expect(Object.keys(doc.paths['/api/v1/images/jobs/{id}/events'].get.responses['200'].content ?? {})).toEqual(['text/event-stream']);
    const job = doc.components.schemas.JobResourceDto as { required: string[] };
    expect(job.required).toEqual(expect.arrayContaining(['id', 'status', 'queue_position', 'progress', 'images', 'error', 'links']));
    expect(doc.components.schemas).toHaveProperty('JobStatusEventDto');
    expect(doc.components.schemas).toHaveProperty('JobProgressEventDto');
    expect(doc.components.schemas).toHaveProperty('WebhookPayloadDto');
  });

  it('its request examples are what the API accepts: 202 for each, or invalid_image only for the made-up upload ids', async () => {
    const body = (doc.paths['/api/v1/images/jobs'].post as unknown as { requestBody: { content: Record<string, { examples: Record<string, { value: Record<string, unknown> }> }> } }).requestBody;
    const examples = Object.entries(body.content['application/json'].examples);
    expect(examples.length).toBeGreaterThanOrEqual(4);
    for (const [name, { value }] of examples) {
      // The webhook example needs WEBHOOK_SECRET on the server; its URL is judged before that.
      const res = await request(stack.url).post('/api/v1/images/jobs').send({ ...value, webhook_url: undefined, webhook_events: undefined });
      const expected = typeof value.image === 'string' ? { status: 400, code: 'invalid_image' } : { status: 202, code: undefined };
      expect({ name, status: res.status, code: res.body.error?.code }).toEqual({ name, ...expected });
    }
  });

  it('equals the committed docs/openapi.json, from which the client types are generated (regenerate: npm run openapi)', () => {
    const committed = JSON.parse(readFileSync(join(__dirname, '..', 'docs', 'openapi.json'), 'utf8')) as Document;
    expect(doc).toEqual(committed);
  });

  it('the committed client types are the ones openapi-typescript makes from the committed document', () => {
    const file = join(__dirname, '..', 'docs', 'openapi.json');
    const { status, stdout: generated } = openapiTool('types', JSON.parse(readFileSync(file, 'utf8')));
    expect(status).toBe(0);
    expect(generated).toContain('export interface paths');
    const committed = readFileSync(join(__dirname, '..', 'libs', 'client', 'src', 'generated', 'schema.ts'), 'utf8');
    expect(committed.endsWith(generated)).toBe(true);
  });
});
