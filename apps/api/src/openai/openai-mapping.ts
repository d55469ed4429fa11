import sharp from 'sharp';
import { DomainError, ErrorCode } from '@app/common';
import type { WorkflowRegistry } from '@app/workflows';
import type { OpenAiQuality } from './dto/openai-image-request.dto';

/** A validation_failed about one field, as the native routes report it. */
export function fieldProblem(field: string, message: string): DomainError {
  return new DomainError(ErrorCode.ValidationFailed, message, [{ field, message }]);
}

/**
 * OpenAI's `size` as width/height: `auto` (or none) is the model's default (an edit: its input's
 * size); WIDTHxHEIGHT must be within the model's limits, else a 400 that lists the supported sizes.
 */
export function openAiSize(workflows: WorkflowRegistry, model: string, size?: string): { width?: number; height?: number } {
  if (size === undefined || size === 'auto') return {};
  const [width, height] = size.split('x').map(Number);
  const lim = workflows.limits(model);
  const fixed = lim.fixed.includes('width') || lim.fixed.includes('height');
  const fits = (v: number, l: { min: number; max: number; multiple_of: number }) => v >= l.min && v <= l.max && v % l.multiple_of === 0;
  if (fixed ? width === lim.width.min && height === lim.height.min : fits(width, lim.width) && fits(height, lim.height) && width * height <= lim.max_pixels) {
    return fixed ? {} : { width, height };
  }
  const p = workflows.get(model)!.manifest.parameters;
  const native = [`${p.width.default ?? lim.width.min}x${p.height.default ?? lim.height.min}`, ...Object.values(workflows.aspectRatios(model)).map(([w, h]) => `${w}x${h}`)];
  const listed = [...new Set(native)].join(', ');
  const range = fixed
    ? ''
    : `, or any WIDTHxHEIGHT with sides ${lim.width.min}–${lim.width.max} in multiples of ${lim.width.multiple_of} and at most ${lim.max_pixels} pixels`;
  throw fieldProblem('size', `size ${size} is not supported by model ${model}; supported sizes: auto, ${listed}${range}`);
}

/**
 * OpenAI's `quality` as steps, where the model's steps are adjustable: low = half its default, high
 * and hd = twice, within its step limits; otherwise (and for medium, standard, auto) its default.
 */
export function openAiSteps(workflows: WorkflowRegistry, model: string, quality?: OpenAiQuality): number | undefined {
  const lim = workflows.limits(model);
  if (lim.fixed.includes('num_inference_steps') || lim.num_inference_steps.min === lim.num_inference_steps.max) return undefined;
  const def = workflows.get(model)!.manifest.parameters.num_inference_steps.default ?? lim.num_inference_steps.min;
  if (quality === 'low') return Math.max(lim.num_inference_steps.min, Math.round(def / 2));
  if (quality === 'high' || quality === 'hd') return Math.min(lim.num_inference_steps.max, def * 2);
  return undefined;
}

/**
 * OpenAI's mask: transparent pixels (alpha 0) are the ones to edit. Ours: white = repaint. A mask
 * with transparency becomes its inverted alpha as a grey PNG; one without is taken as ours. Call it
 * after the common checks (decoded, ≤ 4096 px), so its cost is bounded.
 */
export async function maskFromOpenAi(bytes: Buffer): Promise<Buffer> {
  const meta = await sharp(bytes).metadata();
  if (!meta.hasAlpha) return bytes;
  const { data, info } = await sharp(bytes).ensureAlpha().extractChannel(3).raw().toBuffer({ resolveWithObject: true });
  if (data.every((a) => a === 255)) return bytes;
  for (let i = 0; i < data.length; i++) data[i] = 255 - data[i];
  return sharp(data, { raw: { width: info.width, height: info.height, channels: 1 } }).png().toBuffer();
}
