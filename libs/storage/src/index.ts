export * from './result-store';
export * from './redis-result.store';
export { FsResultStore } from './fs-result.store';
export * from './s3-result.store';
export * from './redis.provider';
export * from './storage.module';
export * from './sniff-image-type';
export { JOB_ID_PATTERN } from './storage-validation';
