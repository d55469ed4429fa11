import { createHash, randomInt } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ComfyGraph } from '@app/comfyui';
import { DomainError, ErrorCode } from '@app/common';
import { ASPECT_RATIOS, type AspectRatio, type GenerationParams, OUTPUT_FORMATS, type OutputFormat } from '@app/queue';
import type { LoadedWorkflow, ModelLimits, NumericParameterSpec, WorkflowManifest } from './workflow.types';

/** Public bounds that no manifest can widen (DESIGN §2). */
export const PROMPT_MAX_LENGTH = 1000;
export const SEED_MAX = Number.MAX_SAFE_INTEGER; // 2^53 - 1
const GLOBAL = { sideMin: 256, sideMax: 2048, multiple: 16, stepsMax: 150, guidanceMax: 30, numImagesMax: 8 };
/** sharp's scale; 90 keeps text in images legible at a fraction of the PNG's size. */
export const OUTPUT_QUALITY_DEFAULT = 90;
const PARAM_NAMES = ['prompt', 'negative_prompt', 'width', 'height', 'num_inference_steps', 'guidance_scale', 'seed'] as const;
/** The parameters a model may leave unbound, and then fixed at their default. A seed is always accepted: it is reported back. */
const FIXABLE_PARAMS = ['width', 'height', 'num_inference_steps', 'guidance_scale'] as const;
type NumericParameterName = (typeof FIXABLE_PARAMS)[number] | 'seed';

const isBound = (spec: NumericParameterSpec): boolean => spec.bind.length > 0;

export class WorkflowConfigError extends Error {}

/** What a client may ask for; everything optional but the prompt. Types already checked by the DTO. */
export interface GenerationRequest {
  prompt: string;
  negative_prompt?: string;
  width?: number;
  height?: number;
  num_inference_steps?: number;
  guidance_scale?: number;
  seed?: number;
  model?: string;
  aspect_ratio?: AspectRatio;
  num_images?: number;
  output_format?: OutputFormat;
  output_quality?: number;
}

export interface FieldProblem {
  field: string;
  message: string;
}

/**
 * The models this deployment serves, read from workflows/<id>/{manifest.json, graph}. Adding a
 * model is adding a folder; a manifest that binds a missing node or input stops start-up.
 */
export class WorkflowRegistry {
  private readonly byId = new Map<string, LoadedWorkflow>();
  private readonly fingerprints = new Map<string, string>();
  readonly defaultId: string;

  constructor(workflows: LoadedWorkflow[]) {
    if (!workflows.length) throw new WorkflowConfigError('no workflows found');
    for (const wf of workflows) {
      if (this.byId.has(wf.manifest.id)) throw new WorkflowConfigError(`duplicate workflow id ${wf.manifest.id}`);
      this.byId.set(wf.manifest.id, wf);
    }
    const defaults = workflows.filter((w) => w.manifest.default);
    if (defaults.length > 1) throw new WorkflowConfigError(`more than one default workflow: ${defaults.map((d) => d.manifest.id).join(', ')}`);
    this.defaultId = (defaults[0] ?? workflows[0]).manifest.id;
  }

  static fromDirectory(dir: string): WorkflowRegistry {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (e) {
      throw new WorkflowConfigError(`WORKFLOWS_DIR ${dir} cannot be read: ${(e as Error).message}`);
    }
    const loaded: LoadedWorkflow[] = [];
    for (const name of entries) {
      const folder = join(dir, name);
      if (!statSync(folder).isDirectory()) continue;
      const manifestPath = join(folder, 'manifest.json');
      let manifest: WorkflowManifest;
      let graph: ComfyGraph;
      try {
        manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as WorkflowManifest;
        graph = JSON.parse(readFileSync(join(folder, manifest.graph), 'utf8')) as ComfyGraph;
      } catch (e) {
        throw new WorkflowConfigError(`${manifestPath}: ${(e as Error).message}`);
      }
      validateManifest(manifest, graph, manifestPath);
      loaded.push({ manifest, graph });
    }
    return new WorkflowRegistry(loaded);
  }

  list(): LoadedWorkflow[] {
    return [...this.byId.values()];
  }

