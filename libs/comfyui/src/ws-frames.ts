import { isObject, parseJson, type Json } from './history';

/**
 * Decoding of ComfyUI WebSocket frames (protocol reference §5.4–5.5). Never throws: anything that
 * does not have the documented shape comes back as `{ kind: 'invalid' }` for the caller to log.
 */
export type ComfyFrame =
  | { kind: 'event'; type: string; data: Json }
  | { kind: 'preview'; format: 'jpeg' | 'png' | 'unknown'; bytes: number; promptId?: string; nodeId?: string }
  | { kind: 'text'; nodeId: string; text: string }
  | { kind: 'invalid'; reason: string };

export const BINARY_PREVIEW_IMAGE = 1;
export const BINARY_TEXT = 3;
export const BINARY_PREVIEW_WITH_METADATA = 4;

export function decodeTextFrame(text: string): ComfyFrame {
  const msg = parseJson(text);
  if (!isObject(msg) || typeof msg.type !== 'string') return { kind: 'invalid', reason: 'text frame is not a {type, data} JSON object' };
  return { kind: 'event', type: msg.type, data: isObject(msg.data) ? msg.data : {} };
}

/** `[u32 BE event type][payload]`; the image format word of type 1 sits at byte 4, the image at 8. */
export function decodeBinaryFrame(buf: Buffer): ComfyFrame {
  if (buf.length < 4) return { kind: 'invalid', reason: `binary frame of ${buf.length} bytes` };
  const type = buf.readUInt32BE(0);
  switch (type) {
    case BINARY_PREVIEW_IMAGE: {
      if (buf.length < 8) return { kind: 'invalid', reason: 'preview frame without format' };
      const f = buf.readUInt32BE(4);
      return { kind: 'preview', format: f === 1 ? 'jpeg' : f === 2 ? 'png' : 'unknown', bytes: buf.length - 8 };
    }
    case BINARY_TEXT: {
      if (buf.length < 8) return { kind: 'invalid', reason: 'text frame without node id length' };
      const n = buf.readUInt32BE(4);
      if (n > buf.length - 8) return { kind: 'invalid', reason: 'text frame node id overruns the frame' };
      return { kind: 'text', nodeId: buf.toString('utf8', 8, 8 + n), text: buf.toString('utf8', 8 + n) };
    }
    case BINARY_PREVIEW_WITH_METADATA: {
      if (buf.length < 8) return { kind: 'invalid', reason: 'metadata preview without header length' };
      const n = buf.readUInt32BE(4);
      if (n > buf.length - 8) return { kind: 'invalid', reason: 'metadata preview header overruns the frame' };
      const meta = parseJson(buf.toString('utf8', 8, 8 + n));
      if (!isObject(meta)) return { kind: 'invalid', reason: 'metadata preview header is not JSON' };
      const imageType = typeof meta.image_type === 'string' ? meta.image_type : '';
      return {
        kind: 'preview',
        format: imageType === 'image/jpeg' ? 'jpeg' : imageType === 'image/png' ? 'png' : 'unknown',
        bytes: buf.length - 8 - n,
        promptId: typeof meta.prompt_id === 'string' ? meta.prompt_id : undefined,
        nodeId: typeof meta.node_id === 'string' ? meta.node_id : undefined,
      };
    }
    default:
      return { kind: 'invalid', reason: `unknown binary event type ${type}` };
  }
}
