import { Global, Module } from '@nestjs/common';
import { Env } from '@app/config';
import { WorkflowRegistry } from './workflow.registry';

@Global()
@Module({
  providers: [{ provide: WorkflowRegistry, inject: [Env], useFactory: (env: Env) => WorkflowRegistry.fromDirectory(env.WORKFLOWS_DIR) }],
  exports: [WorkflowRegistry],
})
export class WorkflowsModule {}
