import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ErrorCode } from '@app/common';
import { ASPECT_RATIOS, type AspectRatio, type JobStatus, OUTPUT_FORMATS, type OutputFormat, WEBHOOK_EVENTS } from '@app/queue';

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
const JOB_ID_EXAMPLE = '0b8f3c1e-5d2a-4c7e-9f10-2a3b4c5d6e7f';

/** The parameters the job runs with: the request's, with every default and the seed resolved. */
export class GenerationParamsDto {
  @ApiProperty({ example: 'qwen-image-lightning-4step' }) model: string;
  @ApiProperty({ example: 'a lighthouse at dusk, oil painting' }) prompt: string;
  @ApiProperty({ example: '' }) negative_prompt: string;
  @ApiProperty({ example: 1328 }) width: number;
  @ApiProperty({ example: 1328 }) height: number;
  @ApiProperty({ example: 4 }) num_inference_steps: number;
  @ApiProperty({ example: 1 }) guidance_scale: number;
  @ApiProperty({ example: 42, description: 'Always reported, random when the request had none' }) seed: number;
  @ApiPropertyOptional({ example: 1 }) num_images?: number;
  @ApiPropertyOptional({ enum: OUTPUT_FORMATS, example: 'png' }) output_format?: OutputFormat;
  @ApiPropertyOptional({ example: 90 }) output_quality?: number;
  @ApiPropertyOptional({ enum: ASPECT_RATIOS, example: '16:9' }) aspect_ratio?: AspectRatio;
  @ApiPropertyOptional({ enum: ['img2img', 'inpaint'], description: 'Absent: text-to-image' }) mode?: 'img2img' | 'inpaint';
  @ApiPropertyOptional({ example: 0.6 }) strength?: number;
}

export class JobProgressDto {
  @ApiProperty({ example: 2 }) step: number;
  @ApiProperty({ example: 4 }) total_steps: number;
  @ApiProperty({ example: 0.5, minimum: 0, maximum: 1 }) fraction: number;
}

export class JobTimingsDto {
  @ApiProperty({ example: 12, description: 'accepted → its prompt started on the GPU (last attempt; a job held in ComfyUI\'s queue is still queued)' }) queue_ms: number;
  @ApiPropertyOptional({ example: 2310, description: 'execution as ComfyUI timed it, when known' }) comfyui_ms?: number;
  @ApiProperty({ example: 2395, description: 'prompt started on the GPU → outputs stored' }) execution_ms: number;
  @ApiProperty({ example: 2412, description: 'accepted → result recorded' }) total_ms: number;
}

export class ImageLinkDto {
  @ApiProperty({ example: 0 }) index: number;
  @ApiProperty({ example: `https://images.example.com/api/v1/images/jobs/${JOB_ID_EXAMPLE}/images/0`, description: 'GET it with the API key' }) url: string;
  @ApiProperty({ example: 'image/png', enum: ['image/png', 'image/jpeg', 'image/webp'] }) content_type: string;
  @ApiProperty({ example: 1328 }) width: number;
  @ApiProperty({ example: 1328 }) height: number;
  @ApiProperty({ example: 1532211 }) bytes: number;
  @ApiProperty({ example: '9f2c…', description: 'SHA-256 of the bytes, hex; the download ETag' }) sha256: string;
  @ApiPropertyOptional({
    example: `https://images.example.com/api/v1/images/signed/${JOB_ID_EXAMPLE}/0?expires=1764639000&signature=…`,
    description: 'The same image behind a signed, expiring link that needs no API key (an <img src>); present when the deployment has a link secret (SIGNED_URL_SECRET or WEBHOOK_SECRET)',
  })
  signed_url?: string;
}

export class JobErrorDto {
  @ApiProperty({ example: ErrorCode.ComfyUiExecutionError, description: 'A stable ErrorCode value' }) code: string;
  @ApiProperty({ example: 'ComfyUI failed to execute node 3 (KSampler)' }) message: string;
}

export class WebhookEventStateDto {
  @ApiProperty({ enum: ['pending', 'delivered', 'failed', 'gave_up'] }) status: 'pending' | 'delivered' | 'failed' | 'gave_up';
  @ApiProperty({ example: 1 }) attempts: number;
  @ApiPropertyOptional({ type: 'integer', nullable: true, example: 200 }) last_status_code?: number | null;
  @ApiPropertyOptional({ type: 'string', nullable: true }) last_error?: string | null;
  @ApiPropertyOptional({ type: 'string', format: 'date-time', nullable: true }) delivered_at?: string | null;
}

