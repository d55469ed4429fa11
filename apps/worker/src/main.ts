import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { EnvValidationError, loadEnv } from '@app/config';
import { WorkerModule } from './worker.module';

async function bootstrap(): Promise<void> {
  let env;
  try {
    env = loadEnv();
  } catch (e) {
    if (e instanceof EnvValidationError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(env), { bufferLogs: false });
  app.enableShutdownHooks();
}

bootstrap().catch((err: Error) => {
  process.stderr.write(`worker failed to start: ${err.message}\n`);
  process.exit(1);
});
