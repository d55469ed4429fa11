import { ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize, ArrayNotEmpty, ArrayUnique, IsArray, IsIn, IsOptional, IsString, MaxLength, ValidateBy, ValidationArguments, ValidationOptions,
} from 'class-validator';
import { WEBHOOK_EVENTS, type WebhookEvent } from '@app/queue';
import { GenerateImageDto } from './generate-image.dto';

const METADATA_MAX_KEYS = 16;

/** metadata: a flat object of at most 16 string values (keys ≤ 64 chars, values ≤ 512 chars). */
function IsStringMap(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isStringMap',
      validator: {
        validate: (value: unknown) =>
          !!value && typeof value === 'object' && !Array.isArray(value) &&
          Object.keys(value).length <= METADATA_MAX_KEYS &&
          Object.entries(value as Record<string, unknown>).every(([k, v]) => k.length > 0 && k.length <= 64 && typeof v === 'string' && v.length <= 512),
        defaultMessage: () => `metadata must be an object of at most ${METADATA_MAX_KEYS} string values (keys up to 64, values up to 512 characters)`,
      },
    },
    options,
  );
}

/** webhook_events alone would be silently ignored: say so instead. */
function RequiresWebhookUrl(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'requiresWebhookUrl',
      validator: {
        validate: (_value: unknown, args?: ValidationArguments) => typeof (args?.object as { webhook_url?: unknown } | undefined)?.webhook_url === 'string',
        defaultMessage: () => 'webhook_events needs webhook_url',
      },
    },
    options,
  );
}

export class CreateJobDto extends GenerateImageDto {
  @ApiPropertyOptional({
    example: 'https://example.com/hooks/images',
    description: 'Called on job events (Standard Webhooks signature; docs/webhooks.md). Public http(s) hosts only; 422 webhooks_disabled when the server has no WEBHOOK_SECRET',
  })
  @IsOptional() @IsString() @MaxLength(2048)
  webhook_url?: string;

  @ApiPropertyOptional({ enum: WEBHOOK_EVENTS, isArray: true, default: ['succeeded', 'failed', 'canceled'], description: 'Events to deliver; needs webhook_url' })
  @IsOptional() @IsArray() @ArrayNotEmpty() @IsIn(WEBHOOK_EVENTS as unknown as string[], { each: true }) @ArrayUnique() @ArrayMaxSize(4)
  @RequiresWebhookUrl()
  webhook_events?: WebhookEvent[];

  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' }, example: { story_id: 's-42' } })
  @IsOptional() @IsStringMap()
  metadata?: Record<string, string>;
}
