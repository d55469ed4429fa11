/**
 * Makes the simulator's images: real PNGs of the requested size, deterministic from the sampling
 * inputs (seed, prompt text, ...), with the prompt text drawn on them when fonts are available,
 * and ComfyUI's PNG text metadata (`prompt`, `extra_pnginfo` keys). Kept fast: smooth posterized
 * colour fields compress quickly at zlib level 1 (a 1328x1328 image takes well under 100 ms).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';

export type ImageRecipe =
  | { kind: 'sample'; key: string; caption: string }
  | { kind: 'flat'; rgb: [number, number, number] }
  | { kind: 'solid'; color: number }
  | { kind: 'noise'; base: ImageRecipe; seed: string; strength: number }
  | { kind: 'blur'; base: ImageRecipe; sigma: number }
  /** An uploaded input file (LoadImage), scaled to the size asked for (ImageScale only changes the size). */
  | { kind: 'file'; path: string }
  | {
    kind: 'composite'; destination: ImageRecipe; source: ImageRecipe; sourceWidth: number; sourceHeight: number;
    x: number; y: number; mask?: MaskRecipe;
  }
  /** A sampled latent that started from an encoded picture: the picture shows through by 1 - denoise, everywhere or outside the mask. */
  | { kind: 'edit'; source: ImageRecipe; sample: ImageRecipe; denoise: number; mask?: MaskRecipe };

export type MaskRecipe =
  | { kind: 'const'; value: number }
  | { kind: 'channel'; path: string; channel: 'alpha' | 'red' | 'green' | 'blue' };

/** Packed RGB, 3 bytes per pixel. */
export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
}

let fontCheck: boolean | undefined;

/** True when fontconfig lists at least one font (else captions are skipped). */
export function fontsAvailable(): boolean {
  if (fontCheck === undefined) {
    try {
      fontCheck = execFileSync('fc-list', [':', 'family'], { encoding: 'utf8', timeout: 5000 }).trim().length > 0;
    } catch {
      fontCheck = false;
    }
  }
  return fontCheck;
}

function hashBytes(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** xorshift32 stream seeded from a string: deterministic noise. */
function prng(seedText: string): () => number {
  let s = hashBytes(seedText).readUInt32LE(0) || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

/** Posterizing clamp table: index = value + 512. */
const CLAMP = (() => {
  const t = new Uint8Array(1536);
  for (let v = 0; v < t.length; v++) {
    const x = v - 512;
    // Steps of 4: smooth fields with long runs compress fast.
    t[v] = (x < 0 ? 0 : x > 255 ? 255 : x) & 0xfc;
  }
  return t;
})();

/** A smooth colour field: per-column plus per-row terms (separable), so one add and one lookup per byte. */
function samplePattern(key: string, width: number, height: number, index: number): Buffer {
  const h = hashBytes(`${key}#${index}`);
  const byte = (i: number): number => h[i % h.length];
  const ax = new Int16Array(width * 3);
  const by = new Int16Array(height * 3);
  for (let c = 0; c < 3; c++) {
    const base = 40 + byte(c) * 0.55;
    const gx = (byte(3 + c) - 128) * 0.5;
    const gy = (byte(6 + c) - 128) * 0.5;
    const fx = 1 + (byte(9 + c) % 7);
    const fy = 1 + (byte(12 + c) % 7);
    const px = byte(15 + c) / 40;
    const py = byte(18 + c) / 40;
    const amp = 20 + (byte(21 + c) % 40);
    for (let x = 0; x < width; x++) {
      const u = width > 1 ? x / (width - 1) : 0;
      ax[x * 3 + c] = Math.round(base + gx * u + amp * Math.sin(2 * Math.PI * fx * u + px));
    }
    for (let y = 0; y < height; y++) {
      const v = height > 1 ? y / (height - 1) : 0;
      by[y * 3 + c] = 512 + Math.round(gy * v + amp * Math.cos(2 * Math.PI * fy * v + py));
    }
  }
  const out = Buffer.allocUnsafe(width * height * 3);
  const rowLen = width * 3;
  let i = 0;
  for (let y = 0; y < height; y++) {
    const r0 = by[y * 3];
    const g0 = by[y * 3 + 1];
    const b0 = by[y * 3 + 2];
    for (let x = 0; x < rowLen; x += 3) {
      out[i++] = CLAMP[ax[x] + r0];
      out[i++] = CLAMP[ax[x + 1] + g0];
      out[i++] = CLAMP[ax[x + 2] + b0];
    }
  }
  return out;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c)
    // Characters XML 1.0 forbids.
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, ' ');
}

