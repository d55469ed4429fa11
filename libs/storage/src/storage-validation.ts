import { DomainError, ErrorCode } from '@app/common';
import type { JobRecord } from './result-store';

/** Job ids become file names and Redis key parts: a closed alphabet rules out traversal and key games. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

// type/subtype with optional parameters, printable ASCII only: it is served back as a Content-Type
// header and stored as the first line of an image file, so no CR/LF can get in.
const CONTENT_TYPE_PATTERN = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;[\x20-\x7e]*)?$/;

export function assertJobId(jobId: string): void {
  if (typeof jobId !== 'string' || !JOB_ID_PATTERN.test(jobId)) {
    throw new DomainError(ErrorCode.ValidationFailed, 'Invalid job id', { field: 'jobId' });
  }
}

export function assertImageIndex(index: number): void {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new DomainError(ErrorCode.ValidationFailed, 'Invalid image index', { field: 'index' });
  }
}

export function assertContentType(contentType: string): void {
  if (typeof contentType !== 'string' || contentType.length > 255 || !CONTENT_TYPE_PATTERN.test(contentType)) {
    throw new DomainError(ErrorCode.ValidationFailed, 'Invalid content type', { field: 'contentType' });
  }
}

export function assertImageBytes(bytes: Buffer): void {
  if (!Buffer.isBuffer(bytes)) {
    throw new DomainError(ErrorCode.ValidationFailed, 'Image bytes must be a Buffer', { field: 'bytes' });
  }
}

export function isJobRecord(value: unknown): value is JobRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function assertJobRecord(record: JobRecord): void {
  if (!isJobRecord(record)) {
    throw new DomainError(ErrorCode.ValidationFailed, 'Job record must be a JSON object', { field: 'record' });
  }
}
