import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ASPECT_RATIOS, type AspectRatio, OUTPUT_FORMATS, type OutputFormat } from '@app/queue';
import { OptionalField, RequiredField, rules } from '../../common/field-rules';

/**
 * Generation parameters. Types and global bounds are checked here; the model's own limits
 * (from its manifest) are checked by the workflow registry. Each field reports the first rule it
 * breaks, in the order listed; null is never a value (omit the field for its default).
 */
export class GenerateImageDto {
  @ApiProperty({ minLength: 1, maxLength: 1000, example: 'a lighthouse at dusk, oil painting', description: 'At least one visible character; no control characters but \\n and \\t' })
  @RequiredField(rules.text(1000), rules.visible)
  prompt: string;

  @ApiPropertyOptional({ maxLength: 1000, default: '', description: 'Empty or at least one visible character' })
  @OptionalField(rules.text(1000), rules.emptyOrVisible)
  negative_prompt?: string;

  @ApiPropertyOptional({ minimum: 256, maximum: 2048, multipleOf: 16, default: 1328 })
  @OptionalField(rules.integer, rules.between(256, 2048))
  width?: number;

  @ApiPropertyOptional({ minimum: 256, maximum: 2048, multipleOf: 16, default: 1328 })
  @OptionalField(rules.integer, rules.between(256, 2048))
  height?: number;

  @ApiPropertyOptional({ minimum: 1, maximum: 150, description: "Default and limit from the model's manifest" })
  @OptionalField(rules.integer, rules.between(1, 150))
  num_inference_steps?: number;

  @ApiPropertyOptional({ minimum: 0, maximum: 30, description: "Default and limit from the model's manifest" })
  @OptionalField(rules.number, rules.between(0, 30))
  guidance_scale?: number;

  @ApiPropertyOptional({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Random when absent; always reported' })
  @OptionalField(rules.integer, rules.between(0, Number.MAX_SAFE_INTEGER))
  seed?: number;

  @ApiPropertyOptional({ example: 'qwen-image-lightning-4step', description: 'Model id from GET /api/v1/models; the default model when absent' })
  @OptionalField(rules.text(64), rules.matches(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a model id (lowercase letters, digits, . _ -)'))
  model?: string;

  @ApiPropertyOptional({
    enum: ASPECT_RATIOS,
    example: '16:9',
    description: "Picks the model's native size for this ratio (GET /api/v1/models lists them; Qwen 16:9 is 1664×928). Not together with width/height",
  })
  @OptionalField(rules.oneOf(ASPECT_RATIOS), rules.excludes('width', 'height'))
  aspect_ratio?: AspectRatio;

  @ApiPropertyOptional({ minimum: 1, maximum: 8, default: 1, example: 3, description: "Variants from one ComfyUI run (the latent's batch); the model's limit (4 for Qwen) is in GET /api/v1/models" })
  @OptionalField(rules.integer, rules.between(1, 8))
  num_images?: number;

  @ApiPropertyOptional({ enum: OUTPUT_FORMATS, default: 'png', example: 'webp', description: 'Encoding of the stored images; png is what ComfyUI wrote, jpeg and webp are converted by the worker' })
  @OptionalField(rules.oneOf(OUTPUT_FORMATS))
  output_format?: OutputFormat;

  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 90, example: 80, description: 'jpeg/webp quality; only with output_format jpeg or webp' })
  @OptionalField(rules.integer, rules.between(1, 100), rules.onlyWith('output_format', ['jpeg', 'webp']))
  output_quality?: number;

  @ApiPropertyOptional({
    default: true,
    example: false,
    description: 'false: always render, even when an earlier job with the same explicit seed and parameters could answer (RESULT_CACHE). Requests without a seed are never answered from the cache',
  })
  @OptionalField(rules.boolean)
  cache?: boolean;
}
