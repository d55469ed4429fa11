import { randomBytes } from 'node:crypto';
import { Base64, DataUrl, jsonWithDataUrls, writeBase64 } from './json-with-data-urls';

const asString = (u: DataUrl) => `data:${u.contentType};base64,${u.bytes.toString('base64')}`;

/** The value with each DataUrl replaced by its string: what a plain JSON.stringify would have been given. */
function plain(v: unknown): unknown {
  if (v instanceof DataUrl) return asString(v);
  if (v instanceof Base64) return v.bytes.toString('base64');
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

describe('jsonWithDataUrls', () => {
  it('gives the bytes JSON.stringify gives, a URL repeated and several images included', () => {
    const a = new DataUrl('image/png', randomBytes(100_003));
    const b = new DataUrl('image/webp', randomBytes(7));
    const value = {
      image_url: a,
      images: [{ image_url: a, content_type: 'image/png', bytes: 100_003 }, { image_url: b, content_type: 'image/webp' }],
      model: 'Qwen "Image" – ünïcode ✓', seed: 42, timings: null, cached: false,
    };
    const out = jsonWithDataUrls(value);
    expect(out.equals(Buffer.from(JSON.stringify(plain(value)), 'utf8'))).toBe(true);
    const parsed = JSON.parse(out.toString('utf8')) as { image_url: string; images: { image_url: string }[] };
    expect(Buffer.from(parsed.images[1].image_url.split(',')[1], 'base64').equals(b.bytes)).toBe(true);
    expect(parsed.image_url).toBe(parsed.images[0].image_url);
  });

  it('writes a Base64 as the plain base64 string (b64_json), beside data URLs', () => {
    const img = new Base64(randomBytes(70_001));
    const value = { created: 1, data: [{ b64_json: img, revised_prompt: null }, { url: 'https://x.test/a?b=1&c="2"', revised_prompt: null }], u: new DataUrl('image/png', randomBytes(5)) };
    const out = jsonWithDataUrls(value);
    expect(out.equals(Buffer.from(JSON.stringify(plain(value)), 'utf8'))).toBe(true);
    expect(Buffer.from((JSON.parse(out.toString('utf8')) as { data: { b64_json: string }[] }).data[0].b64_json, 'base64').equals(img.bytes)).toBe(true);
  });

  it('escapes a content type like any string, keeps empty images and plain values', () => {
    const odd = new DataUrl('image/x"y\\z', Buffer.alloc(0));
    expect(jsonWithDataUrls({ u: odd, n: [1, 'x'] }).toString('utf8')).toBe(JSON.stringify({ u: asString(odd), n: [1, 'x'] }));
    expect(jsonWithDataUrls({ a: 1, s: 'data:image/png;base64,AA==' }).toString('utf8')).toBe('{"a":1,"s":"data:image/png;base64,AA=="}');
  });

  it('writes base64 slice by slice exactly as one whole encoding, at every slice boundary', () => {
    const slice = 3 * 8192;
    for (const n of [0, 1, 2, 3, 4, slice - 1, slice, slice + 1, slice + 2, 2 * slice + 2, 5 * slice + 1]) {
      const bytes = randomBytes(n);
      const whole = bytes.toString('base64');
      const out = Buffer.alloc(whole.length + 3, '#');
      expect(writeBase64(bytes, out, 2)).toBe(2 + whole.length);
      expect(out.toString('latin1')).toBe(`##${whole}#`);
    }
  });
});
