import { Injectable } from '@nestjs/common';
import { Env } from '@app/config';
import { ComfyUiClient } from './comfyui.client';
import { ComfyUiHttpClient, type ComfyUiHttpClientOptions } from './comfyui-http.client';

/** What a caller may set per client; the rest comes from the COMFYUI_* settings. */
export type ComfyUiClientOverrides = Pick<ComfyUiHttpClientOptions, 'requestTimeoutMs' | 'pollIntervalMs' | 'logger'>;

/**
 * Makes the client of one ComfyUI URL. Callers get the port, never the adapter, so a test swaps
 * in a fake factory (overrideProvider) instead of reaching into whoever holds the client.
 */
@Injectable()
export class ComfyUiClientFactory {
  constructor(private readonly env: Env) {}

  create(url: string, overrides: ComfyUiClientOverrides = {}): ComfyUiClient {
    return new ComfyUiHttpClient(url, {
      requestTimeoutMs: overrides.requestTimeoutMs ?? this.env.COMFYUI_REQUEST_TIMEOUT_MS,
      pollIntervalMs: overrides.pollIntervalMs ?? this.env.COMFYUI_POLL_INTERVAL_MS,
      logger: overrides.logger,
    });
  }
}
