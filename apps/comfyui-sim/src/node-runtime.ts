/**
 * What each simulated node computes. No tensors: values describe what a real node would hold
 * (which model files, which text, which latent size) so that VAEDecode/SaveImage can render a
 * deterministic picture of it. Time is spent where ComfyUI spends it: loading models (loadMs,
 * first use only) and sampler steps (stepMs each, with progress and interrupt checks).
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NodeDef } from './node-registry';
import { getSaveImagePath } from './output-files';
import { JsonObject, JsonValue, PyFloat, isJsonObject, keysOf, orderedObject, pyDumps, toNumber } from './py-json';
import { pyRepr } from './py-values';
import sharp from 'sharp';
import { ImageRecipe, MaskRecipe, Renderer } from './renderer';

export interface ModelValue { rt: 'MODEL'; unet: string; dtype: string; loras: Array<[string, number]>; shift: number | null }
export interface ClipValue { rt: 'CLIP'; name: string; type: string }
export interface VaeValue { rt: 'VAE'; name: string }
export interface CondValue { rt: 'CONDITIONING'; text: string; clip: string }
export interface LatentValue {
  rt: 'LATENT'; width: number; height: number; batch: number; channels: number;
  sample?: { key: string; caption: string; denoise: number };
  /** VAEEncode: the picture this latent was encoded from (img2img starts from it). */
  source?: ImageRecipe;
  /** SetLatentNoiseMask: only this area is resampled. */
  noiseMask?: MaskRecipe;
}
export interface ImageValue { rt: 'IMAGE'; width: number; height: number; batch: number; recipe: ImageRecipe }
export interface MaskValue { rt: 'MASK'; width: number; height: number; recipe: MaskRecipe }
export type RuntimeObject = ModelValue | ClipValue | VaeValue | CondValue | LatentValue | ImageValue | MaskValue;
/** A node input or output: a runtime object or a widget value (null when an input is missing). */
export type RtValue = RuntimeObject | JsonValue;

export function isRuntimeObject(v: RtValue): v is RuntimeObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof PyFloat) && 'rt' in v
    && typeof (v as { rt: unknown }).rt === 'string';
}

/** ComfyUI raises this when /interrupt lands (`InterruptProcessingException`). */
export class InterruptError extends Error {}

/** An exception raised inside a node: becomes `execution_error`. */
export class NodeError extends Error {
  constructor(readonly pyType: string, message: string, readonly tracebackTail?: string) {
    super(message);
  }
}

export interface NodeContext {
  promptId: string;
  nodeId: string;
  /** The graph as queued (hidden input PROMPT), for PNG metadata. */
  prompt: JsonObject;
  extraPngInfo: JsonValue;
  renderer: Renderer;
  outputDir: string;
  tempDir: string;
  inputDir: string;
  /** Time to load model files that are not loaded yet (uninterruptible, like a real load). */
  ensureLoaded(files: string[]): Promise<void>;
  /** One sampler step: waits, checks interrupt, reports progress (and previews). */
  samplerStep(step: number, total: number, preview: { recipe: ImageRecipe; width: number; height: number } | undefined): Promise<void>;
  /** A non-interruptible library call lasting `steps` sampler-step durations (hang-aware). */
  busySteps(steps: number): Promise<void>;
}

export interface NodeResult {
  outputs: RtValue[];
  ui?: JsonObject;
}

const str = (v: RtValue): string => (typeof v === 'string' ? v : isRuntimeObject(v) ? v.rt : pyRepr(v as JsonValue));
const num = (v: RtValue): number => (isRuntimeObject(v) ? NaN : toNumber(v as JsonValue));

function expect<K extends RuntimeObject['rt']>(v: RtValue, rt: K, name: string): Extract<RuntimeObject, { rt: K }> {
  if (isRuntimeObject(v) && v.rt === rt) return v as Extract<RuntimeObject, { rt: K }>;
  throw new NodeError('AttributeError', `'NoneType' object has no attribute '${name}'`);
}

function seedText(v: RtValue): string {
  return typeof v === 'bigint' ? v.toString() : String(num(v));
}

const RANDOM_CHARS = 'abcdefghijklmnopqrstupvxyz';

