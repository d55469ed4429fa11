import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { ComfyUiClient, ComfyUiClientFactory } from '@app/comfyui';
import { Env } from '@app/config';
import { ModelLimits, WorkflowRegistry } from '@app/workflows';

export interface ModelResource {
  id: string;
  display_name: string;
  description: string;
  default: boolean;
  defaults: { width: number; height: number; num_inference_steps: number; guidance_scale: number; negative_prompt: string; num_images: number; output_format: 'png' };
  /** What the model can do: text-to-image, and the modes its workflows add (img2img, inpaint). */
  modes: string[];
  /** Native [width, height] per aspect_ratio. */
  aspect_ratios: Record<string, { width: number; height: number }>;
  limits: ModelLimits;
  required_models: Array<{ folder: string; file: string }>;
  /** Per ComfyUI: true when it has every file, false when some are missing, null when it did not answer. */
  available: Record<string, boolean | null>;
  /** Per ComfyUI: which of required_models it has (folder/file → present), null when it did not answer. */
  files: Record<string, Record<string, boolean> | null>;
}

const CACHE_MS = 30_000;

/** ComfyUI URL → folder → file names; null when that ComfyUI did not answer. */
type FilesByServer = Map<string, Map<string, Set<string>> | null>;

/** The models of workflows/, and whether the GPUs have their files (asked of ComfyUI, cached). */
@Injectable()
export class ModelsService implements OnModuleDestroy {
  private readonly logger = new Logger(ModelsService.name);
  private readonly comfy: ComfyUiClient[];
  private cache?: { at: number; value: Promise<FilesByServer> };

  constructor(private readonly env: Env, private readonly workflows: WorkflowRegistry, comfy: ComfyUiClientFactory) {
    // HTTP only: the API never opens ComfyUI's WebSocket.
    this.comfy = env.COMFYUI_URLS.map((u) => comfy.create(u, { requestTimeoutMs: 1_000 }));
  }

  async list(): Promise<ModelResource[]> {
    const files = await this.modelFiles();
    return this.workflows.list().map(({ manifest: m }) => {
      const p = m.parameters;
      const available: Record<string, boolean | null> = {};
      const present: Record<string, Record<string, boolean> | null> = {};
      for (const [url, folders] of files) {
        available[url] = folders === null ? null : m.required_models.every((r) => folders.get(r.folder)?.has(r.file) ?? false);
        present[url] = folders === null ? null : Object.fromEntries(m.required_models.map((r) => [`${r.folder}/${r.file}`, folders.get(r.folder)?.has(r.file) ?? false]));
      }
      const ratios = Object.entries(this.workflows.aspectRatios(m.id)).map(([r, [width, height]]) => [r, { width, height }]);
      return {
        id: m.id,
        display_name: m.display_name,
        description: m.description,
        default: m.id === this.workflows.defaultId,
        defaults: {
          width: p.width.default ?? 1328,
          height: p.height.default ?? 1328,
          num_inference_steps: p.num_inference_steps.default ?? 1,
          guidance_scale: p.guidance_scale.default ?? 0,
          negative_prompt: p.negative_prompt.default ?? '',
          num_images: p.num_images?.default ?? 1,
          output_format: 'png',
        },
        modes: m.modes ?? ['text-to-image'],
        aspect_ratios: Object.fromEntries(ratios),
        limits: this.workflows.limits(m.id),
        required_models: m.required_models,
        available,
        files: present,
      };
    });
  }

  private modelFiles(): Promise<FilesByServer> {
    if (!this.cache || Date.now() - this.cache.at > CACHE_MS) this.cache = { at: Date.now(), value: this.fetchModelFiles() };
    return this.cache.value;
  }

  private async fetchModelFiles(): Promise<FilesByServer> {
    const folders = [...new Set(this.workflows.list().flatMap((w) => w.manifest.required_models.map((r) => r.folder)))];
    const out: FilesByServer = new Map();
    await Promise.all(
      this.comfy.map(async (c) => {
        try {
          const byFolder = new Map<string, Set<string>>();
          for (const f of folders) byFolder.set(f, new Set(await c.listModels(f)));
          out.set(c.baseUrl, byFolder);
        } catch (e) {
          this.logger.debug(`model files of ${c.baseUrl}: ${(e as Error).message}`);
          out.set(c.baseUrl, null);
        }
      }),
    );
    return out;
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.comfy.map((c) => c.close()));
  }
}
