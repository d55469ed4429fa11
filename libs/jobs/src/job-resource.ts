import type { JobResource } from '@app/queue';
import type { JobView } from './job-view';

/** Makes the signed link of one image of a job (the API's SignedLinks); absent: no signed_url. */
export type ImageLinkSigner = (jobId: string, index: number) => string;

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * The one rendering of the public job resource (DESIGN §2): the API's responses and the webhook
 * payloads are made here from a JobView, so they cannot drift apart. `baseUrl` is the public origin
 * ('' for links relative to the API); `signLink` adds each image's signed_url.
 */
export function renderJobResource(v: JobView, baseUrl: string, signLink?: ImageLinkSigner): JobResource {
  const self = `${baseUrl.replace(/\/$/, '')}/api/v1/images/jobs/${v.id}`;
  return {
    id: v.id,
    status: v.status,
    cached: v.cached === true,
    model: v.data.params.model,
    params: v.data.params,
    queue_position: v.status === 'queued' ? v.queue_position : null,
    progress: v.progress ? { step: v.progress.step, total_steps: v.progress.total_steps, fraction: v.progress.total_steps ? v.progress.step / v.progress.total_steps : 0 } : null,
    attempts: v.attempts,
    created_at: new Date(v.created_at).toISOString(),
    started_at: iso(v.started_at),
    finished_at: iso(v.finished_at),
    timings: v.result?.timings ?? null,
    images: (v.result?.images ?? []).map((img) => ({
      index: img.index,
      url: `${self}/images/${img.index}`,
      content_type: img.content_type,
      width: img.width,
      height: img.height,
      bytes: img.bytes,
      sha256: img.sha256,
      ...(signLink ? { signed_url: signLink(v.id, img.index) } : {}),
    })),
    error: v.error,
    metadata: v.data.metadata ?? {},
    webhook: v.webhook,
    links: { self, events: `${self}/events` },
  };
}
