export * from './ssrf-guard';
export * from './webhook-signer';
export * from './webhook-sender';
export * from './retry-schedule';
export * from './redact-url';
