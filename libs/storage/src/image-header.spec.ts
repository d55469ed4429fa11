import sharp from 'sharp';
import { readImageHeader } from './image-header';

describe('readImageHeader', () => {
  const sizes: Array<[number, number]> = [[1, 1], [64, 48], [1328, 1328], [1664, 928], [257, 3001]];

  it.each(['png', 'jpeg', 'webp'] as const)('reads %s dimensions as a decoder would, without decoding', async (format) => {
    for (const [w, h] of sizes) {
      for (const lossless of format === 'webp' ? [false, true] : [false]) {
        let img = sharp({ create: { width: w, height: h, channels: 3, background: '#123456' } });
        img = format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg({ quality: 80, progressive: w % 2 === 1 }) : img.webp({ lossless });
        const bytes = await img.toBuffer();
        const meta = await sharp(bytes).metadata();
        expect(readImageHeader(bytes)).toEqual({ contentType: `image/${format}`, width: meta.width, height: meta.height });
      }
    }
  });

  it('reads an extended WebP (alpha) header', async () => {
    const bytes = await sharp({ create: { width: 300, height: 200, channels: 4, background: { r: 1, g: 2, b: 3, alpha: 0.5 } } }).webp().toBuffer();
    expect(readImageHeader(bytes)).toEqual({ contentType: 'image/webp', width: 300, height: 200 });
  });

  it('a JPEG with EXIF/APP segments before the frame header still reads', async () => {
    const bytes = await sharp({ create: { width: 90, height: 70, channels: 3, background: '#fff' } }).jpeg().withMetadata({ exif: { IFD0: { Artist: 'x'.repeat(300) } } }).toBuffer();
    expect(readImageHeader(bytes)).toEqual({ contentType: 'image/jpeg', width: 90, height: 70 });
  });

  it('is undefined for anything else or a truncated header', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } }).png().toBuffer();
    expect(readImageHeader(Buffer.from('GIF89a......'))).toBeUndefined();
    expect(readImageHeader(png.subarray(0, 20))).toBeUndefined();
    expect(readImageHeader(Buffer.alloc(0))).toBeUndefined();
    const jpegStart = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x02, 0xff, 0xda, 0, 0, 0, 0, 0]);
    expect(readImageHeader(jpegStart)).toBeUndefined();
  });
});
