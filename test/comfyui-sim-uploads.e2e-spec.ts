/**
 * The simulator's edit surface against Appendix B of the protocol reference: uploads, LoadImage
 * validation, the model-free inpaint chain, and /object_info entries equal to the real node specs.
 */
import axios from 'axios';
import sharp from 'sharp';
import { ComfyUiHttpClient, PromptValidationError } from '@app/comfyui';
import { SimulatorHandle, startSimulator } from '../apps/comfyui-sim/src/simulator';

/** GET /object_info of a real ComfyUI 0.3.64 for these nodes (input, output, input_order), from the protocol reference. */
const SPECS: Record<string, Record<string, unknown>> = {"LoadImage": {"input": {"required": {"image": [[], {"image_upload": true}]}}, "output": ["IMAGE", "MASK"], "input_order": {"required": ["image"]}}, "LoadImageMask": {"input": {"required": {"image": [[], {"image_upload": true}], "channel": [["alpha", "red", "green", "blue"]]}}, "output": ["MASK"], "input_order": {"required": ["image", "channel"]}}, "ImageScale": {"input": {"required": {"image": ["IMAGE"], "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]], "width": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}], "height": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}], "crop": [["disabled", "center"]]}}, "output": ["IMAGE"], "input_order": {"required": ["image", "upscale_method", "width", "height", "crop"]}}, "ImageCompositeMasked": {"input": {"required": {"destination": ["IMAGE"], "source": ["IMAGE"], "x": ["INT", {"default": 0, "min": 0, "max": 16384, "step": 1}], "y": ["INT", {"default": 0, "min": 0, "max": 16384, "step": 1}], "resize_source": ["BOOLEAN", {"default": false}]}, "optional": {"mask": ["MASK"]}}, "output": ["IMAGE"], "input_order": {"required": ["destination", "source", "x", "y", "resize_source"], "optional": ["mask"]}}, "VAEEncode": {"input": {"required": {"pixels": ["IMAGE"], "vae": ["VAE"]}}, "output": ["LATENT"], "input_order": {"required": ["pixels", "vae"]}}, "SetLatentNoiseMask": {"input": {"required": {"samples": ["LATENT"], "mask": ["MASK"]}}, "output": ["LATENT"], "input_order": {"required": ["samples", "mask"]}}};

function form(fields: Record<string, string>, file?: { name: string; bytes: Buffer }): { body: Buffer; type: string } {
  const boundary = 'simtestboundary';
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  if (file) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${file.name}"\r\nContent-Type: image/png\r\n\r\n`), file.bytes, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), type: `multipart/form-data; boundary=${boundary}` };
}

describe('comfyui-sim: uploads and edit nodes', () => {
  let sim: SimulatorHandle;
  let client: ComfyUiHttpClient;
  let red: Buffer;
  let blue: Buffer;
  beforeAll(async () => {
    sim = await startSimulator({ stepMs: 5 });
    client = new ComfyUiHttpClient(sim.url, { pollIntervalMs: 200 });
    red = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#ff0000' } }).png().toBuffer();
    blue = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#0000ff' } }).png().toBuffer();
  });
  afterAll(async () => {
    await client?.close();
    await sim?.close();
  });

  const post = (path: string, f: { body: Buffer; type: string }) =>
    axios.post(`${sim.url}${path}`, f.body, { headers: { 'Content-Type': f.type }, validateStatus: () => true });

  it('POST /upload/image answers {name, subfolder, type}; same content keeps the name, other content gets "name (1)"', async () => {
    const first = await post('/upload/image', form({ subfolder: 'fictures', type: 'input', overwrite: 'true' }, { name: 'in.png', bytes: red }));
    expect([first.status, first.data]).toEqual([200, { name: 'in.png', subfolder: 'fictures', type: 'input' }]);
    expect((await post('/upload/image', form({ subfolder: 'fictures' }, { name: 'in.png', bytes: red }))).data.name).toBe('in.png');
    expect((await post('/upload/image', form({ subfolder: 'fictures' }, { name: 'in.png', bytes: blue }))).data.name).toBe('in (1).png');
    expect((await post('/upload/image', form({ subfolder: 'fictures', overwrite: 'true' }, { name: 'in.png', bytes: blue }))).data.name).toBe('in.png');
  });

  it('answers 400 without an image part and for a subfolder outside the input folder', async () => {
    expect((await post('/upload/image', form({ subfolder: 'fictures' }))).status).toBe(400);
    expect((await post('/upload/image', form({ subfolder: '../../etc' }, { name: 'x.png', bytes: red }))).status).toBe(400);
  });

  it('POST /upload/mask needs original_ref and answers like /upload/image', async () => {
    const ref = JSON.stringify({ filename: 'in.png', subfolder: 'fictures', type: 'input' });
    const res = await post('/upload/mask', form({ subfolder: 'fictures', type: 'input', overwrite: 'true', original_ref: ref }, { name: 'mask.png', bytes: red }));
    expect([res.status, res.data]).toEqual([200, { name: 'mask.png', subfolder: 'fictures', type: 'input' }]);
  });

  it('the client uploads and names the file as ComfyUI did', async () => {
    expect(await client.uploadImage(red, { filename: 'c.png', contentType: 'image/png', subfolder: 'fictures', overwrite: true })).toBe('fictures/c.png');
  });

  it('LoadImage with a file that is not there fails validation with "Invalid image file"', async () => {
    const graph = {
      '1': { class_type: 'LoadImage', inputs: { image: 'fictures/nope.png' } },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } },
    };
    const err = await client.submit(graph, { promptId: '0c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PromptValidationError);
    const v = err as PromptValidationError;
    expect(v.error.type).toBe('prompt_outputs_failed_validation');
    expect(v.nodeErrors['1'].errors[0]).toEqual({
      type: 'custom_validation_failed', message: 'Custom validation failed for node',
      details: 'image - Invalid image file: fictures/nope.png', extra_info: { input_name: 'image' },
    });
  });

  it('LoadImage → LoadImageMask(red) → ImageCompositeMasked → SaveImage runs and pastes only under the mask', async () => {
    const mask = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#000000' } })
      .composite([{ input: await sharp({ create: { width: 32, height: 48, channels: 3, background: '#ffffff' } }).png().toBuffer(), left: 32, top: 0 }])
      .png().toBuffer();
    const dest = await client.uploadImage(red, { filename: 'd.png', contentType: 'image/png', subfolder: 'fictures', overwrite: true });
    const src = await client.uploadImage(blue, { filename: 's.png', contentType: 'image/png', subfolder: 'fictures', overwrite: true });
    const m = await client.uploadImage(mask, { filename: 'm.png', contentType: 'image/png', subfolder: 'fictures', overwrite: true });
    const graph = {
      '1': { class_type: 'LoadImage', inputs: { image: dest } },
      '2': { class_type: 'LoadImage', inputs: { image: src } },
      '3': { class_type: 'LoadImageMask', inputs: { image: m, channel: 'red' } },
      '4': { class_type: 'ImageCompositeMasked', inputs: { destination: ['1', 0], source: ['2', 0], x: 0, y: 0, resize_source: false, mask: ['3', 0] } },
      '5': { class_type: 'SaveImage', inputs: { images: ['4', 0], filename_prefix: 'composite' } },
    };
    client.connect();
    const { promptId } = await client.submit(graph, { promptId: '1c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f' });
    const outcome = await client.wait(promptId, { idleTimeoutMs: 10_000 });
    const png = await client.view(outcome.images[0]);
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
    expect([info.width, info.height]).toEqual([64, 48]);
    expect(at(5, 5)).toEqual([255, 0, 0]);
    expect(at(50, 5)).toEqual([0, 0, 255]);
  });

  it('GET /object_info lists the edit nodes with the inputs of the real node specs', async () => {
    for (const name of ['LoadImage', 'LoadImageMask', 'ImageScale', 'ImageCompositeMasked', 'VAEEncode', 'SetLatentNoiseMask']) {
      const info = (await axios.get(`${sim.url}/object_info/${name}`)).data[name];
      expect({ name, input: info.input, output: info.output, input_order: info.input_order }).toEqual({
        name, ...SPECS[name],
      });
    }
  });
});
