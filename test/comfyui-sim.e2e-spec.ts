/**
 * The ComfyUI simulator against its protocol reference (shared/reference/comfyui-protocol.md of the project brief):
 * real sockets only (axios + ws). Small images and short sampler steps keep it fast.
 */
import { createHash, randomUUID } from 'node:crypto';
import { get as httpGet } from 'node:http';
import axios, { AxiosResponse } from 'axios';
import sharp from 'sharp';
import WebSocket from 'ws';
import { SimulatorHandle, startSimulator } from '../apps/comfyui-sim/src/simulator';

jest.setTimeout(20000);

type Msg = { type: string; data: Record<string, unknown> };
type Graph = Record<string, { class_type?: string; inputs: Record<string, unknown> }>;

interface Client {
  ws: WebSocket;
  msgs: Msg[];
  binary: Buffer[];
  closed: Promise<number>;
  waitFor(pred: (m: Msg) => boolean, timeoutMs?: number): Promise<Msg>;
  close(): Promise<void>;
}

const opened: Client[] = [];
const sims: SimulatorHandle[] = [];

async function sim(opts: Parameters<typeof startSimulator>[0] = {}): Promise<SimulatorHandle> {
  const s = await startSimulator({ stepMs: 10, ...opts });
  sims.push(s);
  return s;
}

async function connect(base: string, clientId?: string, path = '/ws'): Promise<Client> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}${path}${clientId ? `?clientId=${clientId}` : ''}`);
  const msgs: Msg[] = [];
  const binary: Buffer[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data, isBinary) => {
    if (isBinary) binary.push(data as Buffer);
    else msgs.push(JSON.parse(data.toString()) as Msg);
    for (const w of [...waiters]) w();
  });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const client: Client = {
    ws,
    msgs,
    binary,
    closed,
    waitFor(pred, timeoutMs = 5000) {
      return new Promise<Msg>((resolve, reject) => {
        let scanned = 0;
        const check = (): void => {
          for (; scanned < msgs.length; scanned++) {
            if (pred(msgs[scanned])) {
              clearTimeout(timer);
              waiters.splice(waiters.indexOf(check), 1);
              resolve(msgs[scanned]);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`timed out; got ${msgs.map((m) => m.type).join(',')}`));
        }, timeoutMs);
        waiters.push(check);
        check();
      });
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      ws.terminate();
      await closed;
    },
  };
  opened.push(client);
  return client;
}

const post = (base: string, path: string, body: unknown, raw = false): Promise<AxiosResponse> =>
  axios.post(`${base}${path}`, raw ? body : JSON.stringify(body), {
    validateStatus: () => true,
    headers: { 'Content-Type': 'application/json' },
    transformResponse: (x: unknown) => x,
  });
const getJson = async <T = Record<string, unknown>>(base: string, path: string): Promise<T> =>
  (await axios.get(`${base}${path}`)).data as T;
const json = (r: AxiosResponse): Record<string, unknown> => JSON.parse(r.data as string) as Record<string, unknown>;

function qwen(seed: number, text = 'a red fox in the snow', opts: { width?: number; height?: number; steps?: number; prefix?: string } = {}): Graph {
  return {
    '37': { class_type: 'UNETLoader', inputs: { unet_name: 'qwen_image_fp8_e4m3fn_scaled.safetensors', weight_dtype: 'fp8_e4m3fn' } },
    '38': { class_type: 'CLIPLoader', inputs: { clip_name: 'qwen_2.5_vl_7b_fp8_scaled.safetensors', type: 'qwen_image', device: 'default' } },
    '39': { class_type: 'VAELoader', inputs: { vae_name: 'qwen_image_vae.safetensors' } },
    '75': { class_type: 'LoraLoaderModelOnly', inputs: { model: ['37', 0], lora_name: 'Qwen-Image-Lightning-4steps-V2.0.safetensors', strength_model: 1.0 } },
    '66': { class_type: 'ModelSamplingAuraFlow', inputs: { model: ['75', 0], shift: 3.0 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { clip: ['38', 0], text } },
    '7': { class_type: 'CLIPTextEncode', inputs: { clip: ['38', 0], text: '' } },
    '58': { class_type: 'EmptySD3LatentImage', inputs: { width: opts.width ?? 64, height: opts.height ?? 64, batch_size: 1 } },
    '3': {
      class_type: 'KSampler',
      inputs: { model: ['66', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['58', 0], seed, steps: opts.steps ?? 4, cfg: 1.0, sampler_name: 'euler', scheduler: 'simple', denoise: 1.0 },
    },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['39', 0] } },
    '60': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: opts.prefix ?? 'ComfyUI' } },
  };
}

const emptyImage = (color: number, width: number | string = 64): Graph => ({
  '1': { class_type: 'EmptyImage', inputs: { width, height: 64, batch_size: 1, color } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'probe' } },
});

async function submit(base: string, graph: Graph, clientId?: string, extra: Record<string, unknown> = {}): Promise<string> {
  const promptId = randomUUID();
  const r = await post(base, '/prompt', { prompt: graph, client_id: clientId, prompt_id: promptId, ...extra });
  expect(r.status).toBe(200);
  expect(json(r).prompt_id).toBe(promptId);
  return promptId;
}

/** Polls /history/{id} until the entry is there (bounded). */
async function waitHistory(base: string, id: string, timeoutMs = 5000): Promise<Record<string, any>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const h = await getJson(base, `/history/${id}`);
    if (h[id]) return h[id] as Record<string, any>;
    if (Date.now() > end) throw new Error(`no history for ${id}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** tEXt chunks of a PNG as [keyword, text], read by hand. */
