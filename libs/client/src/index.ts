export { createClient, FicturesClient, jobError, retryingFetch } from './client';
export type {
  ClientOptions, CreateJobRequest, DownloadedImage, GenerateImageResponse, GenerateRequest, GenerateResult, JobList, JobProgress,
  JobProgressEvent, JobResource, JobStatus, JobStatusEvent, ModelResource, SubmitOptions, UploadResource, WaitOptions,
} from './client';
export { FicturesError, parseRetryAfter, type ClientErrorCode, type ErrorCode } from './errors';
export { readEventStream, type ServerSentEvent } from './sse';
export { verifyWebhook, type WebhookPayload } from './webhooks';
export type { components, operations, paths } from './generated/schema';
