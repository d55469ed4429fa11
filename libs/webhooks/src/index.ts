export * from './ssrf-guard';
export * from './webhook-signer';
export * from './webhook-sender';
export * from './retry-schedule';
export * from './redact-url';
export * from './webhook-payload';
export * from './webhook-state.store';
export * from './webhook.providers';