  get(id: string): LoadedWorkflow | undefined {
    return this.byId.get(id);
  }

  /**
   * A hash of the model's manifest and graph: an operator who changes a LoRA, a sampler or a
   * binding changes the pixels of the same parameters, so cached results must not match across it.
   */
  fingerprint(id: string): string {
    let f = this.fingerprints.get(id);
    if (!f) {
      const wf = this.require(id);
      f = createHash('sha256').update(JSON.stringify([wf.manifest, wf.graph])).digest('hex').slice(0, 16);
      this.fingerprints.set(id, f);
    }
    return f;
  }

  /** Native [width, height] per aspect ratio, in the public order. */
  aspectRatios(id: string): Partial<Record<AspectRatio, [number, number]>> {
    const declared = this.require(id).manifest.aspect_ratios ?? {};
    const out: Partial<Record<AspectRatio, [number, number]>> = {};
    for (const r of ASPECT_RATIOS) if (declared[r]) out[r] = declared[r];
    return out;
  }

  limits(id: string): ModelLimits {
    const m = this.require(id).manifest;
    const p = m.parameters;
    // A parameter bound to no input cannot change the picture: its only value is its default, whatever
    // min/max its manifest declares (smoke-test's "0..0" guidance was such a range, and read as a limit).
    const fixedAt = (name: NumericParameterName, fallback: number) => ({ min: p[name].default ?? fallback, max: p[name].default ?? fallback });
    const side = (name: 'width' | 'height') => {
      const s = p[name];
      const multiple_of = s.multiple_of ?? GLOBAL.multiple;
      return isBound(s) ? { min: s.min ?? GLOBAL.sideMin, max: s.max ?? GLOBAL.sideMax, multiple_of } : { ...fixedAt(name, 1328), multiple_of };
    };
    return {
      width: side('width'),
      height: side('height'),
      num_inference_steps: isBound(p.num_inference_steps)
        ? { min: p.num_inference_steps.min ?? 1, max: p.num_inference_steps.max ?? GLOBAL.stepsMax }
        : fixedAt('num_inference_steps', 1),
      guidance_scale: isBound(p.guidance_scale)
        ? { min: p.guidance_scale.min ?? 0, max: p.guidance_scale.max ?? GLOBAL.guidanceMax }
        : fixedAt('guidance_scale', 0),
      seed: { min: 0, max: SEED_MAX },
      max_pixels: m.max_pixels ?? GLOBAL.sideMax * GLOBAL.sideMax,
      prompt_max_length: PROMPT_MAX_LENGTH,
      num_images: p.num_images && isBound(p.num_images) ? { min: p.num_images.min ?? 1, max: p.num_images.max ?? 1 } : { min: 1, max: 1 },
      output_formats: [...OUTPUT_FORMATS],
      output_quality: { min: 1, max: 100, default: OUTPUT_QUALITY_DEFAULT },
      fixed: FIXABLE_PARAMS.filter((name) => !isBound(p[name])),
    };
  }

