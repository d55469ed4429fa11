import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { loadEnv } from '@app/config';
import { ApiModule } from '../api.module';
import { buildOpenApiDocument } from './openapi';

/**
 * Writes the API's OpenAPI document (what GET /docs-json serves with the default configuration)
 * without listening and without Redis: the app is created, never initialised, so no client
 * connects. `npm run openapi` runs it, then generates the client's types from the file.
 */
export async function writeOpenApiDocument(outFile: string): Promise<void> {
  // Defaults only (no process env): the committed document must not depend on who ran the script.
  const env = loadEnv({});
  const app = await NestFactory.create<NestExpressApplication>(ApiModule.forRoot(env), { bodyParser: false, logger: false, abortOnError: false, preview: true });
  try {
    const doc = buildOpenApiDocument(app);
    writeFileSync(outFile, `${JSON.stringify(doc, null, 2)}\n`);
  } finally {
    await app.close().catch(() => undefined);
  }
}

if (require.main === module) {
  const out = process.argv[2];
  if (!out) {
    process.stderr.write('usage: openapi.cli <out.json>\n');
    process.exit(2);
  }
  writeOpenApiDocument(out).then(
    () => process.exit(0),
    (e: Error) => {
      process.stderr.write(`openapi: ${e.stack ?? e.message}\n`);
      process.exit(1);
    },
  );
}
