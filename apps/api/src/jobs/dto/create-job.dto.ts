import { ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsIn, IsOptional, IsString, MaxLength, ValidateBy, ValidationOptions } from 'class-validator';
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

export class CreateJobDto extends GenerateImageDto {
  @ApiPropertyOptional({ example: 'https://example.com/hooks/images', description: 'Called when the job ends (Standard Webhooks signature)' })
  @IsOptional() @IsString() @MaxLength(2048)
  webhook_url?: string;

  @ApiPropertyOptional({ enum: WEBHOOK_EVENTS, isArray: true, default: ['succeeded', 'failed', 'canceled'] })
  @IsOptional() @IsArray() @IsIn(WEBHOOK_EVENTS as unknown as string[], { each: true }) @ArrayUnique() @ArrayMaxSize(4)
  webhook_events?: WebhookEvent[];

  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' }, example: { story_id: 's-42' } })
  @IsOptional() @IsStringMap()
  metadata?: Record<string, string>;
}