  /**
   * Applies the model's defaults and checks the model's limits. Throws unknown_model or
   * validation_failed (with every problem listed), so bad input never reaches the queue.
   */
  resolve(req: GenerationRequest, random: (max: number) => number = (max) => randomInt(0, max)): GenerationParams {
    const modelId = req.model ?? this.defaultId;
    const wf = this.byId.get(modelId);
    if (!wf) {
      throw new DomainError(ErrorCode.UnknownModel, `Unknown model "${modelId}"`, { model: modelId, available: [...this.byId.keys()] });
    }
    const p = wf.manifest.parameters;
    const lim = this.limits(modelId);
    const problems: FieldProblem[] = [];
    let ratioSize: [number, number] | undefined;
    if (req.aspect_ratio !== undefined) {
      ratioSize = this.aspectRatios(modelId)[req.aspect_ratio];
      if (req.width !== undefined || req.height !== undefined) {
        problems.push({ field: 'aspect_ratio', message: 'aspect_ratio cannot be combined with width or height; send one or the other' });
      } else if (!ratioSize) {
        const offered = Object.keys(this.aspectRatios(modelId));
        problems.push({ field: 'aspect_ratio', message: `aspect_ratio ${req.aspect_ratio} is not offered by model ${modelId}${offered.length ? ` (one of ${offered.join(', ')})` : ''}` });
      }
    }
    const outputFormat = req.output_format ?? 'png';
    const params: GenerationParams = {
      model: modelId,
      prompt: req.prompt,
      negative_prompt: req.negative_prompt ?? p.negative_prompt.default ?? '',
      width: req.width ?? ratioSize?.[0] ?? p.width.default ?? 1328,
      height: req.height ?? ratioSize?.[1] ?? p.height.default ?? 1328,
      num_inference_steps: req.num_inference_steps ?? p.num_inference_steps.default ?? lim.num_inference_steps.min,
      guidance_scale: req.guidance_scale ?? p.guidance_scale.default ?? lim.guidance_scale.min,
      // randomInt's bound is < 2^48; spread it over the whole 2^53 range for variety.
      seed: req.seed ?? Math.floor(random(2 ** 48 - 1) * 32) % (SEED_MAX + 1),
      num_images: req.num_images ?? p.num_images?.default ?? 1,
      output_format: outputFormat,
      ...(outputFormat !== 'png' ? { output_quality: req.output_quality ?? OUTPUT_QUALITY_DEFAULT } : {}),
      ...(req.aspect_ratio !== undefined && ratioSize ? { aspect_ratio: req.aspect_ratio } : {}),
    };
    const fixed = new Set<string>(lim.fixed);
    const range = (field: NumericParameterName, v: number, min: number, max: number, multiple?: number) => {
      // A value the model cannot use is refused rather than ignored, except its own default (a client may echo GET /models).
      if (fixed.has(field)) {
        if (req[field] !== undefined && v !== min) problems.push({ field, message: `${field} is not adjustable for model ${modelId} (it is always ${min}); omit it` });
      } else if (v < min || v > max) problems.push({ field, message: `${field} must be between ${min} and ${max} for model ${modelId}` });
      else if (multiple && v % multiple !== 0) problems.push({ field, message: `${field} must be a multiple of ${multiple}` });
    };
    range('width', params.width, lim.width.min, lim.width.max, lim.width.multiple_of);
    range('height', params.height, lim.height.min, lim.height.max, lim.height.multiple_of);
    range('num_inference_steps', params.num_inference_steps, lim.num_inference_steps.min, lim.num_inference_steps.max);
    range('guidance_scale', params.guidance_scale, lim.guidance_scale.min, lim.guidance_scale.max);
    range('seed', params.seed, 0, SEED_MAX);
    const n = params.num_images ?? 1;
    if (lim.num_images.max === 1) {
      if (n !== 1) problems.push({ field: 'num_images', message: `num_images is not adjustable for model ${modelId} (it makes one image per job); omit it` });
    } else if (!Number.isInteger(n) || n < lim.num_images.min || n > lim.num_images.max) {
      problems.push({ field: 'num_images', message: `num_images must be between ${lim.num_images.min} and ${lim.num_images.max} for model ${modelId}` });
    }
    if (req.output_quality !== undefined && outputFormat === 'png') {
      problems.push({ field: 'output_quality', message: 'output_quality applies to output_format jpeg or webp only (png is lossless)' });
    }
    if (params.width * params.height > lim.max_pixels) {
      problems.push({ field: 'width', message: `width × height must be at most ${lim.max_pixels} pixels for model ${modelId}` });
    }
    if (problems.length) throw new DomainError(ErrorCode.ValidationFailed, problems.map((p) => p.message).join('; '), problems);
    return params;
  }

  /** The ComfyUI graph for these parameters: a fresh copy, values set as data, never by templating. */
  buildGraph(params: GenerationParams, opts: { filenamePrefix?: string } = {}): ComfyGraph {
    const wf = this.require(params.model);
    const graph = structuredClone(wf.graph);
    for (const name of PARAM_NAMES) {
      for (const b of wf.manifest.parameters[name].bind) graph[b.node].inputs[b.input] = params[name];
    }
    for (const b of wf.manifest.parameters.num_images?.bind ?? []) graph[b.node].inputs[b.input] = params.num_images ?? 1;
    const out = wf.manifest.output;
    if (opts.filenamePrefix && out.prefix_input) graph[out.node].inputs[out.prefix_input] = opts.filenamePrefix;
    return graph;
  }

