import { ApiProperty } from '@nestjs/swagger';
import { JobTimingsDto } from './job-resource.dto';

export class GeneratedImageDto {
  @ApiProperty({ example: 'data:image/png;base64,iVBORw0KGgo…' }) image_url: string;
  @ApiProperty({ example: 'image/png', enum: ['image/png', 'image/jpeg', 'image/webp'] }) content_type: string;
  @ApiProperty({ example: 1328 }) width: number;
  @ApiProperty({ example: 1328 }) height: number;
  @ApiProperty({ example: 1532211 }) bytes: number;
  @ApiProperty({ example: '9f2c…' }) sha256: string;
}

/** The synchronous answer: the original service's fields, plus every image, the job id and timings. */
export class GenerateImageResponseDto {
  @ApiProperty({ example: 'data:image/png;base64,iVBORw0KGgo…', description: 'The first image as a data: URL' }) image_url: string;
  @ApiProperty({ type: () => GeneratedImageDto, isArray: true, description: 'Every image of num_images, the first included' }) images: GeneratedImageDto[];
  @ApiProperty() cached: boolean;
  @ApiProperty({ example: 'Qwen-Image Lightning (4 steps)', description: 'Display name' }) model: string;
  @ApiProperty({ example: 'qwen-image-lightning-4step' }) model_id: string;
  @ApiProperty({ example: 1328 }) width: number;
  @ApiProperty({ example: 1328 }) height: number;
  @ApiProperty({ example: 42 }) seed: number;
  @ApiProperty({ format: 'uuid' }) job_id: string;
  @ApiProperty({ type: () => JobTimingsDto, nullable: true }) timings: JobTimingsDto | null;
}
