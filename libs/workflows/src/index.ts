export * from './workflow.types';
export * from './workflow.registry';
export * from './workflows.module';
