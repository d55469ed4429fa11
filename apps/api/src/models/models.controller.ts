import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ModelResource, ModelsService } from './models.service';

@ApiTags('models')
@Controller('api/v1')
export class ModelsController {
  constructor(private readonly models: ModelsService) {}

  @Get('models')
  @ApiOperation({ summary: 'Models with defaults, limits and whether the GPUs have their files' })
  async list(): Promise<{ data: ModelResource[] }> {
    return { data: await this.models.list() };
  }

  @Get('images/models')
  @ApiOperation({ summary: 'Same as GET /api/v1/models' })
  listUnderImages(): Promise<{ data: ModelResource[] }> {
    return this.list();
  }
}
