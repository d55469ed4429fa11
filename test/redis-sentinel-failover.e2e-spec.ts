import { printReport, runFailoverSoak } from './support/failover-soak';

// A primary, a replica and three sentinels; submissions keep coming while the primary is SIGKILLed
// five times (each time restarted as a replica of the new primary). Before each kill the replica is
// frozen for 700 ms, so the primary dies holding writes no replica has. With
// REDIS_MIN_REPLICAS_ACK=1 a 202 means a replica has the job: no acknowledged job may go missing.
describe('Sentinel failover under load, REDIS_MIN_REPLICAS_ACK=1', () => {
  it('loses no acknowledged job over 5 primary kills; readiness dips and recovers; jobs complete', async () => {
    const report = await runFailoverSoak({ minReplicasAck: 1, kills: 5, replicaLagMs: 700 });
    printReport(report);
    expect(report.acknowledged).toBeGreaterThanOrEqual(50);
    expect(report.lost).toEqual([]);
    expect(report.succeeded).toBe(report.acknowledged);
    // The frozen replica made WAIT time out: those submissions were refused, then retried.
    expect(report.unconfirmed).toBeGreaterThan(0);
    expect(report.failoverMs).toHaveLength(5);
    expect(report.recoveryMs).toHaveLength(5);
    expect(report.readinessDipped.every(Boolean)).toBe(true);
  }, 110_000);
});
