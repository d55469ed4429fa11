export * from './with-timeout';
export * from './redis.health';
export * from './comfyui.health';
