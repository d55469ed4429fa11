import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsNumber, IsOptional, IsString, Length, Matches, Max, MaxLength, Min } from 'class-validator';

/**
 * Generation parameters. Types and global bounds are checked here; the model's own limits
 * (from its manifest) are checked by the workflow registry.
 */
export class GenerateImageDto {
  @ApiProperty({ minLength: 1, maxLength: 1000, example: 'a lighthouse at dusk, oil painting' })
  @IsString() @Length(1, 1000) @Matches(/\S/, { message: 'prompt must not be blank' })
  prompt: string;

  @ApiPropertyOptional({ maxLength: 1000, default: '' })
  @IsOptional() @IsString() @MaxLength(1000)
  negative_prompt?: string;

  @ApiPropertyOptional({ minimum: 256, maximum: 2048, multipleOf: 16, default: 1328 })
  @IsOptional() @IsInt() @Min(256) @Max(2048)
  width?: number;

  @ApiPropertyOptional({ minimum: 256, maximum: 2048, multipleOf: 16, default: 1328 })
  @IsOptional() @IsInt() @Min(256) @Max(2048)
  height?: number;

  @ApiPropertyOptional({ minimum: 1, maximum: 150, description: "Default and limit from the model's manifest" })
  @IsOptional() @IsInt() @Min(1) @Max(150)
  num_inference_steps?: number;

  @ApiPropertyOptional({ minimum: 0, maximum: 30, description: "Default and limit from the model's manifest" })
  @IsOptional() @IsNumber({ allowNaN: false, allowInfinity: false }) @Min(0) @Max(30)
  guidance_scale?: number;

  @ApiPropertyOptional({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Random when absent; always reported' })
  @IsOptional() @IsInt() @Min(0) @Max(Number.MAX_SAFE_INTEGER)
  seed?: number;

  @ApiPropertyOptional({ example: 'qwen-image-lightning-4step', description: 'Model id from GET /api/v1/models; the default model when absent' })
  @IsOptional() @IsString() @Matches(/^[a-z0-9][a-z0-9._-]{0,63}$/, { message: 'model must be a model id' })
  model?: string;
}
