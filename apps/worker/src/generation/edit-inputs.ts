import { Injectable } from '@nestjs/common';
import axios from 'axios';
import { type ComfyGraph, ComfyUiClient, PromptValidationError, type SubmitResult } from '@app/comfyui';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import type { GenerationJob, GenerationParams, InputImageRef } from '@app/queue';
import { assertMaskMatches, INPUT_IMAGE_MAX_BYTES, inspectInputImage, ResultStore } from '@app/storage';
import { createGuardedAgents, type GuardedAgents, parseAllowedHosts } from '@app/webhooks';
import { type GraphInputs, WorkflowRegistry } from '@app/workflows';

/** ComfyUI's input folder gets one subfolder for us; files are named after the job, so a retry overwrites. */
export const COMFY_INPUT_SUBFOLDER = 'fictures';
const FETCH_TIMEOUT_MS = 15_000;

interface InputBytes {
  bytes: Buffer;
  contentType: string;
  width: number;
  height: number;
}

/** An edit's inputs, fetched once per attempt and uploaded to one ComfyUI. */
export interface PreparedInputs {
  params: GenerationParams;
  names: GraphInputs;
  /** Uploads again (ComfyUI lost its input folder, e.g. restarted on a fresh disk). */
  reupload(): Promise<void>;
}

/**
 * The img2img/inpaint step of a job: reads the input image (result store or an https URL through the
 * SSRF guard), uploads it to ComfyUI under a per-job name, and submits so that a ComfyUI that lost the
 * file between upload and submit gets it again.
 */
@Injectable()
export class EditInputs {
  private readonly agents: GuardedAgents;

  constructor(
    private readonly env: Env,
    private readonly store: ResultStore,
    private readonly workflows: WorkflowRegistry,
  ) {
    this.agents = createGuardedAgents({ allowedHosts: parseAllowedHosts(env.INPUT_URL_ALLOWED_HOSTS) });
  }

  async prepare(job: GenerationJob, comfy: ComfyUiClient, signal: AbortSignal): Promise<PreparedInputs | undefined> {
    const inputs = job.data.inputs;
    if (!inputs || !job.data.params.mode) return undefined;
    const jobId = job.id as string;
    const image = await this.read(inputs.image, job, 'image', signal);
    const mask = inputs.mask ? await this.read(inputs.mask, job, 'mask', signal) : undefined;
    if (mask) assertMaskMatches(image, mask);
    let params = job.data.params;
    if (inputs.size_from_input) params = { ...params, ...this.workflows.sizeFromInput(params.model, image.width, image.height) };
    const names: GraphInputs = { image: '' };
    const upload = async () => {
      names.image = await comfy.uploadImage(image.bytes, {
        filename: `${jobId}-image${extensionOf(image.contentType)}`, contentType: image.contentType,
        subfolder: COMFY_INPUT_SUBFOLDER, overwrite: true, signal,
      });
      if (mask) {
        names.mask = await comfy.uploadImage(mask.bytes, {
          filename: `${jobId}-mask${extensionOf(mask.contentType)}`, contentType: mask.contentType,
          subfolder: COMFY_INPUT_SUBFOLDER, overwrite: true, signal,
        });
      }
    };
    await upload();
    return { params, names, reupload: upload };
  }

  /** Submits; a LoadImage whose file is gone ("Invalid image file") gets its inputs uploaded again, once. */
  async submit(comfy: ComfyUiClient, graph: ComfyGraph, opts: { promptId: string; signal: AbortSignal }, prepared?: PreparedInputs): Promise<SubmitResult> {
    try {
      return await comfy.submit(graph, opts);
    } catch (err) {
      if (!prepared || !(err instanceof PromptValidationError) || !isMissingInput(err)) throw err;
      await prepared.reupload();
      return comfy.submit(graph, opts);
    }
  }

  private async read(ref: InputImageRef, job: GenerationJob, what: 'image' | 'mask', signal: AbortSignal): Promise<InputBytes> {
    if (ref.kind === 'stored') {
      const stored = await this.store.getInput(ref.id);
      if (!stored) throw new DomainError(ErrorCode.InvalidImage, `The ${what} upload ${ref.id} has expired`);
      return { bytes: stored.bytes, contentType: stored.meta.content_type, width: stored.meta.width, height: stored.meta.height };
    }
    const bytes = await this.fetch(ref.url, what, signal);
    const inspected = await inspectInputImage(bytes, what);
    return { bytes, contentType: inspected.contentType, width: inspected.width, height: inspected.height };
  }

  private async fetch(url: string, what: string, signal: AbortSignal): Promise<Buffer> {
    const refused = () => new DomainError(ErrorCode.InvalidImageUrl, `The ${what} URL could not be fetched`);
    try {
      const res = await axios.get<ArrayBuffer>(url, {
        responseType: 'arraybuffer',
        httpAgent: this.agents.httpAgent,
        httpsAgent: this.agents.httpsAgent,
        // A redirect could lead anywhere; the submission check judged only this URL.
        maxRedirects: 0,
        proxy: false,
        timeout: FETCH_TIMEOUT_MS,
        maxContentLength: INPUT_IMAGE_MAX_BYTES,
        signal,
        validateStatus: (s) => s === 200,
      });
      return Buffer.from(res.data);
    } catch (err) {
      if (signal.aborted) throw err;
      if (axios.isAxiosError(err) && err.message.includes('maxContentLength')) {
        throw new DomainError(ErrorCode.ImageTooLarge, `The ${what} at its URL is larger than ${INPUT_IMAGE_MAX_BYTES / 1024 / 1024} MB`);
      }
      throw refused();
    }
  }
}

function isMissingInput(err: PromptValidationError): boolean {
  return Object.values(err.nodeErrors).some((n) => n.errors.some((e) => e.type === 'custom_validation_failed' && /Invalid image file/.test(e.details ?? '')));
}

function extensionOf(contentType: string): string {
  return contentType === 'image/jpeg' ? '.jpg' : contentType === 'image/webp' ? '.webp' : '.png';
}
