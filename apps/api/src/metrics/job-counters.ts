import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { Job, Queue } from 'bullmq';
import { GenerationJobData, QueueName } from '@app/queue';
import { ResultStore } from '@app/storage';
import { ApiMetrics } from './api-metrics.service';

/**
 * Counts submissions and queued cancels without touching the jobs code: BullMQ's Queue emits
 * 'waiting' in the process that added a job and 'removed' in the process that removed one, so
 * each is counted exactly once, by the API instance that did it.
 */
@Injectable()
export class JobCounters implements OnApplicationBootstrap {
  private readonly logger = new Logger(JobCounters.name);

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly metrics: ApiMetrics,
    private readonly store: ResultStore,
  ) {}

  onApplicationBootstrap(): void {
    const queues = new Set<Queue>();
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (instance instanceof Queue && instance.name === QueueName.Generation) queues.add(instance);
    }
    for (const q of queues) {
      q.on('waiting', (job: Job<GenerationJobData>) => this.metrics.jobSubmitted(job.data?.params?.model ?? 'unknown'));
      q.on('removed', (jobId: string) => void this.countCancel(jobId));
    }
  }

  /**
   * A removal is a user's cancel when the canceled record appears (the jobs service writes it right
   * after removing); a removal from the dashboard leaves none and is not counted.
   */
  private async countCancel(jobId: string): Promise<void> {
    const deadline = Date.now() + 3_000;
    while (Date.now() < deadline) {
      try {
        const record = (await this.store.getRecord(jobId)) as { status?: string; model?: string } | undefined;
        if (record) {
          if (record.status === 'canceled') this.metrics.jobCanceledWhileQueued(record.model ?? 'unknown');
          return;
        }
      } catch (e) {
        this.logger.debug({ job_id: jobId, msg: 'cancel not counted', error: (e as Error).message });
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
