// ESM-only tools (swagger-parser's ref parser, openapi-typescript) run in plain Node, outside jest's
// CommonJS runtime: `node openapi-tools.mjs validate|types < document.json`.
// validate → exit 0, or exit 1 with the validator's message; types → the generated TypeScript on stdout.
import { readFileSync } from 'node:fs';

const [command] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(0, 'utf8'));
try {
  if (command === 'validate') {
    const { default: SwaggerParser } = await import('@apidevtools/swagger-parser');
    await SwaggerParser.validate(doc);
    process.stdout.write('valid\n');
  } else if (command === 'types') {
    const { default: openapiTS, astToString } = await import('openapi-typescript');
    process.stdout.write(astToString(await openapiTS(doc, { alphabetize: false, defaultNonNullable: false })));
  } else {
    process.stderr.write('usage: openapi-tools.mjs validate|types < document.json\n');
    process.exit(2);
  }
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
}