function wrap(text: string, perLine: number, maxLines: number): string[] {
  const lines: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/\s+/).filter(Boolean)) {
      let w = word;
      while (w.length > perLine) {
        if (line) { lines.push(line); line = ''; }
        lines.push(w.slice(0, perLine));
        w = w.slice(perLine);
      }
      if (!line) line = w;
      else if (line.length + 1 + w.length <= perLine) line += ' ' + w;
      else { lines.push(line); line = w; }
    }
    if (line) lines.push(line);
  }
  if (lines.length > maxLines) {
    const kept = lines.slice(0, maxLines);
    kept[maxLines - 1] = kept[maxLines - 1].slice(0, Math.max(0, perLine - 1)) + '…';
    return kept;
  }
  return lines;
}

/** Draws the caption in a translucent band at the bottom of the image (in place). */
async function drawCaption(img: RawImage, caption: string): Promise<void> {
  const fontSize = Math.max(8, Math.min(40, Math.round(img.width / 34)));
  if (img.height < fontSize * 3 || img.width < fontSize * 4) return;
  const pad = Math.round(fontSize * 0.5);
  const perLine = Math.max(4, Math.floor((img.width - 2 * pad) / (fontSize * 0.6)));
  const maxLines = Math.max(1, Math.min(5, Math.floor((img.height * 0.4) / (fontSize * 1.25))));
  const lines = wrap(caption, perLine, maxLines);
  if (lines.length === 0) return;
  const boxH = Math.min(img.height, Math.round(lines.length * fontSize * 1.25 + pad * 2));
  const tspans = lines
    .map((l, k) => `<text x="${pad}" y="${Math.round(pad + fontSize * (k + 1) * 1.25 - fontSize * 0.25)}">${escapeXml(l)}</text>`)
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${img.width}" height="${boxH}">`
    + `<g font-family="DejaVu Sans, sans-serif" font-size="${fontSize}" fill="#fff">${tspans}</g></svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const top = img.height - info.height;
  // Darken the band to half brightness, then blend the (white) glyph pixels in.
  const bandStart = top * img.width * 3;
  for (let i = bandStart; i < img.data.length; i++) img.data[i] >>= 1;
  const w = Math.min(info.width, img.width);
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < w; x++) {
      const s = (y * info.width + x) * 4;
      const a = data[s + 3];
      if (a === 0) continue;
      const d = ((top + y) * img.width + x) * 3;
      for (let c = 0; c < 3; c++) img.data[d + c] = (data[s + c] * a + img.data[d + c] * (255 - a) + 127) / 255;
    }
  }
}

export class Renderer {
  constructor(private readonly captions: boolean) {}

  /** Loads fonts once in the background so the first real caption is not slow. */
  warmUp(): void {
    if (!this.captions) return;
    const img = { data: Buffer.alloc(64 * 64 * 3), width: 64, height: 64 };
    drawCaption(img, 'warm up').catch(() => undefined);
  }

  /** Pixels of image `index` of a batch. */
  async render(recipe: ImageRecipe, width: number, height: number, index: number, withCaption = true): Promise<RawImage> {
    switch (recipe.kind) {
      case 'sample': {
        const img = { data: samplePattern(recipe.key, width, height, index), width, height };
        if (withCaption && this.captions && recipe.caption) await drawCaption(img, recipe.caption);
        return img;
      }
      case 'flat':
      case 'solid': {
        const [r, g, b] = recipe.kind === 'flat'
          ? recipe.rgb
          : [(recipe.color >> 16) & 0xff, (recipe.color >> 8) & 0xff, recipe.color & 0xff];
        const data = Buffer.allocUnsafe(width * height * 3);
        for (let i = 0; i < data.length; i += 3) {
          data[i] = r;
          data[i + 1] = g;
          data[i + 2] = b;
        }
        return { data, width, height };
      }
      case 'noise': {
        const base = await this.render(recipe.base, width, height, index, withCaption);
        const rnd = prng(`${recipe.seed}#${index}`);
        const k = recipe.strength * 255;
        const data = Buffer.allocUnsafe(base.data.length);
        for (let i = 0; i < data.length; i++) {
          // Sum of three uniforms: a cheap bell curve with unit variance.
          const n = (rnd() + rnd() + rnd() - 1.5) * 2;
          const v = base.data[i] + k * n;
          data[i] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
        return { data, width, height };
      }
      case 'file': {
        const data = await sharp(recipe.path).resize(width, height, { fit: 'fill' }).removeAlpha().toColourspace('srgb').raw().toBuffer();
        return { data, width, height };
      }
      case 'composite': {
        const dest = await this.render(recipe.destination, width, height, index, withCaption);
        const src = await this.render(recipe.source, recipe.sourceWidth, recipe.sourceHeight, index, withCaption);
        const mask = recipe.mask ? await this.renderMask(recipe.mask, recipe.sourceWidth, recipe.sourceHeight) : undefined;
        const data = Buffer.from(dest.data);
        for (let y = 0; y < src.height; y++) {
          const dy = y + recipe.y;
          if (dy >= height) break;
          for (let x = 0; x < src.width; x++) {
            const dx = x + recipe.x;
            if (dx >= width) break;
            const m = mask ? mask[y * src.width + x] / 255 : 1;
            if (m === 0) continue;
            const s = (y * src.width + x) * 3;
            const d = (dy * width + dx) * 3;
            for (let c = 0; c < 3; c++) data[d + c] = Math.round(src.data[s + c] * m + data[d + c] * (1 - m));
          }
        }
        return { data, width, height };
      }
      case 'edit': {
        const source = await this.render(recipe.source, width, height, index, withCaption);
        const sample = await this.render(recipe.sample, width, height, index, withCaption);
        const mask = recipe.mask ? await this.renderMask(recipe.mask, width, height) : undefined;
        const d = Math.max(0, Math.min(1, recipe.denoise));
        const data = Buffer.allocUnsafe(source.data.length);
        for (let p = 0; p < width * height; p++) {
          const k = d * (mask ? mask[p] / 255 : 1);
          for (let c = 0; c < 3; c++) {
            const i = p * 3 + c;
            data[i] = k === 0 ? source.data[i] : Math.round(source.data[i] * (1 - k) + sample.data[i] * k);
          }
        }
        return { data, width, height };
      }
      case 'blur': {
        const base = await this.render(recipe.base, width, height, index, withCaption);
        const sigma = Math.max(0.3, Math.min(1000, recipe.sigma));
        const data = await sharp(base.data, { raw: { width, height, channels: 3 } }).blur(sigma).raw().toBuffer();
        return { data, width, height };
      }
    }
  }

  /** One byte per pixel, 0..255 = mask 0..1, at the size asked for. */
  async renderMask(recipe: MaskRecipe, width: number, height: number): Promise<Buffer> {
    if (recipe.kind === 'const') return Buffer.alloc(width * height, Math.round(Math.max(0, Math.min(1, recipe.value)) * 255));
    const img = sharp(recipe.path).resize(width, height, { fit: 'fill', kernel: 'nearest' });
    const index = { red: 0, green: 1, blue: 2, alpha: 3 }[recipe.channel];
    const { data, info } = await img.ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const out = Buffer.allocUnsafe(width * height);
    for (let i = 0; i < out.length; i++) out[i] = data[i * info.channels + index];
    // LoadImageMask inverts alpha (transparent = masked); colour channels are used as they are.
    if (recipe.channel === 'alpha') for (let i = 0; i < out.length; i++) out[i] = 255 - out[i];
    return out;
  }

  /** PNG bytes with `tEXt` chunks after IHDR, as PIL writes ComfyUI's metadata. */
  async encodePng(img: RawImage, text: Array<[string, string]>, compressionLevel = 1): Promise<Buffer> {
    const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
      .png({ compressionLevel, adaptiveFiltering: false })
      .toBuffer();
    const chunks: Buffer[] = [];
    for (const [key, value] of text) {
      if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(key)) continue;
      const body = Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(value, 'latin1')]);
      const type = Buffer.from('tEXt', 'ascii');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(body.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(Buffer.concat([type, body])) >>> 0);
      chunks.push(len, type, body, crc);
    }
    if (chunks.length === 0) return png;
    const ihdrEnd = 8 + 4 + 4 + 13 + 4;
    return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
  }

  /** A latent-sized JPEG preview for sampler step `fraction` (0..1]. */
  async preview(recipe: ImageRecipe, width: number, height: number, fraction: number): Promise<Buffer> {
    const pw = Math.max(1, Math.floor(width / 8));
    const ph = Math.max(1, Math.floor(height / 8));
    const img = await this.render(recipe, pw, ph, 0, false);
    const k = Math.max(0, Math.min(1, fraction));
    for (let i = 0; i < img.data.length; i++) img.data[i] = img.data[i] * k + 128 * (1 - k);
    return sharp(img.data, { raw: { width: pw, height: ph, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  }
}
