import { join } from 'node:path';
import sharp from 'sharp';
import { DomainError } from '@app/common';
import { WorkflowRegistry } from '@app/workflows';
import { maskFromOpenAi, openAiSize, openAiSteps } from './openai-mapping';

/** The shipped manifests: the mapping is read from them, as in production. */
const workflows = WorkflowRegistry.fromDirectory(join(__dirname, '../../../../workflows'));
const QWEN = 'qwen-image-lightning-4step';

function refusal(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (e) {
    return e as DomainError;
  }
  throw new Error('expected a refusal');
}

describe('OpenAI size → width/height', () => {
  it('auto or none is the model default; a size within the limits is taken as asked', () => {
    expect(openAiSize(workflows, QWEN, undefined)).toEqual({});
    expect(openAiSize(workflows, QWEN, 'auto')).toEqual({});
    expect(openAiSize(workflows, QWEN, '1024x1024')).toEqual({ width: 1024, height: 1024 });
    expect(openAiSize(workflows, QWEN, '1792x1024')).toEqual({ width: 1792, height: 1024 });
    expect(openAiSize(workflows, QWEN, '2048x2048')).toEqual({ width: 2048, height: 2048 });
  });

  it('outside the limits: validation_failed on size, listing the native sizes and the rule', () => {
    for (const size of ['1000x1000', '4096x256', '128x128', '0x0']) {
      const e = refusal(() => openAiSize(workflows, QWEN, size));
      expect(e.code).toBe('validation_failed');
      expect(e.details).toEqual([{ field: 'size', message: e.message }]);
      expect(e.message).toBe(
        `size ${size} is not supported by model ${QWEN}; supported sizes: auto, 1328x1328, 1664x928, 928x1664, 1472x1104, 1104x1472, 1584x1056, 1056x1584, ` +
          'or any WIDTHxHEIGHT with sides 256–2048 in multiples of 16 and at most 4194304 pixels',
      );
    }
    expect(refusal(() => openAiSize(workflows, 'smoke-test', '100x100')).message).toContain('auto, 512x512, 768x432');
  });
});

describe('OpenAI quality → steps', () => {
  it('low halves and high/hd double the default steps within the limits; the rest keep the default', () => {
    expect(openAiSteps(workflows, QWEN, 'low')).toBe(2);
    expect(openAiSteps(workflows, QWEN, 'high')).toBe(8);
    expect(openAiSteps(workflows, QWEN, 'hd')).toBe(8);
    // 8-step model: twice is 16, its maximum.
    expect(openAiSteps(workflows, 'qwen-image-lightning-8step', 'high')).toBe(16);
    for (const q of ['medium', 'standard', 'auto', undefined] as const) expect(openAiSteps(workflows, QWEN, q)).toBeUndefined();
  });

  it('a model with fixed steps ignores quality', () => {
    expect(openAiSteps(workflows, 'smoke-test', 'low')).toBeUndefined();
    expect(openAiSteps(workflows, 'smoke-test', 'high')).toBeUndefined();
  });
});

describe("OpenAI's mask convention (transparent = edit) → ours (white = repaint)", () => {
  const W = 8;
  const H = 4;
  const rgba = (alphaAt: (x: number) => number) => {
    const raw = Buffer.alloc(W * H * 4, 0);
    for (let p = 0; p < W * H; p++) raw[p * 4 + 3] = alphaAt(p % W);
    return sharp(raw, { raw: { width: W, height: H, channels: 4 } }).png().toBuffer();
  };

  it('inverts the alpha of a mask with transparency into a grey mask of the same size', async () => {
    const out = await maskFromOpenAi(await rgba((x) => (x < 4 ? 0 : 255)));
    // The red channel is what LoadImageMask reads.
    const { data, info } = await sharp(out).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([W, H, 1]);
    for (let p = 0; p < W * H; p++) expect(data[p]).toBe(p % W < 4 ? 255 : 0);
  });

  it('keeps a mask without transparency (fully opaque, or no alpha) as it is: already ours', async () => {
    const opaque = await rgba(() => 255);
    expect((await maskFromOpenAi(opaque)).equals(opaque)).toBe(true);
    const rgb = await sharp({ create: { width: W, height: H, channels: 3, background: '#ffffff' } }).png().toBuffer();
    expect((await maskFromOpenAi(rgb)).equals(rgb)).toBe(true);
  });
});
