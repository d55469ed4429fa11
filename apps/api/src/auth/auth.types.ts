import type { ApiRequest } from '../jobs/request-context';

/** The API key a request was authenticated with, as the guards after authentication need it. */
export interface ApiKeyPrincipal {
  id: string;
  name: string;
  /** Effective limits: the key's own, else the deployment defaults. */
  /** Submissions per minute (the key's --rpm, else RATE_LIMIT_SUBMIT_PER_MINUTE). */
  rpm: number;
  maxJobs: number;
  priority?: number;
}

export type AuthenticatedRequest = ApiRequest & { apiKey?: ApiKeyPrincipal };
