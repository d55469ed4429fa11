import type { GenerationParams } from '@app/queue';
import { resultCacheKey } from './result-cache-key';

const base: GenerationParams = {
  model: 'qwen-image-lightning-4step', prompt: 'a lighthouse', negative_prompt: '', width: 1664, height: 928,
  num_inference_steps: 4, guidance_scale: 1, seed: 7, num_images: 1, output_format: 'png',
};
const owner = { kind: 'owner', owner: 'key1' } as const;

describe('resultCacheKey', () => {
  it('is the same for the same request, whatever the order of its fields or how the size was asked', () => {
    const reordered = Object.fromEntries(Object.entries(base).reverse()) as unknown as GenerationParams;
    expect(resultCacheKey(reordered, 'wf', owner)).toBe(resultCacheKey(base, 'wf', owner));
    expect(resultCacheKey({ ...base, aspect_ratio: '16:9' }, 'wf', owner)).toBe(resultCacheKey(base, 'wf', owner));
    // A job queued before num_images/output_format existed meant one PNG.
    const { num_images: _n, output_format: _f, ...old } = base;
    expect(resultCacheKey(old, 'wf', owner)).toBe(resultCacheKey(base, 'wf', owner));
  });

  it('changes with everything that changes the bytes, with the workflow and with the scope', () => {
    const k = resultCacheKey(base, 'wf', owner);
    const changed: Array<Partial<GenerationParams>> = [
      { seed: 8 }, { prompt: 'a lighthouse.' }, { negative_prompt: 'fog' }, { width: 1328 }, { height: 1328 }, { num_inference_steps: 5 },
      { guidance_scale: 1.5 }, { model: 'qwen-image-lightning-8step' }, { num_images: 2 }, { output_format: 'webp', output_quality: 90 },
    ];
    const keys = changed.map((c) => resultCacheKey({ ...base, ...c }, 'wf', owner));
    expect(new Set([k, ...keys]).size).toBe(changed.length + 1);
    expect(resultCacheKey({ ...base, output_format: 'webp', output_quality: 80 }, 'wf', owner)).not.toBe(resultCacheKey({ ...base, output_format: 'webp', output_quality: 90 }, 'wf', owner));
    expect(resultCacheKey(base, 'wf2', owner)).not.toBe(k);
    expect(resultCacheKey(base, 'wf', { kind: 'owner', owner: 'key2' })).not.toBe(k);
    expect(resultCacheKey(base, 'wf', { kind: 'global' })).not.toBe(k);
  });
});
