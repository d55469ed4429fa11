import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DynamicModule, Module, RequestMethod } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { pino, type DestinationStream } from 'pino';
import type { Options } from 'pino-http';
import { Env } from '@app/config';
import { baseLogOptions } from '@app/health';

/** Where the API's log lines go: stdout unless a test swaps the stream (overrideProvider). */
export class LogDestination {
  constructor(readonly stream?: DestinationStream) {}
}

/** Probes and scrapes come every few seconds from every balancer: not worth a line each. */
const QUIET_PATHS = /^\/(health(\/(live|ready))?|metrics)\/?(\?|$)/;

export function pinoHttpOptions(env: Env): Options {
  return {
    ...baseLogOptions('api', env.LOG_LEVEL),
    // request-id.middleware has set req.id (from X-Request-Id or new) before this runs.
    genReqId: (req: IncomingMessage) => req.id ?? randomUUID(),
    customAttributeKeys: { reqId: 'request_id', responseTime: 'duration_ms' },
    // Every line logged while serving a request carries request_id; the closing line also req/res.
    quietReqLogger: true,
    // 500 is a bug or an outage; 502/503/504 are answers the API chose (job failed, Redis away, sync timeout).
    customLogLevel: (_req: IncomingMessage, res: ServerResponse, err?: Error) =>
      err || res.statusCode === 500 || res.statusCode > 504 ? 'error' : res.statusCode >= 500 ? 'warn' : 'info',
    // pino-http invents an Error for every 5xx; keep the line short unless something was really thrown.
    customErrorObject: (_req: IncomingMessage, res: ServerResponse, err: Error, val: Record<string, unknown>) =>
      err.message === `failed with status code ${res.statusCode}` ? { ...val, err: undefined } : val,
    serializers: {
      req: (r: { method?: string; url?: string; remoteAddress?: string; headers?: Record<string, unknown> }) => ({
        method: r.method, url: r.url, remote_address: r.remoteAddress, headers: r.headers,
      }),
      res: (r: { statusCode?: number }) => ({ status_code: r.statusCode }),
    },
    autoLogging: { ignore: (req: IncomingMessage) => QUIET_PATHS.test(req.url ?? '') },
  };
}

/**
 * stdout without a write(2) per line: while one write is in flight, later lines gather and go out
 * together (pino flushes what is left synchronously when the process exits). Under load that is
 * one system call for many requests; when idle, each line still goes out at once.
 */
export function stdoutDestination(): DestinationStream {
  return pino.destination({ dest: 1, sync: false });
}

/** JSON lines through nestjs-pino; main.ts routes Nest's Logger to it (app.useLogger). */
@Module({})
export class LoggingModule {
  static forRoot(env: Env): DynamicModule {
    return {
      module: LoggingModule,
      imports: [
        LoggerModule.forRootAsync({
          providers: [{ provide: LogDestination, useValue: new LogDestination() }],
          inject: [LogDestination],
          useFactory: (dest: LogDestination) => ({
            pinoHttp: [pinoHttpOptions(env), dest.stream ?? stdoutDestination()],
            forRoutes: [{ path: '{*splat}', method: RequestMethod.ALL }],
          }),
        }),
      ],
    };
  }
}
