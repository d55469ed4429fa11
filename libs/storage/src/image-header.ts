import { sniffImageType, type SniffedImageType } from './sniff-image-type';

export interface ImageHeader {
  contentType: SniffedImageType;
  width: number;
  height: number;
}

/** PNG: the IHDR chunk is always first, right after the signature. */
function png(b: Buffer): [number, number] | undefined {
  if (b.length < 24 || b.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return [b.readUInt32BE(16), b.readUInt32BE(20)];
}

/** JPEG: walk the marker segments to the first start-of-frame (SOF0…SOF15 but DHT, JPG, DAC). */
function jpeg(b: Buffer): [number, number] | undefined {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return undefined;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2; // markers without a length
      continue;
    }
    const len = b.readUInt16BE(i + 2);
    if (len < 2) return undefined;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return [b.readUInt16BE(i + 7), b.readUInt16BE(i + 5)];
    }
    if (marker === 0xda || marker === 0xd9) return undefined; // scan data before any frame header
    i += 2 + len;
  }
  return undefined;
}

/** WebP: lossy (VP8), lossless (VP8L) or extended (VP8X) first chunk. */
function webp(b: Buffer): [number, number] | undefined {
  if (b.length < 30) return undefined;
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8 ') {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return undefined;
    return [b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff];
  }
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) return undefined;
    const bits = b.readUInt32LE(21);
    return [(bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1];
  }
  if (chunk === 'VP8X') return [b.readUIntLE(24, 3) + 1, b.readUIntLE(27, 3) + 1];
  return undefined;
}

/**
 * Type and pixel size of an encoded image from its first bytes, without decoding it: the worker
 * learns an output's dimensions for free instead of handing megabytes to a decoder per image.
 * Undefined for anything that is not a well-formed PNG, JPEG or WebP header.
 */
export function readImageHeader(bytes: Buffer): ImageHeader | undefined {
  const contentType = sniffImageType(bytes);
  if (!contentType) return undefined;
  const size = contentType === 'image/png' ? png(bytes) : contentType === 'image/jpeg' ? jpeg(bytes) : webp(bytes);
  if (!size || size[0] < 1 || size[1] < 1) return undefined;
  return { contentType, width: size[0], height: size[1] };
}
