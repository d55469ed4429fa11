import { sniffImageType } from './sniff-image-type';

describe('sniffImageType', () => {
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46]);
  const webp = Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x24, 0, 0, 0]), Buffer.from('WEBPVP8 ')]);

  it.each([
    ['png', png, 'image/png'],
    ['jpeg', jpeg, 'image/jpeg'],
    ['webp', webp, 'image/webp'],
  ])('recognises %s', (_name, bytes, type) => {
    expect(sniffImageType(bytes)).toBe(type);
    expect(sniffImageType(new Uint8Array(bytes))).toBe(type);
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['truncated png', png.subarray(0, 7)],
    ['truncated jpeg', jpeg.subarray(0, 2)],
    ['RIFF that is not WEBP (wav)', Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVEfmt ')])],
    ['RIFF cut before the form type', Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WEB')])],
    ['gif', Buffer.from('GIF89a')],
    ['text', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')],
    ['png magic off by one byte', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0b])],
  ])('returns undefined for %s', (_name, bytes) => {
    expect(sniffImageType(bytes)).toBeUndefined();
  });
});
