import { raw, type ErrorRequestHandler, type Express, type Request, type RequestHandler } from 'express';
import { ErrorCode } from '@app/common';
import { type BodyParserError, jsonParseFailure } from '../common/all-exceptions.filter';
import { OpenAiExceptionFilter } from './openai-error.filter';

/** Multipart routes: an image and a mask of 20 MB each, their framing and the text fields; a little over is told image_too_large. */
const MULTIPART_ROUTES = ['/v1/images/edits', '/v1/images/variations'];
const MULTIPART_BODY_LIMIT_BYTES = 42 * 1024 * 1024;
const JSON_ROUTES = ['/v1/images/generations'];

const filter = new OpenAiExceptionFilter();

/** Before the JSON parser: the multipart routes read their whole body as bytes (parsed by the route). */
export function mountOpenAiBodyParsers(app: Express): void {
  app.use(MULTIPART_ROUTES, raw({ type: () => true, limit: MULTIPART_BODY_LIMIT_BYTES }));
}

/** After the parsers: their errors on /v1, and a body that is not JSON where JSON is due, in OpenAI's shape. */
export function mountOpenAiBodyChecks(app: Express): void {
  const bodyErrors: ErrorRequestHandler = (err: BodyParserError, request, res, next) => {
    const req = request as Request & { id?: string };
    if (err?.type === 'entity.parse.failed') return filter.reply(res, req, 400, ErrorCode.InvalidJson, jsonParseFailure(err));
    if (err?.type === 'entity.too.large') return filter.reply(res, req, 413, ErrorCode.PayloadTooLarge, 'The body is too large');
    if (err?.status === 415) return filter.reply(res, req, 415, ErrorCode.UnsupportedMediaType, 'The body must be JSON in UTF-8 (Content-Type: application/json)');
    if (typeof err?.status === 'number' && err.status >= 400 && err.status < 500) return filter.reply(res, req, err.status, ErrorCode.ValidationFailed, 'The body could not be read');
    next(err);
  };
  const jsonOnly: RequestHandler = (request, res, next) => {
    const req = request as Request & { id?: string };
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (req.method === 'POST' && hasBody && !req.is('application/json')) {
      return filter.reply(res, req, 415, ErrorCode.UnsupportedMediaType, 'The body must be JSON in UTF-8 (Content-Type: application/json)');
    }
    next();
  };
  app.use('/v1', bodyErrors);
  app.use(JSON_ROUTES, jsonOnly);
}
