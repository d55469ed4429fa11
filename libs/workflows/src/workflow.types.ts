import type { ComfyGraph } from '@app/comfyui';
import type { AspectRatio, OutputFormat } from '@app/queue';

export interface InputBinding {
  node: string;
  input: string;
}

export interface NumericParameterSpec {
  /** Empty: the parameter is not adjustable for this model (fixed at default; min/max are ignored). */
  bind: InputBinding[];
  default?: number;
  min?: number;
  max?: number;
  multiple_of?: number;
}

export interface TextParameterSpec {
  bind: InputBinding[];
  default?: string;
}

export interface ModelFile {
  /** ComfyUI models folder (as /models/{folder} lists it), e.g. diffusion_models, loras. */
  folder: string;
  file: string;
}

/** workflows/<id>/manifest.json */
export interface WorkflowManifest {
  id: string;
  display_name: string;
  description: string;
  default?: boolean;
  graph: string;
  output: { node: string; prefix_input?: string };
  max_pixels?: number;
  parameters: {
    prompt: TextParameterSpec;
    negative_prompt: TextParameterSpec;
    width: NumericParameterSpec;
    height: NumericParameterSpec;
    num_inference_steps: NumericParameterSpec;
    guidance_scale: NumericParameterSpec;
    seed: NumericParameterSpec;
    /** Bound to the latent's batch_size: several images from one run. Absent: one image per job. */
    num_images?: NumericParameterSpec;
  };
  /** Native sizes per aspect ratio, [width, height]; a ratio not listed is refused for this model. */
  aspect_ratios?: Partial<Record<AspectRatio, [number, number]>>;
  /** What the model can do; text-to-image when absent. */
  modes?: string[];
  required_models: ModelFile[];
}

export interface LoadedWorkflow {
  manifest: WorkflowManifest;
  graph: ComfyGraph;
}

/** The limits of one model as the public API shows them. */
export interface ModelLimits {
  width: { min: number; max: number; multiple_of: number };
  height: { min: number; max: number; multiple_of: number };
  num_inference_steps: { min: number; max: number };
  guidance_scale: { min: number; max: number };
  seed: { min: number; max: number };
  max_pixels: number;
  prompt_max_length: number;
  num_images: { min: number; max: number };
  output_formats: OutputFormat[];
  output_quality: { min: number; max: number; default: number };
  /** Parameters this model's graph does not use: their range is their default, any other value is refused. */
  fixed: Array<'width' | 'height' | 'num_inference_steps' | 'guidance_scale'>;
}
