const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Length, type and CRC around each chunk's data. */
const CHUNK_OVERHEAD = 12;
/** The PNG spec caps a chunk length at 2^31 - 1. */
const MAX_CHUNK_LENGTH = 0x7fffffff;
/** The three textual chunk types of the PNG spec; ComfyUI writes its graph into tEXt ones. */
export const PNG_TEXT_CHUNK_TYPES: ReadonlySet<string> = new Set(['tEXt', 'iTXt', 'zTXt']);

export interface PngChunk {
  type: string;
  /** Offset of the chunk's length field in the file. */
  offset: number;
  /** Length of the chunk's data (the whole chunk is this plus 12 bytes). */
  length: number;
}

function isChunkType(buf: Buffer, at: number): boolean {
  for (let i = at; i < at + 4; i++) {
    const c = buf[i];
    if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) return false;
  }
  return true;
}

/**
 * The chunk list of a well-formed PNG, or undefined when the bytes are not one: no signature, a
 * chunk that overruns the buffer or has an invalid type, IHDR not first, no IEND, or bytes after
 * IEND. CRCs are not checked: kept chunks are copied as they are, so a bad CRC stays the reader's
 * problem exactly as it was.
 */
export function readPngChunks(buf: Buffer): PngChunk[] | undefined {
  if (buf.length < SIGNATURE.length || !buf.subarray(0, SIGNATURE.length).equals(SIGNATURE)) return undefined;
  const chunks: PngChunk[] = [];
  let at = SIGNATURE.length;
  while (at < buf.length) {
    if (buf.length - at < CHUNK_OVERHEAD) return undefined;
    const length = buf.readUInt32BE(at);
    if (length > MAX_CHUNK_LENGTH || length > buf.length - at - CHUNK_OVERHEAD) return undefined;
    if (!isChunkType(buf, at + 4)) return undefined;
    const type = buf.toString('latin1', at + 4, at + 8);
    if (chunks.length === 0 && (type !== 'IHDR' || length !== 13)) return undefined;
    chunks.push({ type, offset: at, length });
    at += CHUNK_OVERHEAD + length;
    if (type === 'IEND') return at === buf.length ? chunks : undefined;
  }
  return undefined;
}

/**
 * Removes every tEXt, iTXt and zTXt chunk from a PNG without decoding it: the other chunks,
 * pixel data included, are copied byte for byte. Anything that is not a well-formed PNG comes back
 * unchanged (the same buffer), and so does a PNG that has no text chunk.
 */
export function stripPngTextChunks(buf: Buffer): Buffer {
  const chunks = readPngChunks(buf);
  if (!chunks || !chunks.some((c) => PNG_TEXT_CHUNK_TYPES.has(c.type))) return buf;
  const parts: Buffer[] = [buf.subarray(0, SIGNATURE.length)];
  for (const c of chunks) {
    if (!PNG_TEXT_CHUNK_TYPES.has(c.type)) parts.push(buf.subarray(c.offset, c.offset + CHUNK_OVERHEAD + c.length));
  }
  return Buffer.concat(parts);
}
