export * from './comfyui.types';
export * from './comfyui.errors';
export * from './comfyui.client';
export * from './comfyui-http.client';
export * from './comfyui-client.factory';
