import { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';

export interface StateLogSink {
  warn(obj: Record<string, unknown>): void;
  log(obj: Record<string, unknown>): void;
}

/**
 * One dependency (Redis) seen through every connection a process holds to it. The process has a
 * dozen: the shared client, each BullMQ queue and worker (two each), subscribers. Each of them
 * reports every failed reconnect; this turns that into one line when the first connection fails
 * ("redis unavailable") and one when the last failing one is back ("redis available again").
 */
export class DependencyState {
  private readonly failing = new Map<object, string>();
  private downSince?: number;

  constructor(
    readonly name: string,
    private readonly sink: StateLogSink,
    private readonly now: () => number = Date.now,
  ) {}

  get available(): boolean {
    return this.failing.size === 0;
  }

  failed(connection: object, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const wasAvailable = this.failing.size === 0;
    this.failing.set(connection, message);
    if (!wasAvailable) return;
    this.downSince = this.now();
    this.sink.warn({ msg: `${this.name} unavailable`, dependency: this.name, error: message });
  }

  recovered(connection: object): void {
    if (!this.failing.delete(connection) || this.failing.size) return;
    const downMs = this.downSince === undefined ? undefined : this.now() - this.downSince;
    this.downSince = undefined;
    this.sink.log({ msg: `${this.name} available again`, dependency: this.name, ...(downMs === undefined ? {} : { down_ms: downMs }) });
  }

  /** A connection closed for good (shutdown) no longer holds the outage open, nor ends it. */
  forget(connection: object): void {
    this.failing.delete(connection);
    if (!this.failing.size) this.downSince = undefined;
  }
}

/** Errors that mean the connection itself failed (as opposed to a command or a job failing). */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ECONNABORTED)$/.test(code)) return true;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|Connection is closed|Stream isn't writeable|getaddrinfo|LOADING/i.test(err.message);
}

let redisState: DependencyState | undefined;

/** The process-wide Redis state; every Redis connection of the process reports to it. */
export function redisDependency(): DependencyState {
  const logger = new Logger('Redis');
  redisState ??= new DependencyState('redis', { warn: (o) => logger.warn(o), log: (o) => logger.log(o) });
  return redisState;
}

interface RedisLike extends EventEmitter {
  status?: string;
}

const watched = new WeakSet<object>();

/**
 * Routes an ioredis client's connection events to the state. Installs the client's 'error'
 * listener too, so ioredis never prints its "Unhandled error event" stack.
 */
export function watchRedisClient(client: RedisLike, state: DependencyState = redisDependency()): void {
  if (watched.has(client)) return;
  watched.add(client);
  client.on('error', (err: unknown) => state.failed(client, err));
  client.on('ready', () => state.recovered(client));
  client.on('end', () => state.forget(client));
}

/** The part of a BullMQ Queue / Worker / QueueEvents this needs. */
interface BullMqLike extends EventEmitter {
  getBackend?: () => unknown;
}

/**
 * Routes a BullMQ queue's or worker's connection errors to the state, and passes any other error
 * (a lock that could not be renewed, a failing processor) to `other`. BullMQ prints a multi-line
 * dump for an 'error' nobody listens to, so call this right after the object is made.
 */
export function watchBullMq(target: BullMqLike, other?: (err: Error) => void, state: DependencyState = redisDependency()): void {
  if (watched.has(target)) return;
  watched.add(target);
  target.on('error', (err: Error) => {
    if (isConnectionError(err)) state.failed(target, err);
    else other?.(err);
  });
  // BullMQ forwards 'ready' of its connections on the backend, not on the queue itself.
  const backend = target.getBackend?.();
  if (backend instanceof EventEmitter) {
    backend.on('ready', () => state.recovered(target));
  }
}
