import { DynamicModule, Global, Module } from '@nestjs/common';
import { Env, loadEnv } from './env';

/**
 * Provides the validated Env. Apps call forRoot() once; tests pass an Env they built with loadEnv()
 * so that no test depends on the process environment.
 */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(env: Env = loadEnv()): DynamicModule {
    return { module: ConfigModule, providers: [{ provide: Env, useValue: env }], exports: [Env] };
  }
}
