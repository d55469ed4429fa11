import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Controller, Get, Param, UseFilters } from '@nestjs/common';
import { ApiBearerAuth, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { WorkflowRegistry } from '@app/workflows';
import { RateLimitAs } from '../rate-limit/rate-limit-kind';
import { OpenAiErrorDto, OpenAiModelDto, OpenAiModelListDto } from './dto/openai-responses.dto';
import { OpenAiExceptionFilter } from './openai-error.filter';

/** The models of workflows/ in OpenAI's list and object shapes (GET /api/v1/models has the details). */
@ApiTags('openai')
@ApiBearerAuth()
@UseFilters(new OpenAiExceptionFilter())
@RateLimitAs('read')
@Controller('v1/models')
@ApiUnauthorizedResponse({ type: OpenAiErrorDto, description: '`invalid_api_key`' })
export class OpenAiModelsController {
  private readonly created = new Map<string, number>();

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
  ) {}

  @Get()
  @ApiOperation({ summary: "The models (OpenAI's list shape)" })
  @ApiOkResponse({ type: OpenAiModelListDto })
  list(): OpenAiModelListDto {
    return { object: 'list', data: this.workflows.list().map(({ manifest }) => this.model(manifest.id)) };
  }

  @Get(':model')
  @ApiOperation({ summary: "One model (OpenAI's object shape)" })
  @ApiOkResponse({ type: OpenAiModelDto })
  @ApiNotFoundResponse({ type: OpenAiErrorDto, description: '`model_not_found`' })
  get(@Param('model') id: string): OpenAiModelDto {
    if (!this.workflows.get(id)) throw new DomainError(ErrorCode.UnknownModel, `The model '${id}' does not exist; GET /v1/models lists the models`, { model: id });
    return this.model(id);
  }

  private model(id: string): OpenAiModelDto {
    return { id, object: 'model', created: this.createdAt(id), owned_by: 'fictures' };
  }

  /** When the model was installed here: its manifest's modification time (0 when it cannot be read). */
  private createdAt(id: string): number {
    let at = this.created.get(id);
    if (at === undefined) {
      try {
        at = Math.floor(statSync(join(this.env.WORKFLOWS_DIR, id, 'manifest.json')).mtimeMs / 1000);
      } catch {
        at = 0;
      }
      this.created.set(id, at);
    }
    return at;
  }
}