async function saveImages(images: ImageValue, prefix: string, dir: string, type: 'output' | 'temp', ctx: NodeContext, level: number): Promise<JsonObject> {
  const { folder, filename, counter, subfolder } = getSaveImagePath(prefix, dir, images.width, images.height);
  const text: Array<[string, string]> = [['prompt', pyDumps(ctx.prompt)]];
  if (isJsonObject(ctx.extraPngInfo)) {
    for (const k of keysOf(ctx.extraPngInfo)) text.push([k, pyDumps(ctx.extraPngInfo[k])]);
  }
  const results: JsonValue[] = [];
  for (let b = 0; b < images.batch; b++) {
    const file = `${filename.replaceAll('%batch_num%', String(b))}_${String(counter + b).padStart(5, '0')}_.png`;
    const raw = await ctx.renderer.render(images.recipe, images.width, images.height, b);
    const png = await ctx.renderer.encodePng(raw, text, level);
    await writeFile(join(folder, file), png);
    results.push(orderedObject([['filename', file], ['subfolder', subfolder], ['type', type]]));
  }
  return orderedObject([['images', results]]);
}

/** Runs one node with its resolved inputs. */
export async function runNode(def: NodeDef, args: Map<string, RtValue>, ctx: NodeContext): Promise<NodeResult> {
  const a = (name: string): RtValue => args.get(name) ?? null;
  switch (def.kind) {
    case 'unet_loader': {
      const unet = str(a('unet_name'));
      await ctx.ensureLoaded([unet]);
      return { outputs: [{ rt: 'MODEL', unet, dtype: str(a('weight_dtype')), loras: [], shift: null }] };
    }
    case 'clip_loader': {
      const name = str(a('clip_name'));
      await ctx.ensureLoaded([name]);
      return { outputs: [{ rt: 'CLIP', name, type: str(a('type')) }] };
    }
    case 'vae_loader': {
      const name = str(a('vae_name'));
      if (name !== 'pixel_space') await ctx.ensureLoaded([name]);
      return { outputs: [{ rt: 'VAE', name }] };
    }
    case 'lora_loader': {
      const model = expect(a('model'), 'MODEL', 'clone');
      const strength = num(a('strength_model'));
      if (strength === 0) return { outputs: [model] };
      const lora = str(a('lora_name'));
      await ctx.ensureLoaded([lora]);
      return { outputs: [{ ...model, loras: [...model.loras, [lora, strength]] }] };
    }
    case 'model_sampling': {
      const model = expect(a('model'), 'MODEL', 'clone');
      return { outputs: [{ ...model, shift: num(a('shift')) }] };
    }
    case 'clip_text_encode': {
      const clip = expect(a('clip'), 'CLIP', 'tokenize');
      return { outputs: [{ rt: 'CONDITIONING', text: str(a('text')), clip: clip.name }] };
    }
    case 'empty_latent': {
      const channels = def.name === 'EmptySD3LatentImage' ? 16 : 4;
      return {
        outputs: [{ rt: 'LATENT', width: Math.floor(num(a('width')) / 8), height: Math.floor(num(a('height')) / 8), batch: num(a('batch_size')), channels }],
      };
    }
    case 'ksampler': {
      const model = expect(a('model'), 'MODEL', 'get_model_object');
      const positive = expect(a('positive'), 'CONDITIONING', '__getitem__');
      const negative = expect(a('negative'), 'CONDITIONING', '__getitem__');
      const latent = expect(a('latent_image'), 'LATENT', 'copy');
      await ctx.ensureLoaded([model.unet, ...model.loras.map(([l]) => l)]);
      const seed = seedText(a('seed'));
      const steps = num(a('steps'));
      const sampler = str(a('sampler_name'));
      const scheduler = str(a('scheduler'));
      const key = pyDumps([seed, steps, num(a('cfg')), sampler, scheduler, num(a('denoise')), positive.text, negative.text,
        model.unet, model.dtype, model.loras.map(([l, s]) => [l, s]), model.shift, latent.width, latent.height, latent.batch]);
      const caption = `${positive.text}\nseed ${seed} · ${steps} steps · ${sampler}/${scheduler}`;
      const preview = { recipe: { kind: 'sample', key, caption: '' } as ImageRecipe, width: latent.width * 8, height: latent.height * 8 };
      // denoise < 1 runs only the last steps of the schedule, as common_ksampler does.
      const denoise = num(a('denoise'));
      const run = latent.source ? Math.max(1, Math.round(steps * denoise)) : steps;
      for (let s = 1; s <= run; s++) await ctx.samplerStep(s, run, preview);
      return { outputs: [{ ...latent, sample: { key, caption, denoise } }] };
    }
    case 'vae_decode': {
      const latent = expect(a('samples'), 'LATENT', 'shape');
      const vae = expect(a('vae'), 'VAE', 'decode');
      if (vae.name !== 'pixel_space') await ctx.ensureLoaded([vae.name]);
      const sampled: ImageRecipe | undefined = latent.sample
        ? { kind: 'sample', key: `${latent.sample.key}|${vae.name}`, caption: latent.sample.caption }
        : undefined;
      let recipe: ImageRecipe = sampled ?? latent.source ?? { kind: 'flat', rgb: [124, 116, 104] };
      if (sampled && latent.source && latent.sample) {
        recipe = { kind: 'edit', source: latent.source, sample: sampled, denoise: latent.sample.denoise, mask: latent.noiseMask };
      }
      return { outputs: [{ rt: 'IMAGE', width: latent.width * 8, height: latent.height * 8, batch: latent.batch, recipe }] };
    }
    case 'empty_image': {
      const color = num(a('color'));
      return {
        outputs: [{ rt: 'IMAGE', width: num(a('width')), height: num(a('height')), batch: num(a('batch_size')), recipe: { kind: 'solid', color } }],
      };
    }
    case 'image_add_noise': {
      const image = expect(a('image'), 'IMAGE', 'size');
      return { outputs: [{ ...image, recipe: { kind: 'noise', base: image.recipe, seed: seedText(a('seed')), strength: num(a('strength')) } }] };
    }
    case 'image_blur': {
      const image = expect(a('image'), 'IMAGE', 'shape');
      await ctx.busySteps(1);
      return { outputs: [{ ...image, recipe: { kind: 'blur', base: image.recipe, sigma: num(a('sigma')) } }] };
    }
    case 'load_image': {
      const path = inputPath(ctx, str(a('image')));
      const { width, height } = await imageSize(path);
      return {
        outputs: [
          { rt: 'IMAGE', width, height, batch: 1, recipe: { kind: 'file', path } },
          // No alpha channel in what we upload: LoadImage's mask is then all zeros.
          { rt: 'MASK', width, height, recipe: { kind: 'const', value: 0 } },
        ],
      };
    }
    case 'load_image_mask': {
      const path = inputPath(ctx, str(a('image')));
      const { width, height } = await imageSize(path);
      const channel = str(a('channel')) as 'alpha' | 'red' | 'green' | 'blue';
      return { outputs: [{ rt: 'MASK', width, height, recipe: { kind: 'channel', path, channel } }] };
    }
    case 'image_scale': {
      const image = expect(a('image'), 'IMAGE', 'movedim');
      let width = num(a('width'));
      let height = num(a('height'));
      if (width === 0 && height === 0) return { outputs: [image] };
      // ComfyUI keeps the aspect ratio for a side given as 0.
      if (width === 0) width = Math.max(1, Math.round((image.width * height) / image.height));
      if (height === 0) height = Math.max(1, Math.round((image.height * width) / image.width));
      return { outputs: [{ ...image, width, height }] };
    }
    case 'image_composite_masked': {
      const destination = expect(a('destination'), 'IMAGE', 'clone');
      const source = expect(a('source'), 'IMAGE', 'to');
      const maskIn = a('mask');
      const mask = isRuntimeObject(maskIn) && maskIn.rt === 'MASK' ? maskIn.recipe : undefined;
      const resize = a('resize_source') === true;
      return {
        outputs: [{
          ...destination,
          recipe: {
            kind: 'composite', destination: destination.recipe, source: source.recipe,
            sourceWidth: resize ? destination.width : source.width, sourceHeight: resize ? destination.height : source.height,
            x: num(a('x')), y: num(a('y')), mask,
          },
        }],
      };
    }
    case 'vae_encode': {
      const pixels = expect(a('pixels'), 'IMAGE', 'shape');
      const vae = expect(a('vae'), 'VAE', 'encode');
      if (vae.name !== 'pixel_space') await ctx.ensureLoaded([vae.name]);
      // The VAE crops to a multiple of 8, as vae_encode_crop_pixels does.
      return {
        outputs: [{ rt: 'LATENT', width: Math.floor(pixels.width / 8), height: Math.floor(pixels.height / 8), batch: pixels.batch, channels: 16, source: pixels.recipe }],
      };
    }
    case 'set_latent_noise_mask': {
      const samples = expect(a('samples'), 'LATENT', 'copy');
      const mask = expect(a('mask'), 'MASK', 'reshape');
      return { outputs: [{ ...samples, noiseMask: mask.recipe }] };
    }
    case 'save_image': {
      const images = expect(a('images'), 'IMAGE', 'cpu');
      const prefix = str(a('filename_prefix'));
      return { outputs: [], ui: await saveImages(images, prefix, ctx.outputDir, 'output', ctx, 1) };
    }
    case 'preview_image': {
      const images = expect(a('images'), 'IMAGE', 'cpu');
      let suffix = '_temp_';
      for (let i = 0; i < 5; i++) suffix += RANDOM_CHARS[Math.floor(Math.random() * RANDOM_CHARS.length)];
      return { outputs: [], ui: await saveImages(images, `ComfyUI${suffix}`, ctx.tempDir, 'temp', ctx, 1) };
    }
  }
}

