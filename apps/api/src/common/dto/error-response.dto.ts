import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ErrorCode } from '@app/common';

export class ErrorBodyDto {
  @ApiProperty({ enum: ErrorCode, enumName: 'ErrorCode', example: ErrorCode.ValidationFailed, description: 'Stable, for programs; never renamed once deployed' })
  code: ErrorCode;

  @ApiProperty({ example: 'width must be between 256 and 2048', description: 'For people; may change between versions' })
  message: string;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    example: { field: 'width' },
    description: 'Safe extra facts: the field at fault, a job_id to poll after sync_timeout, an error_id of a 500 (it is in the log)…',
  })
  details?: Record<string, unknown>;
}

/** The one error shape of every native route (the exception filter writes it). */
export class ErrorResponseDto {
  @ApiProperty({ type: () => ErrorBodyDto })
  error: ErrorBodyDto;

  @ApiProperty({ example: 'b7c1f1a4-0d0e-4d52-9c1a-3f1e2b9f6a10', description: 'Also in the X-Request-Id response header and the log lines of the request' })
  request_id: string;
}
