import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';

const CHECK: SchemaObject = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['up', 'down'] } },
  additionalProperties: true,
};

const CHECKS = {
  type: 'object' as const,
  additionalProperties: CHECK,
  example: { redis: { status: 'up' }, comfyui: { status: 'up', instances: 1, up: 1 } },
};

export class ImageModelStatusDto {
  @ApiProperty({ example: 'qwen-image-lightning-4step' }) name: string;
  @ApiProperty({ enum: ['text-to-image'] }) type: 'text-to-image';
  @ApiProperty({ enum: ['comfyui'] }) framework: 'comfyui';
  @ApiProperty({ enum: ['cuda', 'cpu', 'unknown'] }) device: 'cuda' | 'cpu' | 'unknown';
  @ApiProperty({ description: 'A worker with a live ComfyUI serves jobs' }) initialized: boolean;
}

class HealthModelsDto {
  @ApiProperty({ type: () => ImageModelStatusDto }) image: ImageModelStatusDto;
}

/** GET /health: the original service's fields, then the readiness checks. */
export class HealthDto {
  @ApiProperty({ enum: ['healthy', 'unhealthy'] }) status: 'healthy' | 'unhealthy';
  @ApiProperty({ example: '0.1.0' }) version: string;
  @ApiProperty({ type: () => HealthModelsDto }) models: HealthModelsDto;
  @ApiPropertyOptional({ ...CHECKS, description: 'Checks that are up' }) info?: Record<string, unknown>;
  @ApiPropertyOptional({ ...CHECKS, description: 'Checks that are down' }) error?: Record<string, unknown>;
  @ApiProperty({ ...CHECKS, description: 'Every check' }) details: Record<string, unknown>;
}

/** GET /health/ready: terminus's result. */
export class ReadinessDto {
  @ApiProperty({ enum: ['ok', 'error', 'shutting_down'] }) status: string;
  @ApiPropertyOptional({ ...CHECKS }) info?: Record<string, unknown>;
  @ApiPropertyOptional({ ...CHECKS }) error?: Record<string, unknown>;
  @ApiProperty({ ...CHECKS }) details: Record<string, unknown>;
}

export class LivenessDto {
  @ApiProperty({ enum: ['ok'] }) status: 'ok';
  @ApiProperty({ example: 3600 }) uptime_s: number;
}
