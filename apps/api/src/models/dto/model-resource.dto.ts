import { ApiProperty } from '@nestjs/swagger';
import { OUTPUT_FORMATS } from '@app/queue';

class RangeDto {
  @ApiProperty() min: number;
  @ApiProperty() max: number;
}

class SizeRangeDto extends RangeDto {
  @ApiProperty({ example: 16 }) multiple_of: number;
}

class QualityRangeDto extends RangeDto {
  @ApiProperty({ example: 90 }) default: number;
}

export class ModelLimitsDto {
  @ApiProperty({ type: () => SizeRangeDto }) width: SizeRangeDto;
  @ApiProperty({ type: () => SizeRangeDto }) height: SizeRangeDto;
  @ApiProperty({ type: () => RangeDto }) num_inference_steps: RangeDto;
  @ApiProperty({ type: () => RangeDto }) guidance_scale: RangeDto;
  @ApiProperty({ type: () => RangeDto }) seed: RangeDto;
  @ApiProperty({ example: 4194304 }) max_pixels: number;
  @ApiProperty({ example: 1000 }) prompt_max_length: number;
  @ApiProperty({ type: () => RangeDto }) num_images: RangeDto;
  @ApiProperty({ enum: OUTPUT_FORMATS, isArray: true }) output_formats: string[];
  @ApiProperty({ type: () => QualityRangeDto }) output_quality: QualityRangeDto;
  @ApiProperty({ enum: ['width', 'height', 'num_inference_steps', 'guidance_scale'], isArray: true, description: 'Parameters the graph does not use: only their default is accepted' })
  fixed: string[];
}

export class ModelDefaultsDto {
  @ApiProperty({ example: 1328 }) width: number;
  @ApiProperty({ example: 1328 }) height: number;
  @ApiProperty({ example: 4 }) num_inference_steps: number;
  @ApiProperty({ example: 1 }) guidance_scale: number;
  @ApiProperty({ example: '' }) negative_prompt: string;
  @ApiProperty({ example: 1 }) num_images: number;
  @ApiProperty({ enum: ['png'] }) output_format: 'png';
}

class SizeDto {
  @ApiProperty({ example: 1664 }) width: number;
  @ApiProperty({ example: 928 }) height: number;
}

class RequiredModelFileDto {
  @ApiProperty({ example: 'diffusion_models' }) folder: string;
  @ApiProperty({ example: 'qwen_image_fp8_e4m3fn.safetensors' }) file: string;
}

class EditDefaultsDto {
  @ApiProperty({ type: 'object', additionalProperties: { type: 'number' }, example: { img2img: 0.6, inpaint: 1 }, description: 'Default strength per edit mode' })
  strength: Record<string, number>;
}

export class ModelResourceDto {
  @ApiProperty({ example: 'qwen-image-lightning-4step' }) id: string;
  @ApiProperty({ example: 'Qwen-Image Lightning (4 steps)' }) display_name: string;
  @ApiProperty() description: string;
  @ApiProperty({ description: 'The model used when a request names none' }) default: boolean;
  @ApiProperty({ type: () => ModelDefaultsDto }) defaults: ModelDefaultsDto;
  @ApiProperty({ enum: ['text-to-image', 'img2img', 'inpaint'], isArray: true }) modes: string[];
  @ApiProperty({
    type: 'object',
    additionalProperties: { $ref: '#/components/schemas/SizeDto' },
    example: { '1:1': { width: 1328, height: 1328 }, '16:9': { width: 1664, height: 928 } },
    description: 'Native size per aspect_ratio',
  })
  aspect_ratios: Record<string, SizeDto>;
  @ApiProperty({ type: () => ModelLimitsDto }) limits: ModelLimitsDto;
  @ApiProperty({ type: () => EditDefaultsDto }) edit_defaults: EditDefaultsDto;
  @ApiProperty({ type: () => RequiredModelFileDto, isArray: true }) required_models: RequiredModelFileDto[];
  @ApiProperty({ type: 'object', additionalProperties: { type: 'boolean', nullable: true }, description: 'Per ComfyUI URL: has every file (true), misses some (false), did not answer (null)' })
  available: Record<string, boolean | null>;
  @ApiProperty({
    type: 'object',
    additionalProperties: { type: 'object', nullable: true, additionalProperties: { type: 'boolean' } },
    description: 'Per ComfyUI URL: folder/file → present; null when it did not answer',
  })
  files: Record<string, Record<string, boolean> | null>;
}

export class ModelListDto {
  @ApiProperty({ type: () => ModelResourceDto, isArray: true }) data: ModelResourceDto[];
}

/** Registered as extra models so the maps above can point at them. */
export const MODEL_EXTRA_MODELS = [SizeDto];
