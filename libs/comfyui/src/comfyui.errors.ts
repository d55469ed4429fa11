import { DomainError, ErrorCode } from '@app/common';
import type { ComfyNodeError } from './comfyui.types';

/**
 * Every error the ComfyUI client throws. `retryable` says whether trying again (same graph, later)
 * can help: the worker turns non-retryable ones into BullMQ UnrecoverableError.
 */
export abstract class ComfyUiError extends DomainError {
  abstract readonly retryable: boolean;
}

/** ComfyUI answered /prompt with 400: the graph or a value is wrong. Keeps ComfyUI's own words. */
export class PromptValidationError extends ComfyUiError {
  readonly retryable = false;
  constructor(
    readonly error: { type: string; message: string; details: string; extra_info?: unknown },
    readonly nodeErrors: Record<string, ComfyNodeError>,
  ) {
    super(ErrorCode.ComfyUiRejected, describeValidation(error, nodeErrors), { error, node_errors: nodeErrors });
  }
}

function describeValidation(error: { type: string; message: string; details: string }, nodeErrors: Record<string, ComfyNodeError>): string {
  const parts: string[] = [];
  for (const [id, ne] of Object.entries(nodeErrors)) {
    for (const e of ne.errors) parts.push(`node ${id} (${ne.class_type}): ${e.message}${e.details ? ` [${e.details}]` : ''}`);
  }
  const head = `ComfyUI rejected the prompt: ${error.message}${error.details ? ` (${error.details})` : ''}`;
  return parts.length ? `${head}; ${parts.join('; ')}` : head;
}

/** The prompt ran and a node raised (execution_error). CUDA OOM and friends may pass on retry. */
export class ExecutionError extends ComfyUiError {
  readonly retryable = true;
  constructor(
    readonly nodeId: string,
    readonly nodeType: string,
    readonly exceptionType: string,
    readonly exceptionMessage: string,
    readonly traceback: string[] = [],
  ) {
    super(ErrorCode.ComfyUiExecutionError, `ComfyUI node ${nodeId} (${nodeType}) failed: ${exceptionType}: ${exceptionMessage.split('\n')[0]}`, {
      node_id: nodeId,
      node_type: nodeType,
      exception_type: exceptionType,
      exception_message: exceptionMessage,
    });
  }
}

/** The prompt was interrupted (by us or by someone at the ComfyUI console). */
export class PromptInterruptedError extends ComfyUiError {
  readonly retryable = true;
  constructor(readonly promptId: string) {
    super(ErrorCode.Canceled, `ComfyUI prompt ${promptId} was interrupted`);
  }
}

/** The server answered, twice, that it knows nothing of the prompt: it restarted. Resubmit. */
export class PromptLostError extends ComfyUiError {
  readonly retryable = true;
  constructor(readonly promptId: string) {
    super(ErrorCode.PromptLost, `ComfyUI lost prompt ${promptId} (restarted?)`);
  }
}

/** Connection refused, reset, DNS failure, request timeout, or a 5xx. */
export class ComfyUnavailableError extends ComfyUiError {
  readonly retryable = true;
  constructor(message: string, readonly status?: number) {
    super(ErrorCode.ComfyUiUnavailable, message, status ? { status } : undefined);
  }
}

/** Any other unexpected HTTP answer; keeps status and raw text for the logs. */
export class ComfyHttpError extends ComfyUiError {
  readonly retryable: boolean;
  constructor(readonly status: number, readonly rawText: string, readonly body?: unknown) {
    super(status >= 500 ? ErrorCode.ComfyUiUnavailable : ErrorCode.ComfyUiRejected, `ComfyUI answered HTTP ${status}`);
    this.retryable = status >= 500 || status === 429;
  }
}

/** The prompt showed no sign of life for the idle timeout (hung ComfyUI). */
export class ComfyUiTimeoutError extends ComfyUiError {
  readonly retryable = true;
  constructor(readonly promptId: string, idleMs: number) {
    super(ErrorCode.ComfyUiTimeout, `ComfyUI prompt ${promptId} made no progress for ${idleMs} ms`);
  }
}

/** Downloading an output from /view failed or came back short. */
export class OutputFetchError extends ComfyUiError {
  readonly retryable = true;
  constructor(message: string) {
    super(ErrorCode.OutputFetchFailed, message);
  }
}

/** The caller aborted the wait (cancel, shutdown). */
export class ComfyAbortError extends ComfyUiError {
  readonly retryable = false;
  constructor(readonly reason?: unknown) {
    super(ErrorCode.Canceled, 'wait aborted');
  }
}

export class ClientClosedError extends ComfyUiError {
  readonly retryable = true;
  constructor() {
    super(ErrorCode.ComfyUiUnavailable, 'ComfyUI client closed');
  }
}
