import { Inject, Injectable } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { AllowedHost, assertWebhookUrlAllowed, type HostResolver, parseAllowedHosts, WEBHOOK_HOST_RESOLVER } from '@app/webhooks';

export const WEBHOOKS_DISABLED_MESSAGE = 'This server sends no webhooks (no signing secret is configured); poll the job or follow its events instead';

/** Checks a webhook URL at submission (the sender checks every address again at connect time). */
@Injectable()
export class WebhookUrlPolicy {
  private readonly allowedHosts: AllowedHost[];

  constructor(
    private readonly env: Env,
    @Inject(WEBHOOK_HOST_RESOLVER) private readonly resolve: HostResolver,
  ) {
    this.allowedHosts = parseAllowedHosts(env.WEBHOOK_ALLOWED_HOSTS);
  }

  /** Throws webhooks_disabled when nothing could sign the delivery, invalid_webhook_url for a refused URL. */
  async check(url: string): Promise<string> {
    if (!this.env.WEBHOOK_SECRET) throw new DomainError(ErrorCode.WebhooksDisabled, WEBHOOKS_DISABLED_MESSAGE);
    await assertWebhookUrlAllowed(url, { allowedHosts: this.allowedHosts, resolve: this.resolve, httpsOnly: this.env.WEBHOOK_HTTPS_ONLY });
    return url;
  }
}
