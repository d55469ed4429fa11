import { DynamicModule, Module, RequestMethod } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { pino, type DestinationStream, type Logger } from 'pino';
import { Env } from '@app/config';
import { baseLogOptions } from '@app/health';

/** Where the API's log lines go: stdout unless a test swaps the stream (overrideProvider). */
export class LogDestination {
  constructor(readonly stream?: DestinationStream) {}
}

/**
 * stdout without a write(2) per line: while one write is in flight, later lines gather and go out
 * together (pino flushes what is left synchronously when the process exits). Under load that is
 * one system call for many requests; when idle, each line still goes out at once.
 */
export function stdoutDestination(): DestinationStream {
  return pino.destination({ dest: 1, sync: false });
}

/** The API's root logger: every line goes through it (a request's through a child of it, see request-log.ts). */
export class ApiLogger {
  constructor(readonly root: Logger) {}
}

/**
 * JSON lines through nestjs-pino; main.ts routes Nest's Logger to it (app.useLogger). The request
 * line comes from requestLogMiddleware (installed by setupApp), whose per-request child logger
 * nestjs-pino binds to the request (useExisting), so every line logged while serving it carries
 * request_id.
 */
@Module({})
export class LoggingModule {
  static forRoot(env: Env): DynamicModule {
    return {
      module: LoggingModule,
      imports: [
        LoggerModule.forRootAsync({
          providers: [
            { provide: LogDestination, useValue: new LogDestination() },
            { provide: ApiLogger, inject: [LogDestination], useFactory: (dest: LogDestination) => new ApiLogger(pino(baseLogOptions('api', env.LOG_LEVEL), dest.stream ?? stdoutDestination())) },
          ],
          inject: [ApiLogger],
          useFactory: (logger: ApiLogger) => ({
            pinoHttp: { logger: logger.root },
            useExisting: true,
            forRoutes: [{ path: '{*splat}', method: RequestMethod.ALL }],
          }),
        }),
      ],
    };
  }
}
