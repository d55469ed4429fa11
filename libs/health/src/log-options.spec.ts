import { Writable } from 'node:stream';
import { pino } from 'pino';
import { baseLogOptions, scrubPrompts } from './log-options';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino(baseLogOptions('test', level), stream), lines };
}

describe('log options', () => {
  it('replaces prompt text by its length above debug, at the top and one level down', () => {
    expect(scrubPrompts({ prompt: 'abc', params: { negative_prompt: 'xy', width: 1 }, n: 1 })).toEqual({
      prompt_length: 3, params: { negative_prompt_length: 2, width: 1 }, n: 1,
    });
    const { logger, lines } = capture('info');
    logger.info({ msg: 'job queued', prompt: 'a very private lighthouse' });
    expect(lines[0]).toMatchObject({ level: 'info', service: 'test', msg: 'job queued', prompt_length: 25 });
    expect(JSON.stringify(lines)).not.toContain('private lighthouse');
  });

  it('keeps prompt text at debug', () => {
    const { logger, lines } = capture('debug');
    logger.debug({ msg: 'binding', prompt: 'a lighthouse' });
    expect(lines[0]).toMatchObject({ level: 'debug', prompt: 'a lighthouse' });
  });

  it('redacts credentials in headers and secret-looking fields', () => {
    const { logger, lines } = capture('info');
    logger.info({ req: { headers: { authorization: 'Bearer sk_live_123', 'x-api-key': 'k_456', accept: '*/*' } }, hook: { secret: 'whsec_789' } }, 'request');
    const text = JSON.stringify(lines);
    for (const s of ['sk_live_123', 'k_456', 'whsec_789']) expect(text).not.toContain(s);
    expect(lines[0]).toMatchObject({ req: { headers: { authorization: '[redacted]', 'x-api-key': '[redacted]', accept: '*/*' } } });
  });
});

describe('request id binding', () => {
  it('does not repeat request_id when the caller adds the one the logger already carries', () => {
    const { logger, lines } = capture('info');
    logger.child({ request_id: 'r-1' }).info({ request_id: 'r-1', msg: 'job queued' });
    expect(JSON.stringify(lines[0]).match(/request_id/g)).toHaveLength(1);
    expect(lines[0]).toMatchObject({ request_id: 'r-1', msg: 'job queued' });
  });
});
