/**
 * The node classes the simulator knows, with the input specs of ComfyUI 0.3.64 (nodes.py and
 * comfy_extras), their output types (for link type checks) and their /object_info entries.
 */
import { JsonObject, JsonValue, PyFloat, orderedObject } from './py-json';

export type NodeKind =
  | 'unet_loader' | 'clip_loader' | 'vae_loader' | 'lora_loader' | 'model_sampling'
  | 'clip_text_encode' | 'empty_latent' | 'ksampler' | 'vae_decode' | 'save_image'
  | 'preview_image' | 'empty_image' | 'image_add_noise' | 'image_blur'
  | 'load_image' | 'load_image_mask' | 'image_scale' | 'image_composite_masked' | 'vae_encode' | 'set_latent_noise_mask';

/** `(type, options)` as in INPUT_TYPES; a combo's type is its option list. */
export interface InputSpec {
  type: string | string[];
  options?: JsonObject;
}

export interface NodeDef {
  name: string;
  displayName: string;
  category: string;
  description: string;
  pythonModule: string;
  /** New-style (comfy_api io.ComfyNode) node: different /object_info shape. */
  v3: boolean;
  required: Array<[string, InputSpec]>;
  optional: Array<[string, InputSpec]>;
  hidden: Array<[string, string]>;
  output: string[];
  outputTooltips?: string[];
  outputNode: boolean;
  kind: NodeKind;
  /** Loader nodes: which input holds the model file name (cost of first load). */
  modelInput?: string;
  /** Inputs the node checks itself (VALIDATE_INPUTS): the combo check is skipped, a missing input file fails. */
  inputFile?: string;
}

export const MAX_RESOLUTION = 16384;
export const SEED_MAX = 18446744073709551615n;

/** folder_paths.folder_names_and_paths keys, in ComfyUI's order. */
export const MODEL_FOLDERS = [
  'checkpoints', 'configs', 'loras', 'vae', 'text_encoders', 'diffusion_models', 'clip_vision', 'style_models',
  'embeddings', 'diffusers', 'vae_approx', 'controlnet', 'gligen', 'upscale_models', 'custom_nodes',
  'hypernetworks', 'photomaker', 'classifiers', 'model_patches', 'audio_encoders',
];

/** Legacy folder names that ComfyUI scans as part of another key. */
const FOLDER_ALIASES: Record<string, string> = { unet: 'diffusion_models', clip: 'text_encoders' };

export const DEFAULT_MODELS: Record<string, string[]> = {
  diffusion_models: ['qwen_image_fp8_e4m3fn_scaled.safetensors'],
  text_encoders: ['qwen_2.5_vl_7b_fp8_scaled.safetensors'],
  vae: ['qwen_image_vae.safetensors'],
  loras: ['Qwen-Image-Lightning-4steps-V2.0.safetensors', 'Qwen-Image-Lightning-8steps-V1.0.safetensors'],
};

export const SAMPLERS = [
  'euler', 'euler_cfg_pp', 'euler_ancestral', 'euler_ancestral_cfg_pp', 'heun', 'heunpp2', 'dpm_2',
  'dpm_2_ancestral', 'lms', 'dpm_fast', 'dpm_adaptive', 'dpmpp_2s_ancestral', 'dpmpp_2s_ancestral_cfg_pp',
  'dpmpp_sde', 'dpmpp_sde_gpu', 'dpmpp_2m', 'dpmpp_2m_cfg_pp', 'dpmpp_2m_sde', 'dpmpp_2m_sde_gpu',
  'dpmpp_2m_sde_heun', 'dpmpp_2m_sde_heun_gpu', 'dpmpp_3m_sde', 'dpmpp_3m_sde_gpu', 'ddpm', 'lcm', 'ipndm',
  'ipndm_v', 'deis', 'res_multistep', 'res_multistep_cfg_pp', 'res_multistep_ancestral',
  'res_multistep_ancestral_cfg_pp', 'gradient_estimation', 'gradient_estimation_cfg_pp', 'er_sde', 'seeds_2',
  'seeds_3', 'sa_solver', 'sa_solver_pece', 'ddim', 'uni_pc', 'uni_pc_bh2',
];

export const SCHEDULERS = [
  'simple', 'sgm_uniform', 'karras', 'exponential', 'ddim_uniform', 'beta', 'normal', 'linear_quadratic', 'kl_optimal',
];

const CLIP_TYPES = [
  'stable_diffusion', 'stable_cascade', 'sd3', 'stable_audio', 'mochi', 'ltxv', 'pixart', 'cosmos', 'lumina2',
  'wan', 'hidream', 'chroma', 'ace', 'omnigen2', 'qwen_image', 'hunyuan_image',
];

