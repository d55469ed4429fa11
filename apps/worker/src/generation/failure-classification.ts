import { ComfyAbortError, ComfyUiError, ComfyUiTimeoutError, ComfyUnavailableError, ExecutionError } from '@app/comfyui';
import { DomainError, ErrorCode } from '@app/common';
import { AbortReason, type JobError } from '@app/queue';

/** What an attempt's failure means for the job. */
export type FailureDecision =
  /** The user canceled it: final, no retry. */
  | { kind: 'canceled' }
  /** This worker is shutting down past its grace time: hand the job back untouched, no attempt used. */
  | { kind: 'shutdown' }
  /** ComfyUI itself does not answer: put the job back without using an attempt. */
  | { kind: 'comfyui_down' }
  /**
   * A failure of the attempt. `retry`: BullMQ may run it again (plain Error) or must not
   * (UnrecoverableError); `final`: no attempt is left, the job ends now as failed.
   */
  | {
    kind: 'failed'; error: JobError; retry: boolean; final: boolean; interruptPrompt: boolean; freeMemory: boolean; unexpected: boolean;
    /**
     * Redis is full: drop what this attempt stored (it is stored again by the retry) so Redis gets
     * back under maxmemory and the retry, the job's record and BullMQ's own writes go through.
     */
    releaseStored: boolean;
    /** The prompt ran to the end in ComfyUI: the retry re-attaches and fetches its images instead of rendering again. */
    keepPrompt: boolean;
  };

export interface FailureContext {
  /** The job's AbortSignal fired (cancel or shutdown). */
  aborted: boolean;
  abortReason?: string;
  /** Attempts made before this one, and allowed in all. */
  attemptsMade: number;
  attempts: number;
  /** Only asked for ComfyUnavailableError: does ComfyUI answer a cheap request right now? */
  comfyAnswers?: boolean;
}

const OOM = /out of memory|OutOfMemory/i;

/** Input images found bad only by the worker (a URL's bytes, an upload gone): no retry can fix them. */
const INPUT_CODES: ReadonlySet<string> = new Set([ErrorCode.InvalidImage, ErrorCode.ImageTooLarge, ErrorCode.MaskSizeMismatch, ErrorCode.InvalidImageUrl]);

/** Store failures a later attempt may not meet: the job keeps their code, so it can end with it. */
const RETRYABLE_STORAGE_CODES: ReadonlySet<string> = new Set([ErrorCode.StorageUnavailable, ErrorCode.StorageFull]);

/** The one place that decides what a failed attempt means. Pure: the processor carries it out. */
export function classifyFailure(err: unknown, ctx: FailureContext): FailureDecision {
  if (ctx.aborted || err instanceof ComfyAbortError) {
    return ctx.abortReason === AbortReason.Shutdown ? { kind: 'shutdown' } : { kind: 'canceled' };
  }
  if (err instanceof ComfyUnavailableError && ctx.comfyAnswers === false) return { kind: 'comfyui_down' };
  const lastAttempt = ctx.attemptsMade + 1 >= ctx.attempts;
  if (err instanceof ComfyUiError) {
    return {
      kind: 'failed',
      error: { code: err.code, message: err.message },
      retry: err.retryable,
      final: !err.retryable || lastAttempt,
      // A hung GPU: stop the prompt so the retry does not queue behind it.
      interruptPrompt: err instanceof ComfyUiTimeoutError,
      // CUDA out of memory: unload models and free the cache before the retry.
      freeMemory: err instanceof ExecutionError && OOM.test(`${err.exceptionType} ${err.exceptionMessage}`),
      unexpected: false,
      releaseStored: false,
      keepPrompt: false,
    };
  }
  if (err instanceof DomainError && INPUT_CODES.has(err.code)) {
    // A bad input image stays bad: fail at once with its code.
    return {
      kind: 'failed', error: { code: err.code, message: err.message }, retry: false, final: true,
      interruptPrompt: false, freeMemory: false, unexpected: false, releaseStored: false, keepPrompt: false,
    };
  }
  if (err instanceof DomainError && RETRYABLE_STORAGE_CODES.has(err.code)) {
    // Only the store failed: the images are done in ComfyUI, and (Redis being full) what was stored must give its room back.
    const full = err.code === ErrorCode.StorageFull;
    return {
      kind: 'failed', error: { code: err.code, message: err.message }, retry: true, final: lastAttempt,
      interruptPrompt: false, freeMemory: false, unexpected: false, releaseStored: full, keepPrompt: full && !lastAttempt,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return {
    kind: 'failed',
    error: { code: ErrorCode.InternalError, message: message.slice(0, 300) },
    retry: true,
    final: lastAttempt,
    interruptPrompt: false,
    freeMemory: false,
    unexpected: true,
    releaseStored: false,
    keepPrompt: false,
  };
}
