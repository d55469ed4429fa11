import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import type { GenerationInputs, InputImageRef } from '@app/queue';
import { assertMaskMatches, type InputImageMeta, inspectInputImage, ResultStore } from '@app/storage';
import { AllowedHost, assertWebhookUrlAllowed, type HostResolver, parseAllowedHosts, WEBHOOK_HOST_RESOLVER } from '@app/webhooks';
import type { EditMode } from '@app/workflows';

/** Upload ids: random and unguessable like job ids, with a prefix so the two are never confused. */
export const UPLOAD_ID_PATTERN = /^upl_[0-9a-f]{32}$/;
const DATA_URL = /^data:(image\/(?:png|jpeg|jpg|webp));base64,([A-Za-z0-9+/]*={0,2})$/;

export interface UploadedImage extends InputImageMeta {
  id: string;
}

/** An edit's inputs once checked: what goes into the job data, and the data: URL bytes still to store. */
export interface ResolvedEdit {
  mode: EditMode;
  /** Known unless the image is a URL (the worker fetches it). */
  inputSize?: { width: number; height: number };
  inputs: GenerationInputs;
  /** sha256 of the image (and mask) for the result cache; undefined when one is a URL (not fetched here). */
  inputHashes?: string[];
  /** Stores the data: URL images; called only once every other check has passed. */
  commit(): Promise<void>;
}

/**
 * Input images of edits (img2img, inpainting): uploads, data: URLs and https URLs, checked before a job
 * exists. The bytes go to the result store and only a reference into the job; a URL is judged by the
 * same SSRF rules as webhook URLs and fetched later by the worker.
 */
@Injectable()
export class InputImagesService {
  private readonly allowedHosts: AllowedHost[];

  constructor(
    private readonly env: Env,
    private readonly store: ResultStore,
    @Inject(WEBHOOK_HOST_RESOLVER) private readonly resolveHost: HostResolver,
  ) {
    this.allowedHosts = parseAllowedHosts(env.INPUT_URL_ALLOWED_HOSTS);
  }

  /** POST /uploads: decodes to prove it is an image, stores it for RESULT_TTL_SECONDS, owned by the caller. */
  async upload(bytes: Buffer, owner: string | undefined): Promise<UploadedImage> {
    const inspected = await inspectInputImage(bytes);
    const id = `upl_${randomBytes(16).toString('hex')}`;
    const meta: InputImageMeta = {
      ...(owner ? { owner } : {}),
      content_type: inspected.contentType, width: inspected.width, height: inspected.height,
      bytes: bytes.length, sha256: inspected.sha256, created_at: Date.now(),
    };
    await this.store.putInput(id, { bytes, meta });
    return { id, ...meta };
  }

  async resolve(body: { image?: string; mask?: string }, owner: string | undefined): Promise<ResolvedEdit | undefined> {
    if (body.image === undefined) {
      if (body.mask !== undefined) throw new DomainError(ErrorCode.ValidationFailed, 'mask needs image', [{ field: 'mask', message: 'mask needs image' }]);
      return undefined;
    }
    const pending: Array<() => Promise<void>> = [];
    const image = await this.one(body.image, 'image', owner, pending);
    const mask = body.mask !== undefined ? await this.one(body.mask, 'mask', owner, pending) : undefined;
    if (image.size && mask?.size) assertMaskMatches(image.size, mask.size);
    return {
      mode: mask ? 'inpaint' : 'img2img',
      inputSize: image.size,
      inputs: { image: image.ref, ...(mask ? { mask: mask.ref } : {}), ...(image.size ? {} : { size_from_input: true }) },
      inputHashes: image.sha256 && (!mask || mask.sha256) ? [image.sha256, ...(mask?.sha256 ? [mask.sha256] : [])] : undefined,
      commit: async () => {
        for (const store of pending) await store();
      },
    };
  }

  private async one(value: string, field: 'image' | 'mask', owner: string | undefined, pending: Array<() => Promise<void>>): Promise<{ ref: InputImageRef; size?: { width: number; height: number }; sha256?: string }> {
    if (value.startsWith('data:')) {
      const m = DATA_URL.exec(value);
      if (!m) throw new DomainError(ErrorCode.InvalidImage, `${field} must be a base64 data: URL of a PNG, JPEG or WebP image`, { field });
      const bytes = Buffer.from(m[2], 'base64');
      const inspected = await inspectInputImage(bytes, field);
      const id = `upl_${randomBytes(16).toString('hex')}`;
      pending.push(() => this.store.putInput(id, {
        bytes,
        meta: {
          ...(owner ? { owner } : {}), content_type: inspected.contentType, width: inspected.width, height: inspected.height,
          bytes: bytes.length, sha256: inspected.sha256, created_at: Date.now(),
        },
      }));
      return { ref: { kind: 'stored', id }, size: { width: inspected.width, height: inspected.height }, sha256: inspected.sha256 };
    }
    if (UPLOAD_ID_PATTERN.test(value)) {
      const stored = await this.store.getInput(value);
      // Someone else's upload answers like one that never was.
      if (!stored || (stored.meta.owner ?? undefined) !== (owner ?? undefined)) {
        throw new DomainError(ErrorCode.InvalidImage, `${field}: no upload ${value} (uploads are kept ${this.env.RESULT_TTL_SECONDS} s)`, { field });
      }
      return { ref: { kind: 'stored', id: value }, size: { width: stored.meta.width, height: stored.meta.height }, sha256: stored.meta.sha256 };
    }
    if (/^https?:\/\//i.test(value)) {
      try {
        await assertWebhookUrlAllowed(value, { allowedHosts: this.allowedHosts, resolve: this.resolveHost, httpsOnly: true });
      } catch {
        throw new DomainError(ErrorCode.InvalidImageUrl, `${field} URL must be an https URL of a publicly reachable host`, { field });
      }
      return { ref: { kind: 'url', url: value } };
    }
    throw new DomainError(ErrorCode.InvalidImage, `${field} must be a data: URL, an upload id (upl_…) or an https URL`, { field });
  }
}
