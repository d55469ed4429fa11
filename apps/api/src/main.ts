import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { EnvValidationError, loadEnvOrExit } from '@app/config';
import { Logger as PinoLogger } from 'nestjs-pino';
import { ApiModule } from './api.module';
import { installGracefulShutdown } from './health/graceful-shutdown';
import { setupApp } from './setup-app';

async function bootstrap(): Promise<void> {
  const env = loadEnvOrExit();
  const app = await NestFactory.create<NestExpressApplication>(ApiModule.forRoot(env), { bodyParser: false, bufferLogs: true });
  // Nest's Logger → pino JSON lines (with the request id inside a request).
  app.useLogger(app.get(PinoLogger));
  setupApp(app, env);
  // Instead of app.enableShutdownHooks(): readiness 503 at once, drain, finish requests, then hooks.
  installGracefulShutdown(app, env, { logger: new Logger('Shutdown') });
  await app.listen(env.PORT, env.HOST);
  new Logger('Bootstrap').log(`API listening on http://${env.HOST}:${env.PORT} (docs at /docs)`);
}

bootstrap().catch((err: Error) => {
  // A check against a dependency at start-up (Redis's eviction policy) refuses like a bad variable.
  if (err instanceof EnvValidationError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`api failed to start: ${err.message}\n`);
  process.exit(1);
});