function pngTextChunks(png: Buffer): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let at = 8; at + 8 <= png.length; at += 12 + png.readUInt32BE(at)) {
    if (png.toString('latin1', at + 4, at + 8) !== 'tEXt') continue;
    const data = png.subarray(at + 8, at + 8 + png.readUInt32BE(at));
    const nul = data.indexOf(0);
    out.push([data.toString('latin1', 0, nul), data.toString('latin1', nul + 1)]);
  }
  return out;
}

/** Polls a condition (never a fixed sleep). */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Until the simulator runs and holds nothing, so a test starts with no other prompt's events in flight. */
const untilIdle = (s: SimulatorHandle): Promise<void> =>
  until(() => s.stats().running === null && s.stats().pending === 0, 'the simulator to go idle');

const doneOf = (id: string) => (m: Msg): boolean => m.type === 'executing' && m.data.node === null && m.data.prompt_id === id;
const ofPrompt = (c: Client, id: string): Msg[] => c.msgs.filter((m) => m.data.prompt_id === id);

afterAll(async () => {
  for (const c of opened) await c.close();
  for (const s of sims) await s.close();
});

describe('comfyui-sim: happy path', () => {
  let s: SimulatorHandle;
  beforeAll(async () => {
    s = await sim();
  });

  it('sends the event sequence of protocol §5.6 and writes history before the final status', async () => {
    const clientId = randomUUID();
    const c = await connect(s.url, clientId);
    await c.waitFor((m) => m.type === 'status' && m.data.sid === clientId);
    const id = await submit(s.url, qwen(42), clientId);
    await c.waitFor(doneOf(id));

    const order = ['39', '58', '38', '7', '6', '37', '75', '66', '3', '8', '60'];
    const expected = ['status', 'status', 'status', 'execution_start', 'execution_cached'];
    for (const node of order) {
      expected.push('progress_state', 'executing');
      if (node === '3') for (let i = 0; i < 4; i++) expected.push('progress_state', 'progress');
      if (node === '60') expected.push('executed');
      expected.push('progress_state');
    }
    expected.push('execution_success', 'status', 'executing');
    expect(c.msgs.map((m) => m.type)).toEqual(expected);

    expect(c.msgs.filter((m) => m.type === 'executing' && m.data.node !== null).map((m) => m.data.node)).toEqual(order);
    expect(c.msgs.filter((m) => m.type === 'progress').map((m) => m.data)).toEqual(
      [1, 2, 3, 4].map((value) => ({ value, max: 4, prompt_id: id, node: '3' })),
    );
    expect(c.msgs.slice(1, 3).map((m) => m.data)).toEqual([
      { status: { exec_info: { queue_remaining: 1 } } },
      { status: { exec_info: { queue_remaining: 1 } } },
    ]);
    expect(c.msgs[c.msgs.length - 2].data).toEqual({ status: { exec_info: { queue_remaining: 0 } } });
    expect(c.msgs.find((m) => m.type === 'execution_cached')?.data.nodes).toEqual([]);
    const firstState = c.msgs.find((m) => m.type === 'progress_state') as Msg;
    expect(firstState.data).toEqual({
      prompt_id: id,
      nodes: { '39': { value: 0, max: 1, state: 'running', node_id: '39', prompt_id: id, display_node_id: '39', parent_node_id: null, real_node_id: '39' } },
    });
    const executed = c.msgs.find((m) => m.type === 'executed') as Msg;
    expect(executed.data).toEqual({
      node: '60', display_node: '60', prompt_id: id,
      output: { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }] },
    });

    // History is there as soon as executing(null) arrives.
    const hist = await getJson(s.url, `/history/${id}`);
    const entry = hist[id] as Record<string, any>;
    expect(Object.keys(entry)).toEqual(['prompt', 'outputs', 'status', 'meta']);
    expect(entry.prompt[1]).toBe(id);
    expect(entry.prompt[3]).toEqual({ client_id: clientId });
    expect(entry.prompt[4]).toEqual(['60']);
    expect(entry.outputs).toEqual({ '60': { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }] } });
    expect(entry.status.status_str).toBe('success');
    expect(entry.status.completed).toBe(true);
    expect(entry.status.messages.map((m: [string, unknown]) => m[0])).toEqual(['execution_start', 'execution_cached', 'execution_success']);
    expect(entry.meta).toEqual({ '60': { node_id: '60', display_node: '60', parent_node: null, real_node_id: '60' } });
    expect(await getJson(s.url, '/queue')).toEqual({ queue_running: [], queue_pending: [] });
  });

  it('serves a real PNG of the requested size (width floored to a multiple of 8 via the latent)', async () => {
    const c = await connect(s.url, 'png-client');
    const id = await submit(s.url, qwen(7, 'a lighthouse', { width: 100, height: 64, prefix: 'sizes/run' }), 'png-client');
    await c.waitFor(doneOf(id));
    const out = (await getJson(s.url, `/history/${id}`))[id] as Record<string, any>;
    const img = out.outputs['60'].images[0];
    expect(img).toEqual({ filename: 'run_00001_.png', subfolder: 'sizes', type: 'output' });
    const r = await axios.get(`${s.url}/view`, { params: img, responseType: 'arraybuffer' });
    expect(r.headers['content-type']).toBe('image/png');
    const meta = await sharp(Buffer.from(r.data)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 96, 64]);
  });

  it('re-runs an identical graph fully cached with the old file names', async () => {
    const c = await connect(s.url, 'cache-client');
    const first = await submit(s.url, qwen(1234), 'cache-client');
    await c.waitFor(doneOf(first));
    const firstFile = (c.msgs.find((m) => m.type === 'executed' && m.data.prompt_id === first) as Msg).data.output;
    const second = await submit(s.url, qwen(1234), 'cache-client');
    await c.waitFor(doneOf(second));
    const msgs = ofPrompt(c, second);
    expect(msgs.map((m) => m.type)).toEqual(['execution_start', 'execution_cached', 'executed', 'progress_state', 'execution_success', 'executing']);
    expect((msgs[1].data.nodes as string[]).sort()).toEqual(Object.keys(qwen(1)).sort());
    expect(msgs[2].data.output).toEqual(firstFile);
    expect(msgs[3].data.nodes).toEqual({ '60': expect.objectContaining({ value: 1, max: 1, state: 'finished' }) });
  });

  it('serves /x and /api/x alike, including the WebSocket', async () => {
    const c = await connect(s.url, 'api-client', '/api/ws');
    const r = await post(s.url, '/api/prompt', { prompt: emptyImage(0xff0000), client_id: 'api-client' });
    expect(r.status).toBe(200);
    const id = json(r).prompt_id as string;
    await c.waitFor(doneOf(id));
    expect(await getJson(s.url, `/api/history/${id}`)).toHaveProperty(id);
    expect(await getJson(s.url, '/api/prompt')).toEqual({ exec_info: { queue_remaining: 0 } });
    const info = await getJson<Record<string, any>>(s.url, '/api/object_info/KSampler');
    expect(info.KSampler.input.required.scheduler[0]).toContain('simple');
    expect(info.KSampler.output).toEqual(['LATENT']);
    expect(await getJson(s.url, '/object_info/NoSuchNode')).toEqual({});
    expect(await getJson(s.url, '/models/diffusion_models')).toEqual(['qwen_image_fp8_e4m3fn_scaled.safetensors']);
    expect((await axios.get(`${s.url}/models/unet`, { validateStatus: () => true })).status).toBe(404);
  });

  it('broadcasts progress but not executing for a prompt without client_id', async () => {
    const watcher = await connect(s.url, 'watcher');
    const r = await post(s.url, '/prompt', { prompt: qwen(99, 'no client id') });
    const id = json(r).prompt_id as string;
    await waitHistory(s.url, id);
    // History and WS frames travel on different sockets: wait for the prompt's last broadcast too.
    await watcher.waitFor((m) => m.type === 'progress_state' && m.data.prompt_id === id
      && (m.data.nodes as Record<string, { state?: string }>)['60']?.state === 'finished');
    const types = new Set(ofPrompt(watcher, id).map((m) => m.type));
    expect(types).toEqual(new Set(['progress_state', 'progress']));
  });

  it('answers /view errors like ComfyUI', async () => {
    const code = async (q: string): Promise<[number, number]> => {
      const r = await axios.get(`${s.url}/view?${q}`, { validateStatus: () => true, responseType: 'arraybuffer' });
      return [r.status, (r.data as ArrayBuffer).byteLength];
    };
    expect(await code('filename=../server.log')).toEqual([400, 0]);
    expect(await code('filename=missing.png')).toEqual([404, 0]);
    expect(await code('filename=x.png&type=bogus')).toEqual([400, 0]);
    expect(await code('filename=x.png&subfolder=../..')).toEqual([403, 0]);
    expect(await code('subfolder=')).toEqual([404, 0]);
  });

  it('answers / with a small HTML front page (200, no-cache), like a real server', async () => {
    for (const path of ['/', '/api/']) {
      const r = await axios.get(`${s.url}${path}`, { responseType: 'text', transformResponse: (x: unknown) => x });
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/html/);
      expect(r.headers['cache-control']).toBe('no-cache');
      expect(r.data).toMatch(/^<!DOCTYPE html>/);
      expect(r.data).toContain('<title>ComfyUI</title>');
    }
    const head = await axios.head(`${s.url}/`);
    expect([head.status, head.data]).toEqual([200, '']);
    const wrong = await axios.post(`${s.url}/`, '{}', { validateStatus: () => true });
    expect([wrong.status, wrong.headers.allow]).toEqual([405, 'GET,HEAD']);
  });

  it('writes the graph into a `prompt` tEXt chunk and each extra_pnginfo key (the workflow) into its own', async () => {
    const c = await connect(s.url, 'meta-client');
    const graph = qwen(4242, 'metadata', { prefix: 'meta/run' });
    const workflow = { last_node_id: 60, nodes: [{ id: 60, type: 'SaveImage' }], version: 0.4 };
    const withWorkflow = await submit(s.url, graph, 'meta-client', { extra_data: { extra_pnginfo: { workflow } } });
    await c.waitFor(doneOf(withWorkflow));
    const bare = await submit(s.url, qwen(4243, 'metadata', { prefix: 'meta/run' }), 'meta-client');
    await c.waitFor(doneOf(bare));

    const png = async (id: string): Promise<Buffer> => {
      const img = ((await getJson(s.url, `/history/${id}`))[id] as Record<string, any>).outputs['60'].images[0];
      return Buffer.from((await axios.get(`${s.url}/view`, { params: img, responseType: 'arraybuffer' })).data as ArrayBuffer);
    };
    const first = pngTextChunks(await png(withWorkflow));
    expect(first.map(([k]) => k)).toEqual(['prompt', 'workflow']);
    expect(JSON.parse(first[0][1])).toEqual(graph);
    expect(JSON.parse(first[1][1])).toEqual(workflow);
    const second = pngTextChunks(await png(bare));
    expect(second.map(([k]) => k)).toEqual(['prompt']);
    expect(JSON.parse(second[0][1])['3'].inputs.seed).toBe(4243);
  });
});

