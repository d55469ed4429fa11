const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PNG_IEND = Buffer.from([0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);

/**
 * Why these bytes are not a complete image, or undefined when they look whole. Checks the
 * signature and the format's own end marker / length field, so a body cut short at a chunk
 * boundary (matching Content-Length or none at all) is still caught.
 */
export function imageProblem(buf: Buffer): string | undefined {
  if (buf.length === 0) return 'empty body';
  if (buf.length >= 8 && buf.subarray(0, 8).equals(PNG_SIGNATURE)) {
    return buf.length >= 20 && buf.subarray(buf.length - 8).equals(PNG_IEND) ? undefined : 'PNG without IEND chunk (truncated)';
  }
  if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) {
    return buf[buf.length - 2] === 0xff && buf[buf.length - 1] === 0xd9 ? undefined : 'JPEG without EOI marker (truncated)';
  }
  if (buf.length >= 12 && buf.toString('latin1', 0, 4) === 'RIFF' && buf.toString('latin1', 8, 12) === 'WEBP') {
    return buf.readUInt32LE(4) + 8 === buf.length ? undefined : 'WebP shorter than its RIFF size (truncated)';
  }
  if (buf.length >= 6 && (buf.toString('latin1', 0, 6) === 'GIF87a' || buf.toString('latin1', 0, 6) === 'GIF89a')) {
    return buf[buf.length - 1] === 0x3b ? undefined : 'GIF without trailer (truncated)';
  }
  return 'not a PNG, JPEG, WebP or GIF';
}
