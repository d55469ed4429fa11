import type { CorsOptions } from '@nestjs/common/interfaces/external/cors-options.interface';
import type { OutgoingHttpHeaders } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import helmet from 'helmet';

/** The pages a browser renders: Swagger UI, ReDoc and the queue dashboard (and the playground, below). Everything else is JSON or image bytes. */
const DOCS_PAGE = /^\/(docs(\/.*)?|redoc\/?|admin\/queues(\/.*)?)$/;
/** The playground page and its assets (apps/api/playground). */
const PLAYGROUND_PAGE = /^\/playground(\/.*)?$/;

/**
 * The playground's CSP, stricter than the docs': its own scripts and styles only (no inline script,
 * no style attribute), fetches to this origin only, images from here or made in the page (data: and
 * blob: URLs of downloaded results and of the input picked from disk).
 */
export const PLAYGROUND_CSP: Record<string, string[]> = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:', 'blob:'],
  connectSrc: ["'self'"],
  baseUri: ["'none'"],
  formAction: ["'none'"],
  frameAncestors: ["'none'"],
};

/**
 * Security headers (helmet), first of all middleware. The API itself serves JSON and images, so its
 * CSP allows nothing at all; the documentation pages get a CSP that lets Swagger UI (own scripts,
 * inline styles, data: icons) and ReDoc (its bundle served from here, inline styles, a blob: search
 * worker) run, and loads nothing from another origin, so the docs work offline. Cross-Origin-Resource-
 * Policy is same-site rather than same-origin so a front end on another port of the same host can
 * show images in <img>; with keys required such requests need credentials anyway.
 */
export function securityHeaders(): (req: Request, res: Response, next: NextFunction) => void {
  const api = helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
    },
    crossOriginResourcePolicy: { policy: 'same-site' },
  });
  const docs = helmet({
    contentSecurityPolicy: {
      useDefaults: true,
      directives: {
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        workerSrc: ["'self'", 'blob:'],
        connectSrc: ["'self'"],
        // The docs are often opened over plain http on a dev box; upgrading would break them.
        upgradeInsecureRequests: null,
      },
    },
    crossOriginEmbedderPolicy: false,
    crossOriginResourcePolicy: { policy: 'same-site' },
  });
  // The API's answer from helmet is the same for every request: computed once, then only set.
  const apiHeaders = Object.entries(staticHeadersOf([api], '/api'));
  const playground = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: PLAYGROUND_CSP },
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
  return (req, res, next) => {
    if (DOCS_PAGE.test(req.path)) return docs(req, res, next);
    if (PLAYGROUND_PAGE.test(req.path)) return playground(req, res, next);
    for (const [name, value] of apiHeaders) if (value !== undefined) res.setHeader(name, value);
    res.removeHeader('X-Powered-By');
    next();
  };
}

type Middleware = (req: Request, res: Response, next: NextFunction) => void;

/**
 * The headers a middleware chain sets on every answer that does not depend on the request (helmet
 * with a fixed configuration): run once against a stand-in response and kept. Throws when a
 * middleware does not finish synchronously (its headers could depend on something).
 */
export function staticHeadersOf(middlewares: Middleware[], path: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const res = {
    setHeader: (name: string, value: string | number | string[]) => void (headers[name.toLowerCase()] = value),
    getHeader: (name: string) => headers[name.toLowerCase()],
    removeHeader: (name: string) => void delete headers[name.toLowerCase()],
    locals: {},
  } as unknown as Response;
  const req = { method: 'GET', url: path, path, headers: {}, secure: false } as unknown as Request;
  for (const mw of middlewares) {
    let called = false;
    mw(req, res, (err?: unknown) => {
      if (err) throw err;
      called = true;
    });
    if (!called) throw new Error('a middleware did not call next() synchronously: its headers cannot be precomputed');
  }
  return headers;
}

/**
 * CORS for browser clients on CORS_ORIGINS: an explicit list (or "*" alone for any origin), and
 * never credentials — keys travel in headers, not cookies, so "*" can never expose a session.
 * Exposes the headers a client needs to read.
 */
export function corsOptions(origins: string[]): CorsOptions {
  return {
    origin: origins.length === 1 && origins[0] === '*' ? '*' : origins,
    credentials: false,
    methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    exposedHeaders: ['Location', 'Retry-After', 'X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'ETag'],
    maxAge: 600,
  };
}

const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor']);

/**
 * JSON.parse reviver for request bodies: refuses keys that name an object's prototype. They are
 * never fields of this API, and class-transformer silently drops them instead of letting the
 * ValidationPipe report them as unknown, so they would slip past "unknown fields are rejected".
 * The body parser turns the throw into 400 invalid_json, whose message names the key.
 */
export function rejectPrototypeKeys(key: string, value: unknown): unknown {
  if (PROTOTYPE_KEYS.has(key)) throw new PrototypeKeyError(`The key "${key}" is not allowed in a body`);
  return value;
}

/** What rejectPrototypeKeys throws; the body parser hands on this very object. */
export class PrototypeKeyError extends SyntaxError {}