describe('comfyui-sim: determinism', () => {
  it('gives the same bytes for the same seed and prompt on a fresh simulator, other bytes for another seed', async () => {
    const digest = async (seed: number): Promise<string> => {
      const s = await sim();
      const c = await connect(s.url, 'det');
      const id = await submit(s.url, qwen(seed, 'a cat in a hat'), 'det');
      await c.waitFor(doneOf(id));
      const img = ((await getJson(s.url, `/history/${id}`))[id] as Record<string, any>).outputs['60'].images[0];
      const r = await axios.get(`${s.url}/view`, { params: img, responseType: 'arraybuffer' });
      return createHash('sha256').update(Buffer.from(r.data)).digest('hex');
    };
    const a = await digest(5);
    expect(await digest(5)).toBe(a);
    expect(await digest(6)).not.toBe(a);
  });
});

describe('comfyui-sim: validation', () => {
  let s: SimulatorHandle;
  let watcher: Client;
  beforeAll(async () => {
    s = await sim();
    watcher = await connect(s.url, 'validation-watcher');
  });

  const bad = async (graph: unknown): Promise<Record<string, any>> => {
    const r = await post(s.url, '/prompt', { prompt: graph });
    expect(r.status).toBe(400);
    expect(r.headers['content-type']).toBe('application/json; charset=utf-8');
    return json(r);
  };

  it('unknown class_type and missing class_type → invalid_prompt', async () => {
    expect(await bad({ '1': { class_type: 'NoSuchNode', inputs: {} } })).toEqual({
      error: { type: 'invalid_prompt', message: 'Cannot execute because node NoSuchNode does not exist.', details: "Node ID '#1'", extra_info: {} },
      node_errors: {},
    });
    expect(await bad({ '1': { inputs: {} } })).toEqual({
      error: { type: 'invalid_prompt', message: 'Cannot execute because a node is missing the class_type property.', details: "Node ID '#1'", extra_info: {} },
      node_errors: {},
    });
  });

  it('missing input on the output node and upstream', async () => {
    expect(await bad({ '1': emptyImage(0)['1'], '2': { class_type: 'SaveImage', inputs: { filename_prefix: 'probe' } } })).toEqual({
      error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: 'Required input is missing: images', extra_info: {} },
      node_errors: { '2': { errors: [{ type: 'required_input_missing', message: 'Required input is missing', details: 'images', extra_info: { input_name: 'images' } }], dependent_outputs: ['2'], class_type: 'SaveImage' } },
    });
    const g = qwen(1);
    delete g['3'].inputs.steps;
    const body = await bad(g);
    expect(body.error.details).toBe('');
    expect(body.node_errors).toEqual({
      '3': { errors: [{ type: 'required_input_missing', message: 'Required input is missing', details: 'steps', extra_info: { input_name: 'steps' } }], dependent_outputs: ['60'], class_type: 'KSampler' },
    });
  });

  it('out of range and wrong type', async () => {
    expect(await bad(emptyImage(0, 99999))).toEqual({
      error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: '', extra_info: {} },
      node_errors: { '1': { errors: [{ type: 'value_bigger_than_max', message: 'Value 99999 bigger than max of 16384', details: 'width', extra_info: { input_name: 'width', input_config: ['INT', { default: 512, min: 1, max: 16384, step: 1 }], received_value: 99999 } }], dependent_outputs: ['2'], class_type: 'EmptyImage' } },
    });
    const small = qwen(1, 'x', { width: 8 });
    expect((await bad(small)).node_errors['58'].errors[0]).toMatchObject({ type: 'value_smaller_than_min', message: 'Value 8 smaller than min of 16', details: 'width' });
    expect((await bad(emptyImage(0, 'abc'))).node_errors['1'].errors[0]).toEqual({
      type: 'invalid_input_type', message: 'Failed to convert an input value to a INT value',
      details: "width, abc, invalid literal for int() with base 10: 'abc'",
      extra_info: { input_name: 'width', input_config: ['INT', { default: 512, min: 1, max: 16384, step: 1 }], received_value: 'abc', exception_message: "invalid literal for int() with base 10: 'abc'" },
    });
  });

  it('value_not_in_list: full list up to 20 options, length only above', async () => {
    const g = qwen(1);
    g['37'].inputs.unet_name = 'missing.safetensors';
    g['3'].inputs.sampler_name = 'foo';
    const body = await bad(g);
    expect(body.node_errors['37'].errors[0]).toEqual({
      type: 'value_not_in_list', message: 'Value not in list',
      details: "unet_name: 'missing.safetensors' not in ['qwen_image_fp8_e4m3fn_scaled.safetensors']",
      extra_info: { input_name: 'unet_name', input_config: [['qwen_image_fp8_e4m3fn_scaled.safetensors'], {}], received_value: 'missing.safetensors' },
    });
    expect(body.node_errors['3'].errors[0]).toEqual({
      type: 'value_not_in_list', message: 'Value not in list', details: expect.stringMatching(/^sampler_name: 'foo' not in \(list of length \d+\)$/),
      extra_info: { input_name: 'sampler_name', input_config: null, received_value: 'foo' },
    });
  });

  it('bad links: missing node, wrong arity, type mismatch', async () => {
    const missing = await bad({ '2': { class_type: 'SaveImage', inputs: { images: ['7', 0], filename_prefix: 'p' } } });
    expect(missing.error.details).toBe("Exception when validating node: '7'");
    expect(missing.node_errors['2'].errors[0]).toMatchObject({ type: 'exception_during_validation', message: 'Exception when validating node', details: "'7'", extra_info: { exception_type: 'KeyError' } });
    const g = qwen(1);
    g['8'].inputs.vae = ['39'];
    g['66'].inputs.model = ['38', 0];
    const body = await bad(g);
    expect(body.node_errors['8'].errors[0]).toMatchObject({ type: 'bad_linked_input', details: 'vae' });
    expect(body.node_errors['66'].errors[0]).toMatchObject({ type: 'return_type_mismatch', details: 'model, received_type(CLIP) mismatch input_type(MODEL)' });
  });

  it('no outputs, no prompt, invalid JSON, bad prompt_id', async () => {
    expect(await bad({ '1': emptyImage(0)['1'] })).toEqual({ error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} }, node_errors: {} });
    const noPrompt = await post(s.url, '/prompt', { client_id: 'x' });
    expect([noPrompt.status, json(noPrompt)]).toEqual([400, { error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} }, node_errors: {} }]);
    const notJson = await post(s.url, '/prompt', '{"prompt": ', true);
    expect([notJson.status, notJson.headers['content-type'], notJson.data]).toEqual([500, 'text/plain; charset=utf-8', '500 Internal Server Error\n\nServer got itself in trouble']);
    for (const promptId of ['not-a-uuid', randomUUID().toUpperCase(), 123]) {
      const r = await post(s.url, '/prompt', { prompt: emptyImage(1), prompt_id: promptId });
      expect(r.status).toBe(400);
      expect(json(r)).toMatchObject({ error: { type: 'invalid_prompt_id', message: 'prompt_id must be a valid UUID' }, node_errors: {} });
    }
  });

  it('counts rejected prompts, coerces values, sends no WS frame for rejections, accepts partial graphs', async () => {
    const before = watcher.msgs.length;
    const client_id = 'validation-watcher';
    const first = json(await post(s.url, '/prompt', { prompt: emptyImage(2), client_id }));
    await post(s.url, '/prompt', { prompt: emptyImage(0, 99999), client_id });
    const third = await post(s.url, '/prompt', { prompt: { ...emptyImage(3, '64'), '3': { class_type: 'SaveImage', inputs: { images: ['1', 0] } } }, client_id });
    expect(third.status).toBe(200);
    const body = json(third);
    expect(body.number).toBe((first.number as number) + 2);
    expect(body.node_errors).toEqual({ '3': { errors: [expect.objectContaining({ type: 'required_input_missing', details: 'filename_prefix' })], dependent_outputs: ['3'], class_type: 'SaveImage' } });
    await watcher.waitFor(doneOf(first.prompt_id as string));
    await watcher.waitFor(doneOf(body.prompt_id as string));
    const entry = (await getJson(s.url, `/history/${body.prompt_id as string}`))[body.prompt_id as string] as Record<string, any>;
    expect(entry.prompt[2]['1'].inputs.width).toBe(64);
    expect(entry.prompt[4]).toEqual(['2']);
    expect(Object.keys(entry.outputs)).toEqual(['2']);
    const rejectedFrames = watcher.msgs.slice(before).filter((m) => m.type === 'status');
    // 2 accepted prompts x (put, get, done) status broadcasts, none for the rejected one.
    expect(rejectedFrames.length).toBe(6);
  });
});

