import fc from 'fast-check';
import { imageProblem } from './image-bytes';
import { decodeBinaryFrame, decodeTextFrame } from './ws-frames';

function frame(type: number, second: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(type, 0);
  head.writeUInt32BE(second, 4);
  return Buffer.concat([head, rest]);
}

describe('ComfyUI WebSocket frames', () => {
  it('reads text frames only when they are {type, data} objects', () => {
    expect(decodeTextFrame('{"type":"progress","data":{"value":1}}')).toEqual({ kind: 'event', type: 'progress', data: { value: 1 } });
    expect(decodeTextFrame('{"type":"status"}')).toEqual({ kind: 'event', type: 'status', data: {} });
    for (const bad of ['', 'nope', '[]', 'null', '{"type":3}', '{"data":{}}']) expect(decodeTextFrame(bad).kind).toBe('invalid');
  });

  it('reads the image format of type 1 at byte 4, not byte 8', () => {
    expect(decodeBinaryFrame(frame(1, 2, Buffer.from([0x89, 0x50])))).toEqual({ kind: 'preview', format: 'png', bytes: 2 });
    expect(decodeBinaryFrame(frame(1, 1, Buffer.from([0xff])))).toMatchObject({ kind: 'preview', format: 'jpeg', bytes: 1 });
  });

  it('reads prompt_id from type-4 metadata and the node id of type-3 text', () => {
    const meta = Buffer.from(JSON.stringify({ prompt_id: 'p1', node_id: '3', image_type: 'image/png' }));
    expect(decodeBinaryFrame(frame(4, meta.length, Buffer.concat([meta, Buffer.from([1, 2, 3])])))).toEqual({
      kind: 'preview', format: 'png', bytes: 3, promptId: 'p1', nodeId: '3',
    });
    expect(decodeBinaryFrame(frame(3, 2, Buffer.from('12hello')))).toEqual({ kind: 'text', nodeId: '12', text: 'hello' });
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 6 }), (bytes, type) => {
        const b = Buffer.from(bytes);
        if (b.length >= 4) b.writeUInt32BE(type, 0);
        expect(['preview', 'text', 'invalid']).toContain(decodeBinaryFrame(b).kind);
        expect(['event', 'invalid']).toContain(decodeTextFrame(b.toString('utf8')).kind);
      }),
    );
  });
});

describe('imageProblem', () => {
  const png = Buffer.from(
    '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005000201a3e1c4e40000000049454e44ae426082',
    'hex',
  );

  it('accepts whole PNG, JPEG and WebP bodies', () => {
    expect(imageProblem(png)).toBeUndefined();
    expect(imageProblem(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0, 0xff, 0xd9]))).toBeUndefined();
    const webp = Buffer.concat([Buffer.from('RIFF'), Buffer.from([4, 0, 0, 0]), Buffer.from('WEBP')]);
    expect(imageProblem(webp)).toBeUndefined();
  });

  it('rejects every cut of a PNG, and bodies that are no image', () => {
    for (let n = 0; n < png.length; n++) expect(imageProblem(png.subarray(0, n))).toBeDefined();
    expect(imageProblem(Buffer.from('<html></html>'))).toMatch(/not a PNG/);
  });
});