export class WebhookStateDto {
  @ApiProperty({ example: 'https://example.com/hooks/images' }) url: string;
  @ApiProperty({ enum: WEBHOOK_EVENTS, isArray: true }) events: string[];
  @ApiProperty({ type: 'object', additionalProperties: { $ref: '#/components/schemas/WebhookEventStateDto' }, description: 'Per event' })
  deliveries: Record<string, WebhookEventStateDto>;
}

export class JobLinksDto {
  @ApiProperty({ example: `https://images.example.com/api/v1/images/jobs/${JOB_ID_EXAMPLE}` }) self: string;
  @ApiProperty({ example: `https://images.example.com/api/v1/images/jobs/${JOB_ID_EXAMPLE}/events` }) events: string;
}

/** The public job resource (DESIGN §2), as libs/jobs renderJobResource writes it. */
export class JobResourceDto {
  @ApiProperty({ format: 'uuid', example: JOB_ID_EXAMPLE }) id: string;
  @ApiProperty({ enum: JOB_STATUSES, enumName: 'JobStatus', example: 'queued' }) status: JobStatus;
  @ApiProperty({ description: "True when answered from an earlier job's identical seeded result, without a GPU run" }) cached: boolean;
  @ApiProperty({ example: 'qwen-image-lightning-4step' }) model: string;
  @ApiProperty({ type: () => GenerationParamsDto }) params: GenerationParamsDto;
  @ApiProperty({ type: 'integer', nullable: true, example: 0, description: 'While queued: 0 = next to run; null otherwise' }) queue_position: number | null;
  @ApiProperty({ type: () => JobProgressDto, nullable: true }) progress: JobProgressDto | null;
  @ApiProperty({ example: 1 }) attempts: number;
  @ApiProperty({ format: 'date-time' }) created_at: string;
  @ApiProperty({ type: 'string', format: 'date-time', nullable: true }) started_at: string | null;
  @ApiProperty({ type: 'string', format: 'date-time', nullable: true }) finished_at: string | null;
  @ApiProperty({ type: () => JobTimingsDto, nullable: true }) timings: JobTimingsDto | null;
  @ApiProperty({ type: () => ImageLinkDto, isArray: true, description: 'Empty until the job has succeeded' }) images: ImageLinkDto[];
  @ApiProperty({ type: () => JobErrorDto, nullable: true }) error: JobErrorDto | null;
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' }, example: { story_id: 's-42' } }) metadata: Record<string, string>;
  @ApiProperty({ type: () => WebhookStateDto, nullable: true }) webhook: WebhookStateDto | null;
  @ApiProperty({ type: () => JobLinksDto }) links: JobLinksDto;
}

export class JobListDto {
  @ApiProperty({ type: () => JobResourceDto, isArray: true, description: "The caller's jobs, newest first" }) data: JobResourceDto[];
  @ApiProperty({ type: 'string', nullable: true, example: '1764635400123.0b8f3c1e-5d2a-4c7e-9f10-2a3b4c5d6e7f', description: 'Pass as `cursor` for the next page; null on the last page' })
  next_cursor: string | null;
}

/** SSE `status` event data. */
export class JobStatusEventDto {
  @ApiProperty({ format: 'uuid' }) job_id: string;
  @ApiProperty({ enum: JOB_STATUSES, enumName: 'JobStatus' }) status: JobStatus;
  @ApiProperty({ type: 'integer', nullable: true }) queue_position: number | null;
  @ApiProperty({ type: () => JobProgressDto, nullable: true }) progress: JobProgressDto | null;
}

/** SSE `progress` event data: one sampling step. */
export class JobProgressEventDto {
  @ApiProperty({ format: 'uuid' }) job_id: string;
  @ApiProperty({ example: 2 }) step: number;
  @ApiProperty({ example: 4 }) total_steps: number;
  @ApiProperty({ example: 0.5 }) fraction: number;
}

/** The body of a webhook delivery (Standard Webhooks; docs/webhooks.md). */
export class WebhookPayloadDto {
  @ApiProperty({ enum: WEBHOOK_EVENTS.map((e) => `image.job.${e}`), example: 'image.job.succeeded' }) type: string;
  @ApiProperty({ format: 'date-time', description: 'When the event happened (each attempt has its own webhook-timestamp header)' }) timestamp: string;
  @ApiProperty({ type: () => JobResourceDto }) data: JobResourceDto;
}
