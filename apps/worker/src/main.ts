import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { EnvValidationError, loadEnvOrExit } from '@app/config';
import { createWorkerLogger } from './logging/worker-logger';
import { WorkerModule } from './worker.module';

async function bootstrap(): Promise<void> {
  const env = loadEnvOrExit();
  // Nest's Logger → pino JSON lines, each carrying the job id when logged while a job runs.
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(env), { logger: createWorkerLogger(env) });
  // Our own signal handling rather than enableShutdownHooks(): Nest re-raises the signal after
  // closing, which would make a clean drain exit by signal instead of with code 0.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`worker: ${signal} received, draining\n`);
    app.close().then(
      () => process.exit(0),
      (e: Error) => {
        process.stderr.write(`worker: shutdown failed: ${e.message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

bootstrap().catch((err: Error) => {
  // A check against a dependency at start-up (Redis's eviction policy) refuses like a bad variable.
  if (err instanceof EnvValidationError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`worker failed to start: ${err.message}\n`);
  process.exit(1);
});
