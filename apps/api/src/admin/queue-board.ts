import type { INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { getQueueToken } from '@nestjs/bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import { Env } from '@app/config';
import { GenerationQueues } from '@app/jobs';
import { QueueName } from '@app/queue';
import { adminAuth } from './admin-auth';

export const QUEUE_BOARD_PATH = '/admin/queues';

/**
 * Bull Board for the generation and webhook queues at /admin/queues, behind ADMIN_TOKEN. Without a
 * token nothing is mounted and the path is an ordinary 404. Mounted on Express ahead of Nest's
 * routes, so the API-key guard and the rate limit do not apply to it; the token does.
 */
export function mountQueueBoard(app: INestApplication, env: Env): void {
  if (!env.ADMIN_TOKEN) return;
  const queues: Queue[] = [...app.get(GenerationQueues, { strict: false }).all(), app.get<string, Queue>(getQueueToken(QueueName.Webhook), { strict: false })];
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(QUEUE_BOARD_PATH);
  createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter, options: { uiConfig: { boardTitle: 'Fictures queues' } } });
  (app as NestExpressApplication).use(QUEUE_BOARD_PATH, adminAuth(env.ADMIN_TOKEN), serverAdapter.getRouter());
}