describe('comfyui-sim: queue, interrupt, restart, concurrency', () => {
  it('interrupts the running prompt within one step and records it in history', async () => {
    const stepMs = 50;
    const s = await sim({ stepMs });
    const c = await connect(s.url, 'int');
    const id = await submit(s.url, qwen(3, 'slow', { steps: 50 }), 'int');
    await c.waitFor((m) => m.type === 'progress' && m.data.value === 2);
    const t0 = Date.now();
    const r = await post(s.url, '/interrupt', { prompt_id: id });
    expect([r.status, r.data]).toEqual([200, '']);
    const ev = await c.waitFor((m) => m.type === 'execution_interrupted');
    // Lands at the end of the current step (plus the HTTP round trip).
    expect(Date.now() - t0).toBeLessThan(stepMs * 2 + 100);
    expect(ev.data).toMatchObject({ prompt_id: id, node_id: '3', node_type: 'KSampler' });
    expect(ev.data.executed).toEqual(['39', '58', '38', '7', '6', '37', '75', '66']);
    await c.waitFor(doneOf(id));
    const tail = ofPrompt(c, id).slice(-2).map((m) => m.type);
    expect(tail).toEqual(['execution_interrupted', 'executing']);
    const entry = (await getJson(s.url, `/history/${id}`))[id] as Record<string, any>;
    expect(entry.status.status_str).toBe('error');
    expect(entry.status.completed).toBe(false);
    expect(entry.status.messages.map((m: [string]) => m[0])).toEqual(['execution_start', 'execution_cached', 'execution_interrupted']);
    expect(entry.outputs).toEqual({});
    expect(s.stats().interrupted).toBe(1);
  });

  it('deletes a pending prompt: never runs, never in history', async () => {
    const s = await sim({ stepMs: 20 });
    const c = await connect(s.url, 'q');
    const running = await submit(s.url, qwen(10, 'first', { steps: 30 }), 'q');
    const pending = await submit(s.url, qwen(11, 'second'), 'q');
    await c.waitFor((m) => m.type === 'execution_start');
    const q = await getJson<{ queue_running: unknown[][]; queue_pending: unknown[][] }>(s.url, '/queue');
    expect(q.queue_running.map((i) => i[1])).toEqual([running]);
    expect(q.queue_pending.map((i) => i[1])).toEqual([pending]);
    expect(q.queue_pending[0]).toHaveLength(5);
    const del = await post(s.url, '/queue', { delete: [pending] });
    expect([del.status, del.data]).toEqual([200, '']);
    expect((await getJson<{ queue_pending: unknown[] }>(s.url, '/queue')).queue_pending).toEqual([]);
    await post(s.url, '/interrupt', {});
    await c.waitFor(doneOf(running));
    expect(await getJson(s.url, `/history/${pending}`)).toEqual({});
    expect(s.stats().executedPromptIds).toEqual([running]);
    expect(ofPrompt(c, pending)).toEqual([]);
  });

  it('restart forgets queue, history, counter and sockets; the running prompt vanishes', async () => {
    const s = await sim({ stepMs: 20 });
    const c = await connect(s.url, 'r');
    const done = await submit(s.url, emptyImage(5), 'r');
    await c.waitFor(doneOf(done));
    const inflight = await submit(s.url, qwen(12, 'cut short', { steps: 50 }), 'r');
    await c.waitFor((m) => m.type === 'progress');
    await s.restart();
    expect(await c.closed).toBe(1006);
    expect(await getJson(s.url, '/history')).toEqual({});
    expect(await getJson(s.url, `/history/${inflight}`)).toEqual({});
    expect(await getJson(s.url, '/queue')).toEqual({ queue_running: [], queue_pending: [] });
    const r = await post(s.url, '/prompt', { prompt: emptyImage(6) });
    expect(json(r).number).toBe(0);
    const stats = s.stats();
    expect(stats.restarts).toBe(1);
    expect(stats.executedPromptIds.slice(0, 2)).toEqual([done, inflight]);
    expect(stats.completed).toBe(1);
    // Same behaviour through the control endpoint.
    const ctl = await post(s.url, '/sim/restart', {});
    expect(ctl.status).toBe(200);
    expect(s.stats().restarts).toBe(2);
  });

  it('never executes two prompts at once', async () => {
    const s = await sim({ stepMs: 5 });
    const c = await connect(s.url, 'conc');
    const ids: string[] = [];
    for (const i of [1, 2, 3, 4]) ids.push(await submit(s.url, qwen(100 + i, `p${i}`), 'conc'));
    for (const id of ids) await c.waitFor(doneOf(id));
    expect(s.stats().maxConcurrent).toBe(1);
    const spans = await Promise.all(ids.map(async (id) => {
      const msgs = ((await getJson(s.url, `/history/${id}`))[id] as Record<string, any>).status.messages as Array<[string, { timestamp: number }]>;
      return [msgs[0][1].timestamp, msgs[msgs.length - 1][1].timestamp];
    }));
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
    // Starts are in submission order (FIFO by number).
    const starts = c.msgs.filter((m) => m.type === 'execution_start').map((m) => m.data.prompt_id);
    expect(starts).toEqual(ids);
  });
});

