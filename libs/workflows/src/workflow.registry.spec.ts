import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainError } from '@app/common';
import { WorkflowConfigError, WorkflowRegistry } from './workflow.registry';

const registry = WorkflowRegistry.fromDirectory(join(__dirname, '../../../workflows'));

function problemFields(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    return ((e as DomainError).details as Array<{ field: string }>).map((p) => p.field);
  }
  throw new Error('expected a validation error');
}

function problems(fn: () => unknown): Array<{ field: string; message: string }> {
  try {
    fn();
  } catch (e) {
    return (e as DomainError).details as Array<{ field: string; message: string }>;
  }
  throw new Error('expected a validation error');
}

describe('WorkflowRegistry', () => {
  it('loads the shipped workflows with qwen as the default', () => {
    expect(registry.list().map((w) => w.manifest.id).sort()).toEqual(['qwen-image-lightning-4step', 'qwen-image-lightning-8step', 'smoke-test']);
    expect(registry.defaultId).toBe('qwen-image-lightning-4step');
  });

  it('applies the model defaults and a random seed', () => {
    const p = registry.resolve({ prompt: 'a lighthouse' }, () => 7);
    expect(p).toMatchObject({ model: 'qwen-image-lightning-4step', width: 1328, height: 1328, num_inference_steps: 4, guidance_scale: 1, negative_prompt: '', seed: 224 });
  });

  it('rejects sizes outside the limits or off the multiple, listing every field', () => {
    expect(problemFields(() => registry.resolve({ prompt: 'x', width: 4000, height: 1000 }))).toEqual(['width', 'height']);
    expect(problemFields(() => registry.resolve({ prompt: 'x', model: 'smoke-test', num_inference_steps: 4 }))).toEqual(['num_inference_steps']);
  });

  it('names the field in every limit message', () => {
    expect(problems(() => registry.resolve({ prompt: 'x', width: 4000, height: 1000 }))).toEqual([
      { field: 'width', message: 'width must be between 256 and 2048 for model qwen-image-lightning-4step' },
      { field: 'height', message: 'height must be a multiple of 16' },
    ]);
  });

  it('says a parameter the model does not use is not adjustable, instead of "between 0 and 0"', () => {
    expect(problems(() => registry.resolve({ prompt: 'x', model: 'smoke-test', guidance_scale: 0.5, num_inference_steps: 4 }))).toEqual([
      { field: 'num_inference_steps', message: 'num_inference_steps is not adjustable for model smoke-test (it is always 1); omit it' },
      { field: 'guidance_scale', message: 'guidance_scale is not adjustable for model smoke-test (it is always 0); omit it' },
    ]);
    // Its own default is harmless (a client may send back what GET /models shows), and so is any seed.
    expect(registry.resolve({ prompt: 'x', model: 'smoke-test', guidance_scale: 0, num_inference_steps: 1, seed: 5 })).toMatchObject({ guidance_scale: 0, num_inference_steps: 1, seed: 5 });
    expect(registry.limits('smoke-test')).toMatchObject({ fixed: ['num_inference_steps', 'guidance_scale'], guidance_scale: { min: 0, max: 0 }, num_inference_steps: { min: 1, max: 1 } });
    expect(registry.limits('qwen-image-lightning-4step').fixed).toEqual([]);
  });

  it('derives "not adjustable" from the bindings, whatever limits a manifest declares for an unbound parameter', () => {
    const manifest = JSON.parse(JSON.stringify(registry.get('smoke-test')!.manifest));
    manifest.id = 'declares-limits';
    manifest.parameters.guidance_scale = { bind: [], default: 0, min: 0, max: 0 };
    const custom = new WorkflowRegistry([{ manifest, graph: registry.get('smoke-test')!.graph }]);
    expect(problems(() => custom.resolve({ prompt: 'x', guidance_scale: 3 }))[0].message).toMatch(/^guidance_scale is not adjustable for model declares-limits/);
  });

  it('resolves an aspect ratio to the native size of the model', () => {
    const sizes = Object.fromEntries(
      ['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3'].map((r) => {
        const p = registry.resolve({ prompt: 'x', aspect_ratio: r as never });
        return [r, `${p.width}x${p.height}`];
      }),
    );
    expect(sizes).toEqual({ '1:1': '1328x1328', '16:9': '1664x928', '9:16': '928x1664', '4:3': '1472x1104', '3:4': '1104x1472', '3:2': '1584x1056', '2:3': '1056x1584' });
    expect(registry.resolve({ prompt: 'x', aspect_ratio: '16:9' }).aspect_ratio).toBe('16:9');
    expect(registry.resolve({ prompt: 'x', model: 'smoke-test', aspect_ratio: '16:9' })).toMatchObject({ width: 768, height: 432 });
    expect(problems(() => registry.resolve({ prompt: 'x', aspect_ratio: '16:9', width: 512 }))).toEqual([
      { field: 'aspect_ratio', message: 'aspect_ratio cannot be combined with width or height; send one or the other' },
    ]);
  });

  it('refuses a ratio a manifest does not offer, naming those it does', () => {
    const manifest = JSON.parse(JSON.stringify(registry.get('smoke-test')!.manifest));
    manifest.id = 'square-only';
    manifest.aspect_ratios = { '1:1': [512, 512] };
    const custom = new WorkflowRegistry([{ manifest, graph: registry.get('smoke-test')!.graph }]);
    expect(problems(() => custom.resolve({ prompt: 'x', aspect_ratio: '16:9' }))).toEqual([
      { field: 'aspect_ratio', message: 'aspect_ratio 16:9 is not offered by model square-only (one of 1:1)' },
    ]);
  });

  it('binds num_images to the latent batch size, within the manifest limit', () => {
    const p = registry.resolve({ prompt: 'x', num_images: 3, seed: 1 });
    expect(p.num_images).toBe(3);
    expect(registry.buildGraph(p)['58'].inputs.batch_size).toBe(3);
    expect(registry.buildGraph(registry.resolve({ prompt: 'x', model: 'smoke-test', num_images: 2 }))['1'].inputs.batch_size).toBe(2);
    expect(registry.buildGraph(registry.resolve({ prompt: 'x' }))['58'].inputs.batch_size).toBe(1);
    expect(problems(() => registry.resolve({ prompt: 'x', num_images: 5 }))).toEqual([
      { field: 'num_images', message: 'num_images must be between 1 and 4 for model qwen-image-lightning-4step' },
    ]);
    expect(registry.limits('qwen-image-lightning-4step').num_images).toEqual({ min: 1, max: 4 });
  });

  it('defaults the output to png without a quality, and gives jpeg/webp a quality', () => {
    const png = registry.resolve({ prompt: 'x' });
    expect(png.output_format).toBe('png');
    expect(png).not.toHaveProperty('output_quality');
    expect(registry.resolve({ prompt: 'x', output_format: 'webp' }).output_quality).toBe(90);
    expect(registry.resolve({ prompt: 'x', output_format: 'jpeg', output_quality: 40 }).output_quality).toBe(40);
    expect(problemFields(() => registry.resolve({ prompt: 'x', output_quality: 40 }))).toEqual(['output_quality']);
  });

  it('fingerprints each model by its manifest and graph', () => {
    expect(registry.fingerprint('qwen-image-lightning-4step')).toMatch(/^[0-9a-f]{16}$/);
    expect(registry.fingerprint('qwen-image-lightning-4step')).not.toBe(registry.fingerprint('qwen-image-lightning-8step'));
  });

  it('refuses to start with an aspect ratio off the size limits', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wf-'));
    mkdirSync(join(dir, 'odd'));
    const manifest = JSON.parse(JSON.stringify(registry.get('smoke-test')!.manifest));
    manifest.id = 'odd';
    manifest.aspect_ratios = { '16:9': [1000, 563] };
    writeFileSync(join(dir, 'odd', 'manifest.json'), JSON.stringify(manifest));
    writeFileSync(join(dir, 'odd', 'workflow.json'), JSON.stringify(registry.get('smoke-test')!.graph));
    expect(() => WorkflowRegistry.fromDirectory(dir)).toThrow(/aspect_ratios.16:9 1000x563/);
  });

  it('rejects an unknown model with the list of models', () => {
    expect(() => registry.resolve({ prompt: 'x', model: 'sdxl' })).toThrow(expect.objectContaining({ code: 'unknown_model' }));
  });

  it('binds parameters on a copy of the graph, leaving the template untouched', () => {
    const params = registry.resolve({ prompt: 'he said "hi" {x}', width: 512, height: 768, seed: 9007199254740991 });
    const g = registry.buildGraph(params, { filenamePrefix: 'fictures/job1' });
    expect(g['6'].inputs.text).toBe('he said "hi" {x}');
    expect(g['58'].inputs).toMatchObject({ width: 512, height: 768 });
    expect(g['3'].inputs).toMatchObject({ seed: 9007199254740991, steps: 4, cfg: 1 });
    expect(g['60'].inputs.filename_prefix).toBe('fictures/job1');
    expect(registry.get('qwen-image-lightning-4step')!.graph['6'].inputs.text).toBe('');
  });

  it('refuses to start with a manifest bound to a missing node or input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wf-'));
    mkdirSync(join(dir, 'broken'));
    const manifest = JSON.parse(JSON.stringify(registry.get('smoke-test')!.manifest));
    manifest.id = 'broken';
    manifest.parameters.seed.bind = [{ node: '2', input: 'noise_seed' }];
    writeFileSync(join(dir, 'broken', 'manifest.json'), JSON.stringify(manifest));
    writeFileSync(join(dir, 'broken', 'workflow.json'), JSON.stringify(registry.get('smoke-test')!.graph));
    expect(() => WorkflowRegistry.fromDirectory(dir)).toThrow(WorkflowConfigError);
    expect(() => WorkflowRegistry.fromDirectory(dir)).toThrow(/node "2" input "noise_seed"/);
  });
});
