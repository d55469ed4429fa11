import { ErrorCode } from '@app/common';
import { ApiError } from '../common/api-error';

export type ContentPolicyVerdict = { allowed: true } | { allowed: false; reason: string };

/**
 * The content policy hook: every prompt passes through check() before a job is created. Swap the
 * implementation by providing another class for this token (security.module.ts), e.g. one that
 * calls a moderation service. A check that cannot decide should throw (a DomainError with a code,
 * such as redis_unavailable → 503), never allow by default.
 */
export abstract class ContentPolicy {
  abstract check(prompt: string, negativePrompt: string): Promise<ContentPolicyVerdict>;
}

/** Runs the policy; a refusal is 422 content_policy and no job is created. */
export async function enforceContentPolicy(policy: ContentPolicy | undefined, prompt: string, negativePrompt: string): Promise<void> {
  if (!policy) return;
  const verdict = await policy.check(prompt, negativePrompt);
  if (!verdict.allowed) {
    throw new ApiError(ErrorCode.ContentPolicy, 'The request was refused by the content policy', { reason: verdict.reason });
  }
}
