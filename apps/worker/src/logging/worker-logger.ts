import type { LoggerService } from '@nestjs/common';
import { pino, type DestinationStream, type Logger as Pino } from 'pino';
import { Env } from '@app/config';
import { baseLogOptions } from '@app/health';
import { jobContext } from './job-context';

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/**
 * Nest's LoggerService on pino for the worker: `logger.log({job_id, msg, ...})` becomes one JSON
 * line with those fields, the Logger's context becomes `context`, and any line logged while a job
 * runs carries its job_id even when the caller did not add it (ComfyUI client, BullMQ hooks).
 */
export class WorkerLogger implements LoggerService {
  constructor(readonly pino: Pino) {}

  log(message: unknown, ...rest: unknown[]): void {
    this.write('info', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest, true);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('trace', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('fatal', message, rest, true);
  }

  private write(level: Level, message: unknown, rest: unknown[], mayHaveStack = false): void {
    if (!this.pino.isLevelEnabled(level)) return;
    // Nest passes the context last; error() may pass a stack before it.
    const params = [...rest];
    const context = params.length && typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    const fields: Record<string, unknown> = context ? { context } : {};
    if (mayHaveStack && typeof params[0] === 'string' && params[0].includes('\n    at ')) fields.stack = params.shift();
    if (message instanceof Error) {
      this.pino[level]({ ...fields, err: message }, message.message);
    } else if (message && typeof message === 'object') {
      this.pino[level]({ ...fields, ...(message as Record<string, unknown>) });
    } else {
      this.pino[level](fields, String(message));
    }
  }
}

/** The worker's pino: JSON lines on stdout (or the given stream), job_id from the job context. */
export function createWorkerLogger(env: Pick<Env, 'LOG_LEVEL'>, destination?: DestinationStream): WorkerLogger {
  const options = { ...baseLogOptions('worker', env.LOG_LEVEL), mixin: () => ({ ...jobContext.getStore() }) };
  return new WorkerLogger(destination ? pino(options, destination) : pino(options));
}
