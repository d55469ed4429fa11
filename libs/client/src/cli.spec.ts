import { exitCodeOf, outputPaths } from './cli';
import { FicturesError } from './errors';

describe('fictures CLI helpers', () => {
  it('names one file as asked, several with -1, -2…, and the extension follows the format', () => {
    expect(outputPaths('out.png', 1, 'png')).toEqual(['out.png']);
    expect(outputPaths('out.png', 3, 'png')).toEqual(['out-1.png', 'out-2.png', 'out-3.png']);
    expect(outputPaths('out.png', 2, 'webp')).toEqual(['out-1.webp', 'out-2.webp']);
    expect(outputPaths('dir/cover.JPEG', 1, 'jpeg')).toEqual(['dir/cover.JPEG']);
    expect(outputPaths('cover', 1, 'jpeg')).toEqual(['cover.jpg']);
  });

  it('maps failures to exit codes that tell them apart', () => {
    const job = (status: 'failed' | 'canceled') => ({ status }) as never;
    expect(exitCodeOf(new FicturesError('validation_failed', 'x', 400))).toBe(2);
    expect(exitCodeOf(new FicturesError('payload_too_large', 'x', 413))).toBe(2);
    expect(exitCodeOf(new FicturesError('usage', 'x', 0))).toBe(2);
    expect(exitCodeOf(new FicturesError('unauthorized', 'x', 401))).toBe(3);
    expect(exitCodeOf(new FicturesError('job_not_found', 'x', 404))).toBe(4);
    expect(exitCodeOf(new FicturesError('job_expired', 'x', 410))).toBe(4);
    expect(exitCodeOf(new FicturesError('comfyui_execution_error', 'x', 0, { job: job('failed') }))).toBe(5);
    expect(exitCodeOf(new FicturesError('canceled', 'x', 0, { job: job('canceled') }))).toBe(6);
    expect(exitCodeOf(new FicturesError('no_capacity', 'x', 503))).toBe(7);
    expect(exitCodeOf(new FicturesError('rate_limited', 'x', 429))).toBe(7);
    expect(exitCodeOf(new FicturesError('network_error', 'x', 0))).toBe(7);
    expect(exitCodeOf(new FicturesError('timeout', 'x', 0))).toBe(7);
    expect(exitCodeOf(new Error('boom'))).toBe(1);
  });
});
