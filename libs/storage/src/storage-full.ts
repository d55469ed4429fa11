import { DomainError, ErrorCode } from '@app/common';

const OOM_REPLY = /^OOM command not allowed/;

/**
 * Redis refusing a write because used_memory is over maxmemory (noeviction): a ReplyError, or a
 * MULTI that Redis discarded (EXECABORT) because one of its commands was refused that way.
 */
export function isRedisOutOfMemory(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { message?: unknown; previousErrors?: unknown };
  if (typeof e.message === 'string' && OOM_REPLY.test(e.message)) return true;
  return Array.isArray(e.previousErrors) && e.previousErrors.some((p) => isRedisOutOfMemory(p));
}

export function storageFullError(cause?: unknown): DomainError {
  const full = new DomainError(ErrorCode.StorageFull, 'Redis is out of memory (maxmemory); try again once results expire');
  if (cause !== undefined) full.cause = cause;
  return full;
}

export function isStorageFull(err: unknown): boolean {
  return err instanceof DomainError && err.code === ErrorCode.StorageFull;
}

export interface StorageFullRetry {
  /** Tries in all, the first included. */
  tries: number;
  /** Delay before the second try; doubled before each further one. */
  delayMs: number;
}

/** A few quick tries within one attempt: another job's result may be removed or expire meanwhile. */
export const STORAGE_FULL_RETRY: StorageFullRetry = { tries: 3, delayMs: 100 };

/** Runs fn again while it fails with storage_full, up to `tries` times; other errors pass at once. */
export async function retryWhileStorageFull<T>(fn: () => Promise<T>, retry: StorageFullRetry = STORAGE_FULL_RETRY): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isStorageFull(err) || attempt >= retry.tries) throw err;
      await new Promise((resolve) => setTimeout(resolve, retry.delayMs * 2 ** (attempt - 1)));
    }
  }
}
