import {
  ComfyAbortError, ComfyHttpError, ComfyUiTimeoutError, ComfyUnavailableError, ExecutionError, PromptLostError, PromptValidationError,
} from '@app/comfyui';
import { DomainError, ErrorCode } from '@app/common';
import { AbortReason } from '@app/queue';
import { classifyFailure, type FailureContext } from './failure-classification';

const ctx = (o: Partial<FailureContext> = {}): FailureContext => ({ aborted: false, attemptsMade: 0, attempts: 3, ...o });

describe('classifyFailure', () => {
  it('a user cancel is final and never retried, whatever the error', () => {
    expect(classifyFailure(new Error('socket closed'), ctx({ aborted: true, abortReason: AbortReason.Canceled }))).toEqual({ kind: 'canceled' });
    expect(classifyFailure(new ComfyAbortError(), ctx())).toEqual({ kind: 'canceled' });
  });

  it('a shutdown abort hands the job back instead of failing it', () => {
    expect(classifyFailure(new ComfyAbortError(), ctx({ aborted: true, abortReason: AbortReason.Shutdown }))).toEqual({ kind: 'shutdown' });
  });

  it('ComfyUI down (it does not answer a cheap probe) uses no attempt; unavailable but answering is an ordinary retry', () => {
    const err = new ComfyUnavailableError('connect ECONNREFUSED');
    expect(classifyFailure(err, ctx({ comfyAnswers: false }))).toEqual({ kind: 'comfyui_down' });
    const d = classifyFailure(err, ctx({ comfyAnswers: true }));
    expect(d).toMatchObject({ kind: 'failed', retry: true, final: false, error: { code: ErrorCode.ComfyUiUnavailable } });
  });

  it('input ComfyUI rejects is permanent: final at once, no retry', () => {
    const err = new PromptValidationError({ type: 'prompt_outputs_failed_validation', message: 'bad', details: '' }, {});
    expect(classifyFailure(err, ctx())).toMatchObject({ kind: 'failed', retry: false, final: true, error: { code: ErrorCode.ComfyUiRejected } });
  });

  it('transient failures are retried and final only on the last attempt', () => {
    const err = new PromptLostError('p1');
    expect(classifyFailure(err, ctx({ attemptsMade: 0 }))).toMatchObject({ retry: true, final: false });
    expect(classifyFailure(err, ctx({ attemptsMade: 2 }))).toMatchObject({ retry: true, final: true, error: { code: ErrorCode.PromptLost } });
    expect(classifyFailure(new ComfyHttpError(503, 'busy'), ctx())).toMatchObject({ retry: true, final: false });
    expect(classifyFailure(new ComfyHttpError(400, 'no'), ctx())).toMatchObject({ retry: false, final: true });
  });

  it('a hung GPU (idle timeout) interrupts the prompt before the retry', () => {
    expect(classifyFailure(new ComfyUiTimeoutError('p1', 1000), ctx())).toMatchObject({ kind: 'failed', retry: true, interruptPrompt: true, freeMemory: false });
  });

  it('CUDA out of memory frees ComfyUI memory before the retry; other execution errors do not', () => {
    const oom = new ExecutionError('3', 'KSampler', 'torch.OutOfMemoryError', 'CUDA out of memory');
    expect(classifyFailure(oom, ctx())).toMatchObject({ retry: true, freeMemory: true, interruptPrompt: false });
    const other = new ExecutionError('3', 'KSampler', 'ValueError', 'nope');
    expect(classifyFailure(other, ctx())).toMatchObject({ retry: true, freeMemory: false, error: { code: ErrorCode.ComfyUiExecutionError } });
  });

  it('an unexpected error (a bug, a store failure) is retried and marked unexpected', () => {
    expect(classifyFailure(new TypeError('x is undefined'), ctx({ attemptsMade: 2 }))).toMatchObject({
      kind: 'failed', retry: true, final: true, unexpected: true, error: { code: ErrorCode.InternalError },
    });
  });

  it('an unreachable object store keeps its code: retried, then the job fails with storage_unavailable', () => {
    const err = new DomainError(ErrorCode.StorageUnavailable, 'Object storage is unavailable');
    const expected = {
      kind: 'failed', retry: true, unexpected: false, interruptPrompt: false, freeMemory: false, releaseStored: false, keepPrompt: false,
      error: { code: ErrorCode.StorageUnavailable, message: 'Object storage is unavailable' },
    };
    expect(classifyFailure(err, ctx({ attemptsMade: 0 }))).toEqual({ ...expected, final: false });
    expect(classifyFailure(err, ctx({ attemptsMade: 2 }))).toEqual({ ...expected, final: true });
  });

  it('a full Redis keeps its code: stored images are released, the retry re-attaches, the last attempt fails with storage_full', () => {
    const err = new DomainError(ErrorCode.StorageFull, 'Redis is out of memory');
    const expected = { kind: 'failed', retry: true, unexpected: false, interruptPrompt: false, freeMemory: false, releaseStored: true, error: { code: ErrorCode.StorageFull, message: 'Redis is out of memory' } };
    expect(classifyFailure(err, ctx({ attemptsMade: 0 }))).toEqual({ ...expected, final: false, keepPrompt: true });
    expect(classifyFailure(err, ctx({ attemptsMade: 1 }))).toEqual({ ...expected, final: false, keepPrompt: true });
    expect(classifyFailure(err, ctx({ attemptsMade: 2 }))).toEqual({ ...expected, final: true, keepPrompt: false });
  });

  it('only storage failures release what was stored or keep the prompt', () => {
    for (const err of [new PromptLostError('p1'), new ComfyHttpError(503, 'busy'), new Error('boom'), new DomainError(ErrorCode.StorageUnavailable, 'down')]) {
      expect(classifyFailure(err, ctx())).toMatchObject({ kind: 'failed', releaseStored: false, keepPrompt: false });
    }
  });

  it('other domain errors from a lib stay unexpected internal errors', () => {
    const err = new DomainError(ErrorCode.ValidationFailed, 'Invalid content type');
    expect(classifyFailure(err, ctx())).toMatchObject({ kind: 'failed', retry: true, unexpected: true, error: { code: ErrorCode.InternalError } });
  });
});
