import type {
  ComfyGraph, ComfyImageRef, ConnectionState, PromptLocation, PromptOutcome, SubmitResult, SystemStats, WaitOptions,
} from './comfyui.types';

export interface UploadImageOptions {
  filename: string;
  contentType: string;
  subfolder?: string;
  /** Replace a file of the same name (ComfyUI otherwise saves other content as `name (1).png`). */
  overwrite?: boolean;
  /** /upload/mask needs the image the mask belongs to. */
  mask?: { originalRef: { filename: string; subfolder: string; type: 'input' } };
  signal?: AbortSignal;
}

/**
 * The port the worker and health checks use to drive one ComfyUI server. The HTTP + WebSocket
 * adapter implements it; unit tests use fakes.
 */
export abstract class ComfyUiClient {
  abstract readonly baseUrl: string;
  abstract readonly clientId: string;
  abstract readonly state: ConnectionState;

  /** Starts the WebSocket state machine; returns at once (never waits for ComfyUI to be up). */
  abstract connect(): void;
  /** Waits up to timeoutMs for the socket to be open; false when it is not. */
  abstract waitOpen(timeoutMs: number): Promise<boolean>;
  /** Stops every timer and socket; pending waits reject with ClientClosedError. */
  abstract close(): Promise<void>;

  /** POST /prompt with our own prompt_id and our client_id. */
  abstract submit(graph: ComfyGraph, opts: { promptId: string; signal?: AbortSignal }): Promise<SubmitResult>;
  /** Follows a submitted prompt to its end (WS events, /history as the safety net). */
  abstract wait(promptId: string, opts: WaitOptions): Promise<PromptOutcome>;
  /** Where the prompt stands now (one /queue + /history look); throws ComfyUnavailableError if unreachable. */
  abstract locate(promptId: string, signal?: AbortSignal): Promise<PromptLocation>;
  /** GET /queue: the ids of the prompts ComfyUI is running and of those waiting in its queue. */
  abstract queuedPromptIds(signal?: AbortSignal): Promise<string[]>;
  /** Outcome of a finished prompt from /history, or undefined when history has no entry. */
  abstract outcome(promptId: string, signal?: AbortSignal): Promise<PromptOutcome | undefined>;
  /** GET /view: the bytes of one output. */
  abstract view(ref: ComfyImageRef, signal?: AbortSignal): Promise<Buffer>;
  /** Deletes the prompt if pending, interrupts it if running, nothing if done. */
  abstract cancel(promptId: string): Promise<PromptLocation>;
  abstract systemStats(signal?: AbortSignal, timeoutMs?: number): Promise<SystemStats>;
  /** GET /models/{folder}: file names ComfyUI can load from that folder. */
  abstract listModels(folder: string, signal?: AbortSignal): Promise<string[]>;
  /**
   * POST /upload/image (or /upload/mask): stores an input image in ComfyUI's input folder. Answers
   * the value for LoadImage's `image` input (`subfolder/name`, as ComfyUI named the file).
   */
  abstract uploadImage(bytes: Buffer, opts: UploadImageOptions): Promise<string>;
  /** POST /free (unload models, free memory) — used after an out-of-memory failure. */
  abstract free(): Promise<void>;
}
