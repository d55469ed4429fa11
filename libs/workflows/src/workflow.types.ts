import type { ComfyGraph } from '@app/comfyui';

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
  };
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
  /** Parameters this model's graph does not use: their range is their default, any other value is refused. */
  fixed: Array<'width' | 'height' | 'num_inference_steps' | 'guidance_scale'>;
}
