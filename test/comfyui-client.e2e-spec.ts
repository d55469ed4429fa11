import { randomUUID } from 'node:crypto';
import {
  ComfyUiHttpClient,
  ComfyUiTimeoutError,
  ComfyUnavailableError,
  OutputFetchError,
  PromptInterruptedError,
  PromptLostError,
  PromptValidationError,
  type ComfyGraph,
  type PromptProgress,
} from '@app/comfyui';
import { startSimulator, type SimulatorHandle } from '../apps/comfyui-sim/src/simulator';

/**
 * The ComfyUI client against the project's simulator over real sockets: the protocol as the
 * simulator speaks it, and the client's behaviour under the simulator's fault switches.
 */

/** Model-free graph; the seed keeps every run out of ComfyUI's cache. */
function noiseGraph(seed: number): ComfyGraph {
  return {
    '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0 } },
    '2': { class_type: 'ImageAddNoise', inputs: { image: ['1', 0], seed, strength: 0.5 } },
    '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 't' } },
  };
}

/** The Qwen-Image + Lightning graph of the protocol reference §7.2, at 64×64. */
function qwenGraph(seed: number, steps = 4): ComfyGraph {
  return {
    '37': { class_type: 'UNETLoader', inputs: { unet_name: 'qwen_image_fp8_e4m3fn_scaled.safetensors', weight_dtype: 'fp8_e4m3fn' } },
    '38': { class_type: 'CLIPLoader', inputs: { clip_name: 'qwen_2.5_vl_7b_fp8_scaled.safetensors', type: 'qwen_image', device: 'default' } },
    '39': { class_type: 'VAELoader', inputs: { vae_name: 'qwen_image_vae.safetensors' } },
    '75': { class_type: 'LoraLoaderModelOnly', inputs: { model: ['37', 0], lora_name: 'Qwen-Image-Lightning-4steps-V2.0.safetensors', strength_model: 1.0 } },
    '66': { class_type: 'ModelSamplingAuraFlow', inputs: { model: ['75', 0], shift: 3.0 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { clip: ['38', 0], text: 'a lighthouse at dusk' } },
    '7': { class_type: 'CLIPTextEncode', inputs: { clip: ['38', 0], text: '' } },
    '58': { class_type: 'EmptySD3LatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '3': {
      class_type: 'KSampler',
      inputs: {
        model: ['66', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['58', 0],
        seed, steps, cfg: 1.0, sampler_name: 'euler', scheduler: 'simple', denoise: 1.0,
      },
    },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['39', 0] } },
    '60': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'ComfyUI' } },
  };
}

/** Polls a condition (never a fixed sleep). */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

let seed = Math.floor(Math.random() * 1e9);
const nextSeed = () => ++seed;

