import { Injectable } from '@nestjs/common';
import { Env } from '@app/config';
import { AllowedHost, assertWebhookUrlAllowed, parseAllowedHosts } from '@app/webhooks';

/** Checks a webhook URL at submission (the sender checks every address again at connect time). */
@Injectable()
export class WebhookUrlPolicy {
  private readonly allowedHosts: AllowedHost[];

  constructor(env: Env) {
    this.allowedHosts = parseAllowedHosts(env.WEBHOOK_ALLOWED_HOSTS);
  }

  async check(url: string): Promise<string> {
    await assertWebhookUrlAllowed(url, { allowedHosts: this.allowedHosts });
    return url;
  }
}