/** folder_paths.get_annotated_filepath for the input folder (validation already proved it exists). */
function inputPath(ctx: NodeContext, name: string): string {
  return join(ctx.inputDir, name.replace(/ \[input\]$/, ''));
}

async function imageSize(path: string): Promise<{ width: number; height: number }> {
  try {
    const m = await sharp(path).metadata();
    if (!m.width || !m.height) throw new Error('no size');
    return { width: m.width, height: m.height };
  } catch {
    throw new NodeError('PIL.UnidentifiedImageError', `cannot identify image file '${path}'`);
  }
}

function fakeAddress(seed: string): string {
  return '0x7f' + createHash('sha1').update(seed).digest('hex').slice(0, 10);
}

/** `format_value` of execution.py for `current_inputs` in execution_error. */
export function formatInputValue(v: RtValue, where: string): JsonValue {
  if (!isRuntimeObject(v)) {
    if (v === null || typeof v !== 'object' || v instanceof PyFloat) return v;
    return pyRepr(v);
  }
  switch (v.rt) {
    case 'MODEL': return `<comfy.model_patcher.ModelPatcher object at ${fakeAddress(where)}>`;
    case 'CLIP': return `<comfy.sd.CLIP object at ${fakeAddress(where)}>`;
    case 'VAE': return `<comfy.sd.VAE object at ${fakeAddress(where)}>`;
    case 'CONDITIONING':
      return "[[tensor([[[ 0.0195, -0.0364,  0.0030,  ..., -0.0226,  0.0216, -0.0135]]], device='cuda:0'), {'pooled_output': None}]]";
    case 'LATENT':
      return `{'samples': tensor([[[[0., 0., 0.,  ..., 0., 0., 0.]]]]), 'downscale_ratio_spacial': 8}`;
    case 'IMAGE':
      return 'tensor([[[[0.4863, 0.4549, 0.4078],\n          ...,\n          [0.4863, 0.4549, 0.4078]]]])';
    case 'MASK':
      return 'tensor([[[0., 0., 0.,  ..., 0., 0., 0.]]])';
  }
}

/** Last traceback line for an exception raised in this kind of node. */
export function tracebackFor(def: NodeDef): string {
  const fn: Record<string, string> = {
    ksampler: '  File "/opt/ComfyUI/nodes.py", line 1525, in sample\n    return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=denoise)\n',
    save_image: '  File "/opt/ComfyUI/nodes.py", line 1596, in save_images\n    full_output_folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])\n',
    preview_image: '  File "/opt/ComfyUI/nodes.py", line 1596, in save_images\n    full_output_folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])\n',
  };
  return fn[def.kind] ?? `  File "/opt/ComfyUI/nodes.py", line 1, in ${def.kind}\n`;
}
