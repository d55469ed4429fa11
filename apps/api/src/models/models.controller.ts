import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiErrors, KEYED_ROUTE_CODES } from '../docs/api-errors';
import { ModelListDto } from './dto/model-resource.dto';
import { ModelResource, ModelsService } from './models.service';

@ApiTags('models')
@Controller('api/v1')
export class ModelsController {
  constructor(private readonly models: ModelsService) {}

  @Get('models')
  @ApiOperation({ summary: 'Models with defaults, limits and whether the GPUs have their files' })
  @ApiOkResponse({ type: ModelListDto })
  @ApiErrors(...KEYED_ROUTE_CODES)
  async list(): Promise<{ data: ModelResource[] }> {
    return { data: await this.models.list() };
  }

  @Get('images/models')
  @ApiOperation({ summary: 'Same as GET /api/v1/models' })
  @ApiOkResponse({ type: ModelListDto })
  @ApiErrors(...KEYED_ROUTE_CODES)
  listUnderImages(): Promise<{ data: ModelResource[] }> {
    return this.list();
  }
}
