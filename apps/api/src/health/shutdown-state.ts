import { Injectable } from '@nestjs/common';

/**
 * Our own "going away" flag. Set synchronously in the SIGTERM handler, so readiness is 503 from the
 * very next probe — terminus 11 raises its own flag only in a shutdown hook, after the drain wait.
 */
@Injectable()
export class ShutdownState {
  private startedAt?: number;

  begin(): void {
    this.startedAt ??= Date.now();
  }

  get shuttingDown(): boolean {
    return this.startedAt !== undefined;
  }

  get since(): number | undefined {
    return this.startedAt;
  }
}
