import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

export class OpenAiImageDataDto {
  @ApiPropertyOptional({ description: 'The image, base64 (response_format b64_json, the default)' })
  b64_json?: string;

  @ApiPropertyOptional({ description: 'A signed link that needs no API key, valid SIGNED_URL_TTL_SECONDS (response_format url)', example: 'https://images.example.com/api/v1/images/signed/6f1c…/0?expires=1767225600&signature=…' })
  url?: string;

  @ApiProperty({ type: 'string', nullable: true, example: null, description: 'Always null: prompts are not rewritten' })
  revised_prompt: null;
}

export class OpenAiImagesResponseDto {
  @ApiProperty({ example: 1767225600, description: 'Unix seconds when the job was created' })
  created: number;

  @ApiProperty({ type: [OpenAiImageDataDto] })
  data: OpenAiImageDataDto[];

  @ApiProperty({ example: '1664x928', description: 'WIDTHxHEIGHT of the images' })
  size: string;

  @ApiProperty({ enum: ['png', 'jpeg', 'webp'] })
  output_format: string;

  @ApiProperty({ enum: ['low', 'medium', 'high'], description: 'auto and standard answer medium, hd high' })
  quality: string;

  @ApiProperty({ enum: ['opaque'] })
  background: string;
}

export class OpenAiModelDto {
  @ApiProperty({ example: 'qwen-image-lightning-4step' })
  id: string;

  @ApiProperty({ enum: ['model'] })
  object: 'model';

  @ApiProperty({ example: 1767225600, description: "Unix seconds: when the model's manifest was written" })
  created: number;

  @ApiProperty({ example: 'fictures' })
  owned_by: string;
}

export class OpenAiModelListDto {
  @ApiProperty({ enum: ['list'] })
  object: 'list';

  @ApiProperty({ type: [OpenAiModelDto] })
  data: OpenAiModelDto[];
}

export class OpenAiErrorDetailDto {
  @ApiProperty({ example: 'size 1000x1000 is not supported by model qwen-image-lightning-4step; …' })
  message: string;

  @ApiProperty({ enum: ['invalid_request_error', 'authentication_error', 'permission_error', 'rate_limit_error', 'insufficient_quota', 'server_error'] })
  type: string;

  @ApiProperty({ type: 'string', nullable: true, example: 'size' })
  param: string | null;

  @ApiProperty({ type: 'string', nullable: true, example: 'validation_failed', description: "OpenAI's code where one exists (invalid_api_key, model_not_found, rate_limit_exceeded), else this server's stable code" })
  code: string | null;
}

export class OpenAiErrorDto {
  @ApiProperty({ type: OpenAiErrorDetailDto })
  error: OpenAiErrorDetailDto;
}
