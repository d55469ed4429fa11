import { ApiPropertyOptional } from '@nestjs/swagger';
import { WEBHOOK_EVENTS, type WebhookEvent } from '@app/queue';
import { OptionalField, rules } from '../../common/field-rules';
import { GenerateImageDto } from './generate-image.dto';

export class CreateJobDto extends GenerateImageDto {
  @ApiPropertyOptional({
    example: 'https://example.com/hooks/images',
    description: 'Called on job events (Standard Webhooks signature; docs/webhooks.md). Public http(s) hosts only; 422 webhooks_disabled when the server has no WEBHOOK_SECRET',
  })
  @OptionalField(rules.text(2048))
  webhook_url?: string;

  @ApiPropertyOptional({ enum: WEBHOOK_EVENTS, isArray: true, default: ['succeeded', 'failed', 'canceled'], description: 'Events to deliver; needs webhook_url' })
  @OptionalField(rules.listOf(WEBHOOK_EVENTS, 4), rules.requires('webhook_url'))
  webhook_events?: WebhookEvent[];

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: { type: 'string' },
    example: { story_id: 's-42' },
    description: 'At most 16 string values; keys up to 64, values up to 512 characters',
  })
  @OptionalField(rules.stringMap({ maxKeys: 16, keyMax: 64, valueMax: 512 }))
  metadata?: Record<string, string>;
}
