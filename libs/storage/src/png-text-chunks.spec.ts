import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { readPngChunks, stripPngTextChunks } from './png-text-chunks';

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const typeBytes = Buffer.from(type, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([typeBytes, data])) >>> 0);
  return Buffer.concat([len, typeBytes, data, crc]);
}

const tEXt = (key: string, text: string) => chunk('tEXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
const zTXt = (key: string, text: string) => chunk('zTXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0]), deflateSync(text)]));
const iTXt = (key: string, text: string) =>
  chunk('iTXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0]), Buffer.from('en', 'latin1'), Buffer.from([0, 0]), Buffer.from(text, 'utf8')]));

/** Splits a PNG into its signature and whole chunks (byte ranges), for building test files. */
function split(png: Buffer): { sig: Buffer; chunks: Buffer[] } {
  const chunks = readPngChunks(png);
  if (!chunks) throw new Error('not a PNG');
  return { sig: png.subarray(0, 8), chunks: chunks.map((c) => png.subarray(c.offset, c.offset + 12 + c.length)) };
}

const GRAPH = JSON.stringify({ '3': { class_type: 'KSampler', inputs: { seed: 7 } }, '37': { class_type: 'UNETLoader', inputs: { unet_name: 'secret_model.safetensors' } } });

describe('stripPngTextChunks', () => {
  let plain: Buffer;
  let tagged: Buffer;

  beforeAll(async () => {
    const pixels = Buffer.alloc(16 * 16 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 251;
    plain = await sharp(pixels, { raw: { width: 16, height: 16, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
    const { sig, chunks } = split(plain);
    // Text chunks where writers put them: after IHDR (PIL, ComfyUI) and just before IEND.
    tagged = Buffer.concat([
      sig, chunks[0], tEXt('prompt', GRAPH), iTXt('workflow', '{"nodes":[]} ✓'), ...chunks.slice(1, -1), zTXt('parameters', GRAPH), chunks[chunks.length - 1],
    ]);
  });

  it('removes tEXt, iTXt and zTXt and keeps every other byte as it was (no re-encode)', async () => {
    expect(readPngChunks(tagged)?.map((c) => c.type).filter((t) => t.endsWith('Xt'))).toEqual(['tEXt', 'iTXt', 'zTXt']);
    expect((await sharp(tagged).metadata()).comments?.map((c) => c.keyword)).toEqual(expect.arrayContaining(['prompt', 'workflow']));
    const out = stripPngTextChunks(tagged);
    expect(out.equals(plain)).toBe(true);
    expect(readPngChunks(out)?.map((c) => c.type)).toEqual(readPngChunks(plain)?.map((c) => c.type));
    expect(out.includes(Buffer.from('secret_model'))).toBe(false);
    const meta = await sharp(out).metadata();
    expect(meta.comments ?? []).toEqual([]);
    expect(await sharp(out).raw().toBuffer()).toEqual(await sharp(tagged).raw().toBuffer());
  });

  it('returns the same buffer when there is nothing to remove', () => {
    expect(stripPngTextChunks(plain)).toBe(plain);
  });

  it('returns anything that is not a well-formed PNG unchanged', async () => {
    const jpeg = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#f00' } }).jpeg().toBuffer();
    const { sig, chunks } = split(tagged);
    const iend = chunks[chunks.length - 1];
    const overrun = Buffer.from(tagged);
    overrun.writeUInt32BE(0x10000, 8 + 12 + 13);
    const badType = Buffer.from(tagged);
    badType.write('t3Xt', 8 + 12 + 13 + 4, 'latin1');
    const hugeLength = Buffer.from(tagged);
    hugeLength.writeUInt32BE(0x80000000, 8 + 12 + 13);
    const cases: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      'signature only': sig,
      jpeg,
      text: Buffer.from('tEXt prompt {"3": {}}'),
      'cut in the middle of a chunk': tagged.subarray(0, tagged.length - 30),
      'no IEND': tagged.subarray(0, tagged.length - iend.length),
      'bytes after IEND': Buffer.concat([tagged, Buffer.from('trailing')]),
      'IHDR not first': Buffer.concat([sig, tEXt('prompt', GRAPH), ...chunks]),
      'length past the end': overrun,
      'length over 2^31-1': hugeLength,
      'invalid chunk type': badType,
    };
    for (const [name, buf] of Object.entries(cases)) {
      expect([name, stripPngTextChunks(buf)]).toEqual([name, buf]);
      expect(stripPngTextChunks(buf)).toBe(buf);
    }
  });
});
