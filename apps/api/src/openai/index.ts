import { OpenAiImagesController } from './openai-images.controller';
import { OpenAiImagesService } from './openai-images.service';
import { OpenAiModelsController } from './openai-models.controller';

/**
 * The OpenAI-compatible surface under /v1 (images and models). Its routes use the API's own
 * JobsService, keys, limits and quotas, so they are declared in ApiModule beside the native ones.
 */
export const OPENAI_CONTROLLERS = [OpenAiImagesController, OpenAiModelsController];
export const OPENAI_PROVIDERS = [OpenAiImagesService];
export { OPENAI_PATH, OpenAiExceptionFilter } from './openai-error.filter';