  private require(id: string): LoadedWorkflow {
    const wf = this.byId.get(id);
    if (!wf) throw new DomainError(ErrorCode.UnknownModel, `Unknown model "${id}"`);
    return wf;
  }
}

function validateManifest(m: WorkflowManifest, graph: ComfyGraph, where: string): void {
  const fail = (msg: string): never => {
    throw new WorkflowConfigError(`${where}: ${msg}`);
  };
  if (typeof m.id !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(m.id)) fail('id must be lowercase letters, digits, . _ -');
  if (typeof m.display_name !== 'string' || !m.display_name) fail('display_name is required');
  if (!m.parameters || typeof m.parameters !== 'object') fail('parameters is required');
  for (const [id, node] of Object.entries(graph)) {
    if (!node || typeof node.class_type !== 'string' || typeof node.inputs !== 'object') fail(`graph node ${id} has no class_type or inputs`);
  }
  const hasInput = (b: { node: string; input: string }) => !!graph[b.node] && Object.prototype.hasOwnProperty.call(graph[b.node].inputs, b.input);
  for (const name of PARAM_NAMES) {
    const spec = m.parameters[name];
    if (!spec || !Array.isArray(spec.bind)) fail(`parameters.${name}.bind must be a list`);
    for (const b of spec.bind) {
      if (!hasInput(b)) fail(`parameters.${name} binds node "${b.node}" input "${b.input}", which the graph does not have`);
    }
  }
  const batch = m.parameters.num_images;
  if (batch !== undefined) {
    if (!Array.isArray(batch.bind)) fail('parameters.num_images.bind must be a list');
    for (const b of batch.bind) {
      if (!hasInput(b)) fail(`parameters.num_images binds node "${b.node}" input "${b.input}", which the graph does not have`);
    }
    if ((batch.max ?? 1) > GLOBAL.numImagesMax || (batch.min ?? 1) < 1) fail(`parameters.num_images limits must stay within 1..${GLOBAL.numImagesMax}`);
  }
  for (const [ratio, size] of Object.entries(m.aspect_ratios ?? {})) {
    if (!(ASPECT_RATIOS as readonly string[]).includes(ratio)) fail(`aspect_ratios.${ratio} is not one of ${ASPECT_RATIOS.join(', ')}`);
    const sides = size as unknown;
    if (!Array.isArray(sides) || sides.length !== 2 || !sides.every((v) => Number.isInteger(v))) fail(`aspect_ratios.${ratio} must be [width, height]`);
    const [w, h] = sides as [number, number];
    const within = (name: 'width' | 'height', v: number) => {
      const s = m.parameters[name];
      return v >= (s.min ?? GLOBAL.sideMin) && v <= (s.max ?? GLOBAL.sideMax) && v % (s.multiple_of ?? GLOBAL.multiple) === 0;
    };
    if (!within('width', w) || !within('height', h)) fail(`aspect_ratios.${ratio} ${w}x${h} is outside the model's width/height limits or off their multiple`);
    if (w * h > (m.max_pixels ?? GLOBAL.sideMax * GLOBAL.sideMax)) fail(`aspect_ratios.${ratio} ${w}x${h} exceeds max_pixels`);
  }
  if (!m.parameters.prompt.bind.length && m.required_models?.length) fail('parameters.prompt must bind at least one input');
  if (!m.output || !graph[m.output.node]) fail(`output node "${m.output?.node}" is not in the graph`);
  if (m.output.prefix_input && !hasInput({ node: m.output.node, input: m.output.prefix_input })) {
    fail(`output.prefix_input "${m.output.prefix_input}" is not an input of node ${m.output.node}`);
  }
  if (!Array.isArray(m.required_models)) fail('required_models must be a list');
  for (const side of ['width', 'height'] as const) {
    const s = m.parameters[side];
    if ((s.min ?? GLOBAL.sideMin) < GLOBAL.sideMin || (s.max ?? GLOBAL.sideMax) > GLOBAL.sideMax) {
      fail(`parameters.${side} limits must stay within ${GLOBAL.sideMin}..${GLOBAL.sideMax}`);
    }
  }
}
