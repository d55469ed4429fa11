import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { DomainError, ErrorCode } from '@app/common';
import { redisDependency } from '@app/queue';
import { isRedisOutOfMemory } from '@app/storage';
import { PrototypeKeyError } from '../security/http-hardening';
import { ApiError, isRedisUnavailable, STATUS_BY_CODE, STORAGE_FULL_RETRY_AFTER_S } from './api-error';
import { handledByRoute, type RouteMethods } from './route-methods';

export interface BodyParserError extends Error {
  type?: string;
  status?: number;
  /** The text the JSON parser refused (set by body-parser on entity.parse.failed). */
  body?: unknown;
}

/**
 * The message of 400 invalid_json, saying what the parser refused: a key no body may use, JSON
 * that is not an object (`null`, `"text"`, `42`: body-parser's strict mode), or text that is not JSON.
 */
export function jsonParseFailure(err: BodyParserError): string {
  if (err instanceof PrototypeKeyError) return err.message;
  if (typeof err.body === 'string' && isJsonScalar(err.body)) return 'The body must be a JSON object';
  return 'The body is not valid JSON';
}

function isJsonScalar(text: string): boolean {
  const first = /\S/.exec(text)?.[0];
  if (first === undefined || first === '{' || first === '[') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Every error leaves the API in one shape: {error: {code, message, details}, request_id}. Domain
 * errors keep their code; framework errors get one; anything unexpected is a 500 with an error id
 * that appears in the log and nothing internal in the body.
 */
/** The one error body of the API. */
export function sendError(res: Response, req: Request & { id?: string }, status: number, code: string, message: string, details?: unknown): void {
  res.status(status).json({ error: { code, message, ...(details !== undefined ? { details } : {}) }, request_id: req.id });
}

/**
 * Express error middleware placed right after the body parser: Nest would turn a parse error into a
 * generic 400, losing whether the JSON was malformed or the body too large.
 */
export function bodyParserErrorHandler(err: BodyParserError, req: Request & { id?: string }, res: Response, next: (e?: unknown) => void): void {
  if (err?.type === 'entity.parse.failed') return sendError(res, req, 400, ErrorCode.InvalidJson, jsonParseFailure(err));
  if (err?.type === 'entity.too.large') return sendError(res, req, 413, ErrorCode.PayloadTooLarge, 'The body is too large');
  if (err?.status === 415) return sendError(res, req, 415, ErrorCode.UnsupportedMediaType, 'The body must be JSON in UTF-8 (Content-Type: application/json)');
  // Any other client error of the parser, typed or not (a gzip body that does not inflate has no type).
  if (typeof err?.status === 'number' && err.status >= 400 && err.status < 500) return sendError(res, req, err.status, ErrorCode.ValidationFailed, 'The body could not be read');
  next(err);
}

/** A body that is not JSON would otherwise reach validation as {} and get a misleading 400. */
export function requireJsonBody(req: Request & { id?: string }, res: Response, next: () => void): void {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  // Uploads are image bytes (raw or multipart), read by their own parser.
  if (hasBody && ['POST', 'PUT', 'PATCH'].includes(req.method) && req.path.startsWith('/api/') && !req.path.startsWith('/api/v1/uploads') && !req.is('application/json')) {
    return sendError(res, req, 415, ErrorCode.UnsupportedMediaType, 'The body must be JSON in UTF-8 (Content-Type: application/json)');
  }
  next();
}

@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('HTTP');

  /**
   * routeMethods: which methods the app's routes answer on a path, for 405 instead of 404.
   * byPath: filters that own the errors of other surfaces (e.g. /v1, OpenAI's shape), including
   * paths no route takes, which never reach a controller-scoped filter.
   */
  constructor(
    private readonly routeMethods: RouteMethods = () => [],
    private readonly byPath: Array<[RegExp, ExceptionFilter]> = [],
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const req = ctx.getRequest<Request & { id?: string }>();
    const res = ctx.getResponse<Response>();
    const owner = this.byPath.find(([re]) => re.test(req.path));
    if (owner) return void owner[1].catch(exception, host);
    // No route took the request but the path has routes: a wrong method, not a missing page.
    if (exception instanceof HttpException && exception.getStatus() === HttpStatus.NOT_FOUND && !handledByRoute(req) && !res.headersSent) {
      const allowed = this.routeMethods(req.path);
      if (allowed.length) return this.wrongMethod(req, res, allowed);
    }
    const { status, code, message, details, headers } = this.describe(exception, req);
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    this.send(res, req, status, code, message, details);
  }

  /** The body of an error; a compatible surface (the OpenAI one under /v1) writes its own shape. */
  protected send(res: Response, req: Request & { id?: string }, status: number, code: string, message: string, details?: unknown): void {
    sendError(res, req, status, code, message, details);
  }

  private wrongMethod(req: Request & { id?: string }, res: Response, allowed: string[]): void {
    res.setHeader('Allow', allowed.join(', '));
    this.send(res, req, 405, ErrorCode.MethodNotAllowed, `${req.method} is not allowed on ${req.path}; allowed: ${allowed.join(', ')}`, { allow: allowed });
  }

  protected describe(exception: unknown, req: Request & { id?: string }): { status: number; code: string; message: string; details: unknown; headers: Record<string, string> } {
    const none: Record<string, string> = {};
    if (exception instanceof DomainError) {
      const status = STATUS_BY_CODE[exception.code] ?? 400;
      const headers =
        exception instanceof ApiError ? exception.headers
        : exception.code === ErrorCode.StorageFull ? { 'Retry-After': String(STORAGE_FULL_RETRY_AFTER_S) }
        // A replica catching up or a failover: moments, not minutes.
        : exception.code === ErrorCode.ReplicationUnconfirmed ? { 'Retry-After': '1' }
        : none;
      return { status, code: exception.code, message: exception.message, details: exception.details, headers };
    }
    if (isRedisOutOfMemory(exception)) {
      // Any write of the API (queue, quota, rate limit) past Redis's maxmemory: the same 503 as admission control.
      this.logger.warn({ request_id: req.id, msg: 'request refused: redis out of memory' });
      return { status: 503, code: ErrorCode.StorageFull, message: 'Storage is full; try again later', details: undefined, headers: { 'Retry-After': String(STORAGE_FULL_RETRY_AFTER_S) } };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const code =
        status === HttpStatus.NOT_FOUND ? ErrorCode.NotFound
        : status === HttpStatus.TOO_MANY_REQUESTS ? ErrorCode.RateLimited
        : status === HttpStatus.UNAUTHORIZED ? ErrorCode.Unauthorized
        : status === HttpStatus.PAYLOAD_TOO_LARGE ? ErrorCode.PayloadTooLarge
        : status < 500 ? ErrorCode.ValidationFailed : ErrorCode.InternalError;
      const message = status === HttpStatus.NOT_FOUND ? `No route ${req.method} ${req.path}` : status < 500 ? exception.message : 'Internal error';
      return { status, code, message, details: undefined, headers: none };
    }
    if (isRedisUnavailable(exception)) {
      // While the outage is known (and logged once by the Redis state), a line per request is debug noise.
      const line = { request_id: req.id, msg: 'request failed: redis unavailable', error: (exception as Error).message };
      if (redisDependency().available) this.logger.warn(line);
      else this.logger.debug(line);
      return { status: 503, code: ErrorCode.RedisUnavailable, message: 'The job store is unavailable; try again shortly', details: undefined, headers: { 'Retry-After': '5' } };
    }
    const errorId = randomUUID();
    this.logger.error({ request_id: req.id, error_id: errorId, msg: 'unhandled error', error: exception instanceof Error ? exception.stack : String(exception) });
    return { status: 500, code: ErrorCode.InternalError, message: 'Internal error', details: { error_id: errorId }, headers: none };
  }
}