/** Model files per folder key (aliases merged, names sorted like folder_paths.get_filename_list). */
export function normalizeModels(models?: Record<string, string[]>): Map<string, string[]> {
  const src = models ?? DEFAULT_MODELS;
  const out = new Map<string, Set<string>>();
  for (const f of MODEL_FOLDERS) out.set(f, new Set());
  for (const [folder, files] of Object.entries(src)) {
    const key = FOLDER_ALIASES[folder] ?? folder;
    if (!out.has(key)) out.set(key, new Set());
    const set = out.get(key);
    for (const file of files) set?.add(file);
  }
  const sorted = new Map<string, string[]>();
  for (const [k, v] of out) sorted.set(k, [...v].sort());
  return sorted;
}

const f = (n: number): PyFloat => new PyFloat(n);
const spec = (type: string | string[], options?: JsonObject): InputSpec => ({ type, options });
const opts = (entries: Array<[string, JsonValue]>): JsonObject => orderedObject(entries);

const SAVE_HIDDEN: Array<[string, string]> = [['prompt', 'PROMPT'], ['extra_pnginfo', 'EXTRA_PNGINFO']];

/** Builds the node table for one simulator (loader combos depend on its model lists). */
export function buildRegistry(models: Map<string, string[]>): Map<string, NodeDef> {
  const files = (folder: string): string[] => [...(models.get(folder) ?? [])];
  const defs: NodeDef[] = [
    {
      name: 'UNETLoader', displayName: 'Load Diffusion Model', category: 'advanced/loaders', description: '',
      pythonModule: 'nodes', v3: false, kind: 'unet_loader', modelInput: 'unet_name', outputNode: false,
      required: [['unet_name', spec(files('diffusion_models'))],
        ['weight_dtype', spec(['default', 'fp8_e4m3fn', 'fp8_e4m3fn_fast', 'fp8_e5m2'])]],
      optional: [], hidden: [], output: ['MODEL'],
    },
    {
      name: 'CLIPLoader', displayName: 'Load CLIP', category: 'advanced/loaders',
      description: '[Recipes]\n\nstable_diffusion: clip-l\nstable_cascade: clip-g\nsd3: t5 xxl/ clip-g / clip-l\nstable_audio: t5 base\nmochi: t5 xxl\ncosmos: old t5 xxl\nlumina2: gemma 2 2B\nwan: umt5 xxl\n hidream: llama-3.1 (Recommend) or t5\nomnigen2: qwen vl 2.5 3B',
      pythonModule: 'nodes', v3: false, kind: 'clip_loader', modelInput: 'clip_name', outputNode: false,
      required: [['clip_name', spec(files('text_encoders'))], ['type', spec(CLIP_TYPES)]],
      optional: [['device', spec(['default', 'cpu'], opts([['advanced', true]]))]], hidden: [], output: ['CLIP'],
    },
    {
      name: 'VAELoader', displayName: 'Load VAE', category: 'loaders', description: '',
      pythonModule: 'nodes', v3: false, kind: 'vae_loader', modelInput: 'vae_name', outputNode: false,
      required: [['vae_name', spec([...files('vae'), 'pixel_space'])]], optional: [], hidden: [], output: ['VAE'],
    },
    {
      name: 'LoraLoaderModelOnly', displayName: 'LoraLoaderModelOnly', category: 'loaders',
      description: 'LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised such as applying styles. Multiple LoRA nodes can be linked together.',
      pythonModule: 'nodes', v3: false, kind: 'lora_loader', modelInput: 'lora_name', outputNode: false,
      required: [['model', spec('MODEL')], ['lora_name', spec(files('loras'))],
        ['strength_model', spec('FLOAT', opts([['default', f(1)], ['min', f(-100)], ['max', f(100)], ['step', 0.01]]))]],
      optional: [], hidden: [], output: ['MODEL'],
      // Inherited from LoraLoader in ComfyUI, hence two tooltips for one output.
      outputTooltips: ['The modified diffusion model.', 'The modified CLIP model.'],
    },
    {
      name: 'ModelSamplingAuraFlow', displayName: 'ModelSamplingAuraFlow', category: 'advanced/model', description: '',
      pythonModule: 'comfy_extras.nodes_model_advanced', v3: false, kind: 'model_sampling', outputNode: false,
      required: [['model', spec('MODEL')],
        ['shift', spec('FLOAT', opts([['default', 1.73], ['min', f(0)], ['max', f(100)], ['step', 0.01]]))]],
      optional: [], hidden: [], output: ['MODEL'],
    },
    {
      name: 'CLIPTextEncode', displayName: 'CLIP Text Encode (Prompt)', category: 'conditioning',
      description: 'Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.',
      pythonModule: 'nodes', v3: false, kind: 'clip_text_encode', outputNode: false,
      required: [
        ['text', spec('STRING', opts([['multiline', true], ['dynamicPrompts', true], ['tooltip', 'The text to be encoded.']]))],
        ['clip', spec('CLIP', opts([['tooltip', 'The CLIP model used for encoding the text.']]))],
      ],
      optional: [], hidden: [], output: ['CONDITIONING'],
      outputTooltips: ['A conditioning containing the embedded text used to guide the diffusion model.'],
    },
    {
      name: 'EmptySD3LatentImage', displayName: 'EmptySD3LatentImage', category: 'latent/sd3', description: '',
      pythonModule: 'comfy_extras.nodes_sd3', v3: true, kind: 'empty_latent', outputNode: false,
      required: [
        ['width', spec('INT', opts([['default', 1024], ['min', 16], ['max', MAX_RESOLUTION], ['step', 16]]))],
        ['height', spec('INT', opts([['default', 1024], ['min', 16], ['max', MAX_RESOLUTION], ['step', 16]]))],
        ['batch_size', spec('INT', opts([['default', 1], ['min', 1], ['max', 4096]]))],
      ],
      optional: [], hidden: [], output: ['LATENT'],
    },
    {
      name: 'EmptyLatentImage', displayName: 'Empty Latent Image', category: 'latent',
      description: 'Create a new batch of empty latent images to be denoised via sampling.',
      pythonModule: 'nodes', v3: false, kind: 'empty_latent', outputNode: false,
      required: [
        ['width', spec('INT', opts([['default', 512], ['min', 16], ['max', MAX_RESOLUTION], ['step', 8], ['tooltip', 'The width of the latent images in pixels.']]))],
        ['height', spec('INT', opts([['default', 512], ['min', 16], ['max', MAX_RESOLUTION], ['step', 8], ['tooltip', 'The height of the latent images in pixels.']]))],
        ['batch_size', spec('INT', opts([['default', 1], ['min', 1], ['max', 4096], ['tooltip', 'The number of latent images in the batch.']]))],
      ],
      optional: [], hidden: [], output: ['LATENT'], outputTooltips: ['The empty latent image batch.'],
    },
    {
      name: 'KSampler', displayName: 'KSampler', category: 'sampling',
      description: 'Uses the provided model, positive and negative conditioning to denoise the latent image.',
      pythonModule: 'nodes', v3: false, kind: 'ksampler', outputNode: false,
      required: [
        ['model', spec('MODEL', opts([['tooltip', 'The model used for denoising the input latent.']]))],
        ['seed', spec('INT', opts([['default', 0], ['min', 0], ['max', SEED_MAX], ['control_after_generate', true], ['tooltip', 'The random seed used for creating the noise.']]))],
        ['steps', spec('INT', opts([['default', 20], ['min', 1], ['max', 10000], ['tooltip', 'The number of steps used in the denoising process.']]))],
        ['cfg', spec('FLOAT', opts([['default', f(8)], ['min', f(0)], ['max', f(100)], ['step', 0.1], ['round', 0.01], ['tooltip', 'The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality.']]))],
        ['sampler_name', spec(SAMPLERS, opts([['tooltip', 'The algorithm used when sampling, this can affect the quality, speed, and style of the generated output.']]))],
        ['scheduler', spec(SCHEDULERS, opts([['tooltip', 'The scheduler controls how noise is gradually removed to form the image.']]))],
        ['positive', spec('CONDITIONING', opts([['tooltip', 'The conditioning describing the attributes you want to include in the image.']]))],
        ['negative', spec('CONDITIONING', opts([['tooltip', 'The conditioning describing the attributes you want to exclude from the image.']]))],
        ['latent_image', spec('LATENT', opts([['tooltip', 'The latent image to denoise.']]))],
        ['denoise', spec('FLOAT', opts([['default', f(1)], ['min', f(0)], ['max', f(1)], ['step', 0.01], ['tooltip', 'The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling.']]))],
      ],
      optional: [], hidden: [], output: ['LATENT'], outputTooltips: ['The denoised latent.'],
    },
    {
      name: 'VAEDecode', displayName: 'VAE Decode', category: 'latent',
      description: 'Decodes latent images back into pixel space images.',
      pythonModule: 'nodes', v3: false, kind: 'vae_decode', outputNode: false,
      required: [['samples', spec('LATENT', opts([['tooltip', 'The latent to be decoded.']]))],
        ['vae', spec('VAE', opts([['tooltip', 'The VAE model used for decoding the latent.']]))]],
      optional: [], hidden: [], output: ['IMAGE'], outputTooltips: ['The decoded image.'],
    },
    {
      name: 'SaveImage', displayName: 'Save Image', category: 'image',
      description: 'Saves the input images to your ComfyUI output directory.',
      pythonModule: 'nodes', v3: false, kind: 'save_image', outputNode: true,
      required: [
        ['images', spec('IMAGE', opts([['tooltip', 'The images to save.']]))],
        ['filename_prefix', spec('STRING', opts([['default', 'ComfyUI'], ['tooltip', 'The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.']]))],
      ],
      optional: [], hidden: SAVE_HIDDEN, output: [],
    },
    {
      name: 'PreviewImage', displayName: 'Preview Image', category: 'image',
      description: 'Saves the input images to your ComfyUI output directory.',
      pythonModule: 'nodes', v3: false, kind: 'preview_image', outputNode: true,
      required: [['images', spec('IMAGE')]], optional: [], hidden: SAVE_HIDDEN, output: [],
    },
    {
      name: 'EmptyImage', displayName: 'EmptyImage', category: 'image', description: '',
      pythonModule: 'nodes', v3: false, kind: 'empty_image', outputNode: false,
      required: [
        ['width', spec('INT', opts([['default', 512], ['min', 1], ['max', MAX_RESOLUTION], ['step', 1]]))],
        ['height', spec('INT', opts([['default', 512], ['min', 1], ['max', MAX_RESOLUTION], ['step', 1]]))],
        ['batch_size', spec('INT', opts([['default', 1], ['min', 1], ['max', 4096]]))],
        ['color', spec('INT', opts([['default', 0], ['min', 0], ['max', 0xffffff], ['step', 1], ['display', 'color']]))],
      ],
      optional: [], hidden: [], output: ['IMAGE'],
    },
    {
      name: 'ImageAddNoise', displayName: 'ImageAddNoise', category: 'image', description: '',
      pythonModule: 'comfy_extras.nodes_images', v3: true, kind: 'image_add_noise', outputNode: false,
      required: [
        ['image', spec('IMAGE', opts([]))],
        ['seed', spec('INT', opts([['default', 0], ['min', 0], ['max', SEED_MAX], ['control_after_generate', true], ['tooltip', 'The random seed used for creating the noise.']]))],
        ['strength', spec('FLOAT', opts([['default', 0.5], ['min', f(0)], ['max', f(1)], ['step', 0.01]]))],
      ],
      optional: [], hidden: [], output: ['IMAGE'],
    },
    {
      name: 'ImageBlur', displayName: 'Image Blur', category: 'image/postprocessing', description: '',
      pythonModule: 'comfy_extras.nodes_post_processing', v3: false, kind: 'image_blur', outputNode: false,
      required: [
        ['image', spec('IMAGE')],
        ['blur_radius', spec('INT', opts([['default', 1], ['min', 1], ['max', 31], ['step', 1]]))],
        ['sigma', spec('FLOAT', opts([['default', f(1)], ['min', 0.1], ['max', f(10)], ['step', 0.1]]))],
      ],
      optional: [], hidden: [], output: ['IMAGE'],
    },
    {
      name: 'LoadImage', displayName: 'Load Image', category: 'image', description: '',
      pythonModule: 'nodes', v3: false, kind: 'load_image', outputNode: false, inputFile: 'image',
      // The combo lists the input folder; the server the node specs came from had none.
      required: [['image', spec([], opts([['image_upload', true]]))]], optional: [], hidden: [], output: ['IMAGE', 'MASK'],
    },
    {
      name: 'LoadImageMask', displayName: 'Load Image (as Mask)', category: 'mask', description: '',
      pythonModule: 'nodes', v3: false, kind: 'load_image_mask', outputNode: false, inputFile: 'image',
      required: [['image', spec([], opts([['image_upload', true]]))], ['channel', spec(['alpha', 'red', 'green', 'blue'])]],
      optional: [], hidden: [], output: ['MASK'],
    },
    {
      name: 'ImageScale', displayName: 'Upscale Image', category: 'image/upscaling', description: '',
      pythonModule: 'nodes', v3: false, kind: 'image_scale', outputNode: false,
      required: [
        ['image', spec('IMAGE')],
        ['upscale_method', spec(['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'])],
        ['width', spec('INT', opts([['default', 512], ['min', 0], ['max', MAX_RESOLUTION], ['step', 1]]))],
        ['height', spec('INT', opts([['default', 512], ['min', 0], ['max', MAX_RESOLUTION], ['step', 1]]))],
        ['crop', spec(['disabled', 'center'])],
      ],
      optional: [], hidden: [], output: ['IMAGE'],
    },
    {
      name: 'ImageCompositeMasked', displayName: 'ImageCompositeMasked', category: 'image', description: '',
      pythonModule: 'comfy_extras.nodes_mask', v3: false, kind: 'image_composite_masked', outputNode: false,
      required: [
        ['destination', spec('IMAGE')],
        ['source', spec('IMAGE')],
        ['x', spec('INT', opts([['default', 0], ['min', 0], ['max', MAX_RESOLUTION], ['step', 1]]))],
        ['y', spec('INT', opts([['default', 0], ['min', 0], ['max', MAX_RESOLUTION], ['step', 1]]))],
        ['resize_source', spec('BOOLEAN', opts([['default', false]]))],
      ],
      optional: [['mask', spec('MASK')]], hidden: [], output: ['IMAGE'],
    },
    {
      name: 'VAEEncode', displayName: 'VAE Encode', category: 'latent', description: '',
      pythonModule: 'nodes', v3: false, kind: 'vae_encode', outputNode: false,
      required: [['pixels', spec('IMAGE')], ['vae', spec('VAE')]], optional: [], hidden: [], output: ['LATENT'],
    },
    {
      name: 'SetLatentNoiseMask', displayName: 'Set Latent Noise Mask', category: 'latent/inpaint', description: '',
      pythonModule: 'nodes', v3: false, kind: 'set_latent_noise_mask', outputNode: false,
      required: [['samples', spec('LATENT')], ['mask', spec('MASK')]], optional: [], hidden: [], output: ['LATENT'],
    },
  ];
  return new Map(defs.map((d) => [d.name, d]));
}

