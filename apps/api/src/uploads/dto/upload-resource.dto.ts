import { ApiProperty } from '@nestjs/swagger';

export class UploadResourceDto {
  @ApiProperty({ example: 'upl_3f9c2d0e8b7a4c1d9e6f5a4b3c2d1e0f', description: 'Pass as `image` or `mask` of a job' }) id: string;
  @ApiProperty({ enum: ['image/png', 'image/jpeg', 'image/webp'], example: 'image/png' }) content_type: string;
  @ApiProperty({ example: 1024 }) width: number;
  @ApiProperty({ example: 768 }) height: number;
  @ApiProperty({ example: 402113 }) bytes: number;
  @ApiProperty({ example: '5e884898da28…' }) sha256: string;
  @ApiProperty({ format: 'date-time' }) expires_at: string;
}
