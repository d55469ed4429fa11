import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { DomainError, ErrorCode } from '@app/common';
import { sniffImageType } from './sniff-image-type';

export const INPUT_IMAGE_MAX_BYTES = 20 * 1024 * 1024;
export const INPUT_IMAGE_MAX_SIDE = 4096;
const ACCEPTED = new Set(['image/png', 'image/jpeg', 'image/webp']);

export interface InspectedImage {
  contentType: string;
  width: number;
  height: number;
  sha256: string;
}

/**
 * Proves that bytes are a PNG, JPEG or WebP within the input limits by decoding them whole: a
 * header alone passes truncated files that ComfyUI would then fail on.
 */
export async function inspectInputImage(bytes: Buffer, what = 'image'): Promise<InspectedImage> {
  if (bytes.length > INPUT_IMAGE_MAX_BYTES) {
    throw new DomainError(ErrorCode.ImageTooLarge, `${what} is larger than ${INPUT_IMAGE_MAX_BYTES / 1024 / 1024} MB`, { field: what, bytes: bytes.length });
  }
  const contentType = sniffImageType(bytes);
  if (!contentType || !ACCEPTED.has(contentType)) throw new DomainError(ErrorCode.InvalidImage, `${what} must be a PNG, JPEG or WebP image`, { field: what });
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch {
    throw new DomainError(ErrorCode.InvalidImage, `${what} cannot be decoded`, { field: what });
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width > INPUT_IMAGE_MAX_SIDE || height > INPUT_IMAGE_MAX_SIDE) {
    throw new DomainError(ErrorCode.ImageTooLarge, `${what} is ${width}×${height}; at most ${INPUT_IMAGE_MAX_SIDE} px a side`, { field: what, width, height });
  }
  try {
    // Decoding every pixel is what catches a cut-off file; the size check above bounds its cost.
    await sharp(bytes, { failOn: 'truncated' }).raw().toBuffer();
  } catch {
    throw new DomainError(ErrorCode.InvalidImage, `${what} cannot be decoded (truncated or corrupt)`, { field: what });
  }
  if (!width || !height) throw new DomainError(ErrorCode.InvalidImage, `${what} has no size`, { field: what });
  return { contentType, width, height, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** A mask must cover the image pixel for pixel. */
export function assertMaskMatches(image: { width: number; height: number }, mask: { width: number; height: number }): void {
  if (image.width !== mask.width || image.height !== mask.height) {
    throw new DomainError(ErrorCode.MaskSizeMismatch, `mask is ${mask.width}×${mask.height} but the image is ${image.width}×${image.height}`, {
      image: { width: image.width, height: image.height }, mask: { width: mask.width, height: mask.height },
    });
  }
}
