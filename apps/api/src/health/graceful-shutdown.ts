import type { Server } from 'node:http';
import type { INestApplication, LoggerService } from '@nestjs/common';
import { Env } from '@app/config';
import { ShutdownState } from './shutdown-state';

export interface GracefulShutdownOptions {
  signals?: NodeJS.Signals[];
  logger: LoggerService;
  /** Called at the end (default process.exit). */
  exit?: (code: number) => void;
}

/** Resolves once every connection of the (already closing) server is gone, or false after timeoutMs. */
function waitForConnections(server: Server, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (clean: boolean) => {
      if (done) return;
      done = true;
      clearInterval(sweep);
      clearTimeout(deadline);
      resolve(clean);
    };
    server.close(() => finish(true));
    // A keep-alive connection goes idle once its last response is sent: close it then.
    const sweep = setInterval(() => server.closeIdleConnections(), 100);
    server.closeIdleConnections();
    const deadline = setTimeout(() => finish(false), timeoutMs);
  });
}

/**
 * SIGTERM/SIGINT for the API, in the order load balancers need:
 * 1. readiness turns 503 at once (our flag, set before anything is awaited); liveness stays 200;
 * 2. the server keeps serving for SHUTDOWN_DRAIN_MS, while balancers notice and stop sending;
 * 3. it stops accepting connections and lets requests in flight finish (SHUTDOWN_TIMEOUT_MS at
 *    most, then their connections are cut);
 * 4. only then Nest's shutdown hooks run (queues, Redis), so no request loses its connections;
 * 5. the process exits — within drain + timeout + 10 s whatever happens.
 * Replaces app.enableShutdownHooks(), whose handler would close everything at once.
 */
export function installGracefulShutdown(app: INestApplication, env: Env, opts: GracefulShutdownOptions): void {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const state = app.get(ShutdownState);
  let started = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (started) return;
    started = true;
    state.begin();
    opts.logger.log({ msg: 'shutdown: readiness is now 503, draining', signal, drain_ms: env.SHUTDOWN_DRAIN_MS, timeout_ms: env.SHUTDOWN_TIMEOUT_MS });
    const hardStop = setTimeout(() => {
      opts.logger.error({ msg: 'shutdown: grace time exceeded, exiting now' });
      exit(1);
    }, env.SHUTDOWN_DRAIN_MS + env.SHUTDOWN_TIMEOUT_MS + 10_000);
    hardStop.unref();
    void (async () => {
      await new Promise((r) => setTimeout(r, env.SHUTDOWN_DRAIN_MS));
      const server = app.getHttpServer() as Server;
      const clean = await waitForConnections(server, env.SHUTDOWN_TIMEOUT_MS);
      if (!clean) {
        opts.logger.warn({ msg: 'shutdown: requests still in flight after the timeout; closing their connections' });
        server.closeAllConnections();
      }
      opts.logger.log({ msg: 'shutdown: server closed; stopping the application' });
      try {
        await app.close();
        exit(0);
      } catch (e) {
        opts.logger.error({ msg: 'shutdown: error while stopping', error: (e as Error).message });
        exit(1);
      }
    })();
  };
  for (const s of opts.signals ?? (['SIGTERM', 'SIGINT'] as NodeJS.Signals[])) process.on(s, onSignal);
}
