/** ComfyUI API-format graph: node id → node. */
export type ComfyGraph = Record<string, { class_type: string; inputs: Record<string, unknown>; _meta?: { title?: string } }>;

export interface ComfyNodeError {
  errors: Array<{ type: string; message: string; details: string; extra_info?: Record<string, unknown> }>;
  dependent_outputs: string[];
  class_type: string;
}

export interface ComfyImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

export interface SubmitResult {
  promptId: string;
  number: number;
  /** node_errors that came with a 200: outputs ComfyUI dropped but the prompt still runs. */
  nodeWarnings: Record<string, ComfyNodeError>;
}

export interface PromptProgress {
  promptId: string;
  node: string;
  value: number;
  max: number;
}

/** What a finished prompt produced, read from /history (the truth), never from events alone. */
export interface PromptOutcome {
  promptId: string;
  images: Array<ComfyImageRef & { node: string }>;
  /** execution_start → execution_success, from ComfyUI's own timestamps, when known. */
  executionMs?: number;
  /** ComfyUI's execution_success timestamp (ms since epoch, its clock), when known. */
  endedAt?: number;
}

/** Where a prompt stands on the server, from /queue and /history as the server answered them. */
export type PromptLocation = 'running' | 'pending' | 'done' | 'failed' | 'unknown';

export interface GpuDevice {
  name: string;
  type: string;
  index: number;
  vram_total: number;
  vram_free: number;
  torch_vram_total?: number;
  torch_vram_free?: number;
}

export interface SystemStats {
  system: { os?: string; comfyui_version?: string; python_version?: string; pytorch_version?: string; ram_total?: number; ram_free?: number; [k: string]: unknown };
  devices: GpuDevice[];
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** No sign of life from the prompt (event or poll showing it progressing) for this long → ComfyUiTimeoutError. */
  idleTimeoutMs: number;
  onProgress?: (p: PromptProgress) => void;
  /** Called once when ComfyUI starts executing the prompt. */
  onStart?: () => void;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';