describe('ComfyUiHttpClient ↔ comfyui-sim', () => {
  let sim: SimulatorHandle;
  let client: ComfyUiHttpClient;

  async function boot(simOpts: Parameters<typeof startSimulator>[0] = {}, pollIntervalMs = 200): Promise<void> {
    sim = await startSimulator({ stepMs: 10, ...simOpts });
    client = new ComfyUiHttpClient(sim.url, { pollIntervalMs, requestTimeoutMs: 2000, reconnect: { baseMs: 20, maxMs: 300, jitter: 0.1 } });
    client.connect();
    expect(await client.waitOpen(5000)).toBe(true);
  }

  afterEach(async () => {
    await client?.close();
    await sim?.close();
  });

  it('runs the model-free graph and downloads its PNG', async () => {
    await boot();
    const promptId = randomUUID();
    const sub = await client.submit(noiseGraph(nextSeed()), { promptId });
    expect(sub.promptId).toBe(promptId);
    expect(sub.nodeWarnings).toEqual({});
    const onStart = jest.fn();
    const outcome = await client.wait(promptId, { idleTimeoutMs: 10_000, onStart });
    expect(onStart).toHaveBeenCalledTimes(1);
    expect(outcome.images).toEqual([expect.objectContaining({ node: '3', type: 'output' })]);
    expect(outcome.executionMs).toEqual(expect.any(Number));
    const png = await client.view(outcome.images[0]);
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(await client.locate(promptId)).toBe('done');
    expect(await client.outcome(promptId)).toEqual(outcome);
  });

  it('reports KSampler progress 1..4 for the Qwen graph', async () => {
    await boot();
    const promptId = randomUUID();
    await client.submit(qwenGraph(nextSeed()), { promptId });
    const progress: PromptProgress[] = [];
    const outcome = await client.wait(promptId, { idleTimeoutMs: 10_000, onProgress: (p) => progress.push(p) });
    const sampler = progress.filter((p) => p.node === '3');
    expect(sampler.map((p) => p.value)).toEqual([1, 2, 3, 4]);
    expect(sampler.every((p) => p.max === 4 && p.promptId === promptId)).toBe(true);
    expect(outcome.images).toEqual([expect.objectContaining({ node: '60', type: 'output' })]);
    expect((await client.view(outcome.images[0])).length).toBeGreaterThan(8);
  });

  it('keeps a validation error structured', async () => {
    await boot();
    const graph = qwenGraph(nextSeed(), 20000);
    const err = await failure(client.submit(graph, { promptId: randomUUID() }));
    expect(err).toBeInstanceOf(PromptValidationError);
    const v = err as PromptValidationError;
    expect(v.error.type).toBe('prompt_outputs_failed_validation');
    expect(v.nodeErrors['3'].class_type).toBe('KSampler');
    expect(v.nodeErrors['3'].errors[0]).toMatchObject({ type: 'value_bigger_than_max', details: 'steps' });
  });

  it('finishes a run whose socket dropped mid-way, executing it exactly once', async () => {
    await boot({}, 5_000); // the reconnect look, not the periodic poll, must settle it
    sim.faults.set({ dropSocketAfter: 6 });
    const promptId = randomUUID();
    await client.submit(qwenGraph(nextSeed()), { promptId });
    const outcome = await client.wait(promptId, { idleTimeoutMs: 10_000 });
    expect(outcome.images).toHaveLength(1);
    const stats = sim.stats();
    expect(stats.socketsDropped).toBeGreaterThanOrEqual(1);
    expect(stats.executedPromptIds.filter((id) => id === promptId)).toHaveLength(1);
    await until(() => client.state === 'open', 5000, 'reconnected');
  });

  it('stays registered after a reconnect on a server with the #16010 unregister bug', async () => {
    // With the bug switched on, an old socket whose close is handled after the new registration
    // silences the new one. The client opens the new socket only after the old one closed, so
    // progress keeps flowing on the new socket and the run ends long before the 60 s poll.
    // (Here the server drops the socket itself, so this checks the sequence, not a race.)
    await boot({ stepMs: 100, faults: { reconnectBug: true } }, 60_000);
    sim.faults.set({ dropSocketAfter: 6 });
    const promptId = randomUUID();
    await client.submit(qwenGraph(nextSeed()), { promptId });
    const progress: number[] = [];
    const outcome = await client.wait(promptId, { idleTimeoutMs: 10_000, onProgress: (p) => progress.push(p.value) });
    expect(outcome.images).toHaveLength(1);
    expect(sim.stats().socketsDropped).toBeGreaterThanOrEqual(1);
    expect(progress).toContain(4);
  });

  it('connects once ComfyUI comes up after the client started', async () => {
    await boot();
    await client.close();
    await sim.stop();
    client = new ComfyUiHttpClient(sim.url, { reconnect: { baseMs: 20, maxMs: 200, jitter: 0.1 } });
    client.connect();
    expect(client.state).toBe('connecting');
    expect(await client.waitOpen(200)).toBe(false);
    await sim.start();
    expect(await client.waitOpen(5000)).toBe(true);
  });

  it('reports PromptLostError when the server restarts mid-run', async () => {
    await boot({ stepMs: 200 });
    const promptId = randomUUID();
    await client.submit(qwenGraph(nextSeed()), { promptId });
    let started = false;
    const done = failure(client.wait(promptId, { idleTimeoutMs: 10_000, onStart: () => (started = true) }));
    await until(() => started, 5000, 'start');
    await sim.restart();
    expect(await done).toBeInstanceOf(PromptLostError);
  });

  it('times a hung prompt out after idleTimeoutMs', async () => {
    await boot();
    sim.faults.set({ hang: true });
    const promptId = randomUUID();
    await client.submit(noiseGraph(nextSeed()), { promptId });
    const t0 = Date.now();
    expect(await failure(client.wait(promptId, { idleTimeoutMs: 600 }))).toBeInstanceOf(ComfyUiTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(590);
    sim.faults.reset();
  });

  it('cancels a running prompt with an interrupt and a pending one with a delete', async () => {
    await boot({ stepMs: 100 });
    const running = randomUUID();
    const pending = randomUUID();
    await client.submit(qwenGraph(nextSeed(), 50), { promptId: running });
    await client.submit(noiseGraph(nextSeed()), { promptId: pending });
    let started = false;
    const runWait = failure(client.wait(running, { idleTimeoutMs: 10_000, onStart: () => (started = true) }));
    const pendWait = failure(client.wait(pending, { idleTimeoutMs: 10_000 }));
    await until(() => started, 5000, 'start');
    expect(await client.locate(pending)).toBe('pending');
    expect(await client.cancel(pending)).toBe('pending');
    expect(await client.cancel(running)).toBe('running');
    expect(await runWait).toBeInstanceOf(PromptInterruptedError);
    expect(await client.locate(running)).toBe('failed');
    // A deleted pending prompt never reaches history: the wait ends as lost, which the caller expects after its own cancel.
    expect(await pendWait).toBeInstanceOf(PromptLostError);
    expect(await client.locate(pending)).toBe('unknown');
    expect(sim.stats().executedPromptIds).not.toContain(pending);
  });

  it('rejects a truncated output with OutputFetchError', async () => {
    await boot();
    const promptId = randomUUID();
    await client.submit(noiseGraph(nextSeed()), { promptId });
    const outcome = await client.wait(promptId, { idleTimeoutMs: 10_000 });
    sim.faults.set({ viewTruncate: true });
    expect(await failure(client.view(outcome.images[0]))).toBeInstanceOf(OutputFetchError);
    sim.faults.set({ viewTruncate: false });
    expect((await client.view(outcome.images[0])).length).toBeGreaterThan(8);
  });

  it('maps an injected 503 on /prompt to ComfyUnavailableError, then submits normally', async () => {
    await boot();
    sim.faults.set({ promptFailCount: 1 });
    const promptId = randomUUID();
    const err = await failure(client.submit(noiseGraph(nextSeed()), { promptId }));
    expect(err).toBeInstanceOf(ComfyUnavailableError);
    expect((err as ComfyUnavailableError).status).toBe(503);
    expect(err).toMatchObject({ retryable: true });
    expect(await client.locate(promptId)).toBe('unknown');
    await client.submit(noiseGraph(nextSeed()), { promptId });
    expect((await client.wait(promptId, { idleTimeoutMs: 10_000 })).images).toHaveLength(1);
  });
});
