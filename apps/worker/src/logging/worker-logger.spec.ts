import { Logger } from '@nestjs/common';
import { Writable } from 'node:stream';
import { runWithJobContext } from './job-context';
import { createWorkerLogger } from './worker-logger';

function capture(level = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createWorkerLogger({ LOG_LEVEL: level }, stream), lines };
}

describe('worker logger', () => {
  afterEach(() => Logger.overrideLogger(false));

  it("turns Nest Logger objects into JSON fields, with the Logger's context", () => {
    const { logger, lines } = capture();
    logger.log({ job_id: 'j1', msg: 'prompt submitted', prompt_id: 'p1' }, 'GenerationProcessor');
    logger.warn('plain text', 'Pool');
    expect(lines[0]).toMatchObject({ level: 'info', service: 'worker', context: 'GenerationProcessor', job_id: 'j1', msg: 'prompt submitted', prompt_id: 'p1' });
    expect(lines[1]).toMatchObject({ level: 'warn', context: 'Pool', msg: 'plain text' });
  });

  it('stamps the job id on every line logged while a job runs, even without one', async () => {
    const { logger, lines } = capture();
    Logger.overrideLogger(logger);
    const log = new Logger('ComfyUi');
    await runWithJobContext('job-42', async () => {
      await Promise.resolve();
      log.log({ comfyui: 'http://c', msg: 'socket reconnected' });
    });
    log.log({ msg: 'outside a job' });
    expect(lines[0]).toMatchObject({ job_id: 'job-42', comfyui: 'http://c', msg: 'socket reconnected', context: 'ComfyUi' });
    expect(lines[1].job_id).toBeUndefined();
  });

  it('honours the level, keeps an error stack, and logs prompts by length', () => {
    const { logger, lines } = capture('warn');
    logger.log({ msg: 'hidden' });
    logger.error({ msg: 'boom', prompt: 'secret words' }, 'Error: boom\n    at x (y.js:1:1)', 'Ctx');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'error', msg: 'boom', prompt_length: 12, context: 'Ctx' });
    expect(String(lines[0].stack)).toContain('at x');
  });
});
