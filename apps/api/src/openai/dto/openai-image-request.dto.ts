import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { OUTPUT_FORMATS, type OutputFormat } from '@app/queue';
import { OptionalField, RequiredField, rules } from '../../common/field-rules';

export const OPENAI_QUALITIES = ['low', 'medium', 'high', 'auto', 'standard', 'hd'] as const;
export type OpenAiQuality = (typeof OPENAI_QUALITIES)[number];
export const OPENAI_RESPONSE_FORMATS = ['b64_json', 'url'] as const;
export type OpenAiResponseFormat = (typeof OPENAI_RESPONSE_FORMATS)[number];
export const OPENAI_BACKGROUNDS = ['auto', 'opaque', 'transparent'] as const;
const SIZE = /^(auto|\d{1,5}x\d{1,5})$/;

/**
 * The fields of OpenAI's Images API both routes take (generations as JSON, edits as multipart).
 * Unknown fields are refused like on the native routes; `style` and `moderation` are accepted and
 * ignored; `seed` and `negative_prompt` are this server's extensions.
 */
export class OpenAiImageOptionsDto {
  @ApiProperty({ minLength: 1, maxLength: 1000, example: 'a lighthouse at dusk, oil painting' })
  @RequiredField(rules.text(1000), rules.visible)
  prompt: string;

  @ApiPropertyOptional({ example: 'qwen-image-lightning-4step', description: 'A model id of GET /v1/models; the default model when absent; unknown → 404 model_not_found' })
  @OptionalField(rules.text(64))
  model?: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 10, default: 1, description: "Images from one run (num_images), up to the model's limit (4 for Qwen); edits make 1" })
  @OptionalField(rules.integer, rules.between(1, 10))
  n?: number;

  @ApiPropertyOptional({
    example: '1664x928',
    default: 'auto',
    description: "`auto` (the model's default size) or WIDTHxHEIGHT within the model's limits (Qwen: sides 256–2048 in multiples of 16, at most 4 MP; its native sizes are 1328x1328, 1664x928, 928x1664, 1472x1104, 1104x1472, 1584x1056, 1056x1584)",
  })
  @OptionalField(rules.text(16), rules.matches(SIZE, 'must be auto or WIDTHxHEIGHT, e.g. 1024x1024'))
  size?: string;

  @ApiPropertyOptional({
    enum: OPENAI_QUALITIES,
    default: 'auto',
    description: "low: half the model's default steps; high/hd: twice (within its step limits); medium/standard/auto: its default. Ignored by models whose steps are fixed",
  })
  @OptionalField(rules.oneOf(OPENAI_QUALITIES))
  quality?: OpenAiQuality;

  @ApiPropertyOptional({ enum: OPENAI_RESPONSE_FORMATS, default: 'b64_json', description: 'url: a signed link that works without the API key for SIGNED_URL_TTL_SECONDS (default 1 h)' })
  @OptionalField(rules.oneOf(OPENAI_RESPONSE_FORMATS))
  response_format?: OpenAiResponseFormat;

  @ApiPropertyOptional({ enum: OUTPUT_FORMATS, default: 'png' })
  @OptionalField(rules.oneOf(OUTPUT_FORMATS))
  output_format?: OutputFormat;

  @ApiPropertyOptional({ minimum: 0, maximum: 100, default: 90, description: 'jpeg/webp quality (0 is read as 1); ignored for png' })
  @OptionalField(rules.integer, rules.between(0, 100))
  output_compression?: number;

  @ApiPropertyOptional({ enum: OPENAI_BACKGROUNDS, default: 'auto', description: 'transparent is refused (400): no model here renders transparency' })
  @OptionalField(rules.oneOf(OPENAI_BACKGROUNDS))
  background?: (typeof OPENAI_BACKGROUNDS)[number];

  @ApiPropertyOptional({ maxLength: 256, description: "End-user id: recorded on the job (metadata.openai_user) and in the API's log" })
  @OptionalField(rules.text(256))
  user?: string;

  @ApiPropertyOptional({ maxLength: 256, description: 'As user (OpenAI’s newer name); recorded as metadata.openai_user' })
  @OptionalField(rules.text(256))
  safety_identifier?: string;

  @ApiPropertyOptional({ enum: ['low', 'auto'], description: 'Accepted and ignored (the content policy of this server applies)' })
  @OptionalField(rules.oneOf(['low', 'auto']))
  moderation?: string;

  @ApiPropertyOptional({ enum: [false], description: 'Streaming partial images is not supported: only false' })
  @OptionalField(rules.boolean)
  stream?: boolean;

  @ApiPropertyOptional({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Extension: a fixed seed (repeatable, and answered from the result cache when equal)' })
  @OptionalField(rules.integer, rules.between(0, Number.MAX_SAFE_INTEGER))
  seed?: number;

  @ApiPropertyOptional({ maxLength: 1000, description: 'Extension: what the image should not show' })
  @OptionalField(rules.text(1000), rules.emptyOrVisible)
  negative_prompt?: string;
}

/** POST /v1/images/generations (JSON). */
export class OpenAiGenerateImageDto extends OpenAiImageOptionsDto {
  @ApiPropertyOptional({ enum: ['vivid', 'natural'], description: 'Accepted and ignored (a DALL·E 3 setting)' })
  @OptionalField(rules.oneOf(['vivid', 'natural']))
  style?: string;
}

/** The text fields of POST /v1/images/edits (multipart); the files are `image` (or one `image[]`) and `mask`. */
export class OpenAiEditImageDto extends OpenAiImageOptionsDto {
  @ApiPropertyOptional({ minimum: 0, maximum: 1, description: "Extension: how much of the image changes (default from the model: img2img 0.6, inpaint 1.0)" })
  @OptionalField(rules.number, rules.between(0, 1))
  strength?: number;

  @ApiPropertyOptional({ enum: ['high', 'low'], description: 'Accepted and ignored' })
  @OptionalField(rules.oneOf(['high', 'low']))
  input_fidelity?: string;
}
