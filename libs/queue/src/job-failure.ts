import { ErrorCode } from '@app/common';

export interface JobError {
  code: string;
  message: string;
}

/**
 * A failed BullMQ job keeps only a reason string; we write it as "[code] message" so the stable code
 * survives, and map BullMQ's own reasons (stalled jobs) to codes too.
 */
export function encodeFailure(code: string, message: string): string {
  return `[${code}] ${message}`;
}

export function decodeFailure(reason: string | undefined): JobError {
  if (!reason) return { code: ErrorCode.InternalError, message: 'The job failed' };
  const m = /^\[([a-z_]+)\] ([\s\S]*)$/.exec(reason);
  // An internal error's text stays in the logs; the resource only says that it failed.
  if (m) return m[1] === ErrorCode.InternalError ? { code: m[1], message: 'The job failed' } : { code: m[1], message: m[2] };
  if (/stalled more than allowable limit|started more than allowable limit/.test(reason)) {
    return { code: ErrorCode.JobStalled, message: 'The job was interrupted too many times (worker crashes) and was given up' };
  }
  return { code: ErrorCode.InternalError, message: 'The job failed' };
}