/** `get_input_info`: category and spec of one declared input (hidden inputs excluded). */
export function inputInfo(def: NodeDef, name: string): { category: 'required' | 'optional'; spec: InputSpec } | undefined {
  const req = def.required.find(([n]) => n === name);
  if (req) return { category: 'required', spec: req[1] };
  const opt = def.optional.find(([n]) => n === name);
  if (opt) return { category: 'optional', spec: opt[1] };
  return undefined;
}

/** `input_config` as reported in validation errors: `[type, options]`. */
export function inputConfig(s: InputSpec): JsonValue {
  return [s.type, s.options ?? {}];
}

function specJson(s: InputSpec): JsonValue {
  return s.options === undefined ? [s.type] : [s.type, s.options];
}

/** One entry of GET /object_info. */
export function objectInfo(def: NodeDef): JsonObject {
  const input: Array<[string, JsonValue]> = [
    ['required', orderedObject(def.required.map(([n, s]) => [n, specJson(s)]))],
  ];
  const order: Array<[string, JsonValue]> = [['required', def.required.map(([n]) => n)]];
  if (def.optional.length) {
    input.push(['optional', orderedObject(def.optional.map(([n, s]) => [n, specJson(s)]))]);
    order.push(['optional', def.optional.map(([n]) => n)]);
  }
  if (def.hidden.length) {
    input.push(['hidden', orderedObject(def.hidden.map(([n, t]) => [n, t]))]);
    order.push(['hidden', def.hidden.map(([n]) => n)]);
  }
  const common: Array<[string, JsonValue]> = [
    ['input', orderedObject(input)],
    ['input_order', orderedObject(order)],
    ['output', [...def.output]],
    ['output_is_list', def.output.map(() => false)],
    ['output_name', [...def.output]],
  ];
  if (def.v3) {
    return orderedObject([
      ...common,
      ['output_tooltips', def.output.map(() => null)],
      ['name', def.name],
      ['display_name', def.displayName],
      ['description', def.description],
      ['python_module', def.pythonModule],
      ['category', def.category],
      ['output_node', def.outputNode],
      ['deprecated', false],
      ['experimental', false],
      ['api_node', false],
    ]);
  }
  const info: Array<[string, JsonValue]> = [
    ...common,
    ['name', def.name],
    ['display_name', def.displayName],
    ['description', def.description],
    ['python_module', def.pythonModule],
    ['category', def.category],
    ['output_node', def.outputNode],
  ];
  if (def.outputTooltips) info.push(['output_tooltips', [...def.outputTooltips]]);
  return orderedObject(info);
}