describe('comfyui-sim: fault switches', () => {
  let s: SimulatorHandle;
  beforeAll(async () => {
    s = await sim();
  });
  afterEach(() => {
    s.faults.reset();
  });

  it('promptFailRate 1 → HTTP 500; promptFailCount → 503 N times (also via /sim/faults)', async () => {
    s.faults.set({ promptFailRate: 1 });
    const r = await post(s.url, '/prompt', { prompt: emptyImage(1) });
    expect([r.status, r.data]).toEqual([500, '500 Internal Server Error\n\nServer got itself in trouble']);
    const ctl = await post(s.url, '/sim/faults', { promptFailRate: 0, promptFailCount: 2 });
    expect(json(ctl)).toMatchObject({ promptFailRate: 0, promptFailCount: 2 });
    expect((await post(s.url, '/prompt', { prompt: emptyImage(1) })).status).toBe(503);
    expect((await post(s.url, '/prompt', { prompt: emptyImage(1) })).status).toBe(503);
    expect((await post(s.url, '/prompt', { prompt: emptyImage(1) })).status).toBe(200);
    expect((await post(s.url, '/sim/faults', { nope: 1 })).status).toBe(400);
    const reset = await post(s.url, '/sim/faults/reset', {});
    expect(json(reset)).toMatchObject({ promptFailRate: 0, hang: false });
    const stats = await getJson<Record<string, any>>(s.url, '/sim/stats');
    expect(stats.injected).toMatchObject({ prompt500: 1, prompt503: 2 });
  });

  it('hang: accepted, then no execution_start and an empty history until released', async () => {
    // The test before leaves a prompt without client_id whose progress_state is broadcast to every
    // socket: start only once it is gone, and look only at this prompt's events.
    await untilIdle(s);
    const c = await connect(s.url, 'hang');
    s.faults.set({ hang: true });
    const id = await submit(s.url, emptyImage(0x123456), 'hang');
    await until(() => s.stats().running === id, 'the executor to hold the hung prompt');
    await expect(c.waitFor((m) => m.data.prompt_id === id, 300)).rejects.toThrow('timed out');
    expect(await getJson(s.url, `/history/${id}`)).toEqual({});
    // Not even a queue status broadcast: a frozen server accepts silently.
    expect(c.msgs.filter((m) => m.type !== 'status' || m.data.sid === undefined)).toEqual([]);
    expect(s.stats().running).toBe(id);
    s.faults.set({ hang: false });
    await c.waitFor(doneOf(id));
    expect(await getJson(s.url, `/history/${id}`)).toHaveProperty(id);
  });

  it('dropSocketAfter closes each socket after N messages', async () => {
    s.faults.set({ dropSocketAfter: 3 });
    const c = await connect(s.url, 'drop');
    const id = await submit(s.url, emptyImage(0x00ff00), 'drop');
    expect(await c.closed).toBe(1006);
    expect(c.msgs).toHaveLength(3);
    // The same clientId reconnects and is not dropped again for this setting.
    const again = await connect(s.url, 'drop');
    const next = await submit(s.url, emptyImage(0x00ff01), 'drop');
    await again.waitFor(doneOf(next));
    expect(again.ws.readyState).toBe(WebSocket.OPEN);
    expect(await getJson(s.url, `/history/${id}`)).toHaveProperty(id);
    expect(s.stats().socketsDropped).toBeGreaterThanOrEqual(1);
  });

  it('executionError → execution_error at KSampler, error history, next prompt fine', async () => {
    const c = await connect(s.url, 'oom');
    s.faults.set({ executionError: 'CUDA out of memory. Tried to allocate 20.00 GiB', executionErrorCount: 1 });
    const id = await submit(s.url, qwen(77, 'oom'), 'oom');
    await c.waitFor(doneOf(id));
    const types = ofPrompt(c, id).map((m) => m.type);
    expect(types.slice(-3)).toEqual(['executing', 'execution_error', 'executing']);
    expect(types).not.toContain('execution_success');
    const ev = ofPrompt(c, id).find((m) => m.type === 'execution_error') as Msg;
    expect(ev.data).toMatchObject({ prompt_id: id, node_id: '3', node_type: 'KSampler', exception_type: 'torch.OutOfMemoryError' });
    expect(ev.data.exception_message).toMatch(/^CUDA out of memory\. Tried to allocate 20\.00 GiB\nThis error means you ran out of memory on your GPU/);
    expect(Object.keys(ev.data)).toEqual(['prompt_id', 'node_id', 'node_type', 'executed', 'exception_message', 'exception_type', 'traceback', 'current_inputs', 'current_outputs', 'timestamp']);
    const entry = (await getJson(s.url, `/history/${id}`))[id] as Record<string, any>;
    expect([entry.status.status_str, entry.status.completed]).toEqual(['error', false]);
    expect(entry.status.messages[2][0]).toBe('execution_error');
    const next = await submit(s.url, qwen(78, 'fine'), 'oom');
    await c.waitFor(doneOf(next));
    expect(ofPrompt(c, next).map((m) => m.type)).toContain('execution_success');
  });

  it('viewTruncate cuts the download short; viewDelayMs slows it', async () => {
    const c = await connect(s.url, 'view');
    const id = await submit(s.url, emptyImage(0x0000ff), 'view');
    await c.waitFor(doneOf(id));
    const img = ((await getJson(s.url, `/history/${id}`))[id] as Record<string, any>).outputs['2'].images[0];
    const url = `${s.url}/view?filename=${img.filename}&type=output&subfolder=`;
    const full = await axios.get(url, { responseType: 'arraybuffer' });
    s.faults.set({ viewTruncate: true });
    const cut = await new Promise<{ declared: number; got: number; failed: boolean }>((resolve) => {
      httpGet(url, (res) => {
        let got = 0;
        let failed = false;
        res.on('data', (d: Buffer) => { got += d.length; });
        res.on('aborted', () => { failed = true; });
        res.on('error', () => { failed = true; });
        res.on('close', () => resolve({ declared: Number(res.headers['content-length']), got, failed: failed || !res.complete }));
      }).on('error', () => resolve({ declared: -1, got: 0, failed: true }));
    });
    expect(cut.declared).toBe((full.data as ArrayBuffer).byteLength);
    expect(cut.got).toBeLessThan(cut.declared);
    expect(cut.failed).toBe(true);
    s.faults.set({ viewTruncate: false, viewDelayMs: 150 });
    const t0 = Date.now();
    await axios.get(url);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it('vramFreeMb and noGpu show in /system_stats', async () => {
    const stats = await getJson<Record<string, any>>(s.url, '/system_stats');
    expect(stats.system.comfyui_version).toBe('0.3.64');
    expect(stats.devices[0]).toMatchObject({ type: 'cuda', index: 0, name: expect.stringMatching(/^cuda:0 NVIDIA .* : cudaMallocAsync$/) });
    s.faults.set({ vramFreeMb: 1234 });
    expect((await getJson<Record<string, any>>(s.url, '/system_stats')).devices[0].vram_free).toBe(1234 * 1024 * 1024);
    s.faults.set({ noGpu: true });
    expect((await getJson<Record<string, any>>(s.url, '/system_stats')).devices[0]).toMatchObject({ name: 'cpu', type: 'cpu', index: null });
  });
});

describe('comfyui-sim: more of the protocol', () => {
  it('answers a first feature_flags message and resends executing (without prompt_id) on reconnect', async () => {
    const s = await sim({ stepMs: 30 });
    const c = await connect(s.url, 'ff');
    c.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    const flags = await c.waitFor((m) => m.type === 'feature_flags');
    expect(flags.data).toEqual({ supports_preview_metadata: true, max_upload_size: 104857600 });
    const id = await submit(s.url, qwen(5, 'resend', { steps: 20 }), 'ff');
    await c.waitFor((m) => m.type === 'progress');
    await c.close();
    const again = await connect(s.url, 'ff');
    await again.waitFor((m) => m.type === 'executing');
    expect(again.msgs.slice(0, 2)).toEqual([
      { type: 'status', data: { status: { exec_info: { queue_remaining: 1 } }, sid: 'ff' } },
      { type: 'executing', data: { node: '3' } },
    ]);
    await post(s.url, '/interrupt', { prompt_id: id });
    await again.waitFor(doneOf(id));
  });

  it('sends JPEG previews (type 1, or type 4 with metadata) when a preview method is on', async () => {
    const s = await sim({ previewMethod: 'auto' });
    const plain = await connect(s.url, 'prev1');
    const id1 = await submit(s.url, qwen(1, 'preview'), 'prev1');
    await plain.waitFor(doneOf(id1));
    expect(plain.binary).toHaveLength(4);
    expect([plain.binary[0].readUInt32BE(0), plain.binary[0].readUInt32BE(4), plain.binary[0][8], plain.binary[0][9]]).toEqual([1, 1, 0xff, 0xd8]);
    const meta = await connect(s.url, 'prev4');
    meta.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    await meta.waitFor((m) => m.type === 'feature_flags');
    const id2 = await submit(s.url, qwen(2, 'preview'), 'prev4');
    await meta.waitFor(doneOf(id2));
    const frame = meta.binary[0];
    expect(frame.readUInt32BE(0)).toBe(4);
    const len = frame.readUInt32BE(4);
    expect(JSON.parse(frame.subarray(8, 8 + len).toString())).toEqual({
      node_id: '3', prompt_id: id2, display_node_id: '3', parent_node_id: null, real_node_id: '3', image_type: 'image/jpeg',
    });
  });

  it('pays loadMs on first load only, again after POST /free', async () => {
    const s = await sim({ loadMs: 30 });
    const c = await connect(s.url, 'free');
    const a = await submit(s.url, qwen(1, 'load'), 'free');
    await c.waitFor(doneOf(a));
    expect(s.stats().modelLoads).toBe(4);
    const b = await submit(s.url, qwen(2, 'load'), 'free');
    await c.waitFor(doneOf(b));
    expect(s.stats().modelLoads).toBe(4);
    const cached = ofPrompt(c, b).find((m) => m.type === 'execution_cached') as Msg;
    expect(cached.data.nodes).toEqual(expect.arrayContaining(['37', '38', '39', '75', '66', '6', '7', '58']));
    const free = await post(s.url, '/free', { unload_models: true, free_memory: true });
    expect([free.status, free.data]).toEqual([200, '']);
    const d = await submit(s.url, qwen(2, 'load'), 'free');
    await c.waitFor(doneOf(d));
    expect(s.stats().modelLoads).toBe(8);
    expect((ofPrompt(c, d).find((m) => m.type === 'execution_cached') as Msg).data.nodes).toEqual([]);
  });

  it('rejects a loopback Host with a foreign Origin (403, empty body)', async () => {
    const s = await sim();
    const r = await axios.get(`${s.url}/prompt`, { headers: { Origin: 'http://evil.example' }, validateStatus: () => true });
    expect([r.status, r.data]).toEqual([403, '']);
    const ok = await axios.get(`${s.url}/prompt`, { headers: { Origin: s.url } });
    expect(ok.status).toBe(200);
  });

  it('pages, deletes and clears history', async () => {
    const s = await sim();
    const c = await connect(s.url, 'hist');
    const ids: string[] = [];
    for (const color of [1, 2, 3]) {
      ids.push(await submit(s.url, emptyImage(color), 'hist'));
      await c.waitFor(doneOf(ids[ids.length - 1]));
    }
    expect(Object.keys(await getJson(s.url, '/history'))).toEqual(ids);
    expect(Object.keys(await getJson(s.url, '/history?max_items=2'))).toEqual(ids.slice(1));
    expect(Object.keys(await getJson(s.url, '/history?max_items=1&offset=1'))).toEqual([ids[1]]);
    expect((await axios.get(`${s.url}/history?max_items=x`, { validateStatus: () => true })).status).toBe(500);
    expect((await post(s.url, '/history', { delete: [ids[0]] })).status).toBe(200);
    expect(Object.keys(await getJson(s.url, '/history'))).toEqual(ids.slice(1));
    await post(s.url, '/history', { clear: true });
    expect(await getJson(s.url, '/history')).toEqual({});
  });

  it('reports a genuine runtime error (SaveImage outside the output folder) as execution_error', async () => {
    const s = await sim();
    const c = await connect(s.url, 'esc');
    const g = emptyImage(9);
    g['2'].inputs.filename_prefix = '../escape';
    const id = await submit(s.url, g, 'esc');
    await c.waitFor(doneOf(id));
    expect(ofPrompt(c, id).map((m) => m.type)).toEqual([
      'execution_start', 'execution_cached', 'progress_state', 'executing', 'progress_state', 'progress_state', 'executing', 'execution_error', 'executing',
    ]);
    const ev = c.msgs.find((m) => m.type === 'execution_error') as Msg;
    expect(ev.data).toMatchObject({ node_id: '2', node_type: 'SaveImage', executed: ['1'], exception_type: 'Exception', current_outputs: ['1', '2'] });
    expect(ev.data.exception_message).toMatch(/^\*\*\*\* ERROR: Saving image outside the output folder is not allowed\./);
  });

  it('stop() takes ComfyUI down, start() brings a fresh one up on the same port', async () => {
    const s = await sim();
    const c = await connect(s.url, 'down');
    const id = await submit(s.url, emptyImage(4), 'down');
    await c.waitFor(doneOf(id));
    const port = s.port;
    await s.stop();
    expect(await c.closed).toBe(1006);
    await expect(axios.get(`${s.url}/prompt`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await s.start();
    expect(s.port).toBe(port);
    expect(await getJson(s.url, `/history/${id}`)).toEqual({});
  });
});
